"""Sampling cost of AVSyncD / I2VD per clip (mini profile by default).

    python benchmarks/bench_sampling.py --model avsyncd --eta 4 --steps 10 --threads 2 [--json]

Times the adapter's ``generate`` on real synth test clips (one warm-up batch,
then ``--batches`` timed batches of ``--batch-size`` clips), so the figure is
what `asva-bench run` pays per clip for the model itself (clip decoding and
mp4 writing excluded).  Reports seconds per clip and per denoising step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["avsyncd", "i2vd"], default="avsyncd")
    ap.add_argument("--eta", type=float, default=4.0)
    ap.add_argument("--steps", type=int, help="denoising steps (default: the adapter's profile default)")
    ap.add_argument("--scheduler", choices=["pndm", "ddim"], help="default: the profile's (mini ddim)")
    ap.add_argument("--strength", type=float, help="default: the profile's (mini 0.5)")
    ap.add_argument("--checkpoint", help="checkpoint folder (default: the shipped mini one)")
    ap.add_argument("--root", type=Path, help="synth folder (default: found / built)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from asva_bench.adapters import build_adapter
    from asva_bench.datasets import get_dataset
    from asva_bench.datasets.synth import ensure_synth
    from asva_bench.generation import RunSpec, _batches, _make_batch
    from asva_bench.runs import plan_clips
    from asva_bench.profiles import protocol_for

    margs = [f"scheduler={args.scheduler}"] if args.scheduler else []
    if args.strength:
        margs.append(f"strength={args.strength}")
    if args.model == "avsyncd":
        margs.append(f"eta={args.eta}")
    if args.steps:
        margs.append(f"steps={args.steps}")
    if args.checkpoint:
        margs.append(f"checkpoint={args.checkpoint}")
    adapter = build_adapter(args.model, margs)
    spec_ds = get_dataset("synth")
    manifest = spec_ds.load(args.root or ensure_synth())
    protocol = protocol_for(spec_ds.protocol, "mini")
    adapter.batch_size = args.batch_size
    spec = RunSpec(adapter=adapter, adapter_target=args.model, manifest=manifest, split="test", profile="mini",
                   protocol=protocol)
    entries = sorted(manifest.split("test"), key=lambda e: e.rel_path)
    jobs = plan_clips(entries, protocol)
    by_video: dict = {}
    for j in jobs[:args.batch_size * (args.batches + 1)]:
        by_video.setdefault(j.entry, []).append(j)
    batches = [_make_batch(g, spec) for g in _batches(by_video, spec, False, [])]
    adapter.setup(protocol, "cpu")
    times = []
    with torch.no_grad():
        for i, b in enumerate(batches[:args.batches + 1]):
            t = time.perf_counter()
            out = adapter.generate(b)
            dt = time.perf_counter() - t
            if not torch.isfinite(out).all():
                raise SystemExit("non-finite frames: the checkpoint is broken")
            if i:  # the first batch warms up allocators and kernels
                times.append((dt, len(b)))
    clips = sum(n for _, n in times)
    seconds = sum(t for t, _ in times)
    steps = adapter.num_steps
    res = {"model": args.model, "eta": args.eta if args.model == "avsyncd" else None, "steps": steps,
           "scheduler": adapter.scheduler_name, "strength": adapter.sampling_strength,
           "denoising_evaluations": max(1, round(adapter.sampling_strength * steps)), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
           "clips_timed": clips, "s_per_clip": round(seconds / clips, 3),
           "s_per_evaluation_per_clip": round(seconds / clips / max(1, round(adapter.sampling_strength * steps)), 4),
           "s_per_450_clip_run": round(seconds / clips * 450, 1)}
    print(json.dumps(res) if args.json else
          f"{args.model} ({res['scheduler']}, {steps} steps from strength {res['strength']}, eta {res['eta']}): "
          f"{res['s_per_clip']} s a clip "
          f"on {res['threads']} threads, {res['s_per_450_clip_run'] / 60:.1f} min for a 450-clip run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
