"""Frame strips: ground truth vs generated clips, with the audio's event times marked.

    python benchmarks/frame_strips.py --root DATA/synth \
        --run "AVSyncD eta=4=runs/avsyncd" --run "AVSyncD, audio shifted 0.5 s=runs/avsyncd-shift" \
        --clip hammer_strike/hammer_strike_0090_clip-00 --clip dog_bark/dog_bark_0090_clip-01 \
        --out docs/avsyncd_strips.png

For each clip: a timeline of the clip's 2 s with synth's event intervals
(from the ``events/`` sidecars: onset to offset, red), then one row of 12
frames per source (ground truth first).  A frame whose sampling time falls
inside an event gets a red frame; a viewer checks that the generated motion
happens on those frames.  Run folders come from `asva-bench run` (their clip
files are videos/<class>/<stem>_clip-NN.mp4, the protocol's frames).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asva_bench import avio  # noqa: E402
from asva_bench.profiles import protocol_for  # noqa: E402
from asva_bench.protocol import PAPER, sampling_times  # noqa: E402

SCALE = 2        # frame magnification
PAD = 4
LABEL_W = 190
TIMELINE_H = 16
EVENT = (220, 40, 40)


def parse_clip_id(clip_id: str) -> tuple[str, int]:
    """'cls/stem_clip-02' -> ('cls/stem', 2)."""
    video, _, idx = clip_id.rpartition("_clip-")
    if not video or not idx.isdigit():
        raise SystemExit(f"--clip {clip_id!r}: expected <class>/<stem>_clip-NN (a clip id of a run)")
    return video, int(idx)


def run_frames(run: Path, clip_id: str) -> np.ndarray:
    path = run / "videos" / f"{clip_id}.mp4"
    vf = avio.VideoFrames(path)
    return vf.get(np.arange(len(vf.timestamps)))


def clip_row(frames: np.ndarray, times: np.ndarray, events: list[dict]) -> Image.Image:
    n, h, w = frames.shape[:3]
    sw, sh = w * SCALE, h * SCALE
    row = Image.new("RGB", (n * (sw + PAD), sh + 2 * PAD), "white")
    d = ImageDraw.Draw(row)
    for k in range(n):
        x = k * (sw + PAD)
        if any(e["onset"] <= times[k] < e["offset"] for e in events):
            d.rectangle([x, 0, x + sw + PAD - 1, sh + 2 * PAD - 1], fill=EVENT)
        row.paste(Image.fromarray(frames[k]).resize((sw, sh), Image.NEAREST), (x + PAD // 2, PAD))
    return row


def timeline(times: np.ndarray, events: list[dict], width: int, seconds: float) -> Image.Image:
    im = Image.new("RGB", (width, TIMELINE_H), (240, 240, 240))
    d = ImageDraw.Draw(im)
    t0 = times[0]
    for e in events:
        a, b = (e["onset"] - t0) / seconds * width, (e["offset"] - t0) / seconds * width
        if b > 0 and a < width:
            d.rectangle([max(0, a), 2, min(width - 1, b), TIMELINE_H - 3], fill=EVENT)
    for k, t in enumerate(times):  # frame sampling instants
        x = (t - t0) / seconds * width
        d.line([x, TIMELINE_H - 5, x, TIMELINE_H - 1], fill=(0, 0, 0))
    return im


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="the synth dataset folder (with events/)")
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=DIR", help="a run folder, repeatable")
    ap.add_argument("--clip", action="append", required=True, metavar="CLIP_ID", help="repeatable")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = protocol_for(PAPER, args.profile)
    runs = []
    for spec in args.run:
        label, _, folder = spec.rpartition("=")
        if not label or not Path(folder).is_dir():
            raise SystemExit(f"--run {spec!r}: expected LABEL=DIR with an existing run folder")
        runs.append((label, Path(folder)))

    blocks = []
    for clip_id in args.clip:
        video, idx = parse_clip_id(clip_id)
        sidecar = args.root / "events" / f"{video}.json"
        if not sidecar.is_file():
            raise SystemExit(f"{sidecar}: no event sidecar; --root must be a synth build")
        events = json.loads(sidecar.read_text())["events"]
        gt = avio.decode_protocol_clips(args.root / "videos" / f"{video}.mp4", cfg)[idx]
        times = sampling_times(gt.start, cfg)
        rows = [("ground truth", (gt.frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))]
        rows += [(label, run_frames(folder, clip_id)) for label, folder in runs]
        images = [(label, clip_row(fr, times, events)) for label, fr in rows]
        width = images[0][1].width
        blocks.append((clip_id, timeline(times, events, width, cfg.num_frames / cfg.fps), images))

    width = LABEL_W + max(im.width for _, _, ims in blocks for _, im in ims)
    height = sum(18 + TIMELINE_H + sum(im.height for _, im in ims) + 10 for _, _, ims in blocks)
    sheet = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(sheet)
    y = 0
    for clip_id, tl, ims in blocks:
        d.text((4, y + 3), f"{clip_id}   (red: the audio's events; frames sampled inside one are framed red)",
               fill=(0, 0, 0))
        y += 18
        sheet.paste(tl, (LABEL_W, y))
        y += TIMELINE_H
        for label, im in ims:
            d.text((4, y + im.height // 2 - 5), label, fill=(0, 0, 0))
            sheet.paste(im, (LABEL_W, y))
            y += im.height
        y += 10
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    info = {"out": str(args.out), "clips": args.clip, "runs": [str(f) for _, f in runs],
            "size": [sheet.width, sheet.height]}
    print(json.dumps(info) if args.json else f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
