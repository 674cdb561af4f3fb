"""The rough edges a new user hit (issue 14, item 5), one test (or more) each."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from asva_bench import avio
from asva_bench.cli import build_parser, main
from tests.browser.fixture_runs import fingerprint_of, results_for, write_entry
from tests.conftest import SR, make_video

pytestmark = pytest.mark.usefixtures("single_thread")
CONSOLE = str(Path(sys.executable).parent / "asva-bench")


def cli(args, cwd=None, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})})
    return subprocess.run([CONSOLE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


# 1. one flag per concept ------------------------------------------------------------------
def test_sync_commands_take_profile_and_keep_size_as_a_deprecated_alias(capsys):
    p = build_parser(heavy=False)
    for action in ("train", "eval"):
        assert p.parse_args(["sync", action, "--profile", "paper"]).size == "paper"
        assert p.parse_args(["sync", action]).size == "mini"
        capsys.readouterr()
        assert p.parse_args(["sync", action, "--size", "paper"]).size == "paper"
        assert "--size is deprecated; use --profile paper" in capsys.readouterr().err


# 2. the README's adapter example, as written ---------------------------------------------------------
def test_module_class_resolves_from_the_working_directory_with_the_console_script(tiny_dataset, tmp_path):
    import re
    code = re.search(r"```python\n# my_models.py\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(),
                     re.S).group(1)
    (tmp_path / "my_models.py").write_text(code)
    res = cli(["run", "--model", "my_models:LoudnessFlash", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--profile", "mini", "--model-arg", "strength=0.3", "--out", str(tmp_path / "run"), "--no-score",
               "--json", "--limit", "1"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["run"]["clips"]["generated"] == 3


# 3. animate and adapters that fail: one line, no traceback ---------------------------------------------
def test_animate_with_a_missing_or_non_media_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("not media")
    from PIL import Image
    Image.new("RGB", (32, 32)).save(tmp_path / "img.png")
    for image, audio, expect in (("missing.png", "notes.txt", "missing.png does not exist"),
                                 ("img.png", "nothere.wav", "nothere.wav does not exist"),
                                 ("img.png", "notes.txt", "notes.txt: cannot open as a video container"),
                                 ("notes.txt", "notes.txt", "notes.txt")):
        monkeypatch.chdir(tmp_path)
        rc = main(["animate", image, audio, "--out", "x.mp4"])        # an uncaught exception fails the test
        err = capsys.readouterr().err
        errors = [x for x in err.splitlines() if x.startswith("error:")]
        assert rc == 2 and len(errors) == 1 and expect in errors[0], err
        assert all(x.startswith(("error:", "warning:")) for x in err.splitlines() if x.strip())


BROKEN = '''
from asva_bench.adapters import Adapter


class Broken(Adapter):
    name = "broken-model"

    def __init__(self, size: int = 3):
        raise RuntimeError("weights not found at /nowhere")


class NoName(Adapter):
    inputs = ("image",)


class BadInput(Adapter):
    name = "bad-input"
    inputs = ("imgae", "audio")
'''


def test_an_adapter_whose_init_raises_is_one_line_naming_it(tmp_path, tiny_dataset, capsys, monkeypatch):
    (tmp_path / "broken_models.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--model", "broken_models:Broken", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--profile", "mini", "--model-arg", "size=4", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "adapter 'broken-model'" in err[0] and "size=4" in err[0] and "weights not found at /nowhere" in err[0]


# 12 (registration part). adapters without a name or with unknown inputs are refused ---------------------
def test_adapters_without_a_name_or_with_unknown_inputs_are_refused(tmp_path, monkeypatch):
    from asva_bench.adapters import AdapterError, get_adapter_class
    (tmp_path / "broken_models.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AdapterError, match="has no name: set the class attribute"):
        get_adapter_class("broken_models:NoName")
    with pytest.raises(AdapterError, match=r"unknown input name 'imgae' \(did you mean 'image'\?\)"):
        get_adapter_class("broken_models:BadInput")


def test_zero_and_negative_limits_are_refused(tiny_dataset, tmp_path, capsys):
    for limit in ("0", "-3"):
        rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                   "--profile", "mini", "--limit", limit, "--out", str(tmp_path / "r")])
        assert rc == 2 and f"--limit {limit}: give a positive number" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# 4. results table without --out -----------------------------------------------------------------------
def test_results_table_without_out_prints_only_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results_for("avsyncd")))
    help_text = build_parser(heavy=False)._subparsers._group_actions[0].choices["results"] \
        ._subparsers._group_actions[0].choices["table"].format_help()
    assert "without it the table is only printed" in " ".join(help_text.split())
    before = set(tmp_path.rglob("*"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["results", "table", str(run)]) == 0
    finally:
        os.chdir(cwd)
    assert "avsyncd" in capsys.readouterr().out and set(tmp_path.rglob("*")) == before
    assert main(["results", "table", str(run), "--out", str(tmp_path / "t" / "table")]) == 0
    assert {p.suffix for p in (tmp_path / "t").iterdir()} == {".csv", ".md", ".tex"}


# 5. datasets check: silent audio, variable frame rate, partial decodes --------------------------------
def write_with_av(path: Path, frames, pts_ms, audio, faststart=False):
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as c:
        vs = c.add_stream("libx264", rate=24)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"preset": "ultrafast"}
        a = c.add_stream("aac", rate=SR)
        a.layout = "mono"
        for img, t in zip(frames, pts_ms):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = int(t), Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        af = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        af.sample_rate, af.pts = SR, 0
        for p in a.encode(af):
            c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    return path


def test_datasets_check_reports_silent_audio_variable_rate_and_partial_files(tmp_path, capsys):
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (96, 48, 64, 3), dtype=np.uint8)
    noise = (0.1 * rng.standard_normal(4 * SR)).astype(np.float32)
    make_video(root / "videos" / "dog_bark" / "ok.mp4", seconds=3.0)
    avio.write_clip(root / "videos" / "dog_bark" / "silent.mp4", frames[:72], 24, audio=np.zeros(3 * SR, np.float32),
                    sample_rate=SR, preset="ultrafast")
    # 24 fps and 12 fps stretches alternating: frame intervals of 41.7 and 83.3 ms
    pts, t = [], 0.0
    for i in range(60):
        pts.append(round(t))
        t += 1000 / 24 if (i // 10) % 2 == 0 else 1000 / 12
    write_with_av(root / "videos" / "dog_bark" / "vfr.mp4", frames[:60], pts, noise)
    full = write_with_av(tmp_path / "full.mp4", frames, [i * 1000 / 24 for i in range(96)], noise, faststart=True)
    part = root / "videos" / "dog_bark" / "partial.mp4"
    part.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])   # a download cut short
    names = ["ok", "silent", "vfr", "partial"]
    (root / "train.txt").write_text("")
    (root / "test.txt").write_text("".join(f"dog_bark/{n}.mp4\n" for n in names))
    assert main(["datasets", "check", "avsync15", "--root", str(root), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    by = {}
    for p in rep["problems"]:
        by.setdefault(Path(p["file"]).stem, []).append(p["problem"])
    warn = {Path(w["file"]).stem: w["warning"] for w in rep["warnings"]}
    assert "ok" not in by and "ok" not in warn
    assert any(p.startswith("silent audio") for p in by["silent"])
    assert any("decodes only partly" in p and "of the 96 frames" in p for p in by["partial"])
    assert "vfr" not in by and warn["vfr"].startswith("variable frame rate")
    import re
    assert re.search(r"from 4[12]\.\d to 8[34]\.\d ms", warn["vfr"]), warn["vfr"]     # 1/24 s and 1/12 s, in ms


# 6. score --allow-incomplete, and the validator's new rules -------------------------------------------------
def test_score_allow_incomplete_records_status_and_missing_ids(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(out), "--no-score"]) == 0
    gone = out / "videos" / "hammer_strike" / "v2_clip-01.mp4"
    gone.unlink()
    capsys.readouterr()
    assert main(["score", str(out), "--allow-incomplete", "--json", "--metrics", "ia"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "incomplete" and res["clips"]["failed_ids"] == ["hammer_strike/v2_clip-01"]
    assert res["clips"]["scored"] == 11 and res["coverage"] == pytest.approx(11 / 12)


def test_validate_rejects_a_mean_outside_its_interval_but_not_a_frechet_one(tmp_path, capsys):
    d = results_for("avsyncd")
    d["metrics"]["alignsync"]["mean"] = d["metrics"]["alignsync"]["ci_high"] + 1.0
    d["metrics"]["fid"]["mean"] = d["metrics"]["fid"]["ci_low"] - 1.0        # allowed: set-level (docs/protocol.md)
    path = write_entry(tmp_path, "x", d)
    empty = tmp_path / "none"
    empty.mkdir()
    assert main(["leaderboard", "validate", str(path), "--entries", str(empty), "--json"]) == 1
    probs = json.loads(capsys.readouterr().out)["files"][0]["problems"]
    assert [(p["kind"], p["where"]) for p in probs] == [("values", "metrics.alignsync.mean")]


def test_validate_rejects_two_entries_with_one_label_on_a_board(tmp_path, capsys):
    entries = tmp_path / "entries"
    write_entry(entries, "first", results_for("i2vd"))
    new = write_entry(tmp_path / "new", "again", results_for("i2vd"))
    other = write_entry(tmp_path / "new", "other", results_for("avsyncd"))
    assert main(["leaderboard", "validate", str(new), str(other), "--entries", str(entries), "--json"]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f["ok"] for f in files] == [False, True]
    assert files[0]["problems"][0]["kind"] == "duplicate" and "'i2vd" in files[0]["problems"][0]["message"]
    # two files given together: both named; another board (paper profile) is another board
    paper = results_for("avsyncd")
    paper["profile"] = "paper"
    paper["fingerprint"] = fingerprint_of(paper)
    twin = write_entry(tmp_path / "new", "twin", results_for("avsyncd"))
    elsewhere = write_entry(tmp_path / "new", "paper", paper)
    assert main(["leaderboard", "validate", str(other), str(twin), str(elsewhere), "--entries",
                 str(tmp_path / "none"), "--json"]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f["ok"] for f in files] == [False, False, True]


# 7. native decoder log lines stay out of the terminal ----------------------------------------------------
def test_decoder_log_lines_do_not_leak_on_a_bad_file(tiny_dataset, tmp_path):
    bad = tiny_dataset / "videos" / "dog_bark" / "v1.mp4"
    bad.write_bytes(os.urandom(4000))
    res = cli(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile",
               "mini", "--out", str(tmp_path / "r"), "--no-score"])
    assert res.returncode == 2
    assert "moov atom" not in res.stderr and "video_reader.cc" not in res.stderr and "[mov," not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert lines[0].startswith("error: ") and "v1.mp4: cannot open as a video container" in lines[0]


# 8. read-only output folder or cache: one line, before any work -----------------------------------------
def unwritable_dir(tmp_path, monkeypatch) -> Path:
    """A folder where creating a file fails: permission bits where they bind, else a folder the kernel
    refuses (/sys, /proc/sys: root ignores permission bits), else (a privileged container where both
    are writable) the probe's open() fails there with the kernel's EACCES, as a read-only mount would."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").write_text("")
    except OSError:
        return d
    (d / "probe").unlink()
    for cand in (Path("/sys"), Path("/proc/sys")):
        try:
            (cand / ".asva-probe").write_text("")
        except OSError:
            return cand
    from asva_bench import requirements

    def refusing_open(path, *args, **kwargs):
        if Path(path).parent == d:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, *args, **kwargs)
    monkeypatch.setattr(requirements, "open", refusing_open, raising=False)
    return d


