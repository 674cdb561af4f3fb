"""Time-aligned audio tokens: which audio tokens each video frame attends to.

AVSyncD conditions every frame on the audio of *its own moment*: frame k sees
the encoder's global token(s) plus a window of patch-time columns that moves
with k (docs/avsyncd.md, "Audio windows").

Geometry of the paper profile (ImageBind-huge audio trunk)
----------------------------------------------------------
* Input mel: 1 x 128 bins x 204 frames; Kaldi frame m starts at sample
  160 m (10 ms hop) and lasts 400 samples (25 ms), so it spans
  [0.010 m, 0.010 m + 0.025) s of the 2 s clip.
* Patch stem: Conv2d, kernel 16, stride 10, on (bins, frames):
  floor((128 - 16) / 10) + 1 = 12 frequency rows and
  floor((204 - 16) / 10) + 1 = 19 time columns.  The last 4 mel frames and
  the top 2 bins fall outside every patch.
* Token order: 1 global (CLS) token, then the 12 x 19 grid flattened
  row-major over (freq, time): token(f, t) = 1 + 19 f + t.  229 tokens, 768-d.
* Time patch j covers mel frames [10 j, 10 j + 16), i.e. audio time
  [0.1 j, 0.1 j + 0.175) s.

Window rule (the released model's, written for any geometry)
-------------------------------------------------------------
Each of the F frames sees w = ceil(n_time / F) consecutive time columns
(``time_patches_per_frame`` overrides w), starting at column
round(linspace(0, n_time - w, F))[k] (numpy rounding), plus the global
token(s) and all n_freq rows of those columns: 1 + 12 x 2 = 25 tokens in the
paper geometry.  Neighbouring windows overlap where F w > n_time.

For the paper geometry (19 columns, 12 frames, w = 2) this gives
(frame: time patches)
  0: 0 1 | 1: 2 3 | 2: 3 4 | 3: 5 6 | 4: 6 7 | 5: 8 9 | 6: 9 10 | 7: 11 12 |
  8: 12 13 | 9: 14 15 | 10: 15 16 | 11: 17 18
so every column is seen by some frame and 5 neighbouring pairs share one.
The mini geometry (12 columns) gives w = 1: frame k sees column k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from asva_bench.configs import JsonConfig


@dataclass(frozen=True)
class AudioTokenGeometry(JsonConfig):
    """Layout of an audio encoder's token sequence and the time span of its patches."""

    config_label = "AudioTokenGeometry"

    n_freq: int = 12
    n_time: int = 19
    dim: int = 768
    n_global: int = 1
    # Patch stem along the time axis, in mel frames.
    patch_kernel: int = 16
    patch_stride: int = 10
    # Mel framing (docs/protocol.md, the mel spectrogram).
    mel_hop_s: float = 0.010
    mel_window_s: float = 0.025
    clip_seconds: float = 2.0
    # Columns per frame; None = ceil(n_time / F), the released rule.
    time_patches_per_frame: int | None = None

    def __post_init__(self):
        for name in ("n_freq", "n_time", "dim", "patch_kernel", "patch_stride", "time_patches_per_frame"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"AudioTokenGeometry.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_global < 0:
            raise ValueError(f"AudioTokenGeometry.n_global must be >= 0, got {self.n_global}")
        if self.time_patches_per_frame is not None and self.time_patches_per_frame > self.n_time:
            raise ValueError(
                f"AudioTokenGeometry: time_patches_per_frame={self.time_patches_per_frame} exceeds "
                f"n_time={self.n_time}")

    # -- token layout -------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return self.n_global + self.n_freq * self.n_time

    def patches_per_frame(self, num_frames: int) -> int:
        """Time columns each frame sees: ``time_patches_per_frame`` or ceil(n_time / F)."""
        if self.time_patches_per_frame is not None:
            return int(self.time_patches_per_frame)
        return int(math.ceil(self.n_time / num_frames))

    def tokens_per_frame(self, num_frames: int) -> int:
        return self.n_global + self.n_freq * self.patches_per_frame(num_frames)

    def token_index(self, freq: int, time: int) -> int:
        """Sequence position of patch (freq row, time column)."""
        return self.n_global + freq * self.n_time + time

    # -- time geometry ------------------------------------------------------
    def time_patch_spans(self) -> np.ndarray:
        """[n_time, 2] start / end seconds of each time column."""
        j = np.arange(self.n_time, dtype=np.float64)
        start = j * self.patch_stride * self.mel_hop_s
        end = start + (self.patch_kernel - 1) * self.mel_hop_s + self.mel_window_s
        return np.stack([start, end], axis=1)

    def frame_time_patches(self, num_frames: int) -> np.ndarray:
        """[F, w] time columns of each frame (window rule above)."""
        w = self.patches_per_frame(num_frames)
        starts = np.round(np.linspace(0, self.n_time - w, num_frames)).astype(np.int64)
        return starts[:, None] + np.arange(w, dtype=np.int64)[None, :]

    def frame_token_indices(self, num_frames: int) -> torch.Tensor:
        """[F, tokens_per_frame] ascending token positions each frame attends to."""
        cols = self.frame_time_patches(num_frames)
        rows = []
        for k in range(num_frames):
            idx = list(range(self.n_global))
            idx += [self.token_index(f, int(t)) for f in range(self.n_freq) for t in cols[k]]
            rows.append(sorted(idx))
        return torch.tensor(rows, dtype=torch.long)

    def frame_token_mask(self, num_frames: int) -> torch.Tensor:
        """[F, n_tokens] bool: True where frame k may attend (the mask form of the rule)."""
        mask = torch.zeros(num_frames, self.n_tokens, dtype=torch.bool)
        mask.scatter_(1, self.frame_token_indices(num_frames), True)
        return mask



#: ImageBind-huge audio trunk, the paper profile's audio encoder.
IMAGEBIND_HUGE_AUDIO = AudioTokenGeometry()


def check_audio_tokens(tokens: torch.Tensor, geometry: AudioTokenGeometry, name: str = "audio_tokens",
                       batch: int | None = None) -> None:
    """Raise a clear error unless ``tokens`` is [B, n_tokens, dim] for this geometry."""
    want = (geometry.n_tokens, geometry.dim)
    if tokens.ndim != 3 or tuple(tokens.shape[1:]) != want:
        raise ValueError(
            f"{name}: expected shape [batch, {want[0]}, {want[1]}] (n_global={geometry.n_global} + "
            f"{geometry.n_freq}x{geometry.n_time} patches, dim {geometry.dim}), got {tuple(tokens.shape)}; "
            "pass the audio encoder's full token sequence, or build the model with that encoder's "
            "AudioTokenGeometry")
    if batch is not None and tokens.shape[0] != batch:
        raise ValueError(f"{name}: batch {tokens.shape[0]} does not match the {batch} clips given")


def gather_frame_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """[B, N, D] tokens and [F, K] positions -> [B*F, K, D], frame-major within each clip.

    Gathering the allowed subset is exactly attention under the boolean mask
    (masked keys get zero weight) without the cost of the masked keys.
    """
    B, _, D = tokens.shape
    F, K = indices.shape
    picked = tokens[:, indices.to(tokens.device).reshape(-1)]  # [B, F*K, D]
    return picked.reshape(B * F, K, D)


def null_audio_tokens(encode_mel: Callable[[torch.Tensor], torch.Tensor],
                      mel_shape: tuple[int, int, int] = (1, 128, 204)) -> torch.Tensor:
    """The null audio condition: the encoder's tokens for an all-zero normalised mel.

    ``encode_mel`` maps [B, *mel_shape] normalised mels to [B, n_tokens, dim].
    """
    with torch.no_grad():
        return encode_mel(torch.zeros(1, *mel_shape))
