"""The synthetic dataset ``synth``: procedural audio-video clips, synchronized by construction.

Fifteen classes echo AVSync15's variety (impacts, bursts, vocal-like tones
with a moving mouth or throat, bowed/scraped strokes, sustained brass tones,
a continuous flush). Every clip is drawn from its own seeded random stream
(global seed, class name, index), so any subset of a build is reproducible
on its own and the result does not depend on the number of workers.

Synchrony: event onsets are whole source frames (24 fps). The audio of an
event starts at the sample of that frame's timestamp, and the visual change
(strike, flash, open mouth, moving bow...) is already visible in that frame.
Vocal and sustained classes drive the picture from the audio's own amplitude
envelope (its maximum over each frame period), so mouth opening or bell
vibration rises and falls with the sound; bows, knives and slides move only
while their sound plays. Each visual event lasts at
least 4 frames (1/6 s), so the protocol's 6 fps sampling always sees it.

Layout (AVSync15's, plus sidecars)::

    <root>/videos/<class_folder>/<class_folder>_NNNN.mp4   h264 + AAC 16 kHz, 256x256, 24 fps
    <root>/events/<class_folder>/<class_folder>_NNNN.json  event times and clip parameters
    <root>/train.txt, <root>/test.txt                       '<class_folder>/<file>.mp4' per line
    <root>/synth.json                                       build record, written last
    <root>/synth.building.json                              settings of a build in progress

Atomicity: videos and sidecars are written to temporary names and renamed; a
video counts as done only when its sidecar (written after it) names the
video's byte size. ``synth.json`` is written last and its presence marks a
complete build; the dataset reader refuses a root without it. A re-run skips
videos that are already complete and valid, deletes leftover temporary files,
and (for a changed size or class list) the clips the new build no longer lists.

Speed: shapes are rasterised with numpy on their own bounding boxes only,
the background is drawn once per clip, and every distinct object state is
drawn once and then indexed into the frame stack; clips are rendered and
encoded in parallel worker processes.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import json
import math
import os
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..protocol import PAPER
from .base import DatasetError, DatasetSpec, Manifest
from .real import read_split_files

GENERATOR = "asva-bench synth"
#: Bump whenever the pixels or samples a seed produces change.
VERSION = 3
FPS = 24
SIZE = 256
SAMPLE_RATE = 16000
MIN_FRAMES, MAX_FRAMES = 3 * FPS, 8 * FPS          # 3-8 s clips
MIN_EVENT_FRAMES = 4                                # 1/6 s: seen by 6 fps sampling
EVENT_RATE_LIMITS = (0.5, 3.0)                      # events per second, eventful classes
#: Least silence between two events: twice the validity suite's largest shift
#: below 1 s (0.5 s).  A frame shift of up to 0.5 s then never brings a visual
#: onset or offset within 0.5 s of a neighbouring event's sound onset or offset,
#: so audio-visual alignment falls monotonically with the shift.  Measured: with
#: gaps down to 0.08 s (version 1) or 0.5 s (version 2) the RelSync of the
#: shifted ground truth rose again from 0.33 to 0.5 s (a visual event shifted by
#: the gap lands on the previous sound's end); on the videos whose gaps were all
#: >= 1 s it fell strictly.  The price: eventful classes run at 0.5 to about
#: 0.9 events per second, the low end of AVSync15-like rates.
MIN_EVENT_GAP_S = 1.0
TEST_FRACTION = 0.1
DEFAULT_VIDEOS_PER_CLASS = 100
ENCODER_PRESET = "ultrafast"
MARKER = "synth.json"
PLAN = "synth.building.json"   # settings of a build in progress, so it can be resumed
ENV_VAR = "ASVA_SYNTH_ROOT"
#: Shown in help texts; the default root is ``$ASVA_BENCH_HOME/datasets/synth`` (:func:`default_root`).
DEFAULT_ROOT = "$ASVA_BENCH_HOME/datasets/synth"

Color = np.ndarray  # uint8 [3]


# ==========================================================================
# Rasterisation: convex shapes filled on their own bounding box
# ==========================================================================
def _window(img, x0, y0, x1, y1):
    """Pixel window [ya:yb, xa:xb] covering the box, clipped; None when off canvas."""
    H, W = img.shape[0], img.shape[1]
    xa, ya = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    xb, yb = min(int(math.ceil(x1)) + 1, W), min(int(math.ceil(y1)) + 1, H)
    if xa >= xb or ya >= yb:
        return None
    return ya, yb, xa, xb


def _grid(win):
    ya, yb, xa, xb = win
    return np.arange(xa, xb, dtype=np.float32)[None, :], np.arange(ya, yb, dtype=np.float32)[:, None]


def _paint(img, win, mask, color):
    ya, yb, xa, xb = win
    np.copyto(img[ya:yb, xa:xb], color, where=mask[..., None])
    return win


def fill_ellipse(img, cx, cy, rx, ry, color, angle=0.0):
    rx, ry = max(float(rx), 0.5), max(float(ry), 0.5)
    c, s = math.cos(angle), math.sin(angle)
    hx, hy = (math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)) if angle else (rx, ry)
    win = _window(img, cx - hx, cy - hy, cx + hx, cy + hy)
    if win is None:
        return None
    xs, ys = _grid(win)
    dx, dy = xs - cx, ys - cy
    if angle:
        u, v = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
        mask = u * u + v * v <= 1.0
    else:
        mask = (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0
    return _paint(img, win, mask, color)


def fill_capsule(img, x0, y0, x1, y1, r, color):
    """A thick line segment with round ends."""
    win = _window(img, min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
    if win is None:
        return None
    xs, ys = _grid(win)
    dx, dy = x1 - x0, y1 - y0
    l2 = dx * dx + dy * dy or 1e-9
    px, py = xs - x0, ys - y0
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    return _paint(img, win, ex * ex + ey * ey <= r * r, color)


def fill_polygon(img, pts, color):
    """A convex polygon (either winding)."""
    p = np.asarray(pts, np.float64)
    win = _window(img, p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    if win is None:
        return None
    xs, ys = _grid(win)
    q = np.roll(p, -1, axis=0)
    sign = 1.0 if np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]) >= 0 else -1.0
    mask = None
    for (xa, ya), (xb, yb) in zip(p, q):
        inside = sign * ((xb - xa) * (ys - ya) - (yb - ya) * (xs - xa)) >= -1e-6
        mask = inside if mask is None else mask & inside
    return _paint(img, win, mask, color)


def fill_star(img, cx, cy, r_out, r_in, n, color, phase=0.0):
    """A soft-pointed star (flashes, sparks, manes)."""
    win = _window(img, cx - r_out, cy - r_out, cx + r_out, cy + r_out)
    if win is None:
        return None
    xs, ys = _grid(win)
    dx, dy = xs - cx, ys - cy
    lim = r_in + (r_out - r_in) * (0.5 + 0.5 * np.cos(n * (np.arctan2(dy, dx) - phase))) ** 3
    return _paint(img, win, dx * dx + dy * dy <= lim * lim, color)


def fill_ring(img, cx, cy, r0, r1, color, a0=-math.pi, a1=math.pi):
    """An annulus sector between angles a0..a1 (image coordinates, y down)."""
    win = _window(img, cx - r1, cy - r1, cx + r1, cy + r1)
    if win is None:
        return None
    xs, ys = _grid(win)
    dx, dy = xs - cx, ys - cy
    r2 = dx * dx + dy * dy
    mask = (r2 >= r0 * r0) & (r2 <= r1 * r1)
    if a1 - a0 < 2 * math.pi - 1e-6:
        mid, half = (a0 + a1) / 2, (a1 - a0) / 2
        d = (np.arctan2(dy, dx) - mid + math.pi) % (2 * math.pi) - math.pi
        mask &= np.abs(d) <= half
    return _paint(img, win, mask, color)


def _rotate(points, angle, about=(0.0, 0.0)):
    c, s = math.cos(angle), math.sin(angle)
    ax, ay = about
    return [(ax + (x - ax) * c - (y - ay) * s, ay + (x - ax) * s + (y - ay) * c) for x, y in points]


class Pen:
    """Draws in an object's local units: u right, v down, scaled, optionally mirrored.

    It also records the union of pixel windows it touched, so tests can check
    that an object stays inside the box declared for its class.
    """

    def __init__(self, cx: float, cy: float, scale: float, flip: bool):
        self.cx, self.cy, self.s, self.f = float(cx), float(cy), float(scale), -1.0 if flip else 1.0
        self.touched: list[int] | None = None  # [ya, yb, xa, xb]

    def xy(self, u, v):
        return self.cx + self.f * self.s * u, self.cy + self.s * v

    def _track(self, win):
        if win is not None:
            t = self.touched
            self.touched = list(win) if t is None else [min(t[0], win[0]), max(t[1], win[1]),
                                                        min(t[2], win[2]), max(t[3], win[3])]

    def ellipse(self, img, u, v, ru, rv, color, angle=0.0):
        x, y = self.xy(u, v)
        self._track(fill_ellipse(img, x, y, ru * self.s, rv * self.s, color, self.f * angle))

    def circle(self, img, u, v, r, color):
        self.ellipse(img, u, v, r, r, color)

    def capsule(self, img, u0, v0, u1, v1, r, color):
        x0, y0 = self.xy(u0, v0)
        x1, y1 = self.xy(u1, v1)
        self._track(fill_capsule(img, x0, y0, x1, y1, r * self.s, color))

    def poly(self, img, pts, color):
        self._track(fill_polygon(img, [self.xy(u, v) for u, v in pts], color))

    def rect(self, img, u0, v0, u1, v1, color):
        """Axis-aligned rectangle: plain slicing, no mask."""
        xa, ya = self.xy(u0, v0)
        xb, yb = self.xy(u1, v1)
        x0, x1, y0, y1 = min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb)
        win = _window(img, math.ceil(x0), math.ceil(y0), math.floor(x1), math.floor(y1))
        if win is not None:
            img[win[0]:win[1], win[2]:win[3]] = color
        self._track(win)

    def star(self, img, u, v, r_out, r_in, n, color, phase=0.0):
        x, y = self.xy(u, v)
        ph = phase if self.f > 0 else math.pi - phase
        self._track(fill_star(img, x, y, r_out * self.s, r_in * self.s, n, color, ph))

    def ring(self, img, u, v, r0, r1, color, a0=-math.pi, a1=math.pi):
        x, y = self.xy(u, v)
        if self.f < 0:  # mirror the sector: angle a -> pi - a
            a0, a1 = math.pi - a1, math.pi - a0
        self._track(fill_ring(img, x, y, r0 * self.s, r1 * self.s, color, a0, a1))


# ==========================================================================
# Colours and backgrounds
# ==========================================================================
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


# ==========================================================================
# Audio building blocks (16 kHz numpy)
# ==========================================================================
def _t(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


def _harmonics(freq, amps, rng) -> np.ndarray:
    """Sum over k of amps[k-1] * sin(k * phase(t) + random offset), phase from a per-sample frequency.

    Evaluated as Im(sum c_k z^k), z = exp(i phase), by Horner's rule: one
    complex multiply per harmonic instead of one sine.
    """
    phase = 2 * math.pi * np.cumsum(freq) / SAMPLE_RATE
    z = np.exp(1j * phase)
    coef = [a * np.exp(1j * rng.uniform(0, 2 * math.pi)) for a in amps]
    acc = np.full(len(phase), coef[-1], np.complex128)
    for ck in coef[-2::-1]:
        acc *= z
        acc += ck
    acc *= z
    return acc.imag.copy()


@functools.lru_cache(maxsize=512)
def _butter(lo, hi):
    from scipy.signal import butter
    nyq = SAMPLE_RATE / 2
    if lo is None:
        return butter(2, hi / nyq, "lowpass", output="sos")
    if hi is None:
        return butter(2, lo / nyq, "highpass", output="sos")
    return butter(2, [lo / nyq, min(hi, nyq * 0.95) / nyq], "bandpass", output="sos")


def _noise(rng, n, band=None) -> np.ndarray:
    """White noise, or 2nd-order Butterworth filtered noise at unit RMS."""
    x = rng.standard_normal(n)
    if band is None:
        return x
    from scipy.signal import sosfilt
    # round the band edges so the filter cache stays small
    lo, hi = (None if b is None else float(round(b, -1)) for b in band)
    y = sosfilt(_butter(lo, hi), x)
    return y / (np.std(y) + 1e-9)


def _adsr(n, attack, release, sustain=None) -> np.ndarray:
    """Envelope over n samples: linear attack, sustain shape, linear release at the end."""
    env = np.ones(n) if sustain is None else np.asarray(sustain, np.float64).copy()
    a, r = min(int(attack * SAMPLE_RATE), n), min(int(release * SAMPLE_RATE), n)
    if a:
        env[:a] *= np.linspace(0, 1, a, endpoint=False) + 1.0 / a
    if r:
        env[n - r:] *= np.linspace(1, 0, r)
    return env


def _norm(x) -> np.ndarray:
    return x / (np.max(np.abs(x)) + 1e-9)


# ==========================================================================
# Per-clip context: events, audio tracks, per-frame envelopes
# ==========================================================================
class Clip:
    """What a class builder fills: events, the event audio track and its envelope."""

    def __init__(self, rng, num_frames: int):
        self.rng = rng
        self.T = int(num_frames)
        self.n_samples = int(round(self.T * SAMPLE_RATE / FPS))
        self.frame_starts = np.round(np.arange(self.T) * SAMPLE_RATE / FPS).astype(np.int64)
        self.track = np.zeros(self.n_samples)
        self.env = np.zeros(self.n_samples)
        self.events: list[dict] = []

    def sample_of(self, frame: int) -> int:
        return int(round(frame * SAMPLE_RATE / FPS))

    def place(self, rate, dur, gap=0.12, lead=0.25, tail=0.3) -> list[tuple[int, int]]:
        """Random non-overlapping events [on, off) in frames, 0.5-3 per second.

        ``rate`` is the class's range of events per second (within 0.5-3),
        ``dur`` its range of event durations in seconds (at least 1/6 s),
        ``gap`` the least silence between events (raised to MIN_EVENT_GAP_S),
        ``lead``/``tail`` the quiet margins at the clip's start and end.
        """
        gap = max(gap, MIN_EVENT_GAP_S)
        rng, T = self.rng, self.T
        secs = T / FPS
        lo = max(MIN_EVENT_FRAMES, int(round(dur[0] * FPS)))
        hi = max(lo, int(round(dur[1] * FPS)))
        g, ld, tl = int(round(gap * FPS)), int(round(lead * FPS)), int(round(tail * FPS))
        n = int(round(rng.uniform(*rate) * secs))
        n = min(max(n, math.ceil(EVENT_RATE_LIMITS[0] * secs)), math.floor(EVENT_RATE_LIMITS[1] * secs))
        durs = rng.integers(lo, hi + 1, size=n)
        avail = T - ld - tl
        # too long for the clip: shorten the longest events first, then drop events
        while durs.sum() + g * (len(durs) - 1) > avail:
            j = int(np.argmax(durs))
            if durs[j] > lo:
                durs[j] -= 1
            elif len(durs) > 1:
                durs = durs[:-1]
            else:
                durs[0] = max(avail, MIN_EVENT_FRAMES)
                break
        slack = max(avail - int(durs.sum()) - g * (len(durs) - 1), 0)
        offs = np.sort(rng.integers(0, slack + 1, size=len(durs)))
        starts = ld + offs + np.concatenate([[0], np.cumsum(durs[:-1] + g)])
        return [(int(s), int(s + d)) for s, d in zip(starts, durs)]

    def hold(self, events, release=3) -> np.ndarray:
        """Per-frame visual envelope: 1 during each event, then a short linear release."""
        e = np.zeros(self.T)
        for on, off in events:
            e[on:off] = 1.0
            for j in range(1, release + 1):
                if off + j - 1 < self.T:
                    e[off + j - 1] = max(e[off + j - 1], 1.0 - j / (release + 1))
        return e

    def add(self, frame: int, sig, env=None):
        """Mix a sound into the event track starting at a frame's timestamp (clipped to the clip)."""
        s = self.sample_of(frame)
        skip = max(0, -s)
        s += skip
        n = min(len(sig) - skip, self.n_samples - s)
        if n <= 0:
            return
        self.track[s:s + n] += sig[skip:skip + n]
        if env is not None:
            np.maximum(self.env[s:s + n], env[skip:skip + n], out=self.env[s:s + n])

    def frame_env(self) -> np.ndarray:
        """Per-frame maximum of the audio envelope over each frame's period."""
        return np.maximum.reduceat(self.env, self.frame_starts)

    def event(self, on: int, off: int, **params):
        self.events.append({"onset": round(on / FPS, 6), "offset": round(off / FPS, 6),
                            "onset_frame": int(on), "offset_frame": int(off),
                            **{k: _jsonable(v) for k, v in params.items()}})


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        return round(float(v), 4)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    return v