def test_read_only_output_folder_is_one_line_before_any_work(tiny_dataset, tmp_path, capsys, monkeypatch):
    ro = unwritable_dir(tmp_path, monkeypatch)
    t = time.perf_counter()
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile",
               "mini", "--out", str(ro / "run")])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1 and f"output folder {ro / 'run'} is not writable" in err[0]
    assert "nothing was generated" in err[0] and time.perf_counter() - t < 30


def test_read_only_asva_bench_home_is_one_line_before_any_work(tiny_dataset, tmp_path, capsys, monkeypatch):
    ro = unwritable_dir(tmp_path, monkeypatch)
    monkeypatch.setenv("ASVA_BENCH_HOME", str(ro / "home"))
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile",
               "mini", "--out", str(tmp_path / "run")])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1 and f"$ASVA_BENCH_HOME (the cache of features and weights) {ro / 'home'}" in err[0]
    assert not (tmp_path / "run").exists()


# 9. two runs on one --out ----------------------------------------------------------------------------
def test_a_second_run_on_the_same_out_is_refused_and_a_killed_one_leaves_no_stuck_lock(tiny_dataset, tmp_path,
                                                                                   capsys):
    from asva_bench.runlock import LOCK_NAME, run_lock
    out = tmp_path / "r"
    args = ["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset), "--profile", "mini",
            "--out", str(out), "--no-score"]
    with run_lock(out):                      # another run holds the folder
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "is in use by another asva-bench run (pid" in err and not (out / "videos").exists()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from asva_bench.runlock import run_lock\n"
        f"with run_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert main(args) == 2
    capsys.readouterr()
    os.kill(holder.pid, signal.SIGKILL)      # killed mid-run: the kernel drops its lock
    holder.wait()
    assert (out / LOCK_NAME).exists()
    assert main(args) == 0


