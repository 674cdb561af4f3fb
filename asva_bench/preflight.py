"""Pre-flight: everything `asva-bench run` and `score` will need, resolved before any work.

A paper-profile run needs a dataset root, the model's own weights (its
adapter's :meth:`~asva_bench.adapters.Adapter.required_files`), the evaluator
weights of the metrics it will compute, and writable output and cache
folders. Each is checked here first, and a run that lacks any of them fails
once, with the complete list: each missing file, where it comes from, where
to put it and the command that checks it (docs/weights.md). Files that have
a download URL are fetched here (hash-checked, atomically), after the check
has found nothing else missing, so a long download never precedes a refusal.
"""

from __future__ import annotations

import os
from pathlib import Path

from .requirements import VERIFY_COMMAND, Requirement, Unmet, unmet, writable_problem


class PreflightError(RuntimeError):
    """What a command needs and does not have; the message lists every item with its fix."""

    def __init__(self, items: list[Unmet], action: str):
        self.items = list(items)
        self.action = action
        n = len(self.items)
        done = "generated" if "run" in action else "scored"
        if n == 1 and not (self.items[0].requirement.source or self.items[0].requirement.check):
            # a lone folder problem (read-only output, unwritable cache) is one line
            super().__init__(f"{'; '.join(self.items[0].problems)} (nothing was {done})")
            return
        head = (f"pre-flight: {n} thing{'s' if n != 1 else ''} {action} needs {'are' if n != 1 else 'is'} "
                f"missing or unusable; nothing was {done}:")
        super().__init__("\n".join([head] + [u.describe() for u in self.items]))

    def to_dict(self) -> dict:
        return {"action": self.action, "unmet": [u.to_dict() for u in self.items]}


# --------------------------------------------------------------------------
# Evaluator weights
# --------------------------------------------------------------------------
#: feature kind a metric needs -> the suite role that computes it (asva_bench/evaluators.py)
ROLE_OF_FEATURE = {"image_features": "image", "video_features": "video", "vision_embedding": "embedding",
                   "audio_embedding": "embedding", "text_embedding": "embedding", "sync_logit": "sync"}


def evaluator_roles(metrics=None) -> dict[str, list[str]]:
    """role -> the metrics that need it (all six metrics when ``metrics`` is None)."""
    from .metrics import METRIC_ORDER, METRICS
    out: dict[str, list[str]] = {}
    for m in (metrics or METRIC_ORDER):
        for need in METRICS.get(m).needs:
            out.setdefault(ROLE_OF_FEATURE[need], [])
            if m not in out[ROLE_OF_FEATURE[need]]:
                out[ROLE_OF_FEATURE[need]].append(m)
    return out


def _fetch_hint(spec, wf) -> str:
    if wf.url:
        return f"asva-bench weights fetch {spec.name} (downloads and checks it)"
    return f"asva-bench weights fetch {spec.name} prints the manual steps"


def evaluator_check(profile: str, metrics=None) -> tuple[list[Unmet], list[tuple]]:
    """(unusable weight files, files to download) for the backbones the metrics need.

    A present file is checked against its pinned SHA-256 (the verification
    stamp spares re-hashing an unchanged file); a missing file with a URL is
    to be downloaded unless $ASVA_BENCH_OFFLINE is set.
    """
    from .backbones import get_backbone_spec
    from .backbones.base import WeightsError
    from .backbones.weights import OFFLINE_ENV, _source, cache_path, is_offline, locate, resolve_weight
    from .profiles import get_profile

    bad, to_fetch, seen = [], [], set()
    for role, used_by in sorted(evaluator_roles(metrics).items()):
        spec = get_backbone_spec(get_profile(profile).backbones[role])
        for wf in spec.weights:
            path = locate(spec, wf)
            if str(path) in seen:
                continue
            seen.add(str(path))
            req = Requirement(
                what=f"evaluator weights '{wf.filename}' of backbone {spec.name} ({profile} profile; "
                     f"{', '.join(used_by)})",
                path=str(path), kind="file", source=_source(wf), place_at=str(cache_path(spec, wf)),
                fix=_fetch_hint(spec, wf), check=VERIFY_COMMAND if profile == "paper" else
                f"asva-bench weights verify --profile {profile}")
            if path.is_file():
                try:
                    resolve_weight(spec, wf, download=False)
                except WeightsError as e:
                    bad.append(Unmet(req, [str(e).splitlines()[0]]))
            elif wf.url and not is_offline():
                to_fetch.append((spec, wf))
            else:
                why = f"missing file {path}" + (f" ({OFFLINE_ENV} is set, so it is not downloaded)"
                                                if wf.url else "")
                bad.append(Unmet(req, [why]))
    return bad, to_fetch