def levels(x, n=8) -> np.ndarray:
    """Quantise [0, 1] to n steps (as ints), so equal states are drawn once."""
    return np.round(np.clip(x, 0, 1) * n).astype(np.int64)


@dataclass
class Scene:
    states: np.ndarray                    # [T, k] int: the object's state per frame
    draw: Callable                        # draw(img, pen, state_row)
    static: Callable | None = None        # static(img, pen): parts that never move
    params: dict | None = None


# ==========================================================================
# The fifteen classes
# ==========================================================================
def scene_hammer(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.5), (1 / 6, 0.3), gap=0.1)
    up, L = rng.uniform(45, 70), rng.uniform(70, 85)
    head, handle, anvil = pal.obj, pal.obj2, pal.obj3
    spark, spark_core = pal.fg(rng, hue=(0.08, 0.16), sat=(0.7, 1.0)), pal.light
    for on, off in evs:
        f0, tau = rng.uniform(500, 1300), rng.uniform(0.1, 0.3)
        n = int(tau * 5 * SAMPLE_RATE)
        t = _t(n)
        sig = sum(a * np.sin(2 * math.pi * f0 * r * t + rng.uniform(0, 6)) * np.exp(-t * (1 + i) / tau)
                  for i, (r, a) in enumerate(zip((1, 2.76, 5.4, 8.93), (1, .6, .4, .25))))
        sig = sig + 0.8 * _noise(rng, n) * np.exp(-t / 0.004)
        c.add(on, _norm(sig) * rng.uniform(0.6, 1.0))
        c.event(on, off, pitch_hz=f0, decay_s=tau)
    e = c.hold(evs)
    states = np.stack([np.round(up * (1 - e) * 2), e >= 1.0], 1).astype(np.int64)

    def static(img, pen):
        pen.rect(img, -70, 26, 20, 46, anvil)
        pen.poly(img, [(-50, 46), (0, 46), (10, 56), (-60, 56)], anvil)

    def draw(img, pen, st):
        th = math.radians(st[0] / 2)
        du, dv = -math.cos(th), -math.sin(th)
        hu, hv = 60 + L * du, L * dv
        pu, pv = math.sin(th), -math.cos(th)
        pen.capsule(img, 60 - 12 * du, -12 * dv, hu, hv, 5, handle)
        pen.capsule(img, hu - 16 * pu, hv - 16 * pv, hu + 16 * pu, hv + 16 * pv, 10, head)
        if st[1]:
            pen.star(img, 60 - L, 26, 24, 5, 8, spark)
            pen.circle(img, 60 - L, 26, 6, spark_core)
    return Scene(states, draw, static, {"raised_deg": up, "handle": L})


