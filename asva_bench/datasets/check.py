"""`asva-bench datasets check`: does a dataset root hold what it should?"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from ..avio import MediaError, VideoFrames, probe
from .base import DatasetSpec, Manifest


@dataclass
class CheckReport:
    dataset: str
    root: str
    counts: dict                      # split -> class -> n
    expected_counts: dict             # split -> n
    problems: list = field(default_factory=list)   # [{"file", "problem"}]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "root": self.root, "ok": self.ok,
                "counts": self.counts,
                "totals": {s: sum(c.values()) for s, c in self.counts.items()},
                "expected_counts": self.expected_counts, "problems": self.problems}


def check_dataset(spec: DatasetSpec, manifest: Manifest, min_seconds: float | None = None,
                  progress: bool = True) -> CheckReport:
    min_seconds = spec.protocol.clip_seconds if min_seconds is None else min_seconds
    counts = manifest.counts()
    expected_counts, expected_classes = spec.expectations(manifest.root)
    rep = CheckReport(spec.name, manifest.root, counts, expected_counts)
    for split, n in expected_counts.items():
        got = sum(counts.get(split, {}).values())
        if got != n:
            rep.problems.append({"file": f"{split}.txt",
                                 "problem": f"{got} {split} videos, expected {n}"})
    if expected_classes is not None:
        ncls = len(manifest.classes())
        if ncls != expected_classes:
            rep.problems.append({"file": manifest.root,
                                 "problem": f"{ncls} classes, expected {expected_classes}"})
    for e in tqdm(manifest.entries, desc=f"check {spec.name}", unit="video", disable=not progress):
        try:
            info = probe(e.path)
            VideoFrames(e.path)  # reads the frame index: catches truncated files
        except MediaError as err:
            rep.problems.append({"file": e.path, "problem": f"unreadable: {err}"})
            continue
        if not info.has_audio:
            rep.problems.append({"file": e.path, "problem": "no audio stream"})
            continue
        d = min(info.video_duration, info.audio_duration)
        if d + 1e-6 < min_seconds:
            rep.problems.append({"file": e.path,
                                 "problem": f"usable duration {d:.2f} s < {min_seconds:g} s"})
    return rep