def _fetch_path(spec, wf) -> str:
    from .backbones.weights import locate
    return str(locate(spec, wf))


def fetch_missing(to_fetch, action: str) -> None:
    """Download the files :func:`evaluator_check` found missing (hash-checked, atomic)."""
    from .backbones.base import WeightsError
    from .backbones.weights import _source, cache_path, ensure_weight
    failed = []
    for spec, wf in to_fetch:
        try:
            ensure_weight(spec, wf)
        except WeightsError as e:
            failed.append(Unmet(Requirement(what=f"evaluator weights '{wf.filename}' of backbone {spec.name}",
                                            path=str(cache_path(spec, wf)), kind="file", source=_source(wf),
                                            place_at=str(cache_path(spec, wf)), check=VERIFY_COMMAND),
                                [str(e).splitlines()[0]]))
    if failed:
        raise PreflightError(failed, action)


# --------------------------------------------------------------------------
# The checks of `run` and `score`
# --------------------------------------------------------------------------
def _home_problem() -> Unmet | None:
    from .fsutil import HOME_ENV as ENV_VAR, home
    prob = writable_problem(home(), f"${ENV_VAR} (the cache of features and weights)")
    if prob is None:
        return None
    return Unmet(Requirement(what=f"a writable ${ENV_VAR}", path=str(home()),
                             fix=f"export {ENV_VAR}=<a writable folder>"), [prob])


def _out_problem(out) -> Unmet | None:
    prob = writable_problem(out, "output folder")
    if prob is None:
        return None
    return Unmet(Requirement(what="a writable output folder", path=str(out), fix="pass --out <a writable folder>"),
                 [prob])


def check_run(adapter, protocol, profile: str, out, dataset_problem: str | None = None,
              score: bool = True, metrics=None, dataset: str = "", action: str = "asva-bench run") -> None:
    """Raise :class:`PreflightError` listing everything a run lacks; download what has a URL.

    ``dataset_problem`` is the dataset loader's message when the root could
    not be read (the pre-flight reports it beside the missing weights).
    """
    items: list[Unmet] = []
    if dataset_problem:
        items.append(Unmet(Requirement(what=f"dataset '{dataset}'", path=None,
                                       fix="--root DIR or the dataset's environment variable "
                                           "(`asva-bench datasets` lists the layouts)"),
                           [dataset_problem.strip()]))
    try:
        needed = list(adapter.required_files(protocol) or [])
    except Exception as e:  # a plugin's hook that fails is reported, not a traceback
        needed = []
        items.append(Unmet(Requirement(what=f"the files adapter '{adapter.name}' needs", path=None),
                           [f"required_files() failed: {type(e).__name__}: {e}"]))
    bad_type = [r for r in needed if not isinstance(r, Requirement)]
    if bad_type:
        raise TypeError(f"adapter '{adapter.name}': required_files() must return Requirement records, "
                        f"got {type(bad_type[0]).__name__}")
    to_fetch = []
    if score:
        bad, to_fetch = evaluator_check(profile, metrics)
        items += bad
    # a file the adapter needs that the scorer will download anyway is not missing, and one the
    # scorer's list already names is named once
    skip = {_fetch_path(spec, wf) for spec, wf in to_fetch} | {u.requirement.path for u in items}
    items += [u for u in unmet(needed) if u.requirement.path is None or u.requirement.path not in skip]
    for u in (_out_problem(out), _home_problem() if score else None):
        if u is not None:
            items.append(u)
    if items:
        raise PreflightError(items, action)
    fetch_missing(to_fetch, action)


def check_score(profile: str, run_dir, metrics=None) -> None:
    """The pre-flight of `asva-bench score`: evaluator weights, a writable run folder and cache."""
    items, to_fetch = evaluator_check(profile, metrics)
    run_dir = Path(run_dir)
    prob = writable_problem(run_dir, "run folder") if run_dir.is_dir() else None
    if prob:
        items.append(Unmet(Requirement(what="a writable run folder (results.json, scores.jsonl)",
                                       path=str(run_dir), fix="copy the run folder somewhere writable"), [prob]))
    home = _home_problem()
    if home is not None:
        items.append(home)
    if items:
        raise PreflightError(items, "asva-bench score")
    fetch_missing(to_fetch, "asva-bench score")


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


__all__ = ["PreflightError", "check_run", "check_score", "evaluator_check", "evaluator_roles"]
