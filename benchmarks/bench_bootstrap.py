"""Cost of the FID / FVD bootstrap intervals at paper size, against the scoring stage.

    OMP_NUM_THREADS=2 python benchmarks/bench_bootstrap.py [--json] [--skip-stage]

* FID: 150 test videos x 3 clips x 11 frames = 4950 rows per side at 2048-d; FVD: 450 rows at
  400-d; 200 replicates each (FrechetMetric.summary, what `asva-bench score` runs), of which
  ``--timed-replicates`` are timed and the rest extrapolated (each replicate costs the same).
  Features are random, correlated Gaussians: the cost depends only on the shapes.
* A reduced protocol of 6 videos (18 clips, 198 rows per side at 2048-d): the bootstrap of the
  sample-space route, against the feature-space route on the same replicates (what the code did
  before, one 2048 x 2048 eigendecomposition per replicate).
* The scoring stage, estimated from below: the paper backbones' forwards on the CPU for a
  450-clip run, with random weights (the cost does not depend on them): FID Inception-v3 at
  229 x 229 on 2 x 450 x 12 frames in the reference's batches (36 ground-truth frames per test
  video, 12 per generated clip), and a ViT-H/14-shaped transformer (1280-d, 32 blocks, 16 heads,
  257 tokens: ImageBind-huge's vision tower) on 450 x 11 generated frames + 450 first frames.
  Decoding, I3D, ImageBind audio / text and the sync classifier are left out, so the fraction
  printed is an upper bound.

Timings depend on the machine and its load: report them with the load (uptime) noted.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def features(n_rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return (rng.normal(size=(n_rows, dim)) @ mix).astype(np.float32).astype(np.float64)


def time_frechet(metric_cls, n_videos: int, per_video: int, dim: int, timed_replicates: int) -> dict:
    """Time the point estimate and ``timed_replicates`` bootstrap replicates (exactly what
    FrechetMetric.summary runs), extrapolated linearly to the metric's replicates."""
    from asva_bench.metrics.bootstrap import draw_counts
    from asva_bench.metrics.frechet import bootstrap_frechet, frechet_distance_from_features
    videos = np.repeat(np.arange(n_videos), per_video)
    fake, real = features(len(videos), dim, 0), features(len(videos), dim, 1) + 0.1
    t = time.perf_counter()
    frechet_distance_from_features(fake, real)
    point = time.perf_counter() - t
    n = metric_cls.bootstrap_replicates
    reps = min(timed_replicates, n)
    counts = draw_counts(n_videos, n)[:reps]    # the first replicates summary() would draw
    t = time.perf_counter()
    bootstrap_frechet(fake, videos, real, videos, counts)
    per_rep = (time.perf_counter() - t) / reps
    return {"seconds": point + per_rep * n, "point_s": point, "per_replicate_s": per_rep,
            "timed_replicates": reps, "replicates": n, "rows_per_side": len(videos), "dim": dim}


def time_small_set_routes(dim: int = 2048, n_videos: int = 6, reps: int = 5) -> dict:
    """The 18-clip case: sample-space route vs one D x D eigendecomposition per replicate."""
    from asva_bench.metrics import frechet as fr
    from asva_bench.metrics.bootstrap import draw_counts
    videos = np.repeat(np.arange(n_videos), 33)
    x1, x2 = features(len(videos), dim, 0), features(len(videos), dim, 1)
    counts = draw_counts(n_videos, reps)
    t = time.perf_counter()
    fast = fr.bootstrap_frechet(x1, videos, x2, videos, counts)
    t_fast = time.perf_counter() - t
    c = x2.mean(0)
    w = counts[:, videos]
    t = time.perf_counter()
    slow = [fr.frechet_distance(*fr.weighted_stats(x1 - c, w[r]), *fr.weighted_stats(x2 - c, w[r]))
            for r in range(reps)]
    t_slow = time.perf_counter() - t
    return {"rows_per_side": len(videos), "dim": dim, "replicates": reps,
            "sample_space_s_per_replicate": t_fast / reps, "feature_space_s_per_replicate": t_slow / reps,
            "max_relative_difference": float(np.max(np.abs(fast - slow) / np.abs(slow)))}


