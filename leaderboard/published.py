"""Published (reported) rows: the numbers the field compares against, as package data with their source.

``published/paper.json`` holds the paper's Table 1 (a) AVSync15, (b)
Landscapes, (c) TheGreatestHits, every row, with the user-study votes, and
the authors' repository table for the released AVSyncD checkpoints (FVD and
AlignSync at audio guidance 1 / 4 / 8) and sync classifier. They were made
with the reference code, so they belong on the ``paper`` boards of the
``asva-reference`` track of their dataset (docs/leaderboard.md). The site
shows them as *reported* rows, apart from measured ones and never ranked
with them; a measured row whose model and arguments match a reported row
(``match``) shows its difference to it.

Tracks of results files: ``results["protocol"]["track"]``; a file written
before tracks existed has none and reads as the profile's default
(``mini`` -> ``corrected``, ``paper`` -> ``asva-reference``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from asva_bench.tracks import DEFAULT_TRACK, TRACKS, record_track

PUBLISHED_FILE = Path(__file__).parent / "published" / "paper.json"
SCHEMA = "asva-bench/published/v1"


def track_of(data: dict) -> str:
    """The protocol track of a results file (a missing one: the profile's default)."""
    proto = data.get("protocol") if isinstance(data.get("protocol"), dict) else {}
    return record_track(proto, str(data.get("profile")))


@dataclass(frozen=True)
class PublishedRow:
    dataset: str
    model: str                  # the label the source prints
    source: str                 # key into ``sources``
    where: str                  # table / section of the source
    metrics: dict               # metric -> reported value (absent: not reported)
    citation: str
    url: str
    # {"model": adapter name, "config": {arg: value}, "checkpoint_contains": "checkpoint-N" (release rows)}
    match: dict = field(default_factory=dict)
    checkpoint: str | None = None
    profile: str = "paper"
    track: str = "asva-reference"

    @property
    def is_reference(self) -> bool:
        return self.match.get("model") in ("groundtruth", "static")

    def matches(self, model: str, config: dict) -> bool:
        """Does a measured run of adapter ``model`` with arguments ``config`` correspond to this row?"""
        if not self.match or self.match.get("model") != model:
            return False
        # a release's row applies to runs of that released checkpoint only
        part = self.match.get("checkpoint_contains")
        if part and part not in str((config or {}).get("checkpoint") or ""):
            return False
        for k, v in (self.match.get("config") or {}).items():
            got = (config or {}).get(k)
            try:
                if float(got) != float(v):
                    return False
            except (TypeError, ValueError):
                if got != v:
                    return False
        return True


def load_published(path=PUBLISHED_FILE) -> tuple[list[PublishedRow], dict]:
    """(rows, the whole document) of a published-numbers file."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r} is not {SCHEMA}")
    sources = doc["sources"]
    rows = []
    for r in doc["rows"]:
        src = sources[r["source"]]
        rows.append(PublishedRow(dataset=r["dataset"], model=r["model"], source=r["source"], where=r["where"],
                                 metrics=dict(r["metrics"]), citation=src["citation"], url=src["url"],
                                 match=dict(r.get("match") or {}), checkpoint=r.get("checkpoint"),
                                 profile=doc.get("profile", "paper"), track=doc.get("track", "asva-reference")))
    return rows, doc


def rows_for(dataset: str, profile: str, track: str, rows: list[PublishedRow] | None = None) -> list[PublishedRow]:
    """The reported rows that belong on the board (dataset, profile, track)."""
    rows = load_published()[0] if rows is None else rows
    return [r for r in rows if r.dataset == dataset and r.profile == profile and r.track == track]


def reported_value(rows: list[PublishedRow], model: str, config: dict, metric: str) -> tuple[float, PublishedRow] | None:
    """The reported value a measured (model, config) is compared with on ``metric``.

    The authors' release table comes first (a run of the released checkpoint is
    compared with what the release reports), then the paper's Table 1.
    """
    order = sorted((r for r in rows if r.matches(model, config) and metric in r.metrics),
                   key=lambda r: 0 if r.source == "repo-release" else 1)
    return (float(order[0].metrics[metric]), order[0]) if order else None


__all__ = ["DEFAULT_TRACK", "PUBLISHED_FILE", "PublishedRow", "TRACKS", "load_published", "reported_value",
           "rows_for", "track_of"]
