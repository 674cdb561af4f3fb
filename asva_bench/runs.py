"""The run folder: one typed contract for what `asva-bench run` writes and everything reads.

Layout (docs/results-format.md)::

    RUN/run.json                       RunRecord: what produced the clips
    RUN/videos/<class>/<stem>_clip-NN.mp4
    RUN/results.json                   Results: RunRecord + scores, intervals, provenance
    RUN/scores.jsonl                   one object per clip
    RUN/results.<track>.json           a rescoring under another protocol track
    RUN/results.<track>.scores.jsonl

Rules: every file is written under a temporary sibling name and renamed into
place (a name starting with "." and holding ".tmp-" is never a clip or a
record); a clip exists once its file exists.

This module owns the clip plan (:class:`ClipJob`, :func:`plan_clips`,
:func:`limited_entries`), the records (:class:`RunRecord`, :class:`Results`)
with their one reader and one writer, the results fingerprint, and the schema
check, derived from the dataclasses' fields.  Generation, scoring, results
tables, the demo, the CLI and the leaderboard all go through it; it imports
nothing of the leaderboard.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .fsutil import atomic_path, atomic_write_text, is_temp_file, stable_hash

# the layout
RUN_FILE, VIDEOS_DIR, RESULTS_FILE, SCORES_FILE = "run.json", "videos", "results.json", "scores.jsonl"
# the schema versions: a reader refuses any other
RUN_SCHEMA = "asva-bench/run/v1"
RESULTS_SCHEMA = "asva-bench/results/v1"
#: How a reduced protocol (--limit N) picks its test videos (recorded in run.json).
LIMIT_RULE = "round robin over classes (sorted), videos in path order"
HEX16 = re.compile(r"^[0-9a-f]{16}$")
#: The longest free-text note a results file (a leaderboard entry) may carry.
MAX_NOTES_CHARS = 2000


class RunFolderError(ValueError):
    """A run folder or results file that cannot be used as asked; the message names the file and the fix."""


# --------------------------------------------------------------------------
# The clip plan
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipJob:
    entry: object  # datasets.VideoEntry
    index: int     # 0..clips_per_video-1

    @property
    def clip_id(self) -> str:
        return f"{self.entry.class_name}/{self.entry.stem}_clip-{self.index:02d}"


def clip_relpath(clip_id: str) -> str:
    return f"{VIDEOS_DIR}/{clip_id}.mp4"


def plan_clips(entries, cfg) -> list[ClipJob]:
    return [ClipJob(e, i) for e in entries for i in range(cfg.clips_per_video)]


def limited_entries(entries, limit: int | None) -> list:
    """The test videos of a reduced protocol: ``limit`` videos taken round robin over the classes
    (so every class is represented, as far as ``limit`` allows), returned in path order."""
    entries = sorted(entries, key=lambda e: e.rel_path)
    if not limit or limit >= len(entries):
        return entries
    by_class: dict = {}
    for e in entries:
        by_class.setdefault(e.class_name, []).append(e)
    picked, rank = [], 0
    while len(picked) < limit:
        for c in sorted(by_class):
            if rank < len(by_class[c]) and len(picked) < limit:
                picked.append(by_class[c][rank])
        rank += 1
    return sorted(picked, key=lambda e: e.rel_path)


def present_clips(run_dir) -> set[str]:
    """Clip ids whose file exists under RUN/videos (temporary files never count)."""
    vdir = Path(run_dir) / VIDEOS_DIR
    if not vdir.is_dir():
        return set()
    return {p.relative_to(vdir).with_suffix("").as_posix() for p in vdir.rglob("*.mp4") if not is_temp_file(p)}


def remove_stale_temp_files(run_dir) -> None:
    """Leftovers of a killed writer: never accepted, so removed before a run resumes."""
    vdir = Path(run_dir) / VIDEOS_DIR
    if vdir.is_dir():
        for stale in vdir.rglob(".*.tmp-*"):
            stale.unlink()


# --------------------------------------------------------------------------
# The records
# --------------------------------------------------------------------------
def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _text(x) -> bool:
    return isinstance(x, str) and x.strip() != ""


def _hex16(x) -> bool:
    return isinstance(x, str) and bool(HEX16.match(x))


def _ids(x) -> bool:
    return isinstance(x, list) and all(isinstance(i, str) for i in x)


def rule(test, what: str, default=dataclasses.MISSING, each=None):
    """A field whose value must pass ``test`` (described as ``what`` in problems); ``each`` =
    (test, what) for every value of a mapping field, reported under its key."""
    kw = {} if default is dataclasses.MISSING else (
        {"default_factory": default} if callable(default) else {"default": default})
    return field(metadata={"test": test, "what": what, "each": each}, **kw)


class Record:
    """Base of the JSON records: fields are the known keys; unknown keys ride along in ``extra``
    (written back unchanged), so a record read and written again keeps every byte of meaning."""

    extra: dict

    @classmethod
    def problems(cls, data, where: str = "") -> list[tuple[str, str]]:
        """(JSON path, message) for every way ``data`` breaks the schema the dataclass states."""
        if not isinstance(data, dict):
            return [(where.rstrip(".") or "(top level)",
                     f"expected an object, got {json.dumps(data)[:60]} (a value not computed is absent, never null)")]
        out = []
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            path = f"{where}{f.name}"
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if f.name not in data or data[f.name] is None and not required:
                if required:
                    out.append((path, f"missing; expected {_what(f, hints[f.name])}"))
                continue
            out += _check_value(data[f.name], hints[f.name], f, path)
        return out

    @classmethod
    def from_dict(cls, data: dict, where="record"):
        bad = cls.problems(data)
        if bad:
            raise RunFolderError(f"{where}: " + "; ".join(f"{p}: {m}" for p, m in bad[:5])
                                 + (f" ({len(bad)} problems)" if len(bad) > 5 else ""))
        return cls._build(data)

    @classmethod
    def _build(cls, data: dict):
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {}
        for n in names & set(data):
            sub = _record_class(hints[n])
            kw[n] = sub._build(data[n]) if sub is not None and isinstance(data[n], dict) else data[n]
            if _mapping_of_records(hints[n]) is not None and isinstance(data[n], dict):
                rc = _mapping_of_records(hints[n])
                kw[n] = {k: rc._build(v) for k, v in data[n].items()}
        obj = cls(**kw, extra={k: v for k, v in data.items() if k not in names})
        obj._read_keys = frozenset(data)  # a None that was in the file is written back as null
        return obj

    def to_dict(self) -> dict:
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            read = getattr(self, "_read_keys", None)
            if (f.name not in read) if read is not None else v is None:
                continue  # absent from the file it was read from (or optional and unset)
            out[f.name] = _plain(v)
        return out

    def get(self, key, default=None):
        return self.to_dict().get(key, default)


def _plain(v):
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _record_class(hint):
    hint = _strip_optional(hint)
    return hint if isinstance(hint, type) and issubclass(hint, Record) else None


def _mapping_of_records(hint):
    hint = _strip_optional(hint)
    if typing.get_origin(hint) is dict:
        args = typing.get_args(hint)
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], Record):
            return args[1]
    return None


def _strip_optional(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return hint


def _what(f, hint) -> str:
    if "what" in f.metadata:
        return f.metadata["what"]
    hint = _strip_optional(hint)
    if _record_class(hint) is not None or typing.get_origin(hint) is dict or hint is dict:
        return "an object"
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list"}.get(
        hint, str(hint))


def _check_value(value, hint, f, path) -> list[tuple[str, str]]:
    test = f.metadata.get("test")
    if test is not None and not test(value):
        return [(path, f"expected {_what(f, hint)}, got {json.dumps(value)[:60]}")]
    sub = _record_class(hint)
    if sub is not None:
        return sub.problems(value, path + ".")
    rc = _mapping_of_records(hint)
    if rc is not None:
        if not isinstance(value, dict):
            return [(path, "expected an object")]
        return [p for k, v in value.items() for p in rc.problems(v, f"{path}.{k}.")]
    each = f.metadata.get("each")
    if each is not None and isinstance(value, dict):
        return [(f"{path}.{k}", f"expected {each[1]}, got {json.dumps(v)[:60]}") for k, v in value.items()
                if not each[0](v)]
    if test is not None:
        return []
    base = _strip_optional(hint)
    base = typing.get_origin(base) or base
    ok = {str: isinstance(value, str), bool: isinstance(value, bool), dict: isinstance(value, dict),
          list: isinstance(value, list), float: _number(value), int: _count(value)}.get(base, True)
    return [] if ok else [(path, f"expected {_what(f, hint)}, got {json.dumps(value)[:60]}")]


def _optional(test):
    return lambda x: x is None or test(x)


@dataclass(kw_only=True)
class ModelRef(Record):
    """The model block: adapter name, target and the config that decides its output."""
    name: str = rule(_text, "a non-empty string")
    adapter: str | None = None
    config: dict = field(default_factory=dict)
    first_frame: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class DatasetRef(Record):
    """The dataset block: which files the clips were cut from."""
    name: str = rule(_text, "a non-empty string")
    manifest_hash: str = rule(_text, "the manifest hash string")
    split: str = "test"
    root: str | None = None
    limit: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class ProtocolRef(Record):
    """The protocol block: ProtocolConfig's fields (kept in ``extra``) plus their fingerprint."""
    fingerprint: str = rule(_hex16, "16 lowercase hex digits")
    name: str = rule(_text, "a protocol name")
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class ClipCounts(Record):
    """The clips block: expected, generated / scored and failed clips."""
    expected: int = rule(_count, "a non-negative integer")
    failed: int = rule(_count, "a non-negative integer")
    generated: int | None = rule(_optional(_count), "a non-negative integer", None)
    scored: int | None = rule(_optional(_count), "a non-negative integer", None)
    failed_ids: list | None = rule(_optional(_ids), "a list of clip id strings", None)
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class MetricSummary(Record):
    """One metric's result: mean (already x scale) and its 95% interval."""
    mean: float = rule(_number, "a finite number")
    ci_low: float = rule(_number, "a finite number")
    ci_high: float = rule(_number, "a finite number")
    higher_is_better: bool = rule(lambda x: isinstance(x, bool), "true or false")
    scale: float | None = rule(_optional(_number), "a number", None)
    n_clips: int | None = rule(_optional(_count), "a non-negative integer", None)
    n_rows: int | None = rule(_optional(_count), "a non-negative integer", None)
    n_videos: int | None = rule(_optional(_count), "a non-negative integer", None)
    extra: dict = field(default_factory=dict)

    @classmethod
    def problems(cls, data, where=""):
        out = super().problems(data, where)
        if isinstance(data, dict) and _number(data.get("ci_low")) and _number(data.get("ci_high")) \
                and data["ci_low"] > data["ci_high"]:
            # a percentile bootstrap of a Frechet distance may lie beside the point estimate, so the
            # order of the bounds is the only rule for every metric
            out.append((where.rstrip("."), f"confidence interval [{data['ci_low']}, {data['ci_high']}] is reversed"))
        return out


