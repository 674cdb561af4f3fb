"""Reading and checking results files (schema ``asva-bench/results/v1``).

One checker serves two users: the site builder, which renders every readable
entry and shows a banner on coverage or fingerprint problems, and
``asva-bench leaderboard validate``, which gates submissions to
``leaderboard/entries/`` and turns every problem into a failure.

Problems carry a ``kind``: ``schema`` (the file cannot be read as results),
``coverage`` (clips missing or failed), ``fingerprint`` (not comparable with
the board it is meant for), ``values`` (a per-clip metric's mean outside its
own interval) and ``duplicate`` (a model label another entry of the same
board already has). A board is one (dataset, profile, track).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asva_bench import runs

SCHEMA = runs.RESULTS_SCHEMA
#: model names whose runs are reference rows, not competitors
GROUNDTRUTH = "groundtruth"
REFERENCE_MODELS = (GROUNDTRUTH, "static")
#: entries folder of the published board, beside this module
ENTRIES_DIR = Path(__file__).parent / "entries"


#: A results file that cannot be used at all (the run folder contract's one error type).
ResultsError = runs.RunFolderError


@dataclass(frozen=True)
class Problem:
    kind: str      # schema | coverage | fingerprint | values | duplicate
    where: str     # JSON path inside the file, e.g. "metrics.ia.ci_low"
    message: str

    def __str__(self):
        return f"[{self.kind}] {self.where}: {self.message}"


@dataclass
class ResultsFile:
    """A results file as found on disk, with the files that may sit beside it."""
    path: Path
    data: dict
    scores_path: Path | None      # per-clip scores, when present
    run_dir: Path | None          # run folder holding videos/, when this is a run's results.json
    problems: list[Problem] = field(default_factory=list)

    @property
    def model(self) -> str:
        return str(self.data.get("model", {}).get("name", "?"))

    @property
    def dataset(self) -> str:
        return str(self.data.get("dataset", {}).get("name", "?"))

    @property
    def profile(self) -> str:
        return str(self.data.get("profile", "?"))

    @property
    def fingerprint(self) -> str:
        return str(self.data.get("fingerprint", ""))

    @property
    def track(self) -> str:
        """The protocol track (a file without one: the profile's default, see published.track_of)."""
        from .published import track_of
        return track_of(self.data)

    @property
    def board_key(self) -> tuple[str, str, str]:
        return (self.dataset, self.profile, self.track)

    @property
    def label(self) -> str:
        """The model label a board shows (name plus the arguments that differ from the defaults)."""
        try:
            from asva_bench.results import model_label
            return model_label(self.data)
        except Exception:  # a file too broken for a label: its name
            return self.model


# --------------------------------------------------------------------------
# Finding and reading files
# --------------------------------------------------------------------------
def find_results_files(paths) -> list[Path]:
    """Expand command-line arguments: a results file, a run folder, or a folder of entries."""
    found = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / runs.RESULTS_FILE).is_file():
            found.append(p / runs.RESULTS_FILE)
        elif p.is_dir():
            inside = sorted(q for q in p.rglob("*.json")
                            if q.name != runs.RUN_FILE and not q.name.startswith("."))
            if not inside:
                raise ResultsError(f"{p}: folder holds no results.json or *.json entries; "
                                   "pass a run folder after its scoring stage, or a results file")
            found.extend(inside)
        else:
            raise ResultsError(f"{p}: no such file or folder; pass results.json files, "
                               "run folders or an entries folder")
    return found


def scores_path_for(path: Path) -> Path | None:
    """The per-clip scores beside a results file, when present (asva_bench.runs names them)."""
    candidate = runs.scores_path_for(path)
    return candidate if candidate.is_file() else None


def read_results(path) -> ResultsFile:
    path = Path(path)
    data = runs.read_results_json(path)
    run_dir = path.parent if path.name == runs.RESULTS_FILE and (path.parent / runs.VIDEOS_DIR).is_dir() else None
    return ResultsFile(path, data, scores_path_for(path), run_dir)


