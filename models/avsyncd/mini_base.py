"""The mini base model: the mini profile's stand-in for Stable Diffusion 1.5.

A class-text-conditioned latent diffusion model for 64x64 frames with SD
1.5's parts and layout, sized for CPUs:

* ``unet``: a diffusers :class:`UNet2DConditionModel` (cross-attention at
  the 16x16 and 8x8 levels and in the mid block, as SD has it at its three
  upper levels), so AVSyncD-mini inflates it exactly as AVSyncD inflates SD.
* ``vae``: :class:`PatchPCAAutoencoder`, a linear "VAE": each 4x4 RGB patch
  (48 values in [-1, 1]) is projected on its 16 principal components,
  fitted on training frames (64x64x3 -> 16x16x16).  Orthonormal, so the
  diffusion noise is still isotropic pixel noise restricted to that
  subspace; no training, decoding is exact on the subspace (about 34 dB
  PSNR on synth frames).  Why not pixels: a 48-channel 4x4-unshuffled input
  needs wide first-level convs (the UNet must carry all 48 noise values),
  which costs 3-4x the CPU time per frame; why not a trained AutoencoderKL:
  it needs its own training run and the CPU budget cannot afford one.
  It has AutoencoderKL's interface (``encode(x).latent_dist.mode()``,
  ``decode(z).sample``, ``config.scaling_factor``) so AVSyncDPipeline uses it
  as it uses SD's VAE.
* ``text_encoder`` + ``tokenizer``: the stand-in for CLIP text: a word-level
  vocabulary of the training dataset's class texts, a learned embedding and
  a 2-layer transformer giving [B, L, D] context tokens.  Trained jointly
  with the UNet, then frozen.  Unknown words are an error, not a guess.
* ``scheduler``: SD 1.5's DDPM schedule (pipeline.NOISE_SCHEDULE).

On disk the bundle mirrors SD's diffusers folder::

    <folder>/mini_base.json                      bundle record (config, parameter counts, training)
    <folder>/unet/                               UNet2DConditionModel.save_pretrained
    <folder>/vae/                                PatchPCAAutoencoder.save_pretrained
    <folder>/text_encoder/                       MiniTextEncoder.save_pretrained
    <folder>/tokenizer/vocab.json
    <folder>/scheduler/scheduler_config.json
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import (
    DecoderOutput,
    DiagonalGaussianDistribution,
)
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

from asva_bench.configs import JsonConfig

from .pipeline import make_scheduler

BUNDLE_FILE = "mini_base.json"
BUNDLE_FORMAT = 1
#: Where the shipped mini base lives (written by `asva-bench train base`, copied here by the maintainers).
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "mini_base"


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MiniBaseConfig(JsonConfig):
    """Everything that decides the mini base's shapes."""

    config_label = "mini base config"

    image_size: int = 64
    patch_size: int = 4            # latent grid = image_size / patch_size
    latent_channels: int = 16      # principal components kept per patch
    block_out_channels: tuple = (32, 64, 128)
    layers_per_block: int = 1
    attention_levels: int = 2      # the first N (highest-resolution) levels get cross-attention blocks
    attention_heads: int = 2       # diffusers' (misnamed) attention_head_dim = number of heads
    norm_num_groups: int = 8
    text_dim: int = 64             # context width = UNet cross_attention_dim
    text_layers: int = 2
    text_heads: int = 2
    max_text_tokens: int = 8       # <bos> + up to 6 words + <eos>

    @property
    def latent_size(self) -> int:
        return self.image_size // self.patch_size


    def check(self) -> "MiniBaseConfig":
        if self.image_size % (self.patch_size * 2 ** (len(self.block_out_channels) - 1)):
            raise ValueError(f"mini base config: image_size {self.image_size} must be divisible by patch_size "
                             f"{self.patch_size} x 2^{len(self.block_out_channels) - 1} (the UNet's downsamplings)")
        if not 0 < self.latent_channels <= 3 * self.patch_size ** 2:
            raise ValueError(f"mini base config: latent_channels must be in 1..{3 * self.patch_size ** 2}")
        if not 1 <= self.attention_levels <= len(self.block_out_channels):
            raise ValueError("mini base config: attention_levels must be between 1 and the number of levels")
        return self


