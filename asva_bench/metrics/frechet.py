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
import torch


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
# Bootstrap over videos
# --------------------------------------------------------------------------
# A replicate draws test videos with replacement; a drawn video contributes its rows to both sets
# with the weight "times drawn". Every replicate's distance is computed exactly (no approximation,
# the same draws as a recomputation from the drawn rows), by the cheaper of two routes:
#
# * feature space (rows > dimensions, e.g. the full paper test set at 2048-d): the replicate's
#   weighted mean and covariance (from per-video sums when they fit in memory, else one product of
#   the drawn rows), then frechet_distance: Cholesky, product, symmetric eigenvalues, O(D^3);
# * sample space (rows < dimensions, e.g. a reduced protocol at 2048-d): with S1 = A^T A and
#   S2 = B^T B (A, B the weighted centred rows), tr((S1 S2)^(1/2)) is the sum of the singular values
#   of A B^T, and every term of the distance is a function of the Gram matrices X X^T, computed once;
#   a replicate costs an SVD of (drawn rows) x (drawn rows) instead of an eigendecomposition of D x D.
#
# On a CUDA device the feature-space route runs in float64 on the device (torch).

#: Above this many float64 entries (videos x D x D per side) the per-video second moments would not
#: fit comfortably in memory (paper Inception: D = 2048); the weighted products of the drawn rows
#: are used instead.
MAX_MOMENT_ENTRIES = 40_000_000
#: Up to this dimension a D x D eigendecomposition is cheap (mini features, I3D's 400): every
#: replicate takes the feature-space route from per-video sums when they fit.
SMALL_DIM = 512


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


def weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of ``x`` each repeated ``w[i]`` times (0 = left
    out): one product over the drawn rows."""
    sel = w > 0
    xs, ws = x[sel], w[sel]
    n = float(ws.sum())
    if n < 2:
        raise ValueError("a bootstrap replicate drew fewer than 2 rows")
    mu = ws @ xs / n
    xc = xs - mu
    cov = (xc * ws[:, None]).T @ xc / (n - 1.0)
    return mu, (cov + cov.T) / 2.0


def _frechet_torch(mu1, s1, mu2, s2) -> float:
    """frechet_distance in float64 torch on the tensors' device (same Cholesky route)."""
    diff = mu1 - mu2
    try:
        a = torch.linalg.cholesky((s1 + s1.T) / 2.0)
        m = a.T @ s2 @ a
    except RuntimeError:  # singular S1
        w, v = torch.linalg.eigh((s1 + s1.T) / 2.0)
        a = (v * w.clamp_min(0).sqrt()) @ v.T
        m = a @ s2 @ a
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2.0).clamp_min(0).sqrt().sum()
    return max(float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_sqrt), 0.0)


class _SampleSpace:
    """Exact Frechet distances of weighted row subsets from Gram matrices (rows < dimensions)."""

    def __init__(self, x1: np.ndarray, x2: np.ndarray):
        self.g11, self.g22, self.g12 = x1 @ x1.T, x2 @ x2.T, x1 @ x2.T

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        s1, s2 = a > 0, b > 0
        a, b = a[s1], b[s2]
        g11, g22, g12 = self.g11[np.ix_(s1, s1)], self.g22[np.ix_(s2, s2)], self.g12[np.ix_(s1, s2)]
        n1, n2 = float(a.sum()), float(b.sum())
        if n1 < 2 or n2 < 2:
            raise ValueError("a bootstrap replicate drew fewer than 2 rows")
        g12b, ag12 = g12 @ b / n2, a @ g12 / n1          # x_i . mu2, mu1 . y_j
        m12 = float(a @ g12b) / n1                        # mu1 . mu2
        m11, m22 = float(a @ g11 @ a) / n1 ** 2, float(b @ g22 @ b) / n2 ** 2
        tr1 = (float(a @ np.diag(g11)) - n1 * m11) / (n1 - 1.0)
        tr2 = (float(b @ np.diag(g22)) - n2 * m22) / (n2 - 1.0)
        centred = g12 - g12b[:, None] - ag12[None, :] + m12
        k = np.sqrt(a)[:, None] * centred * np.sqrt(b)[None, :] / np.sqrt((n1 - 1.0) * (n2 - 1.0))
        nuclear = float(torch.linalg.svdvals(torch.from_numpy(k)).sum())
        return max(m11 + m22 - 2.0 * m12 + tr1 + tr2 - 2.0 * nuclear, 0.0)


