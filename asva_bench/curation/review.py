"""Review pages for the manual pass, and the marks a reviewer sends back.

``build_review`` writes ``OUT/review/``: an index of the classes and one page
per class (the leaderboard's base template, styles and sortable tables;
every string reaches the page through jinja2 autoescaping and the pages
forbid inline scripts, like the board). A class page lists

* its **examples** (kept, or dropped with their class when it is too small),
* its **dropped stretches**: maximal runs of contiguous clips the filters (or
  a review) dropped, with the filters that dropped them,
* its **bad inputs** (unreadable, no audio, too short), with the reason;

each item with its span, the mean of its clips' signals (out-of-bounds
values marked), its reason and a player for exactly that span of the
source video (a hard link under ``review/media/``, played with a media
fragment ``#t=start,end``). Columns sort by clicking. The reviewer marks
items *accept* or *reject*; marks stay in the browser (localStorage) and
leave it as ``review-<class>.json`` (the *Export marks* button).
``asva-bench curate --apply-review FILE...`` folds them back
(:func:`asva_bench.curation.pipeline.apply_review`): a rejected span drops
its clips, an accepted span keeps its clips whatever the filters said.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from .config import SIGNALS, CurationConfig, CurationError
from .decisions import Decisions

REVIEW_SCHEMA = "asva-bench/curation-review/v1"
MARKS = ("accept", "reject")
LABELS = {"pixel_diff": "pixel diff", "clip_change": "CLIP change", "max_amplitude": "max amp",
          "ia": "IA", "it": "IT", "p_sync": "P_Sync"}


class ReviewError(CurationError):
    """A marks file that cannot be folded in; names the file and the entry."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def class_page(cls: str) -> str:
    digest = hashlib.sha256(cls.encode()).hexdigest()[:6]
    return f"class-{slug(cls)[:40]}-{digest}.html"


def curation_id(cfg: CurationConfig) -> str:
    return f"{cfg.signal_fingerprint()}-{cfg.fingerprint()[:8]}"


class _Media:
    """Source videos under review/media/ once each, hard-linked (copied across file systems)."""

    def __init__(self, folder: Path, input_root: Path):
        self.folder, self.input_root, self.placed = folder, input_root, {}

    def add(self, rel: str) -> str | None:
        if rel not in self.placed:
            src = self.input_root / rel
            name = hashlib.sha256(rel.encode()).hexdigest()[:16] + Path(rel).suffix.lower()
            dst = self.folder / name
            if not src.is_file():
                self.placed[rel] = None
                return None
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            self.placed[rel] = quote(f"media/{name}")
        return self.placed[rel]


def _cells(signals: dict, cfg: CurationConfig) -> list[dict]:
    out = []
    for s in SIGNALS:
        v = signals.get(s) if signals else None
        t = cfg.thresholds.get(s)
        bad = bool(t and v is not None and t.check(v))
        ok_num = v is not None and not (isinstance(v, float) and math.isnan(v))
        out.append({"value": v if ok_num else None, "text": f"{v:.3g}" if ok_num else "\u2013", "bad": bad})
    return out


def _items(dec: Decisions, cfg: CurationConfig, cls: str, media: _Media) -> list[dict]:
    items = []
    clips_by_video: dict[str, list] = {}
    for c in dec.clips:
        if c.cls == cls:
            clips_by_video.setdefault(c.video, []).append(c)
    for e in dec.examples:
        if e.cls != cls:
            continue
        inside = [c for c in clips_by_video.get(e.video, []) if c.start >= e.start - 1e-6 and c.end <= e.end + 1e-6]
        sig = {s: sum(c.signals[s] for c in inside) / len(inside) for s in SIGNALS} if inside else {}
        src = media.add(e.video)
        items.append({"id": f"{e.video}@{e.start:.3f}-{e.end:.3f}", "kind": "kept" if e.status == "kept" else
                      "dropped example", "status": e.status, "video": e.video, "start": e.start, "end": e.end,
                      "cells": _cells(sig, cfg), "reason": e.reason or "passed every filter",
                      "media": f"{src}#t={e.start:.3f},{e.end:.3f}" if src else None,
                      "file": f"../videos/{quote(e.rel)}" if e.status == "kept" else None, "split": e.split})
    for r in dec.dropped_runs:
        if r["class"] != cls:
            continue
        src = media.add(r["video"])
        items.append({"id": f"{r['video']}@{r['start']:.3f}-{r['end']:.3f}", "kind": "dropped", "status": "dropped",
                      "video": r["video"], "start": r["start"], "end": r["end"], "cells": _cells(r["signals"], cfg),
                      "reason": r["reason"], "media": f"{src}#t={r['start']:.3f},{r['end']:.3f}" if src else None,
                      "file": None, "split": ""})
    items.sort(key=lambda it: (it["video"], it["start"]))
    return items