def build_unet(cfg: MiniBaseConfig) -> UNet2DConditionModel:
    cfg.check()
    n, a = len(cfg.block_out_channels), cfg.attention_levels
    return UNet2DConditionModel(
        sample_size=cfg.latent_size, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        layers_per_block=cfg.layers_per_block, block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=("CrossAttnDownBlock2D",) * a + ("DownBlock2D",) * (n - a),
        up_block_types=("UpBlock2D",) * (n - a) + ("CrossAttnUpBlock2D",) * a,
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=cfg.text_dim,
        attention_head_dim=cfg.attention_heads, norm_num_groups=cfg.norm_num_groups)


# --------------------------------------------------------------------------
# Latent space: 4x4 patches projected on their principal components
# --------------------------------------------------------------------------
class PatchPCAAutoencoder(ModelMixin, ConfigMixin):
    """Linear autoencoder with AutoencoderKL's interface: x [N,3,H,W] in [-1,1] <-> z [N,k,H/p,W/p].

    ``z = basis @ (patch - mean)``; ``patch = basis^T @ z + mean`` with
    orthonormal ``basis`` rows (principal directions, largest first).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, patch_size: int = 4, latent_channels: int = 16,
                 scaling_factor: float = 1.0):
        super().__init__()
        d = in_channels * patch_size ** 2
        self.register_buffer("patch_mean", torch.zeros(d))
        self.register_buffer("basis", torch.eye(d)[:latent_channels].clone())
        self.register_buffer("explained_variance", torch.zeros(()))

    @classmethod
    @torch.no_grad()
    def fit(cls, images: torch.Tensor, patch_size: int = 4, latent_channels: int = 16) -> "PatchPCAAutoencoder":
        """Principal components of the patches of ``images`` [N, 3, H, W] in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"PatchPCAAutoencoder.fit: images must be [N, 3, H, W], got {tuple(images.shape)}")
        model = cls(in_channels=3, patch_size=patch_size, latent_channels=latent_channels)
        p = F.pixel_unshuffle(images.double().cpu() * 2.0 - 1.0, patch_size)  # [N, d, h, w]
        rows = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        mean = rows.mean(0)
        centred = rows - mean
        cov = centred.T @ centred / max(1, rows.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        basis = evecs[:, :latent_channels].T.contiguous()  # [k, d]
        # sign convention: each direction's largest entry is positive (eigh's sign is arbitrary)
        signs = torch.sign(basis.gather(1, basis.abs().argmax(1, keepdim=True)))
        basis = basis * signs
        model.patch_mean.copy_(mean.float())
        model.basis.copy_(basis.float())
        model.explained_variance.fill_(float(evals[:latent_channels].sum() / evals.sum()))
        return model

    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        p = F.pixel_unshuffle(x, self.config.patch_size)
        p = p - self.patch_mean.to(p.dtype)[None, :, None, None]
        return torch.einsum("kd,bdhw->bkhw", self.basis.to(p.dtype), p)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        z = self._latent(x)
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        p = torch.einsum("kd,bkhw->bdhw", self.basis.to(z.dtype), z) + self.patch_mean.to(z.dtype)[None, :, None, None]
        x = F.pixel_shuffle(p, self.config.patch_size)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self._latent(x)).sample


# --------------------------------------------------------------------------
# Text: word vocabulary + small transformer (the stand-in for CLIP)
# --------------------------------------------------------------------------
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def text_words(text: str) -> list[str]:
    """Lower-case words; underscores and punctuation separate them ('hammer_strike' -> hammer, strike)."""
    return re.findall(r"[a-z0-9]+", str(text).lower())


