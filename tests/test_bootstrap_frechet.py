"""The FID / FVD bootstrap: every route gives the distances a straightforward recomputation from
the drawn rows gives, so the interval is unchanged (far within its Monte-Carlo error)."""

import numpy as np
import pytest

from asva_bench.metrics import FID
from asva_bench.metrics import frechet as fr
from asva_bench.metrics.bootstrap import bootstrap_statistic, draw_counts, percentile_ci, video_resamples
from asva_bench.metrics.frechet import bootstrap_frechet, frechet_distance_from_features


def sets(n_videos, clips, dim, seed=0):
    rng = np.random.default_rng(seed)
    videos = np.repeat(np.arange(n_videos), clips)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)          # correlated features, offset means
    fake = rng.normal(3.0, 1.0, (len(videos), dim)) @ mix
    real = rng.normal(3.2, 1.1, (len(videos), dim)) @ mix
    return fake, real, videos


def straightforward(fake, real, videos, replicates, seed=7):
    return np.array([frechet_distance_from_features(fake[rows], real[rows])
                     for rows in video_resamples(videos, replicates, seed=seed)])


def singular_straightforward(fake, real, videos, replicates, seed=7):
    """The drawn rows repeated explicitly, and tr((S1 S2)^(1/2)) as the nuclear norm of the centred
    rows' cross product X Y^T / sqrt((n1 - 1)(n2 - 1)): exact where a covariance is singular, where
    an eigendecomposition's square root adds sqrt(round-off) for every null direction."""
    out = []
    for rows in video_resamples(videos, replicates, seed=seed):
        x, y = fake[rows], real[rows]
        mu1, mu2 = x.mean(0), y.mean(0)
        xc, yc = x - mu1, y - mu2
        n1, n2 = len(x), len(y)
        nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
        tr1, tr2 = (xc * xc).sum() / (n1 - 1), (yc * yc).sum() / (n2 - 1)
        out.append(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * nuclear)
    return np.array(out)


@pytest.mark.parametrize("route", ["samples", "rows", "moments"])
def test_every_route_equals_recomputing_the_drawn_rows(route, monkeypatch):
    used = []
    monkeypatch.setattr(fr._SampleSpace, "distance",
                        lambda self, a, b, _d=fr._SampleSpace.distance: used.append(1) or _d(self, a, b))
    if route == "samples":      # fewer rows than dimensions: Gram matrices, SVD of drawn rows
        fake, real, videos = sets(8, 3, 64)
    else:                       # more rows than dimensions
        fake, real, videos = sets(20, 6, 24)
        if route == "rows":     # moments "do not fit": weighted products of the drawn rows
            monkeypatch.setattr(fr, "MAX_MOMENT_ENTRIES", 0)
    counts = draw_counts(len(np.unique(videos)), 30, seed=7)
    fast = bootstrap_frechet(fake, videos, real, videos, counts)
    assert bool(used) == (route == "samples")
    if route == "samples":
        np.testing.assert_allclose(fast, singular_straightforward(fake, real, videos, 30), rtol=1e-10)
        # the feature-space recomputation agrees to its own round-off on singular covariances
        np.testing.assert_allclose(fast, straightforward(fake, real, videos, 30), rtol=1e-7)
    else:
        np.testing.assert_allclose(fast, straightforward(fake, real, videos, 30), rtol=1e-8, atol=1e-9)


def test_a_singular_side_takes_the_sample_route_at_small_dimensions():
    """Mini FVD: 336-d and fewer distinct drawn rows than dimensions on a side; the sample route
    (an SVD of the drawn rows) instead of a full eigendecomposition, the same distances."""
    fake, real, videos = sets(30, 3, 100, seed=2)       # about 57 distinct rows drawn of 90, 100-d
    counts = draw_counts(30, 12, seed=1)
    np.testing.assert_allclose(bootstrap_frechet(fake, videos, real, videos, counts),
                               singular_straightforward(fake, real, videos, 12, seed=1), rtol=1e-10)


def test_torch_route_equals_numpy():
    fake, real, videos = sets(20, 6, 24)
    counts = draw_counts(20, 10, seed=3)
    x1, x2 = fake - real.mean(0), real - real.mean(0)
    w = counts[:, videos]
    out = np.empty(10)
    fr._feature_space_torch(x1, w, x2, w, np.arange(10), out, "cpu")   # the CUDA code, run on the CPU
    np.testing.assert_allclose(out, straightforward(fake, real, videos, 10, seed=3), rtol=1e-8)


def test_identical_sets_give_zero_in_sample_space():
    fake, _, videos = sets(6, 3, 40)
    counts = draw_counts(6, 5)
    d = bootstrap_frechet(fake, videos, fake.copy(), videos, counts)
    assert np.all(d < 1e-8)


def test_interval_unchanged_within_monte_carlo_error():
    """The FID interval (paper-like: more dimensions than rows, 200 replicates) against the
    straightforward percentile bootstrap of the same draws; the Monte-Carlo standard error of a
    2.5% / 97.5% endpoint from 200 replicates is about 0.19 sd of the replicate distribution."""
    fake, real, videos = sets(10, 3, 96, seed=5)
    m = FID()
    m.update(fake, real, videos, videos)
    s = m.summary()
    slow = singular_straightforward(fake, real, videos, FID.bootstrap_replicates, seed=0)  # 30 rows < 96-d
    lo, hi = percentile_ci(slow)
    mc_error = 0.19 * slow.std()
    assert abs(s["ci_low"] - lo) < 1e-6 * mc_error and abs(s["ci_high"] - hi) < 1e-6 * mc_error
    # and the old generic path (bootstrap_statistic over row subsets) gives the same interval (to the
    # round-off of rank-deficient covariances, 30 rows in 96 dimensions)
    generic = bootstrap_statistic(lambda rows: frechet_distance_from_features(fake[rows], real[rows]),
                                  videos, FID.bootstrap_replicates)
    assert generic == pytest.approx((s["ci_low"], s["ci_high"]), rel=1e-7)