def scene_ball(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.2), (1 / 6, 0.25), gap=0.25)
    r = rng.uniform(16, 24)
    ball, stripe, floor, shadow = pal.obj, pal.obj2, pal.obj3, pal.dark
    for on, off in evs:
        n = int(0.5 * SAMPLE_RATE)
        t = _t(n)
        f = 70 + rng.uniform(80, 160) * np.exp(-t / 0.03)
        sig = np.sin(2 * math.pi * np.cumsum(f) / SAMPLE_RATE) * np.exp(-t / rng.uniform(0.06, 0.12))
        sig += 0.5 * _noise(rng, n, (None, 2500)) * np.exp(-t / 0.01)
        c.add(on, _norm(sig) * rng.uniform(0.6, 1.0))
        c.event(on, off)
    T = c.T
    h = np.zeros(T)
    squash = np.zeros(T, bool)
    # airborne arcs between contacts; virtual contacts before the first and after the last
    contacts = [(evs[0][0] - int(rng.integers(10, 25)),) * 2] + evs + \
        [(evs[-1][1] + int(rng.integers(10, 25)),) * 2]
    for (_, a), (b, _) in zip(contacts[:-1], contacts[1:]):
        height = min(110.0, 240.0 * ((b - a) / FPS) ** 2)
        for k in range(max(a, 0), min(b, T)):
            x = (k - a) / (b - a)
            h[k] = 4 * height * x * (1 - x)
    for on, off in evs:
        squash[on:off] = True
    u = np.linspace(rng.uniform(-45, 45), rng.uniform(-45, 45), T)
    states = np.stack([np.round(u), np.round(h), squash], 1).astype(np.int64)

    def static(img, pen):
        pen.rect(img, -75, 45, 75, 60, floor)

    def draw(img, pen, st):
        bu, hh, sq = st
        pen.ellipse(img, bu, 47, r * (1.1 - hh / 250), 3, shadow)
        if sq:
            pen.ellipse(img, bu, 45 - 0.7 * r, 1.3 * r, 0.7 * r, ball)
            pen.ellipse(img, bu, 45 - 0.7 * r, 1.3 * r, 0.18 * r, stripe)
        else:
            v = 45 - r - hh
            pen.circle(img, bu, v, r, ball)
            pen.ellipse(img, bu, v, r, 0.25 * r, stripe)
            pen.circle(img, bu - 0.4 * r, v - 0.45 * r, 0.22 * r, pal.light)
    return Scene(states, draw, static, {"radius": r})


def scene_bowling(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    approach = 8  # frames the ball rolls in before striking
    evs = c.place((0.5, 1.2), (0.25, 0.45), gap=0.1 + approach / FPS, lead=0.1 + approach / FPS)
    n_pins = int(rng.integers(3, 7))
    pins_u = [20 + 12 * j for j in range(n_pins)]
    pin, stripe, ball, lane = pal.light if pal.bg_dark else pal.fg(rng, sat=(0, .2)), \
        pal.fg(rng, hue=(0.95, 1.05), sat=(0.7, 1)), pal.obj, pal.obj3
    hit_u = pins_u[0] - 21
    scatter = []
    for on, off in evs:
        scatter.append([(rng.choice([-1, 1]) * rng.uniform(0.5, 1.4), rng.uniform(-15, 5),
                         rng.uniform(-30, -5)) for _ in range(n_pins)])
        n = int(0.8 * SAMPLE_RATE)
        t = _t(n)
        sig = 0.6 * _noise(rng, n, (None, 800)) * np.exp(-t / 0.25)
        for d in np.concatenate([[0.0], np.sort(rng.uniform(0, 0.15, n_pins - 1))]):
            k = int(d * SAMPLE_RATE)
            tt = t[:n - k]
            sig[k:] += (np.sin(2 * math.pi * rng.uniform(1500, 3500) * tt) * np.exp(-tt / 0.02)
                        + _noise(rng, n - k) * np.exp(-tt / 0.008))
        c.add(on, _norm(sig) * rng.uniform(0.7, 1.0))
        roll_n = int(approach / FPS * SAMPLE_RATE)
        roll = 0.12 * _norm(_noise(rng, roll_n, (None, 300))) * np.linspace(0.3, 1, roll_n)
        c.add(on - approach, roll)
        c.event(on, off, pins=n_pins)
    T = c.T
    ball_u = np.full(T, -9999)
    hit = np.full(T, -1)
    for i, (on, off) in enumerate(evs):
        for k in range(max(on - approach, 0), on):
            ball_u[k] = round(-105 + (hit_u + 105) * (k - on + approach) / approach)
        ball_u[on:off] = hit_u + 10
        hit[on:off] = i
    states = np.stack([ball_u, hit], 1).astype(np.int64)

    def static(img, pen):
        pen.rect(img, -115, 20, 115, 50, lane)
        pen.rect(img, -115, 20, 115, 23, pal.dark)

    def draw_pin(img, pen, u, ang=0.0, du=0.0, dv=0.0):
        # foot, shoulder, neck, head, stripe; tipped over about the foot, then thrown
        pts = _rotate([(u, 16), (u, -10), (u, -16), (u, -21), (u, -13)], ang, (u, 20))
        a, b, n_, hd, st = [(x + du, y + dv) for x, y in pts]
        pen.capsule(img, *a, *b, 6, pin)
        pen.capsule(img, *b, *n_, 3.5, pin)
        pen.circle(img, *hd, 5.5, pin)
        pen.circle(img, *st, 3.5, stripe)

    def draw(img, pen, st):
        bu, i = st
        for j, u in enumerate(pins_u):
            if i >= 0:
                draw_pin(img, pen, u, *scatter[i][j])
            else:
                draw_pin(img, pen, u)
        if bu > -9999:
            pen.circle(img, bu, 5, 15, ball)
            for du, dv in ((-4, -6), (3, -7), (0, -1)):
                pen.circle(img, bu + du, 5 + dv, 2, pal.dark)
    return Scene(states, draw, static, {"pins": n_pins})


def _gun(img, pen, col, col2, dark, du, dv, long=False):
    x0 = -70 if long else -55
    pen.rect(img, x0 + du, -16 + dv, 20 + du, -4 + dv, col)
    pen.rect(img, 0 + du, -20 + dv, 55 + du, 2 + dv, col)
    pen.poly(img, [(25 + du, 2 + dv), (50 + du, 2 + dv), (60 + du, 45 + dv), (36 + du, 45 + dv)], col2)
    pen.ring(img, 18 + du, 4 + dv, 6, 9, dark, 0, math.pi)
    if long:
        pen.poly(img, [(5 + du, 2 + dv), (20 + du, 2 + dv), (26 + du, 35 + dv), (11 + du, 35 + dv)], dark)
        pen.rect(img, 55 + du, -16 + dv, 75 + du, 0 + dv, col2)


def _bang(rng, n, tau):
    t = _t(n)
    return _norm(_noise(rng, n, (None, rng.uniform(3000, 6000))) * np.exp(-t / tau)
                 + 0.8 * np.sin(2 * math.pi * rng.uniform(55, 90) * t) * np.exp(-t / (tau * 1.7)))


def scene_gun(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.0), (1 / 6, 0.25), gap=0.15)
    outer, inner, smoke = pal.fg(rng, hue=(0.0, 0.12), sat=(0.8, 1.0)), pal.light, shade(pal.obj3, 0.3)
    for on, off in evs:
        c.add(on, _bang(rng, int(0.3 * SAMPLE_RATE), rng.uniform(0.025, 0.05)) * rng.uniform(0.7, 1.0))
        c.event(on, off)
    e = c.hold(evs, release=4)
    states = np.stack([np.round(6 * e), e >= 1.0, (e > 0) & (e < 1)], 1).astype(np.int64)

    def draw(img, pen, st):
        rec, flash, puff = st
        _gun(img, pen, pal.obj, pal.obj2, pal.dark, rec, -rec / 2)
        if flash:
            pen.star(img, -75, -10, 40, 12, 7, outer)
            pen.star(img, -70, -10, 20, 7, 5, inner, 0.3)
        if puff:
            pen.circle(img, -72, -14, 14, smoke)
    return Scene(states, draw, None, {})