class MiniTokenizer:
    """Word-level tokenizer over a closed vocabulary; called like a Hugging Face tokenizer.

    ``<bos> words <eos> <pad>...`` padded to ``model_max_length``; the empty
    string is the unconditional prompt.  A word outside the vocabulary or a
    text too long is an error naming the text and the known words.
    """

    def __init__(self, words: Sequence[str], model_max_length: int = 8):
        words = list(dict.fromkeys(words))
        bad = [w for w in words if text_words(w) != [w]]
        if bad:
            raise ValueError(f"MiniTokenizer: vocabulary entries must be single lower-case words, got {bad}")
        self.words = words
        self.model_max_length = int(model_max_length)
        self.vocab = {w: i + len(SPECIAL_TOKENS) for i, w in enumerate(words)}

    @classmethod
    def from_texts(cls, texts: Sequence[str], model_max_length: int = 8) -> "MiniTokenizer":
        return cls(sorted({w for t in texts for w in text_words(t)}), model_max_length)

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.words)

    def encode(self, text: str) -> list[int]:
        ids = [BOS_ID]
        for w in text_words(text):
            if w not in self.vocab:
                close = difflib.get_close_matches(w, self.words, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(
                    f"mini text encoder: unknown word '{w}' in text {text!r}.{hint} The mini base only knows "
                    f"the words of the class texts it was trained on: {', '.join(self.words)}. Give one of "
                    "the dataset's class texts (or '' for no text)")
            ids.append(self.vocab[w])
        ids.append(EOS_ID)
        if len(ids) > self.model_max_length:
            raise ValueError(f"mini text encoder: text {text!r} has {len(ids) - 2} words; at most "
                             f"{self.model_max_length - 2} fit its {self.model_max_length} tokens")
        return ids

    def __call__(self, texts, padding="max_length", max_length: int | None = None, truncation: bool = True,
                 return_tensors: str = "pt"):
        """HF-style call: returns an object with ``input_ids`` LongTensor [B, max_length]."""
        if isinstance(texts, str):
            texts = [texts]
        length = int(max_length or self.model_max_length)
        if length != self.model_max_length:
            raise ValueError(f"MiniTokenizer pads to its model_max_length {self.model_max_length}, "
                             f"got max_length={length}")
        ids = torch.full((len(texts), length), PAD_ID, dtype=torch.long)
        for i, t in enumerate(texts):
            row = self.encode(t)
            ids[i, :len(row)] = torch.tensor(row)
        return SimpleNamespace(input_ids=ids)

    # -- files --------------------------------------------------------------
    def save(self, folder) -> None:
        from asva_bench.fsutil import atomic_write_text
        atomic_write_text(Path(folder) / "vocab.json", json.dumps(
            {"special_tokens": list(SPECIAL_TOKENS), "words": self.words,
             "model_max_length": self.model_max_length}, indent=1) + "\n")

    @classmethod
    def load(cls, folder) -> "MiniTokenizer":
        path = Path(folder) / "vocab.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: mini tokenizer vocabulary missing (written by MiniBase.save)")
        d = json.loads(path.read_text())
        if list(d.get("special_tokens", [])) != list(SPECIAL_TOKENS):
            raise ValueError(f"{path}: special tokens {d.get('special_tokens')} differ from {list(SPECIAL_TOKENS)}")
        return cls(d["words"], d["model_max_length"])


class MiniTextEncoder(ModelMixin, ConfigMixin):
    """Token ids [B, L] -> context tokens [B, L, dim] (returned as a 1-tuple, like CLIPTextModel)."""

    @register_to_config
    def __init__(self, vocab_size: int, max_length: int = 8, dim: int = 64, layers: int = 2, heads: int = 2):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(max_length, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor):
        if input_ids.ndim != 2 or input_ids.shape[1] > self.config.max_length:
            raise ValueError(f"MiniTextEncoder: input_ids must be [B, <= {self.config.max_length}], "
                             f"got {tuple(input_ids.shape)}")
        x = self.token_embedding(input_ids) + self.position_embedding[:input_ids.shape[1]]
        return (self.final_norm(self.encoder(x)),)


