"""From per-clip signals to the dataset: filters, review marks, merging, the class rule, the split.

Every step is a pure function of the shard records, the config and the
review marks, so the decision stage can be re-run alone (``curate --merge``)
after a threshold change or a review, and gives the same result whatever
the sharding was.

1. **Filters.** A clip passes when each of its signals lies inside the
   config's bounds; the reason lists every failed bound (``p_sync<0.2``).
2. **Review marks** (``curate --apply-review``) override filters on time
   spans of source videos: *reject* drops every clip overlapping the span,
   *accept* keeps every clip wholly inside it (reject wins where they meet).
3. **Merge.** Contiguous kept clips of one scene (starts one stride apart)
   form one stretch; a stretch longer than ``max_example_seconds`` is cut
   into equal pieces (each at least a clip long). Each piece is an example.
   Examples of a video never overlap: a stretch that begins inside the
   previous example starts at its end, and is dropped when less than a
   clip is left.
4. **Class rule.** Classes with fewer than ``min_class_examples`` examples
   are dropped.
5. **Split.** Per kept class, its source videos are ordered by a hash of
   their path and the first ``ceil(test_fraction x videos)`` (at least one,
   when the class has two or more videos) give the test examples, so no
   video has examples on both sides.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from .config import SIGNALS, CurationConfig

EPS = 1e-6


@dataclass
class ClipDecision:
    video: str
    cls: str
    scene: int
    start: float
    end: float
    signals: dict
    failed: list[str]                 # "signal<bound" texts
    review: str = ""                  # "", "accepted", "rejected"
    example: str = ""                 # the example whose span holds the clip's start
    status: str = "dropped"           # "kept" | "dropped"
    reason: str = ""

    @property
    def passed_filters(self) -> bool:
        return not self.failed

    @property
    def selected(self) -> bool:
        """Kept by filters and review (before the class rule)."""
        return self.review != "rejected" and (self.passed_filters or self.review == "accepted")


@dataclass
class Example:
    id: str                 # "<class>/<stem>_<start ms>_<end ms>" (the dataset file, less .mp4)
    cls: str
    video: str
    scene: int
    start: float
    end: float
    clips: int
    status: str = "kept"
    reason: str = ""
    split: str = ""

    @property
    def rel(self) -> str:
        return f"{self.id}.mp4"

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Decisions:
    clips: list[ClipDecision]
    examples: list[Example]
    classes: dict[str, dict]                         # class -> {examples, videos, kept, reason}
    videos: list[dict]                               # the shard video records (bad inputs included)
    dropped_runs: list[dict] = field(default_factory=list)

    def kept_examples(self) -> list[Example]:
        return [e for e in self.examples if e.status == "kept"]


def _ms(t: float) -> int:
    return int(round(t * 1000))


def example_id(cls: str, stem: str, start: float, end: float) -> str:
    return f"{cls}/{stem}_{_ms(start):07d}_{_ms(end):07d}"


def filter_clip(signals: dict, cfg: CurationConfig) -> list[str]:
    failed = []
    for name in SIGNALS:
        t = cfg.thresholds.get(name)
        if t is None:
            continue
        bound = t.check(signals.get(name))
        if bound:
            failed.append(f"{name}{bound}")
    return failed


def pieces(start: float, end: float, max_seconds: float) -> list[tuple[float, float]]:
    """[start, end] cut into ceil(length / max) equal pieces (ms resolution)."""
    n = max(1, math.ceil((end - start) / max_seconds - EPS))
    edges = [round(start + (end - start) * k / n, 3) for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def apply_marks(clips: list[ClipDecision], marks: list[dict]) -> None:
    by_video: dict[str, list[dict]] = {}
    for m in marks:
        by_video.setdefault(m["video"], []).append(m)
    for c in clips:
        ms = by_video.get(c.video)
        if not ms:
            continue
        rejected = any(m["mark"] == "reject" and c.start < m["end"] - EPS and c.end > m["start"] + EPS for m in ms)
        accepted = any(m["mark"] == "accept" and c.start >= m["start"] - EPS and c.end <= m["end"] + EPS for m in ms)
        c.review = "rejected" if rejected else "accepted" if accepted else ""


def _split_videos(videos: list[str], test_fraction: float) -> set[str]:
    """The test videos of one class: the first ceil(fraction x n) by a hash of their path."""
    if len(videos) < 2:
        return set()
    order = sorted(videos, key=lambda v: hashlib.sha256(v.encode()).hexdigest())
    n_test = min(len(videos) - 1, max(1, math.ceil(round(test_fraction * len(videos), 9))))
    return set(order[:n_test])


def decide(videos: list[dict], cfg: CurationConfig, marks: list[dict] | None = None) -> Decisions:
    """``videos``: shard records (sorted by path), each with its clips' signals."""
    from .clips import VideoInput
    clips: list[ClipDecision] = []
    for v in videos:
        for c in v.get("clips", []):
            sig = {k: c[k] for k in SIGNALS}
            clips.append(ClipDecision(v["video"], v["class"], c["scene"], c["start"], c["end"], sig,
                                      filter_clip(sig, cfg)))
    apply_marks(clips, marks or [])

    # merge contiguous selected clips of one scene
    stems = {v["video"]: VideoInput(v["video"], v["class"], "", 0).stem for v in videos}
    examples: list[Example] = []
    run: list[ClipDecision] = []

    def close():
        if not run:
            return
        first, last = run[0], run[-1]
        # examples never overlap: a stretch starts where the previous one of the video ended
        prev = next((e.end for e in reversed(examples) if e.video == first.video), None)
        start = first.start if prev is None else max(first.start, prev)
        if last.end - start >= cfg.clip_seconds - EPS:
            for a, b in pieces(start, last.end, cfg.max_example_seconds):
                n = sum(1 for c in run if c.start >= a - EPS and c.end <= b + EPS)
                examples.append(Example(example_id(first.cls, stems[first.video], a, b), first.cls, first.video,
                                        first.scene, a, b, n))
        run.clear()

    for c in clips:
        if run and not (c.selected and c.video == run[-1].video and c.scene == run[-1].scene
                        and abs(c.start - run[-1].start - cfg.stride_seconds) < EPS):
            close()
        if c.selected:
            run.append(c)
    close()

    # the class rule
    classes: dict[str, dict] = {}
    for v in videos:
        classes.setdefault(v["class"], {"examples": 0, "videos": 0, "input_videos": 0})["input_videos"] += 1
    for e in examples:
        classes[e.cls]["examples"] += 1
    for name, row in classes.items():
        row["videos"] = len({e.video for e in examples if e.cls == name})
        row["kept"] = row["examples"] >= cfg.min_class_examples
        row["reason"] = "" if row["kept"] else \
            f"class_too_small: {row['examples']} < {cfg.min_class_examples} examples"
    for e in examples:
        if not classes[e.cls]["kept"]:
            e.status, e.reason = "dropped", classes[e.cls]["reason"]

    # the split, by source video
    for name, row in classes.items():
        if not row["kept"]:
            continue
        own = [e for e in examples if e.cls == name]
        test = _split_videos(sorted({e.video for e in own}), cfg.test_fraction)
        for e in own:
            e.split = "test" if e.video in test else "train"
        row["train"] = sum(e.split == "train" for e in own)
        row["test"] = sum(e.split == "test" for e in own)

    # each clip's final status and reason: kept when examples of a kept class cover it
    spans: dict[str, list[Example]] = {}
    for e in examples:
        spans.setdefault(e.video, []).append(e)
    for c in clips:
        own = spans.get(c.video, [])
        holder = next((e for e in own if e.start - EPS <= c.start < e.end - EPS), None)
        c.example = holder.id if holder and c.selected else ""
        if c.review == "rejected":
            c.reason = "review: rejected"
        elif not c.selected:
            c.reason = "; ".join(c.failed)
        elif not _covered(c.start, c.end, own):
            c.reason = "not in an example: its stretch was cut short by the previous example of the video"
        elif not classes[c.cls]["kept"]:
            c.reason = classes[c.cls]["reason"]
        else:
            c.status = "kept"
            c.reason = "review: accepted (filters: " + "; ".join(c.failed) + ")" if c.review == "accepted" \
                and c.failed else ""
    return Decisions(clips, examples, classes, videos, dropped_runs(clips, cfg))


