"""The authors' released AVSyncD UNet folders load as downloaded, and the reference sampler.

The stand-in releases are written here from the published layout (docs/avsyncd.md,
"Released checkpoints"): Stable Diffusion's 2D tensor names, plus the new tensors
named by the rules below (not taken from our own module tree), saved with
torch.save as ``modules/unet/diffusion_pytorch_model.bin`` next to a config.json
with the released 3D block types.
"""

import json
import re

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from asva_bench.models.avsyncd import (AudioTokenGeometry, AVSyncDConfig, AVSyncDPipeline, ReleasedCheckpointError,
                                       find_released_unet, load_released_unet, make_scheduler)

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py

TEXT_DIM, AUDIO_DIM = 32, 16
CONFIG_3D = {
    "_class_name": "AudioUNet3DConditionModel", "_diffusers_version": "0.21.4",
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 64],
    "down_block_types": ["FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"],
    "mid_block_type": "FFSpatioAudioTempCrossAttnUNetMidBlock3D",
    "up_block_types": ["FFSpatioTempResUpBlock3D", "FFSpatioAudioTempCrossAttnUpBlock3D"],
    "cross_attention_dim": TEXT_DIM, "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5,
    "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu", "center_input_sample": False,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "use_linear_projection": False,
    "audio_cross_attention_dim": AUDIO_DIM,
}
CONFIG_2D = {**{k: v for k, v in CONFIG_3D.items() if not k.startswith("_") and k != "audio_cross_attention_dim"},
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "mid_block_type": "UNetMidBlock2DCrossAttn",
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]}
GEO = AudioTokenGeometry(dim=AUDIO_DIM)  # ImageBind-huge's 1 + 12 x 19 token grid, narrow channels

# Convolutions that carry a temporal mix in the release, and the per-block new tensors.
TEMPORAL_CONV = re.compile(r"^(conv_in|conv_out|.*resnets\.\d+\.(conv1|conv2|conv_shortcut)"
                           r"|.*(downsamplers|upsamplers)\.0\.conv)\.weight$")
BLOCK = re.compile(r"^(.*transformer_blocks\.\d+)\.attn1\.to_q\.weight$")


def released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = dict(UNet2DConditionModel(**CONFIG_2D).state_dict())  # Stable Diffusion's 2D names
    g = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape, scale=0.05):
        return scale * torch.randn(*shape, generator=g)

    new = {}
    for key, w in sd.items():
        m = TEMPORAL_CONV.match(key)
        if m:
            c = w.shape[0]
            new[f"{m.group(1)}.conv_temp.weight"] = rnd(c, 3 * c)
            new[f"{m.group(1)}.conv_temp.bias"] = rnd(c)
        m = BLOCK.match(key)
        if m:
            p, d = m.group(1), w.shape[0]
            for norm in ("norm_audio", "norm_temp"):
                new[f"{p}.{norm}.weight"] = 1 + rnd(d)
                new[f"{p}.{norm}.bias"] = rnd(d)
            for attn, kv in (("attn_audio", AUDIO_DIM), ("attn_temp", d)):
                new[f"{p}.{attn}.to_q.weight"] = rnd(d, d, scale=0.2)
                new[f"{p}.{attn}.to_k.weight"] = rnd(d, kv, scale=0.2)
                new[f"{p}.{attn}.to_v.weight"] = rnd(d, kv, scale=0.2)
                new[f"{p}.{attn}.to_out.0.weight"] = rnd(d, d, scale=0.2)
                new[f"{p}.{attn}.to_out.0.bias"] = rnd(d)
            for lin in ("linear_1", "linear_2"):
                new[f"{p}.pos_embedding_temp.{lin}.weight"] = rnd(d, d, scale=0.2)
                new[f"{p}.pos_embedding_temp.{lin}.bias"] = rnd(d)
    sd.update(new)
    return sd


def write_release(root, state=None, config=None, fmt="bin"):
    unet = root / "ckpts" / "checkpoint-37000" / "modules" / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text(json.dumps(config or CONFIG_3D))
    state = released_state_dict() if state is None else state
    if fmt == "bin":
        torch.save(state, unet / "diffusion_pytorch_model.bin")
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(unet / "diffusion_pytorch_model.safetensors"))
    return unet.parent  # the modules/ folder, as a user passes it


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    state = released_state_dict()
    return write_release(root, state), state


def inputs(b=2, f=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, 4, 16, 16, generator=g), torch.tensor([10, 600])[:b],
            torch.randn(b, 5, TEXT_DIM, generator=g), torch.randn(b, GEO.n_tokens, AUDIO_DIM, generator=g))


