"""Build speed of the synthetic dataset `synth` (issue target: 15 x 100 videos in <= 180 s on 2 cores).

    python benchmarks/bench_synth.py                      # full default build into a temp folder
    python benchmarks/bench_synth.py --videos-per-class 10 --workers 2 --json

Builds into a fresh folder (removed afterwards unless --keep or --root is
given) and reports wall time, videos per second and the CPU time of this
process and its workers. Other processes on the machine slow it down: the
report includes the load average so numbers can be read in context.
With --json exactly one JSON object is printed on stdout; the progress bar
goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asva_bench.datasets.synth import CLASSES, DEFAULT_VIDEOS_PER_CLASS, make_synth, read_marker  # noqa: E402

TARGET_SECONDS = 180.0


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos-per-class", type=int, default=DEFAULT_VIDEOS_PER_CLASS)
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, default=None, help="build here (kept); default: a temp folder")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="asva-synth-bench-"))
    if args.root and (root / "synth.json").exists():
        print(f"error: {root} already holds a build; a benchmark needs an empty folder", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    make_synth(root, seed=args.seed, videos_per_class=args.videos_per_class, workers=args.workers,
               progress=not args.no_progress)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    marker = read_marker(root) or {}
    videos = marker.get("counts", {}).get("train", 0) + marker.get("counts", {}).get("test", 0)
    size = sum(f.stat().st_size for f in (root / "videos").rglob("*.mp4"))
    workers = args.workers or len(os.sched_getaffinity(0))
    full = args.videos_per_class == DEFAULT_VIDEOS_PER_CLASS and len(CLASSES) == 15
    out = {
        "benchmark": "synth_build",
        "videos": videos,
        "classes": len(CLASSES),
        "videos_per_class": args.videos_per_class,
        "workers": workers,
        "cpus": os.cpu_count(),
        "wall_s": round(wall, 2),
        "videos_per_s": round(videos / wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_video": round(cpu / max(videos, 1), 4),
        "extrapolated_full_build_s": round(wall / max(videos, 1) * 15 * DEFAULT_VIDEOS_PER_CLASS, 1),
        "target_s": TARGET_SECONDS,
        "within_target": bool(wall / max(videos, 1) * 1500 <= TARGET_SECONDS),
        "full_build": full,
        "dataset_mb": round(size / 2 ** 20, 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "root": str(root) if (args.keep or args.root) else None,
    }
    if not (args.keep or args.root):
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"synth build: {videos} videos in {wall:.1f} s ({out['videos_per_s']} videos/s, "
              f"{workers} workers, {out['cpu_s_per_video'] * 1000:.0f} ms CPU per video, "
              f"{out['dataset_mb']} MB)")
        print(f"full build (1500 videos): {out['extrapolated_full_build_s']:.0f} s "
              f"{'measured' if full else 'extrapolated'}; target {TARGET_SECONDS:.0f} s: "
              f"{'OK' if out['within_target'] else 'MISSED'}; load average before/after "
              f"{out['load_avg_before'][0]} / {out['load_avg_after'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