def time_stage(clips: int = 450) -> dict:
    """Backbone forwards of a paper-size scoring stage on this CPU (random weights)."""
    from asva_bench.backbones.inception import FIDInception, fid_inception_network
    torch.manual_seed(0)
    inc = FIDInception(fid_inception_network(), 229, "bicubic-antialias").eval()
    frames = torch.rand(36, 3, 256, 256)
    with torch.no_grad():
        inc.features(frames[:12], batch_statistics=True)  # warm-up
        t = time.perf_counter()
        inc.features(frames, batch_statistics=True)       # one ground-truth video's batch
        inc.features(frames[:12], batch_statistics=True)  # one generated clip's batch
        per_frame_inception = (time.perf_counter() - t) / 48
    layer = torch.nn.TransformerEncoderLayer(1280, 16, 5120, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True)
    vit = torch.nn.TransformerEncoder(layer, 32, enable_nested_tensor=False).eval()
    tokens = torch.randn(2, 257, 1280)
    with torch.no_grad():
        vit(tokens[:1])
        t = time.perf_counter()
        vit(tokens)
        per_frame_vit = (time.perf_counter() - t) / 2
    inception_frames = 2 * clips * 12
    vit_frames = clips * 11 + clips
    return {"clips": clips, "inception_s_per_frame": per_frame_inception, "vit_h_s_per_frame": per_frame_vit,
            "inception_frames": inception_frames, "vit_frames": vit_frames,
            "stage_lower_bound_s": inception_frames * per_frame_inception + vit_frames * per_frame_vit}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-stage", action="store_true", help="only time the bootstrap")
    ap.add_argument("--timed-replicates", type=int, default=20,
                    help="replicates actually timed; the cost is linear in them and is extrapolated to 200")
    args = ap.parse_args()
    from asva_bench.metrics import FID, FVD
    out = {"threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "load_average": os.getloadavg()}
    out["fid"] = time_frechet(FID, 150, 33, 2048, args.timed_replicates)
    out["fvd"] = time_frechet(FVD, 150, 3, 400, args.timed_replicates)
    out["small_set"] = time_small_set_routes()
    bootstrap = out["fid"]["seconds"] + out["fvd"]["seconds"]
    out["bootstrap_s"] = bootstrap
    if not args.skip_stage:
        out["stage"] = time_stage()
        out["fraction_of_stage_at_most"] = bootstrap / (out["stage"]["stage_lower_bound_s"] + bootstrap)
    out["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for m in ("fid", "fvd"):
        r = out[m]
        print(f"{m.upper()} interval, {r['rows_per_side']} rows x {r['dim']}-d: {r['per_replicate_s']:.3f} s per replicate "
              f"(timed {r['timed_replicates']}) -> {r['seconds']:.1f} s for {r['replicates']} replicates + point")
    s = out["small_set"]
    print(f"18-clip set at 2048-d: {s['sample_space_s_per_replicate'] * 1e3:.1f} ms per replicate (sample space) vs "
          f"{s['feature_space_s_per_replicate'] * 1e3:.0f} ms (feature space); max rel. difference "
          f"{s['max_relative_difference']:.1e}")
    if "stage" in out:
        st = out["stage"]
        print(f"scoring stage (450 clips, backbone forwards only): >= {st['stage_lower_bound_s']:.0f} s "
              f"(Inception {st['inception_s_per_frame'] * 1e3:.0f} ms/frame x {st['inception_frames']}, "
              f"ViT-H {st['vit_h_s_per_frame']:.2f} s/frame x {st['vit_frames']})")
        print(f"bootstrap share of the scoring stage: <= {100 * out['fraction_of_stage_at_most']:.1f}%")
    print(f"threads {out['threads']}, load average before {out['load_average']}, after {out['load_average_after']}")


if __name__ == "__main__":
    main()
