"""Sync controls: shifted-audio runs (`run --audio-shift`) and paired comparisons (`results paired`)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asva_bench import avio
from asva_bench.adapters import Adapter, ClipBatch
from asva_bench.cli import main
from asva_bench.metrics.bootstrap import video_resamples
from asva_bench.protocol import MINI, ProtocolError, audio_window, shifted_audio_start
from asva_bench.results import ResultsError, model_label, paired_difference


# --------------------------------------------------------------------------
# Which audio window a shifted-audio run gives the model
# --------------------------------------------------------------------------
@pytest.mark.parametrize("start,expected", [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.6, 1.1), (2.0, 1.5)])
def test_shifted_start_moves_later_or_else_earlier(start, expected):
    # 4 s recording, 2 s clips: later when start + 0.5 + 2 <= 4, otherwise 0.5 s earlier
    assert shifted_audio_start(start, 0.5, 4.0, MINI) == pytest.approx(expected)


def test_shifted_start_clamps_to_a_recording_a_few_ms_short():
    # a 2.995 s recording (AAC): protocol clips at 0, 0.4975, 0.995; the middle one can move
    # 0.4975 s later (to the end) or 0.4975 s earlier (to 0): later wins ties
    assert shifted_audio_start(0.4975, 0.5, 2.995, MINI) == pytest.approx(0.995)
    assert shifted_audio_start(0.995, 0.5, 2.995, MINI) == pytest.approx(0.495)


def test_shift_that_fits_neither_way_is_an_error():
    with pytest.raises(ProtocolError, match="does not fit"):
        shifted_audio_start(0.2, 0.5, 2.4, MINI, source="v.mp4")


def test_decoded_clips_carry_the_shifted_window(tiny_dataset):
    path = tiny_dataset / "videos/dog_bark/v2.mp4"  # 5 s: clips at 0, 1.5, 3 s
    plain = avio.decode_protocol_clips(path, MINI)
    shifted = avio.decode_protocol_clips(path, MINI, audio_shift=0.5)
    wav, sr = avio.read_audio(path)
    for p, s in zip(plain, shifted):
        assert p.model_audio is None
        torch.testing.assert_close(s.audio, p.audio)  # the clip keeps its own audio
        torch.testing.assert_close(s.frames, p.frames)
        expect = s.start + 0.5 if s.start + 2.5 <= 5.0 else s.start - 0.5
        torch.testing.assert_close(s.model_audio, audio_window(wav, sr, expect, MINI))
        assert not torch.allclose(s.model_audio, s.audio)


class AudioRecorder(Adapter):
    """Records the audio it is given; returns the static video."""
    name = "audio_recorder"
    inputs = ("image", "audio")
    heard: dict = {}

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        for cid, a in zip(batch.clip_ids, batch.audio):
            AudioRecorder.heard[cid] = a.clone()
        return batch.first_frame.unsqueeze(1).expand(-1, batch.protocol.num_frames, -1, -1, -1).clone()


def test_run_with_audio_shift_feeds_shifted_audio_and_writes_true_audio(tiny_dataset, tmp_path):
    AudioRecorder.heard = {}
    out = tmp_path / "shifted"
    rc = main(["run", "--model", "tests.test_controls:AudioRecorder", "--dataset", "avsync15",
               "--root", str(tiny_dataset), "--profile", "mini", "--out", str(out), "--no-score",
               "--audio-shift", "0.5"])
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    assert record["conditioning"]["audio_shift_s"] == 0.5
    path = tiny_dataset / "videos/hammer_strike/v1.mp4"  # 4 s: clips at 0, 1, 2 s
    clips = avio.decode_protocol_clips(path, MINI, audio_shift=0.5)
    for i, c in enumerate(clips):
        torch.testing.assert_close(AudioRecorder.heard[f"hammer_strike/v1_clip-{i:02d}"], c.model_audio)
    # the written clip carries the true audio (what scoring listens to)
    wav, sr = avio.read_audio(out / "videos/hammer_strike/v1_clip-00.mp4")
    n = min(len(clips[0].audio), len(wav)) - 1024  # read_audio removes the AAC priming
    err_true = (wav[:n] - clips[0].audio[:n]).abs().mean()
    err_shifted = (wav[:n] - clips[0].model_audio[:n]).abs().mean()
    assert err_true < 0.5 * err_shifted
    # resuming as an ordinary run into the same folder is refused
    rc = main(["run", "--model", "tests.test_controls:AudioRecorder", "--dataset", "avsync15",
               "--root", str(tiny_dataset), "--profile", "mini", "--out", str(out), "--no-score"])
    assert rc != 0


def test_label_names_the_shift():
    r = {"model": {"name": "static", "config": {}}, "conditioning": {"audio_shift_s": 0.5}}
    assert model_label(r) == "static [audio shifted 0.5 s]"


# --------------------------------------------------------------------------
# Paired differences
# --------------------------------------------------------------------------
def _fake_run(folder: Path, values: dict, fingerprint="00000000000000f1"):
    """A scored run with just what the results schema requires (asva_bench.runs.Results)."""
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "schema": "asva-bench/results/v1", "fingerprint": fingerprint, "model": {"name": "static", "config": {}},
        "dataset": {"name": "synth", "manifest_hash": "0" * 16}, "profile": "mini",
        "protocol": {"name": "mini-64", "fingerprint": "0" * 16}, "created": "2026-12-01T00:00:00Z",
        "seeds": {}, "versions": {}, "per_class": {}, "clips": {"expected": len(values), "failed": 0},
        "metrics": {"relsync": {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "higher_is_better": True}}}))
    rows = [{"clip_id": cid, "video_id": cid.split("_clip")[0], "metrics": {"relsync": v}}
            for cid, v in values.items()]
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _values(rng, n_videos=20, clips=3):
    return {f"c/v{k}_clip-{i:02d}": float(rng.normal(20, 5)) for k in range(n_videos) for i in range(clips)}


def test_paired_difference_matches_an_independent_bootstrap(tmp_path):
    rng = np.random.default_rng(0)
    a = _values(rng)
    b = {k: v - 3.0 + float(rng.normal(0, 1)) for k, v in a.items()}
    d = paired_difference(_fake_run(tmp_path / "a", a), _fake_run(tmp_path / "b", b), "relsync", 500)
    ids = sorted(a)
    diff = np.array([a[i] - b[i] for i in ids])
    vid = np.unique([i.split("_clip")[0] for i in ids], return_inverse=True)[1]
    means = [diff[rows].mean() for rows in video_resamples(vid, 500)]
    assert d["difference"] == pytest.approx(diff.mean())
    assert d["ci_low"] == pytest.approx(np.percentile(means, 2.5))
    assert d["ci_high"] == pytest.approx(np.percentile(means, 97.5))
    assert d["n_clips"] == 60 and d["n_videos"] == 20 and d["excludes_zero"]


def test_constant_difference_has_a_zero_width_interval(tmp_path):
    a = _values(np.random.default_rng(1))
    b = {k: v - 2.0 for k, v in a.items()}
    d = paired_difference(_fake_run(tmp_path / "a", a), _fake_run(tmp_path / "b", b))
    assert d["difference"] == pytest.approx(2.0)
    assert d["ci_low"] == pytest.approx(2.0) and d["ci_high"] == pytest.approx(2.0)


def test_paired_refuses_different_clips_and_fingerprints(tmp_path):
    a = _values(np.random.default_rng(2))
    b = dict(a)
    b.pop(sorted(b)[0])
    with pytest.raises(ResultsError, match="different clips"):
        paired_difference(_fake_run(tmp_path / "a", a), _fake_run(tmp_path / "b", b))
    with pytest.raises(ResultsError, match="different fingerprints"):
        paired_difference(tmp_path / "a", _fake_run(tmp_path / "c", a, fingerprint="00000000000000f2"))
    with pytest.raises(ResultsError, match="unknown metric"):
        paired_difference(tmp_path / "a", tmp_path / "a", "relsink")


def test_paired_cli_json(tmp_path, capsys):
    a = _values(np.random.default_rng(3))
    _fake_run(tmp_path / "a", a)
    _fake_run(tmp_path / "b", {k: v + 1.0 for k, v in a.items()})
    assert main(["results", "paired", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["difference"] == pytest.approx(-1.0) and d["excludes_zero"]
