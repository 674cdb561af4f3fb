"""The mini audio-image-text embedding model: the mini profile's stand-in for ImageBind.

Three towers map into one shared, unit-normalised space (``embed_dim``),
trained contrastively on synth (CLIP-style symmetric InfoNCE over
image-audio, audio-text and image-text pairs, see
:mod:`asva_bench.training.embedding_trainer`). Used for IA, IT and AlignSync
in the mini profile, for the mini FID features (:mod:`.mini_features`), and
as the audio encoder of mini AVSyncD.

* Image tower: frames [N, 3, 64, 64] in [0, 1] (other sizes are resized,
  antialiased bilinear) -> (x - 0.5) / 0.25 -> four conv stages (stride 2
  each: 32, 16, 8, 4 px; 16/32/64/128 channels) -> global average pool (the FID features use the
  pooled output of every stage) -> linear to ``embed_dim``.
* Audio tower (ImageBind-like trunk + head): the normalised mel
  [B, 1, 128, 204] -> 2x2 average pool -> three stride-2 conv stages (8 x 13 map) ->
  adaptive average pool to the token grid F x T = 4 x 12 (each token covers
  32 mel bins and 17 mel frames = 0.17 s, about one 6 fps video frame; token
  column t covers the moment of video frame t) -> 1x1 projection to
  ``audio_token_dim`` + learned position embeddings, a learned global token
  in front -> one pre-norm transformer layer. ``audio_tokens`` returns these
  1 + F*T tokens (global first, then frequency-major patches, as ImageBind's
  12 x 19); the head is LayerNorm -> global token -> linear to ``embed_dim``.
* Text tower: bag of words over a fixed vocabulary (the words of the synth
  class texts, stored with the weights) -> mean of word embeddings -> MLP.
  Words are lower-cased and split on spaces / underscores / punctuation; a
  word outside the vocabulary is an error that lists the vocabulary (the
  tower cannot represent it, and silently dropping it would change scores).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..configs import JsonConfig
from .base import (
    BackboneInputError,
    BackboneSpec,
    EmbeddingModel,
    WeightsFormatError,
    register_backbone,
)


@dataclass(frozen=True)
class MiniEmbeddingConfig(JsonConfig):

    config_label = "mini embedding config"
    embed_dim: int = 128
    image_size: int = 64
    image_channels: tuple[int, ...] = (16, 32, 64, 128)
    audio_mel_pool: int = 2
    audio_channels: tuple[int, ...] = (16, 32, 64)
    audio_token_grid: tuple[int, int] = (4, 12)
    audio_token_dim: int = 96
    audio_heads: int = 4
    text_dim: int = 64
    vocabulary: tuple[str, ...] = ()

    def __post_init__(self):
        for k in ("image_channels", "audio_channels", "audio_token_grid", "vocabulary"):
            object.__setattr__(self, k, tuple(getattr(self, k)))



_WORD = re.compile(r"[a-z0-9]+")


def words_of(text: str) -> list[str]:
    """Lower-case words of a class text ('playing_violin__fiddle' -> ['playing', 'violin', 'fiddle'])."""
    return _WORD.findall(text.lower().replace("_", " "))


def build_vocabulary(texts: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({w for t in texts for w in words_of(t)}))


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ImageTower(nn.Module):
    """[N, 3, 64, 64] normalised -> per-stage pooled features and the embedding."""

    def __init__(self, cfg: MiniEmbeddingConfig):
        super().__init__()
        # the first stage is a single strided conv: a second one at 32x32 px
        # would cost as much as the rest of the tower
        stages, cin = [], 3
        for i, c in enumerate(cfg.image_channels):
            stages.append(nn.Sequential(_conv_bn(cin, c, 2), *([_conv_bn(c, c, 1)] if i else [])))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.proj = nn.Linear(cin, cfg.embed_dim)

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = []
        for s in self.stages:
            x = s(x)
            pooled.append(x.mean(dim=(2, 3)))
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stage_features(x)[-1])


class AudioTower(nn.Module):
    """mel [B, 1, 128, 204] -> tokens [B, 1 + F*T, C] (trunk) -> embedding (head)."""

    def __init__(self, cfg: MiniEmbeddingConfig):
        super().__init__()
        convs, cin = [], 1
        if cfg.audio_mel_pool > 1:  # 128x204 -> 64x102 first: cheap, and finer detail is not needed
            convs.append(nn.AvgPool2d(cfg.audio_mel_pool))
        for i, c in enumerate(cfg.audio_channels):
            convs.append(nn.Sequential(_conv_bn(cin, c, 2), *([_conv_bn(c, c, 1)] if i else [])))
            cin = c
        self.convs = nn.Sequential(*convs)
        self.grid = tuple(cfg.audio_token_grid)
        d = cfg.audio_token_dim
        self.to_tokens = nn.Conv2d(cin, d, 1)
        self.pos = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], d))
        self.global_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.global_token, std=0.02)
        self.block = nn.TransformerEncoderLayer(d, cfg.audio_heads, dim_feedforward=2 * d, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, cfg.embed_dim)

    def trunk(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.convs(mel), self.grid)       # [B, C, F, T]
        x = self.to_tokens(x).flatten(2).transpose(1, 2) + self.pos   # frequency-major patches
        x = torch.cat([self.global_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.block(x)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens[:, 0]))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(mel))


class TextTower(nn.Module):
    """Bag of words over a fixed vocabulary -> MLP."""

    def __init__(self, cfg: MiniEmbeddingConfig):
        super().__init__()
        if not cfg.vocabulary:
            raise ValueError("the mini text tower needs a vocabulary (build_vocabulary(class_texts))")
        self.vocabulary = tuple(cfg.vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.words = nn.EmbeddingBag(len(self.vocabulary), cfg.text_dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(cfg.text_dim, 2 * cfg.text_dim), nn.ReLU(inplace=True),
                                 nn.Linear(2 * cfg.text_dim, cfg.embed_dim))

    def tokenize(self, texts: Sequence[str], who: str = "mini-embedding") -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for t in texts:
            ws = words_of(t)
            if not ws:
                raise BackboneInputError(f"{who}: text {t!r} has no words")
            bad = [w for w in ws if w not in self.index]
            if bad:
                raise BackboneInputError(
                    f"{who}: text {t!r} has word(s) {bad} outside the mini text tower's vocabulary "
                    f"({', '.join(self.vocabulary)}); the mini profile knows only the synth class texts - "
                    "use the paper profile (ImageBind) for other texts")
            offsets.append(len(ids))
            ids += [self.index[w] for w in ws]
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.words(ids, offsets))


class MiniEmbedding(EmbeddingModel):
    """The mini stand-in for ImageBind (see the module docstring)."""

    def __init__(self, cfg: MiniEmbeddingConfig):
        super().__init__()
        self.config = cfg
        self.embed_dim = cfg.embed_dim
        self.audio_token_dim = cfg.audio_token_dim
        self.audio_token_grid = tuple(cfg.audio_token_grid)
        self.image = ImageTower(cfg)
        self.audio = AudioTower(cfg)
        self.text = TextTower(cfg)
        # CLIP's learnable temperature (used by training only)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07)

    # ---- EmbeddingModel hooks ------------------------------------------
    def preprocess_vision(self, frames: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if tuple(frames.shape[-2:]) != (s, s):
            frames = F.interpolate(frames, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return (frames - 0.5) / 0.25

    def _vision(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image(pixels)

    def _audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio(mel)

    def _text(self, texts: list[str]) -> torch.Tensor:
        ids, offsets = self.text.tokenize(texts, self.name)
        return self.text(ids.to(self.device), offsets.to(self.device))

    def _audio_trunk(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio.trunk(mel)

    # ---- extra ---------------------------------------------------------
    @torch.no_grad()
    def image_stage_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Pooled output of every image stage for frames [N,3,H,W] in [0,1] (mini FID features)."""
        from .base import check_frames
        x = self.preprocess_vision(self._to_model(check_frames(frames, self.name)))
        return [f.float() for f in self.image.stage_features(x)]


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
def save_checkpoint(model: MiniEmbedding, path, metadata: Mapping | None = None) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` + ``<path>.json`` (config with vocabulary, metadata), atomically."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path, atomic_write_text
    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    with atomic_path(st) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(js, json.dumps({"kind": "mini-embedding", "config": model.config.to_dict(),
                                      "metadata": dict(metadata or {})}, indent=2, sort_keys=True) + "\n")
    return st, js


def load_checkpoint(path, device: str | torch.device = "cpu") -> MiniEmbedding:
    from safetensors.torch import load_file

    from .sync_classifier import _apply
    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for f in (st, js):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: mini embedding file not found; train it with "
                                    "`asva-bench train evaluators --profile mini`")
    d = json.loads(js.read_text())
    if d.get("kind") != "mini-embedding":
        raise WeightsFormatError(f"{js}: not a mini embedding config (kind={d.get('kind')!r})")
    model = MiniEmbedding(MiniEmbeddingConfig.from_dict(d["config"]))
    _apply(model, load_file(str(st)), str(st))
    return model.to(device).eval()


# --------------------------------------------------------------------------
# Registry entry
# --------------------------------------------------------------------------
MINI_EMBEDDING_NAME = "mini-embedding"


def build_mini_embedding(spec: BackboneSpec, paths: dict[str, Path], device: str) -> MiniEmbedding:
    return load_checkpoint(paths[spec.weights[0].filename], device)


def _spec() -> BackboneSpec:
    from .sync_classifier import mini_weight_file
    return BackboneSpec(
        name=MINI_EMBEDDING_NAME, profile="mini", kind="embedding",
        weights=(mini_weight_file("mini-embedding.safetensors"), mini_weight_file("mini-embedding.json")),
        preprocessing="vision: frames [0,1] -> antialiased bilinear resize to 64x64 (no-op for mini clips) -> "
                      "(x-0.5)/0.25; audio: protocol mel [B,1,128,204]; text: bag of words over the synth "
                      "class-text vocabulary",
        output="unit-norm 128-d embeddings (vision [N,128], audio [B,128], text [T,128]); "
               "audio_tokens [B, 49, 96] = 1 global + 4x12 (frequency x time) patches",
        builder=build_mini_embedding,
        description="mini audio-image-text embedding (ImageBind stand-in) trained on synth")


MINI_EMBEDDING_SPEC = register_backbone(_spec())
