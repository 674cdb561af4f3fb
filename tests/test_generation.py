"""The generation stage: layout, resume, sharding, bad input, adapter validation."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asva_bench import avio
from asva_bench.adapters import Adapter, AdapterError, ClipBatch, build_adapter, validate_output
from asva_bench.cli import main
from asva_bench.protocol import MINI

from .conftest import make_video

CLIP_IDS = sorted(f"{c}/v{k}_clip-{i:02d}" for c in ("dog_bark", "hammer_strike")
                  for k in (1, 2) for i in range(3))


def run_cli(*args) -> int:
    """The generation stage alone (scoring has its own tests)."""
    args = list(args)
    return main(args + ["--no-score"] if args[:1] == ["run"] else args)


def clip_files(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "videos").rglob("*.mp4"))}


def test_static_run_writes_protocol_clips(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(out), "--json")
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run"]["clips"] == {"expected": 12, "generated": 12, "failed": 0, "skipped_inputs": []}
    files = sorted(str(p.relative_to(out / "videos"))[:-4] for p in (out / "videos").rglob("*.mp4"))
    assert files == CLIP_IDS
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["name"] == "static" and manifest["profile"] == "mini"
    assert manifest["protocol"]["height"] == 64 and manifest["dataset"]["manifest_hash"]
    assert manifest["versions"]["torch"].startswith("2.14.1")

    # each clip: 12 frames at 6 fps, 64x64, GT audio muxed, all frames = the GT first frame
    gt = avio.decode_protocol_clips(tiny_dataset / "videos/hammer_strike/v2.mp4", MINI)
    clip = out / "videos/hammer_strike/v2_clip-01.mp4"
    info = avio.probe(clip)
    assert (info.num_frames, info.fps, info.width, info.height, info.has_audio) == (12, 6.0, 64, 64, True)
    frames = avio.VideoFrames(clip)
    got = torch.from_numpy(frames.get(range(12))).permute(0, 3, 1, 2).float() / 255
    assert (got - gt[1].frames[0]).abs().mean() < 4 / 255
    wav, sr = avio.read_audio(clip)
    assert sr == 16000 and abs(len(wav) - 32000) <= 1
    corr = np.corrcoef(wav[:31000].numpy(), gt[1].audio[:31000].numpy())[0, 1]
    assert corr > 0.95  # the ground-truth audio, in place (no priming delay)


def test_resume_generates_only_missing_clips(tiny_dataset, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "resumed"
    args = ["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
            "--profile", "mini"]
    assert run_cli(*args, "--out", str(ref)) == 0
    assert run_cli(*args, "--out", str(out)) == 0
    victim = out / "videos/dog_bark/v1_clip-01.mp4"
    keep = out / "videos/hammer_strike/v2_clip-02.mp4"
    victim.unlink()
    # a half-written leftover of a killed writer is never accepted
    (victim.parent / ".v1_clip-01.tmp-deadbeef.mp4").write_bytes(b"\x00" * 100)
    before = keep.stat().st_mtime_ns
    assert run_cli(*args, "--out", str(out)) == 0
    assert keep.stat().st_mtime_ns == before
    assert clip_files(out) == clip_files(ref)


def test_killed_run_resumes_to_identical_result(tiny_dataset, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    cmd = [sys.executable, "-m", "asva_bench.cli", "run", "--model", "static", "--dataset", "avsync15",
           "--root", str(tiny_dataset), "--profile", "mini", "--no-score"]
    assert subprocess.run(cmd + ["--out", str(ref)], capture_output=True).returncode == 0
    env = {**os.environ, "ASVA_TEST_SLOW_ADAPTER": "1"}
    slow = cmd[:5] + ["tests.slow_static:SlowStatic"] + cmd[6:]
    proc = subprocess.Popen(slow + ["--out", str(out)], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "videos").rglob("*.mp4"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "videos").rglob("*.mp4")))
    assert 3 <= n_before < 12
    res = subprocess.run(slow + ["--out", str(out)], env=env, cwd=Path(__file__).parents[1],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert clip_files(out) == clip_files(ref)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_torchrun_two_processes_equal_single(tiny_dataset, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    base = ["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
            "--profile", "mini", "--no-score"]
    assert run_cli(*base, "--out", str(single)) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29531", "-m",
                          "asva_bench.cli", *base, "--out", str(multi)],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert clip_files(multi) == clip_files(single)
    a, b = (json.loads((p / "run.json").read_text()) for p in (single, multi))
    volatile = {"timing_s", "launch", "created", "finished"}
    assert {k: v for k, v in a.items() if k not in volatile} == {k: v for k, v in b.items() if k not in volatile}
    assert b["launch"]["world_size"] == 2


def test_run_folder_of_another_run_is_refused(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile", "mini", "--out", str(out)]
    assert run_cli(*base, "--model", "static") == 0
    rc = run_cli(*base, "--model", "static", "--seed", "7")
    assert rc == 2
    assert "holds a different run (differs in: seeds)" in capsys.readouterr().err


# --- bad input ---------------------------------------------------------------
def test_corrupt_video_names_file_and_skip_bad_lists_it(tiny_dataset, tmp_path, capsys):
    bad = tiny_dataset / "videos/hammer_strike/v1.mp4"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    args = ["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
            "--profile", "mini"]
    assert run_cli(*args, "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "hammer_strike/v1.mp4" in err and "--skip-bad" in err
    assert not list((tmp_path / "a").rglob("hammer_strike/v1_clip-*.mp4"))
    assert run_cli(*args, "--out", str(tmp_path / "b"), "--skip-bad") == 1  # incomplete
    rec = json.loads((tmp_path / "b/run.json").read_text())
    assert rec["status"] == "incomplete"
    assert rec["clips"]["generated"] == 9 and rec["clips"]["failed"] == 3
    assert [s["video"] for s in rec["clips"]["skipped_inputs"]] == ["hammer_strike/v1.mp4"]


def test_video_without_audio_is_named(tiny_dataset, tmp_path, capsys):
    make_video(tiny_dataset / "videos/dog_bark/v2.mp4", audio=False)
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert rc == 2 and "dog_bark/v2.mp4: no audio stream" in err


def test_short_video_is_named(tiny_dataset, tmp_path, capsys):
    make_video(tiny_dataset / "videos/dog_bark/v2.mp4", seconds=1.5)
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert rc == 2 and "dog_bark/v2.mp4" in err and "shorter than one 2 s clip" in err


def test_missing_class_folder_and_missing_file(tiny_dataset, tmp_path, capsys):
    shutil.rmtree(tiny_dataset / "videos/hammer_strike")
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--out", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert rc == 2 and "names class folder 'hammer_strike'" in err and "train.txt:2" in err
    (tiny_dataset / "train.txt").write_text("dog_bark/v0.mp4\n")
    (tiny_dataset / "test.txt").write_text("dog_bark/v1.mp4\ndog_bark/gone.mp4\n")
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--out", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert rc == 2 and "test.txt:2 names dog_bark/gone.mp4" in err


def test_missing_root_message(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ASVA_AVSYNC15_ROOT", raising=False)
    rc = run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(tmp_path / "nope"))
    err = capsys.readouterr().err
    assert rc == 2
    for piece in ("dataset 'avsync15'", str(tmp_path / "nope"), "videos/<class_folder>/<file>.mp4",
                  "--root DIR", "ASVA_AVSYNC15_ROOT"):
        assert piece in err


def test_unknown_names_suggest(capsys):
    assert run_cli("run", "--model", "statik", "--dataset", "avsync15") == 2
    assert "Did you mean 'static'" in capsys.readouterr().err
    assert run_cli("run", "--model", "static", "--dataset", "avsync16") == 2
    assert "Did you mean 'avsync15'" in capsys.readouterr().err
    with pytest.raises(AdapterError, match="has no argument 'etta'.*Valid: \\(none\\)"):
        build_adapter("static", ["etta=4"])


# --- adapter output validation ------------------------------------------------
def _batch(b=2):
    cfg = MINI
    return ClipBatch(first_frame=torch.rand(b, 3, 64, 64), audio=torch.zeros(b, 32000),
                     mel=torch.zeros(b, 1, 128, 204), text=["x"] * b,
                     clip_ids=[f"c/v{i}_clip-00" for i in range(b)], seeds=[1] * b, protocol=cfg)


class Echo(Adapter):
    name = "echo"

    def __init__(self, value=None):
        self.value = value


@pytest.mark.parametrize("out,msg", [
    (torch.rand(2, 11, 3, 64, 64), "output shape \\[2, 11, 3, 64, 64\\], expected \\[2, 12, 3, 64, 64\\]"),
    (torch.full((2, 12, 3, 64, 64), float("nan")), "clip c/v0_clip-00 has NaN/inf"),
    (torch.rand(2, 12, 3, 64, 64) * 2 - 1, "outputs must be in \\[0, 1\\]"),
    (np.zeros((2, 12, 3, 64, 64)), "returned ndarray"),
])
def test_adapter_output_validation(out, msg):
    with pytest.raises(AdapterError, match=msg) as e:
        validate_output(Echo(), _batch(), out)
    assert "echo" in str(e.value)


def test_first_frame_is_the_input():
    b = _batch()
    out = validate_output(Echo(), b, torch.rand(2, 12, 3, 64, 64))
    assert torch.equal(out[:, 0], b.first_frame)
    assert Echo(value=3).config() == {"value": 3}


def test_limit_takes_videos_round_robin_over_classes():
    from asva_bench.datasets import VideoEntry
    from asva_bench.runs import limited_entries

    def entry(cls, k):
        rel = f"{cls}/{cls}_{k:04d}.mp4"
        return VideoEntry(rel_path=rel, class_name=cls, text=cls, split="test", path=f"/data/{rel}")
    entries = [entry(c, k) for c in ("a", "b", "c") for k in range(4)]
    got = [e.rel_path for e in limited_entries(entries[::-1], 5)]
    assert got == ["a/a_0000.mp4", "a/a_0001.mp4", "b/b_0000.mp4", "b/b_0001.mp4", "c/c_0000.mp4"]
    assert len(limited_entries(entries, None)) == 12 and len(limited_entries(entries, 99)) == 12
