"""AVSyncD's video UNet: a diffusers UNet2DConditionModel inflated in place.

Inflation (the authors' released architecture, docs/avsyncd.md "Architecture"):
* conv_in, conv_out, every ResnetBlock2D's conv1 / conv2 / conv_shortcut and
  every down- and up-sampler conv become :class:`FirstFrameTemporalConv2d`
  (per-frame conv + zero-initialised mix ``conv_temp`` of [first, previous,
  current] frame features).
* every ResnetBlock2D's norm1 / norm2 and conv_norm_out become
  :class:`ClipGroupNorm` (statistics over all frames of a clip); the
  transformers' own GroupNorm stays per frame.
* every BasicTransformerBlock becomes :class:`AVSyncDTransformerBlock`
  (first-frame attention, audio cross-attention, text cross-attention,
  temporal attention, feed-forward).
* everything pretrained is frozen; only the new tensors (``conv_temp``,
  ``*_audio``, ``*_temp``) train.  The inner UNet's state dict then has
  exactly the key names of the released checkpoints (``released.py``).

The diffusers forward (timestep embedding, skip connections...) runs as is on
[B*F, C, H, W]; :class:`AVSyncDUNet` reshapes, repeats the per-clip
conditions per frame and binds the frame context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.checkpoint
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D

from asva_bench.state_dicts import state_dict_mismatch

from .attention import AVSyncDTransformerBlock
from .audio_tokens import AudioTokenGeometry, check_audio_tokens, gather_frame_tokens
from .temporal import (
    ClipGroupNorm,
    FirstFrameTemporalConv2d,
    FrameContext,
    FrameContextHolder,
)

TRAINABLE_WEIGHTS_FILE = "avsyncd_trainable.safetensors"
CONFIG_FILE = "avsyncd_config.json"
#: The network layout of the inflated model; bumped when a change makes older trainable
#: checkpoints compute another function (1: per-frame GroupNorm, before the released layout).
ARCHITECTURE = "released-v2"
#: Sub-module names of the new (trainable) tensors, as in the released checkpoints.
TRAINABLE_MODULES = ("conv_temp", "norm_audio", "attn_audio", "pos_embedding_temp", "norm_temp", "attn_temp")

#: UNet2DConditionModel config keys that decide the shapes of the inflated model.
STRUCTURAL_UNET_KEYS = (
    "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
    "up_block_types", "mid_block_type", "attention_head_dim", "num_attention_heads",
    "cross_attention_dim", "transformer_layers_per_block",
)


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


@dataclass
class AVSyncDConfig:
    """Everything that decides the inflated model's trainable tensors."""

    audio: AudioTokenGeometry | None = field(default_factory=AudioTokenGeometry)  # None: no audio path (I2VD)
    num_frames: int = 12  # default clip length; any F works at run time
    base_unet: dict = field(default_factory=dict)  # STRUCTURAL_UNET_KEYS of the 2D model
    architecture: str = ARCHITECTURE

    def to_dict(self) -> dict:
        return {"audio": None if self.audio is None else self.audio.to_dict(),
                "num_frames": self.num_frames, "architecture": self.architecture,
                "base_unet": {k: _jsonable(v) for k, v in self.base_unet.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "AVSyncDConfig":
        audio = None if d.get("audio") is None else AudioTokenGeometry.from_dict(d["audio"])
        return cls(audio=audio, num_frames=int(d["num_frames"]), base_unet=dict(d.get("base_unet", {})),
                   architecture=str(d.get("architecture", "released-v1 (per-frame GroupNorm)")))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    fa, fb = _flatten(a), _flatten(b)
    return [(k, fa.get(k, "<absent>"), fb.get(k, "<absent>"))
            for k in sorted(set(fa) | set(fb)) if fa.get(k, "<absent>") != fb.get(k, "<absent>")]


def _call_in_context(holder: FrameContextHolder, ctx: FrameContext, module, *args):
    with holder.bind(ctx):
        return module(*args)


class AVSyncDUNet(nn.Module):
    """The inflated UNet: ``forward(sample[B,F,C,H,W], t, text[B,L,D], audio[B,N,Da]) -> eps``."""

    def __init__(self, unet2d: UNet2DConditionModel, config: AVSyncDConfig):
        super().__init__()
        if not isinstance(unet2d, UNet2DConditionModel):
            raise TypeError(f"AVSyncDUNet inflates a diffusers UNet2DConditionModel, got {type(unet2d).__name__}")
        self.config = config
        self.holder = FrameContextHolder()
        self._frame_index_cache: dict[int, torch.Tensor] = {}
        self.unet = unet2d
        self._inflate()

    # -- construction -------------------------------------------------------
    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, audio_dim: int | None = 768, num_frames: int = 12,
                    audio_geometry: AudioTokenGeometry | None = None) -> "AVSyncDUNet":
        """Inflate ``unet2d`` in place (it becomes the wrapper's ``.unet``; deep-copy it first to keep a 2D model).

        ``audio_geometry`` defaults to the ImageBind-huge token layout with
        ``audio_dim`` channels; ``audio_dim=None`` builds the model without
        an audio path (image + text, I2VD).
        """
        if audio_geometry is not None and audio_dim is not None and audio_geometry.dim != audio_dim:
            raise ValueError(f"audio_dim={audio_dim} disagrees with audio_geometry.dim={audio_geometry.dim}")
        if audio_geometry is None and audio_dim is not None:
            audio_geometry = AudioTokenGeometry(dim=audio_dim)
        base = {k: _jsonable(unet2d.config[k]) for k in STRUCTURAL_UNET_KEYS if k in unet2d.config}
        return cls(unet2d, AVSyncDConfig(audio=audio_geometry, num_frames=num_frames, base_unet=base))

    @classmethod
    def from_trainable(cls, unet2d: UNet2DConditionModel, folder) -> "AVSyncDUNet":
        """Inflate ``unet2d`` with the config saved in ``folder`` and load its trainable weights."""
        cfg = AVSyncDConfig.from_dict(_read_config(Path(folder)))
        model = cls.from_unet2d(unet2d, audio_dim=None if cfg.audio is None else cfg.audio.dim,
                                num_frames=cfg.num_frames, audio_geometry=cfg.audio)
        model.load_trainable(folder)
        return model

    def _inflate(self) -> None:
        unet, holder = self.unet, self.holder
        unet.requires_grad_(False)
        temporal = lambda conv: FirstFrameTemporalConv2d.from_conv(conv, holder)  # noqa: E731
        unet.conv_in = temporal(unet.conv_in)
        unet.conv_out = temporal(unet.conv_out)
        if unet.conv_norm_out is not None:
            unet.conv_norm_out = ClipGroupNorm.from_group_norm(unet.conv_norm_out, holder)
        audio_dim = None if self.config.audio is None else self.config.audio.dim
        n_blocks = 0
        for module in list(unet.modules()):
            if isinstance(module, ResnetBlock2D):
                if module.upsample is not None or module.downsample is not None:
                    raise ValueError("AVSyncD inflates Stable-Diffusion-style ResNets; this one resamples "
                                     "inside the block (resnet_time_scale_shift / ResnetDownsampleBlock2D)")
                module.norm1 = ClipGroupNorm.from_group_norm(module.norm1, holder)
                module.norm2 = ClipGroupNorm.from_group_norm(module.norm2, holder)
                module.conv1 = temporal(module.conv1)
                module.conv2 = temporal(module.conv2)
                if module.conv_shortcut is not None:
                    module.conv_shortcut = temporal(module.conv_shortcut)
            elif isinstance(module, (Downsample2D, Upsample2D)) and module.conv is not None:
                new = temporal(module.conv)
                if getattr(module, "Conv2d_0", None) is module.conv:  # diffusers' alias (name="conv")
                    module.Conv2d_0 = new
                module.conv = new
            elif isinstance(module, Transformer2DModel):
                for i, block in enumerate(module.transformer_blocks):
                    module.transformer_blocks[i] = AVSyncDTransformerBlock(block, audio_dim, holder)
                    n_blocks += 1
        left = [n for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]
        if left:
            raise ValueError(f"AVSyncD cannot inflate transformer blocks outside Transformer2DModel: {left}")
        self.num_transformer_blocks = n_blocks
        prefixes = []
        for name, m in self.named_modules():
            if name.rsplit(".", 1)[-1] in TRAINABLE_MODULES:
                m.requires_grad_(True)
                prefixes.append(name + ".")
        self._trainable_prefixes = tuple(prefixes)

    # -- parameters ---------------------------------------------------------
    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if n.startswith(self._trainable_prefixes)]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The temporal and audio parameters, for the optimizer."""
        return [p for _, p in self.trainable_named_parameters()]

    def num_parameters(self) -> dict:
        return {"total": sum(p.numel() for p in self.parameters()),
                "trainable": sum(p.numel() for p in self.trainable_parameters())}

    # The pretrained input conv decides: trainable weights may be kept in fp32 for mixed precision.
    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.conv_in.weight.device

    # -- gradient checkpointing ---------------------------------------------
    def _checkpoint(self, module, *args):
        # Recomputation runs during backward, after forward has unbound the
        # frame context, so the context is passed through and re-bound.
        return torch.utils.checkpoint.checkpoint(_call_in_context, self.holder, self.holder.current, module,
                                                 *args, use_reentrant=False)

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing(gradient_checkpointing_func=self._checkpoint)

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()

    # -- forward ------------------------------------------------------------
    def frame_token_indices(self, num_frames: int) -> torch.Tensor:
        if num_frames not in self._frame_index_cache:
            self._frame_index_cache[num_frames] = self.config.audio.frame_token_indices(num_frames)
        return self._frame_index_cache[num_frames]

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                audio_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """sample [B,F,C,H,W]; timestep scalar or [B]; text [B,L,D]; audio [B,N,Da] -> [B,F,C,H,W]."""
        if sample.ndim != 5:
            raise ValueError(f"AVSyncDUNet: sample must be [B, F, C, H, W], got {tuple(sample.shape)}")
        b, f = sample.shape[:2]
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"AVSyncDUNet: timestep must be a scalar or [{b}], got {tuple(t.shape)}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != b:
            raise ValueError(f"AVSyncDUNet: encoder_hidden_states must be [{b}, L, D], "
                             f"got {tuple(encoder_hidden_states.shape)}")
        frame_tokens = None
        if self.config.audio is None:
            if audio_tokens is not None:
                raise ValueError("AVSyncDUNet was built without an audio path (audio_dim=None); "
                                 "pass audio_tokens=None")
        else:
            if audio_tokens is None:
                raise ValueError("AVSyncDUNet: audio_tokens are required; for the unconditional pass "
                                 "give the null audio tokens (encoder output for an all-zero mel)")
            check_audio_tokens(audio_tokens, self.config.audio, batch=b)
            frame_tokens = gather_frame_tokens(audio_tokens.to(self.dtype), self.frame_token_indices(f))
        ctx = FrameContext(num_frames=f, frame_audio_tokens=frame_tokens)
        with self.holder.bind(ctx):
            out = self.unet(sample.reshape(b * f, *sample.shape[2:]), t.repeat_interleave(f),
                            encoder_hidden_states=encoder_hidden_states.repeat_interleave(f, dim=0),
                            return_dict=False)[0]
        return out.view(b, f, *out.shape[1:])

    # -- trainable checkpoint -----------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.trainable_named_parameters()}

    def save_trainable(self, folder) -> Path:
        """Write the trainable weights (safetensors) and the config (json) into ``folder``, atomically."""
        from safetensors.torch import save_file

        from asva_bench.fsutil import atomic_path, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.detach().to("cpu").contiguous() for n, t in self.trainable_state_dict().items()}
        config_json = json.dumps(self.config.to_dict(), indent=2, sort_keys=True)
        with atomic_path(folder / TRAINABLE_WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "avsyncd_config": config_json})
        atomic_write_text(folder / CONFIG_FILE, config_json + "\n")
        return folder

    def load_trainable(self, folder) -> None:
        """Load weights written by :meth:`save_trainable`; errors name the file and what differs."""
        from safetensors.torch import load_file

        folder = Path(folder)
        saved = _read_config(folder)
        arch = saved.get("architecture", "released-v1 (per-frame GroupNorm)")
        if arch != self.config.architecture:
            raise ValueError(
                f"{folder / CONFIG_FILE}: trained with AVSyncD architecture {arch!r}; this version builds "
                f"{self.config.architecture!r} (docs/avsyncd.md, 'Architecture'), which computes another "
                "function, so the weights cannot be reused: retrain with `asva-bench train avsyncd|i2vd`")
        diffs = config_differences(saved, self.config.to_dict())
        if diffs:
            lines = "; ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, a, b in diffs)
            raise ValueError(
                f"{folder / CONFIG_FILE}: AVSyncD config mismatch ({lines}). Build the model with the "
                "checkpoint's config, e.g. AVSyncDUNet.from_trainable(unet2d, folder), on the same base UNet")
        wpath = folder / TRAINABLE_WEIGHTS_FILE
        if not wpath.is_file():
            raise FileNotFoundError(f"{wpath}: trainable weights missing (written by AVSyncDUNet.save_trainable)")
        tensors = load_file(str(wpath))
        params = dict(self.trainable_named_parameters())
        problem = state_dict_mismatch(params, tensors)
        if problem:
            raise ValueError(f"{wpath}: does not fit this model: {problem}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(tensors[n])


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AVSyncD config missing; expected a folder written by "
                                "AVSyncDUNet.save_trainable")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