def _metrics(x) -> bool:
    return isinstance(x, dict) and len(x) > 0


def _class_row(r) -> bool:
    return isinstance(r, dict) and all(_number(v) for v in r.values())


@dataclass(kw_only=True)
class RunRecord(Record):
    """run.json: everything that produced a run's clips (compared on resume)."""
    schema: str = rule(lambda x: x == RUN_SCHEMA, f'"{RUN_SCHEMA}"')
    model: ModelRef
    dataset: DatasetRef
    profile: str = rule(_text, 'a profile name such as "mini" or "paper"')
    protocol: ProtocolRef
    created: str | None = rule(_optional(_text), "an ISO 8601 time string", None)
    seeds: dict = field(default_factory=dict)
    encoding: dict | None = None
    status: str | None = None
    clips: ClipCounts | None = None
    timing_s: dict | None = None
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class Results(RunRecord):
    """results.json: the run record plus what scoring measured and how."""
    schema: str = rule(lambda x: x == RESULTS_SCHEMA, f'"{RESULTS_SCHEMA}"')
    fingerprint: str = rule(_hex16, "16 lowercase hex digits")
    created: str = rule(_text, "an ISO 8601 time string")
    clips: ClipCounts = field()  # required here (optional in run.json)
    metrics: dict[str, MetricSummary] = rule(_metrics, "a non-empty object of metric summaries")
    per_class: dict = rule(lambda x: isinstance(x, dict), "an object class -> {metric: finite number}",
                           each=(_class_row, "an object of metric -> finite number"))
    versions: dict = rule(lambda x: isinstance(x, dict), "an object")
    seeds: dict = rule(lambda x: isinstance(x, dict), "an object")
    backbones: dict | None = None
    notes: str | None = rule(_optional(lambda x: isinstance(x, str) and len(x) <= MAX_NOTES_CHARS),
                             f"a string of at most {MAX_NOTES_CHARS} characters", None)
    extra: dict = field(default_factory=dict)


