"""`asva-bench curate`: config, clip grid, scene cuts, the six signals (golden), decisions, bad input,
sharding (job arrays and torchrun), reruns, review marks, synth-wild and its scoring."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asva_bench import avio
from asva_bench.curation import clips as C
from asva_bench.curation.config import (CurationConfigError, Threshold, config_to_toml, load_config)
from asva_bench.curation.decisions import decide, pieces
from asva_bench.curation.evaluation import evaluate_rows
from asva_bench.protocol import MINI, audio_window, waveforms_to_mel

pytestmark = pytest.mark.usefixtures("single_thread")
SR = 16000


def run_cli(*args) -> int:
    from asva_bench.cli import main
    return main(list(args))


# ==========================================================================
# config
# ==========================================================================
def test_profile_defaults_and_overlay(tmp_path):
    mini = load_config("mini")
    assert mini.profile == "mini" and mini.clip_seconds == 3.0 and mini.stride_seconds == 0.5
    assert mini.sync_shifts == [round(-0.5 + 0.1 * k, 6) for k in range(11)]
    paper = load_config("paper")
    assert paper.min_class_examples == 100 and paper.clip_model == "ViT-B-32"
    user = tmp_path / "c.toml"
    user.write_text('[thresholds]\np_sync = { low = 0.4 }\n[dataset]\nmin_class_examples = 7\n')
    cfg = load_config("mini", user)
    assert cfg.thresholds["p_sync"] == Threshold(low=0.4)
    assert cfg.thresholds["ia"] == mini.thresholds["ia"]          # untouched keys keep the default
    assert cfg.min_class_examples == 7
    assert cfg.signal_fingerprint() == mini.signal_fingerprint()   # thresholds are not signal settings
    assert cfg.fingerprint() != mini.fingerprint()
    # the written TOML reads back to the same config
    again = tmp_path / "again.toml"
    again.write_text(config_to_toml(cfg))
    assert load_config(None, again).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("text, message", [
    ("[thresholds]\nia = { high = 0.9 }\n", "drops only low values of ia"),
    ("[thresholds]\nloudness = { low = 1 }\n", "unknown signal 'loudness'"),
    ("[clips]\nlength = 3\n", "unknown key clips.length"),
    ("[clips]\nstride = 0.7\n", "whole number of clips.stride"),
    ("[sync]\nmax_shift = 0.8\n", "must fit in one clip"),
    ('profile = "paper"\n', "says profile = 'paper' but --profile mini"),
    ("[thresholds]\npixel_diff = { low = 5, high = 1 }\n", "must be below high"),
])
def test_bad_config_names_file_and_key(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(CurationConfigError, match=message) as e:
        load_config("mini", f)
    assert "bad.toml" in str(e.value)


def test_threshold_check():
    t = Threshold(low=0.2, high=5.0)
    assert t.check(0.2) is None and t.check(5.0) is None
    assert t.check(0.19) == "<0.2" and t.check(5.01) == ">5"
    assert t.check(float("nan")) == "=nan"


# ==========================================================================
# clip grid, merging pieces
# ==========================================================================
def test_clip_grid_is_global_and_inside_scenes():
    clips = C.plan_clips([(0.0, 5.375), (5.375, 12.166667)], 3.0, 0.5, 6.0, num_grid=73)
    starts = [c.start for c in clips]
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0]
    assert [c.first_frame for c in clips][:3] == [0, 3, 6] and clips[5].first_frame == 33
    assert all(c.end <= (5.375 if c.scene == 0 else 12.166667) + 1e-9 for c in clips)
    assert C.plan_clips([(0.0, 2.9)], 3.0, 0.5, 6.0, 17) == []


def test_pieces_split_long_stretches_evenly():
    assert pieces(0.0, 9.5, 10.0) == [(0.0, 9.5)]
    assert pieces(0.0, 12.0, 10.0) == [(0.0, 6.0), (6.0, 12.0)]
    assert pieces(1.0, 23.0, 10.0) == [(1.0, 8.333), (8.333, 15.667), (15.667, 23.0)]


# ==========================================================================
# scene cuts (PySceneDetect) and decoding
# ==========================================================================
def _scene(rng, n, h=64, w=96):
    bg = rng.integers(0, 255, 3, dtype=np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = bg
    for i in range(n):
        x = int(i / max(1, n - 1) * (w - 16))
        frames[i, 20:36, x:x + 16] = 255 - bg
    return frames


def test_hard_cut_is_found_at_its_frame(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _scene(rng, 24 * 4), _scene(rng, 24 * 3)       # 4 s + 3 s at 24 fps
    audio = (0.1 * rng.standard_normal(7 * SR)).astype(np.float32)
    path = avio.write_clip(tmp_path / "cls" / "cut.mp4", np.concatenate([a, b]), 24, audio=audio, preset="ultrafast")
    v = C.VideoInput("cls/cut.mp4", "cls", str(path), path.stat().st_size)
    d = C.decode_video(v, MINI, 3.0, 6.0, 27.0, 0.5)
    assert d.cuts == [4.0]
    assert d.scenes == [(0.0, 4.0), (4.0, d.duration)]
    assert d.frames.shape == (int(d.duration * 6), 64, 64, 3) and d.frames.dtype == torch.uint8
    single = avio.write_clip(tmp_path / "cls" / "one.mp4", a, 24, audio=audio[:4 * SR], preset="ultrafast")
    d1 = C.decode_video(C.VideoInput("cls/one.mp4", "cls", str(single), 0), MINI, 3.0, 6.0, 27.0, 0.5)
    assert d1.cuts == [] and d1.scenes == [(0.0, 4.0)]


def test_bad_inputs_are_classified(tmp_path):
    rng = np.random.default_rng(1)
    frames = _scene(rng, 24 * 4)
    audio = (0.1 * rng.standard_normal(4 * SR)).astype(np.float32)
    ok = avio.write_clip(tmp_path / "c" / "ok.mp4", frames, 24, audio=audio, preset="ultrafast")
    mute = avio.write_clip(tmp_path / "c" / "mute.mp4", frames, 24, preset="ultrafast")
    short = avio.write_clip(tmp_path / "c" / "short.mp4", frames[:48], 24, audio=audio[:2 * SR], preset="ultrafast")
    broken = tmp_path / "c" / "broken.mp4"
    broken.write_bytes(ok.read_bytes()[:1500])
    for path, kind in ((mute, "no_audio"), (short, "too_short"), (broken, "unreadable")):
        with pytest.raises(C.BadInput) as e:
            C.decode_video(C.VideoInput(f"c/{path.name}", "c", str(path), 0), MINI, 3.0, 6.0, 27.0, 0.5)
        assert e.value.kind == kind and str(path) in str(e.value)
    (tmp_path / "loose.mp4").write_bytes(ok.read_bytes())
    (tmp_path / "c" / "notes.txt").write_text("x")
    videos, ignored = C.list_inputs(tmp_path)
    assert [v.rel for v in videos] == ["c/broken.mp4", "c/mute.mp4", "c/ok.mp4", "c/short.mp4"]
    assert {i["file"]: i["reason"].split(" ")[0] for i in ignored} == {"c/notes.txt": "not", "loose.mp4": "not"}
    assert "class folder" in next(i["reason"] for i in ignored if i["file"] == "loose.mp4")


# ==========================================================================
# the six signals, against independent computations with the shipped mini models
# ==========================================================================
@pytest.fixture(scope="module")
def extractor():
    from asva_bench.curation.signals import SignalExtractor
    return SignalExtractor(load_config("mini"), MINI).build()


def test_signals_golden(extractor):
    rng = np.random.default_rng(7)
    J = 27                                                        # 4.5 s at 6 fps
    base = rng.integers(0, 150, (64, 64, 3))
    frames = torch.from_numpy(np.stack([base + 3 * j for j in range(J)]).astype(np.uint8))
    audio = (0.05 * rng.standard_normal(int(4.5 * SR))).astype(np.float32)
    audio[int(0.2 * SR)] = 0.9                                    # a peak at 0.2 s: in the first clip only
    video = C.DecodedVideo(C.VideoInput("dog_bark/x.mp4", "dog_bark", "", 0), duration=4.5, video_duration=4.5,
                           audio_duration=4.5, fps=24.0, frames=frames, audio=torch.from_numpy(audio),
                           sample_rate=SR, audio_16k=torch.from_numpy(audio))
    clips = C.plan_clips(video.scenes, 3.0, 0.5, 6.0, J)
    assert [c.start for c in clips] == [0.0, 0.5, 1.0, 1.5]
    got = extractor.signals(video, clips, "dog bark")
    emb, sync = extractor._backbone("embedding"), extractor._backbone("sync")
    fl = frames.permute(0, 3, 1, 2).float() / 255
    v = emb.embed_vision(fl).double()
    t = emb.embed_text(["dog bark"])[0].double()
    shifts = [round(-0.5 + 0.1 * k, 6) for k in range(11)]
    for c, s in zip(clips, got):
        j0 = c.first_frame
        assert s.values["pixel_diff"] == 3.0                     # every pixel steps by 3 between frames
        change = (1 - (v[j0 + 1:j0 + 18] * v[j0:j0 + 17]).sum(-1)).mean()
        assert s.values["clip_change"] == pytest.approx(float(change), rel=2e-5, abs=1e-7)
        seg = audio[int(c.start * SR):int(c.end * SR)]
        assert s.values["max_amplitude"] == pytest.approx(float(np.abs(seg).max()), rel=1e-5)
        centre = waveforms_to_mel(audio_window(torch.from_numpy(audio), SR, c.start + 0.5, MINI)[None], MINI)
        a = emb.embed_audio(centre)[0].double()
        assert s.values["ia"] == pytest.approx(float((v[j0:j0 + 18] @ a).mean()), rel=2e-5)
        assert s.values["it"] == pytest.approx(float((v[j0:j0 + 18] @ t).mean()), rel=2e-5)
        # P_Sync: the lowest over the start / centre / end windows, each moved into [0.5, D - 2.5]
        ps = []
        for w in sorted({min(max(c.start + o, 0.5), 2.0) for o in (0.0, 0.5, 1.0)}):
            wf = int(round(w * 6))
            mels = waveforms_to_mel(torch.stack([audio_window(torch.from_numpy(audio), SR, w + d, MINI)
                                                 for d in shifts]), MINI)
            phi = sync.phi_matrix(fl[wf:wf + 12][None], mels)[:, 0]
            ps.append(float(torch.softmax(phi.double(), 0)[5]))
        assert s.values["p_sync"] == pytest.approx(min(ps), rel=2e-5)
    assert got[0].values["max_amplitude"] == pytest.approx(0.9) and got[1].values["max_amplitude"] < 0.3


def test_sliced_mels_equal_per_window_mels(extractor):
    rng = np.random.default_rng(4)
    wav = torch.from_numpy((0.1 * rng.standard_normal(int(6.3 * SR)) + 0.03).astype(np.float32))  # a DC offset too
    keys = [0, 500, 1200, 3700, 4300, 1234]            # ms; 1234 is off the 10 ms hop: per-window path
    got = extractor._mels(wav, keys)
    ref = torch.stack([waveforms_to_mel(audio_window(wav, SR, k / 1000, MINI)[None], MINI)[0] for k in keys])
    assert got.shape == ref.shape == (6, 1, 128, 204)
    assert torch.allclose(got, ref, atol=2e-4, rtol=1e-4), float((got - ref).abs().max())


def test_signals_separate_synced_from_shifted_audio(extractor, tmp_path):
    """The mini sync classifier's P_Sync is high for a synth video, low once its audio is 0.6 s late."""
    from asva_bench.datasets.synth import FPS, render_clip
    frames, audio, _ = render_clip("hammer_strike", 0, 3)
    late = np.concatenate([np.zeros(int(0.6 * SR), np.float32), audio[:-int(0.6 * SR)]])
    values = {}
    for name, a in (("sync", audio), ("late", late)):
        p = avio.write_clip(tmp_path / "hammer_strike" / f"{name}.mp4", frames, FPS, audio=a, preset="ultrafast")
        d = C.decode_video(C.VideoInput(f"hammer_strike/{name}.mp4", "hammer_strike", str(p), 0), MINI, 3.0, 6.0,
                           27.0, 0.5)
        sig = extractor.signals(d, C.plan_clips(d.scenes, 3.0, 0.5, 6.0, len(d.frames)), "hammer strike")
        values[name] = np.median([s.values["p_sync"] for s in sig])
    assert values["sync"] > 0.25 > 0.1 > values["late"]