# --------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------
class _QuietDiffusers:
    """Silence diffusers' advice (accelerate, dtype casting) while saving and loading these tiny models."""

    def __enter__(self):
        from diffusers.utils import logging as dlog
        self._level = dlog.get_verbosity()
        dlog.set_verbosity_error()

    def __exit__(self, *exc):
        from diffusers.utils import logging as dlog
        dlog.set_verbosity(self._level)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@dataclass
class MiniBase:
    """UNet + latent codec + text encoder + tokenizer of the mini profile."""

    unet: UNet2DConditionModel
    vae: PatchPCAAutoencoder
    text_encoder: MiniTextEncoder
    tokenizer: MiniTokenizer
    config: MiniBaseConfig = field(default_factory=MiniBaseConfig)
    info: dict = field(default_factory=dict)  # training record, written into mini_base.json

    @classmethod
    def create(cls, class_texts: Sequence[str], vae: PatchPCAAutoencoder,
               config: MiniBaseConfig = MiniBaseConfig(), seed: int = 0) -> "MiniBase":
        """A freshly initialised model for ``class_texts`` with a fitted ``vae``."""
        config.check()
        if (vae.config.patch_size, vae.config.latent_channels) != (config.patch_size, config.latent_channels):
            raise ValueError(f"vae has patch {vae.config.patch_size} / {vae.config.latent_channels} channels, "
                             f"config wants {config.patch_size} / {config.latent_channels}")
        torch.manual_seed(seed)
        tok = MiniTokenizer.from_texts(class_texts, config.max_text_tokens)
        for t in class_texts:
            tok.encode(t)  # every class text must fit
        text = MiniTextEncoder(tok.vocab_size, config.max_text_tokens, config.text_dim, config.text_layers,
                               config.text_heads)
        return cls(build_unet(config), vae, text, tok, config)

    def parts(self) -> dict:
        """The components by SD folder names (what load_sd_folder returns for SD 1.5)."""
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder, "tokenizer": self.tokenizer}

    def to(self, device=None, dtype: torch.dtype | None = None) -> "MiniBase":
        with _QuietDiffusers():
            for m in (self.unet, self.vae, self.text_encoder):
                m.to(device) if dtype is None else m.to(device, dtype)
        return self

    def eval(self) -> "MiniBase":
        for m in (self.unet, self.vae, self.text_encoder):
            m.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def num_parameters(self) -> dict:
        n = {"unet": _count(self.unet), "text_encoder": _count(self.text_encoder),
             "vae_buffers": sum(b.numel() for b in self.vae.buffers())}
        n["total"] = sum(n.values())
        return n

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Class texts -> context [B, L, D] (gradients flow when the encoder trains)."""
        ids = self.tokenizer(list(texts)).input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids)[0]

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> latents [N, k, h, w] (scaled like SD's)."""
        return self.vae.encode(images * 2.0 - 1.0).latent_dist.mode() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(latents / self.vae.config.scaling_factor).sample + 1.0) / 2.0).clamp(0.0, 1.0)

    # -- files --------------------------------------------------------------
    def save(self, folder, dtype: torch.dtype = torch.float16) -> Path:
        """Write the bundle (UNet and text encoder weights in ``dtype``) into ``folder``, atomically:
        built in a temporary sibling folder, then swapped in."""
        from asva_bench.fsutil import atomic_folder
        folder = Path(folder)
        with atomic_folder(folder) as tmp, _QuietDiffusers():
            import copy
            for name, module in (("unet", self.unet), ("text_encoder", self.text_encoder)):
                copy.deepcopy(module).to("cpu", dtype).save_pretrained(tmp / name)
            copy.deepcopy(self.vae).to("cpu", torch.float32).save_pretrained(tmp / "vae")
            self.tokenizer.save(tmp / "tokenizer")
            make_scheduler("ddpm").save_config(tmp / "scheduler")
            record = {"format": BUNDLE_FORMAT, "config": self.config.to_dict(),
                      "weights_dtype": str(dtype).replace("torch.", ""),
                      "parameters": self.num_parameters(),
                      "latent": {"kind": "patch-pca", "patch_size": self.vae.config.patch_size,
                                 "channels": self.vae.config.latent_channels,
                                 "explained_variance": round(float(self.vae.explained_variance), 6)},
                      "class_texts_vocabulary": self.tokenizer.words, "info": self.info}
            (tmp / BUNDLE_FILE).write_text(json.dumps(record, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder=DEFAULT_WEIGHTS, device="cpu", torch_dtype: torch.dtype = torch.float32) -> "MiniBase":
        folder = Path(folder)
        record_path = folder / BUNDLE_FILE
        if not record_path.is_file():
            raise FileNotFoundError(
                f"{record_path}: no mini base here. Train one with `asva-bench train base --profile mini "
                f"--out DIR` (its DIR/mini_base folder is the bundle), or restore the shipped weights in "
                f"{DEFAULT_WEIGHTS}")
        record = json.loads(record_path.read_text())
        if record.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{record_path}: bundle format {record.get('format')} is not {BUNDLE_FORMAT}; "
                             "retrain or update asva-bench")
        cfg = MiniBaseConfig.from_dict(record["config"])
        missing = [p for p in ("unet/config.json", "vae/config.json", "text_encoder/config.json",
                               "tokenizer/vocab.json") if not (folder / p).is_file()]
        if missing:
            raise FileNotFoundError(f"mini base {folder} is missing {', '.join(missing)}; re-export it with "
                                    "MiniBase.save or retrain")
        kw = {"torch_dtype": torch_dtype, "low_cpu_mem_usage": False}
        with _QuietDiffusers():
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", **kw)
            vae = PatchPCAAutoencoder.from_pretrained(folder / "vae", **kw)
            text = MiniTextEncoder.from_pretrained(folder / "text_encoder", **kw)
        tok = MiniTokenizer.load(folder / "tokenizer")
        base = cls(unet, vae, text, tok, cfg, dict(record.get("info", {})))
        for m in (unet, vae, text):
            m.requires_grad_(False)
        return base.to(device).eval()


