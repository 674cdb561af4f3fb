"""`asva-bench datasets check`: counts against expectations, bad files named."""

import json

from asva_bench.cli import main
from asva_bench.datasets.synth import make_synth

from .conftest import make_video


def test_check_reports_counts_and_bad_files(tiny_dataset, capsys):
    make_video(tiny_dataset / "videos/dog_bark/v2.mp4", audio=False)
    make_video(tiny_dataset / "videos/hammer_strike/v1.mp4", seconds=1.2)
    bad = tiny_dataset / "videos/hammer_strike/v2.mp4"
    bad.write_bytes(bad.read_bytes()[:1500])
    rc = main(["datasets", "check", "avsync15", "--root", str(tiny_dataset), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and not rep["ok"]
    assert rep["totals"] == {"train": 2, "test": 4}
    problems = {p["file"].split("videos/")[-1]: p["problem"] for p in rep["problems"]}
    assert problems["train.txt"] == "2 train videos, expected 1350"
    assert problems["dog_bark/v2.mp4"] == "no audio stream"
    assert problems["hammer_strike/v1.mp4"].startswith("usable duration 1.2")
    assert problems["hammer_strike/v2.mp4"].startswith("unreadable")


def test_small_synth_build_passes_its_own_check(tmp_path, capsys):
    root = make_synth(tmp_path / "synth", videos_per_class=2, classes=["hammer_strike", "dog_bark"],
                      workers=1, progress=False)
    rc = main(["datasets", "check", "synth", "--root", str(root), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0, rep["problems"]
    assert rep["totals"] == {"train": 2, "test": 2}