def test_every_released_tensor_is_loaded_and_used(release):
    modules, state = release
    assert any(k.endswith("conv_shortcut.conv_temp.weight") for k in state)
    assert any(k.endswith("downsamplers.0.conv.conv_temp.weight") for k in state)
    assert any(k.endswith("upsamplers.0.conv.conv_temp.weight") for k in state)
    model = load_released_unet(modules, num_frames=4)
    got = model.unet.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    assert model.released["tensors"] == len(state) and model.released["has_audio"]
    assert not any(p.is_meta for p in model.parameters())
    # the new tensors are the trainable set, under the released names
    trainable = {n.removeprefix("unet.") for n, _ in model.trainable_named_parameters()}
    assert trainable == {k for k in state if re.search(r"(conv_temp|_audio|_temp)\.", k)}
    assert isinstance(model.config, AVSyncDConfig) and model.config.audio.dim == AUDIO_DIM
    # forward at the protocol's shape; audio and frame order both matter with released weights
    x, t, text, audio = inputs()
    with torch.no_grad():
        out = model(x, t, text, audio)
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert (model(x, t, text, torch.randn_like(audio)) - out).abs().max() > 1e-4
        assert (model(x.flip(1), t, text, audio).flip(1) - out).abs().max() > 1e-4


def test_released_safetensors_and_folder_forms(tmp_path):
    modules = write_release(tmp_path / "st", fmt="safetensors")
    for given in (modules, modules / "unet", modules.parent):
        assert find_released_unet(given) == modules / "unet"
    assert find_released_unet(tmp_path) is None
    model = load_released_unet(modules.parent, num_frames=4)
    assert model.released["weights"] == "diffusion_pytorch_model.safetensors"


def test_guided_sampling_runs_on_a_release(release):
    modules, _ = release
    model = load_released_unet(modules, num_frames=4)
    pipe = AVSyncDPipeline(model, "pndm-reference")
    x, _, text, audio = inputs()
    out = pipe(None, audio, torch.zeros(1, GEO.n_tokens, AUDIO_DIM), text_embeddings=text,
               image_latents=x[:, 0], audio_guidance=4.0, num_inference_steps=3, generator=[0, 1],
               output_type="latent", progress=False, num_frames=4)
    assert out.latents.shape == x.shape and torch.isfinite(out.latents).all()
    assert torch.equal(out.latents[:, 0], x[:, 0])


def test_partial_or_foreign_folders_name_what_is_wrong(tmp_path):
    state = released_state_dict()
    missing_key = next(k for k in state if k.endswith("conv_shortcut.conv_temp.weight"))
    partial = dict(state)
    del partial[missing_key]
    partial["down_blocks.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ReleasedCheckpointError, match=rf"missing key\(s\): {re.escape(missing_key)}.*unexpected "
                                                      r"key\(s\): down_blocks\.0\.extra\.weight"):
        load_released_unet(write_release(tmp_path / "a", partial))
    wrong = dict(state)
    wrong["conv_in.conv_temp.weight"] = torch.zeros(32, 32)
    with pytest.raises(ReleasedCheckpointError, match=r"wrong shapes: conv_in\.conv_temp\.weight \(32, 32\) != \(32, 96\)"):
        load_released_unet(write_release(tmp_path / "b", wrong))
    with pytest.raises(ReleasedCheckpointError, match="no released AVSyncD UNet here"):
        load_released_unet(tmp_path)
    other = {**CONFIG_3D, "down_block_types": ["CrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"]}
    with pytest.raises(ReleasedCheckpointError, match="unknown block types"):
        load_released_unet(write_release(tmp_path / "c", state, other))
    modules = write_release(tmp_path / "d", state)
    (modules / "unet" / "diffusion_pytorch_model.bin").unlink()
    with pytest.raises(ReleasedCheckpointError, match="no weight file"):
        load_released_unet(modules)
    modules = write_release(tmp_path / "e", state)
    (modules / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"truncated")
    with pytest.raises(ReleasedCheckpointError, match="cannot be read as a PyTorch state dict.*re-download"):
        load_released_unet(modules)


def test_released_2d_tensors_are_compared_with_the_users_sd15(release):
    modules, state = release
    sd15 = UNet2DConditionModel(**CONFIG_2D)
    sd15.load_state_dict({k: v for k, v in state.items() if k in sd15.state_dict()})
    same = load_released_unet(modules, num_frames=4, reference_unet2d=sd15).released["sd15_comparison"]
    assert same["equal"] and "equal the given Stable Diffusion 1.5" in same["message"]
    with torch.no_grad():
        sd15.conv_in.weight.add_(0.1)
    diff = load_released_unet(modules, num_frames=4, reference_unet2d=sd15).released["sd15_comparison"]
    assert not diff["equal"] and diff["differ"] == 1 and "conv_in.weight" in diff["message"]
    assert "used as they are" in diff["message"]


