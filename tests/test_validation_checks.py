"""The validity suite's decisions: paired bootstrap tests, not inequalities of means."""

import numpy as np

from asva_bench.metrics.bootstrap import draw_counts
from asva_bench.validation import ALPHA, checks, conditions, paired_bounds

N = 15  # test videos, one clip each (the suite's unit)


def world(relsync_by_shift, seed=0, frechet_step=1.0):
    """Evidence and table for every condition: per-clip values around the given means (noise sd 3),
    Frechet replicate values rising with noise / blur level by ``frechet_step`` per level."""
    rng = np.random.default_rng(seed)
    counts = draw_counts(N, 400, seed=1)
    common = rng.normal(0, 3, N)  # video effects shared by all conditions: what pairing removes
    evidence, table = {}, []
    for c in conditions():
        if c.family == "shift":
            rel = relsync_by_shift[c.level]
        elif c.family == "static":
            rel = 9.5
        else:
            rel = 20.0
        per_clip = {"relsync": rel + common + rng.normal(0, 0.3, N), "ia": 70 + common + rng.normal(0, 0.3, N)}
        if c.family == "wrong_audio":
            per_clip["ia"] = per_clip["ia"] - 60
        per_clip["alignsync"] = per_clip["relsync"] / 2
        level = {"noise": [0.05, 0.1, 0.2, 0.4], "blur": [0.5, 1.0, 2.0, 4.0]}.get(c.family)
        k = level.index(c.level) + 1 if level else 0
        reps = frechet_step * k + rng.normal(0, 0.01, len(counts)) if k else np.zeros(len(counts))
        ev = dict(per_clip, fid=reps, fvd=reps.copy())
        evidence[c.name] = ev
        metrics = {m: {"mean": float(np.mean(v)), "ci_low": float(np.min(v)), "ci_high": float(np.max(v))}
                   for m, v in ev.items()}
        table.append({"condition": c.name, "family": c.family, "level": c.level, "metrics": metrics})
    return table, evidence, counts


def by_name(result, start):
    return next(c for c in result if c["check"].startswith(start))


def test_a_flat_tail_passes_where_strict_means_failed():
    # the measured 15-video case: 0.33 s and 0.5 s both far from sync (9.001 vs 9.008)
    table, ev, counts = world({0.0: 50.0, 0.17: 12.8, 0.33: 9.001, 0.5: 9.008, 1.0: 8.9})
    means = [r["metrics"]["relsync"]["mean"] for r in table if r["family"] == "shift"]
    result = checks(table, ev, counts)
    c = by_name(result, "relsync falls with shift")
    assert c["pass"], c["evidence"]
    assert c["test"].startswith("paired bootstrap") and ALPHA == 0.05
    assert by_name(result, "relsync at 0.5 s not significantly above Static")["pass"]
    assert all(x["pass"] for x in result if x["required"]), [x["check"] for x in result if not x["pass"]]
    assert means  # the table's means are reported beside the tests


def test_a_significant_rise_fails():
    table, ev, counts = world({0.0: 50.0, 0.17: 8.0, 0.33: 14.0, 0.5: 9.0, 1.0: 8.9})
    c = by_name(checks(table, ev, counts), "relsync falls with shift")
    assert not c["pass"]
    assert c["evidence"]["steps"][1]["lower"] > 0  # 0.17 -> 0.33 rises significantly


def test_no_drop_at_all_fails():
    table, ev, counts = world({0.0: 9.0, 0.17: 9.0, 0.33: 9.0, 0.5: 9.0, 1.0: 9.0})
    assert not by_name(checks(table, ev, counts), "relsync falls with shift")["pass"]


def test_frechet_must_rise_with_noise():
    table, ev, counts = world({0.0: 50.0, 0.17: 12.8, 0.33: 9.0, 0.5: 8.0, 1.0: 7.0})
    assert by_name(checks(table, ev, counts), "fid rises with noise")["pass"]
    table, ev, counts = world({0.0: 50.0, 0.17: 12.8, 0.33: 9.0, 0.5: 8.0, 1.0: 7.0}, frechet_step=-1.0)
    assert not by_name(checks(table, ev, counts), "fid rises with noise")["pass"]


def test_paired_bounds_remove_the_shared_video_effect():
    table, ev, counts = world({0.0: 50.0, 0.17: 12.8, 0.33: 9.0, 0.5: 8.0, 1.0: 7.0})
    b = paired_bounds("shift 0.33s", "shift 0.5s", "relsync", ev, counts)
    assert b["difference"] == np.mean(ev["shift 0.33s"]["relsync"] - ev["shift 0.5s"]["relsync"])
    # the paired interval is narrow (noise sd 0.3 per clip), although each condition's clips spread by 3
    assert b["upper"] - b["lower"] < 0.5 and b["lower"] > 0


def test_validate_end_to_end_on_a_tiny_dataset(tiny_dataset):
    from asva_bench.datasets import get_dataset
    from asva_bench.evaluators import load_suite
    from asva_bench.profiles import protocol_for
    from asva_bench.validation import format_table, validate
    spec = get_dataset("avsync15")
    entries = spec.load(tiny_dataset).split("test")
    report = validate(load_suite("mini"), entries, protocol_for(spec.protocol, "mini"), replicates=50,
                      progress=False)
    assert report["n_clips"] == 4 and len(report["table"]) == 16
    fid = {r["condition"]: r["metrics"]["fid"] for r in report["table"]}
    assert fid["shift 0s"]["mean"] == 0.0 < fid["noise 0.05"]["mean"] < fid["noise 0.4"]["mean"]
    assert fid["noise 0.4"]["ci_low"] < fid["noise 0.4"]["ci_high"]
    for c in report["checks"]:
        assert c["test"].startswith("paired bootstrap") and "evidence" in c
    assert "[PASS]" in format_table(report) or "[FAIL]" in format_table(report)