def test_mini_text_tower_refuses_unknown_class_words_before_work(extractor):
    from asva_bench.backbones import BackboneInputError
    with pytest.raises(BackboneInputError, match="outside the mini text tower's vocabulary"):
        extractor.check_texts(["playing theremin"])


# ==========================================================================
# decisions (golden, on hand-made records)
# ==========================================================================
GOOD = {"pixel_diff": 2.0, "clip_change": 0.01, "max_amplitude": 0.5, "ia": 0.7, "it": 0.8, "p_sync": 0.4}


def _record(video, cls, starts, bad=(), scene_of=lambda s: 0):
    clips = []
    for s in starts:
        sig = dict(GOOD)
        if s in bad:
            sig["p_sync"] = 0.01
        clips.append({"scene": scene_of(s), "start": s, "end": s + 3.0, **sig})
    return {"video": video, "class": cls, "status": "ok", "clips": clips}


def test_decisions_merge_class_rule_split_and_marks():
    cfg = load_config("mini").replace(min_class_examples=2, max_example_seconds=10.0, test_fraction=0.5)
    recs = [
        # a/v1: clips 0..2 pass, 2.5 fails, 3.0..3.5 pass -> [0, 5]; the second stretch would start inside
        # it and keep only 1.5 s, less than a clip: no second example
        _record("a/v1.mp4", "a", [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], bad={2.5}),
        # a/v2: two scenes; contiguous in time but not across the cut -> two examples
        _record("a/v2.mp4", "a", [0.0, 0.5, 4.0, 4.5], scene_of=lambda s: 0 if s < 3 else 1),
        # b: one example only -> class dropped (needs 2)
        _record("b/v1.mp4", "b", [0.0, 0.5]),
        {"video": "b/bad.mp4", "class": "b", "status": "bad", "bad_kind": "no_audio", "reason": "x", "clips": []},
    ]
    dec = decide(recs, cfg)
    ex = [(e.id, e.status, e.start, e.end, e.clips) for e in dec.examples]
    assert ex == [("a/v1_0000000_0005000", "kept", 0.0, 5.0, 5),
                  ("a/v2_0000000_0003500", "kept", 0.0, 3.5, 2), ("a/v2_0004000_0007500", "kept", 4.0, 7.5, 2),
                  ("b/v1_0000000_0003500", "dropped", 0.0, 3.5, 2)]
    assert dec.classes["b"] == {"examples": 1, "videos": 1, "input_videos": 2, "kept": False,
                                "reason": "class_too_small: 1 < 2 examples"}
    assert dec.classes["a"]["kept"] and (dec.classes["a"]["train"], dec.classes["a"]["test"]) in ((1, 2), (2, 1))
    splits = {}
    for e in dec.examples:
        if e.cls == "a":
            splits.setdefault(e.video, set()).add(e.split)
    assert sorted(s for v in splits.values() for s in v) == ["test", "train"]   # by video
    status = {(c.video, c.start): (c.status, c.reason) for c in dec.clips}
    assert status[("a/v1.mp4", 2.5)] == ("dropped", f"p_sync<{cfg.thresholds['p_sync'].low:g}")
    assert status[("a/v1.mp4", 3.0)][0] == "dropped" and "cut short" in status[("a/v1.mp4", 3.0)][1]
    assert status[("a/v1.mp4", 2.0)] == ("kept", "")
    assert status[("b/v1.mp4", 0.0)] == ("dropped", "class_too_small: 1 < 2 examples")
    assert [(r["video"], r["start"], r["end"], r["reasons"]) for r in dec.dropped_runs] == [
        ("a/v1.mp4", 2.5, 5.5, {"p_sync": 1})]

    # review: a rejected span drops every clip overlapping it
    dec2 = decide(recs, cfg, [{"video": "a/v1.mp4", "start": 0.0, "end": 5.0, "mark": "reject"}])
    assert [e for e in dec2.examples if e.video == "a/v1.mp4"] == []
    assert all(c.review == "rejected" and c.reason == "review: rejected" for c in dec2.clips if c.video == "a/v1.mp4")
    # an accepted span keeps the clips wholly inside it, whatever the filters said; reject wins over accept
    dec3 = decide(recs, cfg, [{"video": "a/v1.mp4", "start": 2.5, "end": 5.5, "mark": "accept"}])
    assert [(e.start, e.end) for e in dec3.examples if e.video == "a/v1.mp4"] == [(0.0, 6.5)]
    clip = next(c for c in dec3.clips if c.video == "a/v1.mp4" and c.start == 2.5)
    assert clip.status == "kept" and clip.reason == f"review: accepted (filters: p_sync<{cfg.thresholds['p_sync'].low:g})"
    dec4 = decide(recs, cfg, [{"video": "a/v1.mp4", "start": 2.5, "end": 5.5, "mark": "accept"},
                              {"video": "a/v1.mp4", "start": 5.0, "end": 6.0, "mark": "reject"}])
    assert next(c for c in dec4.clips if c.video == "a/v1.mp4" and c.start == 2.5).review == "rejected"


