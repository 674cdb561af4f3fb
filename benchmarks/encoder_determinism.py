"""Is `write_clip` (libx264 at its defaults) byte-stable? Measured: not always.

Writes the same 12 frames three times, then does some torch CPU work (a
few convolutions, or one diffusers pipeline call with --pipeline DIR), then
three times more, and prints each file's SHA-256. Found while testing
diffusers-i2v (issue 14), on the 2-core machine under load: with the frames
and audio of a generated clip (--clip), an encode now and then differs from
the others (e.g. 1 in 6), with or without torch work in between; decoded
frames differ by up to ~20 levels. Lossless clips (`run --lossless`) decode
to identical frames. Flat or synthetic frames came out stable.

    python benchmarks/encoder_determinism.py --clip RUN/videos/<class>/<stem>_clip-00.mp4 [--pipeline DIR]
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
    ap.add_argument("--clip", help="take the 12 frames and the audio from this mp4 (e.g. a generated clip)")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    # smooth content with a little per-frame noise: what a generated clip looks like
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=64, mode="bilinear")
    frames = (base + 0.08 * torch.rand(12, 3, 64, 64, generator=g)).clamp(0, 1)
    audio = torch.zeros(32000)
    if args.clip:
        from asva_bench.avio import VideoFrames, read_audio
        frames = torch.from_numpy(VideoFrames(args.clip).get(range(12))).permute(0, 3, 1, 2).float() / 255
        audio = read_audio(args.clip)[0][:32000]
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
            x = torch.randn(256, 256)
            for _ in range(20):
                x = torch.nn.functional.conv2d(x[None, None], torch.randn(8, 1, 3, 3)).mean(1)[0]
        after = [digest(write_clip(d / f"a{i}.mp4", frames, 6.0, audio=audio)) for i in range(3)]
    print("before torch work:", before)
    print("after torch work: ", after)
    print("byte-stable" if len(set(before + after)) == 1 else "NOT byte-stable")


if __name__ == "__main__":
    main()
