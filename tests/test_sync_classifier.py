"""The sync classifier: architecture and checkpoint layouts, clip cache exactness, contrastive
training (loss goes down, resume is exact), shift evaluation and P_Sync."""

import json
import math

import numpy as np
import pytest
import torch

from asva_bench.backbones.base import BackboneInputError, WeightsFormatError
from asva_bench.backbones.sync_classifier import (MINI_SYNC, MODULES, PAPER_SYNC, SyncClassifier, load_checkpoint,
                                                  load_modules_folder, p_sync, save_checkpoint, save_modules_folder)
from asva_bench.datasets.base import VideoEntry
from asva_bench.protocol import MINI
from asva_bench.training.clip_cache import build_clip_cache, check_cache_matches, quantise_start
from asva_bench.training.shift_eval import COARSE_SHIFT, PAPER_SHIFT, candidate_starts, evaluate_sync
from asva_bench.training.sync_trainer import SyncTrainConfig, contrastive_loss, train_sync

from .conftest import make_video


# --------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------
def test_paper_architecture_matches_released_layout():
    """Parameter names and shapes of the released checkpoint (docs/protocol.md, "The sync classifier")."""
    model = SyncClassifier(PAPER_SYNC)
    sd = model.state_dict()
    golden = {
        "audio_encoder.conv1.0.weight": (64, 1, 7, 7),
        "audio_encoder.block1.conv1.weight": (64, 64, 3, 3),
        "audio_encoder.block2.conv1.weight": (128, 64, 3, 3),
        "audio_encoder.block4.conv2.weight": (512, 512, 3, 3),
        "video_encoder.conv1.0.weight": (64, 3, 3, 7, 7),
        "video_encoder.conv2x.1.spt_conv1.weight": (64, 64, 1, 3, 3),
        "video_encoder.conv3x.0.tmp_conv1.weight": (128, 128, 3, 1, 1),
        "video_encoder.conv3x.0.res_conv.weight": (128, 64, 1, 1, 1),
        "video_encoder.conv5x.1.out_bn.running_var": (512,),
        "head.fc.0.weight": (512, 1024),
        "head.fc.3.weight": (256, 512),
        "head.fc.6.weight": (1, 256),
    }
    for k, shape in golden.items():
        assert tuple(sd[k].shape) == shape, k
    assert "video_encoder.conv2x.0.res_conv.weight" not in sd  # 64 -> 64, stride 1: identity shortcut
    # MLP head: 1024*512+512 + 512*256+256 + 256+1 parameters
    assert sum(p.numel() for p in model.head.parameters()) == 1024 * 512 + 512 + 512 * 256 + 256 + 256 + 1
    # audio: 7x7 stem + 4 stages of two 3x3 convs (no bias) + BN affine
    a = 49 * 64 + 2 * 64
    for cin, c in ((64, 64), (64, 128), (128, 256), (256, 512)):
        a += 9 * cin * c + 9 * c * c + 4 * c
    assert sum(p.numel() for p in model.audio_encoder.parameters()) == a


def test_paper_forward_shapes():
    model = SyncClassifier(PAPER_SYNC).eval()
    clips = torch.rand(1, 12, 3, 64, 64)      # squash-resized to 224 inside
    mel = torch.randn(1, 1, 128, 204)
    assert model.preprocess_video(clips).shape == (1, 3, 12, 224, 224)
    a = model.encode_audio(mel)
    assert a.shape == (1, 512)
    assert model.phi(clips, mel).shape == (1,)


def test_mini_is_small_and_temporal():
    model = SyncClassifier(MINI_SYNC).eval()
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 < n < 400_000
    clips, mel = torch.rand(3, 12, 3, 64, 64), torch.randn(3, 1, 128, 204)
    assert model.preprocess_video(clips).shape == (3, 6, 12, 32, 32)   # rgb + frame difference
    assert model.encode_audio(mel).shape == (3, 48, 12)
    assert model.encode_video(clips).shape == (3, 48, 12)
    phi = model.phi(clips, mel)
    m = model.phi_matrix(clips, mel)
    assert m.shape == (3, 3)
    torch.testing.assert_close(m.diagonal(), phi, rtol=1e-5, atol=1e-5)


