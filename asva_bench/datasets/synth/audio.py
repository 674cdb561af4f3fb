"""Audio building blocks (16 kHz numpy): harmonic tones, filtered noise, envelopes."""

from __future__ import annotations

import functools
import math

import numpy as np

from .constants import SAMPLE_RATE


def seconds(n: int) -> np.ndarray:
    """The times of n samples from 0, in seconds."""
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


def harmonics(freq, amps, rng) -> np.ndarray:
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


def noise(rng, n, band=None) -> np.ndarray:
    """White noise, or 2nd-order Butterworth filtered noise at unit RMS."""
    x = rng.standard_normal(n)
    if band is None:
        return x
    from scipy.signal import sosfilt
    # round the band edges so the filter cache stays small
    lo, hi = (None if b is None else float(round(b, -1)) for b in band)
    y = sosfilt(_butter(lo, hi), x)
    return y / (np.std(y) + 1e-9)


def adsr(n, attack, release, sustain=None) -> np.ndarray:
    """Envelope over n samples: linear attack, sustain shape, linear release at the end."""
    env = np.ones(n) if sustain is None else np.asarray(sustain, np.float64).copy()
    a, r = min(int(attack * SAMPLE_RATE), n), min(int(release * SAMPLE_RATE), n)
    if a:
        env[:a] *= np.linspace(0, 1, a, endpoint=False) + 1.0 / a
    if r:
        env[n - r:] *= np.linspace(1, 0, r)
    return env


def normalise(x) -> np.ndarray:
    """Scaled to a peak of 1 (silence stays silent)."""
    return x / (np.max(np.abs(x)) + 1e-9)
