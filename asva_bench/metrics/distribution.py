"""FID and FVD: Frechet distances of per-frame and per-clip features."""

from __future__ import annotations

from .base import FrechetMetric
from .registry import register_metric


@register_metric
class FID(FrechetMetric):
    """Frechet distance between the Inception features of generated and ground-truth frames 2-12 of
    every clip (frame 1 is the conditioning image)."""
    name = "fid"
    label = "FID"
    order = 10
    long_name = "fid@frames2-12"
    needs = ("image_features",)       # [B, T-1, D]: one row per frame


@register_metric
class FVD(FrechetMetric):
    """Frechet distance between the I3D features of generated and ground-truth clips, all 12 frames
    (the conditioning frame included)."""
    name = "fvd"
    label = "FVD"
    order = 40
    long_name = "fvd@frames1-12"
    needs = ("video_features",)       # [B, D]: one row per clip
