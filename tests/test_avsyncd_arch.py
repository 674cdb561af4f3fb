"""AVSyncD architecture: inflation, audio windows, checkpoints, training loss, sampling."""

import copy
import json
import sys

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from asva_bench.models.avsyncd import (CONFIG_FILE, TRAINABLE_WEIGHTS_FILE, AudioTokenGeometry, AVSyncDPipeline,
                                       AVSyncDUNet, FirstFrameTemporalConv2d, gather_frame_tokens,
                                       load_sd_folder, make_scheduler, training_loss)

TEXT_DIM = 32


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py

GEO = AudioTokenGeometry(n_freq=3, n_time=19, dim=16)  # paper time axis, fewer rows / channels


def tiny_unet2d(channels: int = 4, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_DIM,
        attention_head_dim=8, norm_num_groups=32).eval()


def perturb_trainable(model: AVSyncDUNet, seed: int = 1, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def inputs(b=2, f=4, c=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, c, 16, 16, generator=g), torch.tensor([10, 600])[:b],
            torch.randn(b, 5, TEXT_DIM, generator=g), torch.randn(b, GEO.n_tokens, GEO.dim, generator=g))


# --------------------------------------------------------------------------
# (a) at initialisation == the 2D model per frame with first-frame attention
# --------------------------------------------------------------------------
class FirstFrameKVReference:
    """Classic (non-SDPA) diffusers attention whose keys/values are recorded from frame 1."""

    def __init__(self):
        self.mode, self.kv = "record", None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        if self.mode == "record":
            self.kv = hidden_states
        return AttnProcessor()(attn, hidden_states, encoder_hidden_states=self.kv)


def reference_first_frame_2d(unet2d, x, t, text):
    procs = []
    for name, m in unet2d.named_modules():
        if name.endswith("attn1"):
            procs.append(FirstFrameKVReference())
            m.set_processor(procs[-1])
    outs = []
    for k in range(x.shape[1]):
        for p in procs:
            p.mode = "record" if k == 0 else "replay"
        outs.append(unet2d(x[:, k], t, encoder_hidden_states=text).sample)
    return torch.stack(outs, dim=1)