def scene_rapid(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    period = int(rng.choice([2, 3]))  # a shot every 2 or 3 frames: 12 or 8 shots/s
    evs = [(on, on + max(2, (off - on) // period) * period)
           for on, off in c.place((0.5, 1.2), (0.4, 1.0), gap=0.2)]
    outer, inner = pal.fg(rng, hue=(0.0, 0.12), sat=(0.8, 1.0)), pal.light
    T = c.T
    flash = np.zeros(T, np.int64)
    for on, off in evs:
        shots = list(range(on, off, period))
        for k in shots:
            c.add(k, _bang(rng, int(0.12 * SAMPLE_RATE), rng.uniform(0.015, 0.025)) * rng.uniform(0.7, 1.0))
            flash[k] = 2
            flash[k + 1:min(k + period, T)] = 1
        c.event(on, off, shots=len(shots), shot_period_frames=period)
    states = np.stack([flash * 2, flash], 1)

    def draw(img, pen, st):
        shake, fl = st
        _gun(img, pen, pal.obj, pal.obj2, pal.dark, shake, -shake / 2, long=True)
        if fl:
            big = fl == 2
            pen.star(img, -90, -10, 38 if big else 22, 10, 6, outer, 0.5 * big)
            pen.star(img, -84, -10, 18 if big else 10, 5, 4, inner)
    return Scene(states, draw, None, {"shot_period_frames": period})


def _quantised_open(c: Clip, gain=0.8) -> np.ndarray:
    return levels(c.frame_env() / gain)


def scene_dog(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.5), (1 / 6, 0.35), gap=0.1)
    fur, ear, snout = pal.obj, pal.obj2, pal.obj3
    mouth, tongue = pal.dark, pal.fg(rng, hue=(0.93, 1.0), sat=(0.4, 0.7))
    f_base = rng.uniform(300, 700)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n)
        f = f_base * rng.uniform(0.9, 1.1) * (1.1 - 0.3 * t / t[-1])
        sig = _harmonics(f, (0.5, 1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05), rng) + 0.35 * _noise(rng, n, (500, 4000))
        env = _adsr(n, 0.006, 0.03, np.linspace(1, 0.55, n))
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f_base)
    o = _quantised_open(c)
    states = o[:, None]

    def static(img, pen):
        pen.ellipse(img, 15, 65, 45, 28, fur)

    def draw(img, pen, st):
        op = st[0] / 8
        dv = -6 * op
        pen.poly(img, [(15, -35 + dv), (42, -42 + dv), (40, -2 + dv)], ear)
        pen.ellipse(img, 0, dv, 48, 42, fur)
        pen.circle(img, -14, -12 + dv, 6, pal.dark)
        pen.circle(img, -16, -14 + dv, 2, pal.light)
        pen.ellipse(img, -42, 10 + dv, 32, 20, snout)
        pen.ellipse(img, -72, 4 + dv, 9, 7, pal.dark)
        pen.ellipse(img, -45, 26 + 6 * op + dv, 24, 2 + 15 * op, mouth)
        if op > 0.3:
            pen.ellipse(img, -45, 30 + 10 * op + dv, 10, 2 + 6 * op, tongue)
        pen.ellipse(img, -42, 28 + 16 * op + dv, 26, 8, snout)
    return Scene(states, draw, static, {"pitch_hz": f_base})


def scene_frog(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.0), (0.2, 0.55), gap=0.12)
    body, legs, belly = pal.obj, pal.obj2, pal.obj3
    sac = pal.fg(rng, hue=(0.1, 0.2), sat=(0.3, 0.6))
    f0, fm = rng.uniform(90, 200), rng.uniform(12, 30)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n)
        env = _adsr(n, 0.008, 0.03)
        am = (0.5 + 0.5 * np.cos(2 * math.pi * fm * t)) ** 2
        sig = _harmonics(np.full(n, f0 * rng.uniform(0.95, 1.05)), [1 / k for k in range(1, 13)], rng) * am
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f0, pulse_hz=fm)
    o = _quantised_open(c)

    def static(img, pen):
        for s in (-1, 1):
            pen.ellipse(img, 55 * s, 60, 18, 9, legs)
        pen.ellipse(img, 0, 20, 80, 48, body)
        pen.ellipse(img, 0, 38, 55, 26, belly)
        for s in (-1, 1):
            pen.circle(img, 32 * s, -22, 16, body)
            pen.circle(img, 32 * s, -24, 8, pal.dark)
            pen.circle(img, 32 * s - 3, -27, 2.5, pal.light)
        pen.capsule(img, -45, 12, 45, 12, 2, pal.dark)

    def draw(img, pen, st):
        op = st[0] / 8
        if op > 0:
            pen.ellipse(img, 0, 30 + 10 * op, 8 + 40 * op, 5 + 28 * op, sac)
    return Scene(o[:, None], draw, static, {"pitch_hz": f0, "pulse_hz": fm})


def scene_lion(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 0.9), (0.5, 1.0), gap=0.25)
    face, mane, muzzle, teeth = pal.obj, pal.obj2, pal.obj3, pal.light
    f_base = rng.uniform(80, 140)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n) / ((off - on) / FPS)
        f = f_base * (1 + 0.15 * np.sin(math.pi * t)) * (1 + 0.01 * np.sin(2 * math.pi * 25 * _t(n)))
        sig = _norm(_harmonics(f, [k ** -0.8 for k in range(1, 16)], rng)) + 0.5 * _noise(rng, n, (None, 2000))
        shape = np.interp(t, [0, 0.3, 1], [0.6, 1.0, 0.5])
        env = _adsr(n, 0.02, 0.08, shape)
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f_base)
    o = _quantised_open(c)

    def draw(img, pen, st):
        op = st[0] / 8
        dv = -8 * op
        pen.star(img, 0, dv, 92, 74, 16, mane)
        for s in (-1, 1):
            pen.circle(img, 45 * s, -55 + dv, 15, face)
        pen.ellipse(img, 0, 5 + dv, 56, 62, face)
        pen.ellipse(img, 0, 32 + dv, 30, 20, muzzle)
        for s in (-1, 1):
            pen.circle(img, 22 * s, -15 + dv, 6, pal.dark)
        pen.poly(img, [(-12, 14 + dv), (12, 14 + dv), (0, 26 + dv)], pal.dark)
        pen.ellipse(img, 0, 44 + 8 * op + dv, 12 + 14 * op, 3 + 20 * op, pal.dark)
        if op > 0.4:
            for s in (-1, 1):
                y = 44 + 8 * op + dv - (3 + 20 * op) + 2
                pen.poly(img, [(8 * s - 4, y), (8 * s + 4, y), (8 * s, y + 10)], teeth)
    return Scene(o[:, None], draw, None, {"pitch_hz": f_base})