# --------------------------------------------------------------------------
# Sampling (the base alone: class text -> image)
# --------------------------------------------------------------------------
@torch.no_grad()
def sample_images(base: MiniBase, texts: Sequence[str], num_inference_steps: int = 50, scheduler: str = "ddim",
                  guidance_scale: float = 3.0, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Generate one image per text: [B, 3, H, W] in [0, 1].

    Classifier-free guidance against the empty text when ``guidance_scale``
    != 1.  Image i starts from noise seeded ``seed + i`` (independent of the
    batch).  ``scheduler``: ddim | pndm | ddpm on SD 1.5's schedule.
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    dev, dtype = base.device, base.unet.dtype
    sched = make_scheduler(scheduler)
    sched.set_timesteps(num_inference_steps, device=dev)
    cfg = base.config
    shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + i))
                         for i in range(len(texts))])
    latents = (noise * sched.init_noise_sigma).to(dev, dtype)
    guided = guidance_scale != 1.0
    ctx = base.encode_text(texts).to(dtype)
    if guided:
        ctx = torch.cat([base.encode_text([""] * len(texts)).to(dtype), ctx])
    for t in tqdm(sched.timesteps, desc="mini base sampling", disable=not progress, leave=False):
        inp = sched.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        eps = base.unet(inp, t, encoder_hidden_states=ctx).sample
        if guided:
            e_null, e_text = eps.chunk(2)
            eps = e_null + guidance_scale * (e_text - e_null)
        latents = sched.step(eps, t, latents).prev_sample
    return base.decode_latents(latents.float() if dtype != torch.float32 else latents)
