"""Sample the mini base model per class and check the samples look like synth frames.

    python benchmarks/sample_mini_base.py [--bundle DIR] [--per-class 8] [--out-dir docs] [--json]

Writes <out-dir>/mini_base_samples.png (one row per class: generated samples,
then real test frames of that class after a gap) and
<out-dir>/mini_base_samples.json with sanity statistics, each next to a
reference that says what "good" and "broken" look like:

* pixel_fd: Frechet distance of 4x4-pooled pixels (48-d) between generated
  and real test frames; references: real train vs real test frames (the
  floor) and uniform noise vs real test frames (the ceiling).
* colour_error: mean |RGB mean of generated class c - RGB mean of real class c|;
  reference: the same with classes shuffled (conditioning ignored).
* roughness: mean |Laplacian| of generated / of real frames (noise >> 1,
  blur << 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def pooled(images: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(images.float(), 4).flatten(1)  # 48-d: estimable from ~100 samples


def roughness(images: torch.Tensor) -> float:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(images.float(), k, groups=3).abs().mean())


def real_frames(cache, per_class: int, generator) -> dict[int, torch.Tensor]:
    """``per_class`` random frames of every class, {class index: [n, 3, H, W]}."""
    out = {}
    for c in range(len(cache.classes)):
        vids = (cache.labels == c).nonzero().flatten()
        pick = vids[torch.randint(0, len(vids), (per_class,), generator=generator)]
        idx = []
        for v in pick.tolist():
            a, b = int(cache.frame_offsets[v]), int(cache.frame_offsets[v + 1])
            idx.append(a + int(torch.randint(0, b - a, (1,), generator=generator)))
        out[c] = cache.frames[torch.tensor(idx)].float() / 255.0
    return out


def main(argv=None) -> int:
    from asva_bench.training.clip_cache import ensure_clip_cache
    from asva_bench.metrics.frechet import frechet_distance_from_features
    from asva_bench.models.avsyncd.mini_base import DEFAULT_WEIGHTS, MiniBase, sample_images

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(DEFAULT_WEIGHTS), help="mini base folder (default: shipped weights)")
    p.add_argument("--root", help="synth root (default: built / found by ensure_synth)")
    p.add_argument("--cache-dir", help="clip cache root (default $ASVA_BENCH_HOME/cache/clips)")
    p.add_argument("--workers", type=int, default=1, help="processes decoding the clip caches if missing")
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--real-per-class", type=int, default=4, help="real frames shown per row")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--guidance-scale", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", default="docs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from torchvision.utils import save_image

    from asva_bench.fsutil import atomic_path, atomic_write_text

    base = MiniBase.load(args.bundle, device=args.device)
    test = ensure_clip_cache("synth", root=args.root, split="test", cache_dir=args.cache_dir,
                             workers=args.workers, progress=not args.json).pack()
    train = ensure_clip_cache("synth", root=args.root, split="train", cache_dir=args.cache_dir,
                              workers=args.workers, progress=not args.json).pack()
    texts = test.class_texts
    g = torch.Generator().manual_seed(args.seed)
    n_ref = max(args.per_class, args.real_per_class)
    real = real_frames(test, n_ref, g)
    t0 = time.perf_counter()
    prompts = [t for t in texts for _ in range(args.per_class)]
    gen = sample_images(base, prompts, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                        seed=args.seed, progress=not args.json).cpu()
    seconds = time.perf_counter() - t0
    gen_by_class = gen.view(len(texts), args.per_class, *gen.shape[1:])

    # grid: generated | blank | real, one row per class
    rows = []
    blank = torch.ones(1, *gen.shape[1:])
    for c in range(len(texts)):
        rows.append(torch.cat([gen_by_class[c], blank, real[c][:args.real_per_class]]))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "mini_base_samples.png"
    with atomic_path(png) as tmp:
        save_image(torch.cat(rows), str(tmp), nrow=args.per_class + 1 + args.real_per_class, padding=1,
                   format="png")

    real_all = torch.cat([real[c] for c in range(len(texts))])
    train_ref = real_frames(train, n_ref, g)
    train_all = torch.cat([train_ref[c] for c in range(len(texts))])
    noise = torch.rand(real_all.shape, generator=g)
    real_means = torch.stack([real[c].mean(dim=(0, 2, 3)) for c in range(len(texts))])
    gen_means = gen_by_class.mean(dim=(1, 3, 4))
    shuffled = torch.roll(real_means, 1, dims=0)
    stats = {
        "bundle": str(args.bundle), "classes": texts, "samples_per_class": args.per_class,
        "ddim_steps": args.steps, "guidance_scale": args.guidance_scale, "sampling_seconds": round(seconds, 1),
        "pixel_fd": {"generated_vs_test": frechet_distance_from_features(pooled(gen), pooled(real_all)),
                     "train_vs_test_floor": frechet_distance_from_features(pooled(train_all), pooled(real_all)),
                     "noise_vs_test_ceiling": frechet_distance_from_features(pooled(noise), pooled(real_all))},
        "colour_error": {"per_class_generated": float((gen_means - real_means).abs().mean()),
                         "classes_shuffled_reference": float((shuffled - real_means).abs().mean()),
                         "per_class": {t: round(float((gen_means[i] - real_means[i]).abs().mean()), 4)
                                       for i, t in enumerate(texts)}},
        "roughness_ratio": {"generated": roughness(gen) / roughness(real_all),
                            "noise_reference": roughness(noise) / roughness(real_all)},
        "png": str(png), "training": base.info,
    }
    atomic_write_text(out_dir / "mini_base_samples.json", json.dumps(stats, indent=1) + "\n")
    if args.json:
        print(json.dumps(stats))
    else:
        fd, ce, r = stats["pixel_fd"], stats["colour_error"], stats["roughness_ratio"]
        print(f"pixel FD generated/test {fd['generated_vs_test']:.2f} (floor train/test "
              f"{fd['train_vs_test_floor']:.2f}, noise {fd['noise_vs_test_ceiling']:.2f}); colour error "
              f"{ce['per_class_generated']:.3f} (shuffled classes {ce['classes_shuffled_reference']:.3f}); "
              f"roughness ratio {r['generated']:.2f} (noise {r['noise_reference']:.2f}); grid {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
