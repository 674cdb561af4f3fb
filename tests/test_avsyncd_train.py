"""AVSyncD / I2VD training, resume, adapters and `animate`, on a tiny base and a synthetic packed clip cache."""

import argparse
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from asva_bench.adapters import AdapterError, build_adapter, get_adapter_class, parse_model_args
from asva_bench.adapters.api import ClipBatch, validate_output
from asva_bench.avio import probe, read_audio
from asva_bench.backbones.mini_embedding import MiniEmbedding, MiniEmbeddingConfig, build_vocabulary, save_checkpoint
from asva_bench.models.avsyncd import make_scheduler, training_loss
from asva_bench.models.avsyncd.adapter import AVSyncD
from asva_bench.models.avsyncd.animate import AnimateWarning, add_animate_command, animate
from asva_bench.models.avsyncd.components import ComponentError, check_identity, load_frozen_parts
from asva_bench.models.avsyncd.mini_base import MiniBase, MiniBaseConfig, PatchPCAAutoencoder
from asva_bench.models.avsyncd.train import (CHECKPOINT_DIR, LOG_FILE, OPTIMIZER_FILE, TrainConfig, TrainingError,
                                             add_train_commands, diffusion_loss, motion_weights, train)
from asva_bench.protocol import MINI, waveforms_to_mel
from asva_bench.training.clip_cache import PCM_SCALE, PackedClips

TEXTS = ["hammer strike", "dog bark"]  # synth class texts (animate guesses among them)
CACHE_FPS = 12.0
SECONDS = 3.0
SR = MINI.sample_rate


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py


# --------------------------------------------------------------------------
# Fixtures: a synthetic packed clip cache, a tiny base bundle, a tiny audio encoder
# --------------------------------------------------------------------------
def synthetic_video(seed: int, label: int):
    """3 s: a coloured background; a white square shows for 0.25 s after each click of the audio."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * CACHE_FPS)
    onsets = np.sort(rng.uniform(0.1, SECONDS - 0.3, size=4))
    frames = np.empty((n, 3, 64, 64), np.uint8)
    frames[:] = (np.array([200, 60, 60]) if label == 0 else np.array([60, 60, 200]))[:, None, None]
    for k in range(n):
        t = k / CACHE_FPS
        if np.any((onsets <= t) & (t < onsets + 0.25)):
            frames[k, :, 20:36, 24:40] = 255
    audio = 0.01 * rng.standard_normal(int(SECONDS * SR))
    for o in onsets:
        i = int(o * SR)
        audio[i:i + 2000] += 0.6 * np.exp(-np.arange(2000) / 400.0) * rng.choice([-1, 1], 2000)
    return frames, (np.clip(audio, -1, 1) * PCM_SCALE).round().astype(np.int16)


def make_cache(n_videos: int = 6) -> PackedClips:
    vids = [synthetic_video(s, s % 2) for s in range(n_videos)]
    frames = torch.from_numpy(np.concatenate([v[0] for v in vids]))
    audio = torch.from_numpy(np.concatenate([v[1] for v in vids]))
    fo = torch.tensor([0] + [len(v[0]) for v in vids]).cumsum(0)
    ao = torch.tensor([0] + [len(v[1]) for v in vids]).cumsum(0)
    labels = torch.tensor([s % 2 for s in range(n_videos)])
    # starts j with (j / 12 + 2 s) inside 3 s: j = 0..12
    num_starts = torch.full((n_videos,), int(round((SECONDS - MINI.clip_seconds) * CACHE_FPS)) + 1)
    meta = {"key": {}, "protocol": MINI.to_dict(), "fps": CACHE_FPS,
            "classes": ["hammer_strike", "dog_bark"], "class_texts": TEXTS,
            "video_ids": [f"v{s}" for s in range(n_videos)]}
    return PackedClips(frames, fo, audio, ao, labels, num_starts, meta)


TINY_BASE = MiniBaseConfig(patch_size=8, latent_channels=8, block_out_channels=(16, 16), layers_per_block=1,
                           attention_levels=1, attention_heads=2, norm_num_groups=8, text_dim=16, text_layers=1,
                           text_heads=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(cache, base folder, encoder path, tmp dir): what every test trains or samples with."""
    tmp = tmp_path_factory.mktemp("avsyncd_world")
    cache = make_cache()
    vae = PatchPCAAutoencoder.fit(cache.frames[::3].float() / 255.0, patch_size=8, latent_channels=8)
    base = MiniBase.create(TEXTS, vae, TINY_BASE, seed=0)
    base.save(tmp / "base", dtype=torch.float32)
    torch.manual_seed(0)
    enc = MiniEmbedding(MiniEmbeddingConfig(embed_dim=16, image_channels=(8, 8, 8, 8), audio_channels=(8, 8, 8),
                                            text_dim=8, vocabulary=build_vocabulary(TEXTS))).eval()
    save_checkpoint(enc, tmp / "enc" / "mini-embedding")
    return {"cache": cache, "base": tmp / "base", "enc": tmp / "enc" / "mini-embedding.safetensors", "tmp": tmp}


