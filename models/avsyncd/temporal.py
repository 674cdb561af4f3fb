"""Frame structure inside an inflated 2D UNet: the frame context, the
first-frame temporal convolution, clip-wise GroupNorm and the frame-index
embedding of the temporal attention.

The inflated UNet keeps the 2D model's tensors, laid out [B*F, C, H, W]
(frame-major within each clip).  Modules that mix frames need F, and the
diffusers blocks do not pass it down, so :class:`AVSyncDUNet` binds a
:class:`FrameContext` on a :class:`FrameContextHolder` shared by every
injected module for the duration of one forward.

Tensor names follow the authors' released checkpoints (docs/avsyncd.md,
"Released checkpoints"): ``conv_temp`` is a Linear [C, 3C] over the
concatenated [first | previous | current] frame features, so a released
state dict loads without renaming.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding


@dataclass
class FrameContext:
    """What injected modules need to know about the current forward."""

    num_frames: int
    # [B*F, K, D_audio] the tokens each frame attends to; None = no audio path
    # (an image+text model such as I2VD).
    frame_audio_tokens: torch.Tensor | None = None


class FrameContextHolder:
    """Mutable slot shared by the injected modules of one model."""

    def __init__(self):
        self.current: FrameContext | None = None

    @contextmanager
    def bind(self, ctx: FrameContext):
        prev, self.current = self.current, ctx
        try:
            yield ctx
        finally:
            self.current = prev

    def require(self, who: str) -> FrameContext:
        if self.current is None:
            raise RuntimeError(
                f"{who} was called outside AVSyncDUNet.forward: the inflated UNet needs the frame "
                "count, so call the AVSyncDUNet wrapper with [B, F, C, H, W] input, not its inner "
                "diffusers UNet")
        return self.current


def split_frames(x: torch.Tensor, num_frames: int, who: str) -> torch.Tensor:
    """[B*F, ...] -> [B, F, ...] with a clear error when the batch is not a multiple of F."""
    if x.shape[0] % num_frames:
        raise ValueError(f"{who}: batch {x.shape[0]} is not a multiple of num_frames={num_frames}")
    return x.view(x.shape[0] // num_frames, num_frames, *x.shape[1:])


class FirstFrameTemporalConv2d(nn.Conv2d):
    """Per-frame 2D conv, plus a zero-initialised mix of [first, previous, current] frames.

    y_k = conv(x_k);  out_k = y_k + W [y_1; y_{k-1}; y_k] + b, with W [C, 3C] and b
    zero at initialisation (frame 1's previous frame is itself).  ``conv_temp`` is
    a Linear over channels, applied at every pixel (as a 1x1 convolution).

    Subclasses nn.Conv2d and shares the pretrained weight/bias, so the 2D
    model's state-dict keys (``...conv1.weight``) are unchanged and the new
    weights live under ``...conv1.conv_temp``.
    """

    def __init__(self, *args, holder: FrameContextHolder | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.holder = holder if holder is not None else FrameContextHolder()
        self.conv_temp = _zero_linear(3 * self.out_channels, self.out_channels, self.weight)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, holder: FrameContextHolder) -> "FirstFrameTemporalConv2d":
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"FirstFrameTemporalConv2d.from_conv expects nn.Conv2d, got {type(conv).__name__}")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode, holder=holder,
                  device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.conv_temp = _zero_linear(3 * conv.out_channels, conv.out_channels, conv.weight)
        new.train(conv.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        f = self.holder.require("FirstFrameTemporalConv2d").num_frames
        y5 = split_frames(y, f, "FirstFrameTemporalConv2d")
        first = y5[:, :1].expand_as(y5)
        prev = torch.cat([y5[:, :1], y5[:, :-1]], dim=1)
        stacked = torch.cat([first, prev, y5], dim=2).reshape(y.shape[0], 3 * y.shape[1], *y.shape[2:])
        w = self.conv_temp.weight
        return y + F.conv2d(stacked, w.view(*w.shape, 1, 1), self.conv_temp.bias)


def _zero_linear(n_in: int, n_out: int, like: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(n_in, n_out, device=like.device, dtype=like.dtype)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class ClipGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics cover all frames of a clip, not each frame alone.

    The released AVSyncD normalises its ResNet features and ``conv_norm_out`` as
    [B, C, F, H, W] tensors, so each group's mean and variance run over
    (C/G, F, H, W).  Same parameters (and state-dict keys) as the 2D GroupNorm
    it replaces; for a clip whose frames are identical the two agree.
    """

    def __init__(self, *args, holder: FrameContextHolder | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.holder = holder if holder is not None else FrameContextHolder()

    @classmethod
    def from_group_norm(cls, norm: nn.GroupNorm, holder: FrameContextHolder) -> "ClipGroupNorm":
        if type(norm) is not nn.GroupNorm:
            raise TypeError(f"ClipGroupNorm.from_group_norm expects nn.GroupNorm, got {type(norm).__name__}")
        new = cls(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine, holder=holder,
                  device="meta")
        new.weight, new.bias = norm.weight, norm.bias
        new.train(norm.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.holder.require("ClipGroupNorm").num_frames
        x5 = split_frames(x, f, "ClipGroupNorm")  # [B, F, C, H, W]
        clip = x5.transpose(1, 2)  # [B, C, F, H, W]: group_norm reduces over everything after C
        out = F.group_norm(clip, self.num_groups, self.weight, self.bias, self.eps)
        return out.transpose(1, 2).reshape(x.shape)


def frame_index_embedding(num_frames: int, dim: int, device=None) -> torch.Tensor:
    """[F, dim] float32 sinusoidal embedding of frame indices 0..F-1, laid out [cos | sin].

    Frequencies exp(-ln(10000) i / (dim / 2)), i < dim / 2: diffusers' timestep
    embedding with flip_sin_to_cos=True and no frequency shift, which is what the
    released temporal attention feeds its ``pos_embedding_temp`` MLP.
    """
    if dim % 2:
        raise ValueError(f"frame_index_embedding: dim must be even, got {dim}")
    idx = torch.arange(num_frames, device=device)
    return get_timestep_embedding(idx, dim, flip_sin_to_cos=True, downscale_freq_shift=0).float()
