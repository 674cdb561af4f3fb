"""Mini evaluators: the embedding model's interface and training, and the shipped checkpoints
(load through the registry, verified sizes and pins, quality bars on freshly built held-out
synth videos that no training run has seen)."""

import json

import numpy as np
import pytest
import torch

from asva_bench.backbones import BackboneInputError, build_backbone
from asva_bench.backbones import mini_embedding as me
from asva_bench.backbones import mini_features as mf
from asva_bench.backbones import sync_classifier as sc
from asva_bench.datasets.base import VideoEntry
from asva_bench.protocol import MINI
from asva_bench.training.clip_cache import build_clip_cache
from asva_bench.training.embedding_trainer import EmbeddingTrainConfig, soft_targets, train_embedding
from asva_bench.training.mini_eval import BARS, evaluate_mini_evaluators, perturb
from asva_bench.training.mini_evaluators import SHIPPED, SIZE_LIMIT_BYTES, sha256_file

TEXTS = ["dog bark", "lion roar", "playing_violin__fiddle"]


# --------------------------------------------------------------------------
# The embedding model (random weights)
# --------------------------------------------------------------------------
def test_vocabulary_and_unknown_words():
    assert me.words_of("playing_violin__fiddle") == ["playing", "violin", "fiddle"]
    assert me.build_vocabulary(TEXTS) == ("bark", "dog", "fiddle", "lion", "playing", "roar", "violin")
    model = me.MiniEmbedding(me.MiniEmbeddingConfig(vocabulary=me.build_vocabulary(TEXTS))).eval()
    e = model.embed_text(["Dog  bark", "lion roar"])
    assert e.shape == (2, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    # bag of words: order and case do not matter
    torch.testing.assert_close(model.embed_text(["bark dog"]), model.embed_text(["DOG_BARK"]))
    with pytest.raises(BackboneInputError, match=r"\['cat'\] outside .*bark, dog"):
        model.embed_text(["cat bark"])
    with pytest.raises(BackboneInputError, match="wrap a single text"):
        model.embed_text("dog bark")


def test_embedding_interface_shapes():
    model = me.MiniEmbedding(me.MiniEmbeddingConfig(vocabulary=me.build_vocabulary(TEXTS))).eval()
    frames, mel = torch.rand(5, 3, 64, 64), torch.randn(2, 1, 128, 204)
    v = model.embed_vision(frames)
    a = model.embed_audio(mel)
    assert v.shape == (5, 128) and a.shape == (2, 128)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(5))
    # other frame sizes are resized; 0..255 input is refused
    assert model.embed_vision(torch.rand(2, 3, 96, 128)).shape == (2, 128)
    with pytest.raises(BackboneInputError, match="0..255"):
        model.embed_vision(frames * 255)
    tok = model.audio_tokens(mel)
    assert tok.shape == (2, 1 + 4 * 12, 96) and model.audio_token_grid == (4, 12)
    # the head reads the global token of the trunk
    torch.testing.assert_close(torch.nn.functional.normalize(model.audio.head(tok), dim=-1), a)
    # patches are time-ordered: changing only the last 0.5 s of the mel leaves the first
    # time columns' conv features untouched up to the transformer mixing; check the locality
    # before mixing through the trunk's convolutional part
    mel2 = mel.clone()
    mel2[..., 170:] += 3.0
    g1 = torch.nn.functional.adaptive_avg_pool2d(model.audio.convs(mel), (4, 12))
    g2 = torch.nn.functional.adaptive_avg_pool2d(model.audio.convs(mel2), (4, 12))
    changed = (g1 - g2).abs().amax(dim=(0, 1, 2))
    assert changed[:6].max() == 0 and changed[-1] > 0