read_scores = runs.read_scores


# --------------------------------------------------------------------------
# Schema: the run folder contract's own check (asva_bench.runs.Results)
# --------------------------------------------------------------------------
def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_schema(data: dict) -> list[Problem]:
    return [Problem("schema", where, message + ("; write the file with this version's scoring stage"
                                                if where == "schema" else ""))
            for where, message in runs.results_problems(data)]


def check_protocol(data: dict) -> list[Problem]:
    """The protocol block must be a known protocol, unmodified, with its own fingerprint."""
    from asva_bench.profiles import registered_protocols
    from asva_bench.protocol import ProtocolConfig
    import dataclasses

    proto = data.get("protocol")
    if not isinstance(proto, dict):
        return []
    params = {k: v for k, v in proto.items() if k != "fingerprint"}
    names = {f.name for f in dataclasses.fields(ProtocolConfig)}
    unknown = sorted(set(params) - names)
    if unknown:
        return [Problem("fingerprint", "protocol", f"unknown protocol fields {unknown}; the file was "
                        "written by a different protocol version")]
    from asva_bench.protocol import fingerprint_of
    from asva_bench.tracks import record_track
    # results from before protocol tracks carry none: they were made on their profile's default
    track = record_track(params, str(data.get("profile", "paper")))
    try:
        cfg = ProtocolConfig(**{**params, "track": track})
    except (TypeError, ValueError) as e:
        return [Problem("fingerprint", "protocol", f"cannot rebuild the protocol ({e})")]
    out = []
    if fingerprint_of(params) != proto.get("fingerprint"):
        out.append(Problem("fingerprint", "protocol.fingerprint",
                           f"{proto.get('fingerprint')} is not the fingerprint of the protocol "
                           f"parameters in the file ({fingerprint_of(params)}); the file was edited by hand"))
    protocols = registered_protocols()
    known = protocols[cfg.name][1] if cfg.name in protocols else None
    if known is not None:
        known = known.replace(track=cfg.track)  # a registered protocol exists on both tracks
    if known is None:
        out.append(Problem("fingerprint", "protocol.name",
                           f"'{cfg.name}' is not a protocol any profile produces ({', '.join(sorted(protocols))})"))
    elif known != cfg:
        diff = sorted(k for k, v in known.to_dict().items() if params.get(k) != v)
        out.append(Problem("fingerprint", "protocol",
                           f"differs from the published '{cfg.name}' protocol in {diff}"))
    return out


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------
def _set_level(name: str, m: dict) -> bool:
    """Frechet distances (FID, FVD) are set-level: their bootstrap interval may lie beside the point
    estimate (docs/protocol.md, "Confidence intervals"); means of per-clip values may not."""
    if "n_clips" in m:
        return False
    if "n_rows" in m or "n_videos" in m:
        return True
    try:
        from asva_bench.metrics import METRICS, FrechetMetric
        return issubclass(METRICS.get(name), FrechetMetric)
    except Exception:  # an unknown metric: held to the rule
        return False


def check_values(data: dict) -> list[Problem]:
    """A per-clip metric's mean must lie inside its own 95% interval (a bootstrap of a mean cannot put it
    outside, up to rounding); a mean outside was edited or mis-computed."""
    out = []
    for name, m in (data.get("metrics") or {}).items():
        if not isinstance(m, dict) or not all(_is_number(m.get(k)) for k in ("mean", "ci_low", "ci_high")):
            continue
        if _set_level(name, m):
            continue
        tol = 1e-6 * max(1.0, abs(m["mean"]))
        if not m["ci_low"] - tol <= m["mean"] <= m["ci_high"] + tol:
            out.append(Problem("values", f"metrics.{name}.mean",
                               f"mean {m['mean']} lies outside its own 95% interval [{m['ci_low']}, "
                               f"{m['ci_high']}]; the file was edited or computed wrongly: rescore the run"))
    return out


