"""The fifteen scenes: for each class, how its events sound and how its object moves.

A scene builder gets the clip's context (:class:`~.clip.Clip`: random
stream, event schedule, audio track) and palette, places its events, mixes
their sounds into the track and returns a :class:`~.clip.Scene`: the
object's state per frame and how to draw a state. Which class uses which
builder is the table in :mod:`.classes`.
"""

from __future__ import annotations

import math

import numpy as np

from .audio import adsr, harmonics, noise, normalise, seconds
from .clip import Clip, Scene, levels
from .constants import FPS, SAMPLE_RATE
from .palette import Palette, pick_color, shade
from .raster import grid, paint, rotate, window


def scene_hammer(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs = c.place((0.5, 2.5), (1 / 6, 0.3), gap=0.1)
    up, L = rng.uniform(45, 70), rng.uniform(70, 85)
    head, handle, anvil = pal.obj, pal.obj2, pal.obj3
    spark, spark_core = pal.fg(rng, hue=(0.08, 0.16), sat=(0.7, 1.0)), pal.light
    for on, off in evs:
        f0, tau = rng.uniform(500, 1300), rng.uniform(0.1, 0.3)
        n = int(tau * 5 * SAMPLE_RATE)
        t = seconds(n)
        sig = sum(a * np.sin(2 * math.pi * f0 * r * t + rng.uniform(0, 6)) * np.exp(-t * (1 + i) / tau)
                  for i, (r, a) in enumerate(zip((1, 2.76, 5.4, 8.93), (1, .6, .4, .25))))
        sig = sig + 0.8 * noise(rng, n) * np.exp(-t / 0.004)
        c.add(on, normalise(sig) * rng.uniform(0.6, 1.0))
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
        t = seconds(n)
        f = 70 + rng.uniform(80, 160) * np.exp(-t / 0.03)
        sig = np.sin(2 * math.pi * np.cumsum(f) / SAMPLE_RATE) * np.exp(-t / rng.uniform(0.06, 0.12))
        sig += 0.5 * noise(rng, n, (None, 2500)) * np.exp(-t / 0.01)
        c.add(on, normalise(sig) * rng.uniform(0.6, 1.0))
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
        t = seconds(n)
        sig = 0.6 * noise(rng, n, (None, 800)) * np.exp(-t / 0.25)
        for d in np.concatenate([[0.0], np.sort(rng.uniform(0, 0.15, n_pins - 1))]):
            k = int(d * SAMPLE_RATE)
            tt = t[:n - k]
            sig[k:] += (np.sin(2 * math.pi * rng.uniform(1500, 3500) * tt) * np.exp(-tt / 0.02)
                        + noise(rng, n - k) * np.exp(-tt / 0.008))
        c.add(on, normalise(sig) * rng.uniform(0.7, 1.0))
        roll_n = int(approach / FPS * SAMPLE_RATE)
        roll = 0.12 * normalise(noise(rng, roll_n, (None, 300))) * np.linspace(0.3, 1, roll_n)
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
        pts = rotate([(u, 16), (u, -10), (u, -16), (u, -21), (u, -13)], ang, (u, 20))
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
    t = seconds(n)
    return normalise(noise(rng, n, (None, rng.uniform(3000, 6000))) * np.exp(-t / tau)
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
        t = seconds(n)
        f = f_base * rng.uniform(0.9, 1.1) * (1.1 - 0.3 * t / t[-1])
        sig = harmonics(f, (0.5, 1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05), rng) + 0.35 * noise(rng, n, (500, 4000))
        env = adsr(n, 0.006, 0.03, np.linspace(1, 0.55, n))
        c.add(on, normalise(sig) * env, env)
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
        t = seconds(n)
        env = adsr(n, 0.008, 0.03)
        am = (0.5 + 0.5 * np.cos(2 * math.pi * fm * t)) ** 2
        sig = harmonics(np.full(n, f0 * rng.uniform(0.95, 1.05)), [1 / k for k in range(1, 13)], rng) * am
        c.add(on, normalise(sig) * env, env)
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
        t = seconds(n) / ((off - on) / FPS)
        f = f_base * (1 + 0.15 * np.sin(math.pi * t)) * (1 + 0.01 * np.sin(2 * math.pi * 25 * seconds(n)))
        sig = normalise(harmonics(f, [k ** -0.8 for k in range(1, 16)], rng)) + 0.5 * noise(rng, n, (None, 2000))
        shape = np.interp(t, [0, 0.3, 1], [0.6, 1.0, 0.5])
        env = adsr(n, 0.02, 0.08, shape)
        c.add(on, normalise(sig) * env, env)
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
        sig = harmonics(f, (1, 0.7, 0.5, 0.3, 0.15, 0.1), rng) + 0.1 * noise(rng, n, (1000, 5000))
        env = adsr(n, 0.012, 0.06, shape)
        c.add(on, normalise(sig) * env, env)
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
        pen.poly(img, rotate([(bx, by - 8), (bx, by + 1), (bx - 30, by - 1)], a, (bx, by)), beak)
        pen.poly(img, rotate([(bx, by + 1), (bx, by + 9), (bx - 26, by + 3)], -a, (bx, by)), beak)
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
        t = seconds(n)
        rel = t / t[-1]
        f = f_base * np.interp(rel, [0, 0.3, 1], [1.0, 1.15, 0.9]) * (1 + 0.03 * np.sin(2 * math.pi * 6 * t))
        amps = [1.0 / (1 + abs(k * f_base - 1000) / 400) + 0.6 / (1 + abs(k * f_base - 2500) / 500)
                for k in range(1, 11)]
        sig = harmonics(f, amps, rng) + 0.05 * noise(rng, n, (2000, 6000))
        env = adsr(n, 0.02, 0.06)
        c.add(on, normalise(sig) * env, env)
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
    d = 1.0
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = seconds(n)
        f = f_base * 2 ** (SCALE[int(rng.integers(len(SCALE)))] / 12)
        freq = f * (1 + 0.008 * np.sin(2 * math.pi * 5.5 * t) * np.clip((t - 0.15) / 0.1, 0, 1))
        sig = harmonics(freq, [1 / k for k in range(1, 13)], rng) + 0.05 * noise(rng, n, (1000, 6000))
        env = adsr(n, 0.03, 0.05)
        c.add(on, normalise(sig) * env, env)
        c.event(on, off, pitch_hz=f, direction=int(d))
        d = -d
    bx, on_string = c.strokes(evs, -40.0, lambda pos: -pos)
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
    d = 1
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        t = seconds(n)
        rel = t / t[-1]
        f = fc * rng.uniform(0.9, 1.1) * (1 + 0.1 * rel * d)
        sig = noise(rng, n, (fc / 1.4, fc * 1.4)) + 0.6 * harmonics(f, (1, 0, 0.4), rng)
        env = adsr(n, 0.01, 0.03, 0.7 + 0.3 * rel)
        c.add(on, normalise(sig) * env, env)
        c.event(on, off, pitch_hz=fc, direction=d)
        d = -d
    tau, active = c.strokes(evs, 0.1, lambda pos: 1.0 - pos)
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
    t = seconds(n)
    glide = np.clip(t / 0.03, 0, 1)
    f = (f_from + (f_to - f_from) * glide) * (1 + 0.005 * np.sin(2 * math.pi * 5 * t))
    return harmonics(f, [k ** -bright for k in range(1, 11)], rng)


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


def _brass_notes(c: Clip, pal: Palette, pitch_hz) -> tuple[list, np.ndarray, float]:
    """What trumpet and trombone share: the notes' schedule, a brass colour, the base pitch."""
    evs = c.place((0.5, 1.4), (0.4, 1.0), gap=0.15)
    brass = pal.fg(c.rng, hue=(0.09, 0.15), sat=(0.5, 0.9))
    return evs, brass, c.rng.uniform(*pitch_hz)


def scene_trumpet(c: Clip, pal: Palette) -> Scene:
    rng = c.rng
    evs, brass, f_base = _brass_notes(c, pal, (230, 470))
    valves, rim, arc_col = pal.obj2, pal.obj3, pal.obj
    for on, off in evs:
        n = int((off - on) / FPS * SAMPLE_RATE)
        f = f_base * 2 ** (SCALE[int(rng.integers(len(SCALE)))] / 12)
        env = adsr(n, 0.025, 0.07, np.linspace(0.85, 1, n))
        c.add(on, normalise(_brass(rng, n, f, f, rng.uniform(0.7, 1.2))) * env, env)
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
    evs, brass, f_base = _brass_notes(c, pal, (130, 260))
    slide_col, rim, arc_col = pal.obj2, pal.obj3, pal.obj
    T = c.T
    L = np.zeros(T)
    prev_pos, prev_f = int(rng.integers(7)), None
    L[:] = 15 * prev_pos
    for i, (on, off) in enumerate(evs):
        p = int(rng.integers(7))
        f = f_base * 2 ** (-p / 12)
        n = int((off - on) / FPS * SAMPLE_RATE)
        env = adsr(n, 0.025, 0.07, np.linspace(0.85, 1, n))
        c.add(on, normalise(_brass(rng, n, prev_f or f, f, rng.uniform(0.8, 1.3))) * env, env)
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
    t = seconds(ns)
    rel = t / t[-1]
    shape = np.interp(rel, [0, 0.6, 1], [1, 1, 0.05])
    env = adsr(ns, 0.12, 0.05, shape)
    gurgle = 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(4, 8) * t + rng.uniform(0, 6))
    sig = noise(rng, ns, (None, 1500)) + 0.7 * noise(rng, ns, (300, 800)) * gurgle
    sig = normalise(sig) * env
    click = np.zeros(ns)
    k = int(0.03 * SAMPLE_RATE)
    click[:k] = noise(rng, k) * np.exp(-seconds(k) / 0.006) * 0.8
    c.add(on, sig + click, np.maximum(env, np.abs(click) > 0.05))
    c.event(on, off)
    trickle_n = c.n_samples
    c.track += 0.03 * noise(rng, trickle_n, (200, 2000))  # the tank's faint trickle
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
            win = window(img, x - rx, y - ry, x + rx, y + ry)
            xs, ys = grid(win)
            ex, ey = (xs - x) / rx, (ys - y) / ry
            rr = np.sqrt(ex * ex + ey * ey)
            cache.update(win=win, inside=rr <= 0.97, base=3 * np.arctan2(ey, ex) + twist * rr)
            pen.touch(win)
        thr = 1.0 - 0.08 * strength
        mask = cache["inside"] & (np.cos(cache["base"] - ph / 96 * 2 * math.pi * 3) > thr)
        paint(img, cache["win"], mask, arms_col)
    return Scene(states, draw, static, {"swirl_rad_s": omega, "twist": twist})
