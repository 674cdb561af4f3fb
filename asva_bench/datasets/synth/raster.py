"""Rasterisation: convex shapes filled on their own bounding box, and the pen objects draw with.

Shapes are rasterised with numpy on their bounding boxes only; pixel centres
sit at integer coordinates.
"""

from __future__ import annotations

import math

import numpy as np


def window(img, x0, y0, x1, y1):
    """Pixel window [ya:yb, xa:xb] covering the box, clipped; None when off canvas."""
    H, W = img.shape[0], img.shape[1]
    xa, ya = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    xb, yb = min(int(math.ceil(x1)) + 1, W), min(int(math.ceil(y1)) + 1, H)
    if xa >= xb or ya >= yb:
        return None
    return ya, yb, xa, xb


def grid(win):
    ya, yb, xa, xb = win
    return np.arange(xa, xb, dtype=np.float32)[None, :], np.arange(ya, yb, dtype=np.float32)[:, None]


def paint(img, win, mask, color):
    ya, yb, xa, xb = win
    np.copyto(img[ya:yb, xa:xb], color, where=mask[..., None])
    return win


def fill_ellipse(img, cx, cy, rx, ry, color, angle=0.0):
    rx, ry = max(float(rx), 0.5), max(float(ry), 0.5)
    c, s = math.cos(angle), math.sin(angle)
    hx, hy = (math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)) if angle else (rx, ry)
    win = window(img, cx - hx, cy - hy, cx + hx, cy + hy)
    if win is None:
        return None
    xs, ys = grid(win)
    dx, dy = xs - cx, ys - cy
    if angle:
        u, v = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
        mask = u * u + v * v <= 1.0
    else:
        mask = (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0
    return paint(img, win, mask, color)


def fill_capsule(img, x0, y0, x1, y1, r, color):
    """A thick line segment with round ends."""
    win = window(img, min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
    if win is None:
        return None
    xs, ys = grid(win)
    dx, dy = x1 - x0, y1 - y0
    l2 = dx * dx + dy * dy or 1e-9
    px, py = xs - x0, ys - y0
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    return paint(img, win, ex * ex + ey * ey <= r * r, color)


def fill_polygon(img, pts, color):
    """A convex polygon (either winding)."""
    p = np.asarray(pts, np.float64)
    win = window(img, p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    if win is None:
        return None
    xs, ys = grid(win)
    q = np.roll(p, -1, axis=0)
    sign = 1.0 if np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]) >= 0 else -1.0
    mask = None
    for (xa, ya), (xb, yb) in zip(p, q):
        inside = sign * ((xb - xa) * (ys - ya) - (yb - ya) * (xs - xa)) >= -1e-6
        mask = inside if mask is None else mask & inside
    return paint(img, win, mask, color)


def fill_star(img, cx, cy, r_out, r_in, n, color, phase=0.0):
    """A soft-pointed star (flashes, sparks, manes)."""
    win = window(img, cx - r_out, cy - r_out, cx + r_out, cy + r_out)
    if win is None:
        return None
    xs, ys = grid(win)
    dx, dy = xs - cx, ys - cy
    lim = r_in + (r_out - r_in) * (0.5 + 0.5 * np.cos(n * (np.arctan2(dy, dx) - phase))) ** 3
    return paint(img, win, dx * dx + dy * dy <= lim * lim, color)


def fill_ring(img, cx, cy, r0, r1, color, a0=-math.pi, a1=math.pi):
    """An annulus sector between angles a0..a1 (image coordinates, y down)."""
    win = window(img, cx - r1, cy - r1, cx + r1, cy + r1)
    if win is None:
        return None
    xs, ys = grid(win)
    dx, dy = xs - cx, ys - cy
    r2 = dx * dx + dy * dy
    mask = (r2 >= r0 * r0) & (r2 <= r1 * r1)
    if a1 - a0 < 2 * math.pi - 1e-6:
        mid, half = (a0 + a1) / 2, (a1 - a0) / 2
        d = (np.arctan2(dy, dx) - mid + math.pi) % (2 * math.pi) - math.pi
        mask &= np.abs(d) <= half
    return paint(img, win, mask, color)


def rotate(points, angle, about=(0.0, 0.0)):
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

    def touch(self, win):
        if win is not None:
            t = self.touched
            self.touched = list(win) if t is None else [min(t[0], win[0]), max(t[1], win[1]),
                                                        min(t[2], win[2]), max(t[3], win[3])]

    def ellipse(self, img, u, v, ru, rv, color, angle=0.0):
        x, y = self.xy(u, v)
        self.touch(fill_ellipse(img, x, y, ru * self.s, rv * self.s, color, self.f * angle))

    def circle(self, img, u, v, r, color):
        self.ellipse(img, u, v, r, r, color)

    def capsule(self, img, u0, v0, u1, v1, r, color):
        x0, y0 = self.xy(u0, v0)
        x1, y1 = self.xy(u1, v1)
        self.touch(fill_capsule(img, x0, y0, x1, y1, r * self.s, color))

    def poly(self, img, pts, color):
        self.touch(fill_polygon(img, [self.xy(u, v) for u, v in pts], color))

    def rect(self, img, u0, v0, u1, v1, color):
        """Axis-aligned rectangle: plain slicing, no mask."""
        xa, ya = self.xy(u0, v0)
        xb, yb = self.xy(u1, v1)
        x0, x1, y0, y1 = min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb)
        win = window(img, math.ceil(x0), math.ceil(y0), math.floor(x1), math.floor(y1))
        if win is not None:
            img[win[0]:win[1], win[2]:win[3]] = color
        self.touch(win)

    def star(self, img, u, v, r_out, r_in, n, color, phase=0.0):
        x, y = self.xy(u, v)
        ph = phase if self.f > 0 else math.pi - phase
        self.touch(fill_star(img, x, y, r_out * self.s, r_in * self.s, n, color, ph))

    def ring(self, img, u, v, r0, r1, color, a0=-math.pi, a1=math.pi):
        x, y = self.xy(u, v)
        if self.f < 0:  # mirror the sector: angle a -> pi - a
            a0, a1 = math.pi - a1, math.pi - a0
        self.touch(fill_ring(img, x, y, r0 * self.s, r1 * self.s, color, a0, a1))