def duplicate_labels(files: list[ResultsFile]) -> dict[int, Problem]:
    """index -> problem, for every file whose model label another file on the same board also has, with
    the same fingerprint (one of another fingerprint is flagged as such already, e.g. a --limit run)."""
    seen: dict[tuple, list[int]] = {}
    for i, rf in enumerate(files):
        seen.setdefault(rf.board_key + (rf.fingerprint, rf.label), []).append(i)
    out = {}
    for key, idx in seen.items():
        if len(idx) > 1:
            for i in idx:
                others = ", ".join(str(files[j].path) for j in idx if j != i)
                out[i] = Problem("duplicate", "model.name",
                                 f"model label '{key[4]}' is already on board {'/'.join(key[:3])} ({others}); "
                                 "one entry per model and arguments: remove one, or tell them apart with "
                                 "different --model-arg values")
    return out


# --------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------
def check_coverage(data: dict, scores: list[dict] | None = None) -> list[Problem]:
    out = []
    clips = data.get("clips") or {}
    exp, scored, failed = clips.get("expected"), clips.get("scored"), clips.get("failed")
    if not all(_is_int(x) for x in (exp, scored, failed)):
        return out  # the schema check reports it
    if exp == 0:
        out.append(Problem("coverage", "clips.expected", "0 clips expected: the run covered nothing"))
    ids = clips.get("failed_ids") or []
    shown = f" ({', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''})" if ids else ""
    if scored < exp:
        out.append(Problem("coverage", "clips.scored",
                           f"{scored} of {exp} clips scored ({exp - scored} missing){shown}"))
    if scored > exp:
        out.append(Problem("coverage", "clips.scored", f"{scored} clips scored but only {exp} expected"))
    if failed and failed != exp - scored:   # scoring counts the missing clips as failed
        out.append(Problem("coverage", "clips.failed", f"{failed} clips failed{shown}"))
    status = data.get("status")
    if status is not None and status != "complete":
        out.append(Problem("coverage", "status", f"run status is '{status}', not 'complete'"))
    for name, m in (data.get("metrics") or {}).items():
        if isinstance(m, dict) and _is_int(m.get("n_clips")) and m["n_clips"] < scored:  # Frechet: no n_clips
            out.append(Problem("coverage", f"metrics.{name}.n_clips",
                               f"computed on {m['n_clips']} of {scored} scored clips"))
    if scores is not None:
        ids = [r["clip_id"] for r in scores]
        dup = [i for i, c in Counter(ids).items() if c > 1]
        if dup:
            out.append(Problem("coverage", "scores.jsonl", f"duplicate clip ids, e.g. {dup[0]}"))
        if len(set(ids)) != scored:
            out.append(Problem("coverage", "scores.jsonl",
                               f"{len(set(ids))} distinct clips in scores.jsonl but clips.scored is {scored}"))
    return out


# --------------------------------------------------------------------------
# Fingerprint against a board
# --------------------------------------------------------------------------
#: the fields the fingerprint is made from, named when two fingerprints differ
FINGERPRINT_PARTS = ("profile", "protocol.fingerprint", "dataset.name", "dataset.split",
                     "dataset.manifest_hash", "dataset.limit", "backbones", "encoding")


def expected_fingerprint(data: dict) -> str:
    """The results fingerprint recomputed from the file's own fields (the scorer's recipe)."""
    from asva_bench.runs import results_fingerprint
    return results_fingerprint(data)


