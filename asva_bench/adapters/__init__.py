"""Model adapters: the API and the registry that finds them.

Built-in adapters are listed here as import strings (loaded lazily, so
listing models never imports a heavy model); third-party packages add
theirs through the ``asva_bench.adapters`` entry-point group; any adapter can
also be named directly as ``module:Class``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..registry import Registry
from .api import Adapter, AdapterError, ClipBatch, parse_model_args, validate_output

BUILTIN_ADAPTERS = {
    "static": "asva_bench.baselines.static:Static",
    "groundtruth": "asva_bench.adapters.groundtruth:GroundTruth",
    "avsyncd": "asva_bench.models.avsyncd.adapter:AVSyncD",
    "i2vd": "asva_bench.baselines.i2vd:I2VD",
    "aadiff": "asva_bench.baselines.aadiff:AADiff",
}

ENTRY_POINT_GROUP = "asva_bench.adapters"


def _load_object(spec: str):
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise AdapterError(f"'{spec}' is not of the form module:Class")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise AdapterError(f"cannot import module '{module}' for adapter '{spec}': {e}") from e
    try:
        obj = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise AdapterError(f"module '{module}' has no attribute '{attr}' (adapter '{spec}')") from e
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise AdapterError(f"'{spec}' is not a subclass of asva_bench.adapters.Adapter")
    return obj


def adapter_registry() -> Registry[str]:
    """Name -> 'module:Class' for built-ins and installed entry points."""
    reg: Registry[str] = Registry("model")
    for name, target in BUILTIN_ADAPTERS.items():
        reg.register(name, target)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        reg.register(ep.name, ep.value, replace=True)
    return reg


def get_adapter_class(name: str) -> type[Adapter]:
    """Resolve a model name or a 'module:Class' string to an adapter class."""
    if ":" in name:
        return _load_object(name)
    return _load_object(adapter_registry().get(name))


def build_adapter(name: str, model_args: list[str] | dict | None = None) -> Adapter:
    cls = get_adapter_class(name)
    kwargs = model_args if isinstance(model_args, dict) else parse_model_args(cls, model_args or [])
    return cls(**kwargs)


__all__ = ["Adapter", "AdapterError", "ClipBatch", "adapter_registry", "build_adapter",
           "get_adapter_class", "parse_model_args", "validate_output", "BUILTIN_ADAPTERS"]
