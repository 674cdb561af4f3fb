"""Rendering one clip: its random stream, the object's placement, distractors, the frame stack, the mix.

Every clip is drawn from its own seeded random stream (global seed, class
name, index). The background is drawn once per clip and every distinct
object state once, then indexed into the frame stack.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from ..base import DatasetError
from .audio import normalise
from .classes import CLASSES
from .clip import Clip, jsonable
from .constants import FPS, GENERATOR, MAX_FRAMES, MIN_FRAMES, SAMPLE_RATE, SIZE, VERSION
from .palette import make_background, make_palette, pick_color
from .raster import Pen, fill_ellipse, fill_polygon, fill_star, rotate


def clip_rng(seed: int, folder: str, index: int) -> np.random.Generator:
    """The clip's own random stream: independent of build order, workers and class subset."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(folder.encode()), int(index)]))


def _place_object(rng, extent):
    u0, v0, u1, v1 = extent
    margin = 3
    s_max = min(1.15, (SIZE - 2 * margin) / (u1 - u0), (SIZE - 2 * margin) / (v1 - v0))
    s = rng.uniform(0.8, 1.0) * s_max
    flip = bool(rng.random() < 0.5)
    xs = sorted((-u1 * s, -u0 * s) if flip else (u0 * s, u1 * s))  # box relative to the anchor
    cx = rng.uniform(margin - xs[0], SIZE - margin - xs[1])
    cy = rng.uniform(margin - v0 * s, SIZE - margin - v1 * s)
    box = (cx + xs[0], cy + v0 * s, cx + xs[1], cy + v1 * s)
    return Pen(cx, cy, s, flip), box


def _free_strips(box, min_width):
    """Regions of the frame outside the object box, as (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    strips = [(0, 0, SIZE, y0), (0, y1, SIZE, SIZE), (0, 0, x0, SIZE), (x1, 0, SIZE, SIZE)]
    return [s for s in strips if s[2] - s[0] >= min_width and s[3] - s[1] >= min_width]


def _distractor(img, rng_kind, x, y, r, color, ang):
    if rng_kind == 0:
        fill_ellipse(img, x, y, r, r, color)
    elif rng_kind == 1:
        fill_polygon(img, rotate([(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)], ang, (x, y)),
                     color)
    elif rng_kind == 2:
        fill_polygon(img, rotate([(x, y - r), (x + r, y + 0.8 * r), (x - r, y + 0.8 * r)], ang, (x, y)), color)
    else:
        fill_star(img, x, y, r, 0.45 * r, 5, color, ang)


def _drawn_box(pen: Pen):
    """[x0, y0, x1, y1] of the pixels the object's pen touched (inclusive)."""
    if pen.touched is None:
        return None
    ya, yb, xa, xb = pen.touched
    return [xa, ya, xb - 1, yb - 1]