def bootstrap_frechet(fake, fake_video, real, real_video, counts: np.ndarray, device: str = "cpu",
                      threads: int = 1) -> np.ndarray:
    """Frechet distance of each bootstrap replicate.

    ``fake_video`` / ``real_video``: video number (0..V-1) of each row; ``counts``:
    [replicates, V] draw counts (bootstrap.draw_counts).  A drawn video contributes its
    rows to both sets.  Equal to recomputing gaussian_stats and frechet_distance on the
    drawn rows (tested), by the cheaper exact route of each replicate (see above).
    ``threads``: replicates computed by that many threads at once (each replicate the same
    operations, so the same numbers; the caller limits BLAS to one thread a replicate).
    """
    fake_video, real_video = np.asarray(fake_video), np.asarray(real_video)
    V = counts.shape[1]
    centre = np.asarray(real, np.float64).mean(0)   # shared shift: the distance does not change
    x1, x2 = np.asarray(fake, np.float64) - centre, np.asarray(real, np.float64) - centre
    D = x1.shape[1]
    w1, w2 = counts[:, fake_video], counts[:, real_video]    # [replicates, rows]: weight of each row
    drawn1, drawn2 = (w1 > 0).sum(1), (w2 > 0).sum(1)
    moments_fit = V * D * D <= MAX_MOMENT_ENTRIES
    # sample space where an SVD of the drawn rows is cheaper than a D x D eigendecomposition
    in_samples = drawn1 * drawn2 * np.minimum(drawn1, drawn2) <= D ** 3 / 2
    if D <= SMALL_DIM and moments_fit:
        in_samples[:] = False
    # at most D distinct rows on a side: that covariance is singular, the feature route would need a
    # full eigendecomposition (no Cholesky), and the SVD of the drawn rows is cheaper (mini FVD: 336-d,
    # about 285 distinct rows of 450 drawn: 5 ms against 25 ms a replicate)
    in_samples |= np.minimum(drawn1, drawn2) <= D
    out = np.empty(len(counts))
    if in_samples.any():
        space = _SampleSpace(x1, x2)

        def sample_route(reps):
            for r in reps:
                out[r] = space.distance(w1[r], w2[r])
        _in_threads(sample_route, _split(np.flatnonzero(in_samples), threads), threads)
    rest = np.flatnonzero(~in_samples)
    if not len(rest):
        return out
    if moments_fit and not str(device).startswith("cuda"):
        _feature_space_moments(x1, fake_video, x2, real_video, counts, rest, out, threads)
        return out
    if str(device).startswith("cuda"):
        _feature_space_torch(x1, w1, x2, w2, rest, out, device)
        return out

    def drawn_rows(reps):
        for r in reps:
            out[r] = _frechet_replicate(*weighted_stats(x1, w1[r]), *weighted_stats(x2, w2[r]))
    _in_threads(drawn_rows, _split(rest, threads), threads)
    return out


def _frechet_replicate(mu1, s1, mu2, s2) -> float:
    """frechet_distance of one replicate's float64 statistics, its decompositions in torch."""
    s1, s2 = torch.from_numpy(np.ascontiguousarray(s1)), torch.from_numpy(np.ascontiguousarray(s2))
    return _frechet_torch(torch.from_numpy(np.asarray(mu1)), s1, torch.from_numpy(np.asarray(mu2)), s2)


def _in_threads(work, pieces, threads: int) -> None:
    """work(piece) for each piece of replicates, in ``threads`` threads (at least one, so a
    replicate always runs in the same setting: one torch thread, whatever the caller's).

    The replicates' decompositions run in torch: its LAPACK (MKL) releases the GIL and runs
    concurrently in several threads, where numpy's LAPACK calls (OpenBLAS) were measured to run one
    at a time. Matrix products stay in numpy (they run concurrently there)."""
    from ..threads import single_torch_thread_pool
    pieces = [p for p in pieces if len(p)]
    with single_torch_thread_pool(min(threads, len(pieces)), "asva-bootstrap") as pool:
        list(pool.map(work, pieces))    # list(): re-raises a replicate's error here


def _split(reps: np.ndarray, parts: int) -> list:
    return np.array_split(reps, max(1, min(len(reps), parts)))


def _feature_space_torch(x1, w1, x2, w2, reps, out, device) -> None:
    """Replicates ``reps`` from the weighted drawn rows, in float64 torch on ``device``."""
    t1, t2 = (torch.as_tensor(x, dtype=torch.float64, device=device) for x in (x1, x2))
    for r in reps:
        stats = []
        for t, w in ((t1, w1[r]), (t2, w2[r])):
            sel = np.flatnonzero(w > 0)
            ws = torch.as_tensor(w[sel], dtype=torch.float64, device=device)
            xs = t[torch.as_tensor(sel, device=device)]
            n = float(w[sel].sum())
            mu = ws @ xs / n
            xc = xs - mu
            cov = (xc * ws[:, None]).T @ xc / (n - 1.0)
            stats += [mu, (cov + cov.T) / 2.0]
        out[r] = _frechet_torch(*stats)


def _feature_space_moments(x1, v1, x2, v2, counts, reps, out, threads: int = 1) -> None:
    """Replicates ``reps`` from per-video sums: the rows are summed once per video, and a part of
    the replicates' sums is one matrix product per side."""
    V = counts.shape[1]
    from ..threads import single_torch_thread_pool
    with single_torch_thread_pool(min(threads, 2), "asva-bootstrap") as pool:   # the two sides at once
        sides = list(pool.map(lambda side: per_video_moments(*side, V, 0.0), ((x1, v1), (x2, v2))))
    D = sides[0][1].shape[1]
    # parts of at most ~40 MB of second moments, and at least 8 (1, 2, 4 or 8 threads share them
    # evenly); the parts depend on the sizes only, so the numbers do not depend on the threads
    parts = max(8, -(-len(reps) // max(1, int(5e6 // (D * D)))))

    def work(idx):
        w = counts[idx]
        sums = [(w @ n_v, w @ s, (w @ outer.reshape(V, D * D)).reshape(-1, D, D)) for n_v, s, outer in sides]
        for i, r in enumerate(idx):
            stats = []
            for n, s1, s2 in sums:
                mu = s1[i] / n[i]
                stats += [mu, (s2[i] - n[i] * np.outer(mu, mu)) / (n[i] - 1.0)]
            out[r] = _frechet_replicate(*stats)
    _in_threads(work, _split(reps, parts), threads)
