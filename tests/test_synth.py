"""The synthetic dataset `synth`: layout, determinism, sidecars, synchrony, atomic builds, golden bytes."""

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asva_bench.avio import VideoFrames, probe, read_audio
from asva_bench.cli import main as cli_main
from asva_bench.datasets import DATASETS, DatasetError
from asva_bench.datasets import synth as S
from asva_bench.datasets.synth import build as synth_build

GOLDEN = json.loads((Path(__file__).parent / "golden" / "synth_hashes.json").read_text())

SEED = 7
PER_CLASS = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """All 15 classes, 2 videos each, built in this process."""
    root = tmp_path_factory.mktemp("synth") / "root"
    return S.make_synth(root, seed=SEED, videos_per_class=PER_CLASS, workers=1, progress=False)


def sidecar(root, folder, index):
    return json.loads((root / "events" / folder / f"{folder}_{index:04d}.json").read_text())


# ---------------------------------------------------------------- golden units
def test_split_sizes_rule():
    assert S.split_sizes(100) == (90, 10)
    assert S.split_sizes(20) == (18, 2)
    assert S.split_sizes(15) == (13, 2)   # 1.5 rounds up
    assert S.split_sizes(3) == (2, 1)
    assert S.split_sizes(2) == (1, 1)
    with pytest.raises(ValueError, match="at least 2"):
        S.split_sizes(1)


def test_shapes_fill_the_expected_pixels():
    img = np.zeros((64, 64, 3), np.uint8)
    S.fill_polygon(img, [(10, 10), (29, 10), (29, 19), (10, 19)], np.array([255, 0, 0], np.uint8))
    assert (img[..., 0] > 0).sum() == 20 * 10            # inclusive pixel centres
    # pixel centres at integer coordinates, counted one by one in plain Python
    img[:] = 0
    S.fill_ellipse(img, 31.5, 30.2, 20, 12, np.array([0, 255, 0], np.uint8), angle=0.5)
    c, s_ = math.cos(0.5), math.sin(0.5)
    want = {(y, x) for y in range(64) for x in range(64)
            if (((x - 31.5) * c + (y - 30.2) * s_) / 20) ** 2 + (((y - 30.2) * c - (x - 31.5) * s_) / 12) ** 2 <= 1}
    assert set(zip(*np.nonzero(img[..., 1]))) == want
    img[:] = 0
    S.fill_capsule(img, 10, 30, 50, 30, 5, np.array([0, 0, 255], np.uint8))
    seg = lambda x, y: math.hypot(x - min(max(x, 10), 50), y - 30)  # noqa: E731
    assert (img[..., 2] > 0).sum() == sum(seg(x, y) <= 5 for y in range(64) for x in range(64)) == 521
    # off-canvas shapes are ignored, partially visible ones are clipped
    assert S.fill_ellipse(img, -50, -50, 5, 5, np.array([1, 1, 1], np.uint8)) is None
    assert S.fill_ellipse(img, 0, 0, 5, 5, np.array([1, 1, 1], np.uint8)) == (0, 6, 0, 6)


def test_harmonics_match_a_direct_sum_of_sines():
    f = np.full(1600, 220.0)
    amps = (1.0, 0.5, 0.25)
    got = S.harmonics(f, amps, np.random.default_rng(3))
    offs = np.random.default_rng(3).uniform(0, 2 * math.pi, len(amps))  # same draws, same order
    t = np.arange(1, 1601) / S.SAMPLE_RATE   # phase after each sample (cumulative sum)
    want = sum(a * np.sin(k * 2 * math.pi * 220 * t + o) for k, (a, o) in enumerate(zip(amps, offs), 1))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_clip_timing_helpers():
    c = S.Clip(np.random.default_rng(0), 48)
    assert c.n_samples == 32000
    # a sound added at frame 3 starts exactly at sample 3 * 16000 / 24 = 2000
    c.add(3, np.ones(10), env=np.ones(10))
    assert np.flatnonzero(c.track).tolist() == list(range(2000, 2010))
    assert np.flatnonzero(c.frame_env()).tolist() == [3]
    # a sound that would start before the clip is cut: frame -1 is sample -667
    c2 = S.Clip(np.random.default_rng(0), 48)
    c2.add(-1, np.arange(1000.0))
    assert c2.track[0] == 667 and c2.track[332] == 999 and c2.track[333] == 0
    # hold: 1 during [on, off), then a 3-step linear release
    np.testing.assert_allclose(c.hold([(2, 6)], release=3)[:11],
                               [0, 0, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0])
    np.testing.assert_array_equal(S.levels(np.array([0, 0.5, 1.0, 2.0]), 8), [0, 4, 8, 8])


