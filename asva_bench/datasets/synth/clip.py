"""The per-clip context a scene fills: the event schedule, the event audio track, per-frame envelopes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .constants import EVENT_RATE_LIMITS, FPS, MIN_EVENT_FRAMES, MIN_EVENT_GAP_S, SAMPLE_RATE


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

    def strokes(self, events, start: float, turn) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame position of a tool stroked back and forth, and whether it is moving.

        During each event it moves linearly from its position ``pos`` to ``turn(pos)``
        (reached in the event's last frame) and rests there until the next event;
        before the first event it rests at ``start``.
        """
        x = np.zeros(self.T)
        moving = np.zeros(self.T, bool)
        pos = start
        for i, (on, off) in enumerate(events):
            end = turn(pos)
            x[on:off] = pos + (end - pos) * (np.arange(off - on) + 1) / (off - on)
            nxt = events[i + 1][0] if i + 1 < len(events) else self.T
            x[off:nxt] = end
            if i == 0:
                x[:on] = pos
            moving[on:off] = True
            pos = end
        return x, moving

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
                            **{k: jsonable(v) for k, v in params.items()}})


def jsonable(v):
    if isinstance(v, (np.floating, float)):
        return round(float(v), 4)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in v]
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