def schema_table(cls=None) -> str:
    """Markdown tables of the records' fields (docs/results-format.md holds this text verbatim)."""
    classes = [cls] if cls else [RunRecord, Results, ModelRef, DatasetRef, ProtocolRef, ClipCounts, MetricSummary]
    out = []
    for c in classes:
        hints = typing.get_type_hints(c)
        out += [f"`{c.__name__}`: {c.__doc__.splitlines()[0] if c.__doc__ else ''}".rstrip(), "",
                "| field | required | expected |", "|---|---|---|"]
        for f in dataclasses.fields(c):
            if f.name == "extra":
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            sub = _record_class(hints[f.name]) or _mapping_of_records(hints[f.name])
            what = _what(f, hints[f.name]) + (f" (`{sub.__name__}`)" if sub else "")
            out.append(f"| `{f.name}` | {'yes' if required else 'no'} | {what} |")
        out.append("")
    out.append("Other keys are kept as they are (read and written back unchanged).")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# The fingerprint: what makes two results comparable
# --------------------------------------------------------------------------
#: The fields of a results file the fingerprint hashes: results of different fingerprints are
#: never ranked together.
FINGERPRINT_FIELDS = ("profile", "protocol.fingerprint", "dataset.name", "dataset.split",
                      "dataset.manifest_hash", "dataset.limit", "backbones", "encoding")


