"""`asva-bench demo` on a small synth: models it cannot run are reported, not dropped silently."""

from pathlib import Path

from asva_bench.datasets.synth import make_synth
from asva_bench.demo import run_demo


def test_demo_scores_what_it_can_and_names_what_it_could_not(tmp_path, monkeypatch):
    root = make_synth(tmp_path / "synth", videos_per_class=10, classes=["dog_bark", "hammer_strike"],
                      workers=1, progress=False)
    monkeypatch.setenv("ASVA_SYNTH_ROOT", str(root))
    monkeypatch.setenv("ASVA_BENCH_HOME", str(tmp_path / "home"))
    lines = []
    models = (("static", ()), ("avsyncd", ("eta=4", f"checkpoint={tmp_path / 'no-such-checkpoint'}"), "avsyncd-eta4"))
    rep = run_demo(tmp_path / "demo", limit=2, models=models, progress=False, log=lines.append)
    assert list(rep.runs) == ["static"]
    assert (Path(rep.runs["static"]) / "results.json").is_file()
    reason = rep.unavailable["avsyncd-eta4"]
    assert "no-such-checkpoint" in reason and "asva-bench train avsyncd" in reason
    assert any(l.startswith("skipping avsyncd-eta4") for l in lines)
    assert not (tmp_path / "demo" / "runs" / "avsyncd-eta4").exists()   # no empty run folder left
    assert rep.reduced_protocol and "2 of synth's 150 test videos" in rep.reduced_protocol
    assert rep.site is None  # the site is built by the CLI (`asva-bench demo`), the presentation layer
