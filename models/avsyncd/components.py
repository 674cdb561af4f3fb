"""The frozen parts AVSyncD and I2VD are built on, per profile, and their identity.

Training, the adapters and ``asva-bench animate`` all need the same things:
a 2D text-to-image base (UNet to inflate, latent codec, text encoder), the
frozen audio encoder with its token geometry, and the null audio tokens.

================  ==========================================  =================================
profile           base                                        audio encoder (tokens)
================  ==========================================  =================================
paper             Stable Diffusion 1.5 diffusers folder       ImageBind-huge: [B, 229, 768]
                  (``--base`` / $ASVA_SD15_DIR)               (``imagebind-huge`` backbone)
mini              the mini base bundle (mini_base.py;          mini-embedding: [B, 49, 96]
                  shipped in models/avsyncd/weights)          (1 global + 4 x 12 patches)
================  ==========================================  =================================

A trained AVSyncD checkpoint only makes sense on the exact frozen weights
it was trained with, so :func:`frozen_identity` records fingerprints of the
base UNet and the audio encoder and :func:`check_identity` refuses a
mismatch with an error that names both.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .audio_tokens import IMAGEBIND_HUGE_AUDIO, AudioTokenGeometry, null_audio_tokens

#: Environment variable naming a local Stable Diffusion 1.5 diffusers folder (paper profile).
SD15_ENV = "ASVA_SD15_DIR"
#: Where the shipped mini checkpoints live (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_MINI = {"avsyncd": WEIGHTS_DIR / "avsyncd_mini", "i2vd": WEIGHTS_DIR / "i2vd_mini"}
#: Written next to the trainable weights: what the checkpoint was trained on.
TRAINING_RECORD = "avsyncd_training.json"

#: Token layout of the mini-embedding audio trunk (asva_bench/backbones/mini_embedding.py):
#: the 128x204 mel is pooled to a 4 x 12 (frequency x time) grid, so time column j covers
#: mel frames [17 j, 17 j + 17), i.e. about [0.17 j, 0.17 j + 0.185) s, one column per
#: 6 fps frame.  The released window rule (ceil(12 / 12) = 1 column per frame) gives
#: frame k column k: the 0.185 s that start at its instant.
MINI_AUDIO_GEOMETRY = AudioTokenGeometry(n_freq=4, n_time=12, dim=96, n_global=1, patch_kernel=17,
                                         patch_stride=17)

GEOMETRIES = {"paper": IMAGEBIND_HUGE_AUDIO, "mini": MINI_AUDIO_GEOMETRY}
AUDIO_ENCODERS = {"paper": "imagebind-huge", "mini": "mini-embedding"}


class ComponentError(FileNotFoundError):
    """A frozen part is missing or is not the one a checkpoint was trained on."""


# --------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------
def file_fingerprint(path, chunk: int = 16 * 2**20) -> str:
    """The file's sha256 (as sha256sum prints it) up to 4 chunks of 16 MiB; beyond,
    'quick:' + sha256 of (size, first 16 MiB, last 16 MiB), which tells Stable Diffusion's
    3.4 GB UNets apart without reading them whole."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= 4 * chunk:
            return hashlib.sha256(f.read()).hexdigest()
        h = hashlib.sha256(str(size).encode())
        h.update(f.read(chunk))
        f.seek(size - chunk)
        h.update(f.read())
    return "quick:" + h.hexdigest()