def results_fingerprint(results: dict) -> str:
    """Hash of profile, protocol, dataset (name, split, manifest, limit), evaluator backbones and clip
    encoding, from the results' own fields."""
    ds = results.get("dataset") or {}
    return stable_hash({"profile": results.get("profile"),
                        "protocol": (results.get("protocol") or {}).get("fingerprint"),
                        "dataset": [ds.get("name"), ds.get("split"), ds.get("manifest_hash"), ds.get("limit")],
                        "suite": results.get("backbones"), "encoding": results.get("encoding")})


# --------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------
def _read_json(path: Path, what: str, fix: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing: {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{path}: not valid JSON ({e}); {what}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    return data


def read_run_json(run_dir) -> dict:
    """run.json as written (a dict), with a clear error when it is missing or broken."""
    path = Path(run_dir) / RUN_FILE
    return _read_json(path, "delete the run folder or use another --out",
                      "not a run folder. Generate one with `asva-bench run`, or write run.json for clips "
                      "made by another tool (docs/results-format.md)")


def read_run(run_dir) -> RunRecord:
    path = Path(run_dir) / RUN_FILE
    return RunRecord.from_dict(read_run_json(run_dir), where=str(path))


def write_run(run_dir, record: dict | RunRecord) -> None:
    data = record.to_dict() if isinstance(record, Record) else record
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(data, indent=2, sort_keys=True))


def results_file(path) -> Path:
    """A run folder, a results.json or a NAME.json results file -> the file's path."""
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def scores_path_for(path) -> Path:
    """``results.json`` -> ``scores.jsonl``; ``NAME.json`` -> ``NAME.scores.jsonl``."""
    path = Path(path)
    return path.with_name(SCORES_FILE) if path.name == RESULTS_FILE else path.with_name(path.stem + ".scores.jsonl")


def rescoring_paths(run_dir, track: str) -> tuple[Path, Path]:
    """Where a rescoring under another protocol track writes (the run's own files stay intact)."""
    run_dir = Path(run_dir)
    return run_dir / f"results.{track}.json", run_dir / f"results.{track}.scores.jsonl"


def read_results_json(path) -> dict:
    """A results file as written (a dict): run folder, results.json or an entry's NAME.json."""
    p = results_file(path)
    return _read_json(p, "it must be the results.json written by the scoring stage",
                      f"no results file; score the run with `asva-bench score {p.parent}`")


def results_problems(data: dict) -> list[tuple[str, str]]:
    return Results.problems(data)


def read_results(path) -> Results:
    p = results_file(path)
    return Results.from_dict(read_results_json(p), where=str(p))


def write_results(results_path, results: dict | Results, scores: list[dict]) -> None:
    """scores.jsonl first, then the results file (its presence marks a complete scoring)."""
    data = results.to_dict() if isinstance(results, Record) else results
    scores_path = scores_path_for(results_path)
    with atomic_path(scores_path) as tmp:
        Path(tmp).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in scores))
    atomic_write_text(results_path, json.dumps(data, indent=2, sort_keys=True))


def read_scores(path) -> list[dict]:
    """scores.jsonl (or a results file / run folder: its scores beside it) -> one dict per clip."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        p = scores_path_for(results_file(p))
    if not p.is_file():
        raise RunFolderError(f"{p}: no per-clip scores; score the run with `asva-bench score {p.parent}`")
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunFolderError(f"{p}:{n}: not valid JSON ({e}); re-run the scoring stage") from None
            if not isinstance(row, dict) or not isinstance(row.get("clip_id"), str):
                raise RunFolderError(f"{p}:{n}: each line must be an object with a string clip_id")
            rows.append(row)
    return rows