def check_fingerprint_inputs(data: dict) -> list[Problem]:
    """The fingerprint must hash the file's own inputs, and the dataset must be the one generated from."""
    out = []
    fp, want = data.get("fingerprint"), expected_fingerprint(data)
    if fp != want:
        out.append(Problem("fingerprint", "fingerprint",
                           f"{fp} is not the hash of the file's profile, protocol, dataset, backbones "
                           f"and encoding ({want}); the file was edited or written by another version"))
    if data.get("dataset_changed"):
        out.append(Problem("fingerprint", "dataset_changed",
                           "the dataset manifest changed between generation and scoring; "
                           "generate the run again on the current dataset"))
    return out


def _part(data, dotted):
    obj = data
    for k in dotted.split("."):
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def fingerprint_difference(data: dict, reference: dict) -> list[str]:
    """Which inputs of the fingerprint differ between two results files."""
    return [p for p in FINGERPRINT_PARTS if _part(data, p) != _part(reference, p)]


def board_reference(entries: list[ResultsFile]) -> ResultsFile | None:
    """The entry that fixes a board's fingerprint: the ground-truth run, else the most common one."""
    if not entries:
        return None
    for e in entries:
        if e.model == GROUNDTRUTH:
            return e
    common = Counter(e.fingerprint for e in entries).most_common()
    top = common[0][1]
    winner = sorted(fp for fp, n in common if n == top)[0]
    return next(e for e in entries if e.fingerprint == winner)


def check_fingerprint(entry: ResultsFile, reference: ResultsFile | None) -> list[Problem]:
    if reference is None or reference is entry or entry.fingerprint == reference.fingerprint:
        return []
    parts = fingerprint_difference(entry.data, reference.data)
    why = f" (differs in {', '.join(parts)})" if parts else ""
    return [Problem("fingerprint", "fingerprint",
                    f"{entry.fingerprint} does not match the board's {reference.fingerprint} from "
                    f"{reference.model} ({reference.path.name}){why}; results of different "
                    "fingerprints are not comparable and are not ranked")]


# --------------------------------------------------------------------------
# One call for a file
# --------------------------------------------------------------------------
def load_entry(path) -> ResultsFile:
    """Read a results file and attach its schema, protocol and coverage problems.

    Raises ResultsError when the file is not JSON at all; schema problems are
    attached so the caller decides (the builder refuses, the validator lists).
    """
    rf = read_results(path)
    rf.problems = check_schema(rf.data)
    if not rf.problems:
        rf.problems += check_protocol(rf.data) + check_fingerprint_inputs(rf.data) + check_values(rf.data)
        scores = read_scores(rf.scores_path) if rf.scores_path else None
        rf.problems += check_coverage(rf.data, scores)
    return rf


@dataclass
class ValidationReport:
    file: str
    ok: bool
    model: str
    dataset: str
    profile: str
    fingerprint: str
    reference: str | None
    problems: list[Problem]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


def validate_submission(path, entries_dir=ENTRIES_DIR, reference=None) -> ValidationReport:
    """Check a file for the published board: schema, values, fingerprint, full coverage, and a model
    label no other entry of its board has.

    The fingerprint is compared with ``reference`` (a results file) when given,
    else with the board in ``entries_dir`` for the same dataset, profile and track.
    """
    rf = load_entry(path)
    problems = list(rf.problems)
    ref = None
    if not any(p.kind == "schema" for p in problems):
        same_board = []
        if entries_dir is not None and Path(entries_dir).is_dir():
            for q in sorted(Path(entries_dir).rglob("*.json")):
                if q.resolve() == Path(path).resolve() or q.name.endswith(".scores.json"):
                    continue
                other = read_results(q)
                if not check_schema(other.data) and other.board_key == rf.board_key:
                    same_board.append(other)
        ref = read_results(reference) if reference is not None else board_reference(same_board)
        problems += check_fingerprint(rf, ref)
        dup = duplicate_labels([rf] + same_board).get(0)
        if dup is not None:
            problems.append(dup)
    return ValidationReport(str(path), not problems, rf.model, rf.dataset, rf.profile,
                            rf.fingerprint, str(ref.path) if ref else None, problems)