def _weight_file(folder: Path) -> Path | None:
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def tensor_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names, shapes, float32 values): for weights without a file."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------
# The frozen parts
# --------------------------------------------------------------------------
@dataclass
class FrozenParts:
    """Everything AVSyncD keeps frozen, on one device."""

    profile: str
    unet2d: torch.nn.Module            # the 2D UNet to inflate (inflation modifies it in place)
    vae: torch.nn.Module               # AutoencoderKL or the mini PatchPCAAutoencoder
    text_encoder: torch.nn.Module
    tokenizer: object
    audio_encoder: object | None       # an EmbeddingModel with audio_tokens(mel); None for I2VD
    geometry: AudioTokenGeometry | None
    identity: dict = field(default_factory=dict)
    _text_cache: dict = field(default_factory=dict, repr=False)
    _null: torch.Tensor | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.unet2d.parameters()).device

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> context [B, L, D] (float32), cached per distinct text (class texts repeat)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            ids = self.tokenizer(list(missing), padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            emb = self.text_encoder(ids.to(self.device))[0].float()
            for t, e in zip(missing, emb):
                self._text_cache[t] = e
        return torch.stack([self._text_cache[t] for t in texts])

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> latents [N, C, h, w] (posterior mode x scaling factor, as SD)."""
        x = frames.to(self.device, _module_dtype(self.vae)) * 2.0 - 1.0
        z = self.vae.encode(x).latent_dist.mode()
        return z.float() * float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def audio_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel [B, 1, 128, 204] -> AVSyncD's audio tokens [B, N, D] (float32): the
        encoder's trunk tokens through a parameter-free LayerNorm (see :func:`normalise_audio_tokens`)."""
        if self.audio_encoder is None:
            raise ValueError("these frozen parts were loaded without an audio encoder (I2VD)")
        return normalise_audio_tokens(self.audio_encoder.audio_tokens(mel).float())

    def null_tokens(self) -> torch.Tensor:
        """[1, N, D]: the encoder's tokens for an all-zero normalised mel (docs/avsyncd.md)."""
        if self._null is None:
            self._null = null_audio_tokens(self.audio_tokens)
        return self._null


#: eps of the released audio encoder's final LayerNorm (weight 1, bias 0, never trained).
AUDIO_TOKEN_NORM_EPS = 1e-6


def normalise_audio_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channel axis without affine parameters, eps 1e-6.

    The released AVSyncD audio encoder ends in ``LayerNorm(768, eps=1e-6)`` at its
    initial weight 1 / bias 0, applied to the ImageBind trunk tokens (null tokens
    included) before the UNet sees them; both profiles do the same.
    """
    return torch.nn.functional.layer_norm(tokens, (tokens.shape[-1],), eps=AUDIO_TOKEN_NORM_EPS)


def _module_dtype(m: torch.nn.Module) -> torch.dtype:
    for t in list(m.parameters()) + list(m.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def mini_base_folder(base=None) -> Path:
    from .mini_base import DEFAULT_WEIGHTS
    return Path(base).expanduser() if base else DEFAULT_WEIGHTS


def sd15_folder(base=None) -> Path:
    value = base or os.environ.get(SD15_ENV)
    if not value:
        raise ComponentError(
            f"the paper profile builds AVSyncD on Stable Diffusion 1.5: give its local diffusers folder "
            f"with --base DIR (adapter: --model-arg base=DIR) or set ${SD15_ENV}; download it with "
            "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR` "
            "(unet/, vae/, text_encoder/, tokenizer/ are needed)")
    return Path(value).expanduser()


def load_audio_encoder(profile: str, audio_encoder=None, device="cpu"):
    """The frozen audio encoder: a checkpoint path (mini: mini-embedding.safetensors) or the
    profile's registered backbone.  Returns (encoder, identity dict)."""
    if audio_encoder:
        path = Path(audio_encoder).expanduser()
        if profile != "mini":
            raise ComponentError(f"--audio-encoder {path}: only the mini profile takes an encoder file; the "
                                 "paper profile uses the registered imagebind-huge backbone")
        from asva_bench.backbones.mini_embedding import load_checkpoint
        enc = load_checkpoint(path.with_suffix(".safetensors"), device)
        enc.requires_grad_(False)
        return enc, {"name": "mini-embedding", "file": str(path.with_suffix(".safetensors")),
                     "sha256": file_fingerprint(path.with_suffix(".safetensors"))}
    import asva_bench.backbones.mini_embedding  # noqa: F401  (registers the mini backbone)
    from asva_bench.backbones import build_backbone
    name = AUDIO_ENCODERS[profile]
    enc = build_backbone(name, device=device)
    digests = dict(getattr(enc, "weight_sha256", {}) or {})
    sha = next((d for f, d in sorted(digests.items()) if f.endswith((".safetensors", ".pth", ".pt", ".bin"))),
               None) or tensor_fingerprint(enc)
    return enc, {"name": name, "sha256": sha}


def load_frozen_parts(profile: str, base=None, audio_encoder=None, with_audio: bool = True,
                      device="cpu") -> FrozenParts:
    """Load the frozen parts of ``profile`` ("paper" | "mini") on ``device``.

    ``base``: mini base bundle folder (default: the shipped one) or SD 1.5
    folder (default: $ASVA_SD15_DIR).  ``audio_encoder``: mini only, a
    mini-embedding checkpoint path (default: the registered backbone).
    """
    if profile == "mini":
        from .mini_base import BUNDLE_FILE, MiniBase
        folder = mini_base_folder(base)
        base_obj = MiniBase.load(folder, device=device)
        parts = dict(unet=base_obj.unet, vae=base_obj.vae, text_encoder=base_obj.text_encoder,
                     tokenizer=base_obj.tokenizer)
        record = folder / BUNDLE_FILE
        base_id = {"kind": "mini-base", "folder": str(folder)}
    elif profile == "paper":
        from .pipeline import load_sd_folder
        folder = sd15_folder(base)
        parts = load_sd_folder(folder, text_encoder=True)
        for k in ("unet", "vae", "text_encoder"):
            parts[k].to(device).requires_grad_(False).eval()
        record = None
        base_id = {"kind": "stable-diffusion-1.5", "folder": str(folder)}
    else:
        raise ValueError(f"unknown profile {profile!r}; choose paper or mini")
    wfile = _weight_file(folder / "unet")
    if wfile is None:
        raise ComponentError(f"{folder / 'unet'}: no UNet weight file (diffusion_pytorch_model.safetensors)")
    base_id["unet_sha256"] = file_fingerprint(wfile)
    if record is not None:
        base_id["record_sha256"] = hashlib.sha256(record.read_bytes()).hexdigest()
    enc, enc_id = (load_audio_encoder(profile, audio_encoder, device) if with_audio else (None, None))
    identity = {"profile": profile, "base": base_id, "audio_encoder": enc_id}
    geometry = encoder_geometry(profile, enc) if with_audio else None
    return FrozenParts(profile, parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"], enc,
                       geometry, identity)


def encoder_geometry(profile: str, encoder) -> AudioTokenGeometry:
    """The profile's token geometry, checked against the encoder's declared grid and width."""
    g = GEOMETRIES[profile]
    grid, dim = tuple(getattr(encoder, "audio_token_grid", ())), getattr(encoder, "audio_token_dim", None)
    if grid and (tuple(grid) != (g.n_freq, g.n_time) or dim != g.dim):
        raise ComponentError(f"audio encoder {getattr(encoder, 'name', type(encoder).__name__)} gives a "
                             f"{grid[0]}x{grid[1]} token grid of width {dim}; the {profile} AVSyncD expects "
                             f"{g.n_freq}x{g.n_time} of width {g.dim}")
    return g


def check_identity(trained: dict, parts: FrozenParts, where) -> None:
    """Refuse a checkpoint trained on other frozen weights than ``parts``."""
    problems = []
    if trained.get("profile") != parts.identity["profile"]:
        problems.append(f"profile: trained {trained.get('profile')!r}, loading {parts.identity['profile']!r}")
    tb, pb = trained.get("base") or {}, parts.identity["base"]
    if tb.get("unet_sha256") != pb.get("unet_sha256"):
        problems.append(f"base UNet: trained on {tb.get('folder')} (sha {str(tb.get('unet_sha256'))[:12]}), "
                        f"loading {pb.get('folder')} (sha {str(pb.get('unet_sha256'))[:12]})")
    ta, pa = trained.get("audio_encoder"), parts.identity["audio_encoder"]
    if (ta is None) != (pa is None) or (ta and ta.get("sha256") != pa.get("sha256")):
        problems.append(f"audio encoder: trained with {ta and (ta.get('name'), str(ta.get('sha256'))[:12])}, "
                        f"loading {pa and (pa.get('name'), str(pa.get('sha256'))[:12])}")
    if problems:
        raise ComponentError(
            f"{where}: this checkpoint was trained on other frozen weights ({'; '.join(problems)}). "
            "Load it with the base / audio encoder it names, or retrain it on these "
            "(`asva-bench train avsyncd|i2vd ...`)")


def read_training_record(folder) -> dict:
    path = Path(folder) / TRAINING_RECORD
    if not path.is_file():
        raise ComponentError(f"{path}: training record missing; a checkpoint folder written by "
                             "`asva-bench train avsyncd|i2vd` holds avsyncd_config.json, "
                             "avsyncd_trainable.safetensors and avsyncd_training.json")
    return json.loads(path.read_text())
