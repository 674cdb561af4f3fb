"""Attention of the inflated transformer blocks.

Block order per frame (docs/avsyncd.md, "Architecture"):
first-frame spatial attention (pretrained, frozen) -> audio cross-attention
(new: norm_audio, attn_audio) -> text cross-attention (pretrained, frozen) ->
temporal self-attention (new: pos_embedding_temp, norm_temp, attn_temp) ->
feed-forward (pretrained, frozen).  The new tensors carry the names of the
authors' released checkpoints.  The new paths end in a zero-initialised output
projection (our choice; the released code zero-inits the temporal one only), so
at initialisation the block computes exactly the 2D block with its
self-attention reading keys/values from frame 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding

from .temporal import FrameContextHolder, frame_index_embedding, split_frames


class FirstFrameAttnProcessor:
    """Self-attention whose keys and values come from frame 1 of the same clip.

    Queries: every frame; keys/values: frame 1 only.  All F frames of a clip
    share one key/value set, so the F query sequences are concatenated and
    attend in one scaled_dot_product_attention call per clip.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, num_frames: int | None = None) -> torch.Tensor:
        if num_frames is None:
            raise RuntimeError("FirstFrameAttnProcessor needs num_frames (call through AVSyncDTransformerBlock)")
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("FirstFrameAttnProcessor: self-attention takes no context or mask")
        if (attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_q is not None
                or attn.norm_k is not None or attn.residual_connection or attn.rescale_output_factor != 1.0):
            raise ValueError("FirstFrameAttnProcessor supports the plain Stable-Diffusion self-attention only "
                             "(no spatial/group/q/k norm, no residual, rescale 1)")
        bf, n, c = hidden_states.shape
        x = split_frames(hidden_states, num_frames, "FirstFrameAttnProcessor")  # [B, F, N, C]
        b = x.shape[0]
        heads = attn.heads
        q = attn.to_q(x.reshape(b, num_frames * n, c))
        first = x[:, 0]
        k, v = attn.to_k(first), attn.to_v(first)
        d = q.shape[-1] // heads
        q = q.view(b, -1, heads, d).transpose(1, 2)
        k = k.view(b, -1, heads, d).transpose(1, 2)
        v = v.view(b, -1, heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = out.transpose(1, 2).reshape(bf, n, heads * d).to(q.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _zero_output(attn: Attention) -> Attention:
    """A new path starts as the identity of the residual stream (docs/avsyncd.md, init)."""
    nn.init.zeros_(attn.to_out[0].weight)
    nn.init.zeros_(attn.to_out[0].bias)
    return attn


class AVSyncDTransformerBlock(nn.Module):
    """A Stable-Diffusion BasicTransformerBlock with AVSyncD's frame-aware paths.

    Keeps the pretrained submodules under their original names (norm1, attn1,
    norm2, attn2, norm3, ff) so the 2D checkpoint's keys still match, and adds
    ``norm_audio`` / ``attn_audio`` and ``pos_embedding_temp`` / ``norm_temp`` /
    ``attn_temp`` under the released names.  The call signature is the
    diffusers block's, so Transformer2DModel (and its gradient
    checkpointing) drives it unchanged.
    """

    def __init__(self, block: BasicTransformerBlock, audio_dim: int | None, holder: FrameContextHolder):
        super().__init__()
        problems = []
        if block.norm_type != "layer_norm":
            problems.append(f"norm_type={block.norm_type!r} (need 'layer_norm')")
        if block.only_cross_attention or block.double_self_attention:
            problems.append("only_cross_attention / double_self_attention")
        if block.pos_embed is not None:
            problems.append("positional embeddings")
        if block.attn2 is None:
            problems.append("no text cross-attention (attn2)")
        if hasattr(block, "fuser"):
            problems.append("GLIGEN fuser")
        if problems:
            raise ValueError("AVSyncD inflates Stable-Diffusion-style transformer blocks only; this block has "
                             + ", ".join(problems))
        self.holder = holder
        self.norm1, self.attn1 = block.norm1, block.attn1
        self.norm2, self.attn2 = block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff
        self.attn1.set_processor(FirstFrameAttnProcessor())
        dim, heads = block.dim, block.attn1.heads
        ref = block.attn1.to_q.weight
        kw = dict(device=ref.device, dtype=ref.dtype)
        # audio_dim None: the image + text variant (I2VD) has no audio path.
        if audio_dim is not None:
            self.norm_audio = nn.LayerNorm(dim, **kw)
            self.attn_audio = _zero_output(Attention(query_dim=dim, cross_attention_dim=audio_dim, heads=heads,
                                                     dim_head=dim // heads, bias=False, out_bias=True)).to(**kw)
        else:
            self.norm_audio = self.attn_audio = None
        # Temporal attention across frames; the frame index enters through a sinusoid + MLP
        # added to the hidden states before norm_temp (the released order).
        self.pos_embedding_temp = TimestepEmbedding(dim, dim, act_fn="silu").to(**kw)
        self.norm_temp = nn.LayerNorm(dim, **kw)
        self.attn_temp = _zero_output(Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False,
                                                out_bias=True)).to(**kw)

    def _audio(self, h: torch.Tensor, frame_audio_tokens: torch.Tensor) -> torch.Tensor:
        if frame_audio_tokens.shape[0] != h.shape[0]:
            raise ValueError(f"audio cross-attention: {frame_audio_tokens.shape[0]} per-frame token sets for "
                             f"{h.shape[0]} frames")
        return h + self.attn_audio(self.norm_audio(h), encoder_hidden_states=frame_audio_tokens.to(h.dtype))

    def _temporal(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        """h + attn_temp(norm_temp(h + pos)) across the frames at every spatial position."""
        bf, n, c = h.shape
        pos = self.pos_embedding_temp(frame_index_embedding(num_frames, c, device=h.device).to(h.dtype))  # [F, C]
        x = split_frames(h, num_frames, "temporal attention").permute(0, 2, 1, 3)  # [B, N, F, C]
        x = x.reshape(-1, num_frames, c)
        out = self.attn_temp(self.norm_temp(x + pos))  # [B*N, F, C]
        out = out.view(bf // num_frames, n, num_frames, c).permute(0, 2, 1, 3).reshape(bf, n, c)
        return h + out

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, timestep=None, cross_attention_kwargs=None,
                class_labels=None, added_cond_kwargs=None):
        ctx = self.holder.require("AVSyncDTransformerBlock")
        if attention_mask is not None:
            raise ValueError("AVSyncDTransformerBlock: a spatial self-attention mask is not supported")
        if not isinstance(self.attn1.processor, FirstFrameAttnProcessor):
            raise RuntimeError(
                f"attn1 processor was replaced by {type(self.attn1.processor).__name__}; AVSyncD needs "
                "FirstFrameAttnProcessor there (do not call set_attn_processor on the inflated UNet)")
        h = hidden_states
        h = h + self.attn1(self.norm1(h), num_frames=ctx.num_frames)
        if self.attn_audio is not None:
            if ctx.frame_audio_tokens is None:
                raise RuntimeError("AVSyncDTransformerBlock: this block has an audio path but no audio tokens were bound")
            h = self._audio(h, ctx.frame_audio_tokens)
        h = h + self.attn2(self.norm2(h), encoder_hidden_states=encoder_hidden_states,
                           attention_mask=encoder_attention_mask)
        h = self._temporal(h, ctx.num_frames)
        return h + self.ff(self.norm3(h))
