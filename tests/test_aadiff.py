"""AADiff baseline: loudness envelope, attention re-weighting, token masks, and the adapter on a tiny base."""

import math

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from asva_bench.adapters import AdapterError, build_adapter, get_adapter_class
from asva_bench.adapters.api import ClipBatch, validate_output
from asva_bench.baselines.aadiff import (AADiff, amplitude_envelope, blend_mask, install_reweighting,
                                         word_token_mask)
from asva_bench.models.avsyncd.mini_base import MiniBase, MiniBaseConfig, MiniTokenizer, PatchPCAAutoencoder
from asva_bench.protocol import MINI, waveforms_to_mel

TEXTS = ["hammer strike", "dog bark"]
SR, FPS, T = MINI.sample_rate, MINI.fps, MINI.num_frames
TINY = MiniBaseConfig(patch_size=8, latent_channels=8, block_out_channels=(16, 16), layers_per_block=1,
                      attention_levels=1, attention_heads=2, norm_num_groups=8, text_dim=16, text_layers=1,
                      text_heads=2)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    torch.manual_seed(0)
    images = torch.rand(16, 3, 64, 64)
    base = MiniBase.create(TEXTS, PatchPCAAutoencoder.fit(images, 8, 8), TINY, seed=0)
    folder = tmp_path_factory.mktemp("aadiff") / "base"
    base.save(folder, dtype=torch.float32)
    return folder


def burst_audio(frames_loud: list[int], n: int = 2, noise: float = 1e-3) -> torch.Tensor:
    """2 s of quiet noise (-60 dB; ``noise=0``: silence) with a loud tone in the given frames' windows."""
    g = torch.Generator().manual_seed(0)
    audio = noise * torch.randn(n, int(MINI.clip_seconds * SR), generator=g)
    t = torch.arange(audio.shape[1]) / SR
    for k in frames_loud:
        a, b = round(k * SR / FPS), round((k + 1) * SR / FPS)
        audio[:, a:b] += 0.5 * torch.sin(2 * math.pi * 440 * t[a:b])
    return audio


# --------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------
def test_envelope_marks_the_loud_frame_and_smooths_it():
    audio = burst_audio([5], n=1)
    env = amplitude_envelope(audio, T, FPS, SR, smoothing=1)
    assert env.shape == (1, T)
    assert env[0, 5] == pytest.approx(1.0)
    assert float(env[0, [k for k in range(T) if k != 5]].max()) < 0.05   # noise floor ~ -60 dB vs -9 dB tone
    sm = amplitude_envelope(audio, T, FPS, SR, smoothing=3)
    # centred mean of 3 (edges replicated): the peak spreads over frames 4, 5, 6
    want = torch.stack([env[0, max(k - 1, 0):k + 2].sum() + (env[0, 0] if k == 0 else 0) for k in range(T)]) / 3
    want[-1] = (env[0, -2] + 2 * env[0, -1]) / 3
    torch.testing.assert_close(sm[0], want, atol=1e-6, rtol=0)
    assert float(sm[0, 4:7].min()) > 0.3
    assert float(sm[0, :3].max()) < 0.05 and float(sm[0, 8:].max()) < 0.05


def test_envelope_of_flat_or_silent_audio_is_zero():
    n = int(MINI.clip_seconds * SR)
    t = torch.arange(n) / SR
    steady = 0.3 * torch.sin(2 * math.pi * 300 * t)[None]
    assert float(amplitude_envelope(steady, T, FPS, SR).abs().max()) == 0.0
    assert float(amplitude_envelope(torch.zeros(1, n), T, FPS, SR).abs().max()) == 0.0
    with pytest.raises(ValueError, match="samples"):
        amplitude_envelope(torch.zeros(n), T, FPS, SR)


# --------------------------------------------------------------------------
# Tokens, re-weighting processor, mask
# --------------------------------------------------------------------------
def test_word_token_mask_covers_the_words_only():
    tok = MiniTokenizer.from_texts(TEXTS, model_max_length=8)
    m = word_token_mask(tok, ["dog bark", "hammer strike"], 8)
    assert m.tolist() == [[False, True, True, False, False, False, False, False]] * 2
    assert word_token_mask(tok, [""], 8).sum() == 0