def test_phi_rejects_bad_input():
    model = SyncClassifier(MINI_SYNC).eval()
    mel = torch.randn(2, 1, 128, 204)
    with pytest.raises(BackboneInputError, match="0..255"):
        model.phi(torch.rand(2, 12, 3, 64, 64) * 255, mel)
    with pytest.raises(BackboneInputError, match="12 frames"):
        model.phi(torch.rand(2, 8, 3, 64, 64), mel)
    with pytest.raises(BackboneInputError, match="waveform"):
        model.phi(torch.rand(2, 12, 3, 64, 64), torch.randn(2, 32000))
    with pytest.raises(BackboneInputError, match="2 clips but 1 mels"):
        model.phi(torch.rand(2, 12, 3, 64, 64), mel[:1])


def test_checkpoint_round_trips(tmp_path):
    model = SyncClassifier(MINI_SYNC).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    clips, mel = torch.rand(2, 12, 3, 64, 64), torch.randn(2, 1, 128, 204)
    ref = model.phi(clips, mel)
    st, js = save_checkpoint(model, tmp_path / "ours", metadata={"note": "x"})
    assert json.loads(js.read_text())["config"]["name"] == "mini"
    torch.testing.assert_close(load_checkpoint(st).phi(clips, mel), ref)
    # the released layout: three ModelMixin folders with diffusion_pytorch_model.bin
    folder = save_modules_folder(model, tmp_path / "modules")
    for m in MODULES:
        assert (folder / m / "diffusion_pytorch_model.bin").is_file()
        assert (folder / m / "config.json").is_file()
    torch.testing.assert_close(load_modules_folder(folder, MINI_SYNC).phi(clips, mel), ref)
    # old exports without num_batches_tracked still load
    sd = torch.load(folder / "head" / "diffusion_pytorch_model.bin", weights_only=True)
    a = torch.load(folder / "audio_encoder" / "diffusion_pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in a.items() if not k.endswith("num_batches_tracked")},
               folder / "audio_encoder" / "diffusion_pytorch_model.bin")
    torch.testing.assert_close(load_modules_folder(folder, MINI_SYNC).phi(clips, mel), ref)
    # a checkpoint of another size is refused with the keys that do not fit
    with pytest.raises(WeightsFormatError, match="head width 64 != config 512"):
        load_modules_folder(folder, PAPER_SYNC)
    torch.save({**sd, "extra.weight": torch.zeros(1)}, folder / "head" / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsFormatError, match="unexpected key\\(s\\): head.extra.weight"):
        load_modules_folder(folder, MINI_SYNC)
    with pytest.raises(FileNotFoundError, match="missing sub-folder video_encoder"):
        import shutil
        shutil.rmtree(folder / "video_encoder")
        load_modules_folder(folder, MINI_SYNC)


# --------------------------------------------------------------------------
# Loss, P_Sync
# --------------------------------------------------------------------------
def test_contrastive_loss_golden():
    logits = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, True]])
    z = logits[0].double().numpy() / 0.1

    def ce(rows):
        return np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(rows)])
    expected = 0.5 * (ce(z) + ce(z.T))
    assert contrastive_loss(logits, mask, 0.1).item() == pytest.approx(expected, rel=1e-4)
    # a masked third clip: only the 2x2 block counts
    mask2 = torch.tensor([[True, True, False]])
    z2 = z[:2, :2]
    assert contrastive_loss(logits, mask2, 0.1).item() == pytest.approx(0.5 * (ce(z2) + ce(z2.T)), rel=1e-4)


