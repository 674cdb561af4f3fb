"""Mapping a model's native output onto the protocol clip (docs/adapters.md, "Native output rates").

A model that makes, say, 48 frames at 24 fps (KeyVID) or 14 frames at 7 fps
(Stable Video Diffusion) is held to the same clip as every other model: the
harness picks its frames with the rule the protocol uses to pick frames from a
test video, and resizes them with the protocol's spatial rule.

* Time: native frame ``i`` has timestamp ``i / fps`` (frame 0 at the clip's
  start, the conditioning instant). Protocol frame ``k`` takes the first native
  frame whose timestamp is >= ``k / protocol.fps`` (the protocol's float
  tolerance applied); when the native frames run out the last one is repeated
  (:func:`asva_bench.protocol.select_frame_indices`, the video rule).
* Space: centre crop to the protocol's aspect ratio, antialiased bilinear
  resize, centre crop (:func:`asva_bench.protocol.spatial_transform`).

Both steps are the identity for an output already at 12 frames, 6 fps and the
protocol size.
"""

from __future__ import annotations

import numpy as np
import torch

from ..protocol import ProtocolConfig, select_frame_indices, spatial_transform

TEMPORAL_RULE = ("native frame i at i / fps; protocol frame k = the first native frame with timestamp >= k / 6 s "
                 "(the protocol's video rule; the last frame repeats when they run out)")
SPATIAL_RULE = "centre crop to the protocol aspect, antialiased bilinear resize, centre crop (the protocol's rule)"


def native_indices(num_frames: int, fps: float, cfg: ProtocolConfig) -> np.ndarray:
    """Which native frame fills each protocol frame: int64 [cfg.num_frames]."""
    if int(num_frames) < 1 or not float(fps) > 0:
        raise ValueError(f"a native output needs at least one frame and a positive fps, got ({num_frames}, {fps})")
    timestamps = np.arange(int(num_frames), dtype=np.float64) / float(fps)
    return select_frame_indices(timestamps, 0.0, cfg)


def map_to_protocol(frames: torch.Tensor, native: tuple[int, float], cfg: ProtocolConfig) -> torch.Tensor:
    """float [B, n, 3, h, w] in [0, 1] at ``native = (n, fps)`` -> [B, cfg.num_frames, 3, H, W]."""
    n, fps = int(native[0]), float(native[1])
    if frames.ndim != 5 or frames.shape[1] != n:
        raise ValueError(f"expected frames [B, {n}, 3, h, w], got {tuple(frames.shape)}")
    idx = torch.from_numpy(native_indices(n, fps, cfg))
    picked = frames[:, idx]
    return torch.stack([spatial_transform(clip, cfg) for clip in picked])


def mapping_record(native: tuple[int, float], cfg: ProtocolConfig) -> dict:
    """What run.json records about the mapping (part of the run's identity)."""
    n, fps = int(native[0]), float(native[1])
    return {"native_num_frames": n, "native_fps": fps,
            "native_indices": [int(i) for i in native_indices(n, fps, cfg)],
            "temporal_rule": TEMPORAL_RULE, "spatial_rule": SPATIAL_RULE}


__all__ = ["SPATIAL_RULE", "TEMPORAL_RULE", "map_to_protocol", "mapping_record", "native_indices"]
