"""The scoring stage on real run folders with the shipped mini evaluators."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asva_bench import avio
from asva_bench.cli import main
from asva_bench.evaluators import load_suite
from asva_bench.feature_cache import FeatureCache
from asva_bench.fsutil import is_temp_file
from asva_bench.metrics import METRIC_ORDER, AlignSync, RelSync
from asva_bench.protocol import MINI
from asva_bench.results import ResultsError, load_results, to_frame
from asva_bench.scoring import ScoreOptions, ScoringError, gen_features, gt_features, score_run

from .conftest import make_video

NEEDS = {"image_features", "video_features", "vision_embedding", "audio_embedding", "sync_logit"}


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASVA_BENCH_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def suite():
    return load_suite("mini")


def generate(tiny_dataset, out, model="static", *extra):
    assert main(["run", "--model", model, "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(out), "--no-score", *extra]) == 0
    return out


def test_same_clips_score_relsync_exactly_50(tiny_dataset, suite):
    clips = avio.decode_protocol_clips(tiny_dataset / "videos/dog_bark/v1.mp4", MINI)
    frames = torch.stack([c.frames for c in clips])
    audio = torch.stack([c.audio for c in clips])
    with torch.no_grad():
        g = gen_features(suite, frames, audio, MINI, NEEDS)
        t = gt_features(suite, frames, audio, MINI, NEEDS)
    rel = RelSync()
    rel.update(g["sync_logit"], t["sync_logit"], [0, 0, 0])
    assert rel.per_clip().tolist() == [50.0, 50.0, 50.0]
    al = AlignSync()
    al.update(g["vision_embedding"], t["first_frame_embedding"], g["audio_embedding"],
              g["sync_logit"], t["sync_logit"], [0, 0, 0])
    assert al.per_clip() == pytest.approx([25.0] * 3, abs=3.0)  # P_Align ~ 0.5 when frames resemble frame 1


def test_static_run_scores_all_metrics_with_cache(tiny_dataset, tmp_path, suite, monkeypatch):
    run = generate(tiny_dataset, tmp_path / "static")
    saves = []
    orig = FeatureCache.save
    monkeypatch.setattr(FeatureCache, "save", lambda self, k, f: (saves.append(k), orig(self, k, f)))
    res = score_run(run, suite, ScoreOptions(progress=False, replicates=200, decode_threads=0))
    assert list(res["metrics"]) == list(METRIC_ORDER)
    for m, s in res["metrics"].items():
        assert s["ci_low"] <= s["ci_high"], m
    assert res["clips"]["scored"] == 12 and res["coverage"] == 1.0
    rows = [json.loads(l) for l in (run / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]["metrics"]) == {"ia", "it", "relsync", "alignsync"}
    assert set(res["per_class"]) == {"dog_bark", "hammer_strike"}
    assert len(saves) == 1
    # a second model on the same dataset reuses the cached ground-truth features
    gt_run = generate(tiny_dataset, tmp_path / "gt", "groundtruth")
    res_gt = score_run(gt_run, suite, ScoreOptions(progress=False, replicates=200, decode_threads=0))
    assert len(saves) == 1
    assert res_gt["metrics"]["relsync"]["mean"] == pytest.approx(50.0, abs=0.5)
    assert res_gt["fingerprint"] == res["fingerprint"]
    assert res_gt["metrics"]["fid"]["mean"] < res["metrics"]["fid"]["mean"] or \
        res_gt["metrics"]["fvd"]["mean"] < res["metrics"]["fvd"]["mean"]


def test_missing_clip_is_named_and_coverage_recorded(tiny_dataset, tmp_path, suite, capsys):
    run = generate(tiny_dataset, tmp_path / "r")
    (run / "videos/hammer_strike/v2_clip-02.mp4").unlink()
    with pytest.raises(ScoringError, match="1 expected clip\\(s\\) missing: hammer_strike/v2_clip-02.*--allow-incomplete"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=0))
    res = score_run(run, suite, ScoreOptions(progress=False, decode_threads=0, allow_incomplete=True, replicates=100))
    assert res["clips"]["scored"] == 11 and res["clips"]["failed_ids"] == ["hammer_strike/v2_clip-02"]
    assert res["coverage"] == pytest.approx(11 / 12)


def test_bad_clips_are_named(tiny_dataset, tmp_path, suite):
    run = generate(tiny_dataset, tmp_path / "r")
    bad = run / "videos/dog_bark/v1_clip-00.mp4"
    avio.write_clip(bad, torch.rand(10, 3, 64, 64), 6.0, audio=torch.zeros(32000))
    with pytest.raises(avio.MediaError, match="v1_clip-00.mp4: 10 frames, the protocol needs 12"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=0))
    avio.write_clip(bad, torch.rand(12, 3, 64, 64), 6.0, audio=None)
    with pytest.raises(avio.MediaError, match="v1_clip-00.mp4: no audio stream"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=0))
    (run / "videos/dog_bark/extra_clip-00.mp4").write_bytes(bad.read_bytes())
    with pytest.raises(ScoringError, match="not in the protocol: dog_bark/extra_clip-00"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=0))


def test_decoding_threads_give_the_inline_results_and_raise_its_errors(tiny_dataset, tmp_path, suite):
    """Clips decoded by threads ahead of the forwards: the same files, byte for byte, as decoding
    them in the main thread; a bad clip decoded by a thread is reported as inline, and the stage
    stops without leaving its decoding threads running."""
    import threading
    run = generate(tiny_dataset, tmp_path / "r")
    own = torch.get_num_threads()
    inline = score_run(run, suite, ScoreOptions(progress=False, decode_threads=0, replicates=100))
    scores_inline = (run / "scores.jsonl").read_bytes()
    threaded = score_run(run, suite, ScoreOptions(progress=False, decode_threads=2, replicates=100, batch_size=4))
    assert threaded["metrics"] == inline["metrics"] and threaded["fingerprint"] == inline["fingerprint"]
    assert (run / "scores.jsonl").read_bytes() == scores_inline
    # the asva-reference track's reader (tensor ops in the decoding threads) gives the same too
    ref = [score_run(run, suite, ScoreOptions(progress=False, decode_threads=n, replicates=100, batch_size=4,
                                              track="asva-reference")) for n in (0, 2)]
    assert ref[0]["metrics"] == ref[1]["metrics"] and ref[0]["fingerprint"] == ref[1]["fingerprint"]
    results = (run / "results.json").read_bytes()
    bad = run / "videos/hammer_strike/v2_clip-01.mp4"
    bad.write_bytes(bad.read_bytes()[:1500])
    with pytest.raises(avio.MediaError, match="v2_clip-01.mp4: .*(corrupt|truncated)"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=2, replicates=100, batch_size=4))
    # nothing half-written: the previous results stand, no temporary file is left
    assert (run / "results.json").read_bytes() == results and (run / "scores.jsonl").read_bytes() == scores_inline
    assert not [f for f in run.rglob("*") if f.is_file() and is_temp_file(f)]
    assert not [t for t in threading.enumerate() if t.name.startswith("asva-decode")]
    # the decoding threads run single-threaded torch; the caller's setting, and the one a new thread
    # starts with, are left as they were
    seen = []
    probe = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    probe.start()
    probe.join()
    assert torch.get_num_threads() == own and seen == [own]


def test_prefetched_keeps_order_and_bounds_the_look_ahead():
    import threading
    from asva_bench.scoring import prefetched
    started, gate = [], threading.Event()

    def work(i):
        started.append(i)
        if i == 0:
            gate.wait(5)
        return i * i
    gen = prefetched(work, range(20), threads=2, ahead=3)
    first = threading.Thread(target=lambda: started.append(("got", next(gen))))
    first.start()
    import time
    time.sleep(0.2)
    # item 0 is awaited, 3 more are queued behind it, no more
    assert sorted(x for x in started if isinstance(x, int)) == [0, 1, 2, 3]
    gate.set()
    first.join(5)
    assert [next(gen) for _ in range(19)] == [i * i for i in range(1, 20)]
    assert list(prefetched(work, range(5), threads=0, ahead=2)) == [0, 1, 4, 9, 16]


def test_changed_dataset_is_refused(tiny_dataset, tmp_path, suite):
    run = generate(tiny_dataset, tmp_path / "r")
    make_video(tiny_dataset / "videos/hammer_strike/v1.mp4", seconds=4.5, seed=99)
    with pytest.raises(ScoringError, match="changed since the run was generated.*--allow-dataset-change"):
        score_run(run, suite, ScoreOptions(progress=False, decode_threads=0))
    res = score_run(run, suite, ScoreOptions(progress=False, decode_threads=0, allow_dataset_change=True,
                                             replicates=100))
    assert res["dataset_changed"] is True


def test_torchrun_scoring_equals_single_process(tiny_dataset, tmp_path, suite):
    run = generate(tiny_dataset, tmp_path / "r")
    single = score_run(run, suite, ScoreOptions(progress=False, decode_threads=0, replicates=100))
    (run / "results.json").unlink()
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29541", "-m", "asva_bench.cli",
                          "score", str(run), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    multi = json.loads((run / "results.json").read_text())
    for m in METRIC_ORDER:
        assert multi["metrics"][m]["mean"] == pytest.approx(single["metrics"][m]["mean"], rel=1e-5, abs=1e-6), m


def test_results_table_refuses_mixed_fingerprints(tiny_dataset, tmp_path, suite, capsys):
    a = generate(tiny_dataset, tmp_path / "a")
    b = generate(tiny_dataset, tmp_path / "b", "static", "--limit", "1")
    for r in (a, b):
        score_run(r, suite, ScoreOptions(progress=False, decode_threads=0, replicates=50))
    with pytest.raises(ResultsError, match="different fingerprints"):
        to_frame([load_results(a), load_results(b)])
    assert main(["results", "table", str(a), str(b), "--allow-mixed", "--out", str(tmp_path / "t")]) == 0
    md = (tmp_path / "t.md").read_text()
    assert "(fingerprint differs)" in md
    tex = (tmp_path / "t.tex").read_text()
    assert "RelSync" in tex and "\\textbf" not in tex  # static is a reference row, never bold


def test_model_label_shows_only_changed_arguments():
    from asva_bench.results import model_label
    cfg = {"strength": 2.0, "smoothing": 3, "steps": None, "mask_threshold": 0.3, "local": True, "base": None,
           "dtype": "auto", "default_steps": {"mini": 10, "paper": 50}, "scheduler": "ddim"}
    assert model_label({"model": {"name": "aadiff", "config": cfg}}) == "aadiff"
    assert model_label({"model": {"name": "aadiff", "config": {**cfg, "strength": 4.0}}}) == "aadiff (strength=4.0)"
    # an adapter not installed here: its short scalar settings
    other = {"model": {"name": "someone:Else", "config": {"eta": 4, "table": {"a": 1}, "sha": "x" * 64}}}
    assert model_label(other) == "someone:Else (eta=4)"
