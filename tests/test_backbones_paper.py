"""The paper's evaluator backbones, built with random weights saved in the upstream formats.

Each network is the real architecture (Inception: the full pytorch-fid FID
Inception; I3D: a small TorchScript with the StyleGAN-V detector's forward
signature; ImageBind: the package's ``ImageBindModel`` class with a tiny
configuration), saved as upstream ships it (state dict / TorchScript), placed
in the cache where the registry looks, and loaded through the registry.
ImageBind-huge's own 1.2B-parameter configuration is not instantiated here;
its arguments are checked against the package's ``imagebind_huge``.
"""

import dataclasses
import hashlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from asva_bench.backbones import (BackboneError, BackboneInputError, EmbeddingModel, ImageBackbone, VideoBackbone,
                                  WeightsChecksumError, WeightsFormatError, build_backbone, get_backbone_spec)
from asva_bench.backbones import weights as W
from asva_bench.backbones.i3d import FVD_I3D, StyleGANVI3D
from asva_bench.backbones.imagebind import CLIP_MEAN, CLIP_STD, HUGE_CONFIG, IMAGEBIND_HUGE, import_imagebind
from asva_bench.backbones.inception import FID_INCEPTION, FID_INCEPTION_299, fid_inception_network
from asva_bench.protocol import waveforms_to_mel

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(W.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    return tmp_path / "home"


def place(spec, src_path, root=None):
    """Copy a file to where the registry looks for ``spec``'s (single) weight file."""
    dst = W.cache_path(spec, spec.weights[0], root)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src_path.read_bytes())
    return dst


def pinned_to(spec, path):
    """``spec`` with its weight pinned to the digest of ``path`` (our random file, not the published one)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return spec.replace(weights=(dataclasses.replace(spec.weights[0], sha256=digest),))


def recorder(store, key):
    """A forward pre-hook that records the network input (and changes nothing)."""
    def hook(module, args):
        store.setdefault(key, args[0].detach().clone())
    return hook


def resize_ref(x, size, mode="bicubic", antialias=True):
    return F.interpolate(x, size=size, mode=mode, antialias=antialias, align_corners=False)


# ==========================================================================
# FID: pytorch-fid Inception
# ==========================================================================
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    net = fid_inception_network()
    # pytorch-fid's released file predates zip serialisation; save it that way
    path = tmp_path_factory.mktemp("inc") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    return path, net.eval()


def placed_home(spec, path, tmp_path_factory):
    """A fresh $ASVA_BENCH_HOME holding ``path`` where the registry looks for ``spec``'s weights."""
    root = tmp_path_factory.mktemp("home")
    place(spec, path, root)
    return root


@pytest.fixture(scope="module")
def inception_model(inception_file, tmp_path_factory):
    """The paper variant, loaded through the registry from the saved file (built once: ~2 s)."""
    path, _ = inception_file
    spec = get_backbone_spec(FID_INCEPTION)
    return pinned_to(spec, path).build(cache_root=placed_home(spec, path, tmp_path_factory))


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 64, 80, generator=g)


def test_fid_inception_state_dict_matches_pytorch_fid_layout(inception_file):
    _, net = inception_file
    sd = net.state_dict()
    # what pytorch-fid's pt_inception file holds: torchvision Inception3, 1008 classes, no aux head
    assert sd["fc.weight"].shape == (1008, 2048) and not any(k.startswith("AuxLogits") for k in sd)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    import pytorch_fid.inception as pf
    assert type(net.Mixed_7c) is pf.FIDInceptionE_2 and type(net.Mixed_5b) is pf.FIDInceptionA