def test_soft_targets_golden():
    t = soft_targets(torch.tensor([0, 0, 1]), own_weight=0.5)
    expected = torch.tensor([[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(t, expected)


def test_perturbations_golden():
    x = torch.full((1, 2, 3, 8, 8), 0.5)
    torch.testing.assert_close(perturb(x, "blur", 1.0), x)   # blur keeps a flat image
    # an impulse spreads into the separable Gaussian: centre weight (1 / sum_k exp(-k^2/2))^2, |k| <= 3
    imp = torch.zeros(1, 1, 3, 9, 9)
    imp[..., 4, 4] = 1.0
    b = perturb(imp, "blur", 1.0)
    s1 = 1 + 2 * sum(np.exp(-k * k / 2) for k in (1, 2, 3))
    assert float(b[0, 0, 0, 4, 4]) == pytest.approx(1 / s1 ** 2, rel=1e-4)
    assert float(b.sum()) == pytest.approx(3.0, rel=1e-5)
    n = perturb(x, "noise", 0.1)
    assert abs(float((n - x).std()) - 0.1) < 0.02 and float(n.min()) >= 0


def _class_video(path, cls: int, seed: int):
    """3 s, 64x64: class 0 reddish with a 300 Hz hum, class 1 bluish with a 2 kHz whistle."""
    from asva_bench import avio
    rng = np.random.default_rng(seed)
    base = np.array([[200, 60, 40], [40, 80, 210]][cls], np.float32) + rng.uniform(-30, 30, 3)
    frames = np.clip(base + rng.normal(0, 8, (72, 64, 64, 3)), 0, 255).astype(np.uint8)
    t = np.arange(48000) / 16000
    wav = 0.3 * np.sin(2 * np.pi * [300, 2000][cls] * t) + 0.02 * rng.standard_normal(48000)
    return avio.write_clip(path, frames, 24, audio=wav.astype(np.float32), sample_rate=16000, preset="ultrafast")


def test_embedding_training_lowers_loss(tmp_path):
    torch.set_num_threads(1)
    entries = []
    for i in range(4):
        c = f"class{i % 2}"
        p = _class_video(tmp_path / "v" / c / f"v{i}.mp4", i % 2, seed=i)
        entries.append(VideoEntry(f"{c}/v{i}.mp4", c, ["dog bark", "lion roar"][i % 2], "train", str(p)))
    cache = build_clip_cache(entries, MINI, tmp_path / "cache", progress=False)
    cfg = EmbeddingTrainConfig(videos_per_class=4, steps=20, warmup_steps=3, log_every=2, checkpoint_every=10)
    out = train_embedding(cache, tmp_path / "run", cfg, progress=False)
    assert out["done"]
    recs = [json.loads(x) for x in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    # the floor is the entropy of the class-shared targets (~0.92 here); the first steps sit well above
    assert np.mean(losses[-2:]) < np.mean(losses[:1]) - 0.1, losses
    assert recs[-1]["acc_at"] == 1.0 and recs[-1]["acc_it"] == 1.0
    model = me.load_checkpoint(out["checkpoint"])
    assert model.config.vocabulary == ("bark", "dog", "lion", "roar")
    # stopped after 7 steps and resumed (the shared loop): the same weights as the straight run
    part = train_embedding(cache, tmp_path / "split", cfg, progress=False, stop_after=7)
    assert not part["done"] and part["step"] == 7
    rest = train_embedding(cache, tmp_path / "split", cfg, progress=False)
    assert rest["done"] and rest["step"] == 20
    resumed = me.load_checkpoint(rest["checkpoint"]).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed[k]), k


# --------------------------------------------------------------------------
# The shipped checkpoints
# --------------------------------------------------------------------------
def test_shipped_files_are_pinned_and_small():
    manifest = json.loads((sc.MINI_WEIGHTS_DIR / sc.MINI_MANIFEST).read_text())
    total = 0
    for name in SHIPPED:
        path = sc.MINI_WEIGHTS_DIR / name
        assert path.is_file(), f"{path} is missing: run `asva-bench train evaluators --profile mini`"
        assert sha256_file(path) == manifest["files"][name]["sha256"], name
        total += path.stat().st_size
    assert total <= SIZE_LIMIT_BYTES
    # the training record: reproducible by one command, with its wall time
    assert manifest["command"] == "asva-bench train evaluators --profile mini"
    assert manifest["wall_seconds"]["total"] > 0


def test_shipped_backbones_build_through_the_registry():
    sync = build_backbone(sc.MINI_SYNC_NAME)
    emb = build_backbone(me.MINI_EMBEDDING_NAME)
    fid = build_backbone(mf.MINI_FID)
    fvd = build_backbone(mf.MINI_FVD)
    assert sync.profile == emb.profile == fid.profile == fvd.profile == "mini"
    assert not any(p.requires_grad for p in sync.parameters())
    clips, mel = torch.rand(2, 12, 3, 64, 64), torch.randn(2, 1, 128, 204)
    assert sync.phi(clips, mel).shape == (2,)
    assert fid.features(clips[0]).shape == (12, 240)
    assert fvd.features(clips).shape == (2, 336)
    assert emb.audio_tokens(mel).shape == (2, 49, 96)
    assert len(sync.weights_digest) == 64


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """30 synth videos (2 per class) from a seed no training run uses, decoded at the mini protocol."""
    from asva_bench.datasets.synth import SYNTH, make_synth
    root = make_synth(tmp_path_factory.mktemp("heldout") / "synth", seed=987654, videos_per_class=2,
                      progress=False, workers=2)
    manifest = SYNTH.load(root)
    return build_clip_cache(manifest.entries, MINI, root / "cache", workers=2, progress=False)


def test_shipped_evaluators_reach_the_quality_bars(heldout):
    torch.set_num_threads(1)   # shared CI cores: one thread is faster than two fighting
    res = evaluate_mini_evaluators(sc.load_checkpoint(sc.MINI_WEIGHTS_DIR / "mini-sync.safetensors"),
                                   me.load_checkpoint(sc.MINI_WEIGHTS_DIR / "mini-embedding.safetensors"),
                                   heldout, protocols=("coarse",))
    assert set(BARS) <= set(res["bars"])
    failed = {k: b for k, b in res["bars"].items() if b["required"] and not b["pass"]}
    assert not failed, failed
    assert res["sync"]["coarse"]["a2v"]["n"] >= 15   # enough long videos for the shift protocol