def test_adapter_takes_a_release_only_in_the_paper_profile(release):
    from asva_bench.adapters.api import AdapterError
    from asva_bench.models.avsyncd.adapter import AVSyncD
    from asva_bench.protocol import MINI
    modules, _ = release
    a = AVSyncD(checkpoint=str(modules))
    cfg = a.config()
    assert cfg["checkpoint_format"] == "released" and len(cfg["weights_sha256"]) == 64
    assert a._checkpoint_folder("paper") == modules
    with pytest.raises(AdapterError, match="released UNet.*--profile paper"):
        a.setup(MINI)


# --------------------------------------------------------------------------
# the reference sampler: PNDM driven through a view of the latents
# --------------------------------------------------------------------------
class LinearEps(torch.nn.Module):
    """eps(x, t) = a x + c t / 1000: a toy UNet with the AVSyncDUNet interface (no audio path)."""

    def __init__(self, a=0.3, c=0.1):
        super().__init__()
        self.a, self.c = a, c
        self.config = AVSyncDConfig(audio=None, num_frames=3)
        self.w = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.w.device

    @property
    def dtype(self):
        return self.w.dtype

    def forward(self, sample, t, text, audio=None):
        return self.a * sample + self.c * float(t) / 1000.0


def pndm_by_hand(x_frames: np.ndarray, write_back: bool, a=0.3, c=0.1, n_steps=2) -> np.ndarray:
    """PLMS with the pseudo-Runge-Kutta warm-up skipped (diffusers' skip_prk_steps), float64.

    With N = 2 inference steps the timesteps are [501, 1, 1]; step 1 (t = 1 again) averages
    its eps with step 0's and restarts from the sample step 0 began at.  The authors' loop
    writes step 0's result into the tensor that sample aliases, so step 1 restarts from x'.
    """
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1.0 - betas)
    final = abar[0]  # set_alpha_to_one=False

    def prev(x, t, t_prev, e):
        at, ap = abar[t], (abar[t_prev] if t_prev >= 0 else final)
        bt, bp = 1 - at, 1 - ap
        return (ap / at) ** 0.5 * x - (ap - at) * e / (at * bp ** 0.5 + (at * bt * ap) ** 0.5)

    eps = lambda x, t: a * x + c * t / 1000.0  # noqa: E731
    assert n_steps == 2
    x0 = x_frames
    e0 = eps(x0, 501)
    x1 = prev(x0, 501, 1, e0)  # counter 0: Euler step, remembers its starting sample
    e1 = eps(x1, 1)
    start = x1 if write_back else x0
    x2 = prev(start, 501, 1, (e0 + e1) / 2)  # counter 1: Heun-like correction
    e2 = eps(x2, 1)
    return prev(x2, 1, -499, (3 * e2 - e0) / 2)  # counter 2: second-order multistep


@pytest.mark.parametrize("sampler,write_back", [("pndm-reference", True), ("pndm", False)])
def test_reference_pndm_reads_the_updated_latents_in_its_warm_up(sampler, write_back):
    pipe = AVSyncDPipeline(LinearEps(), sampler)
    g = torch.Generator().manual_seed(0)
    first = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64).float()
    out = pipe(None, None, text_embeddings=torch.zeros(1, 1, 1), image_latents=first, num_frames=3,
               num_inference_steps=2, generator=[7], output_type="latent", progress=False)
    noise = torch.randn((2, 2, 4, 4), generator=torch.Generator().manual_seed(7))
    # the toy eps sees all 3 frames, but frame 1 is held fixed and only frames 2..3 are stepped
    want = pndm_by_hand(noise.double().numpy(), write_back)
    torch.testing.assert_close(out.latents[0, 1:].double(), torch.from_numpy(want), atol=1e-5, rtol=1e-5)
    assert torch.equal(out.latents[:, 0], first)
    other = pndm_by_hand(noise.double().numpy(), not write_back)
    assert np.abs(other - want).max() > 1e-3  # the two loops differ measurably


def test_reference_and_textbook_loops_agree_for_ddim():
    pipe = AVSyncDPipeline(LinearEps(), "ddim")
    kw = dict(text_embeddings=torch.zeros(1, 1, 1), image_latents=torch.ones(1, 2, 4, 4), num_frames=3,
              num_inference_steps=4, generator=[3], output_type="latent", progress=False)
    a = pipe(None, None, **kw).latents
    b = AVSyncDPipeline(LinearEps(), make_scheduler("ddim"))(None, None, **kw).latents
    assert torch.equal(a, b)
