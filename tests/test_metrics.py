"""Golden tests of the metric math: Frechet distance, IA/IT, RelSync, AlignSync, bootstrap."""

import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from asva_bench.metrics import FID, IA, IT, METRICS, AlignSync, RelSync, frechet_distance, \
    frechet_distance_from_features
from asva_bench.metrics.bootstrap import bootstrap_mean, bootstrap_paired_difference


def scipy_frechet(mu1, s1, mu2, s2):
    """pytorch-fid's formula with scipy's general sqrtm (independent computation)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_closed_form_1d_and_diagonal():
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)
    mu1, mu2 = np.array([0.0, 1, 2]), np.array([1.0, 1, 0])
    sd1, sd2 = np.array([1.0, 2, 3]), np.array([2.0, 2, 1])
    expected = ((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_matches_scipy_on_random_full_covariances():
    rng = np.random.default_rng(0)
    for d in (2, 16, 64):
        a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)


def test_frechet_identical_sets_is_zero_and_rank_deficient_is_stable():
    x = np.random.default_rng(1).normal(size=(20, 50))  # fewer samples than dims: singular covariance
    assert frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    y = x + 1.0
    # pure mean shift; sqrt of round-off eigenvalues of a singular product costs ~1e-6
    assert frechet_distance_from_features(x, y) == pytest.approx(50.0, rel=1e-7)
    with pytest.raises(ValueError, match="NaN/inf"):
        frechet_distance_from_features(x, np.full_like(x, np.nan))


def test_fid_metric_object_and_bootstrap():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 8))
    fake = rng.normal(size=(300, 8)) * 1.5 + 0.5
    vids = np.repeat(np.arange(30), 10)
    m = FID()
    m.update(torch.from_numpy(fake[:150]), torch.from_numpy(real[:150]), vids[:150], vids[:150])
    m.update(torch.from_numpy(fake[150:]), torch.from_numpy(real[150:]), vids[150:], vids[150:])
    s = m.summary(replicates=50)
    assert s["mean"] == pytest.approx(frechet_distance_from_features(fake, real))
    assert s["ci_low"] <= s["mean"] * 1.3 and s["ci_high"] >= s["ci_low"]
    assert s["n_videos"] == 30 and s["higher_is_better"] is False


def unit(v):
    v = torch.tensor(v, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def test_ia_and_it_hand_computed():
    audio = unit([[1.0, 0.0]])
    # two frames at 0 and 60 degrees from the audio: cos 1 and 0.5 -> mean 0.75 -> 75.0
    frames = unit([[[1.0, 0.0], [0.5, math.sqrt(3) / 2]]])
    ia = IA()
    ia.update(frames, audio, [0])
    assert float(ia.compute()) == pytest.approx(75.0)
    it = IT()
    it.update(frames, unit([[0.0, 1.0]]), [0])  # cos 0 and sqrt(3)/2
    assert float(it.compute()) == pytest.approx(100 * (math.sqrt(3) / 2) / 2)


def test_relsync_values():
    m = RelSync()
    m.update(torch.tensor([2.0, 5.0]), torch.tensor([2.0, 5.0 - math.log(3)]), [0, 1])
    assert m.per_clip() == pytest.approx([50.0, 75.0])
    # the formula as written in the paper
    a, b = 0.3, -1.2
    m2 = RelSync()
    m2.update(torch.tensor([a]), torch.tensor([b]), [0])
    assert m2.per_clip()[0] == pytest.approx(100 * math.exp(a) / (math.exp(b) + math.exp(a)))


def test_alignsync_hand_computed():
    audio = unit([[1.0, 0.0]])
    first = unit([[0.0, 1.0]])                                   # c(a, v1) = 0
    frames = unit([[[1.0, 0.0], [1.0, 1.0]]])                    # c = 1, 1/sqrt(2)
    p = (math.exp(1) / (math.exp(1) + 1) + math.exp(2 ** -0.5) / (math.exp(2 ** -0.5) + 1)) / 2
    m = AlignSync()
    m.update(frames, first, audio, torch.tensor([1.0]), torch.tensor([1.0]), [0])  # RelSync = 0.5
    assert m.per_clip()[0] == pytest.approx(100 * p * 0.5)
    # ground truth scored against itself: frames == first frame -> P_Align = 0.5, AlignSync = 25
    gt = AlignSync()
    gt.update(first.unsqueeze(1).repeat(1, 11, 1), first, audio, torch.tensor([0.7]), torch.tensor([0.7]), [0])
    assert gt.per_clip()[0] == pytest.approx(25.0)


def test_bootstrap_resamples_videos():
    # one video: every replicate is the same -> zero-width interval
    assert bootstrap_mean([1.0, 2.0, 3.0], [0, 0, 0], 100) == (2.0, 2.0)
    rng = np.random.default_rng(3)
    v = rng.normal(10, 1, 300)
    lo, hi = bootstrap_mean(v, np.repeat(np.arange(100), 3), 500)
    assert lo < v.mean() < hi and hi - lo < 0.6
    d, lo, hi = bootstrap_paired_difference(v + 1, v, np.repeat(np.arange(100), 3), 200)
    assert (d, lo, hi) == pytest.approx((1.0, 1.0, 1.0))


def test_registry_names():
    assert list(METRICS) == ["alignsync", "fid", "fvd", "ia", "it", "relsync"]
    assert METRICS.get("RelSync") is RelSync


def _shard_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(40, 4)), rng.normal(size=(40, 4)) + 0.3
    phi_g, phi_t = torch.from_numpy(rng.normal(size=40)), torch.from_numpy(rng.normal(size=40))
    vids = np.arange(40)
    f, r = FID(), RelSync()
    f.update(torch.from_numpy(fake[rank::world]), torch.from_numpy(real[rank::world]), vids[rank::world], vids[rank::world])
    r.update(phi_g[rank::world], phi_t[rank::world], vids[rank::world])
    fid, rel = float(f.compute()), float(r.compute())
    if rank == 0:
        torch.save({"fid": fid, "relsync": rel,
                    "fid_ref": frechet_distance_from_features(fake, real),
                    "relsync_ref": float(torch.sigmoid(phi_g - phi_t).mean() * 100)}, out)
    dist.destroy_process_group()


def test_states_reduce_across_processes(tmp_path):
    out = tmp_path / "res.pt"
    mp.spawn(_shard_worker, args=(2, 29561, str(out)), nprocs=2, join=True)
    r = torch.load(out)
    assert r["fid"] == pytest.approx(r["fid_ref"], rel=1e-9)
    assert r["relsync"] == pytest.approx(r["relsync_ref"], rel=1e-9)


def test_frechet_bootstrap_from_per_video_moments_equals_recomputing_rows():
    from asva_bench.metrics.bootstrap import draw_counts, video_resamples
    from asva_bench.metrics.frechet import bootstrap_frechet
    rng = np.random.default_rng(3)
    videos = np.repeat(np.arange(12), 3)                      # 12 videos x 3 clips, video-ordered rows
    fake = rng.normal(5.0, 2.0, (36, 6))                       # an offset mean tests the centring
    real = rng.normal(5.5, 1.0, (36, 6))
    fast = bootstrap_frechet(fake, videos, real, videos, draw_counts(12, 25, seed=7))
    slow = [frechet_distance_from_features(fake[rows], real[rows])
            for rows in video_resamples(videos, 25, seed=7)]
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-10)