def test_decisions_long_stretch_is_cut_into_pieces():
    cfg = load_config("mini").replace(min_class_examples=1, max_example_seconds=6.0)
    dec = decide([_record("a/v.mp4", "a", [k * 0.5 for k in range(19)])], cfg)   # union [0, 12]
    assert [(e.start, e.end) for e in dec.examples] == [(0.0, 6.0), (6.0, 12.0)]


# ==========================================================================
# scoring against labels (golden)
# ==========================================================================
def test_evaluation_golden():
    labels = {
        "a/1.mp4": {"defects": [{"type": "static", "start": 2.0, "end": 5.5}]},
        "a/2.mp4": {"defects": [{"type": "scene_cut", "start": 4.0, "end": 4.0, "cut": 4.0}]},
        "a/3.mp4": {"defects": [{"type": "quiet", "start": 0.0, "end": 6.0}]},
        "a/4.mp4": {"defects": [{"type": "bad_input", "start": 0, "end": 3, "expected_reason": "no_audio"}]},
        "a/5.mp4": {"defects": []},
    }
    examples = [  # kept: 1.0 s into the static span (caught), a cut straddled (missed), a clean one
        {"video": "a/1.mp4", "start": "0", "end": "3", "status": "kept"},
        {"video": "a/2.mp4", "start": "2", "end": "6", "status": "kept"},
        {"video": "a/5.mp4", "start": "0", "end": "4", "status": "kept"},
        {"video": "a/3.mp4", "start": "0", "end": "3", "status": "dropped"},
    ]
    videos = [{"video": "a/4.mp4", "status": "bad", "bad_kind": "no_audio"}]
    ev = evaluate_rows(labels, examples, videos)
    assert {k: (v["caught"], v["instances"]) for k, v in ev["recall"].items()} == {
        "bad_input": (1, 1), "quiet": (1, 1), "scene_cut": (0, 1), "static": (1, 1)}
    # kept 3 + 4 + 4 = 11 s; defective: 1 s of static, the whole 4 s straddling the cut
    assert ev["kept_seconds"] == 11.0 and ev["precision"] == pytest.approx(6 / 11, abs=1e-4)
    assert ev["clean_examples"] == 1