def test_init_on_a_static_clip_equals_the_2d_model_per_frame():
    """Zero-initialised new paths + a clip whose frames are identical: clip-wise GroupNorm sees the
    statistics of one frame and first-frame attention is self-attention, so every frame is exactly
    the 2D model's output on that frame."""
    unet2d = tiny_unet2d()
    reference_model = copy.deepcopy(unet2d)
    model = AVSyncDUNet.from_unet2d(unet2d, audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    x, t, text, audio = inputs()
    static = x[:, :1].expand(-1, 4, -1, -1, -1).contiguous()
    with torch.no_grad():
        got = model(static, t, text, audio)
        want = reference_model(static[:, 0], t, encoder_hidden_states=text).sample
    assert got.shape == (2, 4, 4, 16, 16)
    for k in range(4):
        torch.testing.assert_close(got[:, k], want, atol=1e-5, rtol=0)


def test_init_on_a_moving_clip_equals_the_2d_model_with_first_frame_attention_and_clip_norms():
    """Frames that differ: the zero-initialised model is the 2D model whose self-attention reads
    frame 1 and whose ResNet / output GroupNorms normalise over the whole clip (reference built
    here by hand: GroupNorm statistics computed over the clip in float64)."""
    unet2d = tiny_unet2d()
    reference_model = copy.deepcopy(unet2d)
    model = AVSyncDUNet.from_unet2d(unet2d, audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    x, t, text, audio = inputs()
    per_frame_model = copy.deepcopy(reference_model)
    with torch.no_grad():
        got = model(x, t, text, audio)
        want = reference_first_frame_clip_norm(reference_model, x, t, text)
        per_frame_norm = reference_first_frame_2d(per_frame_model, x, t, text)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # teeth: normalising each frame alone (the pre-release layout) gives other outputs
    assert (per_frame_norm - want).abs().max() > 1e-3


class ClipStatsGroupNorm(torch.nn.Module):
    """Reference for the released ResNet norms: frames of a clip are the batch dim [B*F]."""

    def __init__(self, norm, num_frames):
        super().__init__()
        self.norm, self.f = norm, num_frames

    def forward(self, x):
        bf, c, h, w = x.shape
        g = self.norm.num_groups
        x5 = x.double().view(bf // self.f, self.f, g, c // g, h, w)
        mean = x5.mean(dim=(1, 3, 4, 5), keepdim=True)
        var = x5.var(dim=(1, 3, 4, 5), unbiased=False, keepdim=True)
        y = ((x5 - mean) / torch.sqrt(var + self.norm.eps)).view(bf, c, h, w).float()
        return y * self.norm.weight[None, :, None, None] + self.norm.bias[None, :, None, None]


def reference_first_frame_clip_norm(unet2d, x, t, text):
    from diffusers.models.resnet import ResnetBlock2D
    f = x.shape[1]
    for m in list(unet2d.modules()):
        if isinstance(m, ResnetBlock2D):
            m.norm1, m.norm2 = ClipStatsGroupNorm(m.norm1, f), ClipStatsGroupNorm(m.norm2, f)
    unet2d.conv_norm_out = ClipStatsGroupNorm(unet2d.conv_norm_out, f)
    for name, m in unet2d.named_modules():
        if name.endswith("attn1"):
            m.set_processor(FirstFrameKVBatched(f))
    b = x.shape[0]
    return unet2d(x.reshape(b * f, *x.shape[2:]), t.repeat_interleave(f),
                  encoder_hidden_states=text.repeat_interleave(f, 0)).sample.view(x.shape)


class FirstFrameKVBatched:
    """Classic (non-SDPA) attention, keys/values = frame 1 of each clip, frames in the batch dim."""

    def __init__(self, f):
        self.f = f

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        bf, n, c = hidden_states.shape
        first = hidden_states.view(bf // self.f, self.f, n, c)[:, :1].expand(-1, self.f, -1, -1).reshape(bf, n, c)
        return AttnProcessor()(attn, hidden_states, encoder_hidden_states=first)


def test_inflation_wraps_every_conv_and_norm_of_the_released_layout():
    from asva_bench.models.avsyncd import ClipGroupNorm
    from diffusers.models.downsampling import Downsample2D
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.upsampling import Upsample2D
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, audio_geometry=GEO)
    mods = dict(model.unet.named_modules())
    convs = {n for n, m in mods.items() if isinstance(m, FirstFrameTemporalConv2d)}
    resnets = [n for n, m in mods.items() if isinstance(m, ResnetBlock2D)]
    shortcuts = [n for n in resnets if mods[n].conv_shortcut is not None]
    samplers = [n for n, m in mods.items() if isinstance(m, (Downsample2D, Upsample2D))]
    assert shortcuts and samplers  # the tiny UNet has both kinds
    want = ({"conv_in", "conv_out"} | {f"{n}.conv{i}" for n in resnets for i in (1, 2)}
            | {f"{n}.conv_shortcut" for n in shortcuts} | {f"{n}.conv" for n in samplers})
    assert convs == want
    norms = {n for n, m in mods.items() if isinstance(m, ClipGroupNorm)}
    assert norms == {"conv_norm_out"} | {f"{n}.norm{i}" for n in resnets for i in (1, 2)}
    # transformers keep their per-frame GroupNorm
    assert all(type(mods[n]) is torch.nn.GroupNorm for n in mods if n.endswith("attentions.0.norm"))
    assert model.num_transformer_blocks == 4  # 1 down + 1 mid + 2 up (layers_per_block + 1)
    # pretrained keys keep their 2D names, so a 2D checkpoint still loads
    assert "unet.conv_in.weight" in dict(model.named_parameters())
    with pytest.raises(RuntimeError, match="outside AVSyncDUNet.forward"):
        model.unet(torch.zeros(4, 4, 16, 16), 1, encoder_hidden_states=torch.zeros(4, 5, TEXT_DIM))


def test_clip_group_norm_golden():
    from asva_bench.models.avsyncd import ClipGroupNorm, FrameContext, FrameContextHolder
    g = torch.Generator().manual_seed(0)
    holder = FrameContextHolder()
    gn = torch.nn.GroupNorm(2, 4, eps=1e-5)
    with torch.no_grad():
        gn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        gn.bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))
    norm = ClipGroupNorm.from_group_norm(gn, holder)
    x = torch.randn(2 * 3, 4, 2, 2, generator=g) * torch.arange(1, 7).view(6, 1, 1, 1)  # frames differ in scale
    with holder.bind(FrameContext(num_frames=3)):
        got = norm(x)
    x64 = x.double().numpy().reshape(2, 3, 2, 2, 2, 2)  # [B, F, G, C/G, H, W]
    mean = x64.mean(axis=(1, 3, 4, 5), keepdims=True)
    var = x64.var(axis=(1, 3, 4, 5), keepdims=True)
    want = ((x64 - mean) / (var + 1e-5) ** 0.5).reshape(6, 4, 2, 2)
    want = want * gn.weight.detach().double().numpy()[None, :, None, None] + gn.bias.detach().double().numpy()[
        None, :, None, None]
    torch.testing.assert_close(got, torch.from_numpy(want).float(), atol=1e-5, rtol=0)
    assert (got - gn(x)).abs().max() > 0.1  # per-frame statistics differ
    static = x[:1].repeat(6, 1, 1, 1)
    with holder.bind(FrameContext(num_frames=3)):
        torch.testing.assert_close(norm(static), gn(static), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------
# (b) trainable set, gradients, audio dependence after one step
# --------------------------------------------------------------------------
def test_gradients_reach_only_trainable_and_audio_matters_after_a_step():
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    names = {n for n, _ in model.trainable_named_parameters()}
    new = (".conv_temp.", ".norm_audio.", ".attn_audio.", ".pos_embedding_temp.", ".norm_temp.", ".attn_temp.")
    assert names and all(any(k in n for k in new) for n in names)
    x, t, text, audio = inputs()
    other_audio = torch.randn_like(audio)
    with torch.no_grad():
        before = model(x, t, text, audio)
        assert torch.equal(before, model(x, t, text, other_audio))  # zero-init: audio has no effect yet

    loss = training_loss(model, x, audio, text, torch.zeros(1, GEO.n_tokens, GEO.dim), make_scheduler("ddpm"),
                         generator=torch.Generator().manual_seed(0))
    loss.backward()
    for n, p in model.named_parameters():
        if n in names:
            assert p.grad is not None, n
        else:
            assert p.grad is None and not p.requires_grad, n
    out_proj = [p.grad for n, p in model.trainable_named_parameters() if n.endswith("to_out.0.weight")]
    assert all(g.abs().sum() > 0 for g in out_proj)

    torch.optim.Adam(model.trainable_parameters(), lr=1e-3).step()
    with torch.no_grad():
        after = model(x, t, text, audio)
        after_other = model(x, t, text, other_audio)
    assert (after - before).abs().max() > 1e-4
    assert (after - after_other).abs().max() > 1e-5


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    perturb_trainable(model)
    x, t, text, audio = inputs()
    null = torch.zeros(1, GEO.n_tokens, GEO.dim)

    def run():
        model.zero_grad()
        loss = training_loss(model, x, audio, text, null, make_scheduler("ddpm"),
                             generator=torch.Generator().manual_seed(5))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.trainable_parameters()]

    loss0, grads0 = run()
    model.enable_gradient_checkpointing()
    loss1, grads1 = run()
    torch.testing.assert_close(loss1, loss0, atol=1e-6, rtol=0)
    for a, b in zip(grads0, grads1):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_training_loss_golden():
    """Recompute the objective by hand with the documented draw order."""
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    perturb_trainable(model)
    x, _, text, audio = inputs()
    null = torch.randn(1, GEO.n_tokens, GEO.dim)
    sched = make_scheduler("ddpm")
    with torch.no_grad():
        got = training_loss(model, x, audio, text, null, sched, p_drop_audio=0.5,
                            generator=torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(1)
        t = torch.randint(0, 1000, (2,), generator=g)
        noise = torch.randn(x.shape, generator=g)
        drop = torch.rand(2, generator=g) < 0.5
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        abar = torch.cumprod(1 - betas, 0)[t].float().view(2, 1, 1, 1, 1)
        noisy = abar.sqrt() * x + (1 - abar).sqrt() * noise
        noisy[:, 0] = x[:, 0]
        a = torch.stack([null[0] if d else audio[i] for i, d in enumerate(drop)])
        pred = model(noisy, t, text, a)
        want = ((pred[:, 1:] - noise[:, 1:]) ** 2).mean()
    assert drop.tolist() == [True, False]  # this seed exercises both the dropped and the kept branch
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_image_text_variant_has_no_audio_path():
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=None, num_frames=4)
    assert not any("_audio." in n for n, _ in model.trainable_named_parameters())
    x, t, text, audio = inputs()
    assert model(x, t, text).shape == x.shape
    with pytest.raises(ValueError, match="without an audio path"):
        model(x, t, text, audio)


# --------------------------------------------------------------------------
# (c) time-aligned audio tokens
# --------------------------------------------------------------------------
def test_paper_audio_windows_by_hand():
    """The released rule: w = ceil(19 / 12) = 2 columns from round(linspace(0, 17, 12))[k]."""
    geo = AudioTokenGeometry()  # ImageBind-huge: 1 + 12 x 19 tokens, 768-d
    assert geo.n_tokens == 229 and geo.tokens_per_frame(12) == 25
    spans = geo.time_patch_spans()
    # patch j = mel frames [10j, 10j+16) = [0.1 j, 0.1 j + 0.175) s
    assert spans[0].tolist() == pytest.approx([0.0, 0.175])
    assert spans[18].tolist() == pytest.approx([1.8, 1.975])
    # linspace(0, 17, 12) = 0, 1.545, 3.091, 4.636, 6.182, 7.727, 9.273, 10.818, 12.364, 13.909, 15.455, 17
    assert geo.frame_time_patches(12).tolist() == [
        [0, 1], [2, 3], [3, 4], [5, 6], [6, 7], [8, 9], [9, 10], [11, 12], [12, 13], [14, 15], [15, 16], [17, 18]]
    idx = geo.frame_token_indices(12)
    # global token 0, then row f, column t at 1 + 19 f + t
    assert idx[0].tolist() == [0, 1, 2, 20, 21, 39, 40, 58, 59, 77, 78, 96, 97, 115, 116, 134, 135, 153, 154,
                               172, 173, 191, 192, 210, 211]
    assert idx[1].tolist() == [0] + [1 + 19 * f + t for f in range(12) for t in (2, 3)]
    assert idx[11].tolist() == [0, 18, 19, 37, 38, 56, 57, 75, 76, 94, 95, 113, 114, 132, 133, 151, 152, 170,
                                171, 189, 190, 208, 209, 227, 228]
    mask = geo.frame_token_mask(12)
    assert mask.shape == (12, 229) and mask.sum(1).tolist() == [25] * 12
    assert mask[:, 0].all()
    assert (mask[1] & mask[2]).sum() == 1 + 12  # frames 2 and 3 share time column 3
    assert (mask[0] & mask[1]).sum() == 1  # frames 1 and 2: only the global token
    assert mask[:, 1:].any(0).all()  # every patch is seen by some frame


def test_mini_geometry_one_column_per_frame():
    # The mini encoder pools the 204 mel frames into 12 columns of 17 frames: ceil(12 / 12) = 1.
    from asva_bench.models.avsyncd.components import MINI_AUDIO_GEOMETRY
    geo = MINI_AUDIO_GEOMETRY
    assert geo.frame_time_patches(12)[:, 0].tolist() == list(range(12))
    assert geo.frame_token_indices(12)[5].tolist() == [0, 1 + 5, 1 + 12 + 5, 1 + 24 + 5, 1 + 36 + 5]
    # an explicit width overrides the rule: 2 columns from round(linspace(0, 10, 12))
    wide = AudioTokenGeometry(n_freq=4, n_time=12, dim=32, patch_kernel=17, patch_stride=17, time_patches_per_frame=2)
    assert wide.frame_time_patches(12)[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]


def test_frame_index_embedding_is_cos_then_sin():
    from asva_bench.models.avsyncd import frame_index_embedding
    emb = frame_index_embedding(12, 8)
    k = torch.arange(12, dtype=torch.float64)[:, None]
    w = 10000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    torch.testing.assert_close(emb.double(), torch.cat([torch.cos(k * w), torch.sin(k * w)], 1), atol=1e-6, rtol=0)


def test_temporal_attention_adds_the_position_before_its_layer_norm():
    """h + attn_temp(LN(h + MLP(pos))) across frames, recomputed by hand from the block's weights."""
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    perturb_trainable(model, scale=0.2)
    block = next(m for m in model.modules() if type(m).__name__ == "AVSyncDTransformerBlock")
    g = torch.Generator().manual_seed(2)
    f, n, c = 4, 3, block.norm_temp.normalized_shape[0]
    h = torch.randn(2 * f, n, c, generator=g)
    with torch.no_grad():
        got = block._temporal(h, f)
        k = torch.arange(f, dtype=torch.float64)[:, None]
        w = 10000.0 ** (-torch.arange(c // 2, dtype=torch.float64) / (c // 2))
        sinus = torch.cat([torch.cos(k * w), torch.sin(k * w)], 1).float()
        mlp = block.pos_embedding_temp
        pos = mlp.linear_2(torch.nn.functional.silu(mlp.linear_1(sinus)))  # [F, C]
        x = h.view(2, f, n, c).permute(0, 2, 1, 3)  # [B, N, F, C]
        z = torch.nn.functional.layer_norm(x + pos, (c,), block.norm_temp.weight, block.norm_temp.bias,
                                           block.norm_temp.eps)
        a = block.attn_temp
        heads = a.heads
        q, kk, v = (lin(z).view(2, n, f, heads, c // heads).transpose(2, 3) for lin in (a.to_q, a.to_k, a.to_v))
        att = torch.softmax(q @ kk.transpose(-1, -2) / (c // heads) ** 0.5, -1) @ v  # [B, N, heads, F, d]
        out = a.to_out[0](att.transpose(2, 3).reshape(2, n, f, c))
        want = h + out.permute(0, 2, 1, 3).reshape(2 * f, n, c)
        # the pre-release order (position added after the norm) computes something else
        z2 = torch.nn.functional.layer_norm(x, (c,), block.norm_temp.weight, block.norm_temp.bias) + pos
        q2, k2, v2 = (lin(z2).view(2, n, f, heads, c // heads).transpose(2, 3) for lin in (a.to_q, a.to_k, a.to_v))
        att2 = torch.softmax(q2 @ k2.transpose(-1, -2) / (c // heads) ** 0.5, -1) @ v2
        other = h + a.to_out[0](att2.transpose(2, 3).reshape(2, n, f, c)).permute(0, 2, 1, 3).reshape(2 * f, n, c)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (other - want).abs().max() > 1e-3


def test_audio_tokens_pass_a_parameter_free_layer_norm():
    from asva_bench.models.avsyncd.components import normalise_audio_tokens
    g = torch.Generator().manual_seed(0)
    tokens = 3.0 + 2.2 * torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    got = normalise_audio_tokens(tokens)
    mean = tokens.mean(-1, keepdim=True)
    var = ((tokens - mean) ** 2).mean(-1, keepdim=True)
    torch.testing.assert_close(got, (tokens - mean) / torch.sqrt(var + 1e-6), atol=1e-12, rtol=0)


def test_gathered_tokens_equal_masked_attention():
    geo = AudioTokenGeometry(n_freq=3, n_time=19, dim=8)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, geo.n_tokens, 8, generator=g)
    q = torch.randn(2 * 12, 5, 8, generator=g)
    gathered = gather_frame_tokens(tokens, geo.frame_token_indices(12))  # [24, 7, 8]
    sub = torch.nn.functional.scaled_dot_product_attention(q, gathered, gathered)
    full = tokens.repeat_interleave(12, 0)
    mask = geo.frame_token_mask(12).repeat(2, 1)[:, None, :]  # [24, 1, N]
    masked = torch.nn.functional.scaled_dot_product_attention(q, full, full, attn_mask=mask)
    torch.testing.assert_close(sub, masked, atol=1e-6, rtol=0)


def test_audio_token_shape_error_is_clear():
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, audio_geometry=GEO)
    x, t, text, _ = inputs()
    with pytest.raises(ValueError, match=r"expected shape \[batch, 58, 16\]"):
        model(x, t, text, torch.zeros(2, 229, 16))


# --------------------------------------------------------------------------
# (d) trainable checkpoint
# --------------------------------------------------------------------------
def test_save_load_trainable_round_trip(tmp_path):
    unet2d = tiny_unet2d()
    fresh2d = copy.deepcopy(unet2d)
    model = AVSyncDUNet.from_unet2d(unet2d, audio_dim=GEO.dim, num_frames=4, audio_geometry=GEO)
    perturb_trainable(model)
    model.save_trainable(tmp_path / "ckpt")
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "ckpt" / TRAINABLE_WEIGHTS_FILE))
    assert set(saved) == {n for n, _ in model.trainable_named_parameters()}
    assert json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())["audio"]["n_freq"] == 3

    loaded = AVSyncDUNet.from_trainable(fresh2d, tmp_path / "ckpt")
    for (n, a), (m, b) in zip(model.trainable_named_parameters(), loaded.trainable_named_parameters()):
        assert n == m and torch.equal(a, b)
    x, t, text, audio = inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t, text, audio), loaded(x, t, text, audio))


def test_load_trainable_config_mismatch_and_missing(tmp_path):
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=GEO.dim, audio_geometry=GEO)
    model.save_trainable(tmp_path / "ckpt")
    other = AVSyncDUNet.from_unet2d(tiny_unet2d(), audio_dim=24,
                                    audio_geometry=AudioTokenGeometry(n_freq=3, n_time=19, dim=24))
    with pytest.raises(ValueError, match=r"config mismatch \(audio.dim: checkpoint 16 vs model 24\)"):
        other.load_trainable(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="avsyncd_config.json: AVSyncD config missing"):
        model.load_trainable(tmp_path / "nowhere")


# --------------------------------------------------------------------------
# (e) pipeline
# --------------------------------------------------------------------------
def pixel_pipeline(seed=0):
    model = AVSyncDUNet.from_unet2d(tiny_unet2d(channels=3, seed=seed), audio_dim=GEO.dim, num_frames=4,
                                    audio_geometry=GEO)
    perturb_trainable(model, scale=0.2)
    return AVSyncDPipeline(model, make_scheduler("pndm"))


def pipe_inputs(b=2):
    g = torch.Generator().manual_seed(7)
    return dict(image=torch.rand(b, 3, 16, 16, generator=g),
                audio_tokens=torch.randn(b, GEO.n_tokens, GEO.dim, generator=g),
                null_audio_tokens=torch.randn(1, GEO.n_tokens, GEO.dim, generator=g),
                text_embeddings=torch.randn(b, 5, TEXT_DIM, generator=g))


def count_calls(pipe):
    calls = []
    pipe.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    return calls


def test_guided_sampling_batches_passes_and_matches_separate_passes():
    pipe, kw = pixel_pipeline(), pipe_inputs()
    calls = count_calls(pipe)
    out = pipe(**kw, audio_guidance=4.0, num_inference_steps=3, generator=[1, 2], progress=False)
    sched = make_scheduler("pndm")
    sched.set_timesteps(3)
    n_steps = len(sched.timesteps)
    assert calls == [4] * n_steps  # one UNet call per step, null + audio batched (2 x 2 clips)

    # Reference: separate conditional / null passes, combined by the paper's formula.
    first = kw["image"] * 2 - 1
    noise = torch.stack([torch.randn((3, 3, 16, 16), generator=torch.Generator().manual_seed(s)) for s in (1, 2)])
    lat = torch.cat([first[:, None], noise], 1)
    with torch.no_grad():
        for t in sched.timesteps:
            lat[:, 0] = first
            e_a = pipe.unet(lat, t, kw["text_embeddings"], kw["audio_tokens"])
            e_0 = pipe.unet(lat, t, kw["text_embeddings"], kw["null_audio_tokens"].expand(2, -1, -1))
            lat = sched.step(e_0 + 4.0 * (e_a - e_0), t, lat).prev_sample
        lat[:, 0] = first
    # float32 sums differ with the batch size (~1e-6 per pass); guidance x4 and the
    # sampler's 1/sqrt(alpha) steps amplify that, hence 1e-4 over the trajectory.
    torch.testing.assert_close(out.latents, lat, atol=1e-4, rtol=0)
    assert torch.equal(out.latents[:, 0], first)  # frame 1 stays exactly the input
    torch.testing.assert_close(out.frames[:, 0], kw["image"], atol=1e-6, rtol=0)
    assert out.frames.shape == (2, 4, 3, 16, 16) and 0 <= out.frames.min() and out.frames.max() <= 1


def test_unit_guidance_equals_conditional_and_seeds_are_per_clip():
    pipe, kw = pixel_pipeline(), pipe_inputs()
    calls = count_calls(pipe)
    cond = pipe(**kw, audio_guidance=1.0, num_inference_steps=2, generator=[1, 2], progress=False,
                output_type="latent")
    assert set(calls) == {2}  # eta = 1: the conditional pass alone
    calls.clear()
    batched = pipe(**kw, audio_guidance=1.0, num_inference_steps=2, generator=[1, 2], progress=False,
                   output_type="latent", skip_unit_guidance=False)
    assert set(calls) == {4}
    torch.testing.assert_close(batched.latents, cond.latents, atol=1e-4, rtol=0)
    assert cond.frames is None

    again = pipe(**kw, audio_guidance=4.0, num_inference_steps=2, generator=[1, 2], progress=False,
                 output_type="latent")
    same = pipe(**kw, audio_guidance=4.0, num_inference_steps=2, generator=[1, 2], progress=False,
                output_type="latent")
    assert torch.equal(again.latents, same.latents)
    other = pipe(**kw, audio_guidance=4.0, num_inference_steps=2, generator=[1, 3], progress=False,
                 output_type="latent")
    assert torch.equal(other.latents[0], same.latents[0])  # clip 0's noise comes from its own seed
    assert (other.latents[1] - same.latents[1]).abs().max() > 1e-3
    alone = pipe(**{k: v[1:] if k != "null_audio_tokens" else v for k, v in kw.items()}, audio_guidance=4.0,
                 num_inference_steps=2, generator=[2], progress=False, output_type="latent")
    torch.testing.assert_close(alone.latents[0], same.latents[1], atol=1e-4, rtol=0)  # batch-size rounding only
    # audio guidance changes the result
    assert (cond.latents - same.latents).abs().max() > 1e-4


def test_ddim_text_guidance_and_errors():
    pipe, kw = pixel_pipeline(), pipe_inputs(b=1)
    out = pipe(**kw, num_inference_steps=2, scheduler="ddim", generator=0, progress=False)
    assert torch.equal(out.latents, pipe(**kw, num_inference_steps=2, scheduler="ddim", generator=0,
                                         progress=False).latents)
    assert out.frames.shape == (1, 4, 3, 16, 16)
    calls = count_calls(pipe)
    with_text = pipe(**kw, audio_guidance=4.0, text_guidance=2.0, null_text_embeddings=torch.zeros(1, 5, TEXT_DIM),
                     num_inference_steps=2, scheduler="ddim", generator=0, progress=False)
    assert set(calls) == {3}  # null/null, null audio/text, audio/text in one call
    assert (with_text.latents - pipe(**kw, num_inference_steps=2, scheduler="ddim", generator=0,
                                     progress=False).latents).abs().max() > 1e-4
    kw["null_audio_tokens"] = None
    with pytest.raises(ValueError, match="null_audio_tokens"):
        pipe(**kw, audio_guidance=4.0, num_inference_steps=2, generator=0, progress=False)
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("euler")


# --------------------------------------------------------------------------
# Local Stable Diffusion folder
# --------------------------------------------------------------------------
def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32),
                         latent_channels=4, norm_num_groups=32, sample_size=32)


def test_sd_folder_loading_and_latent_pipeline(tmp_path):
    unet2d = tiny_unet2d()
    unet2d.save_pretrained(tmp_path / "sd" / "unet")
    tiny_vae().save_pretrained(tmp_path / "sd" / "vae")
    parts = load_sd_folder(tmp_path / "sd", text_encoder=False)
    for (n, a), (m, b) in zip(unet2d.state_dict().items(), parts["unet"].state_dict().items()):
        assert n == m and torch.equal(a, b)

    pipe = AVSyncDPipeline.from_sd_folder(tmp_path / "sd", audio_dim=GEO.dim, audio_geometry=GEO, num_frames=4,
                                          text_encoder=False)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 32, 32, generator=g)
    out = pipe(image, torch.randn(1, GEO.n_tokens, GEO.dim), torch.zeros(1, GEO.n_tokens, GEO.dim),
               text_embeddings=torch.randn(1, 5, TEXT_DIM), num_inference_steps=2, generator=0, progress=False)
    assert out.latents.shape == (1, 4, 4, 16, 16) and out.frames.shape == (1, 4, 3, 32, 32)
    assert torch.equal(out.latents[:, 0], pipe.encode_images(image))


