"""What an evaluator backbone is, and the registry that names them.

A backbone is a frozen network that turns protocol tensors into features.
Each one is registered as a :class:`BackboneSpec`: its name, profile
(``paper`` or ``mini``), the weight files it needs, a description of its
preprocessing and output, and a builder. ``spec.build(cache_root, device)``
resolves and verifies the weights (see :mod:`.weights`), then calls the
builder, which returns a :class:`Backbone` in eval mode with gradients off.

Input conventions (what the metric code passes; the backbone does its own
preprocessing on top, so every metric feeds the same tensors):

* frames: float ``[N, 3, H, W]`` in ``[0, 1]`` (protocol output);
* clips: float ``[B, T, 3, H, W]`` in ``[0, 1]``;
* mel: the normalised mel ``[B, 1, 128, 204]`` of
  :func:`asva_bench.protocol.waveforms_to_mel`;
* texts: ``list[str]``.

Three interfaces cover the paper's evaluators and their mini counterparts:

* :class:`ImageBackbone` - ``features(frames) -> [N, D]`` (FID);
* :class:`VideoBackbone` - ``features(clips) -> [B, D]`` (FVD);
* :class:`EmbeddingModel` - ``embed_vision / embed_audio / embed_text``
  (unit-normalised, IA / IT / AlignSync) and ``audio_tokens`` (AVSyncD).

A subclass implements the small protected hooks (``preprocess`` and
``forward``, or the ``_vision`` / ``_audio`` / ``_text`` / ``_audio_trunk``
hooks); the public methods validate input, move it to the model's device and
dtype, run without gradients and return float32, so every backbone fails the
same clear way on bad input.

Registering a backbone (the mini profile does exactly this)::

    from asva_bench.backbones import BackboneSpec, WeightFile, register_backbone

    register_backbone(BackboneSpec(
        name="mini-inception", profile="mini", kind="image",
        weights=(WeightFile("mini-inception.safetensors", sha256="<64 hex>",
                            format="safetensors",
                            bundled="asva_bench.assets:mini-inception.safetensors"),),
        preprocessing="bilinear resize to 64, [0,1] -> [-1,1]",
        output="256-d pooled features [N, 256] float32",
        builder=build_mini_inception))   # builder(spec, paths, device) -> Backbone
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..profiles import PROFILE_NAMES as PROFILES
from ..registry import Registry

KINDS = ("image", "video", "embedding", "sync")
FORMATS = ("state_dict", "safetensors", "torchscript", "json")


# --------------------------------------------------------------------------
# Errors: every message names the backbone (and file) and says how to fix it
# --------------------------------------------------------------------------
class BackboneError(RuntimeError):
    """A backbone that cannot be built or run."""


class WeightsError(BackboneError):
    """A weight file that cannot be used."""


class WeightsMissingError(WeightsError, FileNotFoundError):
    """A weight file that is not in the cache and could not be downloaded."""


class WeightsChecksumError(WeightsError):
    """A weight file whose SHA-256 is not the pinned one."""


class WeightsFormatError(WeightsError):
    """A weight file of the wrong format, or whose tensors do not fit the network."""


class BackboneInputError(BackboneError, ValueError):
    """An input tensor of the wrong type, shape or value range."""


# --------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightFile:
    """One file a backbone needs.

    ``sha256`` is the full hex digest, or a published prefix of it (at least 8
    hex digits, e.g. the one in a torch.hub file name), or None when no
    authoritative value is known ("unpinned": the file is used, and reported
    as such). ``folder`` is the cache sub-folder (default: the backbone name;
    backbones sharing one file name the same folder). ``bundled`` points at a
    copy shipped inside a Python package, as ``"package:relative/path"``; it is
    used when present, before the cache.
    """
    filename: str
    url: str | None = None
    sha256: str | None = None
    format: str = "state_dict"
    folder: str | None = None
    bundled: str | None = None
    note: str = ""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"weight file {self.filename!r}: format {self.format!r} is not one of {FORMATS}")
        if self.sha256 is not None:
            h = self.sha256.lower()
            if len(h) < 8 or len(h) > 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError(f"weight file {self.filename!r}: sha256 must be 8-64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", h)

    @property
    def pinning(self) -> str:
        """'full', 'prefix' or 'unpinned'."""
        if self.sha256 is None:
            return "unpinned"
        return "full" if len(self.sha256) == 64 else "prefix"


Builder = Callable[["BackboneSpec", "dict[str, Path]", str], "Backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: everything needed to find, check and build a backbone.

    ``builder(spec, paths, device)`` gets the resolved, verified path of every
    weight file (keyed by ``WeightFile.filename``) and returns the backbone.
    ``options`` is free-form configuration for the builder (e.g. a model size),
    so a variant is ``dataclasses.replace(spec, options=...)``.
    """
    name: str
    profile: str
    kind: str
    weights: tuple[WeightFile, ...]
    preprocessing: str
    output: str
    builder: Builder
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"backbone {self.name!r}: profile {self.profile!r} is not one of {PROFILES}")
        if self.kind not in KINDS:
            raise ValueError(f"backbone {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        object.__setattr__(self, "weights", tuple(self.weights))

    def weight(self, filename: str) -> WeightFile:
        for w in self.weights:
            if w.filename == filename:
                return w
        raise KeyError(f"backbone {self.name!r} declares no weight file {filename!r}")

    def replace(self, **changes) -> "BackboneSpec":
        return dataclasses.replace(self, **changes)

    def build(self, cache_root=None, device: str | torch.device = "cpu", download: bool = True) -> "Backbone":
        """Resolve and verify the weights, then build the backbone on ``device``."""
        from .weights import resolve_weight  # weights imports this module

        resolved = {w.filename: resolve_weight(self, w, cache_root, download=download) for w in self.weights}
        paths = {f: p for f, (p, _) in resolved.items()}
        model = self.builder(self, paths, str(device))
        if not isinstance(model, Backbone):
            raise TypeError(f"builder of backbone {self.name!r} returned {type(model).__name__}, not a Backbone")
        model.attach(self, paths, {f: d for f, (_, d) in resolved.items()})
        return model

    def to_dict(self) -> dict:
        return {"name": self.name, "profile": self.profile, "kind": self.kind,
                "preprocessing": self.preprocessing, "output": self.output,
                "description": self.description,
                "weights": [dataclasses.asdict(w) for w in self.weights]}


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec, *, replace: bool = False) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES` (error on a duplicate name unless ``replace``)."""
    return BACKBONES.register(spec.name, spec, replace=replace)


def get_backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES.get(name)


def build_backbone(name: str, cache_root=None, device: str | torch.device = "cpu",
                   download: bool = True) -> "Backbone":
    """Look ``name`` up in the registry and build it (weights verified)."""
    return BACKBONES.get(name).build(cache_root=cache_root, device=device, download=download)


def specs_for_profile(profile: str | None = None) -> list[BackboneSpec]:
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return [s for _, s in BACKBONES.items() if profile is None or s.profile == profile]


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------
# Frames come from uint8 video or from the protocol's clamped transform, so
# [0, 1] holds up to float noise; anything further out is a convention error
# (0..255 values, or frames already in [-1, 1]).
RANGE_TOLERANCE = 1e-3


def _shape(x) -> str:
    return str(tuple(x.shape)) if torch.is_tensor(x) else type(x).__name__


def check_unit_range(x: torch.Tensor, who: str, what: str) -> None:
    if not torch.isfinite(x).all():
        raise BackboneInputError(f"{who}: {what} contain NaN or infinite values; fix the producer of these tensors")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        hint = ("they look like 0..255 pixel values: divide by 255" if hi > 1.5 else
                "they look like [-1, 1] values: map them with (x + 1) / 2" if lo < -0.5 else
                "clamp them to [0, 1]")
        raise BackboneInputError(f"{who}: {what} must lie in [0, 1] (protocol output) but span "
                                 f"[{lo:.3f}, {hi:.3f}]; {hint}")


def check_frames(x, who: str) -> torch.Tensor:
    """float [N, 3, H, W] in [0, 1]."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise BackboneInputError(
            f"{who}: frames must be a float tensor [N, 3, H, W] with N >= 1, got {_shape(x)}"
            + ("; a clip [B, T, 3, H, W] can be flattened with clips.flatten(0, 1)" if torch.is_tensor(x) and x.ndim == 5 else "")
            + ("; channels-last frames [N, H, W, 3] need x.permute(0, 3, 1, 2)" if torch.is_tensor(x) and x.ndim == 4 and x.shape[-1] == 3 else ""))
    if not x.is_floating_point():
        raise BackboneInputError(f"{who}: frames must be floating point in [0, 1], got dtype {x.dtype}; "
                                 "convert uint8 frames with x.float() / 255")
    check_unit_range(x, who, "frames")
    return x


def check_clips(x, who: str, num_frames: int | None = None) -> torch.Tensor:
    """float [B, T, 3, H, W] in [0, 1] (T fixed when ``num_frames`` is given)."""
    if not torch.is_tensor(x) or x.ndim != 5 or x.shape[2] != 3 or x.shape[0] == 0:
        raise BackboneInputError(f"{who}: clips must be a float tensor [B, T, 3, H, W] with B >= 1, got {_shape(x)}"
                                 + ("; [B, 3, T, H, W] clips need x.transpose(1, 2)" if torch.is_tensor(x) and x.ndim == 5 and x.shape[1] == 3 else ""))
    if num_frames is not None and x.shape[1] != num_frames:
        raise BackboneInputError(f"{who}: clips must have {num_frames} frames (the protocol's clip), got T={x.shape[1]}")
    if not x.is_floating_point():
        raise BackboneInputError(f"{who}: clips must be floating point in [0, 1], got dtype {x.dtype}; "
                                 "convert uint8 clips with x.float() / 255")
    check_unit_range(x, who, "clips")
    return x


def check_mel(x, who: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The normalised mel [B, *shape] of asva_bench.protocol.waveforms_to_mel."""
    if not torch.is_tensor(x) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape) or x.shape[0] == 0:
        hint = ""
        if torch.is_tensor(x) and x.ndim in (1, 2):
            hint = "; this looks like a waveform: compute the mel with asva_bench.protocol.waveforms_to_mel"
        elif torch.is_tensor(x) and x.ndim == 3 and tuple(x.shape) == tuple(shape):
            hint = "; add the batch axis with mel.unsqueeze(0)"
        raise BackboneInputError(f"{who}: mel must be a float tensor [B, {', '.join(map(str, shape))}] "
                                 f"(asva_bench.protocol.waveforms_to_mel), got {_shape(x)}{hint}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise BackboneInputError(f"{who}: mel must be finite floating point values, got dtype {x.dtype}")
    return x


def check_texts(texts, who: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0 \
            or not all(isinstance(t, str) for t in texts):
        raise BackboneInputError(f"{who}: texts must be a non-empty list of strings, got "
                                 f"{texts!r:.80}" + ("; wrap a single text as [text]" if isinstance(texts, str) else ""))
    return list(texts)


# --------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------
class Backbone(nn.Module, metaclass=ABCMeta):
    """Base of every evaluator network: frozen, eval mode, float32 outputs."""

    kind: ClassVar[str] = ""

    def __init__(self):
        super().__init__()
        self.spec: BackboneSpec | None = None
        self.weight_paths: dict[str, Path] = {}
        self.weight_sha256: dict[str, str] = {}

    # set by BackboneSpec.build
    def attach(self, spec: BackboneSpec, paths: Mapping[str, Path], digests: Mapping[str, str]) -> None:
        self.spec = spec
        self.weight_paths = dict(paths)
        self.weight_sha256 = dict(digests)
        self.eval()
        self.requires_grad_(False)

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else type(self).__name__

    @property
    def profile(self) -> str:
        return self.spec.profile if self.spec else "unregistered"

    @property
    def weights(self) -> tuple[WeightFile, ...]:
        return self.spec.weights if self.spec else ()

    @property
    def weights_digest(self) -> str:
        """SHA-256 of the weight file in use (several files: of their "name:sha256" lines).

        This is what a results file records under "backbones" (docs/results-format.md).
        """
        digests = sorted(self.weight_sha256.items())
        if len(digests) == 1:
            return digests[0][1]
        return hashlib.sha256("".join(f"{f}:{d}\n" for f, d in digests).encode()).hexdigest()

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=self.dtype)


@contextmanager
def batch_statistics(module: nn.Module):
    """Inside the block every BatchNorm layer of ``module`` normalises with the mean and (biased)
    variance of the batch it is given, as in a network left in training mode, but its running
    statistics are neither used nor updated (the network stays usable in eval mode)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track


class ImageBackbone(Backbone):
    """Per-frame features: ``features(frames [N,3,H,W] in [0,1]) -> [N, feature_dim]``.

    Subclasses set ``feature_dim`` and implement ``preprocess`` (frames in
    [0, 1] -> network input) and ``forward`` (network input -> [N, D]).
    ``batch_statistics=True`` runs BatchNorm on the statistics of ``frames``
    (:func:`batch_statistics`): the features then depend on the whole batch.
    """
    kind = "image"
    feature_dim: int = 0

    @abstractmethod
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor: ...

    @torch.no_grad()
    def features(self, frames: torch.Tensor, batch_statistics: bool = False) -> torch.Tensor:
        x = self.preprocess(self._to_model(check_frames(frames, self.name)))
        if batch_statistics:
            with _batch_statistics(self):
                out = self(x)
        else:
            out = self(x)
        return _check_output(out, (frames.shape[0], self.feature_dim), self.name)


class VideoBackbone(Backbone):
    """Per-clip features: ``features(clips [B,T,3,H,W] in [0,1]) -> [B, feature_dim]``."""
    kind = "video"
    feature_dim: int = 0
    num_frames: int | None = None

    @abstractmethod
    def preprocess(self, clips: torch.Tensor) -> torch.Tensor: ...

    @torch.no_grad()
    def features(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(self._to_model(check_clips(clips, self.name, self.num_frames)))
        out = self(x)
        return _check_output(out, (clips.shape[0], self.feature_dim), self.name)


class EmbeddingModel(Backbone):
    """A joint vision / audio / text embedding space (ImageBind and its mini stand-in).

    Public API (what metrics and AVSyncD call):

    * ``embed_vision(frames [N,3,H,W] in [0,1]) -> [N, embed_dim]``, unit norm;
    * ``embed_audio(mel [B,1,128,204]) -> [B, embed_dim]``, unit norm;
    * ``embed_text(texts: list[str]) -> [len(texts), embed_dim]``, unit norm;
    * ``audio_tokens(mel) -> [B, 1 + F*T, audio_token_dim]``: the audio trunk's
      tokens before the head, token 0 global, then the F x T patch grid in
      frequency-major order (``tokens[:, 1:].reshape(B, F, T, C)``).

    Cosine similarity of two embeddings is their dot product.

    Subclasses set ``embed_dim``, ``audio_token_grid`` (F, T), ``audio_token_dim``
    and implement ``preprocess_vision`` and the hooks ``_vision(pixels)``,
    ``_audio(mel)``, ``_text(texts)`` (un-normalised [*, embed_dim]) and
    ``_audio_trunk(mel)``.
    """
    kind = "embedding"
    embed_dim: int = 0
    audio_token_dim: int = 0
    audio_token_grid: tuple[int, int] = (0, 0)
    mel_shape: tuple[int, int, int] = (1, 128, 204)

    @abstractmethod
    def preprocess_vision(self, frames: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _vision(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _audio(self, mel: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _text(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def _audio_trunk(self, mel: torch.Tensor) -> torch.Tensor: ...

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # nn.Module call = vision embedding
        return self.embed_vision(frames)

    @torch.no_grad()
    def embed_vision(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.preprocess_vision(self._to_model(check_frames(frames, self.name)))
        return _unit(_check_output(self._vision(x), (frames.shape[0], self.embed_dim), self.name))

    @torch.no_grad()
    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        x = self._to_model(check_mel(mel, self.name, self.mel_shape))
        return _unit(_check_output(self._audio(x), (mel.shape[0], self.embed_dim), self.name))

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        texts = check_texts(texts, self.name)
        return _unit(_check_output(self._text(texts), (len(texts), self.embed_dim), self.name))

    @torch.no_grad()
    def audio_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        x = self._to_model(check_mel(mel, self.name, self.mel_shape))
        f, t = self.audio_token_grid
        return _check_output(self._audio_trunk(x), (mel.shape[0], 1 + f * t, self.audio_token_dim), self.name)


_batch_statistics = batch_statistics


def _check_output(out: torch.Tensor, shape: tuple[int, ...], who: str) -> torch.Tensor:
    if tuple(out.shape) != tuple(shape):
        raise BackboneError(f"{who}: the network returned {tuple(out.shape)}, expected {tuple(shape)}; "
                            "the weight file is probably not the one this backbone declares "
                            "(check it with `asva-bench weights verify`)")
    return out.float()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)
