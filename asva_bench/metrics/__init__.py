"""The metric suite: FID, FVD, IA, IT, RelSync, AlignSync (docs/metrics.md).

Each metric class declares its name, label, column order, direction, help
text and feature needs, and registers itself with ``@register_metric``
(metrics/registry.py); importing the modules below registers the suite.
"""

from .alignment import IA, IT
from .base import FEATURE_KINDS, AsvaMetric, ClipMetric, FrechetMetric
from .distribution import FID, FVD
from .frechet import frechet_distance, frechet_distance_from_features
from .registry import (METRICS, MetricDeclarationError, arrow, declaration_table, metric_label, metric_order,
                       register_metric, unregister_metric)
from .sync import AlignSync, RelSync

#: The suite, the scorer's default selection, in column order (paper Table 1: FID, IA, IT, FVD,
#: AlignSync, RelSync). A metric registered later (a plugin) is scored when selected by name.
METRIC_ORDER = tuple(metric_order())

__all__ = ["METRICS", "METRIC_ORDER", "FEATURE_KINDS", "AsvaMetric", "ClipMetric", "FrechetMetric", "FID", "FVD",
           "IA", "IT", "RelSync", "AlignSync", "MetricDeclarationError", "register_metric", "unregister_metric",
           "metric_order", "metric_label", "arrow", "declaration_table", "frechet_distance",
           "frechet_distance_from_features"]