def test_fid_inception_paper_variant_loads_and_extracts(inception_file, inception_model, frames):
    _, net = inception_file
    model = inception_model
    assert isinstance(model, ImageBackbone) and model.name == FID_INCEPTION and model.profile == "paper"
    seen = {}
    handle = model.net.Conv2d_1a_3x3.register_forward_pre_hook(recorder(seen, "x"))
    try:
        f1 = model.features(frames)
    finally:
        handle.remove()
    assert f1.shape == (1, 2048) and f1.dtype == torch.float32 and torch.isfinite(f1).all()
    # golden: the network sees the 229x229 bicubic-antialiased frame in [-1, 1], nothing else
    expected_in = resize_ref(frames, (229, 229)) * 2 - 1
    assert seen["x"].shape == (1, 3, 229, 229)
    torch.testing.assert_close(seen["x"], expected_in, atol=1e-5, rtol=0)
    # the loaded weights are the saved ones: the in-memory network, run layer by layer, agrees
    with torch.no_grad():
        ref = seen["x"]
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            ref = getattr(net, name)(ref)
    torch.testing.assert_close(f1, ref.flatten(1), atol=0, rtol=1e-5)
    # deterministic
    assert torch.equal(model.features(frames), f1)


def test_fid_inception_preprocessing_goldens():
    from asva_bench.backbones.inception import FIDInception
    paper = FIDInception(nn.Identity(), 229, "bicubic-antialias")
    std = FIDInception(nn.Identity(), 299, "bilinear")
    # a constant frame stays constant through any resize: c -> 2c - 1
    c = torch.full((1, 3, 50, 70), 0.25)
    assert torch.allclose(paper.preprocess(c), torch.full((1, 3, 229, 229), -0.5), atol=1e-6)
    assert torch.allclose(std.preprocess(c), torch.full((1, 3, 299, 299), -0.5), atol=1e-6)
    # a 229x229 frame is not resampled by the paper variant
    x = torch.rand(1, 3, 229, 229)
    torch.testing.assert_close(paper.preprocess(x), x * 2 - 1, atol=1e-5, rtol=0)
    # the standard variant is pytorch-fid's: bilinear, no antialias, to 299
    x = torch.rand(1, 3, 256, 256)
    torch.testing.assert_close(std.preprocess(x), resize_ref(x, (299, 299), "bilinear", False) * 2 - 1)


def test_fid_inception_standard_variant_is_separate(inception_file, inception_model, frames):
    path, _ = inception_file
    spec = get_backbone_spec(FID_INCEPTION_299)
    place(spec, path)
    model = pinned_to(spec, path).build()
    assert FID_INCEPTION_299 != FID_INCEPTION and "NOT the paper" in spec.description
    # same file, same weights; only the input handling differs (299, bilinear)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), inception_model.state_dict().values()))
    assert model.preprocess(frames).shape == (1, 3, 299, 299)
    assert inception_model.preprocess(frames).shape == (1, 3, 229, 229)


def test_fid_inception_random_file_fails_the_published_prefix(inception_file):
    path, _ = inception_file
    spec = get_backbone_spec(FID_INCEPTION)
    place(spec, path)
    with pytest.raises(WeightsChecksumError) as e:
        build_backbone(FID_INCEPTION)
    assert "expected 6726825d..." in str(e.value) and "fid-inception-229" in str(e.value)


def test_fid_inception_wrong_state_dict_is_named(tmp_path):
    sd = {"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3), "classifier.weight": torch.zeros(2, 2)}
    p = tmp_path / "w.pth"
    torch.save(sd, p)
    spec = get_backbone_spec(FID_INCEPTION)
    place(spec, p)
    with pytest.raises(WeightsFormatError) as e:
        pinned_to(spec, p).build()
    msg = str(e.value)
    assert "fid-inception-229" in msg and "missing key(s): Conv2d_1a_3x3.bn.bias" in msg
    assert "1 unexpected key(s): classifier.weight" in msg and "pt_inception-2015-12-05-6726825d.pth" in msg


@pytest.mark.parametrize("bad, expect", [
    (lambda x: (x * 255).to(torch.uint8), "convert uint8 frames with x.float() / 255"),
    (lambda x: x * 255, "divide by 255"),
    (lambda x: x * 2 - 1, "(x + 1) / 2"),
    (lambda x: x.permute(0, 2, 3, 1), "x.permute(0, 3, 1, 2)"),
    (lambda x: x.unsqueeze(0), "clips.flatten(0, 1)"),
    (lambda x: x[:0], "N >= 1"),
    (lambda x: x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill_(0, torch.tensor([0]), True),
                             float("nan")), "NaN"),
])
def test_image_input_errors_name_backbone_and_fix(inception_model, bad, expect):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(BackboneInputError) as e:
        inception_model.features(bad(x))
    assert "fid-inception-229" in str(e.value) and expect in str(e.value)


