"""Colours and backgrounds: per-clip palettes whose object colours contrast with the background."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from .constants import SIZE

Color = np.ndarray  # uint8 [3]


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def pick_color(rng, luma, hue=(0.0, 1.0), sat=(0.3, 0.9)) -> Color:
    """A random colour whose luma (0..1) lies in the given range."""
    target = rng.uniform(*luma)
    h, s = rng.uniform(*hue) % 1.0, rng.uniform(*sat)
    for _ in range(12):
        full = colorsys.hsv_to_rgb(h, s, 1.0)
        v = target / max(_luma(full), 1e-6)
        if v <= 1.0:
            break
        s *= 0.6  # too dark a hue for that luma: desaturate towards white
    rgb = np.clip(np.asarray(colorsys.hsv_to_rgb(h, s, min(v, 1.0))), 0, 1)
    return np.round(rgb * 255).astype(np.uint8)


def shade(color: Color, amount: float) -> Color:
    """Lighter (amount > 0) or darker (amount < 0) version of a colour."""
    c = color.astype(np.float32)
    c = c + (255 - c) * amount if amount > 0 else c * (1 + amount)
    return np.clip(np.round(c), 0, 255).astype(np.uint8)


@dataclass
class Palette:
    """Per-clip colours: object colours contrast with the background's luma range."""
    bg_dark: bool
    obj: Color
    obj2: Color
    obj3: Color
    dark: Color
    light: Color

    @property
    def fg_luma(self):
        return (0.55, 0.92) if self.bg_dark else (0.08, 0.42)

    @property
    def bg_luma(self):
        return (0.08, 0.32) if self.bg_dark else (0.66, 0.92)

    def fg(self, rng, hue=(0.0, 1.0), sat=(0.3, 0.9)) -> Color:
        return pick_color(rng, self.fg_luma, hue, sat)


def make_palette(rng) -> Palette:
    bg_dark = bool(rng.random() < 0.5)
    fg = (0.55, 0.92) if bg_dark else (0.08, 0.42)
    return Palette(bg_dark, pick_color(rng, fg), pick_color(rng, fg), pick_color(rng, fg),
                   pick_color(rng, (0.03, 0.1), sat=(0.2, 0.6)),
                   pick_color(rng, (0.88, 0.97), sat=(0.0, 0.2)))


BACKGROUNDS = ("gradient", "horizon", "tiles", "blobs")


def make_background(rng, pal: Palette) -> tuple[np.ndarray, str]:
    """A static background (drawn once per clip), smooth so it costs little to encode."""
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    c1, c2 = (pick_color(rng, pal.bg_luma, sat=(0.1, 0.7)).astype(np.float32) for _ in range(2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    ang = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(ang) + yy * math.sin(ang)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1 + (c2 - c1) * t[..., None]
    if kind == "horizon":
        c3 = pick_color(rng, pal.bg_luma, sat=(0.2, 0.8)).astype(np.float32)
        ground = yy >= rng.uniform(0.55, 0.8)
        img[ground] = c3 * (0.85 + 0.15 * yy[ground, None])
    elif kind == "tiles":
        tile = int(rng.integers(24, 65))
        iy, ix = np.mgrid[0:SIZE, 0:SIZE]
        checker = ((iy // tile + ix // tile) % 2).astype(np.float32)
        img += (checker[..., None] - 0.5) * rng.uniform(10, 22)
    elif kind == "blobs":
        for _ in range(int(rng.integers(3, 7))):
            cx, cy, r = rng.uniform(0, SIZE, 2).tolist() + [rng.uniform(20, 70)]
            inside = (xx * (SIZE - 1) - cx) ** 2 + (yy * (SIZE - 1) - cy) ** 2 <= r * r
            img[inside] += rng.uniform(-20, 20, 3).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), kind