def test_p_sync_golden():
    row = torch.tensor([0.0, math.log(3.0), 0.0])   # softmax -> 0.2, 0.6, 0.2 (no temperature)
    assert float(p_sync(row, 1)) == pytest.approx(0.6)
    assert p_sync(torch.stack([row, row.flip(0)]), torch.tensor([1, 0])).tolist() == pytest.approx([0.6, 0.2])


def test_candidate_starts():
    s = candidate_starts(3.0, COARSE_SHIFT, MINI)      # 9 x 0.2 s span 1.6 s, centred in [0, 3]
    assert len(s) == 9 and s[4] == pytest.approx(1.5) and s[0] == pytest.approx(0.7)
    assert np.diff(s) == pytest.approx([0.2] * 8)
    assert candidate_starts(1.5, COARSE_SHIFT, MINI) is None
    p = candidate_starts(1.2, PAPER_SHIFT, MINI)
    assert len(p) == 31 and p[0] == pytest.approx(0.0) and p[-1] == pytest.approx(1.2)


# --------------------------------------------------------------------------
# Clip cache and training on tiny videos
# --------------------------------------------------------------------------
def _event_video(path, seconds: float, seed: int):
    """64x64 at 24 fps: a white square flashes for 4 frames at random onsets, each with a click."""
    from asva_bench import avio
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 24))
    frames = np.full((n, 64, 64, 3), 40, np.uint8)
    wav = (0.01 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    t = rng.uniform(0.1, 0.5)
    while t < seconds - 0.3:
        k = int(round(t * 24))
        frames[k:k + 4, 16:48, 16:48] = 255
        i = int(k / 24 * 16000)
        wav[i:i + 1600] += 0.6 * np.exp(-np.arange(1600) / 300.0).astype(np.float32)
        t += rng.uniform(0.35, 0.9)
    return avio.write_clip(path, frames, 24, audio=wav, sample_rate=16000, preset="ultrafast")


def _tiny_cache(tmp_path, n=4, seconds=4.0):
    entries = []
    for i in range(n):
        p = _event_video(tmp_path / "v" / f"c{i % 2}" / f"v{i}.mp4", seconds + 0.5 * i, seed=i)
        entries.append(VideoEntry(f"c{i % 2}/v{i}.mp4", f"c{i % 2}", f"class {i % 2}", "train", str(p)))
    return build_clip_cache(entries, MINI, tmp_path / "cache", progress=False), entries


def test_clip_cache_equals_protocol_decoder(tmp_path):
    # a non-square source: the aspect crop and resize take the general path
    p = make_video(tmp_path / "v" / "c0" / "v0.mp4", seconds=4.0, size=(48, 64), seed=3)
    entries = [VideoEntry("c0/v0.mp4", "c0", "class 0", "train", str(p))]
    cache = build_clip_cache(entries, MINI, tmp_path / "cache", progress=False)
    v = cache.load(0)
    for s in (0.0, 0.37, 1.2, quantise_start(v.max_start(), MINI)):
        d = check_cache_matches(cache, v, s, entries[0].path)
        assert d["frames"] <= 1.5 / 255 + 1e-6      # uint8 resize vs the float protocol transform
        assert d["mel"] < 1e-4                      # whole-track fbank rows == the clip's own mel
    with pytest.raises(Exception, match="hop grid"):
        v.clip_mel(0.005)
    with pytest.raises(Exception, match="cached track ends"):
        v.clip_mel(quantise_start(v.max_start(), MINI) + 0.5)
    # a second build reuses the files
    mtime = (tmp_path / "cache" / "c0" / "v0.safetensors").stat().st_mtime_ns
    build_clip_cache(entries, MINI, tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / "c0" / "v0.safetensors").stat().st_mtime_ns == mtime


def test_clip_cache_reports_bad_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    e = VideoEntry("x/bad.mp4", "x", "x", "train", str(bad))
    with pytest.raises(Exception, match="bad.mp4"):
        build_clip_cache([e], MINI, tmp_path / "cache", progress=False)
    cache = build_clip_cache([e], MINI, tmp_path / "cache", progress=False, skip_bad=True)
    assert len(cache) == 0 and "bad.mp4" in (tmp_path / "cache" / "skipped.json").read_text()


def test_training_lowers_loss_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    cache, _ = _tiny_cache(tmp_path, n=4)
    cfg = SyncTrainConfig(num_clips=5, batch_videos=4, steps=40, lr=3e-3, warmup_steps=5, log_every=5,
                          checkpoint_every=10)
    out = train_sync(cache, tmp_path / "run", cfg, progress=False)
    assert out["done"] and (tmp_path / "run" / "sync-mini.safetensors").is_file()
    recs = [json.loads(x) for x in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    assert recs[0]["event"] == "start" and len(losses) == 8
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses

    # interrupted after 15 steps then resumed == straight through (batches seeded by step)
    short = SyncTrainConfig(num_clips=5, batch_videos=4, steps=20, lr=3e-3, warmup_steps=5, log_every=5,
                            checkpoint_every=10)
    a = train_sync(cache, tmp_path / "a", short, progress=False)
    part = train_sync(cache, tmp_path / "b", short, progress=False, stop_after=15)
    assert not part["done"] and part["step"] == 15
    b = train_sync(cache, tmp_path / "b", short, progress=False)
    assert b["done"]
    wa = load_checkpoint(a["checkpoint"]).state_dict()
    wb = load_checkpoint(b["checkpoint"]).state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], msg=k)
    steps = [json.loads(x).get("step") for x in (tmp_path / "b" / "loss_log.jsonl").read_text().splitlines()
             if "loss" in x]
    assert steps == [5, 10, 15, 20]   # the log was cut back to the checkpoint and not duplicated
    with pytest.raises(ValueError, match="different training config"):
        train_sync(cache, tmp_path / "b", SyncTrainConfig(num_clips=5, batch_videos=4, steps=30), progress=False)