def test_sd_folder_errors_name_missing_files(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sd_folder(tmp_path / "absent")
    (tmp_path / "sd").mkdir()
    tiny_unet2d().save_pretrained(tmp_path / "sd" / "unet")
    with pytest.raises(FileNotFoundError) as e:
        load_sd_folder(tmp_path / "sd")
    msg = str(e.value)
    for name in ("vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                 "tokenizer/vocab.json", "tokenizer/merges.txt"):
        assert name in msg
    assert "unet/config.json" not in msg and "unet/diffusion_pytorch_model" not in msg
    # All files present but no 'transformers' package: a clear ImportError.
    tiny_vae().save_pretrained(tmp_path / "sd" / "vae")
    for rel in ("text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
                "tokenizer/merges.txt"):
        (tmp_path / "sd" / rel).parent.mkdir(exist_ok=True)
        (tmp_path / "sd" / rel).write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install transformers"):
        load_sd_folder(tmp_path / "sd")


# --------------------------------------------------------------------------
# Paper-size benchmark script (its --tiny smoke mode)
# --------------------------------------------------------------------------
def test_paper_size_benchmark_script_tiny_json(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "avsyncd_paper_size.py"
    spec = importlib.util.spec_from_file_location("avsyncd_paper_size", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # the written-out SD 1.5 config gives SD 1.5's 859,520,964 parameters
    with torch.device("meta"):  # shapes only, no memory
        sd15 = UNet2DConditionModel(**bench.SD15_UNET_CONFIG)
    assert sum(p.numel() for p in sd15.parameters()) == 859_520_964
    bench.main(["--tiny", "--latent-size", "8", "--frames", "3", "--steps", "2", "--json"])
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert out["guided_unet_batch"] == 2 and out["guided_unet_calls_per_step"] == 1.0
    assert 0 < out["params_trainable"] < out["params_total"]
    assert out["train_loss"] > 0 and out["guided_step_s"] > 0
