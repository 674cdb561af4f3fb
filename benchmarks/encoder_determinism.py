"""Is `write_clip` (libx264 at its defaults) byte-stable? Measured: not once torch has computed in the process.

Writes the same 12 frames three times before and three times after some
torch CPU work (a few convolutions, or a diffusers pipeline call with
--pipeline DIR) and prints each file's SHA-256. Found while testing
diffusers-i2v (issue 14): after torch work the encoded bytes differ from a
fresh process's, and after a Stable Video Diffusion call the first encode
also differs from the next ones; decoded frames differ by up to ~20 levels.
Lossless clips (`run --lossless`) decode to identical frames either way.

    python benchmarks/encoder_determinism.py [--pipeline tiny-svd-folder]
"""

import argparse
import hashlib
import tempfile
from pathlib import Path

import torch

from asva_bench.avio import write_clip


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", help="a diffusers image-to-video folder to run once between the writes")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 64, 64, generator=g)
    frames = (base + 0.3 * torch.arange(12).view(12, 1, 1, 1) / 12).clamp(0, 1)
    audio = torch.zeros(32000)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        before = [digest(write_clip(d / f"b{i}.mp4", frames, 6.0, audio=audio)) for i in range(3)]
        if args.pipeline:
            from asva_bench.adapters import ClipBatch, build_adapter
            from asva_bench.protocol import MINI
            a = build_adapter("diffusers-i2v", [f"model={args.pipeline}", "steps=2", "height=32", "width=32"])
            a.setup(MINI)
            a.generate(ClipBatch(first_frame=frames[:1], audio=audio[None], mel=torch.zeros(1, 1, 128, 204),
                                 text=["x"], clip_ids=["x/y"], seeds=[0], protocol=MINI))
        else:
            x = torch.randn(1, 1, 256, 256)
            for _ in range(20):
                x = torch.nn.functional.conv2d(x, torch.randn(1, 1, 3, 3), padding=1)
        after = [digest(write_clip(d / f"a{i}.mp4", frames, 6.0, audio=audio)) for i in range(3)]
    print("before torch work:", before)
    print("after torch work: ", after)
    print("byte-stable" if len(set(before + after)) == 1 else "NOT byte-stable")


if __name__ == "__main__":
    main()