def scene_rooster(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 0.9), (0.6, 1.0), gap=0.25)
    body, wing, tail = pal.obj, pal.obj2, pal.obj3
    red = pal.fg(rng, hue=(0.97, 1.03), sat=(0.7, 1.0))
    beak = pal.fg(rng, hue=(0.1, 0.15), sat=(0.6, 0.9))
    f_base = rng.uniform(450, 750)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        # cock-a-doodle-doo: four syllables with their own pitch, short dips between
        bounds = np.cumsum([0, 0.15, 0.1, 0.25, 0.5]) * n
        f = np.zeros(n)
        shape = np.ones(n)
        for j, (a, b) in enumerate(zip(bounds[:-1].astype(int), bounds[1:].astype(int))):
            rel = (1.0, 1.1, 1.25, 1.15)[j]
            f[a:b] = f_base * np.linspace(rel, rel * (0.8 if j == 3 else 1.0), b - a)
            d = min(int(0.02 * SAMPLE_RATE), b - a)
            if j:
                shape[a:a + d] = np.linspace(0.3, 1, d)
        sig = _harmonics(f, (1, 0.7, 0.5, 0.3, 0.15, 0.1), rng) + 0.1 * _noise(rng, n, (1000, 5000))
        env = _adsr(n, 0.012, 0.06, shape)
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f_base)
    o = _quantised_open(c)

    def static(img, pen):
        for tip, col in (((90, -35), tail), ((95, -5), wing), ((85, 25), tail)):
            pen.poly(img, [(35, 25), tip, (45, 45)], col)
        pen.capsule(img, 10, 75, 5, 92, 3, beak)
        pen.capsule(img, 30, 75, 35, 92, 3, beak)
        pen.ellipse(img, 20, 40, 55, 40, body)
        pen.ellipse(img, 30, 40, 35, 22, wing, 0.3)

    def draw(img, pen, st):
        op = st[0] / 8
        dv = -20 * op
        pen.capsule(img, 0, 20, -30, -40 + dv, 17, body)
        for du in (-10, 0, 10):
            pen.circle(img, -30 + du, -62 + dv + abs(du) * 0.4, 8, red)
        pen.circle(img, -30, -40 + dv, 22, body)
        pen.ellipse(img, -44, -20 + dv, 6, 10, red)
        pen.circle(img, -35, -45 + dv, 4, pal.dark)
        a = math.radians(35) * op
        bx, by = -48, -40 + dv
        pen.poly(img, _rotate([(bx, by - 8), (bx, by + 1), (bx - 30, by - 1)], a, (bx, by)), beak)
        pen.poly(img, _rotate([(bx, by + 1), (bx, by + 9), (bx - 26, by + 3)], -a, (bx, by)), beak)
    return Scene(o[:, None], draw, static, {"pitch_hz": f_base})


def scene_baby(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 1.5), (0.4, 0.9), gap=0.15)
    skin = pal.fg(rng, hue=(0.04, 0.1), sat=(0.3, 0.6))
    clothes, hair = pal.obj2, pal.obj3
    cheek = pal.fg(rng, hue=(0.95, 1.0), sat=(0.4, 0.7))
    f_base = rng.uniform(350, 550)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n)
        rel = t / t[-1]
        f = f_base * np.interp(rel, [0, 0.3, 1], [1.0, 1.15, 0.9]) * (1 + 0.03 * np.sin(2 * math.pi * 6 * t))
        amps = [1.0 / (1 + abs(k * f_base - 1000) / 400) + 0.6 / (1 + abs(k * f_base - 2500) / 500)
                for k in range(1, 11)]
        sig = _harmonics(f, amps, rng) + 0.05 * _noise(rng, n, (2000, 6000))
        env = _adsr(n, 0.02, 0.06)
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f_base)
    o = _quantised_open(c)

    def static(img, pen):
        pen.ellipse(img, 0, 78, 46, 18, clothes)
        for s in (-1, 1):
            pen.circle(img, 58 * s, 0, 12, skin)

    def draw(img, pen, st):
        op = st[0] / 8
        pen.ellipse(img, 0, 0, 58, 64, skin)
        pen.ellipse(img, 0, -58, 26, 10, hair)
        crying = op > 0.3
        for s in (-1, 1):
            if crying:
                pen.capsule(img, 29 * s, -10, 13 * s, -12, 2.5, pal.dark)
                pen.capsule(img, 30 * s, -28, 12 * s, -22, 2.5, pal.dark)
                pen.circle(img, 32 * s, 10, 9, cheek)
            else:
                pen.circle(img, 21 * s, -12, 6, pal.dark)
                pen.capsule(img, 29 * s, -26, 13 * s, -26, 2, pal.dark)
        pen.ellipse(img, 0, 30, 10 + 12 * op, 3 + 18 * op, pal.dark)
    return Scene(o[:, None], draw, static, {"pitch_hz": f_base})


SCALE = (0, 2, 4, 5, 7, 9, 11, 12)


def scene_bowed(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.0), (0.3, 0.9), gap=0.1)
    cello = bool(rng.random() < 0.5)
    f_base = rng.uniform(110, 220) if cello else rng.uniform(330, 600)
    wood, dark_wood, bow = pal.obj, pal.obj2, pal.obj3
    string, vib = shade(pal.obj3, 0.5), pal.fg(rng, hue=(0.1, 0.17), sat=(0.7, 1.0))
    T = c.T
    bx = np.zeros(T)
    on_string = np.zeros(T, bool)
    d = 1.0
    pos = -40.0
    for i, (on, off) in enumerate(evs):
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n)
        f = f_base * 2 ** (SCALE[int(rng.integers(len(SCALE)))] / 12)
        freq = f * (1 + 0.008 * np.sin(2 * math.pi * 5.5 * t) * np.clip((t - 0.15) / 0.1, 0, 1))
        sig = _harmonics(freq, [1 / k for k in range(1, 13)], rng) + 0.05 * _noise(rng, n, (1000, 6000))
        env = _adsr(n, 0.03, 0.05)
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=f, direction=int(d))
        start, end = pos, -pos
        bx[on:off] = start + (end - start) * (np.arange(off - on) + 1) / (off - on)
        nxt = evs[i + 1][0] if i + 1 < len(evs) else T
        bx[off:nxt] = end
        if i == 0:
            bx[:on] = start
        on_string[on:off] = True
        pos, d = end, -d
    states = np.stack([np.round(bx), on_string], 1).astype(np.int64)

    def static(img, pen):
        pen.ellipse(img, 0, 40, 48, 46, wood)
        pen.ellipse(img, 0, -12, 38, 34, wood)
        for s in (-1, 1):
            pen.capsule(img, 18 * s, 15, 16 * s, 40, 2, pal.dark)
        pen.rect(img, -7, -100, 7, 25, dark_wood)
        pen.circle(img, 0, -104, 8, dark_wood)
        pen.poly(img, [(-10, 55), (10, 55), (0, 78)], pal.dark)
        pen.rect(img, -14, 30, 14, 34, shade(wood, 0.4))

    def draw(img, pen, st):
        b, active = st
        for su in (-4.5, -1.5, 1.5, 4.5):
            pen.capsule(img, su, -100, su, 55, 1.8 if active else 0.8, vib if active else string)
        pen.capsule(img, b - 60, 18, b + 60, 10, 2.2, bow)
        pen.capsule(img, b - 60, 22, b + 60, 14, 1.5, string)
        pen.rect(img, b + 48, 8, b + 58, 20, pal.dark)
    return Scene(states, draw, static, {"variant": "cello" if cello else "violin", "pitch_hz": f_base})


