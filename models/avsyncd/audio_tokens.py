"""Time-aligned audio tokens: which audio tokens each video frame attends to.

AVSyncD conditions every frame on the audio of *its own moment*: frame k sees
the encoder's global token(s) plus the patch tokens whose time span covers
the frame's time span (PROTOCOL.md section 5).

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

Window rule (written for any geometry)
--------------------------------------
Frame k of F covers [k T / F, (k + 1) T / F) s (T = 2 s; 1/6 s per frame at
12 frames).  Its time patches are the ``time_patches_per_frame`` (2) patches
with the largest overlap with that interval; ties go to the patch whose centre
is nearer the frame centre, then to the earlier patch.  Frame k then sees the
global token(s) and all n_freq rows of those columns: 1 + 12 x 2 = 25 tokens.

For the paper geometry this gives (frame: time patches)
  0: 0 1 | 1: 1 2 | 2: 3 4 | 3: 4 5 | 4: 6 7 | 5: 8 9 | 6: 9 10 | 7: 11 12 |
  8: 13 14 | 9: 14 15 | 10: 16 17 | 11: 17 18
19 patches shared by 12 frames x 2 slots, so 5 neighbouring pairs share a
patch (0/1, 2/3, 5/6, 8/9, 10/11) and every patch is seen by some frame.
The smallest winning margin is 0.025 s of overlap, so the table is stable
under float noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class AudioTokenGeometry:
    """Layout of an audio encoder's token sequence and the time span of its patches."""

    n_freq: int = 12
    n_time: int = 19
    dim: int = 768
    n_global: int = 1
    # Patch stem along the time axis, in mel frames.
    patch_kernel: int = 16
    patch_stride: int = 10
    # Mel framing (PROTOCOL.md section 2).
    mel_hop_s: float = 0.010
    mel_window_s: float = 0.025
    clip_seconds: float = 2.0
    time_patches_per_frame: int = 2

    def __post_init__(self):
        for name in ("n_freq", "n_time", "dim", "patch_kernel", "patch_stride", "time_patches_per_frame"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"AudioTokenGeometry.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_global < 0:
            raise ValueError(f"AudioTokenGeometry.n_global must be >= 0, got {self.n_global}")
        if self.time_patches_per_frame > self.n_time:
            raise ValueError(
                f"AudioTokenGeometry: time_patches_per_frame={self.time_patches_per_frame} exceeds "
                f"n_time={self.n_time}")

    # -- token layout -------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return self.n_global + self.n_freq * self.n_time

    @property
    def tokens_per_frame(self) -> int:
        return self.n_global + self.n_freq * self.time_patches_per_frame

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
        """[F, time_patches_per_frame] time columns of each frame (window rule above)."""
        spans = self.time_patch_spans()
        centres = spans.mean(axis=1)
        frame_len = self.clip_seconds / num_frames
        out = np.empty((num_frames, self.time_patches_per_frame), dtype=np.int64)
        for k in range(num_frames):
            a, b = k * frame_len, (k + 1) * frame_len
            overlap = np.clip(np.minimum(spans[:, 1], b) - np.maximum(spans[:, 0], a), 0.0, None)
            # Round away float noise so exact ties fall through to the tie-breaks.
            overlap = np.round(overlap, 9)
            dist = np.round(np.abs(centres - (a + b) / 2.0), 9)
            order = np.lexsort((np.arange(self.n_time), dist, -overlap))
            out[k] = np.sort(order[:self.time_patches_per_frame])
        return out

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

    # -- serialisation --------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioTokenGeometry":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"AudioTokenGeometry: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**d)


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