# ==========================================================================
# FVD: StyleGAN-V I3D TorchScript
# ==========================================================================
class TinyI3D(nn.Module):
    """Same forward signature as StyleGAN-V's i3d_torchscript.pt; refuses the flags FVD must not set."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=(3, 8, 8), stride=(1, 8, 8))
        self.feat = nn.Linear(8 * 12, 400)
        self.cls = nn.Linear(400, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale or resize:
            raise RuntimeError("FVD calls the detector with rescale=False, resize=False")
        if x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected [B, 3, T, 224, 224]")
        h = F.pad(self.conv(x), (0, 0, 0, 0, 1, 1)).mean(dim=(3, 4))  # [B, 8, T]
        f = self.feat(h.flatten(1))
        if return_features:
            return f
        return self.cls(f).softmax(dim=-1)


class WrongSignature(nn.Module):
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return video.mean(dim=(1, 2, 3, 4)).unsqueeze(1).repeat(1, 400)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    torch.manual_seed(0)
    m = TinyI3D().eval()
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(m).save(str(path))
    return path, m


def clips(b=2, t=12, h=48, w=64, seed=2):
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_i3d_loads_and_is_called_as_the_protocol_says(i3d_file):
    path, module = i3d_file
    spec = get_backbone_spec(FVD_I3D)
    place(spec, path)  # unpinned: accepted and reported as such
    model = build_backbone(FVD_I3D)
    assert isinstance(model, StyleGANVI3D) and isinstance(model, VideoBackbone)
    x = clips()
    f = model.features(x)
    assert f.shape == (2, 400) and f.dtype == torch.float32
    # golden: frames squash-resized bicubic-antialiased to 224, [-1,1], [B,3,T,H,W], return_features=True
    ref_in = (resize_ref(x.flatten(0, 1), (224, 224)) * 2 - 1).unflatten(0, (2, 12)).transpose(1, 2)
    with torch.no_grad():
        expected = module(ref_in, return_features=True)
    torch.testing.assert_close(f, expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(model.features(x), f)
    # the frame order is kept: frame t of a clip is constant t/11 -> channel plane 2t/11 - 1
    ramp = torch.arange(12.0).div(11).view(1, 12, 1, 1, 1).expand(1, 12, 3, 16, 16)
    pre = model.preprocess(ramp)
    assert pre.shape == (1, 3, 12, 224, 224)
    torch.testing.assert_close(pre[0, 0, :, 100, 100], torch.arange(12.0).div(11) * 2 - 1, atol=1e-5, rtol=0)


def test_i3d_refuses_a_torchscript_with_another_signature(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(WrongSignature()).save(str(path))
    place(get_backbone_spec(FVD_I3D), path)
    with pytest.raises(WeightsFormatError) as e:
        build_backbone(FVD_I3D)
    assert "fvd-i3d" in str(e.value) and "('video',)" in str(e.value) and "rescale" in str(e.value)


def test_i3d_refuses_a_state_dict(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(TinyI3D().state_dict(), path)
    place(get_backbone_spec(FVD_I3D), path)
    with pytest.raises(WeightsFormatError, match="is a PyTorch state dict, but 'i3d_torchscript.pt' must be a Tor"):
        build_backbone(FVD_I3D)


def test_i3d_input_errors(i3d_file):
    path, _ = i3d_file
    place(get_backbone_spec(FVD_I3D), path)
    model = build_backbone(FVD_I3D)
    with pytest.raises(BackboneInputError, match="fvd-i3d: clips must have 12 frames"):
        model.features(clips(t=8))
    with pytest.raises(BackboneInputError, match=r"x.transpose\(1, 2\)"):
        model.features(clips().transpose(1, 2))
    with pytest.raises(BackboneInputError, match="fvd-i3d: clips must be a float tensor"):
        model.features(clips()[0])
    with pytest.raises(BackboneInputError, match="divide by 255"):
        model.features(clips() * 255)


# ==========================================================================
# ImageBind (package's ImageBindModel, tiny configuration)
# ==========================================================================
TINY = dict(
    out_embed_dim=16, vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=2,
    audio_embed_dim=24, audio_num_blocks=1, audio_num_heads=2,
    text_embed_dim=32, text_num_blocks=1, text_num_heads=2,
    depth_embed_dim=16, depth_num_blocks=1, depth_num_heads=2,
    thermal_embed_dim=16, thermal_num_blocks=1, thermal_num_heads=2,
    imu_embed_dim=16, imu_num_blocks=1, imu_num_heads=2,
)


@pytest.fixture(scope="module")
def imagebind_file(tmp_path_factory):
    ibm, _, _ = import_imagebind()
    torch.manual_seed(0)
    net = ibm.ImageBindModel(**TINY).eval()
    path = tmp_path_factory.mktemp("ib") / "imagebind_huge.pth"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="module")
def tiny_imagebind(imagebind_file, tmp_path_factory):
    """The registry's imagebind-huge entry (file name, folder, loader) with the tiny configuration."""
    path, _ = imagebind_file
    spec = get_backbone_spec(IMAGEBIND_HUGE)
    return spec.replace(options={"config": TINY}).build(cache_root=placed_home(spec, path, tmp_path_factory))


