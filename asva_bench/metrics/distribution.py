"""FID and FVD: Frechet distances of per-frame and per-clip features."""

from __future__ import annotations

from .base import FrechetMetric


class FID(FrechetMetric):
    """Frame-level FID over frames 2..12 of every clip (frame 1 is the input)."""
    name = "fid"
    long_name = "fid@frames2-12"
    needs = ("image_features",)


class FVD(FrechetMetric):
    """Clip-level FVD over all 12 frames (conditioning frame included)."""
    name = "fvd"
    long_name = "fvd@frames1-12"
    needs = ("video_features",)