# ==========================================================================
# end to end on a small synth-wild pool
# ==========================================================================
CLASSES3 = ["hammer_strike", "dog_bark", "gun_bang"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from asva_bench.datasets.synth.wild import make_synth_wild
    root = tmp_path_factory.mktemp("wild")
    return make_synth_wild(root, seed=5, videos_per_class=7, defects_per_class=1, small_classes=1,
                           small_class_videos=1, classes=CLASSES3, workers=1, progress=False)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    f = tmp_path_factory.mktemp("cfg") / "small.toml"
    f.write_text("[dataset]\nmin_class_examples = 2\n")
    return f


def files_of(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file a curation wrote that must not depend on the launch."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not rel.startswith(("shards/", "timing.json")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def single(pool, small_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("cur") / "single"
    assert run_cli("curate", "--input", str(pool / "videos"), "--out", str(out), "--profile", "mini",
                   "--config", str(small_config)) == 0
    return out


def test_synth_wild_pool_is_labelled(pool):
    from asva_bench.datasets.synth.wild import read_labels
    labels = read_labels(pool)
    kinds = sorted(lab["kind"] for lab in labels.values())
    assert kinds.count("clean") == 2 and kinds.count("class_too_small") == 1
    for d in ("static", "shake", "scene_cut", "quiet", "other_class_audio", "shifted_audio"):
        assert kinds.count(d) == 2
    assert {"truncated", "no_audio", "too_short"} <= set(kinds)
    static = next(lab for lab in labels.values() if lab["kind"] == "static")
    vf = avio.VideoFrames(pool / "videos" / static["video"])
    d = static["defects"][0]
    inside = np.nonzero((vf.timestamps >= d["start"] + 0.05) & (vf.timestamps < d["end"] - 0.05))[0]
    frames = vf.get(inside).astype(int)
    assert np.abs(frames - frames[0]).mean() < 1.0                # frozen (up to the codec)
    quiet = next(lab for lab in labels.values() if lab["kind"] == "quiet")
    wav, _ = avio.read_audio(pool / "videos" / quiet["video"])
    assert float(wav.abs().max()) < 0.01


def test_curate_writes_manifest_dataset_and_summary(single, pool, capsys):
    from asva_bench.datasets.synth.wild import read_labels
    s = json.loads((single / "curation.json").read_text())
    c = s["counts"]
    assert c["videos"] == {"input": 18, "ok": 15, "bad": 3,
                           "bad_by_kind": {"no_audio": 1, "too_short": 1, "unreadable": 1}}
    assert {b["kind"] for b in s["bad_inputs"]} == {"no_audio", "too_short", "unreadable"}
    assert s["counts"]["classes"]["dropped"] == ["gun_bang"]     # the small class
    import csv
    clips = list(csv.DictReader(open(single / "manifest" / "clips.csv")))
    videos = list(csv.DictReader(open(single / "manifest" / "videos.csv")))
    assert len(clips) == c["clips"]["total"] and len(videos) == 18
    assert all(r["reason"] for r in clips if r["status"] == "dropped")
    assert all(r["reason"] for r in videos if r["status"] == "bad")
    failed_by = {k: sum(r[f"pass_{k}"] == "false" for r in clips) for k in c["clips"]["failed_by_filter"]}
    assert failed_by == c["clips"]["failed_by_filter"]
    train = (single / "train.txt").read_text().split()
    test = (single / "test.txt").read_text().split()
    assert len(train) == c["examples"]["train"] and len(test) == c["examples"]["test"] and test
    assert all((single / "videos" / r).is_file() for r in train + test)
    info = avio.probe(single / "videos" / train[0])
    assert info.has_audio and info.video_duration >= 2.9
    # the folder is a dataset in AVSync15's layout that `datasets check` accepts
    capsys.readouterr()
    assert run_cli("datasets", "check", "avsync15", "--root", str(single), "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["totals"] == {"train": len(train), "test": len(test)}
    # the labels: every defect instance is scored
    ev = __import__("asva_bench.curation.evaluation", fromlist=["evaluate"]).evaluate(read_labels(pool), single)
    assert ev["recall"]["bad_input"]["recall"] == 1.0 and ev["recall"]["class_too_small"]["recall"] == 1.0


def test_rerun_skips_shard_and_writes_the_same_bytes(single, pool, small_config, tmp_path):
    before = files_of(single)
    assert run_cli("curate", "--input", str(pool / "videos"), "--out", str(single), "--profile", "mini",
                   "--config", str(small_config)) == 0
    assert json.loads((single / "timing.json").read_text())["shards"][0]["skipped"] is True
    assert files_of(single) == before


def test_merge_with_new_thresholds_redecides_without_signals(single, tmp_path):
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(single, out)
    strict = tmp_path / "strict.toml"
    strict.write_text("[thresholds]\np_sync = { low = 0.9 }\n[dataset]\nmin_class_examples = 1\n")
    shard = next((out / "shards").glob("*.jsonl")).read_bytes()
    assert run_cli("curate", "--merge", "--out", str(out), "--config", str(strict)) == 0
    s = json.loads((out / "curation.json").read_text())
    assert s["counts"]["examples"]["kept"] == 0 and s["config"]["thresholds"]["p_sync"] == {"low": 0.9}
    assert next((out / "shards").glob("*.jsonl")).read_bytes() == shard
    assert (out / "train.txt").read_text() == "" and not list((out / "videos").rglob("*.mp4"))
    changed = tmp_path / "signals.toml"
    changed.write_text("[clips]\nstride = 1.0\n")
    with pytest.raises(ValueError, match="only \\[thresholds\\] and \\[dataset\\] may change"):
        from asva_bench.curation.pipeline import merge
        merge(out, load_config("mini", changed))


def test_job_array_shards_then_merge_equal_single(single, pool, small_config, tmp_path, capsys):
    out = tmp_path / "array"
    base = ["curate", "--input", str(pool / "videos"), "--out", str(out), "--profile", "mini",
            "--config", str(small_config)]
    assert run_cli(*base, "--shard", "1/2") == 0
    capsys.readouterr()
    assert run_cli("curate", "--merge", "--out", str(out), "--json") == 2
    assert "shard-00000-of-00002.jsonl" in json.loads(capsys.readouterr().out)["error"]
    assert run_cli(*base, "--shard", "0/2") == 0
    assert run_cli("curate", "--merge", "--out", str(out)) == 0
    assert files_of(out) == files_of(single)


def test_torchrun_two_processes_equal_single(single, pool, small_config, tmp_path):
    out = tmp_path / "multi"
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29547", "-m", "asva_bench.cli",
                          "curate", "--input", str(pool / "videos"), "--out", str(out), "--profile", "mini",
                          "--config", str(small_config), "--json"],
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                          "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    printed = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(printed) == 1                                       # rank 0 reports
    timing = json.loads((out / "timing.json").read_text())["shards"]
    assert [t["shard"] for t in timing] == [[0, 2], [1, 2]] and sum(t["videos"] for t in timing) == 18
    assert files_of(out) == files_of(single)


def test_apply_review_folds_marks_back(single, tmp_path, capsys):
    import csv
    import shutil
    out = tmp_path / "reviewed"
    shutil.copytree(single, out)
    kept = [r for r in csv.DictReader(open(out / "manifest" / "examples.csv")) if r["status"] == "kept"]
    victim = kept[0]
    runs = json.loads((out / "curation.json").read_text())
    clips = list(csv.DictReader(open(out / "manifest" / "clips.csv")))
    dropped = next(r for r in clips if r["status"] == "dropped" and r["passed_filters"] == "false"
                   and r["class"] != "gun_bang")
    marks = {"schema": "asva-bench/curation-review/v1", "curation": "x", "class": victim["class"], "marks": [
        {"item": "a", "video": victim["video"], "start": float(victim["start"]), "end": float(victim["end"]),
         "kind": "kept", "mark": "reject"},
        {"item": "b", "video": dropped["video"], "start": float(dropped["start"]), "end": float(dropped["end"]),
         "kind": "dropped", "mark": "accept"}]}
    f = tmp_path / "review-x.json"
    f.write_text(json.dumps(marks))
    capsys.readouterr()
    assert run_cli("curate", "--apply-review", str(f), "--out", str(out), "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["marks"] == 2
    lists = (out / "train.txt").read_text() + (out / "test.txt").read_text()
    assert victim["example"] + ".mp4" not in lists
    assert not (out / "videos" / (victim["example"] + ".mp4")).exists()
    after = list(csv.DictReader(open(out / "manifest" / "clips.csv")))
    row = next(r for r in after if r["video"] == dropped["video"] and r["start"] == dropped["start"])
    assert row["review"] == "accepted" and row["reason"].startswith("review: accepted")
    s = json.loads((out / "curation.json").read_text())
    assert s["review"] == {"marks": 2, "accepted_spans": 1, "rejected_spans": 1}
    assert s["counts"]["clips"]["review_rejected"] >= 1
    # a marks file naming an unknown video is refused, with the entry
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**marks, "marks": [{**marks["marks"][0], "video": "nope/x.mp4"}]}))
    assert run_cli("curate", "--apply-review", str(bad), "--out", str(out)) == 2
    assert "marks[0]" in capsys.readouterr().err
    del runs