@pytest.fixture(scope="module")
def mel():
    g = torch.Generator().manual_seed(3)
    return waveforms_to_mel(0.1 * torch.randn(2, 32000, generator=g))


def test_huge_config_is_the_packages_imagebind_huge(monkeypatch):
    ibm, _, _ = import_imagebind()
    seen = {}

    def capture(**kwargs):
        seen.update(kwargs)
        return nn.Identity()

    monkeypatch.setattr(ibm, "ImageBindModel", capture)
    ibm.imagebind_huge(pretrained=False)
    assert seen == HUGE_CONFIG


def test_imagebind_loads_through_the_registry(tiny_imagebind, imagebind_file, mel):
    model = tiny_imagebind
    _, net = imagebind_file
    assert isinstance(model, EmbeddingModel) and model.name == IMAGEBIND_HUGE
    assert set(model.net.modality_trunks.keys()) == {"vision", "audio", "text"}
    frames = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(4))
    v, a, t = model.embed_vision(frames), model.embed_audio(mel), model.embed_text(["dog barking", "hammering"])
    assert v.shape == (3, 16) and a.shape == (2, 16) and t.shape == (2, 16)
    for e in (v, a, t):
        assert e.dtype == torch.float32
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(len(e)))
    # the same numbers as the package's own forward on the saved network (logit scales divided out)
    pixels = (resize_ref(frames, (224, 224)) - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    tokens = model.tokenize(["dog barking", "hammering"])
    with torch.no_grad():
        out = net({"vision": pixels, "audio": mel, "text": tokens})
    torch.testing.assert_close(v, out["vision"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a, F.normalize(out["audio"], dim=-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t, F.normalize(out["text"], dim=-1), atol=1e-5, rtol=1e-4)
    # deterministic
    assert torch.equal(model.embed_vision(frames), v) and torch.equal(model.embed_audio(mel), a)


def test_imagebind_audio_tokens_grid(tiny_imagebind, mel):
    model = tiny_imagebind
    assert model.audio_token_grid == (12, 19)  # 128x204 mel, 16x16 patches, stride 10
    tok = model.audio_tokens(mel)
    assert tok.shape == (2, 1 + 12 * 19, 24) and tok.dtype == torch.float32
    assert torch.equal(model.audio_tokens(mel), tok)
    # the tokens are the trunk output the audio head reads: head(tokens) = audio embedding
    head = model.net.modality_heads["audio"]
    torch.testing.assert_close(F.normalize(head(tok), dim=-1), model.embed_audio(mel), atol=1e-5, rtol=1e-4)


def test_imagebind_vision_preprocessing_golden(tiny_imagebind):
    model = tiny_imagebind
    c = torch.full((1, 3, 30, 50), 0.5)
    expected = ((0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    torch.testing.assert_close(model.preprocess_vision(c), expected, atol=1e-5, rtol=0)
    x = torch.rand(2, 3, 256, 256)
    ref = (resize_ref(x, (224, 224)) - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess_vision(x), ref, atol=1e-5, rtol=0)


def test_imagebind_tokenizer_golden(tiny_imagebind):
    tok = tiny_imagebind.tokenize(["a photo of a dog", "dog barking"])
    assert tok.shape == (2, 77) and tok.dtype == torch.int64
    # CLIP BPE ids: <start>=49406, a=320, photo=1125, of=539, dog=1929, barking=32676, <end>=49407
    assert tok[0, :8].tolist() == [49406, 320, 1125, 539, 320, 1929, 49407, 0]
    assert tok[1, :5].tolist() == [49406, 1929, 32676, 49407, 0]
    assert tiny_imagebind.tokenize(["x"]).shape == (1, 77)


def test_imagebind_build_is_deterministic(imagebind_file, mel):
    path, _ = imagebind_file
    spec = get_backbone_spec(IMAGEBIND_HUGE)
    place(spec, path)
    a = spec.replace(options={"config": TINY}).build().embed_audio(mel)
    b = spec.replace(options={"config": TINY}).build().embed_audio(mel)
    assert torch.equal(a, b)


def test_imagebind_huge_rejects_a_smaller_checkpoint(imagebind_file):
    # the tiny file in place of imagebind_huge.pth: the real config must refuse it, naming shapes
    path, _ = imagebind_file
    spec = get_backbone_spec(IMAGEBIND_HUGE)
    place(spec, path)
    small = dict(TINY, vision_embed_dim=40)  # differs from the file: cheap stand-in for the huge config
    with pytest.raises(WeightsFormatError) as e:
        spec.replace(options={"config": small}).build()
    assert "imagebind-huge" in str(e.value) and "wrong shapes" in str(e.value)


def test_imagebind_input_errors(tiny_imagebind, mel):
    m = tiny_imagebind
    with pytest.raises(BackboneInputError, match="wrap a single text as"):
        m.embed_text("dog barking")
    with pytest.raises(BackboneInputError, match="non-empty list of strings"):
        m.embed_text([])
    with pytest.raises(BackboneInputError, match="looks like a waveform"):
        m.embed_audio(torch.zeros(2, 32000))
    with pytest.raises(BackboneInputError, match=r"add the batch axis with mel.unsqueeze\(0\)"):
        m.audio_tokens(mel[0])
    with pytest.raises(BackboneInputError, match=r"imagebind-huge: mel must be a float tensor \[B, 1, 128, 204\]"):
        m.embed_audio(mel[..., :100])
    with pytest.raises(BackboneInputError, match=r"\(x \+ 1\) / 2"):
        m.embed_vision(torch.rand(1, 3, 32, 32) * 2 - 1)


def test_backbone_output_shape_is_checked():
    class Broken(ImageBackbone):
        feature_dim = 5

        def preprocess(self, frames):
            return frames

        def forward(self, x):
            return x.flatten(1)[:, :4]

    with pytest.raises(BackboneError, match="returned \\(1, 4\\), expected \\(1, 5\\)"):
        Broken().features(torch.rand(1, 3, 4, 4))


def test_interfaces_are_abstract():
    class Half(EmbeddingModel):
        def preprocess_vision(self, frames):
            return frames

    with pytest.raises(TypeError, match="abstract"):
        Half()
