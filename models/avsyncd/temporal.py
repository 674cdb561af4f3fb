"""Frame structure inside an inflated 2D UNet: the frame context, the
first-frame temporal convolution and temporal self-attention.

The inflated UNet keeps the 2D model's tensors, laid out [B*F, C, H, W]
(frame-major within each clip).  Modules that mix frames need F, and the
diffusers blocks do not pass it down, so :class:`AVSyncDUNet` binds a
:class:`FrameContext` on a :class:`FrameContextHolder` shared by every
injected module for the duration of one forward.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.models.attention_processor import Attention


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

    y_k = conv(x_k);  out_k = y_k + W [y_1; y_{k-1}; y_k] + b, with W, b zero at
    initialisation (frame 1's previous frame is itself).  The mix is a 1x1 conv
    over the concatenated features, i.e. a temporal kernel of 3 taps whose
    taps are the first, previous and current frame.

    Subclasses nn.Conv2d and shares the pretrained weight/bias, so the 2D
    model's state-dict keys (``...conv1.weight``) are unchanged and the new
    weights live under ``...conv1.temporal_mix``.
    """

    def __init__(self, *args, holder: FrameContextHolder | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.holder = holder if holder is not None else FrameContextHolder()
        c = self.out_channels
        self.temporal_mix = nn.Conv2d(3 * c, c, kernel_size=1,
                                      device=self.weight.device, dtype=self.weight.dtype)
        nn.init.zeros_(self.temporal_mix.weight)
        nn.init.zeros_(self.temporal_mix.bias)

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
        c = conv.out_channels
        new.temporal_mix = nn.Conv2d(3 * c, c, kernel_size=1, device=conv.weight.device,
                                     dtype=conv.weight.dtype)
        nn.init.zeros_(new.temporal_mix.weight)
        nn.init.zeros_(new.temporal_mix.bias)
        new.train(conv.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        f = self.holder.require("FirstFrameTemporalConv2d").num_frames
        y5 = split_frames(y, f, "FirstFrameTemporalConv2d")
        first = y5[:, :1].expand_as(y5)
        prev = torch.cat([y5[:, :1], y5[:, :-1]], dim=1)
        stacked = torch.cat([first, prev, y5], dim=2).reshape(y.shape[0], 3 * y.shape[1], *y.shape[2:])
        return y + self.temporal_mix(stacked)


def sinusoidal_frame_embedding(num_frames: int, dim: int, device=None) -> torch.Tensor:
    """[F, dim] float32 sin/cos embedding of frame indices 0..F-1 (transformer convention)."""
    if dim % 2:
        raise ValueError(f"sinusoidal_frame_embedding: dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.arange(num_frames, dtype=torch.float32, device=device)[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TemporalSelfAttention(nn.Module):
    """Self-attention across frames at every spatial position, residual, output zero-initialised.

    The frame index enters as a sinusoidal embedding through a learned
    projection (Linear-SiLU-Linear), added to the normalised features.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.frame_pos_proj = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim_head, bias=False, out_bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, n, c = hidden_states.shape
        x = self.norm(hidden_states)
        x = split_frames(x, num_frames, "TemporalSelfAttention").permute(0, 2, 1, 3)  # [B, N, F, C]
        pos = sinusoidal_frame_embedding(num_frames, c, device=x.device)
        x = x + self.frame_pos_proj(pos.to(x.dtype))
        out = self.attn(x.reshape(-1, num_frames, c))  # [B*N, F, C]
        out = out.view(bf // num_frames, n, num_frames, c).permute(0, 2, 1, 3).reshape(bf, n, c)
        return hidden_states + out
