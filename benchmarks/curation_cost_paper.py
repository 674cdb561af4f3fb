"""What the paper profile's curation costs per video, counted in FLOPs, and what a pool of N videos costs on a GPU.

    python benchmarks/curation_cost_paper.py [--seconds 10] [--videos 200000] [--tflops 30]

No GPU and no weights are needed: the real paper architectures
(ImageBind-huge, open_clip ViT-B-32, the ASVA sync classifier) are built on
PyTorch's meta device and every call `asva-bench curate --profile paper` makes
for one video of ``--seconds`` seconds is run under
``torch.utils.flop_counter.FlopCounterMode`` with the batch sizes the
pipeline uses (per video: every grid frame once, the clips' centre audio
windows, every distinct 2 s sync window and audio candidate, one head call).
GPU time = FLOPs / ``--tflops`` (sustained throughput, an assumption: the
backbones run in float32; about 30 TFLOP/s sustained is half of an H100/H200's
fp32 peak). Decoding runs on CPU workers beside the GPU and is estimated from
the mini benchmark's measured decode seconds per media second
(``--decode-ms-per-media-s``; benchmarks/bench_curation.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_video_calls(seconds: float, clip: float = 3.0, stride: float = 0.5, fps: float = 6.0, window: float = 2.0,
                    max_shift: float = 0.5, step: float = 0.1) -> dict:
    """How many items each backbone sees for one single-scene video (what signals.py batches)."""
    clips = int(math.floor((seconds - clip) / stride + 1e-9)) + 1
    frames = int(math.floor(seconds * fps + 1e-9))
    lo, hi = max_shift, math.floor((seconds - window - max_shift) / stride + 1e-9) * stride
    windows = sorted({min(max(k * stride + o, lo), hi) for k in range(clips) for o in (0.0, 0.5, 1.0)})
    shifts = [round(-max_shift + step * i, 6) for i in range(int(round(2 * max_shift / step)) + 1)]
    audio = sorted({round(w + s, 3) for w in windows for s in shifts} | {k * stride + 0.5 for k in range(clips)})
    return {"clips": clips, "frames": frames, "sync_windows": len(windows), "audio_windows": len(audio),
            "centre_windows": clips, "pairs": len(windows) * len(shifts)}


def count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as m:
        fn()
    return int(m.get_total_flops())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--videos", type=int, default=200_000)
    ap.add_argument("--tflops", type=float, default=30.0, help="sustained GPU TFLOP/s assumed")
    ap.add_argument("--decode-ms-per-media-s", type=float, default=None,
                    help="CPU decode cost measured by bench_curation.py (ms per media second)")
    ap.add_argument("--decode-workers", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from asva_bench.backbones.imagebind import HUGE_CONFIG, import_imagebind
    from asva_bench.backbones.sync_classifier import PAPER_SYNC, SyncClassifier
    calls = per_video_calls(args.seconds)
    meta = torch.device("meta")
    flops = {}
    ibm, _, _ = import_imagebind()
    linspace = torch.linspace   # ImageBind reads drop-path rates with .item(): keep that one tensor on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with meta:
            ib = ibm.ImageBindModel(**HUGE_CONFIG).eval()
    finally:
        torch.linspace = linspace

    def tower(mod, x):
        pre = ib.modality_preprocessors[mod](**{mod: x})
        return ib.modality_heads[mod](ib.modality_trunks[mod](**pre["trunk"]), **pre["head"])

    with torch.no_grad():
        flops["imagebind_vision"] = count(lambda: tower("vision", torch.empty(calls["frames"], 3, 224, 224,
                                                                               device=meta)))
        flops["imagebind_audio"] = count(lambda: tower("audio", torch.empty(calls["centre_windows"], 1, 128, 204,
                                                                             device=meta)))
        import open_clip
        with meta:
            clip = open_clip.create_model("ViT-B-32", device=meta).eval()
        flops["clip_vision"] = count(lambda: clip.encode_image(torch.empty(calls["frames"], 3, 224, 224, device=meta)))
        with meta:
            sync = SyncClassifier(PAPER_SYNC).eval()
        v = torch.empty(calls["sync_windows"], 12, 3, 256, 256, device=meta)
        a = torch.empty(calls["audio_windows"], 1, 128, 204, device=meta)
        flops["sync_video"] = count(lambda: sync.encode_video(v))
        flops["sync_audio"] = count(lambda: sync.encode_audio(a))
        af = torch.empty(calls["pairs"], PAPER_SYNC.audio_dim, device=meta)
        vf = torch.empty(calls["pairs"], PAPER_SYNC.video_dim, device=meta)
        flops["sync_head"] = count(lambda: sync.score(af, vf))
    total = sum(flops.values())
    gpu_s = total / (args.tflops * 1e12)
    report = {"per_video_calls": calls, "gflops_per_video": {k: round(v / 1e9, 1) for k, v in flops.items()},
              "tflops_per_video": round(total / 1e12, 2), "assumed_sustained_tflops": args.tflops,
              "gpu_seconds_per_video": round(gpu_s, 3), "gpu_seconds_per_clip": round(gpu_s / calls["clips"], 4),
              "videos": args.videos, "gpu_hours": round(gpu_s * args.videos / 3600, 1)}
    if args.decode_ms_per_media_s:
        core_h = args.videos * args.seconds * args.decode_ms_per_media_s / 1000 / 3600
        report["decode_cpu_core_hours"] = round(core_h, 1)
        report["decode_hours_on_workers"] = round(core_h / args.decode_workers, 1)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
