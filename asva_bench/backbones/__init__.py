"""Evaluator backbones: a registry of named, weight-verified feature networks.

Use::

    from asva_bench.backbones import build_backbone, FID_INCEPTION

    inception = build_backbone(FID_INCEPTION, device="cuda")   # weights resolved + verified
    feats = inception.features(frames)                          # [N,3,H,W] in [0,1] -> [N,2048]

Paper profile (real networks, docs/protocol.md "Metrics"):

==================  =========  ===============================================
name                kind       call
==================  =========  ===============================================
fid-inception-229   image      ``features(frames) -> [N, 2048]`` (paper FID)
fid-inception-299   image      same network, standard pytorch-fid input (not paper)
fvd-i3d             video      ``features(clips[B,12,3,H,W]) -> [B, 400]``
imagebind-huge      embedding  ``embed_vision / embed_audio / embed_text`` ->
                               unit-norm [*, 1024]; ``audio_tokens`` -> [B, 229, 768]
==================  =========  ===============================================

Other profiles register their backbones with :func:`register_backbone` from
their own module (see :mod:`.base` for an example); add that module's name to
``_BUILTIN_MODULES`` below so it is registered on import.
"""

from importlib import import_module

from .base import (BACKBONES, KINDS, PROFILES, Backbone, BackboneError, BackboneInputError, BackboneSpec,
                   EmbeddingModel, ImageBackbone, VideoBackbone, WeightFile, WeightsChecksumError, WeightsError,
                   WeightsFormatError, WeightsMissingError, build_backbone, get_backbone_spec,
                   register_backbone, specs_for_profile)
from .weights import HOME_ENV, OFFLINE_ENV, cache_root, ensure_weight, weight_status

# Modules whose import registers backbones (heavy packages load lazily, in builders).
_BUILTIN_MODULES = ("inception", "i3d", "imagebind", "sync_classifier", "mini_embedding", "mini_features",
                    "open_clip_image")
for _name in _BUILTIN_MODULES:
    import_module(f"{__name__}.{_name}")

from .i3d import FVD_I3D  # noqa: E402
from .imagebind import IMAGEBIND_HUGE  # noqa: E402
from .inception import FID_INCEPTION, FID_INCEPTION_299  # noqa: E402

__all__ = [
    "BACKBONES", "KINDS", "PROFILES", "Backbone", "BackboneError", "BackboneInputError", "BackboneSpec",
    "EmbeddingModel", "ImageBackbone", "VideoBackbone", "WeightFile", "WeightsChecksumError", "WeightsError",
    "WeightsFormatError", "WeightsMissingError", "build_backbone", "get_backbone_spec", "register_backbone",
    "specs_for_profile", "HOME_ENV", "OFFLINE_ENV", "cache_root", "ensure_weight", "weight_status",
    "FID_INCEPTION", "FID_INCEPTION_299", "FVD_I3D", "IMAGEBIND_HUGE",
]