def test_evaluate_sync_reports_every_protocol(tmp_path):
    cache, _ = _tiny_cache(tmp_path, n=2, seconds=3.5)
    res = evaluate_sync(SyncClassifier(MINI_SYNC).eval(), cache)
    # 3.5 s fits the paper protocol (3.2 s) but not the coarse one (3.6 s) for the first video
    assert res["paper"]["a2v"]["n"] == 2 and res["paper"]["skipped_short"] == 0
    assert res["coarse"]["skipped_short"] == 1 and res["coarse"]["a2v"]["n"] == 1
    for key in ("exact", "within_tol", "p_sync"):
        assert 0.0 <= res["paper"][key] <= 1.0
    assert 0.0 < res["relsync"]["relsync_shifted"] < 1.0


def test_paper_classifier_builds_from_the_weight_cache(tmp_path, monkeypatch):
    """The registered paper backbone reads the released three-folder layout from the cache."""
    from asva_bench.backbones import WeightsMissingError, build_backbone
    from asva_bench.backbones.sync_classifier import PAPER_SYNC_NAME
    monkeypatch.setenv("ASVA_BENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="1Paqjad4a8mjujMJBEYqmnNEgGPi595lb"):
        build_backbone(PAPER_SYNC_NAME, cache_root=tmp_path)
    torch.manual_seed(0)
    model = SyncClassifier(PAPER_SYNC).eval()
    save_modules_folder(model, tmp_path / "weights" / PAPER_SYNC_NAME)
    built = build_backbone(PAPER_SYNC_NAME, cache_root=tmp_path)
    assert built.profile == "paper" and built.config.name == "paper"
    clips, mel = torch.rand(1, 12, 3, 64, 64), torch.randn(1, 1, 128, 204)
    torch.testing.assert_close(built.phi(clips, mel), model.phi(clips, mel))