def scene_knife(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((1.0, 3.0), (0.2, 0.45), gap=0.08)
    rod, grip, blade, handle = pal.obj3, pal.obj2, pal.obj, pal.obj2
    glint = pal.fg(rng, hue=(0.1, 0.17), sat=(0.5, 0.9))
    fc = rng.uniform(2500, 4500)
    T = c.T
    tau = np.zeros(T)
    active = np.zeros(T, bool)
    pos, d = 0.1, 1
    for i, (on, off) in enumerate(evs):
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = _t(n)
        rel = t / t[-1]
        f = fc * rng.uniform(0.9, 1.1) * (1 + 0.1 * rel * d)
        sig = _noise(rng, n, (fc / 1.4, fc * 1.4)) + 0.6 * _harmonics(f, (1, 0, 0.4), rng)
        env = _adsr(n, 0.01, 0.03, 0.7 + 0.3 * rel)
        c.add(on, _norm(sig) * env, env)
        c.event(on, off, pitch_hz=fc, direction=d)
        end = 1.0 - pos
        tau[on:off] = pos + (end - pos) * (np.arange(off - on) + 1) / (off - on)
        nxt = evs[i + 1][0] if i + 1 < len(evs) else T
        tau[off:nxt] = end
        if i == 0:
            tau[:on] = pos
        active[on:off] = True
        pos, d = end, -d
    states = np.stack([np.round(tau * 100), active], 1).astype(np.int64)
    a, b = (-60.0, 40.0), (60.0, -40.0)

    def static(img, pen):
        pen.capsule(img, -85, 57, -64, 43, 10, grip)
        pen.capsule(img, *a, *b, 5, rod)

    def draw(img, pen, st):
        k, act = st
        cu, cv = a[0] + (b[0] - a[0]) * k / 100, a[1] + (b[1] - a[1]) * k / 100
        pen.poly(img, [(cu - 30, cv), (cu + 40, cv), (cu + 34, cv - 12), (cu - 30, cv - 16)], blade)
        pen.capsule(img, cu - 58, cv - 8, cu - 32, cv - 8, 8, handle)
        if act:
            pen.star(img, cu, cv, 13, 3, 4, glint, 0.4)
    return Scene(states, draw, static, {"pitch_hz": fc})


def _brass(rng, n, f_from, f_to, bright):
    t = _t(n)
    glide = np.clip(t / 0.03, 0, 1)
    f = (f_from + (f_to - f_from) * glide) * (1 + 0.005 * np.sin(2 * math.pi * 5 * t))
    return _harmonics(f, [k ** -bright for k in range(1, 11)], rng)


def _arcs(img, pen, u, v, phase_idx, color):
    """Two sound-wave arcs travelling out of a bell while a note sounds."""
    for j in range(2):
        r = 12 + 26 * (((phase_idx / 12) + 0.5 * j) % 1.0)
        pen.ring(img, u, v, r, r + 5, color, math.pi - 0.6, math.pi + 0.6)


def _note_states(c: Clip, evs):
    o = _quantised_open(c)
    arc = np.full(c.T, -1)
    for on, off in evs:
        arc[on:off] = (np.arange(off - on) % 12)
    return o, arc


def scene_trumpet(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 1.4), (0.4, 1.0), gap=0.15)
    brass, valves, rim = pal.fg(rng, hue=(0.09, 0.15), sat=(0.5, 0.9)), pal.obj2, pal.obj3
    arc_col = pal.obj
    f_base = rng.uniform(230, 470)
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        f = f_base * 2 ** (SCALE[int(rng.integers(len(SCALE)))] / 12)
        env = _adsr(n, 0.025, 0.07, np.linspace(0.85, 1, n))
        c.add(on, _norm(_brass(rng, n, f, f, rng.uniform(0.7, 1.2))) * env, env)
        c.event(on, off, pitch_hz=f)
    o, arc = _note_states(c, evs)

    def draw(img, pen, st):
        op, ph = st[0] / 8, st[1]
        dv = -5 * op
        fl = 5 * op
        pen.rect(img, -40, -5 + dv, 85, 3 + dv, brass)
        pen.capsule(img, 85, -1 + dv, 100, -1 + dv, 4, brass)
        pen.ellipse(img, 100, -1 + dv, 4, 7, brass)
        pen.poly(img, [(-40, -7 + dv), (-40, 5 + dv), (-80, 30 + fl + dv), (-80, -32 - fl + dv)], brass)
        pen.ellipse(img, -80, -1 + dv, 5, 31 + fl, rim)
        for j in range(3):
            pen.rect(img, 14 * j, -32 + dv, 9 + 14 * j, -5 + dv, valves)
            pen.ellipse(img, 4.5 + 14 * j, -33 + dv, 6, 3, rim)
        pen.rect(img, -20, 12 + dv, 55, 19 + dv, brass)
        pen.rect(img, -20, 3 + dv, -14, 19 + dv, brass)
        pen.rect(img, 49, 3 + dv, 55, 19 + dv, brass)
        if ph >= 0:
            _arcs(img, pen, -80, -1 + dv, ph, arc_col)
    return Scene(np.stack([o, arc], 1), draw, None, {"pitch_hz": f_base})


def scene_trombone(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 1.4), (0.4, 1.0), gap=0.15)
    brass, slide_col, rim = pal.fg(rng, hue=(0.09, 0.15), sat=(0.5, 0.9)), pal.obj2, pal.obj3
    arc_col = pal.obj
    f_base = rng.uniform(130, 260)
    T = c.T
    L = np.zeros(T)
    prev_pos, prev_f = int(rng.integers(7)), None
    L[:] = 15 * prev_pos
    for i, (on, off) in enumerate(evs):
        p = int(rng.integers(7))
        f = f_base * 2 ** (-p / 12)
        n = int((off - on) / FPS * SAMPLE_RATE)
        env = _adsr(n, 0.025, 0.07, np.linspace(0.85, 1, n))
        c.add(on, _norm(_brass(rng, n, prev_f or f, f, rng.uniform(0.8, 1.3))) * env, env)
        c.event(on, off, pitch_hz=f, slide_position=p)
        # the slide moves with the note's start: most of the way in the onset frame
        L[on] = 15 * (prev_pos + 0.7 * (p - prev_pos))
        L[on + 1:] = 15 * p
        prev_pos, prev_f = p, f
    o, arc = _note_states(c, evs)
    states = np.stack([np.round(L), o, arc], 1).astype(np.int64)

    def draw(img, pen, st):
        sl, op, ph = st[0], st[1] / 8, st[2]
        fl = 5 * op
        pen.poly(img, [(-45, -5), (-45, 5), (-85, 28 + fl), (-85, -28 - fl)], brass)
        pen.ellipse(img, -85, 0, 5, 28 + fl, rim)
        pen.rect(img, -45, -4, 60, 4, brass)
        pen.rect(img, 55, -4, 62, 26, brass)
        pen.rect(img, 20, 12, 62, 16, brass)
        pen.rect(img, 20, 22, 62, 26, brass)
        x = -10 - sl
        pen.rect(img, x, 11, 22, 17, slide_col)
        pen.rect(img, x, 21, 22, 27, slide_col)
        pen.rect(img, x - 6, 11, x, 27, slide_col)
        pen.capsule(img, 62, 14, 76, 14, 3, rim)
        if ph >= 0:
            _arcs(img, pen, -85, 0, ph, arc_col)
    return Scene(states, draw, None, {"pitch_hz": f_base})


def scene_toilet(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    T = c.T
    secs = T / FPS
    dur = rng.uniform(1.5, min(3.5, secs - 0.9))
    on = int(round(rng.uniform(0.3, secs - dur - 0.3) * FPS))
    off = on + int(round(dur * FPS))
    n = off - on
    ns = int(n / FPS * SAMPLE_RATE)
    t = _t(ns)
    rel = t / t[-1]
    shape = np.interp(rel, [0, 0.6, 1], [1, 1, 0.05])
    env = _adsr(ns, 0.12, 0.05, shape)
    gurgle = 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(4, 8) * t + rng.uniform(0, 6))
    sig = _noise(rng, ns, (None, 1500)) + 0.7 * _noise(rng, ns, (300, 800)) * gurgle
    sig = _norm(sig) * env
    click = np.zeros(ns)
    k = int(0.03 * SAMPLE_RATE)
    click[:k] = _noise(rng, k) * np.exp(-_t(k) / 0.006) * 0.8
    c.add(on, sig + click, np.maximum(env, np.abs(click) > 0.05))
    c.event(on, off)
    trickle_n = c.n_samples
    c.track += 0.03 * _noise(rng, trickle_n, (200, 2000))  # the tank's faint trickle
    fe = c.frame_env()
    lever = c.hold([(on, min(on + 6, T))])
    omega = rng.uniform(2.5, 5.0)  # rad/s at full flush: < 60 degrees per 1/6 s for 3 arms
    phase = np.cumsum(omega * fe / FPS)
    states = np.stack([levels(lever, 4), levels(fe, 10),
                       np.round(phase / (2 * math.pi) * 96) % 96], 1).astype(np.int64)
    ceramic, ceramic2 = pal.fg(rng, sat=(0.0, 0.15)), pal.obj3
    water = pick_color(rng, (0.3, 0.45), hue=(0.5, 0.62), sat=(0.5, 0.9))
    arms_col = shade(water, 0.55)
    twist = rng.uniform(4, 7)
    cache = {}

    def static(img, pen):
        pen.poly(img, [(-30, 50), (30, 50), (40, 92), (-40, 92)], ceramic)
        pen.rect(img, -12, -50, 12, -30, ceramic)
        pen.ellipse(img, 0, 10, 84, 52, ceramic)
        pen.ellipse(img, 0, 2, 70, 36, ceramic2)
        pen.ellipse(img, 0, 6, 60, 28, water)
        pen.rect(img, -60, -104, 60, -50, ceramic)
        pen.rect(img, -64, -114, 64, -104, ceramic2)

    def draw(img, pen, st):
        lv, strength, ph = st
        pen.capsule(img, -48, -92, -28, -92 + 14 * lv / 4, 4, pal.dark)
        if strength == 0:
            return
        if "base" not in cache:  # the spiral's angle map, once per clip
            x, y = pen.xy(0, 6)
            rx, ry = 60 * pen.s, 28 * pen.s
            win = _window(img, x - rx, y - ry, x + rx, y + ry)
            xs, ys = _grid(win)
            ex, ey = (xs - x) / rx, (ys - y) / ry
            rr = np.sqrt(ex * ex + ey * ey)
            cache.update(win=win, inside=rr <= 0.97, base=3 * np.arctan2(ey, ex) + twist * rr)
            pen._track(win)
        thr = 1.0 - 0.08 * strength
        mask = cache["inside"] & (np.cos(cache["base"] - ph / 96 * 2 * math.pi * 3) > thr)
        _paint(img, cache["win"], mask, arms_col)
    return Scene(states, draw, static, {"swirl_rad_s": omega, "twist": twist})


