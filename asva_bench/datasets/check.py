"""`asva-bench datasets check`: does a dataset root hold what it should?

Every video is probed and its frame index read (truncated containers fail
there). Each *test* video is also decoded the way the protocol uses it,
once: its three clip windows are cut (frames and audio), which finds files
that decode only partly (fewer frames or less audio than the container
declares), silent audio (the whole track, or a clip window) and variable
frame rates (reported as a warning: the protocol selects frames by
timestamp, so such files are usable, but worth knowing about).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..avio import MediaError, VideoFrames, decode_protocol_clips, probe, read_audio
from .base import DatasetSpec, Manifest

#: Peak amplitude under which audio counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
#: Frame intervals varying by more than this fraction of the median interval: variable frame rate.
VFR_TOLERANCE = 0.25
#: Decoded media shorter than the container declares by more than this (seconds, and frames): partial.
PARTIAL_SLACK_S = 0.15
PARTIAL_SLACK_FRAMES = 2


@dataclass
class CheckReport:
    dataset: str
    root: str
    counts: dict                      # split -> class -> n
    expected_counts: dict             # split -> n
    problems: list = field(default_factory=list)   # [{"file", "problem"}]
    warnings: list = field(default_factory=list)   # [{"file", "warning"}]: usable, but worth knowing

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "root": self.root, "ok": self.ok,
                "counts": self.counts,
                "totals": {s: sum(c.values()) for s, c in self.counts.items()},
                "expected_counts": self.expected_counts, "problems": self.problems,
                "warnings": self.warnings}


def frame_rate_variation(timestamps) -> tuple[float, float, float] | None:
    """(min, median, max) frame interval in seconds when they vary beyond VFR_TOLERANCE, else None."""
    ts = np.asarray(timestamps, np.float64)
    if ts.size < 3:
        return None
    d = np.diff(ts)
    med = float(np.median(d))
    if med <= 0:
        return None
    lo, hi = float(d.min()), float(d.max())
    if (hi - lo) > VFR_TOLERANCE * med:
        return lo, med, hi
    return None


def _check_test_video(path: str, spec: DatasetSpec, info, vf: VideoFrames) -> tuple[list[str], list[str]]:
    """(problems, warnings) of one test video, decoding its protocol clip windows once."""
    problems, warnings = [], []
    if info.num_frames and len(vf) + PARTIAL_SLACK_FRAMES < info.num_frames:
        problems.append(f"decodes only partly: {len(vf)} of the {info.num_frames} frames the container declares "
                        f"(video stops at {vf.duration:.2f} of {info.video_duration:.2f} s); re-download or "
                        "re-encode it")
    try:
        wav, sr = read_audio(path)
    except MediaError as e:
        return [f"unreadable audio: {e}"], warnings
    audio_s = len(wav) / sr
    if info.audio_duration and audio_s + PARTIAL_SLACK_S < info.audio_duration:
        problems.append(f"audio decodes only partly: {audio_s:.2f} of the {info.audio_duration:.2f} s the container "
                        "declares; re-download or re-encode it")
    if wav.numel() and float(wav.abs().max()) < SILENCE_PEAK:
        problems.append(f"silent audio: the whole track peaks below {SILENCE_PEAK:g} (-80 dBFS); the sync metrics "
                        "need sound; drop the file from the split or restore its audio")
    else:
        try:
            clips = decode_protocol_clips(path, spec.protocol)
        except MediaError as e:
            return problems + [f"protocol clips cannot be cut: {e}"], warnings
        quiet = [f"{c.start:.2f} s" for c in clips if float(c.audio.abs().max()) < SILENCE_PEAK]
        if quiet:
            problems.append(f"silent audio in the test clip window(s) starting at {', '.join(quiet)} (peak below "
                            f"{SILENCE_PEAK:g}); the sync metrics of those clips would be meaningless")
    vfr = frame_rate_variation(vf.timestamps)
    if vfr:
        lo, med, hi = vfr
        warnings.append(f"variable frame rate: frame intervals from {lo * 1000:.1f} to {hi * 1000:.1f} ms (median "
                        f"{med * 1000:.1f} ms); usable (frames are picked by timestamp), but re-encoding at a "
                        "constant rate makes clips uniform")
    return problems, warnings


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
            vf = VideoFrames(e.path)  # reads the frame index: catches truncated files
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
            continue
        if e.split == "test":
            probs, warns = _check_test_video(e.path, spec, info, vf)
            rep.problems += [{"file": e.path, "problem": p} for p in probs]
            rep.warnings += [{"file": e.path, "warning": w} for w in warns]
    return rep
