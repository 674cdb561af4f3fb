"""The metric registry: where a metric class registers itself, and what reads the declarations.

A metric is one class that subclasses ``ClipMetric`` or ``FrechetMetric`` and
applies ``@register_metric`` (a built-in module, a test module or a user's
plugin alike); the decorator checks the class's declared fields and names the
fix when one is missing. Once registered, ``score_run`` accepts its name, the
scorer computes what its ``needs`` list, and results tables, the CLI and the
leaderboard show its ``label``, ``order`` and direction (docs/metrics.md).
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points

from ..registry import Registry, import_object
from .base import FEATURE_KINDS, AsvaMetric

METRICS: Registry[type] = Registry("metric")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MetricDeclarationError(TypeError):
    """A metric class whose declaration is incomplete or wrong; the message names the fields."""


def declaration_problems(cls) -> list[str]:
    """What is wrong with a metric class's declared fields (empty: it may be registered)."""
    if not (isinstance(cls, type) and issubclass(cls, AsvaMetric)):
        return [f"{cls!r} is not a subclass of asva_bench.metrics.AsvaMetric (subclass ClipMetric for a "
                "per-clip value, FrechetMetric for a distance between feature sets)"]
    out = []
    name = getattr(cls, "name", "")
    if not (isinstance(name, str) and _NAME.match(name)):
        out.append(f"name = {name!r}: set a lower-case identifier, the key in results files (e.g. name = \"relsync\")")
    label = getattr(cls, "label", "")
    if not (isinstance(label, str) and label.strip() and "\n" not in label):
        out.append(f"label = {label!r}: set the display name in tables and on the board (e.g. label = \"RelSync\")")
    if "help" not in cls.__dict__ or not str(cls.help).strip():
        out.append("help is missing: give the class a docstring whose first paragraph says in one sentence "
                   "what it measures and under which protocol (or set help = \"...\")")
    order = getattr(cls, "order", None)
    if not isinstance(order, int) or isinstance(order, bool):
        out.append(f"order = {order!r}: set an int, the column position (the suite uses 10-60, FID to RelSync; a new metric "
                   "after them takes a larger number)")
    if not isinstance(getattr(cls, "higher_is_better", None), bool):
        out.append(f"higher_is_better = {getattr(cls, 'higher_is_better', None)!r}: set True or False")
    needs = getattr(cls, "needs", ())
    if not (isinstance(needs, tuple) and needs):
        out.append(f"needs = {needs!r}: set a non-empty tuple of feature kinds from {', '.join(FEATURE_KINDS)}")
    else:
        unknown = [n for n in needs if n not in FEATURE_KINDS]
        if unknown:
            out.append(f"needs names unknown feature kind(s) {', '.join(map(repr, unknown))}: the scorer "
                       f"provides {', '.join(FEATURE_KINDS)}")
    for method in sorted(getattr(cls, "__abstractmethods__", ())):   # torchmetrics' update / compute
        out.append(f"{method}() is not defined: a torchmetrics.Metric needs it (ClipMetric: "
                   "update(values..., video_index) calling self._add(per_clip_values, video_index))")
    if cls.update_from_features is AsvaMetric.update_from_features:
        out.append("update_from_features(gen, gt, text, video_index) is not defined: read the kinds in "
                   "`needs` from gen / gt / text and call update()")
    return out


def register_metric(cls=None, *, replace: bool = False):
    """Class decorator: check ``cls``'s declaration and register it under ``cls.name``.

    ``replace=True`` lets a class take a registered name (a test replacing a metric); otherwise a
    name already taken is an error."""
    def apply(c):
        problems = declaration_problems(c)
        if problems:
            where = f"{c.__module__}.{c.__qualname__}" if isinstance(c, type) else repr(c)
            raise MetricDeclarationError(f"metric class {where} cannot be registered:\n"
                                         + "\n".join(f"  - {p}" for p in problems)
                                         + "\n(docs/metrics.md, \"Adding a metric\")")
        return METRICS.register(c.name, c, replace=replace)
    return apply(cls) if cls is not None else apply


def unregister_metric(name: str) -> None:
    """Remove a registered metric (a test cleaning up the metric it registered)."""
    METRICS.remove(name)


def metric_order(names=None) -> list[str]:
    """``names`` (default: every registered metric) in column order: registered metrics by their
    ``order`` (then name), then any unregistered names (a results file from elsewhere) by name."""
    names = set(METRICS) if names is None else set(names)
    known = sorted((n for n in names if n in METRICS), key=lambda n: (METRICS.get(n).order, n))
    return known + sorted(names - set(known))


def metric_label(name: str) -> str:
    """The display name of a metric; an unregistered one shows its key."""
    return METRICS.get(name).label if name in METRICS else name


def arrow(higher_is_better: bool, latex: bool = False) -> str:
    if latex:
        return "$\\uparrow$" if higher_is_better else "$\\downarrow$"
    return "\u2191" if higher_is_better else "\u2193"


def declaration_table(names=None) -> str:
    """The registered metrics' declarations as a Markdown table (docs/metrics.md holds it)."""
    lines = ["| name | label | order | better | needs | long_name | help |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for n in metric_order(names):
        c = METRICS.get(n)
        lines.append(f"| `{c.name}` | {c.label} | {c.order} | {arrow(c.higher_is_better)} "
                     f"{'higher' if c.higher_is_better else 'lower'} | "
                     f"{', '.join(f'`{k}`' for k in c.needs)} | `{c.long_name}` | {c.help} |")
    return "\n".join(lines)


#: Installed packages add metrics in this entry-point group: ``name = "module:Class"``.
ENTRY_POINT_GROUP = "asva_bench.metrics"


def resolve_metric(spec: str) -> str:
    """A metric as the CLI's ``--metrics`` names it -> its registered name.

    A registered name as it is; ``module:Class`` imports the module (the working directory first,
    as ``--model module:Class`` does) and registers the class if its module did not; any other name
    is looked up in the installed ``asva_bench.metrics`` entry points, then refused with the known
    names ("did you mean")."""
    try:
        if ":" in spec:
            return _ensure_registered(import_object(spec, "metric"))
        if spec not in METRICS:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name.lower() == spec.lower():
                    return _ensure_registered(ep.load())
    except (ImportError, MetricDeclarationError) as e:  # the CLI reports ValueErrors as bad input
        raise ValueError(f"--metrics {spec}: {e}") from e
    return METRICS.get(spec).name


def _ensure_registered(cls) -> str:
    name = getattr(cls, "name", None)
    if not (isinstance(name, str) and name in METRICS and METRICS.get(name) is cls):
        register_metric(cls)
    return cls.name


def resolve_metrics(text: str | None) -> tuple[str, ...] | None:
    """The CLI's comma-separated ``--metrics`` -> registered names (None: the default suite)."""
    if not text:
        return None
    return tuple(resolve_metric(m.strip()) for m in text.split(",") if m.strip())
