"""The paper profile's CLIP signal: open_clip's image tower through the backbone registry.

As for the other paper backbones (tests/test_backbones_paper.py), no weights
are downloaded: a tiny open_clip configuration is registered with open_clip,
randomly initialised, saved where the weight cache looks, and loaded through
the registry. Its features are checked against open_clip's own
PIL preprocessing + ``encode_image``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asva_bench.backbones import WeightsMissingError, get_backbone_spec
from asva_bench.backbones import weights as W
from asva_bench.backbones.open_clip_image import (DEFAULT_HUB_REPO, OPEN_CLIP_NAME, OpenClipImage, hub_source,
                                                  open_clip_spec)

import open_clip  # noqa: E402  (a declared dependency: a missing install must fail, not skip)
TINY = "asva-test-tiny-clip"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(W.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oc")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    (folder / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{TINY}.json")
    torch.manual_seed(0)
    net = open_clip.create_model(TINY).eval()
    from safetensors.torch import save_file
    path = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net, path


def place(spec, src):
    dst = W.cache_path(spec, spec.weights[0])
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def test_default_spec_names_open_clips_hub_source():
    spec = get_backbone_spec(OPEN_CLIP_NAME)
    assert spec.profile == "paper" and spec.kind == "image"
    assert spec.options["model"] == "ViT-B-32" and spec.options["pretrained"] == "openai"
    table = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    assert DEFAULT_HUB_REPO == table["hf_hub"].strip("/")          # the constant that spares the import
    assert spec.weights[0].url == f"https://huggingface.co/{DEFAULT_HUB_REPO}/resolve/main/open_clip_model.safetensors"
    repo, _ = hub_source("ViT-B-16", "laion2b_s34b_b88k")
    assert repo == open_clip.get_pretrained_cfg("ViT-B-16", "laion2b_s34b_b88k")["hf_hub"].strip("/")


def test_offline_missing_weights_name_file_source_and_place(tmp_path):
    spec = open_clip_spec()
    with pytest.raises(WeightsMissingError) as e:
        spec.build()
    msg = str(e.value)
    assert "open_clip_model.safetensors" in msg and "open_clip/ViT-B-32-openai" in msg
    assert DEFAULT_HUB_REPO in msg and "ASVA_BENCH_OFFLINE" in msg


def test_registry_build_matches_open_clip_preprocess_and_encode(tiny):
    net, path = tiny
    spec = open_clip_spec(TINY, "random")
    place(spec, path)
    model = spec.build()
    assert isinstance(model, OpenClipImage) and model.feature_dim == 16
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)
    from PIL import Image
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    frames = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    ours = model.features(frames)
    with torch.no_grad():
        ref = net.encode_image(torch.stack([preprocess(Image.fromarray(x)) for x in imgs]))
    assert torch.allclose(ours, ref, atol=1e-5)
    # larger, non-square frames: shortest side resized (antialiased bicubic on tensors vs PIL), centre crop
    big = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(big).permute(0, 3, 1, 2).float(), 5, 1, 2) / 255
    ours = model.features(smooth)
    pil = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in smooth]
    with torch.no_grad():
        ref = net.encode_image(torch.stack([preprocess(p) for p in pil]))
    cos = torch.nn.functional.cosine_similarity(ours, ref, dim=1)
    assert float(cos.min()) > 0.995


def test_paper_clip_change_signal_uses_open_clip(tiny):
    """The paper profile's clip_change: 1 - cos of consecutive open_clip features (other roles: mini stand-ins)."""
    from asva_bench.curation import clips as C
    from asva_bench.curation.config import load_config
    from asva_bench.curation.signals import CURATION_BACKBONES, SignalExtractor
    from asva_bench.protocol import MINI
    from asva_bench.backbones import get_backbone_spec as spec_of
    for role, name in CURATION_BACKBONES["paper"].items():   # the real paper backbones are registered
        s = spec_of(name)
        assert s.profile == "paper" and s.kind == {"embedding": "embedding", "sync": "sync", "clip": "image"}[role]
    net, path = tiny
    cfg = load_config("paper").replace(clip_model=TINY, clip_pretrained="random")
    place(open_clip_spec(TINY, "random"), path)
    ex = SignalExtractor(cfg, MINI)
    ex.names.update(embedding="mini-embedding", sync="mini-sync")
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8))
    audio = torch.from_numpy((0.1 * rng.standard_normal(4 * 16000)).astype(np.float32))
    video = C.DecodedVideo(C.VideoInput("dog_bark/x.mp4", "dog_bark", "", 0), 4.0, 4.0, 4.0, 24.0, frames, audio,
                           16000, audio)
    clips = C.plan_clips(video.scenes, 3.0, 0.5, 6.0, 24)
    got = ex.signals(video, clips, "dog bark")
    feats = torch.nn.functional.normalize(ex._backbone("clip").features(frames.permute(0, 3, 1, 2).float() / 255)
                                          .double(), dim=-1)
    for c, s in zip(clips, got):
        j = c.first_frame
        expect = float((1 - (feats[j + 1:j + 18] * feats[j:j + 17]).sum(-1)).mean())
        assert s.values["clip_change"] == pytest.approx(expect, rel=2e-5)
    assert ex.fingerprint()["clip"].startswith(f"{OPEN_CLIP_NAME}:{TINY}:random:")
