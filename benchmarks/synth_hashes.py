"""Byte-identity evidence for the synth generator: hashes of what a seed produces.

Prints (or writes with --out) one JSON object:

* ``small``: sha256 of every file of a small synth build (seed 7, 2 videos per
  class, all 15 classes, one worker) and of a second one (seed 2, 3 videos per
  class, two classes, two workers); ``synth.json`` is hashed without its
  ``build_seconds`` (a wall-clock time);
* ``render``: sha256 of the frames, the audio and the record that
  ``render_clip`` returns for a few full-size clips of seed 0 (the default
  build's seed);
* ``encoded``: those clips encoded as the builder does, and whether their
  bytes and sidecars equal the files of the default build at
  ``$ASVA_BENCH_HOME/datasets/synth`` (read only; skipped where it is missing);
* ``manifest``: the manifest hashes of that default build;
* ``wild``: sha256 of every file of a small synth-wild pool (labels.json and
  synth-wild.json without their timings).

Run it before and after a change of the generator's code and diff the two
files: every hash must match (docs/datasets.md). With OMP_NUM_THREADS=1 it
takes a few minutes on a loaded 2-core machine.

    OMP_NUM_THREADS=1 python benchmarks/synth_hashes.py --out /tmp/after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (class folder, index) rendered at seed 0: a spread of kinds (impact, burst, vocal, stroke,
#: sustained, continuous); index 95 is a test-split video of the default build.
FULL_CLIPS = [("hammer_strike", 0), ("rapid_fire", 3), ("lion_roar", 95), ("bowed_string", 12),
              ("trombone_slide", 40), ("toilet_flush", 99)]
TIMINGS = ("build_seconds",)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_hashes(root: Path, records=("synth.json", "synth-wild.json")) -> dict[str, str]:
    out = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(root).as_posix()
        data = f.read_bytes()
        if rel in records:
            rec = json.loads(data)
            data = json.dumps({k: v for k, v in rec.items() if k not in TIMINGS}, sort_keys=True).encode()
        out[rel] = sha(data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    ap.add_argument("--skip-small", action="store_true", help="only the full-size clips and the manifest")
    args = ap.parse_args()
    from asva_bench.datasets import synth as S

    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_small:
            a = S.make_synth(tmp / "a", seed=7, videos_per_class=2, workers=1, progress=False)
            b = S.make_synth(tmp / "b", seed=2, videos_per_class=3, classes=["frog_croak", "gun_bang"],
                             workers=2, progress=False)
            report["small"] = {"seed7x2": tree_hashes(a), "seed2x3": tree_hashes(b)}
            try:
                from asva_bench.datasets.synth.wild import make_synth_wild
            except ImportError:
                from asva_bench.datasets.synth_wild import make_synth_wild
            w = make_synth_wild(tmp / "w", seed=5, videos_per_class=7, defects_per_class=1, small_classes=1,
                                small_class_videos=1, classes=["hammer_strike", "dog_bark", "gun_bang"],
                                workers=1, progress=False)
            report["wild"] = tree_hashes(w)

        render, encoded = {}, {}
        default = S.default_root()
        for folder, index in FULL_CLIPS:
            frames, audio, record = S.render_clip(folder, 0, index)
            key = f"{folder}#{index}"
            render[key] = {"frames": sha(frames.tobytes()), "shape": list(frames.shape),
                           "audio": sha(audio.tobytes()), "record": sha(json.dumps(record, sort_keys=True).encode())}
            n_train, _ = S.split_sizes(S.DEFAULT_VIDEOS_PER_CLASS)
            rel = S.build_video((str(tmp / "full"), folder, index, 0, "train" if index < n_train else "test"))
            mine = tmp / "full" / "videos" / rel
            side = tmp / "full" / "events" / folder / f"{Path(rel).stem}.json"
            row = {"video": sha(mine.read_bytes()), "sidecar": sha(side.read_bytes())}
            theirs = default / "videos" / rel
            if theirs.is_file():
                row["same_video_as_default_build"] = theirs.read_bytes() == mine.read_bytes()
                row["same_sidecar_as_default_build"] = \
                    (default / "events" / folder / side.name).read_bytes() == side.read_bytes()
            encoded[key] = row
        report["render"], report["encoded"] = render, encoded

    if S.read_marker(default) is not None:
        m = S.SYNTH.load(default)
        report["manifest"] = {"root": str(default), "all": m.hash(), "train": m.hash("train"),
                              "test": m.hash("test"), "entries": len(m.entries)}
    text = json.dumps(report, indent=1, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
