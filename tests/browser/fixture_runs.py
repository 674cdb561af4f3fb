"""Fixture run folders for the leaderboard and study tests.

Each run is laid out as docs/results-format.md describes: results.json,
scores.jsonl and real mp4 clips (h264 + AAC, 12 frames 64x64 at 6 fps, 2 s
tone) written with asva_bench.avio.write_clip. The pictures are simple but
distinct per model so screenshots show something: the ground truth has a
square that jumps on each beat of the tone, Static holds the first frame,
"avsyncd" follows the ground truth with some noise.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from asva_bench.avio import write_clip
from asva_bench.protocol import MINI

CLASSES = {"dog_barking": "dog barking", "hammering": "hammering",
           "lions_roaring": "lions roaring", "playing_cello": "playing cello"}
VIDEOS_PER_CLASS = 2
FPS, FRAMES, SIZE, SR = 6.0, 12, 64, 16000

# (model, per-metric means) - made up, but in the ranges of the paper's table
MODEL_SCORES = {
    "groundtruth": {"ia": 40.06, "it": 30.31, "alignsync": 25.04, "relsync": 50.00},
    "static": {"ia": 39.76, "it": 30.39, "fvd": 1220.4, "alignsync": 21.83, "relsync": 43.66},
    "avsyncd": {"fid": 11.7, "ia": 38.53, "it": 30.45, "fvd": 349.1, "alignsync": 22.62, "relsync": 45.52},
    "i2vd": {"fid": 12.1, "ia": 37.10, "it": 30.35, "fvd": 398.2, "alignsync": 21.80, "relsync": 43.92},
}
LOWER_IS_BETTER = {"fid", "fvd"}


def clip_ids() -> list[tuple[str, str]]:
    """[(clip_id, class)], one clip per video."""
    return [(f"{cls}/{cls[:3]}{v:02d}_clip-00", cls)
            for cls in CLASSES for v in range(VIDEOS_PER_CLASS)]


def _gt_frames(seed: int, cls_index: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.stack([0.25 + 0.5 * xx, 0.3 + 0.4 * yy, 0.35 + 0.3 * (1 - xx)], -1)
    hue = np.array([[0.95, 0.3, 0.2], [0.2, 0.7, 0.3], [0.95, 0.75, 0.1], [0.3, 0.4, 0.95]])[cls_index]
    frames = []
    x0, y0 = rng.integers(8, 40, 2)
    for t in range(FRAMES):
        f = base.copy()
        beat = t % 3 == 0
        s = 18 if beat else 12
        x, y = (x0 + 3 * t) % (SIZE - s), (y0 + (6 if beat else 0)) % (SIZE - s)
        f[y:y + s, x:x + s] = hue * (1.0 if beat else 0.7)
        frames.append(f)
    return np.clip(np.stack(frames), 0, 1)


def _audio(cls_index: int) -> np.ndarray:
    t = np.arange(int(2 * SR)) / SR
    beats = (np.floor(t * 2) != np.floor((t - 0.05) * 2)).astype(np.float32)  # 2 beats a second
    env = 0.25 + 0.75 * np.convolve(beats, np.ones(800) / 800, mode="same") * 40
    return (0.3 * np.clip(env, 0, 1) * np.sin(2 * np.pi * (330 + 110 * cls_index) * t)).astype(np.float32)


def _frames_for(model: str, gt: np.ndarray, seed: int) -> np.ndarray:
    if model == "static":
        return np.repeat(gt[:1], FRAMES, 0)
    if model == "groundtruth":
        return gt
    rng = np.random.default_rng(seed + 7)
    return np.clip(gt + rng.normal(0, 0.06, gt.shape), 0, 1)


def fingerprint_of(data: dict) -> str:
    """The results fingerprint as the scoring stage makes it (asva_bench/scoring.py), by hand."""
    ds = data["dataset"]
    parts = {"profile": data["profile"], "protocol": data["protocol"]["fingerprint"],
             "dataset": [ds["name"], ds["split"], ds["manifest_hash"], ds.get("limit")],
             "suite": data["backbones"], "encoding": data["encoding"]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def results_for(model: str, *, name: str | None = None, scores: dict | None = None) -> dict:
    """A results.json body for ``model`` that follows docs/results-format.md."""
    means = scores or MODEL_SCORES.get(model, MODEL_SCORES["avsyncd"])
    n = len(clip_ids())
    protocol = dict(MINI.to_dict(), fingerprint=MINI.fingerprint())
    # the shape of asva_bench/scoring.py's output (run.json fields + scoring fields)
    data = {
        "schema": "asva-bench/results/v1",
        "model": {"name": name or model, "adapter": f"asva_bench.baselines.{model}:Model",
                  "config": {"steps": 20}, "first_frame": "input"},
        "dataset": {"name": "synth", "split": "test", "root": "/data/synth",
                    "manifest_hash": "0123456789abcdef", "limit": None},
        "profile": "mini",
        "protocol": protocol,
        "encoding": {"codec": "libx264", "pix_fmt": "yuv420p", "lossless": False, "audio": "aac",
                     "audio_source": "ground truth"},
        "seeds": {"run_seed": 0, "clip_seed_rule": "sha256('<run_seed>:<clip_id>')[:8] & (2^63-1)"},
        "versions": {"asva_bench": "0.1.0", "python": "3.11.7", "torch": "2.14.1"},
        "git_revision": None,
        "git_revision_scored": "0123abc",
        "backbones": {"embedding": "mini-embedding:" + "a" * 16, "image": "mini-fid:" + "b" * 16,
                      "sync": "mini-sync:" + "c" * 16, "video": "mini-fvd:" + "d" * 16},
        "clips": {"expected": n, "generated": n, "scored": n, "failed": 0, "failed_ids": [],
                  "extra_ignored": [], "skipped_inputs": []},
        "coverage": 1.0,
        "dataset_changed": False,
        "ci_method": {"kind": "percentile bootstrap over test videos", "level": 0.95, "replicates": 1000},
        "timing_s": {"generate": 1.5, "score": 2.5},
        "status": "complete",
        "metrics": {},
        "per_class": {},
        "created": "2026-11-27T03:00:00Z",
        "scored": "2026-11-27T03:05:00Z",
    }
    for i, (k, v) in enumerate(sorted(means.items())):
        m = {"mean": v, "ci_low": round(v * 0.97, 3), "ci_high": round(v * 1.03, 3),
             "higher_is_better": k not in LOWER_IS_BETTER, "scale": 1.0 if k in LOWER_IS_BETTER else 100.0,
             "long_name": k.upper()}
        if k in LOWER_IS_BETTER:     # Frechet metrics count feature rows and videos, not clips
            m.update(n_rows=n, n_videos=n)
        else:
            m["n_clips"] = n
        data["metrics"][k] = m
    for j, cls in enumerate(CLASSES):
        data["per_class"][cls] = {k: round(v * (0.9 + 0.07 * j), 2) for k, v in means.items()
                                  if k not in LOWER_IS_BETTER}
        data["per_class"][cls]["n_clips"] = VIDEOS_PER_CLASS
    data["fingerprint"] = fingerprint_of(data)
    return data


def write_run(root: Path, model: str, *, name: str | None = None, clips: bool = True,
              edit=None) -> Path:
    """Write a run folder; ``edit(data)`` may change results.json before it is written."""
    run = Path(root) / (name and hashlib.sha1(name.encode()).hexdigest()[:8] or model)
    data = results_for(model, name=name)
    if edit is not None:
        edit(data)
    run.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (clip_id, cls) in enumerate(clip_ids()):
        ci = list(CLASSES).index(cls)
        if clips:
            gt = _gt_frames(i, ci)
            frames = (_frames_for(model, gt, i) * 255).round().astype(np.uint8)  # [T,H,W,3]
            write_clip(run / "videos" / f"{clip_id}.mp4", frames, FPS,
                       audio=_audio(ci), sample_rate=SR)
        per = {k: v for k, v in data["per_class"].get(cls, {}).items() if k != "n_clips"}
        rows.append({"clip_id": clip_id, "video_id": clip_id.rsplit("_clip-", 1)[0], "class": cls,
                     "text": CLASSES[cls], "metrics": per})
    rows = rows[:data["clips"]["scored"]]
    (run / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "results.json").write_text(json.dumps(data, indent=1))
    return run


def make_runs(root: Path, models=("groundtruth", "static", "avsyncd")) -> dict[str, Path]:
    return {m: write_run(root, m) for m in models}


def variant(data: dict, **changes) -> dict:
    d = copy.deepcopy(data)
    d.update(changes)
    return d


# --------------------------------------------------------------------------
# A whole board: runs with clips, results-only entries, a hostile entry
# --------------------------------------------------------------------------
EVIL_NAME = "<script>alert(1)</script>"
EVIL_STRINGS = {
    "notes": "<img src=x onerror=alert(2)> & notes",
    "class": "<b onmouseover=alert(3)>cls</b>",
    "root": "/data/\"><svg onload=alert(4)>",
    "version": "'\"><script>alert(5)</script>",
}


def write_entry(folder: Path, stem: str, data: dict, scores: list[dict] | None = None) -> Path:
    """A results file as submitted to leaderboard/entries/ (no run folder, no clips)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(data, indent=1))
    if scores is not None:
        (folder / f"{stem}.scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scores))
    return path


def evil_results() -> dict:
    d = results_for("avsyncd", name=EVIL_NAME, scores={"ia": 36.0, "it": 29.0, "relsync": 44.5,
                                                       "alignsync": 22.0, "fvd": 500.0, "fid": 13.0})
    d["notes"] = EVIL_STRINGS["notes"]
    d["per_class"][EVIL_STRINGS["class"]] = {"relsync": 40.0, "alignsync": 20.0}
    d["dataset"]["root"] = EVIL_STRINGS["root"]
    d["versions"]["torch"] = EVIL_STRINGS["version"]
    d["clips"]["scored"] -= 1          # incomplete coverage: a banner must name this entry
    d["clips"]["failed"] = 1
    d["clips"]["failed_ids"] = [EVIL_STRINGS["class"] + "/x_clip-00"]
    for m in d["metrics"].values():
        if "n_clips" in m:
            m["n_clips"] -= 1
    return d


def lossless_results() -> dict:
    """Same model, clips encoded losslessly: another fingerprint, so not comparable."""
    d = results_for("avsyncd", name="avsyncd-lossless",
                    scores={"ia": 39.0, "it": 31.0, "relsync": 49.0, "alignsync": 24.0, "fvd": 300.0, "fid": 10.0})
    d["encoding"]["lossless"] = True
    d["fingerprint"] = fingerprint_of(d)
    return d


def make_board(root: Path) -> dict:
    """Runs with clips (groundtruth, static, avsyncd) plus entries; returns {name: input path}."""
    root = Path(root)
    inputs = make_runs(root / "runs")
    entries = root / "entries"
    inputs["i2vd"] = write_entry(entries, "i2vd", results_for("i2vd"))
    inputs["avsyncd-lossless"] = write_entry(entries, "avsyncd-lossless", lossless_results())
    inputs["evil"] = write_entry(entries, "evil", evil_results())
    return inputs