def config(**kw) -> TrainConfig:
    base = dict(batch_size=4, lr=3e-3, warmup_steps=0, probe_every=1000, probe_clips=6, log_every=1,
                progress=False, precompute_audio="on", checkpoint_minutes=1000.0)
    base.update(kw)
    return TrainConfig.for_profile(base.pop("model", "avsyncd"), "mini", **base)


def run(world, out, resume=False, **kw):
    return train(config(**kw), out, world["cache"], base=world["base"], audio_encoder=world["enc"], resume=resume)


def probes(out):
    return {r["step"]: r["probe"] for r in map(json.loads, (out / LOG_FILE).read_text().splitlines())
            if "probe" in r}


@pytest.fixture(scope="module")
def trained(world):
    """An AVSyncD trained 1 step, then resumed to 30 (probe after each), and an I2VD trained 2 steps."""
    out = world["tmp"] / "avsyncd"
    run(world, out, steps=1, lr=1e-2)
    summary = run(world, out, resume=True, steps=30, lr=1e-2)
    i2 = world["tmp"] / "i2vd"
    run(world, i2, model="i2vd", steps=2)
    return {"out": out, "summary": summary, "ckpt": out / CHECKPOINT_DIR, "i2vd": i2 / CHECKPOINT_DIR}


# --------------------------------------------------------------------------
# Golden: the objective and the motion weights
# --------------------------------------------------------------------------
def zero_model(noisy, t, text, audio):
    return torch.zeros_like(noisy)


