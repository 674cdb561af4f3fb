"""The audio-visual synchronization classifier (docs/protocol.md, "The sync classifier"), paper and mini sizes.

``phi(frames, mel)`` is the classifier's raw logit for "this audio is in sync
with these frames"; RelSync / AlignSync use it as is (sigmoid of a
difference of raw logits, never divided by the training temperature) and
P_Sync is its softmax over shifted candidates.

One network family, three modules (the layout the paper's checkpoint was
released in, one diffusers ModelMixin folder each):

* ``audio_encoder``: 2D CNN over the normalised mel [B, 1, 128, 204]: a 7x7
  stride-2 stem (``conv1``), then four plain conv-BN-ReLU x2 stages
  (``block1..4``, strides 2, 2, 2, 1);
* ``video_encoder``: R(2+1)D-style: a 3x7x7 stem (``conv1``, optional
  max-pool) then four stages (``conv2x..conv5x``) of residual blocks whose
  convolutions are factorised into 1x3x3 spatial + 3x1x1 temporal;
* ``head``: scores one (audio, video) pair.

Paper size (:data:`PAPER_SYNC`): widths 64/128/256/512, 12 frames squash-resized
(bicubic) to 224x224 with CLIP normalisation, both encoders pooled globally to
512-d, head = MLP 1024 -> 512 -> 256 -> 1 (``head.fc``). The parameter names
match the released checkpoint, so its three folders load directly
(:func:`load_modules_folder`).

Mini size (:data:`MINI_SYNC`, ~0.2M parameters): same encoders with small
widths and one block per stage, frames area-downsampled to 32x32 with the
frame difference as extra input channels, and *late temporal fusion*: the
encoders keep their time axis (12 steps), the head runs temporal
convolutions over the concatenated per-step features, averages over time and
maps to the logit. A globally pooled 2-layer MLP could not learn timing at
this size on CPU in minutes; keeping time explicit does (measured when the mini world was sized).

Checkpoints of this project: one safetensors file (keys prefixed
``audio_encoder.`` / ``video_encoder.`` / ``head.``) plus a JSON file with the
config (:func:`save_checkpoint`, :func:`load_checkpoint`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..configs import JsonConfig
from ..state_dicts import state_dict_mismatch
from .base import (
    Backbone,
    BackboneInputError,
    BackboneSpec,
    WeightFile,
    WeightsFormatError,
    check_clips,
    check_mel,
    register_backbone,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MEL_SHAPE = (1, 128, 204)


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncClassifierConfig(JsonConfig):
    """Every size choice of the classifier; saved beside each checkpoint."""

    config_label = "sync classifier config"

    name: str
    # audio encoder: stem width, then the four stages' widths and strides
    audio_stem: int = 64
    audio_freq_pool: int = 1                   # average-pool mel bins by this factor before the stem
    audio_channels: tuple[int, ...] = (64, 128, 256, 512)
    audio_strides: tuple[int, ...] = (2, 2, 2, 1)
    # video encoder: stem width (stride 1x2x2), stages' widths, blocks, strides
    video_stem: int = 64
    video_stem_kernel: tuple[int, ...] = (3, 7, 7)
    video_stem_pool: bool = True               # 1x3x3 stride-2 max-pool after the stem
    video_channels: tuple[int, ...] = (64, 128, 256, 512)
    video_blocks: int = 2
    video_strides: tuple[int, ...] = (1, 2, 2, 2)
    video_temporal_stride: bool = True         # stage strides also apply to time
    # input handling
    num_frames: int = 12
    video_size: int = 224
    resize: str = "bicubic"                    # "bicubic" squash-resize, or "area" (downsampling)
    normalisation: str = "clip"                # "clip" mean/std, or "centre" ((x - 0.5) / 0.25)
    frame_difference: bool = False             # add x_t - x_{t-1} as 3 extra input channels
    # fusion and head
    fusion: str = "global"                     # "global" (pool, MLP) or "temporal" (time-wise convs)
    head_channels: tuple[int, ...] = (512, 256)
    time_steps: int = 12                       # temporal fusion: steps both streams are pooled to
    dropout: float = 0.0

    def __post_init__(self):
        for k in ("audio_channels", "audio_strides", "video_stem_kernel", "video_channels", "video_strides",
                  "head_channels"):
            object.__setattr__(self, k, tuple(int(v) for v in getattr(self, k)))
        if len(self.audio_channels) != len(self.audio_strides):
            raise ValueError(f"sync config {self.name!r}: audio_channels and audio_strides differ in length")
        if len(self.video_channels) != len(self.video_strides):
            raise ValueError(f"sync config {self.name!r}: video_channels and video_strides differ in length")
        if self.fusion not in ("global", "temporal"):
            raise ValueError(f"sync config {self.name!r}: fusion must be 'global' or 'temporal', got {self.fusion!r}")
        if self.resize not in ("bicubic", "area"):
            raise ValueError(f"sync config {self.name!r}: resize must be 'bicubic' or 'area', got {self.resize!r}")
        if self.normalisation not in ("clip", "centre"):
            raise ValueError(f"sync config {self.name!r}: normalisation must be 'clip' or 'centre'")
        if self.fusion == "temporal" and self.video_temporal_stride:
            raise ValueError(f"sync config {self.name!r}: temporal fusion needs video_temporal_stride=False")

    @property
    def audio_dim(self) -> int:
        return self.audio_channels[-1]

    @property
    def video_dim(self) -> int:
        return self.video_channels[-1]



#: The paper's classifier (AVID-CMA backbones, MLP head), docs/protocol.md, "The sync classifier".
PAPER_SYNC = SyncClassifierConfig(name="paper")

#: The mini profile's classifier: same family, small widths, 32x32 frames, temporal fusion.
MINI_SYNC = SyncClassifierConfig(
    name="mini",
    audio_stem=16, audio_freq_pool=4, audio_channels=(16, 24, 32, 48), audio_strides=(2, 2, 2, 1),
    video_stem=16, video_stem_kernel=(1, 3, 3), video_stem_pool=False, video_channels=(16, 24, 32, 48),
    video_blocks=1, video_strides=(2, 2, 2, 1), video_temporal_stride=False,
    video_size=32, resize="area", normalisation="centre", frame_difference=True,
    fusion="temporal", head_channels=(64, 64), time_steps=12,
)

SIZES = {"paper": PAPER_SYNC, "mini": MINI_SYNC}


def config_for_size(size: str) -> SyncClassifierConfig:
    if size not in SIZES:
        raise ValueError(f"unknown sync classifier size {size!r}; choose one of {', '.join(SIZES)}")
    return SIZES[size]


# --------------------------------------------------------------------------
# Audio encoder
# --------------------------------------------------------------------------
class AudioBlock(nn.Module):
    """conv3x3-BN-ReLU twice; the first conv carries the stride (no residual, as AVID-CMA)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class AudioEncoder(nn.Module):
    """mel [B, 1, F, T] -> [B, C] (global pool) or [B, C, T'] (frequency pool only)."""

    def __init__(self, cfg: SyncClassifierConfig):
        super().__init__()
        self.freq_pool = cfg.audio_freq_pool
        self.conv1 = nn.Sequential(nn.Conv2d(1, cfg.audio_stem, 7, stride=2, padding=3, bias=False),
                                   nn.BatchNorm2d(cfg.audio_stem), nn.ReLU(inplace=True))
        cin = cfg.audio_stem
        for i, (c, s) in enumerate(zip(cfg.audio_channels, cfg.audio_strides), start=1):
            self.add_module(f"block{i}", AudioBlock(cin, c, s))
            cin = c
        self.num_blocks = len(cfg.audio_channels)
        self.keep_time = cfg.fusion == "temporal"

    def forward(self, mel):
        if self.freq_pool > 1:
            mel = F.avg_pool2d(mel, (self.freq_pool, 1))
        x = self.conv1(mel.contiguous(memory_format=torch.channels_last))
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return x.mean(dim=2) if self.keep_time else x.mean(dim=(2, 3))


