"""Scoring a run on both protocol tracks: same clips, separate results, fingerprints and caches."""

import json

import pytest

from asva_bench.cli import main
from asva_bench.evaluators import load_suite
from asva_bench.protocol import MINI, PAPER
from asva_bench.profiles import protocol_for
from asva_bench.runs import read_run
from asva_bench.scoring import ScoreOptions, run_protocol, score_run
from asva_bench.tracks import check_track, default_track, record_track


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASVA_BENCH_HOME", str(tmp_path / "home"))


def test_track_defaults_and_fingerprints():
    assert PAPER.track == "asva-reference" and MINI.track == "corrected"
    assert default_track("paper") == "asva-reference" and default_track("mini") == "corrected"
    assert protocol_for(PAPER, "mini").track == "corrected"
    assert protocol_for(PAPER, "paper").track == "asva-reference"
    assert protocol_for(PAPER, "paper", "corrected").fingerprint() != PAPER.fingerprint()
    assert "track" in PAPER.to_dict()
    with pytest.raises(ValueError, match="Did you mean 'corrected'"):
        check_track("corected")
    # results from before tracks: the profile's default
    assert record_track({"name": "mini-64"}, "mini") == "corrected"
    assert record_track({"name": "paper-256"}, "paper") == "asva-reference"
    old = {"profile": "mini", "protocol": {k: v for k, v in MINI.to_dict().items() if k != "track"}}
    assert run_protocol(old) == MINI


def test_rescoring_on_the_other_track(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "static"
    assert main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(run), "--no-score"]) == 0
    assert read_run(run).to_dict()["protocol"]["track"] == "corrected"
    suite = load_suite("mini")
    own = score_run(run, suite, ScoreOptions(progress=False, replicates=100, decode_threads=0))
    own_bytes = (run / "results.json").read_bytes()
    texts = []
    embed = suite.embed_text
    suite.embed_text = lambda t: (texts.extend(t), embed(t))[1]
    other = score_run(run, suite, ScoreOptions(progress=False, replicates=100, decode_threads=0,
                                               track="asva-reference"))
    assert texts == ["dog_bark", "hammer_strike"]  # IT's text: the raw folder names
    suite.embed_text = embed
    assert (run / "results.json").read_bytes() == own_bytes          # the run's own results untouched
    on_disk = json.loads((run / "results.asva-reference.json").read_text())
    assert on_disk["protocol"]["track"] == other["protocol"]["track"] == "asva-reference"
    assert on_disk["generated_on_track"] == "corrected" and "generated_on_track" not in own
    assert (run / "results.asva-reference.scores.jsonl").is_file()
    assert own["protocol"]["track"] == "corrected" and own["fingerprint"] != other["fingerprint"]
    # the same mp4s, other numbers: FID moves (batch-statistics BatchNorm, frame pick); IT barely (the
    # mini tokenizer reads underscores as spaces, so only the frames differ)
    assert other["metrics"]["fid"]["mean"] != pytest.approx(own["metrics"]["fid"]["mean"], rel=1e-3)
    # ground-truth caches are keyed by the track: two entries
    caches = list((tmp_path / "home" / "cache" / "features").glob("*.json"))
    assert len(caches) == 2
    # the CLI rescoring path, and tables refuse to rank the two together
    capsys.readouterr()
    assert main(["score", str(run), "--track", "asva-reference", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["fid"]["mean"] == other["metrics"]["fid"]["mean"]
    assert main(["results", "table", str(run), str(run / "results.asva-reference.json")]) == 2
