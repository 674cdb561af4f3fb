"""Model adapters: the API and the registry that finds them.

Built-in adapters are listed here as import strings (loaded lazily, so
listing models never imports a heavy model); third-party packages add
theirs through the ``asva_bench.adapters`` entry-point group; any adapter can
also be named directly as ``module:Class``, which is imported the way
``python -m`` would: with the working directory on the module path.

A plugin may not take a built-in's name: such an entry point is refused (and
listed by `asva-bench models`), never silently preferred.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from ..registry import Registry, import_object
from .api import (Adapter, AdapterError, ClipBatch, check_adapter_class, parse_model_args, setup_adapter,
                  validate_output)

BUILTIN_ADAPTERS = {
    "static": "asva_bench.baselines.static:Static",
    "groundtruth": "asva_bench.adapters.groundtruth:GroundTruth",
    "avsyncd": "asva_bench.models.avsyncd.adapter:AVSyncD",
    "i2vd": "asva_bench.baselines.i2vd:I2VD",
    "aadiff": "asva_bench.baselines.aadiff:AADiff",
    "diffusers-i2v": "asva_bench.baselines.diffusers_i2v:DiffusersI2V",
}

ENTRY_POINT_GROUP = "asva_bench.adapters"


def _load_object(spec: str):
    try:
        obj = import_object(spec, "adapter")
    except ImportError as e:
        raise AdapterError(str(e)) from e
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise AdapterError(f"'{spec}' is not a subclass of asva_bench.adapters.Adapter")
    check_adapter_class(obj, spec)
    return obj


def _plugin_entry_points():
    return list(entry_points(group=ENTRY_POINT_GROUP))


def refused_plugins() -> dict[str, str]:
    """Entry points refused because they reuse a built-in adapter's name: name -> message."""
    out = {}
    for ep in _plugin_entry_points():
        key = ep.name.lower()
        if key in BUILTIN_ADAPTERS and ep.value != BUILTIN_ADAPTERS[key]:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            out[ep.name] = (f"plugin adapter '{ep.name}' = {ep.value} (from {dist}) is refused: '{ep.name}' is a "
                            f"built-in adapter ({BUILTIN_ADAPTERS[key]}); register it under another name in the "
                            f"package's [project.entry-points.\"{ENTRY_POINT_GROUP}\"], or run it as "
                            f"--model {ep.value}")
    return out


def adapter_registry() -> Registry[str]:
    """Name -> 'module:Class' for built-ins and installed entry points (built-in names stay built-in)."""
    reg: Registry[str] = Registry("model")
    for name, target in BUILTIN_ADAPTERS.items():
        reg.register(name, target)
    for ep in _plugin_entry_points():
        if ep.name.lower() in BUILTIN_ADAPTERS:
            continue  # refused_plugins() says why
        reg.register(ep.name, ep.value, replace=True)
    return reg


def get_adapter_class(name: str) -> type[Adapter]:
    """Resolve a model name or a 'module:Class' string to an adapter class."""
    if ":" in name:
        return _load_object(name)
    return _load_object(adapter_registry().get(name))


def build_adapter(name: str, model_args: list[str] | dict | None = None) -> Adapter:
    """Resolve and construct an adapter; an ``__init__`` that raises is one AdapterError naming it."""
    if ":" not in name:
        refused = refused_plugins().get(name) or refused_plugins().get(name.lower())
        if refused:
            print(f"warning: {refused}; using the built-in", file=sys.stderr)
    cls = get_adapter_class(name)
    kwargs = model_args if isinstance(model_args, dict) else parse_model_args(cls, model_args or [])
    try:
        return cls(**kwargs)
    except AdapterError:
        raise
    except Exception as e:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
        raise AdapterError(f"adapter '{cls.name}' ({name}) could not be created"
                           + (f" with {args}" if args else "") + f": {type(e).__name__}: {e}") from e


__all__ = ["Adapter", "AdapterError", "ClipBatch", "adapter_registry", "build_adapter", "check_adapter_class",
           "setup_adapter",
           "get_adapter_class", "parse_model_args", "refused_plugins", "validate_output", "BUILTIN_ADAPTERS"]