def test_reweighting_with_unit_weights_equals_the_default_processor(base_folder):
    base = MiniBase.load(base_folder)
    unet = base.unet.eval()
    unet.set_attn_processor(AttnProcessor())
    x = torch.randn(2, unet.config.in_channels, 8, 8)
    ctx = base.encode_text(TEXTS)
    with torch.no_grad():
        want = unet(x, torch.tensor([10, 500]), encoder_hidden_states=ctx).sample
        state = install_reweighting(unet)
        state.update(weights=torch.ones(2), token_mask=word_token_mask(base.tokenizer, TEXTS, ctx.shape[1]),
                     record=True, store=[])
        got = unet(x, torch.tensor([10, 500]), encoder_hidden_states=ctx).sample
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert state["store"] and all(m.shape[0] == 2 for m in state["store"])
        state.update(weights=torch.tensor([1.0, 4.0]), store=[])
        other = unet(x, torch.tensor([10, 500]), encoder_hidden_states=ctx).sample
    torch.testing.assert_close(other[0], want[0], atol=1e-5, rtol=1e-5)   # weight 1: unchanged
    assert float((other[1] - want[1]).abs().max()) > 1e-4                  # weight 4: changed


def test_blend_mask_thresholds_the_normalised_map():
    m = torch.zeros(1, 16)
    m[0, 5] = 1.0                       # a 4x4 map with one hot cell at (1, 1)
    mask = blend_mask([m], (8, 8), 0.3)
    assert mask.shape == (1, 1, 8, 8)
    assert mask[0, 0, 2, 2] == 1 and mask[0, 0, 7, 7] == 0      # dilated 3x3 around (1,1), then x2 upsampled


# --------------------------------------------------------------------------
# Adapter
# --------------------------------------------------------------------------
def make_batch(audio: torch.Tensor) -> ClipBatch:
    n = audio.shape[0]
    g = torch.Generator().manual_seed(1)
    return ClipBatch(first_frame=torch.rand(n, 3, 64, 64, generator=g), audio=audio,
                     mel=waveforms_to_mel(audio, MINI), text=TEXTS[:n],
                     clip_ids=[f"c/v{i}_clip-00" for i in range(n)], seeds=list(range(n)), protocol=MINI)


def test_adapter_is_registered_and_checks_its_arguments():
    assert get_adapter_class("aadiff") is AADiff
    with pytest.raises(AdapterError, match="smoothing"):
        build_adapter("aadiff", ["smoothing=0"])
    with pytest.raises(AdapterError, match="mask_threshold"):
        build_adapter("aadiff", {"mask_threshold": 1.5})
    with pytest.raises(AdapterError, match="call setup"):
        AADiff().generate(make_batch(burst_audio([3], 1)))


def test_quiet_frames_follow_the_input_and_loud_frames_move(base_folder):
    loud = [4, 9]
    batch = make_batch(burst_audio(loud, noise=0.0))   # silence between: loudness exactly 0 there
    out = {}
    for strength in (0.0, 3.0):
        a = AADiff(strength=strength, smoothing=1, steps=4, base=str(base_folder))
        a.setup(MINI, "cpu")
        out[strength] = validate_output(a, batch, a.generate(batch))
    ref, moved = out[0.0], out[3.0]
    assert ref.shape == (2, T, 3, 64, 64)
    # strength 0: every generated frame is the same (same inverted noise, same weights)
    torch.testing.assert_close(ref[:, 2:], ref[:, 1:2].expand_as(ref[:, 2:]), atol=1e-5, rtol=0)
    diff = (moved - ref).abs().flatten(2).mean(-1)              # [B, T]
    quiet = [k for k in range(1, T) if k not in loud]
    # a frame whose loudness is 0 has weight 1: the same computation as strength 0
    assert float(diff[:, quiet].max()) < 1e-5
    assert float(diff[:, loud].min()) > 1e-4
    assert float(amplitude_envelope(batch.audio, T, FPS, SR, 1)[:, quiet].max()) == 0.0
    # frame 1 is the input image
    torch.testing.assert_close(moved[:, 0], batch.first_frame, atol=0, rtol=0)
    cfg = a.config()
    assert cfg["strength"] == 3.0 and cfg["default_steps"] == {"paper": 50, "mini": 10}
    assert len(cfg["base_unet_sha256"]["given"]) == 64     # the base's weights are in the fingerprint


def test_missing_base_is_a_clear_error(tmp_path):
    a = AADiff(base=str(tmp_path / "nowhere"))
    with pytest.raises(AdapterError, match="nowhere"):
        a.setup(MINI, "cpu")