def build_review(out, input_root, dec: Decisions, cfg: CurationConfig) -> dict:
    """Write OUT/review/ (index, one page per class, static files, media links); returns the pages."""
    from ..leaderboard.build import STATIC, environment
    out, input_root = Path(out), Path(input_root)
    folder = out / "review"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "static").mkdir(exist_ok=True)
    for name in ("leaderboard.css", "leaderboard.js", "review.css", "review.js"):
        shutil.copyfile(STATIC / name, folder / "static" / name)
    media = _Media(folder / "media", input_root)
    env = environment()
    cid = curation_id(cfg)
    thresholds = [{"signal": s, "label": LABELS[s], "about": SIGNALS[s][1],
                   "low": cfg.thresholds[s].low if s in cfg.thresholds else None,
                   "high": cfg.thresholds[s].high if s in cfg.thresholds else None} for s in SIGNALS]
    pages, rows = {}, []
    for cls in sorted(dec.classes):
        info = dec.classes[cls]
        items = _items(dec, cfg, cls, media)
        bad = [v for v in dec.videos if v["class"] == cls and v["status"] != "ok"]
        data = {"schema": REVIEW_SCHEMA, "curation": cid, "class": cls,
                "items": [{"id": it["id"], "video": it["video"], "start": it["start"], "end": it["end"],
                           "kind": it["kind"]} for it in items]}
        html = env.get_template("review.html.j2").render(
            cls=cls, info=info, items=items, bad=bad, data=data, thresholds=thresholds,
            labels=[LABELS[s] for s in SIGNALS], cfg=cfg, curation=cid, page_file=class_page(cls))
        (folder / class_page(cls)).write_text(html, encoding="utf-8")
        pages[cls] = str(folder / class_page(cls))
        rows.append({"cls": cls, "page": class_page(cls), "info": info, "items": len(items),
                     "kept": sum(it["status"] == "kept" for it in items),
                     "dropped": sum(it["kind"] == "dropped" for it in items), "bad": len(bad)})
    index = env.get_template("review_index.html.j2").render(rows=rows, cfg=cfg, curation=cid,
                                                             min_examples=cfg.min_class_examples)
    (folder / "index.html").write_text(index, encoding="utf-8")
    return {"index": str(folder / "index.html"), "classes": pages}


def read_marks_file(path, known_videos: set[str]) -> list[dict]:
    """The marks of an exported review file, checked: [{video, start, end, mark, kind, class, file}]."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReviewError(f"{path}: review file not found") from None
    except json.JSONDecodeError as e:
        raise ReviewError(f"{path}: not valid JSON ({e}); export it again from the review page") from e
    if not isinstance(d, dict) or d.get("schema") != REVIEW_SCHEMA or not isinstance(d.get("marks"), list):
        raise ReviewError(f"{path}: not a curation review file (schema {REVIEW_SCHEMA!r} with a 'marks' list); "
                          "export it with the review page's 'Export marks' button")
    out = []
    for n, m in enumerate(d["marks"]):
        where = f"{path}: marks[{n}]"
        if not isinstance(m, dict) or m.get("mark") not in MARKS:
            raise ReviewError(f"{where}: 'mark' must be one of {', '.join(MARKS)}")
        if m.get("video") not in known_videos:
            raise ReviewError(f"{where}: video {m.get('video')!r} is not in the curation's input folder")
        try:
            start, end = float(m["start"]), float(m["end"])
        except (KeyError, TypeError, ValueError):
            raise ReviewError(f"{where}: 'start' and 'end' must be numbers (seconds)") from None
        if not (0 <= start < end):
            raise ReviewError(f"{where}: need 0 <= start < end, got {start}..{end}")
        out.append({"video": m["video"], "start": round(start, 3), "end": round(end, 3), "mark": m["mark"],
                    "kind": str(m.get("kind", "")), "class": str(d.get("class", "")), "file": path.name})
    return out