def test_curated_folder_can_be_benchmarked(single, tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--model", "static", "--dataset", "avsync15", "--root", str(single), "--profile", "mini",
                   "--out", str(out), "--no-score") == 0
    rec = json.loads((out / "run.json").read_text())
    n_test = len((single / "test.txt").read_text().split())
    assert rec["status"] == "complete" and rec["clips"]["generated"] == 3 * n_test


def test_cli_errors_name_the_fix(tmp_path, capsys):
    assert run_cli("curate", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")) == 2
    assert "input folder not found" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    (tmp_path / "pool" / "c").mkdir(parents=True)
    avio.write_clip(tmp_path / "pool" / "c" / "v.mp4", _scene(np.random.default_rng(0), 72), 24,
                    audio=np.zeros(3 * SR, np.float32), preset="ultrafast")
    assert run_cli("curate", "--input", str(tmp_path / "pool"), "--out", str(tmp_path / "full")) == 2
    assert "not a curation folder" in capsys.readouterr().err
    assert run_cli("curate", "--merge", "--out", str(tmp_path / "nothing")) == 2
    assert "not a curation folder" in capsys.readouterr().err
    assert run_cli("curate", "--input", str(tmp_path / "pool"), "--out", str(tmp_path / "o2"), "--shard", "3/2") == 2


def test_datasets_make_synth_wild_json(tmp_path, capsys):
    root = tmp_path / "w"
    assert run_cli("datasets", "make", "synth-wild", "--root", str(root), "--seed", "9", "--videos-per-class", "6",
                   "--defects-per-class", "1", "--small-classes", "1", "--small-class-videos", "1", "--workers", "1",
                   "--classes", "dog_bark,frog_croak", "--json") == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["input"] == str(root / "videos") and rec["videos"] == 6 + 1 + 3
    assert rec["classes"] == ["dog_bark", "frog_croak"] and "clean" not in rec["counts"]
    assert math.isclose(sum(rec["counts"].values()), rec["videos"])
