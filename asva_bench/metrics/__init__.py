"""The metric suite: FID, FVD, IA, IT, RelSync, AlignSync (PROTOCOL.md section 3)."""

from ..registry import Registry
from .alignment import IA, IT
from .base import AsvaMetric, ClipMetric, FrechetMetric
from .distribution import FID, FVD
from .frechet import frechet_distance, frechet_distance_from_features
from .sync import AlignSync, RelSync

METRICS: Registry[type] = Registry("metric")
for _cls in (FID, FVD, IA, IT, RelSync, AlignSync):
    METRICS.register(_cls.name, _cls)

#: Paper Table 1 order.
METRIC_ORDER = ("fid", "ia", "it", "fvd", "alignsync", "relsync")

__all__ = ["METRICS", "METRIC_ORDER", "AsvaMetric", "ClipMetric", "FrechetMetric", "FID", "FVD", "IA",
           "IT", "RelSync", "AlignSync", "frechet_distance", "frechet_distance_from_features"]