def _covered(a: float, b: float, examples: list[Example]) -> bool:
    """Is [a, b] inside the union of the examples' spans?"""
    t = a
    for e in sorted(examples, key=lambda e: e.start):
        if e.start <= t + EPS and e.end > t:
            t = e.end
    return t >= b - EPS


def dropped_runs(clips: list[ClipDecision], cfg: CurationConfig) -> list[dict]:
    """Maximal stretches of contiguous clips dropped by filters or review (one scene), for the review pages.

    Clips that pass but sit in a class too small are not here: their examples are listed instead.
    """
    runs, cur = [], []

    def close():
        if not cur:
            return
        counts: dict[str, int] = {}
        for c in cur:
            for key in (["review"] if c.review == "rejected" else [f.split("<")[0].split(">")[0].split("=")[0]
                                                                   for f in c.failed]):
                counts[key] = counts.get(key, 0) + 1
        sig = {k: round(sum(c.signals[k] for c in cur) / len(cur), 6) for k in SIGNALS}
        runs.append({"video": cur[0].video, "class": cur[0].cls, "scene": cur[0].scene, "start": cur[0].start,
                     "end": cur[-1].end, "clips": len(cur), "signals": sig, "reasons": dict(sorted(counts.items())),
                     "reason": "; ".join(f"{k} ({n}/{len(cur)} clips)" for k, n in sorted(counts.items()))})
        cur.clear()

    for c in clips:
        contiguous = cur and c.video == cur[-1].video and c.scene == cur[-1].scene and \
            abs(c.start - cur[-1].start - cfg.stride_seconds) < EPS
        if cur and (c.selected or not contiguous):
            close()
        if not c.selected:
            cur.append(c)
    close()
    return runs