def render_clip(folder: str, seed: int, index: int):
    """Render one clip: (frames uint8 [T,256,256,3], audio float32 [n], record dict)."""
    if folder not in CLASSES:
        raise DatasetError(f"synth: unknown class '{folder}'; known: {', '.join(CLASSES)}")
    cls = CLASSES[folder]
    rng = clip_rng(seed, folder, index)
    T = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    pal = make_palette(rng)
    bg, bg_kind = make_background(rng, pal)
    pen, box = _place_object(rng, cls.extent)
    clip = Clip(rng, T)
    scene = cls.build(clip, pal)

    # static distractors, outside the object's box
    distractors = []
    for _ in range(int(rng.integers(2, 7))):
        r = rng.uniform(6, 22)
        for _try in range(20):
            x, y = rng.uniform(r, SIZE - r, 2)
            if x + r < box[0] - 3 or x - r > box[2] + 3 or y + r < box[1] - 3 or y - r > box[3] + 3:
                kind, ang = int(rng.integers(4)), rng.uniform(0, math.pi)
                col = pick_color(rng, (0.05, 0.95), sat=(0.2, 1.0))
                _distractor(bg, kind, x, y, r, col, ang)
                distractors.append({"shape": ("circle", "square", "triangle", "star")[kind],
                                    "x": x, "y": y, "r": r})
                break
    # one slowly drifting distractor, moving with no relation to the audio
    mover = None
    strips = _free_strips(box, 22)
    if strips and rng.random() < 0.5:
        sx0, sy0, sx1, sy1 = strips[int(rng.integers(len(strips)))]
        r = rng.uniform(5, min(10, (min(sx1 - sx0, sy1 - sy0) - 2) / 2))
        p0 = np.array([rng.uniform(sx0 + r, sx1 - r), rng.uniform(sy0 + r, sy1 - r)])
        vel = rng.uniform(-40, 40, 2)  # px / s
        mover = dict(kind=int(rng.integers(4)), r=r, lo=(sx0 + r, sy0 + r), hi=(sx1 - r, sy1 - r),
                     p0=p0, vel=vel, color=pick_color(rng, (0.05, 0.95), sat=(0.2, 1.0)))
    if scene.static is not None:
        scene.static(bg, pen)

    # draw each distinct object state once, then index the frame stack
    uniq, inverse = np.unique(scene.states, axis=0, return_inverse=True)
    stack = np.empty((len(uniq),) + bg.shape, np.uint8)
    for j, st in enumerate(uniq):
        stack[j] = bg
        scene.draw(stack[j], pen, st)
    frames = stack[inverse.reshape(-1)]
    if mover is not None:
        # its sprite is drawn once, then pasted along a path that bounces inside its strip
        r = mover["r"]
        size = int(math.ceil(2 * r)) + 3
        sprite = np.zeros((size, size, 3), np.uint8)
        _distractor(sprite, mover["kind"], size / 2, size / 2, r, np.array([255, 255, 255], np.uint8), 0.0)
        smask = sprite[..., 0] > 0
        lo, hi = np.array(mover["lo"]), np.array(mover["hi"])
        span = np.maximum(hi - lo, 1e-6)
        q = (mover["p0"] - lo + mover["vel"] * (np.arange(T)[:, None] / FPS)) % (2 * span)
        corner = np.round(lo + np.where(q > span, 2 * span - q, q) - size / 2).astype(int)
        for k, (x, y) in enumerate(corner.tolist()):
            ya, xa = max(y, 0), max(x, 0)
            yb, xb = min(y + size, SIZE), min(x + size, SIZE)
            if ya < yb and xa < xb:
                np.copyto(frames[k, ya:yb, xa:xb], mover["color"],
                          where=smask[ya - y:yb - y, xa - x:xb - x, None])

    # audio: events at a random loudness, plus quiet coloured background noise
    gain_db = rng.uniform(-18, -3)
    noise_rms = rng.uniform(0.002, 0.008)
    from scipy.signal import lfilter
    bgn = lfilter([1.0], [1.0, -rng.uniform(0.5, 0.95)], rng.standard_normal(clip.n_samples))
    bgn *= noise_rms / (np.std(bgn) + 1e-12)
    audio = normalise(clip.track) * 10 ** (gain_db / 20) + bgn
    audio = np.clip(audio, -1, 1).astype(np.float32)

    record = {
        "generator": GENERATOR, "version": VERSION, "seed": int(seed), "class": folder, "text": cls.text,
        "index": int(index), "kind": cls.kind, "avsync15_analogue": cls.avsync15,
        "duration": round(T / FPS, 6), "num_frames": T, "fps": FPS, "size": [SIZE, SIZE],
        "sample_rate": SAMPLE_RATE, "num_samples": int(clip.n_samples),
        "events": clip.events,
        "params": {k: jsonable(v) for k, v in {
            "background": bg_kind, "bg_dark": pal.bg_dark, "object_color": pal.obj.tolist(),
            "scale": pen.s, "flipped": pen.f < 0, "anchor": [pen.cx, pen.cy],
            "object_box": [round(b, 1) for b in box], "drawn_box": _drawn_box(pen), "distractors": distractors,
            "moving_distractor": mover is not None, "gain_db": gain_db, "noise_rms": noise_rms,
            **(scene.params or {})}.items()},
    }
    return frames, audio, record