def test_diffusion_loss_is_training_loss_and_weighted_mean_is_exact():
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, 4, 3, 4, 4, generator=g)
    sched = make_scheduler("ddpm")
    # unweighted == the pipeline's objective, draw for draw (a model that depends on its inputs)
    from tests.test_avsyncd_arch import GEO, tiny_unet2d  # noqa: F401  (shared toy model)
    from asva_bench.models.avsyncd import AVSyncDUNet
    net = AVSyncDUNet.from_unet2d(tiny_unet2d(channels=3), audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    lat16 = torch.randn(2, 4, 3, 16, 16, generator=g)
    text, audio = torch.randn(2, 5, 32, generator=g), torch.randn(2, GEO.n_tokens, GEO.dim, generator=g)
    null = torch.zeros(1, GEO.n_tokens, GEO.dim)
    with torch.no_grad():
        a = diffusion_loss(net, lat16, audio, text, null, sched, generator=torch.Generator().manual_seed(5))
        b = training_loss(net, lat16, audio, text, null, sched, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # weighted: with a zero predictor the error is noise^2; recompute the noise from the same draws
    w = torch.zeros(2, 3, 1, 4, 4)
    w[0, 1] = 2.0
    w[1, 2, :, :2] = 1.0
    got = diffusion_loss(zero_model, lat, None, None, None, sched, generator=torch.Generator().manual_seed(9), weights=w)
    g2 = torch.Generator().manual_seed(9)
    torch.randint(0, 1000, (2,), generator=g2)
    noise = torch.randn(lat.shape, generator=g2)
    e = noise[:, 1:].square()
    want = (2.0 * e[0, 1].sum() + e[1, 2, :, :2].sum()) / (2.0 * 48 + 24)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    # constant weights give the plain mean
    plain = diffusion_loss(zero_model, lat, None, None, None, sched, generator=torch.Generator().manual_seed(9))
    const = diffusion_loss(zero_model, lat, None, None, None, sched, generator=torch.Generator().manual_seed(9),
                           weights=torch.full((2, 3, 1, 4, 4), 3.0))
    assert float(plain) == pytest.approx(float(e.mean()), rel=1e-6)
    assert float(const) == pytest.approx(float(plain), rel=1e-6)


def test_motion_weights_golden():
    frames = torch.full((1, 3, 3, 64, 64), 0.5)
    frames[0, 1, :, 0:16, 0:16] += 0.2  # frame 2: latent cells (0,0),(0,1),(1,0),(1,1) of 8x8 px fully changed
    frames[0, 2, :, 32:36, 32:36] -= 0.2  # frame 3: a quarter of cell (4,4) changed (|.| counts)
    frames[0, 2, 0, 56:64, 56:64] += 0.15  # frame 3: one channel of cell (7,7): mean change 0.05
    w = motion_weights(frames, (8, 8), strength=4.0, threshold=0.1)
    assert w.shape == (1, 2, 1, 8, 8)
    want = torch.ones(1, 2, 1, 8, 8)
    want[0, 0, 0, :2, :2] = 5.0                       # change 0.2 -> saturates at 1 + 4
    want[0, 1, 0, 4, 4] = 1 + 4 * (0.2 * 16 / 64) / 0.1  # 0.05 / 0.1 -> 3.0
    want[0, 1, 0, 7, 7] = 1 + 4 * (0.15 / 3) / 0.1       # 0.05 -> 3.0
    torch.testing.assert_close(w, want, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def test_training_reduces_the_loss_and_writes_a_loadable_checkpoint(trained):
    p = probes(trained["out"])
    # the probe scores fixed clips at fixed noise: a fair before / after (the frozen base is random here,
    # so only the new modules learn; measured 1.09 -> 0.92)
    assert sorted(p) == [1, 30]
    assert p[30]["mse_true"] < 0.9 * p[1]["mse_true"], p
    assert {"shift_gain", "null_gain", "moving_shift_gain"} <= set(p[30])
    s = trained["summary"]
    assert s["step"] == 30 and s["finished"] and s["num_parameters"]["trainable"] > 0
    names = {f.name for f in trained["ckpt"].iterdir()}
    assert {"avsyncd_config.json", "avsyncd_trainable.safetensors", "avsyncd_training.json", OPTIMIZER_FILE} <= names
    rec = json.loads((trained["ckpt"] / "avsyncd_training.json").read_text())
    assert rec["step"] == 30 and rec["model"] == "avsyncd" and rec["base"]["unet_sha256"]
    # the audio path moved away from its zero initialisation
    w = load_file(str(trained["ckpt"] / "avsyncd_trainable.safetensors"))
    audio_out = [v for k, v in w.items() if "attn_audio.to_out.0.weight" in k]
    assert audio_out and all(v.abs().sum() > 0 for v in audio_out)


def test_resume_continues_exactly(world):
    a, b = world["tmp"] / "straight", world["tmp"] / "resumed"
    kw = dict(schedule="constant", steps=4)
    run(world, a, **kw)
    run(world, b, **{**kw, "steps": 2})
    summary = run(world, b, resume=True, **kw)
    assert summary["step"] == 4
    wa = load_file(str(a / CHECKPOINT_DIR / "avsyncd_trainable.safetensors"))
    wb = load_file(str(b / CHECKPOINT_DIR / "avsyncd_trainable.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    oa = torch.load(a / CHECKPOINT_DIR / OPTIMIZER_FILE, weights_only=False)["optimizer"]
    ob = torch.load(b / CHECKPOINT_DIR / OPTIMIZER_FILE, weights_only=False)["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    for k in oa["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(oa["state"][k][name], ob["state"][k][name]), (k, name)
    steps = [r["step"] for r in map(json.loads, (b / LOG_FILE).read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_resume_refuses_other_settings_and_other_frozen_weights(world, trained):
    out = trained["out"]
    with pytest.raises(TrainingError, match="--resume"):
        run(world, out, steps=40, lr=1e-2)
    with pytest.raises(TrainingError, match=r"lr: saved 0\.01, now 0\.001"):
        run(world, out, resume=True, steps=40, lr=1e-3)
    # a checkpoint is tied to its frozen base: another base is refused with both fingerprints named
    other = world["tmp"] / "other_base"
    vae = PatchPCAAutoencoder.fit(world["cache"].frames[::5].float() / 255.0, patch_size=8, latent_channels=8)
    MiniBase.create(TEXTS, vae, TINY_BASE, seed=1).save(other, dtype=torch.float32)
    parts = load_frozen_parts("mini", base=other, audio_encoder=world["enc"])
    rec = json.loads((trained["ckpt"] / "avsyncd_training.json").read_text())
    with pytest.raises(ComponentError, match="base UNet: trained on .*base .*loading .*other_base"):
        check_identity(rec, parts, trained["ckpt"])
    with pytest.raises(AdapterError, match="other frozen weights"):
        AVSyncD(checkpoint=str(trained["ckpt"]), base=str(other), audio_encoder=str(world["enc"])).setup(MINI)
    # an AVSyncD checkpoint is not an I2VD one
    with pytest.raises(AdapterError, match="'avsyncd' checkpoint, not 'i2vd'"):
        build_adapter("i2vd", {"checkpoint": str(trained["ckpt"]), "base": str(world["base"])}).setup(MINI)


# --------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------
def clip_batch(world, n=3, seeds=None, shift=0):
    cache = world["cache"]
    frames, audio = [], []
    for v in range(n):
        f, a = cache.clip(v, 2 + shift if shift else 2)
        frames.append(cache.clip(v, 2)[0][0].float() / 255.0)
        audio.append(a)
    audio = torch.stack(audio)
    return ClipBatch(first_frame=torch.stack(frames), audio=audio, mel=waveforms_to_mel(audio, MINI),
                     text=[TEXTS[v % 2] for v in range(n)], clip_ids=[f"c/v{v}_clip-00" for v in range(n)],
                     seeds=list(seeds if seeds is not None else range(100, 100 + n)), protocol=MINI)


def adapter(world, trained, **kw):
    # pure-noise start (the paper's sampler) unless a test asks otherwise: the toy model's audio
    # path is weak, and a half-way start leaves guidance little to act on
    kw.setdefault("strength", 1.0)
    a = AVSyncD(checkpoint=str(trained["ckpt"]), base=str(world["base"]), audio_encoder=str(world["enc"]),
                steps=kw.pop("steps", 2), **kw)
    a.setup(MINI, "cpu")
    return a


def test_avsyncd_adapter_output_seeds_and_eta(world, trained):
    batch = clip_batch(world)
    a4 = adapter(world, trained)
    out = a4.generate(batch)
    assert out.shape == (3, 12, 3, 64, 64) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # mini conditioning "exact": frame 1 is the input itself, before and after the harness validates it
    assert a4.conditioning_mode == "exact" and a4.first_frame == "generated"
    assert torch.equal(out[:, 0], batch.first_frame)
    assert torch.equal(validate_output(a4, batch, out)[:, 0], batch.first_frame)
    # conditioning "reference" (the paper default): frame 1 decoded from the latent of the uint8-truncated image
    ref = adapter(world, trained, conditioning="reference")
    vae = ref.parts.vae
    quantised = torch.floor(batch.first_frame * 255) / 255
    roundtrip = ((vae.decode(vae.encode(quantised * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
    out_ref = ref.generate(batch)
    torch.testing.assert_close(out_ref[:, 0], roundtrip, atol=1e-5, rtol=0)  # the mini PCA codec's std is 0
    assert not torch.equal(out_ref[:, 0], batch.first_frame)
    # deterministic per clip seed, independent of batch-mates
    assert torch.equal(a4.generate(batch), out)
    alone = a4.generate(clip_batch(world, n=1, seeds=[100]))
    torch.testing.assert_close(alone[0], out[0], atol=1e-5, rtol=0)
    other_seed = a4.generate(clip_batch(world, seeds=[7, 8, 9]))
    assert (other_seed - out).abs().max() > 1e-3
    # the audio guidance scale matters once the audio path is trained
    a1 = adapter(world, trained, eta=1.0)
    assert (a1.generate(batch) - out).abs().max() > 1e-4
    cfg = a4.config()
    assert cfg["eta"] == 4.0 and cfg["default_steps"] == {"paper": 50, "mini": 20} and cfg["weights_sha256"]
    assert cfg["default_scheduler"] == {"paper": "pndm-reference", "mini": "ddim"}
    assert cfg["default_conditioning"] == {"paper": "reference", "mini": "exact"}
    assert cfg["default_strength"] == {"paper": 1.0, "mini": 0.5}


def test_noise_prior_start_runs_the_schedule_tail_and_keeps_the_scene(world, trained):
    batch = clip_batch(world)
    half = adapter(world, trained, strength=0.5, steps=4)
    assert half.scheduler_name == "ddim" and half.sampling_strength == 0.5
    out = half.generate(batch)
    full = adapter(world, trained, strength=1.0, steps=4, scheduler="ddim").generate(batch)
    # starting from the noised first frame keeps later frames closer to it than a pure-noise start
    d_half = float((out[:, 1:] - out[:, :1]).abs().mean())
    d_full = float((full[:, 1:] - full[:, :1]).abs().mean())
    assert d_half < d_full
    with pytest.raises(AdapterError, match="needs scheduler=ddim"):
        AVSyncD(strength=0.5, scheduler="pndm")
    # pndm with the mini profile's default strength: refused at setup, before any weights are read
    with pytest.raises(AdapterError, match="strength 0.5 < 1 needs scheduler=ddim"):
        AVSyncD(scheduler="pndm", checkpoint=str(world["tmp"] / "no-such-checkpoint")).setup(MINI, "cpu")
    with pytest.raises(AdapterError, match=r"in \(0, 1\]"):
        AVSyncD(strength=1.5)


def test_i2vd_adapter(world, trained):
    a = build_adapter("i2vd", {"checkpoint": str(trained["i2vd"]), "base": str(world["base"]), "steps": 2})
    assert a.inputs == ("image", "text")
    a.setup(MINI, "cpu")
    batch = clip_batch(world, n=2)
    out = a.generate(batch)
    assert out.shape == (2, 12, 3, 64, 64) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert torch.equal(a.generate(batch), out)


def test_model_args_and_missing_checkpoints(world, tmp_path):
    with pytest.raises(AdapterError, match=r"no argument 'etta'\. Did you mean 'eta'\?.*Valid: eta, steps, "
                                           r"scheduler, strength, conditioning, checkpoint, base, audio_encoder, dtype"):
        parse_model_args(get_adapter_class("avsyncd"), ["etta=2"])
    with pytest.raises(AdapterError, match="'i2vd' has no argument 'eta'"):
        build_adapter("i2vd", ["eta=4"])
    assert parse_model_args(get_adapter_class("avsyncd"), ["eta=8", "steps=25"]) == {"eta": 8, "steps": 25}
    with pytest.raises(AdapterError, match="scheduler must be one of pndm-reference, pndm, ddim, got 'euler'"):
        AVSyncD(scheduler="euler")
    with pytest.raises(AdapterError, match="conditioning must be one of reference, exact, got 'pasted'"):
        AVSyncD(conditioning="pasted")
    with pytest.raises(AdapterError, match="strength 0.5 < 1 needs scheduler=ddim"):
        AVSyncD(strength=0.5, scheduler="pndm-reference")
    with pytest.raises(AdapterError, match=r"missing avsyncd_config\.json, avsyncd_trainable\.safetensors.*"
                                           "asva-bench train avsyncd"):
        AVSyncD(checkpoint=str(tmp_path)).setup(MINI)
    with pytest.raises(AdapterError, match="checkpoint=DIR.*ASVA_SD15_DIR"):
        AVSyncD().setup(MINI.replace(name="paper-256", height=256, width=256))


# --------------------------------------------------------------------------
# animate
# --------------------------------------------------------------------------
def write_wav(path, seconds, silent=False):
    from scipy.io import wavfile
    n = int(seconds * 22050)
    x = np.zeros(n, np.float32)
    if not silent:
        for t in (0.2, 0.7):
            i = int(t * 22050)
            x[i:i + 3000] = 0.5 * np.exp(-np.arange(3000) / 600.0)
    wavfile.write(path, 22050, x)
    return path


def test_animate_writes_a_clip_with_audio_and_warns(world, trained, tmp_path):
    from PIL import Image
    img = tmp_path / "in.png"
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(img)
    wav = write_wav(tmp_path / "short.wav", 1.2)
    kw = dict(steps=1, checkpoint=str(trained["ckpt"]), base=str(world["base"]), audio_encoder=str(world["enc"]))
    with pytest.warns(AnimateWarning) as rec:
        res = animate(img, wav, tmp_path / "clip.mp4", eta=4.0, **kw)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "RGBA image converted to RGB" in msgs
    assert "80x60 image resized to 64x64, centre-cropped to the 64:64 aspect ratio" in msgs
    assert "1.20 s of audio" in msgs and "zero-padded" in msgs
    assert res["text"] in TEXTS and res["steps"] == 1
    info = probe(tmp_path / "clip.mp4")
    assert info.num_frames == 12 and info.has_audio
    audio, sr = read_audio(tmp_path / "clip.mp4")
    assert sr == SR and abs(len(audio) / sr - 2.0) < 0.1
    # silent audio: a warning, still a clip; a square image of the right size: no resize warning
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "sq.png")
    with warnings.catch_warnings(record=True) as rec2:
        warnings.simplefilter("always")
        animate(tmp_path / "sq.png", write_wav(tmp_path / "silent.wav", 2.5, silent=True), tmp_path / "s.mp4",
                text="dog bark", **kw)
    msgs2 = [str(w.message) for w in rec2 if issubclass(w.category, AnimateWarning)]
    assert len(msgs2) == 1 and "silent" in msgs2[0]
    assert probe(tmp_path / "s.mp4").num_frames == 12


# --------------------------------------------------------------------------
# CLI wiring
# --------------------------------------------------------------------------
def test_cli_parsers():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    tr = sub.add_parser("train").add_subparsers(dest="what")
    add_train_commands(tr)
    add_animate_command(sub)
    a = p.parse_args(["train", "i2vd", "--profile", "mini", "--minutes", "2.5", "--device", "cuda", "--resume"])
    assert a.model == "i2vd" and a.minutes == 2.5 and a.resume and a.func.__name__ == "cmd_train"
    b = p.parse_args(["animate", "x.png", "y.wav", "--out", "c.mp4", "--eta", "8"])
    assert b.eta == 8.0 and b.profile == "mini" and b.func.__name__ == "cmd_animate"
    with pytest.raises(ValueError, match="--steps N and/or --minutes M"):
        TrainConfig.for_profile("avsyncd", "mini")
    paper = TrainConfig.for_profile("avsyncd", "paper")
    assert (paper.batch_size * paper.grad_accum, paper.lr, paper.motion_weight, paper.schedule) == \
        (64, 1e-4, 0.0, "constant")
    assert not math.isnan(paper.p_drop_audio) and paper.p_drop_audio == 0.2


def test_file_fingerprint(tmp_path):
    import hashlib
    from asva_bench.models.avsyncd.components import file_fingerprint
    small = tmp_path / "w.bin"
    small.write_bytes(bytes(range(256)) * 10)
    assert file_fingerprint(small) == hashlib.sha256(small.read_bytes()).hexdigest()  # = sha256sum
    # large files: size, head and tail only (chunk shrunk to 4 bytes to make 20 bytes "large")
    big = tmp_path / "big.bin"
    big.write_bytes(b"A" * 20)
    fp = file_fingerprint(big, chunk=4)
    assert fp == "quick:" + hashlib.sha256(b"20" + b"AAAA" + b"AAAA").hexdigest()
    big.write_bytes(b"A" * 19 + b"B")
    assert file_fingerprint(big, chunk=4) != fp


def test_torchrun_two_processes_train_in_step(world, tmp_path):
    """Under torchrun each process draws its own clips, gradients are averaged, rank 0 writes."""
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "ddp_train.py"
    script.write_text(f"""
import json, os, sys
sys.path.insert(0, {str(root)!r})
import torch
torch.set_num_threads(1)
from tests.test_avsyncd_train import config, make_cache
from asva_bench.models.avsyncd.train import train
out = sys.argv[1]
s = train(config(steps=3), out, make_cache(), base={str(world["base"])!r}, audio_encoder={str(world["enc"])!r})
with open(os.path.join(out, f"summary-{{s['rank']}}.json"), "w") as f:
    json.dump(s, f, default=str)
""")
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29533", str(script), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s0, s1 = (json.loads((out / f"summary-{r}.json").read_text()) for r in (0, 1))
    assert s0["world_size"] == s1["world_size"] == 2 and (s0["rank"], s1["rank"]) == (0, 1)
    assert s0["weights_digest"] == s1["weights_digest"]  # the processes stayed in step
    single = run(world, tmp_path / "single", steps=3)
    assert single["world_size"] == 1 and single["weights_digest"] != s0["weights_digest"]  # rank 1's clips counted
    logged = [r["step"] for r in map(json.loads, (out / LOG_FILE).read_text().splitlines()) if "loss" in r]
    assert logged == [1, 2, 3]  # one log, written once
    assert json.loads((out / "train_config.json").read_text())["world_size"] == 2
    assert (out / CHECKPOINT_DIR / "avsyncd_trainable.safetensors").is_file()