@dataclass(frozen=True)
class SynthClass:
    folder: str
    kind: str                  # impact | burst | vocal | stroke | sustained | continuous
    avsync15: str              # the AVSync15 class it echoes
    build: Callable[[Clip, Palette], Scene]
    extent: tuple              # (u0, v0, u1, v1) local box that holds everything drawn
    gated: bool = True         # the object moves only during events

    @property
    def text(self) -> str:
        return self.folder.replace("_", " ")

    @property
    def eventful(self) -> bool:
        return self.kind != "continuous"


CLASSES: dict[str, SynthClass] = {c.folder: c for c in (
    SynthClass("hammer_strike", "impact", "hammering", scene_hammer, (-73, -98, 81, 60)),
    SynthClass("ball_bounce", "impact", "(none: extra impact class)", scene_ball, (-78, -115, 78, 62),
               gated=False),
    SynthClass("bowling_pins", "impact", "striking_bowling", scene_bowling, (-124, -54, 131, 52),
               gated=False),
    SynthClass("gun_bang", "burst", "cap_gun_shooting", scene_gun, (-119, -53, 70, 49)),
    SynthClass("rapid_fire", "burst", "machine_gun_shooting", scene_rapid, (-132, -51, 82, 49)),
    SynthClass("dog_bark", "vocal", "dog_barking", scene_dog, (-85, -52, 64, 97)),
    SynthClass("frog_croak", "vocal", "frog_croaking", scene_frog, (-84, -41, 84, 77)),
    SynthClass("lion_roar", "vocal", "lions_roaring", scene_lion, (-96, -103, 96, 96)),
    SynthClass("rooster_crow", "vocal", "chicken_crowing", scene_rooster, (-82, -93, 99, 99)),
    SynthClass("baby_cry", "vocal", "baby_babbling_crying", scene_baby, (-74, -71, 74, 100)),
    SynthClass("bowed_string", "stroke", "playing_cello / playing_violin__fiddle", scene_bowed,
               (-106, -115, 106, 90)),
    SynthClass("knife_sharpening", "stroke", "sharpen_knife", scene_knife, (-118, -52, 92, 71)),
    SynthClass("trumpet_bell", "sustained", "playing_trumpet", scene_trumpet, (-125, -50, 108, 40)),
    SynthClass("trombone_slide", "sustained", "playing_trombone", scene_trombone, (-130, -46, 83, 45)),
    SynthClass("toilet_flush", "continuous", "toilet_flushing", scene_toilet, (-88, -116, 88, 96)),
)}
CLASS_TEXTS = {k: c.text for k, c in CLASSES.items()}


# ==========================================================================
# One clip
# ==========================================================================
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
        fill_polygon(img, _rotate([(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)], ang, (x, y)),
                     color)
    elif rng_kind == 2:
        fill_polygon(img, _rotate([(x, y - r), (x + r, y + 0.8 * r), (x - r, y + 0.8 * r)], ang, (x, y)), color)
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
    audio = _norm(clip.track) * 10 ** (gain_db / 20) + bgn
    audio = np.clip(audio, -1, 1).astype(np.float32)

    record = {
        "generator": GENERATOR, "version": VERSION, "seed": int(seed), "class": folder, "text": cls.text,
        "index": int(index), "kind": cls.kind, "avsync15_analogue": cls.avsync15,
        "duration": round(T / FPS, 6), "num_frames": T, "fps": FPS, "size": [SIZE, SIZE],
        "sample_rate": SAMPLE_RATE, "num_samples": int(clip.n_samples),
        "events": clip.events,
        "params": {k: _jsonable(v) for k, v in {
            "background": bg_kind, "bg_dark": pal.bg_dark, "object_color": pal.obj.tolist(),
            "scale": pen.s, "flipped": pen.f < 0, "anchor": [pen.cx, pen.cy],
            "object_box": [round(b, 1) for b in box], "drawn_box": _drawn_box(pen), "distractors": distractors,
            "moving_distractor": mover is not None, "gain_db": gain_db, "noise_rms": noise_rms,
            **(scene.params or {})}.items()},
    }
    return frames, audio, record


# ==========================================================================
# Building a root
# ==========================================================================
def _stem(folder: str, index: int) -> str:
    return f"{folder}_{index:04d}"


def split_sizes(videos_per_class: int) -> tuple[int, int]:
    """(train, test) per class: 10% test, rounded up, at least 1 of each.

    100 -> 90/10, 20 -> 18/2, 15 -> 13/2, 2 -> 1/1. The last indices of
    each class form the test split.
    """
    n = int(videos_per_class)
    if n < 2:
        raise ValueError(f"synth: --videos-per-class must be at least 2 (one train and one test "
                         f"video per class), got {n}")
    test = min(n - 1, max(1, math.ceil(round(n * TEST_FRACTION, 9))))
    return n - test, test


def _video_rel(folder, index):
    return f"{folder}/{_stem(folder, index)}.mp4"


def _done(root: Path, folder: str, index: int, seed: int) -> bool:
    """A video is complete when its sidecar (written after it) matches it."""
    side = root / "events" / folder / f"{_stem(folder, index)}.json"
    video = root / "videos" / _video_rel(folder, index)
    try:
        rec = json.loads(side.read_text())
        return (rec.get("version") == VERSION and rec.get("seed") == seed and rec.get("class") == folder
                and rec.get("index") == index and rec.get("video_bytes") == video.stat().st_size)
    except (OSError, ValueError):
        return False


def build_video(job) -> str:
    """Render, encode and record one clip (runs in a worker process)."""
    from ..avio import write_clip
    from ..fsutil import atomic_write_text
    root, folder, index, seed, split = job
    root = Path(root)
    frames, audio, record = render_clip(folder, seed, index)
    rel = _video_rel(folder, index)
    video = write_clip(root / "videos" / rel, frames, FPS, audio=audio, sample_rate=SAMPLE_RATE,
                       preset=ENCODER_PRESET)
    record.update(split=split, video=f"videos/{rel}", video_bytes=video.stat().st_size)
    atomic_write_text(root / "events" / folder / f"{_stem(folder, index)}.json", json.dumps(record, indent=1))
    return rel


def _init_worker():
    # one thread per worker: the parallelism is across clips
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:
        pass


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _read_json(path: Path) -> dict | None:
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("generator") == GENERATOR else None


def read_marker(root) -> dict | None:
    """The build record of a complete build, or None."""
    return _read_json(Path(root) / MARKER)


def _remove_leftovers(root: Path, plan: set[tuple[str, int]]) -> int:
    """Delete temp files of interrupted writes, and generated clips the plan no longer lists."""
    from ..fsutil import is_temp_file
    removed = 0
    for sub, ext in (("videos", ".mp4"), ("events", ".json")):
        for folder in CLASSES:
            d = root / sub / folder
            if not d.is_dir():
                continue
            for f in d.iterdir():
                stale = False
                if is_temp_file(f):
                    stale = True
                elif f.suffix == ext and f.stem.startswith(folder + "_") and f.stem[len(folder) + 1:].isdigit():
                    stale = (folder, int(f.stem[len(folder) + 1:])) not in plan
                if stale and f.is_file():
                    f.unlink()
                    removed += 1
    for f in root.glob(".*.tmp-*"):
        f.unlink()
        removed += 1
    return removed


