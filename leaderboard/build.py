"""Static leaderboard site from results files.

``build_site(inputs, out)`` renders, with the jinja2 templates beside this
module:

- ``index.html``: the boards (one per dataset, profile and protocol track);
- ``board-<dataset>-<profile>-<track>.html``: a sortable models x metrics
  table, ranked by default by the primary sync metric (AlignSync; ties share
  a rank and a style), with the board's protocol fingerprint, a banner for
  every entry whose coverage is incomplete or whose fingerprint differs, a
  tag on every row of a reduced protocol (``--limit``), and, on the paper
  boards of the ``asva-reference`` track, the published (reported) rows of
  its dataset in their own section (published.py), never ranked with the
  measured rows; a measured row shows its difference to the reported row of
  the same model;
- ``run-<slug>.html``: one page per run: provenance, per-class table, a plot
  of per-class sync scores and a paged gallery of clips (ground truth beside
  generated, lazily loaded).

The site is self-contained: styles and scripts are copied from ``static/``,
gallery clips are hard-linked (or copied) under ``media/``, all links are
relative, nothing is fetched from the network, so it works from ``file://``
and behind any static server. Every string from a results file reaches the
page through jinja2 autoescaping (and the pages forbid inline scripts), so a
model called ``<script>...`` is shown, not run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from asva_bench import runs
from asva_bench.metrics import METRICS, metric_label, metric_order

from .published import PublishedRow, load_published, reported_value, rows_for
from .validate import GROUNDTRUTH, REFERENCE_MODELS, Problem, ResultsError, ResultsFile, \
    board_reference, check_fingerprint, duplicate_labels, find_results_files, load_entry, read_scores

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: a file that marks a folder as a site this builder made (and may replace)
SITE_MARKER = ".asva-leaderboard-site"

CLIP_ID = re.compile(r"^[^/\\\x00]+(/[^/\\\x00]+)*$")


class SiteError(RuntimeError):
    """The site cannot be written where asked; the message says what to do."""


# --------------------------------------------------------------------------
# Model of the site
# --------------------------------------------------------------------------
@dataclass
class Entry:
    rf: ResultsFile
    slug: str
    scores: list[dict] | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def data(self) -> dict:
        return self.rf.data

    @property
    def model(self) -> str:
        return self.rf.model

    @property
    def is_groundtruth(self) -> bool:
        return self.model.lower() == GROUNDTRUTH

    @property
    def is_reference(self) -> bool:
        return self.model.lower() in REFERENCE_MODELS

    @property
    def ranked(self) -> bool:
        """Competes for 'best': not a reference row, comparable, complete."""
        return not self.is_reference and not self.problems

    @property
    def page(self) -> str:
        return f"run-{self.slug}.html"


@dataclass
class Board:
    dataset: str
    profile: str
    entries: list[Entry]
    reference: Entry | None
    track: str = "corrected"
    reported: list[PublishedRow] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{slugify(self.dataset)}-{slugify(self.profile)}-{slugify(self.track)}"

    @property
    def page(self) -> str:
        return f"board-{self.slug}.html"

    @property
    def fingerprint(self) -> str:
        return self.reference.rf.fingerprint if self.reference else ""

    @property
    def groundtruth(self) -> Entry | None:
        return next((e for e in self.entries
                     if e.is_groundtruth and e.rf.fingerprint == self.fingerprint), None)


def slugify(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit] or "x"


def format_value(v) -> str:
    if v is None:
        return "\u2013"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}"


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------
def load_entries(inputs) -> tuple[list[Entry], list[str]]:
    """Read every results file; refuse unreadable ones, keep notes on duplicates."""
    notes, seen, entries, errors = [], set(), [], []
    for path in find_results_files(inputs):
        key = path.resolve()
        if key in seen:
            notes.append(f"{path}: given more than once; rendered once")
            continue
        seen.add(key)
        rf = load_entry(path)
        schema = [p for p in rf.problems if p.kind == "schema"]
        if schema:
            errors.append(f"{path}:\n" + "\n".join(f"  - {p.where}: {p.message}" for p in schema))
            continue
        scores = read_scores(rf.scores_path) if rf.scores_path else None
        for row in scores or []:
            if not CLIP_ID.match(row["clip_id"]) or ".." in row["clip_id"].split("/"):
                raise ResultsError(f"{rf.scores_path}: clip_id {row['clip_id']!r} is not a relative "
                                   "path inside the run folder's videos/; fix the scores file")
        digest = hashlib.sha256(str(key).encode()).hexdigest()[:8]
        slug = f"{slugify(rf.model)}-{slugify(rf.dataset, 20)}-{slugify(rf.profile, 12)}-{digest}"
        entries.append(Entry(rf, slug, scores, list(rf.problems)))
    if errors:
        raise ResultsError("these results files do not follow the results schema "
                           "(docs/results-format.md); check them with "
                           "`asva-bench leaderboard validate FILE`:\n" + "\n".join(errors))
    if not entries:
        raise ResultsError("no results files given")
    return entries, notes


def make_boards(entries: list[Entry], reported: bool = True) -> list[Board]:
    """One board per (dataset, profile, track); with ``reported``, the published rows join the paper
    boards of the asva-reference track of their dataset (such a board exists even with no measured
    entry, so the numbers to compare against are always on the site)."""
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.rf.board_key, []).append(e)
    published = load_published()[0] if reported else []
    for r in published:
        groups.setdefault((r.dataset, r.profile, r.track), [])
    dups = duplicate_labels([e.rf for e in entries])
    for i, problem in dups.items():
        entries[i].problems.append(problem)
    boards = []
    for (dataset, profile, track), group in sorted(groups.items()):
        ref_rf = board_reference([e.rf for e in group])
        ref = next((e for e in group if e.rf is ref_rf), None)
        for e in group:
            e.problems += check_fingerprint(e.rf, ref_rf)
        group.sort(key=lambda e: (e.model.lower(), e.slug))
        boards.append(Board(dataset, profile, group, ref, track, rows_for(dataset, profile, track, published)))
    return boards


# --------------------------------------------------------------------------
# Page contexts
# --------------------------------------------------------------------------
def _rounded(v) -> float | None:
    """The value as shown (format_value): what ties and 'best' are decided on."""
    return None if v is None else float(format_value(v))


def primary_metric(board: Board, keys: list[str]) -> str | None:
    """The default rank: of the metrics the board's ranked entries have, the registered one with the
    lowest ``board_rank`` (AlignSync, the paper's primary sync metric, then RelSync); else the first
    column."""
    ranked_keys = {k for e in board.entries if e.ranked for k in e.data["metrics"]}
    candidates = [k for k in ranked_keys if k in METRICS and METRICS.get(k).board_rank is not None]
    return min(candidates, key=lambda k: (METRICS.get(k).board_rank, k), default=next(iter(keys), None))


def metric_help(key: str, long_name: str | None) -> str:
    """A column's tooltip: the metric class's help and the protocol its results record."""
    text = METRICS.get(key).help if key in METRICS else ""
    return " ".join(t for t in (text, f"({long_name})" if long_name else "") if t) or key


def competition_ranks(values: list[float], higher_is_better: bool) -> list[int]:
    """1 + the number of strictly better values: equal values share a rank ("1, 2, 2, 4")."""
    return [1 + sum((w > v) if higher_is_better else (w < v) for w in values) for v in values]


def board_context(board: Board) -> dict:
    keys = metric_order({k for e in board.entries for k in e.data["metrics"]}
                        | {k for r in board.reported for k in r.metrics})
    # direction: the metric class's; a metric not registered here, the board's first entry's record
    hib_of = {k: METRICS.get(k).higher_is_better if k in METRICS else
              next((e.data["metrics"][k]["higher_is_better"] for e in board.entries if k in e.data["metrics"]), True)
              for k in keys}
    columns = []
    for k in keys:
        hib = hib_of[k]
        means = [_rounded(e.data["metrics"][k]["mean"]) for e in board.entries if e.ranked and k in e.data["metrics"]]
        best = (max(means) if hib else min(means)) if means else None
        long_name = next((e.data["metrics"][k].get("long_name") for e in board.entries
                          if isinstance(e.data["metrics"].get(k, {}).get("long_name"), str)), None)
        columns.append({"key": k, "label": metric_label(k), "help": metric_help(k, long_name),
                        "higher_is_better": hib, "best": best})

    # default rank: the primary sync metric, on the values as shown
    primary = primary_metric(board, keys)
    ranked = [e for e in board.entries if e.ranked and primary in e.data["metrics"]]
    ranks = dict(zip((e.slug for e in ranked),
                     competition_ranks([_rounded(e.data["metrics"][primary]["mean"]) for e in ranked],
                                       hib_of.get(primary, True)))) if primary else {}
    tied = {r for r in ranks.values() if list(ranks.values()).count(r) > 1}

    rows = []
    for e in board.entries:
        cfg = e.data["model"].get("config") or {}
        cells = []
        for c in columns:
            m = e.data["metrics"].get(c["key"])
            if m is None:
                cells.append({"value": None, "text": format_value(None), "ci": "", "best": False, "delta": None})
                continue
            delta = None
            if board.reported and not e.is_groundtruth:
                got = reported_value(board.reported, e.model, cfg, c["key"])
                if got is not None:
                    rv, row = got
                    delta = {"text": f"{m['mean'] - rv:+.2f}", "reported": format_value(rv),
                             "title": f"measured {format_value(m['mean'])} - reported {format_value(rv)} "
                                      f"({row.model}, {row.where}; {row.citation})"}
            cells.append({"value": m["mean"], "text": format_value(m["mean"]),
                          "ci": f"{format_value(m['ci_low'])}\u2013{format_value(m['ci_high'])}",
                          "best": e.ranked and c["best"] is not None and _rounded(m["mean"]) == c["best"],
                          "delta": delta})
        clips = e.data["clips"]
        limit = (e.data.get("dataset") or {}).get("limit")
        rank = ranks.get(e.slug)
        rows.append({"entry": e, "cells": cells, "clips": f"{clips['scored']}/{clips['expected']}",
                     "rank": rank, "tie": rank in tied, "limit": limit})
    # ranked rows first, by rank; the others (reference rows, warnings, no primary value) by name
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["entry"].model.lower(), r["entry"].slug))

    reported = []
    for r in board.reported:
        cells = [{"value": r.metrics.get(c["key"]), "text": format_value(r.metrics.get(c["key"]))} for c in columns]
        reported.append({"row": r, "cells": cells, "is_reference": r.is_reference,
                         "source_label": r.where.split(" (")[0] if r.source == "paper-table1" else "authors' release"})
    ref = board.reference.data if board.reference else {}
    doc = load_published()[1] if board.reported else {}
    study = doc.get("user_study") if doc.get("user_study", {}).get("dataset") == board.dataset else None
    return {"board": board, "columns": columns, "rows": rows, "reported": reported,
            "primary": {"key": primary, "label": metric_label(primary) if primary else None,
                        "higher_is_better": hib_of.get(primary, True)} if primary else None,
            "sources": doc.get("sources", {}), "user_study": study,
            "sync_classifier": doc.get("sync_classifier") if board.reported else None,
            "protocol": ref.get("protocol", {}), "backbones": ref.get("backbones", {}),
            "encoding": ref.get("encoding", {}), "manifest_hash": ref.get("dataset", {}).get("manifest_hash"),
            "warned": [e for e in board.entries if e.problems]}


def select_gallery(entry: Entry, per_class: int) -> list[dict]:
    """Clips to show: up to ``per_class`` per class, distinct source videos first."""
    run_dir = entry.rf.run_dir
    if run_dir is None:
        return []
    if entry.scores is not None:
        rows = [(r["clip_id"], str(r.get("class") or r["clip_id"].split("/")[0]), r.get("text"))
                for r in entry.scores]
    else:
        rows = [(c, c.split("/")[0], None) for c in runs.present_clips(run_dir)]
    by_class: dict[str, list] = {}
    for clip_id, cls, text in sorted(rows):
        if (run_dir / runs.clip_relpath(clip_id)).is_file():
            by_class.setdefault(cls, []).append((clip_id, text))
    chosen = []
    for cls in sorted(by_class):
        seen_videos, first, rest = set(), [], []
        for clip_id, text in by_class[cls]:
            video = re.sub(r"_clip-\d+$", "", clip_id)
            (rest if video in seen_videos else first).append((clip_id, text))
            seen_videos.add(video)
        for clip_id, text in (first + rest)[:per_class]:
            chosen.append({"clip_id": clip_id, "class": cls, "text": text})
    return chosen


def plot_context(classes: list[str], values: dict[str, float], gt: dict[str, float] | None) -> dict:
    """Geometry of a horizontal bar chart (model bar, ground-truth bar below it)."""
    label_w, bar_w, row_h, top = 170, 420, 26, 8
    nums = list(values.values()) + list((gt or {}).values())
    lo, hi = min([0.0] + nums), max([0.0] + nums)
    span = (hi - lo) or 1.0
    x = lambda v: label_w + (v - lo) / span * bar_w
    rows = []
    for i, cls in enumerate(classes):
        y = top + i * row_h
        bars = []
        for kind, src, dy, h in (("model", values, 2, 11), ("gt", gt or {}, 14, 7)):
            if cls in src:
                v = src[cls]
                x0, x1 = sorted((x(0.0), x(v)))
                bars.append({"kind": kind, "x": round(x0, 1), "y": y + dy, "w": round(max(x1 - x0, 0.5), 1),
                             "h": h, "value": format_value(v), "tx": round(max(x0, x1) + 4, 1)})
        short = cls if len(cls) <= 28 else cls[:27] + "\u2026"   # the label column is 170 px
        rows.append({"label": cls, "short": short, "y": y + 13, "bars": bars})
    return {"width": label_w + bar_w + 60, "height": top * 2 + len(classes) * row_h,
            "axis_x": round(x(0.0), 1), "rows": rows, "has_gt": bool(gt)}


def run_context(entry: Entry, board: Board, media: "MediaStore", per_class: int, page_size: int) -> dict:
    data = entry.data
    per = data.get("per_class", {})
    classes = sorted(per)
    # the scoring stage stores each class's clip count beside its metric means
    keys = metric_order({k for row in per.values() for k in row if k != "n_clips"})
    gt = board.groundtruth
    gt_per = gt.data.get("per_class", {}) if gt and gt is not entry else None
    plots = []
    for k in keys:   # the primary metrics (declared with a board_rank: the sync metrics) per class
        if k in METRICS and METRICS.get(k).board_rank is not None:
            vals = {c: per[c][k] for c in classes if k in per[c]}
            ref = {c: gt_per[c][k] for c in classes if gt_per and k in gt_per.get(c, {})} or None
            plots.append({"key": k, "label": metric_label(k), "plot": plot_context(classes, vals, ref)})
    gallery = []
    for i, item in enumerate(select_gallery(entry, per_class)):
        gen = media.add(entry, item["clip_id"])
        gt_src = media.add(gt, item["clip_id"]) if gt is not None and gt is not entry else None
        gallery.append(dict(item, generated=gen, groundtruth=gt_src, page=i // page_size))
    n_pages = (len(gallery) + page_size - 1) // page_size
    def count(m):  # clip metrics count clips; Frechet metrics count videos
        if isinstance(m.get("n_clips"), int):
            return str(m["n_clips"])
        return f"{m['n_videos']} videos" if isinstance(m.get("n_videos"), int) else "\u2013"

    metrics = [{"key": k, "label": metric_label(k), **data["metrics"][k], "count": count(data["metrics"][k]),
                "text": format_value(data["metrics"][k]["mean"]),
                "ci": f"{format_value(data['metrics'][k]['ci_low'])}\u2013{format_value(data['metrics'][k]['ci_high'])}"}
               for k in metric_order(data["metrics"])]
    n_by_class = {c: row["n_clips"] for c, row in per.items() if isinstance(row.get("n_clips"), int)}
    if not n_by_class:
        for r in entry.scores or []:
            c = str(r.get("class") or r["clip_id"].split("/")[0])
            n_by_class[c] = n_by_class.get(c, 0) + 1
    return {"entry": entry, "board": board, "data": data, "metrics": metrics,
            "class_keys": keys, "class_labels": [metric_label(k) for k in keys],
            "classes": [{"name": c, "n": n_by_class.get(c), "cells": [per[c].get(k) for k in keys]}
                        for c in classes],
            "plots": plots, "gallery": gallery, "n_pages": n_pages,
            "gallery_note": None if entry.is_groundtruth or (gt is not None and gt.rf.run_dir)
            else "No ground-truth run folder of this board is in the build, so clips are shown alone.",
            "has_run_dir": entry.rf.run_dir is not None, "has_class_counts": bool(n_by_class),
            "provenance": provenance(data, entry)}


#: provenance fields in reading order; any other top-level field follows them
PROVENANCE_ORDER = [("model.name", "model"), ("notes", "notes"), ("model.adapter", "adapter"),
                    ("model.config", "adapter config"), ("dataset", "dataset"), ("profile", "profile"),
                    ("fingerprint", "fingerprint"), ("protocol", "protocol"), ("backbones", "backbones"),
                    ("encoding", "encoding"), ("seeds", "seeds"), ("versions", "versions"),
                    ("git_revision", "git revision"), ("clips", "clips"), ("timing_s", "timing (s)"),
                    ("created", "created"), ("status", "status")]
NOT_PROVENANCE = {"schema", "model", "metrics", "per_class"}


def provenance(data: dict, entry: Entry) -> list[tuple[str, str]]:
    """(label, text) pairs; nested values as indented JSON, shown in <pre>."""
    def text(v):
        if isinstance(v, (dict, list)):
            return json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
        return "\u2013" if v is None else str(v)

    rows, seen = [], set()
    for dotted, label in PROVENANCE_ORDER:
        head, _, tail = dotted.partition(".")
        seen.add(head)
        obj = data.get(head)
        if tail:
            obj = obj.get(tail) if isinstance(obj, dict) else None
        if obj is not None or dotted in ("git_revision",):
            rows.append((label, text(obj)))
    for k in sorted(set(data) - seen - NOT_PROVENANCE):
        rows.append((k.replace("_", " "), text(data[k])))
    rows.append(("results file", str(entry.rf.path)))
    return rows


# --------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------
class MediaStore:
    """Places gallery clips under ``media/`` once each, by a name that is safe in a URL."""

    def __init__(self, site: Path):
        self.site = site
        self.placed: dict[tuple[str, str], str] = {}

    def add(self, entry: Entry, clip_id: str) -> str | None:
        key = (entry.slug, clip_id)
        if key in self.placed:
            return self.placed[key]
        src = entry.rf.run_dir / runs.clip_relpath(clip_id) if entry.rf.run_dir else None
        if src is None or not src.is_file():
            self.placed[key] = None
            return None
        name = hashlib.sha256(clip_id.encode()).hexdigest()[:16] + ".mp4"
        dst = self.site / "media" / entry.slug / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, dst)
        self.placed[key] = quote(f"media/{entry.slug}/{name}")
        return self.placed[key]


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
def environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = format_value
    return env


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished site into place; only ever replaces a folder this builder made."""
    if out.exists():
        if not out.is_dir():
            raise SiteError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not (out / SITE_MARKER).exists():
            raise SiteError(f"{out}: folder exists and is not a leaderboard site; refusing to "
                            "replace it: choose an empty or new --out folder")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def build_site(inputs, out, gallery_per_class: int = 2, gallery_page_size: int = 6,
               progress: bool = True, reported: bool = True) -> dict:
    """Render the site for ``inputs`` (results files, run folders, entry folders) into ``out``.

    Returns a summary (also written as ``site.json``): boards, entries, pages, problems.
    """
    from tqdm import tqdm

    if gallery_per_class < 0 or gallery_page_size < 1:
        raise ValueError("gallery_per_class must be >= 0 and gallery_page_size >= 1")
    out = Path(out)
    entries, notes = load_entries(inputs)
    boards = make_boards(entries, reported=reported)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        env = environment()
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        shutil.copytree(STATIC, tmp / "static")
        media = MediaStore(tmp)
        common = {"created": created, "boards": boards}
        (tmp / "index.html").write_text(env.get_template("index.html.j2").render(**common), encoding="utf-8")
        n_pages = len(entries) + len(boards) + 1
        with tqdm(total=n_pages, desc="leaderboard pages", unit="page", disable=not progress) as bar:
            bar.update(1)
            for b in boards:
                html = env.get_template("board.html.j2").render(**common, **board_context(b))
                (tmp / b.page).write_text(html, encoding="utf-8")
                bar.update(1)
                for e in b.entries:
                    ctx = run_context(e, b, media, gallery_per_class, gallery_page_size)
                    (tmp / e.page).write_text(env.get_template("run.html.j2").render(**common, **ctx),
                                              encoding="utf-8")
                    bar.update(1)
        summary = {
            "schema": "asva-bench/site/v1", "site": str(out), "created": created, "notes": notes,
            "boards": [{"dataset": b.dataset, "profile": b.profile, "track": b.track, "page": b.page,
                        "fingerprint": b.fingerprint,
                        "reported": [{"model": r.model, "source": r.source, "where": r.where, "metrics": r.metrics}
                                     for r in b.reported],
                        "entries": [{"model": e.model, "page": e.page, "results": str(e.rf.path),
                                     "fingerprint": e.rf.fingerprint, "reference": e.is_reference,
                                     "ranked": e.ranked,
                                     "problems": [{"kind": p.kind, "where": p.where, "message": p.message}
                                                  for p in e.problems]}
                                    for e in b.entries]} for b in boards],
            "clips": sum(1 for v in media.placed.values() if v),
        }
        (tmp / "site.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (tmp / SITE_MARKER).write_text("made by asva-bench leaderboard build; safe to replace\n")
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary
