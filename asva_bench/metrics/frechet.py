"""Frechet distance between Gaussians, in float64 with a stable matrix square root.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

tr((S1 S2)^(1/2)) is computed as sum(sqrt(eig(A^T S2 A))) with S1 = A A^T
(Cholesky factor; the symmetric square root from an eigendecomposition when
S1 is singular): A^T S2 A is symmetric positive semi-definite and has the
eigenvalues of S1 S2, so no non-symmetric sqrtm (scipy.linalg.sqrtm, as in
pytorch-fid) and no complex round-off is needed.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (rows are samples), float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a [N >= 2, D] feature matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN/inf; the backbone or its input is broken")
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    try:
        # S1 = L L^T (Cholesky, far cheaper than an eigendecomposition): L^T S2 L is symmetric
        # PSD with the eigenvalues of S1 S2
        a = np.linalg.cholesky((s1 + s1.T) / 2.0)
        m = a.T @ s2 @ a
    except np.linalg.LinAlgError:  # singular S1 (fewer samples than dimensions): PSD square root
        a = _psd_sqrt(s1)
        m = a @ s2 @ a
    w = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, s1, mu2, s2) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    d = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(d, 0.0)  # tiny negative values are round-off of identical sets


def frechet_distance_from_features(x1, x2) -> float:
    return frechet_distance(*gaussian_stats(x1), *gaussian_stats(x2))


# --------------------------------------------------------------------------
# Bootstrap over videos from per-video sufficient statistics
# --------------------------------------------------------------------------
#: Above this many float64 entries (videos x D x D per side) the per-video second
#: moments would not fit comfortably in memory (paper Inception: D = 2048), and the
#: bootstrap falls back to recomputing each replicate from its rows.
MAX_MOMENT_ENTRIES = 40_000_000


def per_video_moments(x: np.ndarray, video_of_row: np.ndarray, n_videos: int, centre: np.ndarray):
    """Per video: row count [V], sum of (x - centre) [V, D], sum of outer products [V, D, D]."""
    xc = np.asarray(x, np.float64) - centre
    counts = np.bincount(video_of_row, minlength=n_videos).astype(np.float64)
    sums = np.zeros((n_videos, xc.shape[1]))
    np.add.at(sums, video_of_row, xc)
    outer = np.zeros((n_videos, xc.shape[1], xc.shape[1]))
    for v in range(n_videos):
        rows = xc[video_of_row == v]
        outer[v] = rows.T @ rows
    return counts, sums, outer


def stats_from_moments(weights: np.ndarray, counts, sums, outer) -> tuple[np.ndarray, np.ndarray]:
    """Mean (in the centred frame) and unbiased covariance of the rows of the videos drawn
    ``weights[v]`` times each: the same numbers gaussian_stats gives on the drawn rows."""
    n = float(weights @ counts)
    if n < 2:
        raise ValueError("a bootstrap replicate drew fewer than 2 rows")
    mu = weights @ sums / n
    second = np.tensordot(weights, outer, axes=1)
    cov = (second - n * np.outer(mu, mu)) / (n - 1.0)
    return mu, (cov + cov.T) / 2.0


def bootstrap_frechet(fake, fake_video, real, real_video, counts: np.ndarray) -> np.ndarray:
    """Frechet distance of each bootstrap replicate.

    ``fake_video`` / ``real_video``: video number (0..V-1) of each row; ``counts``:
    [replicates, V] draw counts (bootstrap.draw_counts).  A drawn video contributes its
    rows to both sets.  Equal to recomputing gaussian_stats on the drawn rows, but the
    rows are summed once per video instead of once per replicate.
    """
    V = counts.shape[1]
    centre = np.asarray(real, np.float64).mean(0)   # shared shift: the distance does not change
    out = np.empty(len(counts))
    sides = [per_video_moments(x, vid, V, centre) for x, vid in ((fake, fake_video), (real, real_video))]
    D = sides[0][1].shape[1]
    chunk = max(1, int(5e6 // (D * D)))               # replicates whose second moments fit in ~40 MB
    for start in range(0, len(counts), chunk):
        w = counts[start:start + chunk]
        # the sums over the drawn videos, for a chunk of replicates in one matrix product per side
        parts = [(w @ n_v, w @ sums, (w @ outer.reshape(V, D * D)).reshape(-1, D, D))
                 for n_v, sums, outer in sides]
        for i in range(len(w)):
            stats = []
            for n, s1, s2 in parts:
                mu = s1[i] / n[i]
                stats += [mu, (s2[i] - n[i] * np.outer(mu, mu)) / (n[i] - 1.0)]
            out[start + i] = frechet_distance(*stats)
    return out