@contextmanager
def _build_lock(root: Path):
    """An exclusive advisory lock on <root>/.synth.lock (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(root / ".synth.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_synth(root, seed: int = 0, videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS, classes=None,
               workers: int | None = None, progress: bool = True) -> Path:
    """Build (or finish) the synthetic dataset under ``root``; returns the root.

    Videos already complete for this seed and generator version are kept;
    ``synth.json`` is removed first and written last, so only a finished
    build is accepted by the reader.
    """
    root = Path(root).expanduser()
    classes = list(CLASSES) if classes is None else list(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes:
        raise DatasetError(f"synth: unknown class(es) {unknown or '(none given)'}; "
                           f"choose from: {', '.join(CLASSES)}")
    split_sizes(videos_per_class)  # validates the count before anything is written
    seed = int(seed)
    config = {"generator": GENERATOR, "version": VERSION, "seed": seed,
              "videos_per_class": int(videos_per_class), "classes": classes}
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):  # several processes (e.g. torchrun ranks) may ask for the same root
        marker = read_marker(root)
        if marker and all(marker.get(k) == v for k, v in config.items()) and \
                all(_done(root, f, i, seed) for f in classes for i in range(videos_per_class)):
            return root
        return _build(root, config, classes, videos_per_class, seed, workers, progress)


def _build(root: Path, config: dict, classes, videos_per_class: int, seed: int, workers, progress) -> Path:
    from ..fsutil import atomic_write_text
    n_train, n_test = split_sizes(videos_per_class)
    (root / MARKER).unlink(missing_ok=True)  # from now on the root reads as incomplete
    atomic_write_text(root / PLAN, json.dumps(config, indent=1))

    plan = {(f, i) for f in classes for i in range(videos_per_class)}
    _remove_leftovers(root, plan)
    jobs = [(str(root), f, i, seed, "train" if i < n_train else "test")
            for i in range(videos_per_class) for f in classes]  # interleaved: even progress
    todo = [j for j in jobs if not _done(root, j[1], j[2], seed)]
    workers = _default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, max(1, len(todo)))
    t0 = time.perf_counter()
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="synth videos", unit="video",
               disable=not progress)
    try:
        if workers == 1:
            for j in todo:
                build_video(j)
                bar.update(1)
        else:
            import multiprocessing as mp
            # spawn: safe whatever threads (torch, OpenMP) the parent already started
            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(build_video, todo, chunksize=2):
                    bar.update(1)
    finally:
        bar.close()

    for split, rng_ in (("train", range(n_train)), ("test", range(n_train, videos_per_class))):
        lines = [_video_rel(f, i) for f in classes for i in rng_]
        atomic_write_text(root / f"{split}.txt", "\n".join(lines) + "\n")
    record = dict(config, class_texts={f: CLASSES[f].text for f in classes},
                  counts={"train": n_train * len(classes), "test": n_test * len(classes)},
                  per_class={"train": n_train, "test": n_test},
                  fps=FPS, size=[SIZE, SIZE], sample_rate=SAMPLE_RATE, encoder_preset=ENCODER_PRESET,
                  built_now=len(todo), build_seconds=round(time.perf_counter() - t0, 2))
    atomic_write_text(root / MARKER, json.dumps(record, indent=1))
    (root / PLAN).unlink(missing_ok=True)
    return root


def default_root() -> Path:
    """$ASVA_SYNTH_ROOT, else ``datasets/synth`` under $ASVA_BENCH_HOME (default ~/.cache/asva-bench)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    from ..fsutil import home
    return home() / "datasets" / "synth"


def ensure_synth(root=None, seed: int = 0, videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS, classes=None,
                 workers: int | None = None, progress: bool = True) -> Path:
    """The root of a complete synth build, building it first when it is missing.

    Used by the runner for ``--dataset synth``. A complete build of the
    current generator version is accepted as it is, whatever its seed and
    size. An interrupted build is resumed with the settings it was started
    with (``synth.building.json``); an outdated one is rebuilt with its
    recorded settings; an empty root gets the given (default) settings.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    marker = read_marker(root)
    if marker and marker.get("version") == VERSION:
        return root
    recorded = marker or _read_json(root / PLAN)
    if recorded:
        seed = int(recorded.get("seed", seed))
        videos_per_class = int(recorded.get("videos_per_class", videos_per_class))
        classes = recorded.get("classes", classes)
    if progress:
        print(f"synth: building the synthetic dataset in {root} (seed {seed}, "
              f"{videos_per_class} videos per class)", file=sys.stderr)
    return make_synth(root, seed=seed, videos_per_class=videos_per_class, classes=classes,
                      workers=workers, progress=progress)


# ==========================================================================
# Dataset spec
# ==========================================================================
def read_synth(root: Path, spec: DatasetSpec) -> Manifest:
    """AVSync15's split-file layout, accepted only once ``synth.json`` marks the build complete."""
    root = Path(root)
    if read_marker(root) is None:
        raise DatasetError(
            f"dataset '{spec.name}': {root} holds no complete build ({MARKER} is missing: the build "
            f"was interrupted or never run). Run `asva-bench datasets make synth --root {root}` "
            f"(it resumes and keeps finished videos).")
    return read_split_files(root, spec)


class SynthSpec(DatasetSpec):
    """``synth`` builds itself: loading from the default root builds the set there first."""

    def resolve_default(self) -> Path:
        """$ASVA_SYNTH_ROOT or $ASVA_BENCH_HOME/datasets/synth (need not exist yet)."""
        return default_root()

    def resolve_root(self, root=None) -> Path:
        # the default follows $ASVA_BENCH_HOME at call time, not at import
        return super().resolve_root(root if root is not None or os.environ.get(self.env_var) else default_root())

    def expectations(self, root) -> tuple[dict, int | None]:
        """A synth build is checked against what its own build record says it made."""
        marker = read_marker(root) or {}
        counts = marker.get("counts")
        if not counts:
            return super().expectations(root)
        totals = {split: sum(per_class.values()) if isinstance(per_class, dict) else per_class
                  for split, per_class in counts.items()}
        return totals, len(marker.get("classes", [])) or self.expected_classes

    def load(self, root=None) -> Manifest:
        if root is None:
            ensure_synth()  # builds the default root when it holds no complete build
        return super().load(root)


SYNTH = SynthSpec(
    name="synth",
    description="Synthetic synchronized clips: 15 procedural classes echoing AVSync15, "
                "1350 train / 150 test by default (built on demand)",
    reader=read_synth,
    layout=("  <root>/train.txt, <root>/test.txt   one '<class_folder>/<file>.mp4' per line\n"
            "  <root>/videos/<class_folder>/<file>.mp4\n"
            "  <root>/events/<class_folder>/<file>.json   event times per video\n"
            "  <root>/synth.json                          build record (present = complete)"),
    expected_counts={"train": 1350, "test": 150},
    expected_classes=15,
    class_texts=CLASS_TEXTS,
    protocol=PAPER,
    env_var=ENV_VAR,
    default_root=DEFAULT_ROOT,
)


# ==========================================================================
# Command line (wired as `asva-bench datasets make synth`)
# ==========================================================================
def add_make_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", default=None,
                        help=f"output folder (default: ${ENV_VAR} or {DEFAULT_ROOT})")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--videos-per-class", type=int, default=DEFAULT_VIDEOS_PER_CLASS,
                        help="videos per class, 10%% of them (at least 1) in test (default 100)")
    parser.add_argument("--classes", default=None,
                        help=f"comma-separated subset of: {', '.join(CLASSES)}")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the build")
    return parser


def make_from_args(args) -> dict:
    """Run a build from parsed ``add_make_arguments`` options; prints a summary, returns it."""
    root = Path(args.root).expanduser() if args.root else default_root()
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    t0 = time.perf_counter()
    make_synth(root, seed=args.seed, videos_per_class=args.videos_per_class, classes=classes,
               workers=args.workers, progress=not args.no_progress)
    summary = dict(read_marker(root) or {}, root=str(root), seconds=round(time.perf_counter() - t0, 2))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"synth: {summary['counts']['train']} train + {summary['counts']['test']} test videos "
              f"in {root} ({summary['built_now']} built now, {summary['seconds']:.1f} s)")
    return summary


def main(argv=None) -> int:
    parser = add_make_arguments(argparse.ArgumentParser(
        prog="python -m asva_bench.datasets.synth", description="Build the synthetic dataset 'synth'."))
    args = parser.parse_args(argv)
    try:
        make_from_args(args)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
