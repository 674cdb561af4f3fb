"""95% bootstrap confidence intervals over test videos.

Clips of one video are not independent (same scene, overlapping audio), so
the resampling unit is the video: each replicate draws videos with
replacement and takes all their clips. Percentile intervals.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0


def video_draws(n_videos: int, replicates: int, seed: int = DEFAULT_SEED):
    """Yield, per replicate, the indices of the drawn videos (with replacement)."""
    rng = np.random.default_rng(seed)
    for _ in range(replicates):
        yield rng.integers(0, n_videos, n_videos)


def video_resamples(video_index: np.ndarray, replicates: int, seed: int = DEFAULT_SEED):
    """Yield, per replicate, the row indices of the drawn videos' clips."""
    video_index = np.asarray(video_index)
    videos, inverse = np.unique(video_index, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == v) for v in range(len(videos))]
    for draw in video_draws(len(videos), replicates, seed):
        yield np.concatenate([rows_of[v] for v in draw])


def percentile_ci(values, level: float = 0.95) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    lo, hi = np.percentile(v, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def bootstrap_mean(values, video_index, replicates: int = DEFAULT_REPLICATES,
                   seed: int = DEFAULT_SEED) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    means = np.empty(replicates)
    for i, rows in enumerate(video_resamples(video_index, replicates, seed)):
        means[i] = values[rows].mean()
    return percentile_ci(means)


def bootstrap_statistic(stat: Callable[[np.ndarray], float], video_index, replicates: int,
                        seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """CI of any statistic of a row subset (e.g. a Frechet distance of the drawn rows)."""
    vals = [stat(rows) for rows in video_resamples(video_index, replicates, seed)]
    return percentile_ci(vals)


def draw_counts(n_videos: int, replicates: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """[replicates, n_videos]: how often each video is drawn (the same draws as video_resamples)."""
    return np.stack([np.bincount(d, minlength=n_videos) for d in video_draws(n_videos, replicates, seed)]
                    ).astype(np.float64)


def bootstrap_paired_difference(a, b, video_index, replicates: int = DEFAULT_REPLICATES,
                                seed: int = DEFAULT_SEED) -> tuple[float, float, float]:
    """Mean of a - b over clips with its CI (paired over the same clips)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    lo, hi = bootstrap_mean(d, video_index, replicates, seed)
    return float(d.mean()), lo, hi