# --------------------------------------------------------------------------
# Video encoder
# --------------------------------------------------------------------------
class R2Plus1DBlock(nn.Module):
    """Residual block with (1x3x3 spatial, 3x1x1 temporal) conv pairs."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        st, ss = stride[0], stride[1]
        self.spt_conv1 = nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, ss, ss), padding=(0, 1, 1), bias=False)
        self.spt_bn1 = nn.BatchNorm3d(cout)
        self.tmp_conv1 = nn.Conv3d(cout, cout, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False)
        self.tmp_bn1 = nn.BatchNorm3d(cout)
        self.spt_conv2 = nn.Conv3d(cout, cout, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.spt_bn2 = nn.BatchNorm3d(cout)
        self.tmp_conv2 = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.out_bn = nn.BatchNorm3d(cout)
        self.res = cin != cout or any(s != 1 for s in stride)
        if self.res:
            self.res_conv = nn.Conv3d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        y = F.relu(self.tmp_bn1(self.tmp_conv1(F.relu(self.spt_bn1(self.spt_conv1(x))))))
        y = self.tmp_conv2(F.relu(self.spt_bn2(self.spt_conv2(y))))
        return F.relu(self.out_bn(y + (self.res_conv(x) if self.res else x)))


class VideoEncoder(nn.Module):
    """video [B, C_in, T, H, W] -> [B, C] (global pool) or [B, C, T] (spatial pool only)."""

    def __init__(self, cfg: SyncClassifierConfig):
        super().__init__()
        cin = 6 if cfg.frame_difference else 3
        k = cfg.video_stem_kernel
        stem = [nn.Conv3d(cin, cfg.video_stem, k, stride=(1, 2, 2), padding=tuple(i // 2 for i in k), bias=False),
                nn.BatchNorm3d(cfg.video_stem), nn.ReLU(inplace=True)]
        if cfg.video_stem_pool:
            stem.append(nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.conv1 = nn.Sequential(*stem)
        c_prev = cfg.video_stem
        self.stage_names = []
        for i, (c, s) in enumerate(zip(cfg.video_channels, cfg.video_strides), start=2):
            stride = (s if cfg.video_temporal_stride else 1, s, s)
            blocks = [R2Plus1DBlock(c_prev, c, stride)] + [R2Plus1DBlock(c, c) for _ in range(cfg.video_blocks - 1)]
            self.add_module(f"conv{i}x", nn.Sequential(*blocks))
            self.stage_names.append(f"conv{i}x")
            c_prev = c
        self.keep_time = cfg.fusion == "temporal"

    def forward(self, x):
        x = self.conv1(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x.mean(dim=(3, 4)) if self.keep_time else x.mean(dim=(2, 3, 4))


# --------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------
class MLPHead(nn.Module):
    """Paper head: concat(audio, video) -> Linear/ReLU -> Linear/ReLU -> Linear -> 1."""

    def __init__(self, cfg: SyncClassifierConfig):
        super().__init__()
        dims = (cfg.audio_dim + cfg.video_dim,) + cfg.head_channels
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.Dropout(cfg.dropout), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], 1))
        self.fc = nn.Sequential(*layers)

    def forward(self, audio_feat, video_feat):
        return self.fc(torch.cat([audio_feat, video_feat], dim=1))[:, 0]


class TemporalHead(nn.Module):
    """Mini head: temporal convs over concat(audio, video) per step, mean over time, linear."""

    def __init__(self, cfg: SyncClassifierConfig):
        super().__init__()
        dims = (cfg.audio_dim + cfg.video_dim,) + cfg.head_channels
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Conv1d(a, b, 3, padding=1), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(dims[-1], 1)

    def forward(self, audio_feat, video_feat):
        return self.out(self.net(torch.cat([audio_feat, video_feat], dim=1)).mean(dim=2))[:, 0]


# --------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------
class SyncClassifier(Backbone):
    """phi(frames [B,T,3,H,W] in [0,1], mel [B,1,128,204]) -> raw sync logits [B].

    ``forward`` is the trainable path (no input checks); ``phi`` is the
    evaluation path (checked inputs, no gradients, float32 out).
    """

    kind = "sync"

    def __init__(self, cfg: SyncClassifierConfig):
        super().__init__()
        self.config = cfg
        self.audio_encoder = AudioEncoder(cfg)
        self.video_encoder = VideoEncoder(cfg)
        self.head = TemporalHead(cfg) if cfg.fusion == "temporal" else MLPHead(cfg)
        mean = CLIP_MEAN if cfg.normalisation == "clip" else (0.5, 0.5, 0.5)
        std = CLIP_STD if cfg.normalisation == "clip" else (0.25, 0.25, 0.25)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)

    # ---- preprocessing -------------------------------------------------
    def preprocess_video(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] in [0, 1] -> network input [B, C, T, S, S]."""
        cfg = self.config
        B, T = clips.shape[:2]
        x = clips.flatten(0, 1)
        size = cfg.video_size
        if tuple(x.shape[-2:]) != (size, size):
            if cfg.resize == "bicubic":
                from torchvision.transforms import InterpolationMode
                from torchvision.transforms.functional import resize
                x = resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
            elif x.shape[-2] % size == 0 and x.shape[-1] % size == 0:  # whole factor: area == average pool
                x = F.avg_pool2d(x, (x.shape[-2] // size, x.shape[-1] // size))
            else:
                x = F.interpolate(x, size=(size, size), mode="area")
        x = x.view(B, T, 3, size, size)
        x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        if cfg.frame_difference:
            diff = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
            x = torch.cat([x, diff], dim=2)
        # channels-last: the CPU (oneDNN) convolutions run about twice as fast
        return x.transpose(1, 2).contiguous(memory_format=torch.channels_last_3d)

    # ---- features ------------------------------------------------------
    def _align_time(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.ndim == 3 and feat.shape[-1] != self.config.time_steps:
            feat = F.adaptive_avg_pool1d(feat, self.config.time_steps)
        return feat

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B,1,128,204] -> [B, C] (global) or [B, C, time_steps] (temporal)."""
        return self._align_time(self.audio_encoder(mel))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """frames [B,T,3,H,W] in [0,1] -> [B, C] or [B, C, time_steps]."""
        return self._align_time(self.video_encoder(self.preprocess_video(clips)))

    def score(self, audio_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
        """Paired features -> [B] raw logits."""
        return self.head(audio_feat, video_feat)

    def pairwise(self, audio_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
        """Every audio against every video: [N, ...] x [M, ...] -> logits [N, M]."""
        n, m = audio_feat.shape[0], video_feat.shape[0]
        a = audio_feat.unsqueeze(1).expand(n, m, *audio_feat.shape[1:]).flatten(0, 1)
        v = video_feat.unsqueeze(0).expand(n, m, *video_feat.shape[1:]).flatten(0, 1)
        return self.score(a, v).view(n, m)

    def forward(self, clips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return self.score(self.encode_audio(mel), self.encode_video(clips))

    # ---- evaluation API ------------------------------------------------
    @torch.no_grad()
    def phi(self, clips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Raw sync logits [B] for frames [B, 12, 3, H, W] in [0, 1] and mel [B, 1, 128, 204]."""
        check_clips(clips, self.name, self.config.num_frames)
        check_mel(mel, self.name, MEL_SHAPE)
        if clips.shape[0] != mel.shape[0]:
            raise BackboneInputError(f"{self.name}: {clips.shape[0]} clips but {mel.shape[0]} mels; "
                                     "phi scores each clip with its own audio")
        return self(self._to_model(clips), self._to_model(mel)).float()

    @torch.no_grad()
    def phi_matrix(self, clips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Raw logits [N_audio, M_video] of every mel against every clip (shift tests, P_Sync)."""
        check_clips(clips, self.name, self.config.num_frames)
        check_mel(mel, self.name, MEL_SHAPE)
        return self.pairwise(self.encode_audio(self._to_model(mel)),
                             self.encode_video(self._to_model(clips))).float()

    @torch.no_grad()
    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """The video encoder's output for checked clips (used by the mini FVD features)."""
        check_clips(clips, self.name, self.config.num_frames)
        return self.encode_video(self._to_model(clips)).float()


def p_sync(logits: torch.Tensor, true_index: int | torch.Tensor) -> torch.Tensor:
    """P_Sync: softmax of raw phi over candidates (no temperature), probability of the true one.

    ``logits`` [..., K] (the last axis holds the shifted candidates).
    """
    p = torch.softmax(logits.double(), dim=-1)
    if isinstance(true_index, int):
        return p[..., true_index]
    return p.gather(-1, torch.as_tensor(true_index).long().unsqueeze(-1))[..., 0]


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
MODULES = ("audio_encoder", "video_encoder", "head")


def _apply(model: nn.Module, sd: Mapping[str, torch.Tensor], where: str) -> None:
    problem = state_dict_mismatch(model.state_dict(), sd, show=4)
    if problem:
        what = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise WeightsFormatError(f"{where}: the weights do not fit the network '{what}': {problem}. "
                                 "Pick the config (size) the checkpoint was trained with.")
    model.load_state_dict(sd, strict=True)


def save_checkpoint(model: SyncClassifier, path, metadata: Mapping | None = None) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` + ``<path>.json`` (config and metadata), atomically."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path, atomic_write_text
    path = Path(path)
    st = path.with_suffix(".safetensors")
    js = path.with_suffix(".json")
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(st) as tmp:
        save_file(sd, str(tmp))
    atomic_write_text(js, json.dumps({"kind": "sync-classifier", "config": model.config.to_dict(),
                                      "metadata": dict(metadata or {})}, indent=2, sort_keys=True) + "\n")
    return st, js


def read_config(json_path) -> tuple[SyncClassifierConfig, dict]:
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: sync classifier config not found; it is written beside the "
                                "safetensors file by `asva-bench sync train`")
    d = json.loads(json_path.read_text())
    if d.get("kind") != "sync-classifier" or "config" not in d:
        raise WeightsFormatError(f"{json_path}: not a sync classifier config (kind={d.get('kind')!r})")
    return SyncClassifierConfig.from_dict(d["config"]), d.get("metadata", {})


def load_checkpoint(path, device: str | torch.device = "cpu") -> SyncClassifier:
    """Load ``<path>.safetensors`` with the config in ``<path>.json`` (either suffix may be given)."""
    from safetensors.torch import load_file
    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not st.is_file():
        raise FileNotFoundError(f"{st}: sync classifier weights not found; train them with "
                                "`asva-bench sync train` or give the right --checkpoint")
    cfg, _ = read_config(js)
    model = SyncClassifier(cfg)
    _apply(model, load_file(str(st)), str(st))
    return model.to(device).eval()


def _read_module_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A diffusers ModelMixin folder's weights (safetensors preferred, else the .bin state dict)."""
    st = folder / "diffusion_pytorch_model.safetensors"
    bn = folder / "diffusion_pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file
        return load_file(str(st))
    if bn.is_file():
        sd = torch.load(bn, map_location="cpu", weights_only=True)
        if not isinstance(sd, Mapping):
            raise WeightsFormatError(f"{bn}: expected a state dict, found {type(sd).__name__}")
        return dict(sd)
    raise FileNotFoundError(f"{folder}: no diffusion_pytorch_model.safetensors or .bin; a released sync "
                            "classifier folder holds audio_encoder/, video_encoder/ and head/, each with "
                            "config.json and diffusion_pytorch_model.bin")


def load_modules_folder(folder, cfg: SyncClassifierConfig = PAPER_SYNC,
                        device: str | torch.device = "cpu") -> SyncClassifier:
    """Load the released three-module layout: ``folder/{audio_encoder,video_encoder,head}/``.

    The head's ``config.json`` (``dim``, ``out_dim``, ``dropout``) is checked
    against ``cfg`` when present.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: sync classifier folder not found; it must hold audio_encoder/, "
                                "video_encoder/ and head/ (the 'modules' folder of the released checkpoint)")
    model = SyncClassifier(cfg)
    sd: dict[str, torch.Tensor] = {}
    for m in MODULES:
        sub = folder / m
        if not sub.is_dir():
            raise FileNotFoundError(f"{folder}: missing sub-folder {m}/ (expected {', '.join(MODULES)})")
        sd.update({f"{m}.{k}": v for k, v in _read_module_weights(sub).items()})
    head_cfg = folder / "head" / "config.json"
    if head_cfg.is_file() and cfg.fusion == "global":
        hc = json.loads(head_cfg.read_text())
        if "dim" in hc and int(hc["dim"]) != cfg.head_channels[0]:
            raise WeightsFormatError(f"{head_cfg}: head width {hc['dim']} != config {cfg.head_channels[0]}")
    # BatchNorm's num_batches_tracked may be absent from old exports; it is unused in eval.
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    _apply(model, sd, str(folder))
    return model.to(device).eval()


def save_modules_folder(model: SyncClassifier, folder) -> Path:
    """Write the three-module layout (config.json + diffusion_pytorch_model.bin each), atomically per file."""
    from ..fsutil import atomic_path, atomic_write_text
    folder = Path(folder)
    sd = model.state_dict()
    class_names = {"audio_encoder": "AudioConv2DNet", "video_encoder": "VideoR2Plus1DNet", "head": "FCHead"}
    for m in MODULES:
        part = {k[len(m) + 1:]: v.detach().cpu().contiguous() for k, v in sd.items() if k.startswith(m + ".")}
        with atomic_path(folder / m / "diffusion_pytorch_model.bin") as tmp:
            torch.save(part, tmp)
        cfg = {"_class_name": class_names[m]}
        if m == "head":
            cfg.update(dim=model.config.head_channels[0], out_dim=1, dropout=model.config.dropout)
        atomic_write_text(folder / m / "config.json", json.dumps(cfg, indent=2) + "\n")
    return folder


# --------------------------------------------------------------------------
# Registry entries
# --------------------------------------------------------------------------
PAPER_SYNC_NAME = "avsync-classifier"
MINI_SYNC_NAME = "mini-sync"
_PAPER_SOURCE = ("Google Drive file 1Paqjad4a8mjujMJBEYqmnNEgGPi595lb (ASVA README, 'AVSync Classifier VGGSS'); "
                 "copy checkpoint-40000/modules/<module>/diffusion_pytorch_model.bin")


def build_paper_sync(spec: BackboneSpec, paths: dict[str, Path], device: str) -> SyncClassifier:
    folder = Path(paths[spec.weights[0].filename]).parent.parent
    return load_modules_folder(folder, PAPER_SYNC, device)


def build_mini_sync(spec: BackboneSpec, paths: dict[str, Path], device: str) -> SyncClassifier:
    return load_checkpoint(paths[spec.weights[0].filename], device)


PAPER_SYNC_SPEC = register_backbone(BackboneSpec(
    name=PAPER_SYNC_NAME, profile="paper", kind="sync",
    weights=tuple(WeightFile(f"{m}/diffusion_pytorch_model.bin", url=None, sha256=None, format="state_dict",
                             note=_PAPER_SOURCE) for m in MODULES),
    preprocessing="frames [B,12,3,H,W] in [0,1] -> bicubic antialiased squash-resize to 224x224 -> CLIP "
                  "mean/std; audio: protocol mel [B,1,128,204]",
    output="phi(frames, mel) -> raw sync logits [B] float32",
    builder=build_paper_sync,
    description="ASVA sync classifier (AVID-CMA audio CNN + R(2+1)D-18 video net + MLP head), VGGSS",
))

# The mini profile's weights ship inside the package (mini_weights/), written by
# `asva-bench train evaluators --profile mini`, which also records each file's
# SHA-256 in mini_weights/manifest.json; the pin is read from there.
MINI_WEIGHTS_PACKAGE = "asva_bench.backbones"
MINI_WEIGHTS_DIR = Path(__file__).resolve().parent / "mini_weights"
MINI_MANIFEST = "manifest.json"
_TRAIN_HINT = "train them with `asva-bench train evaluators --profile mini` (see benchmarks/train_mini_evaluators.py)"


def mini_manifest(folder=None) -> dict:
    path = Path(folder or MINI_WEIGHTS_DIR) / MINI_MANIFEST
    try:
        return json.loads(path.read_text()).get("files", {})
    except FileNotFoundError:
        return {}


def mini_weight_file(filename: str) -> WeightFile:
    """A shipped mini weight file, pinned to the digest in mini_weights/manifest.json."""
    fmt = "json" if filename.endswith(".json") else "safetensors"
    return WeightFile(filename, url=None, sha256=mini_manifest().get(filename, {}).get("sha256"), format=fmt,
                      folder="mini", bundled=f"{MINI_WEIGHTS_PACKAGE}:mini_weights/{filename}",
                      note=f"shipped in the package; {_TRAIN_HINT}")

MINI_SYNC_SPEC = register_backbone(BackboneSpec(
    name=MINI_SYNC_NAME, profile="mini", kind="sync",
    weights=(mini_weight_file("mini-sync.safetensors"), mini_weight_file("mini-sync.json")),
    preprocessing="frames [B,12,3,64,64] in [0,1] -> area downsample to 32x32 -> (x-0.5)/0.25, plus frame "
                  "differences; audio: protocol mel [B,1,128,204]",
    output="phi(frames, mel) -> raw sync logits [B] float32",
    builder=build_mini_sync,
    description="mini sync classifier trained on synth by `asva-bench train evaluators --profile mini`",
))