def test_event_placement_respects_rate_and_length():
    for seed in range(30):
        c = S.Clip(np.random.default_rng(seed), S.MIN_FRAMES + seed * 4)
        evs = c.place((0.5, 3.0), (1 / 6, 1.0), gap=0.1)
        secs = c.T / S.FPS
        assert 0.5 <= len(evs) / secs <= 3.0
        assert all(off - on >= S.MIN_EVENT_FRAMES for on, off in evs)
        # ordered, with at least MIN_EVENT_GAP_S of silence between events
        assert all(a[1] + round(S.MIN_EVENT_GAP_S * S.FPS) <= b[0] for a, b in zip(evs, evs[1:]))
        assert evs[0][0] >= 6 and evs[-1][1] <= c.T - 7              # quiet lead and tail


# ---------------------------------------------------------------- rendering
def test_render_is_deterministic_and_seed_dependent():
    a = S.render_clip("gun_bang", 3, 1)
    b = S.render_clip("gun_bang", 3, 1)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    c = S.render_clip("gun_bang", 4, 1)
    assert c[2]["events"] != a[2]["events"] or a[0].shape != c[0].shape or not np.array_equal(a[0][0], c[0][0])


@pytest.mark.parametrize("folder", sorted(S.CLASSES))
def test_every_class_renders_inside_its_box_with_audible_events(folder):
    frames, audio, rec = S.render_clip(folder, 11, 0)
    T = rec["num_frames"]
    assert frames.shape == (T, 256, 256, 3) and frames.dtype == np.uint8
    assert 3 * 24 <= T <= 8 * 24 and len(audio) == rec["num_samples"] == round(T * 16000 / 24)
    p = rec["params"]
    (x0, y0, x1, y1), (dx0, dy0, dx1, dy1) = p["object_box"], p["drawn_box"]
    assert x0 - 2 <= dx0 and y0 - 2 <= dy0 and dx1 <= x1 + 2 and dy1 <= y1 + 2
    for d in p["distractors"]:   # static distractors stay clear of the object
        assert d["x"] + d["r"] < x0 or d["x"] - d["r"] > x1 or d["y"] + d["r"] < y0 or d["y"] - d["r"] > y1
    # never silent: background noise everywhere, events well above it
    win = 1600
    rms = np.sqrt(np.mean(audio[: len(audio) // win * win].reshape(-1, win) ** 2, axis=1))
    assert rms.min() > 5e-4
    for ev in rec["events"]:
        s = round(ev["onset_frame"] * 16000 / 24)
        assert np.abs(audio[s:s + 1600]).max() > 4 * p["noise_rms"], (folder, ev)
    # the object changes within the first event (the picture is not static)
    on, off = rec["events"][0]["onset_frame"], rec["events"][0]["offset_frame"]
    assert np.abs(frames[on:off].astype(int) - frames[max(on - 1, 0)].astype(int)).max() > 60 or \
        not S.CLASSES[folder].gated


# ---------------------------------------------------------------- a built root
def test_layout_split_files_and_reader(built):
    assert (built / "synth.json").is_file() and not (built / S.PLAN).exists()
    marker = S.read_marker(built)
    assert marker["counts"] == {"train": 15, "test": 15} and marker["seed"] == SEED
    train = (built / "train.txt").read_text().split()
    test = (built / "test.txt").read_text().split()
    assert len(train) == len(test) == 15 and not set(train) & set(test)
    assert "hammer_strike/hammer_strike_0000.mp4" in train and "hammer_strike/hammer_strike_0001.mp4" in test
    spec = DATASETS.get("synth")
    assert spec is S.SYNTH and spec.env_var == "ASVA_SYNTH_ROOT"
    m = spec.load(built)
    assert len(m.classes()) == 15 and len(m.split("train")) == 15 and len(m.split("test")) == 15
    e = next(x for x in m.entries if x.class_name == "knife_sharpening")
    assert e.text == "knife sharpening"
    assert sorted(p.name for p in (built / "videos").iterdir()) == sorted(S.CLASSES)


def test_sidecars_match_the_encoded_videos(built):
    for folder, cls in S.CLASSES.items():
        for i in range(PER_CLASS):
            rec = sidecar(built, folder, i)
            info = probe(built / rec["video"])
            assert rec["split"] == ("train" if i == 0 else "test") and rec["seed"] == SEED
            assert (info.width, info.height, info.audio_sample_rate) == (256, 256, 16000)
            assert abs(info.fps - 24) < 1e-6 and info.num_frames == rec["num_frames"]
            assert abs(info.audio_duration - rec["duration"]) < 0.07
            assert 3.0 <= rec["duration"] <= 8.0
            evs = rec["events"]
            assert evs, f"{folder} {i}: no events"
            for ev in evs:
                assert 0 <= ev["onset"] < ev["offset"] <= rec["duration"] + 1e-9
                assert ev["offset_frame"] - ev["onset_frame"] >= 4         # >= 1/6 s at 24 fps
                assert ev["offset"] - ev["onset"] >= 1 / 6 - 1e-5        # times rounded to 1 us
                assert ev["onset"] == pytest.approx(ev["onset_frame"] / 24, abs=1e-6)
            assert all(a["offset"] <= b["onset"] for a, b in zip(evs, evs[1:]))
            if cls.eventful:
                assert 0.5 <= len(evs) / rec["duration"] <= 3.0


def _visual_onset(vf, box, on):
    """First frame near ``on`` whose difference from the previous frame, inside the box, jumps."""
    x0, y0, x1, y1 = box
    idx = list(range(max(on - 7, 0), min(on + 7, len(vf))))
    fr = vf.get(idx).astype(np.float32)[:, y0:y1 + 1, x0:x1 + 1]
    d = np.abs(np.diff(fr, axis=0)).mean(axis=(1, 2, 3))
    return idx[1 + int(np.argmax(d > max(1.0, 0.3 * d.max())))]


def _audio_onset(wav, sr, t):
    """First time near ``t`` where the 2 ms energy envelope rises 30% of the way to the event's peak."""
    env = np.convolve(np.abs(wav), np.ones(32) / 32, "same")
    lo, hi, s = int((t - 0.2) * sr), int((t + 0.1) * sr), int(t * sr)
    floor = np.median(env[lo:s - int(0.05 * sr)])
    peak = env[s:hi].max()
    return (s - int(0.1 * sr) + int(np.argmax(env[s - int(0.1 * sr):hi] > floor + 0.3 * (peak - floor)))) / sr


def test_audio_and_motion_onsets_coincide_after_encoding(built):
    """Decoded mp4: sound onset and visual change of an event agree within one frame (+ AAC slack)."""
    frame, aac_slack = 1 / 24, 0.012
    for folder, cls in S.CLASSES.items():
        if not cls.gated:   # the ball and the bowling ball move between events, by design
            continue
        rec = sidecar(built, folder, 0)
        path = built / rec["video"]
        vf = VideoFrames(path)
        wav, sr = read_audio(path)
        ev = rec["events"][0]   # the first event: nothing before it but background
        t_vis = _visual_onset(vf, rec["params"]["drawn_box"], ev["onset_frame"]) / 24
        t_aud = _audio_onset(wav.numpy(), sr, ev["onset"])
        assert abs(t_vis - ev["onset"]) <= frame + 1e-6, folder
        assert abs(t_aud - ev["onset"]) <= frame + aac_slack, (folder, t_aud, ev["onset"])
        assert abs(t_aud - t_vis) <= frame + aac_slack, folder


def test_same_seed_same_videos_whatever_the_workers(built, tmp_path):
    """Two worker processes, a class subset: same events and same decoded frames as the full build."""
    classes = ["gun_bang", "toilet_flush"]
    other = S.make_synth(tmp_path / "other", seed=SEED, videos_per_class=PER_CLASS, classes=classes,
                         workers=2, progress=False)
    for folder in classes:
        for i in range(PER_CLASS):
            a, b = sidecar(built, folder, i), sidecar(other, folder, i)
            assert a["events"] == b["events"] and a["params"] == b["params"]
            fa, fb = VideoFrames(built / a["video"]), VideoFrames(other / b["video"])
            idx = list(range(len(fa)))
            assert fa.get(idx).tobytes() == fb.get(idx).tobytes()


def test_interrupted_build_is_refused_then_resumed(tmp_path):
    root = tmp_path / "r"
    classes = ["dog_bark", "hammer_strike"]
    S.make_synth(root, seed=1, videos_per_class=2, classes=classes, workers=1, progress=False)
    kept = root / "videos/dog_bark/dog_bark_0000.mp4"
    kept_mtime = kept.stat().st_mtime_ns
    good = (root / "videos/hammer_strike/hammer_strike_0001.mp4").read_bytes()
    # simulate a build killed part way: no marker, the plan left behind, a half-written temp
    # video, a video whose sidecar was never written, and a truncated video
    (root / "synth.json").unlink()
    (root / S.PLAN).write_text(json.dumps({"generator": S.GENERATOR, "version": S.VERSION, "seed": 1,
                                           "videos_per_class": 2, "classes": classes}))
    temp = root / "videos/dog_bark/.dog_bark_0001.tmp-deadbeef.mp4"
    temp.write_bytes(b"\x00" * 100)
    (root / "events/dog_bark/dog_bark_0001.json").unlink()
    trunc = root / "videos/hammer_strike/hammer_strike_0001.mp4"
    trunc.write_bytes(good[: len(good) // 2])

    with pytest.raises(DatasetError, match="synth.json"):
        S.SYNTH.load(root)
    assert S.read_marker(root) is None
    # ensure_synth resumes with the recorded settings (not the 15 x 100 default)
    S.ensure_synth(root, progress=False, workers=1)
    m = S.SYNTH.load(root)
    assert len(m.entries) == 4 and m.classes() == sorted(classes)
    assert not temp.exists() and not (root / S.PLAN).exists()
    assert trunc.read_bytes() == good                       # rebuilt, identical
    assert kept.stat().st_mtime_ns == kept_mtime            # complete videos are kept
    assert S.read_marker(root)["built_now"] == 2
    # a complete root is accepted as it is
    S.ensure_synth(root, progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime


def test_rebuild_with_fewer_videos_prunes_and_rewrites_splits(tmp_path):
    root = tmp_path / "r"
    S.make_synth(root, seed=2, videos_per_class=3, classes=["frog_croak"], workers=1, progress=False)
    assert S.read_marker(root)["per_class"] == {"train": 2, "test": 1}
    S.make_synth(root, seed=2, videos_per_class=2, classes=["frog_croak"], workers=1, progress=False)
    assert S.read_marker(root)["built_now"] == 0            # indices 0 and 1 were already there
    assert not (root / "videos/frog_croak/frog_croak_0002.mp4").exists()
    assert (root / "test.txt").read_text().split() == ["frog_croak/frog_croak_0001.mp4"]


def test_default_root_and_cli(built, monkeypatch, capsys):
    monkeypatch.setenv("ASVA_SYNTH_ROOT", str(built))
    assert S.default_root() == built == S.SYNTH.resolve_default() == S.SYNTH.resolve_root()
    assert S.ensure_synth(progress=False) == built           # complete: nothing to do
    monkeypatch.delenv("ASVA_SYNTH_ROOT")
    monkeypatch.delenv("ASVA_BENCH_HOME", raising=False)
    assert S.default_root() == (Path.home() / ".cache/asva-bench/datasets/synth")
    monkeypatch.setenv("ASVA_BENCH_HOME", str(built.parent / "home"))   # the cache root moves synth too
    assert S.default_root() == built.parent / "home" / "datasets" / "synth"
    rc = cli_main(["datasets", "make", "synth", "--root", str(built), "--seed", str(SEED),
                   "--videos-per-class", str(PER_CLASS), "--workers", "1", "--json", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads(out)   # one JSON object: the build record, the root, the time taken
    assert summary["built_now"] == 15 * PER_CLASS and summary["root"] == str(built)   # complete: kept
    assert summary["dataset"] == "synth" and summary["counts"] == {"train": 15, "test": 15}
    assert summary["seed"] == SEED and summary["classes"] == list(S.CLASSES)
    assert cli_main(["datasets", "make", "synth", "--root", str(built), "--classes", "dog_barks",
                     "--no-progress"]) == 2
    assert "unknown class" in capsys.readouterr().err
    assert cli_main(["datasets", "make", "synth", "--root", str(built), "--videos-per-class", "1",
                     "--no-progress"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_loading_from_an_empty_default_root_builds_it(tmp_path, monkeypatch):
    calls = []
    real = synth_build.ensure_synth

    def tiny(root=None, **kw):  # the default 15 x 100 set is too big for a unit test
        calls.append(root)
        return real(root, seed=3, videos_per_class=2, classes=["baby_cry"], workers=1, progress=False)

    monkeypatch.setattr(synth_build, "ensure_synth", tiny)
    monkeypatch.setenv("ASVA_SYNTH_ROOT", str(tmp_path / "auto"))
    m = DATASETS.get("synth").load()
    assert calls == [None] and m.root == str(tmp_path / "auto") and len(m.entries) == 2
    with pytest.raises(DatasetError, match="datasets make synth"):   # an explicit root is not built
        (tmp_path / "given").mkdir()
        S.SYNTH.load(tmp_path / "given")


def test_a_second_builder_waits_for_the_first(tmp_path):
    """Builders of one root (e.g. torchrun ranks) take turns; the second finds the work done."""
    import fcntl
    import threading
    root = tmp_path / "r"
    root.mkdir()
    done = []
    with open(root / ".synth.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)   # "another process" is building
        t = threading.Thread(target=lambda: done.append(S.make_synth(
            root, seed=0, videos_per_class=2, classes=["gun_bang"], workers=1, progress=False)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not done and not (root / "videos").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(60)
    assert done == [root] and S.read_marker(root)["built_now"] == 2


def test_bad_arguments_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="videos-per-class"):
        S.make_synth(tmp_path, videos_per_class=1, progress=False)
    with pytest.raises(DatasetError, match="choose from"):
        S.make_synth(tmp_path, classes=["unicorn"], progress=False)
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- golden bytes
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sidecar_digest(path) -> str:
    """A sidecar without its video's byte size (that depends on the encoder's thread count)."""
    rec = json.loads(Path(path).read_text())
    rec.pop("video_bytes")
    return _sha(json.dumps(rec, sort_keys=True).encode())


#: libx264's automatic thread count follows the machine's cores, and its output follows the thread
#: count (measured: 1, 2, 3 and 4 threads give four different files). The mp4 bytes are compared
#: where the golden hashes were recorded (2 cores); everything else everywhere.
SAME_ENCODER = len(os.sched_getaffinity(0)) == GOLDEN["recorded_with"]["cores"]


def _assert_golden(root, rels):
    for rel in rels:
        assert _sidecar_digest(root / rel) == GOLDEN["sidecars"][rel], f"{rel}: events or parameters changed"
        video = "videos/" + rel[len("events/"):-len(".json")] + ".mp4"
        if SAME_ENCODER:
            assert _sha((root / video).read_bytes()) == GOLDEN["videos"][video], f"{video}: other bytes"
            assert _sha((root / rel).read_bytes()) == GOLDEN["sidecar_files"][rel], rel


def test_a_seed_writes_the_bytes_it_always_wrote(built):
    """Seed 7, 2 videos per class: split files, sidecars, videos and build record equal the hashes
    recorded before the generator became a package (tests/golden/synth_hashes.json)."""
    for rel, digest in GOLDEN["split_files"].items():
        assert _sha((built / rel).read_bytes()) == digest, rel
    _assert_golden(built, GOLDEN["sidecars"])
    marker = {k: v for k, v in json.loads((built / "synth.json").read_text()).items() if k != "build_seconds"}
    assert _sha(json.dumps(marker, sort_keys=True).encode()) == GOLDEN["marker_without_build_seconds"]


def test_full_size_clips_of_the_default_seed_render_the_golden_pixels_and_samples():
    for key, want in GOLDEN["renders_seed0"].items():
        folder, index = key.split("#")
        frames, audio, record = S.render_clip(folder, 0, int(index))
        got = {"frames": _sha(frames.tobytes()), "audio": _sha(audio.tobytes()),
               "record": _sha(json.dumps(record, sort_keys=True).encode())}
        assert got == want, (key, GOLDEN["recorded_with"])


def test_cli_builds_a_class_subset_with_the_same_bytes(tmp_path, capsys):
    """`datasets make synth` passes --classes, --workers and --seed through: the subset's clips are
    the full build's."""
    root = tmp_path / "sub"
    assert cli_main(["datasets", "make", "synth", "--root", str(root), "--seed", str(SEED), "--videos-per-class",
                     str(PER_CLASS), "--classes", "gun_bang, bowed_string", "--workers", "1",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"synth: 2 train + 2 test videos in {root} (4 built now")
    assert S.read_marker(root)["classes"] == ["gun_bang", "bowed_string"]
    _assert_golden(root, [r for r in GOLDEN["sidecars"] if r.split("/")[1] in ("gun_bang", "bowed_string")])
    assert (root / "test.txt").read_text().split() == ["gun_bang/gun_bang_0001.mp4",
                                                       "bowed_string/bowed_string_0001.mp4"]


# ---------------------------------------------------------------- lazy imports
RENDERER = ("raster", "palette", "audio", "clip", "scenes", "render", "build", "pool", "wild")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_registry_lookups_and_help_do_not_import_the_renderer():
    mods = _modules_after("from asva_bench.datasets import DATASETS, get_dataset\n"
                          "s = get_dataset('synth'); s.resolve_default(); s.text_for('dog_bark')\n"
                          "from asva_bench.datasets.synth import CLASSES, read_marker, split_sizes\n"
                          "read_marker('/nonexistent'); [c.text for c in CLASSES.values()]")
    assert "asva_bench.datasets.synth.spec" in mods
    assert not {f"asva_bench.datasets.synth.{m}" for m in RENDERER} & mods
    mods = _modules_after("import contextlib, io\nfrom asva_bench.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try: main(['--help'])\n"
                          "    except SystemExit: pass")
    assert not {m for m in mods if m.startswith("asva_bench.datasets") or m == "numpy"}
    # a renderer name is served on first use
    mods = _modules_after("from asva_bench.datasets.synth import render_clip")
    assert "asva_bench.datasets.synth.render" in mods and "asva_bench.datasets.synth.build" not in mods