# 10. $ASVA_BENCH_HOME moves everything ---------------------------------------------------------------------
def test_asva_bench_home_moves_the_default_synth_root_and_every_cache(tmp_path, monkeypatch, capsys):
    from asva_bench.backbones.weights import cache_root
    from asva_bench.datasets import DatasetError
    from asva_bench.datasets.synth import SYNTH, default_root
    from asva_bench.feature_cache import FeatureCache
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("ASVA_BENCH_HOME", str(home))
    monkeypatch.delenv("ASVA_SYNTH_ROOT", raising=False)
    assert default_root() == home / "datasets" / "synth" == SYNTH.resolve_default()
    with pytest.raises(DatasetError, match=str(home / "datasets" / "synth")):
        SYNTH.resolve_root()
    assert cache_root() == home.resolve() and FeatureCache.default().root == home / "cache" / "features"
    assert main(["datasets", "--json"]) == 0
    synth = next(d for d in json.loads(capsys.readouterr().out)["datasets"] if d["name"] == "synth")
    assert synth["default_root"] == str(home / "datasets" / "synth")
    monkeypatch.setenv("ASVA_SYNTH_ROOT", str(tmp_path / "explicit"))   # CI names it explicitly: still wins
    assert default_root() == tmp_path / "explicit"


# 11. a plugin may not take a built-in's name ------------------------------------------------------------------
def test_a_plugin_reusing_a_builtin_name_is_refused(monkeypatch, capsys):
    import asva_bench.adapters as A
    eps = [EntryPoint("static", "evil_pkg:Static", A.ENTRY_POINT_GROUP),
           EntryPoint("my-model", "asva_bench.baselines.static:Static", A.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(A, "_plugin_entry_points", lambda: eps)
    reg = A.adapter_registry()
    assert reg.get("static") == A.BUILTIN_ADAPTERS["static"] and reg.get("my-model")
    assert "'static' is a built-in adapter" in A.refused_plugins()["static"]
    assert type(A.build_adapter("static")).__module__ == "asva_bench.baselines.static"
    assert "plugin adapter 'static' = evil_pkg:Static" in capsys.readouterr().err
    assert main(["models", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert "static" in obj["refused_plugins"] and {m["name"] for m in obj["models"]} >= {"static", "my-model"}


# 6 (docs). every real dataset lists its exact class folders ----------------------------------------------------
def test_datasets_lists_the_exact_class_folders(capsys):
    assert main(["datasets", "--json"]) == 0
    rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["datasets"]}
    assert "playing_violin__fiddle" in rows["avsync15"]["class_folders"] and len(rows["avsync15"]["class_folders"]) == 15
    assert len(rows["landscapes"]["class_folders"]) == 9 and rows["thegreatesthits"]["class_folders"] == []
    docs = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    for name in ("avsync15", "landscapes"):
        for folder in rows[name]["class_folders"]:
            assert f"`{folder}`" in docs, folder
