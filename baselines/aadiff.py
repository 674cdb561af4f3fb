"""AADiff: audio-aligned animation with a frozen text-to-image diffusion model.

A training-free re-implementation of Lee et al., "AADiff: Audio-Aligned
Video Synthesis with Text-to-Image Diffusion" (CVPR 2023 workshop on AI for
Content Creation), as the ASVA paper uses it (docs/avsyncd.md, baselines): the
text-image cross-attention of the sound source's text tokens is re-weighted
per frame by the audio's amplitude, run from the input image.

Per clip:

1. **Audio envelope.**  RMS level of the 2 s waveform in each frame's window
   ``[k / fps, (k + 1) / fps)``, in dB, mapped to [0, 1] over the clip
   (min-max; a clip whose level range is under ``min_range_db`` counts as
   flat and gets zeros), then smoothed by a centred sliding-window mean of
   ``smoothing`` frames (the paper's signal smoothing, which trades temporal
   flexibility for coherence).
2. **Start from the input image.**  Its latent is DDIM-inverted with the
   class text (no guidance), keeping the inversion trajectory.
3. **Per frame k >= 2**, DDIM denoising from the inverted noise with the
   attention probabilities of the class-text tokens multiplied by
   ``w_k = 1 + strength * a_k`` in every cross-attention layer
   (prompt-to-prompt re-weighting, no renormalisation), so a loud moment
   emphasises the sound source.  A silent moment (a_k = 0) reproduces the
   input image up to the inversion error.
4. **Regional editing.**  At each step the cross-attention maps of the
   class-text tokens (mean over layers and heads, 3x3 max-pooled, resized
   to the latent grid, divided by their maximum) above ``mask_threshold``
   mark the source's region; outside it the latent is reset to the
   inversion trajectory at the same step (prompt-to-prompt local blending),
   so the background stays the input's.

Choices the paper leaves open, and ours:

- *Which tokens*: AADiff names the sound source's word in the prompt (found
  with CLAP in their demos).  The ASVA protocol gives the class text, so all
  its word tokens (between BOS and EOS) are re-weighted.
- *Amplitude*: the paper uses the audio magnitude; we use the per-frame RMS
  level in dB, normalised per clip, because loudness is perceived (and
  synth's / AVSync15's levels vary) on a log scale.
- *Image animation*: the paper animates still images by inversion; we use
  deterministic DDIM inversion without text guidance (text guidance is off
  in the ASVA protocol), not null-text optimisation (training-free, cheap).
- *Strength and window*: ``strength`` (default 2: weight 3 at the loudest
  frame) and ``smoothing`` (default 3 frames = 0.5 s at 6 fps) are adapter
  arguments, recorded in the results fingerprint.
- *Steps*: DDIM, 50 in the paper profile, 10 in the mini profile (CPU cost:
  inversion plus 11 frames per clip; 20 steps measured 1.3 s a clip on 2
  cores, which alone would take the demo past its 10 minutes).

Base model: Stable Diffusion 1.5 (paper profile: ``base=DIR`` or
$ASVA_SD15_DIR) or the shipped mini base (mini profile).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from asva_bench.adapters.api import Adapter, AdapterError, ClipBatch
from asva_bench.protocol import ProtocolConfig

#: Sampling steps when ``steps`` is not given, per profile.
DEFAULT_STEPS = {"paper": 50, "mini": 10}


# --------------------------------------------------------------------------
# Audio envelope
# --------------------------------------------------------------------------
def amplitude_envelope(audio: torch.Tensor, num_frames: int, fps: float, sample_rate: int,
                       smoothing: int = 3, min_range_db: float = 6.0) -> torch.Tensor:
    """Waveforms [B, S] -> per-frame loudness [B, num_frames] in [0, 1].

    Frame k's window is [k / fps, (k + 1) / fps) of the clip's audio (the
    samples beyond the waveform count as silence).  Levels are RMS in dB
    (floor -80 dB), min-max normalised per clip; a clip whose range is under
    ``min_range_db`` is flat (zeros).  Then a centred moving average over
    ``smoothing`` frames (edges replicated).
    """
    if audio.ndim != 2:
        raise ValueError(f"amplitude_envelope: audio must be [B, samples], got {tuple(audio.shape)}")
    if smoothing < 1:
        raise ValueError(f"amplitude_envelope: smoothing must be >= 1 frame, got {smoothing}")
    B, S = audio.shape
    bounds = [min(S, int(round(k * sample_rate / fps))) for k in range(num_frames + 1)]
    levels = torch.full((B, num_frames), -80.0, dtype=torch.float64)
    x = audio.double()
    for k in range(num_frames):
        a, b = bounds[k], bounds[k + 1]
        if b > a:
            rms = x[:, a:b].pow(2).mean(dim=1).sqrt()
            levels[:, k] = (20.0 * torch.log10(rms.clamp_min(1e-4))).clamp_min(-80.0)
    lo, hi = levels.min(dim=1, keepdim=True).values, levels.max(dim=1, keepdim=True).values
    rng = hi - lo
    env = torch.where(rng >= min_range_db, (levels - lo) / rng.clamp_min(1e-9), torch.zeros_like(levels))
    if smoothing > 1:
        left = (smoothing - 1) // 2
        padded = F.pad(env.unsqueeze(1), (left, smoothing - 1 - left), mode="replicate")
        env = F.avg_pool1d(padded, smoothing, stride=1).squeeze(1)
    return env.float()


# --------------------------------------------------------------------------
# Cross-attention re-weighting (prompt-to-prompt style) with map recording
# --------------------------------------------------------------------------
class ReweightedCrossAttention:
    """Attention processor for the cross-attention layers of a diffusers UNet.

    ``weights`` [B] and ``token_mask`` [B, L] (set before each UNet call)
    scale the attention probabilities of the masked text tokens of sample b
    by ``weights[b]``; the summed probability of those tokens per query
    position (mean over heads) is appended to ``store`` for the local blend.
    Self-attention layers keep their own processor.
    """

    def __init__(self, state: dict):
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if encoder_hidden_states is None:
            raise RuntimeError("ReweightedCrossAttention is for cross-attention layers only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], batch)
        probs = attn.get_attention_scores(q, k, mask)                     # [B*heads, seq, L]
        heads = attn.heads
        probs = probs.view(batch, heads, seq, -1)
        tok = self.state["token_mask"].to(probs.dtype)                    # [B, L]
        w = self.state["weights"].to(probs.dtype)                          # [B]
        scale = 1.0 + (w[:, None] - 1.0) * tok                             # [B, L]
        probs = probs * scale[:, None, None, :]
        if self.state.get("record", False):
            self.state["store"].append((probs * tok[:, None, None, :]).sum(-1).mean(1).float())  # [B, seq]
        out = torch.bmm(probs.reshape(batch * heads, seq, -1), v)
        out = attn.batch_to_head_dim(out)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_reweighting(unet) -> dict:
    """Put ReweightedCrossAttention on every cross-attention layer; returns its shared state."""
    state = {"weights": None, "token_mask": None, "store": [], "record": False}
    procs = {}
    for name, proc in unet.attn_processors.items():
        procs[name] = ReweightedCrossAttention(state) if name.endswith("attn2.processor") else proc
    if not any(isinstance(p, ReweightedCrossAttention) for p in procs.values()):
        raise AdapterError("aadiff: the base UNet has no cross-attention layers (attn2) to re-weight")
    unet.set_attn_processor(procs)
    return state


def word_token_mask(tokenizer, texts, length: int) -> torch.Tensor:
    """[B, L] bool: the word tokens of each text (after BOS, before the first EOS)."""
    ids = tokenizer(list(texts), padding="max_length", max_length=length, truncation=True,
                    return_tensors="pt").input_ids
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        from asva_bench.models.avsyncd.mini_base import EOS_ID
        eos = EOS_ID
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for i, row in enumerate(ids.tolist()):
        end = next((j for j in range(1, len(row)) if row[j] == eos), len(row))
        mask[i, 1:end] = True
    return mask


def blend_mask(maps: list[torch.Tensor], latent_hw: tuple[int, int], threshold: float) -> torch.Tensor:
    """Recorded token maps (each [B, h_l * w_l]) -> [B, 1, h, w] float mask of the source region."""
    h, w = latent_hw
    acc = None
    for m in maps:
        factor = int(round(math.sqrt(h * w / m.shape[1])))
        hl, wl = max(1, h // factor), max(1, w // factor)
        if hl * wl != m.shape[1]:
            raise RuntimeError(f"aadiff: cannot place an attention map of {m.shape[1]} positions on a "
                               f"{h}x{w} latent")
        grid = F.max_pool2d(m.view(-1, 1, hl, wl), 3, stride=1, padding=1)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        acc = grid if acc is None else acc + grid
    acc = acc / len(maps)
    acc = acc / acc.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None, None]
    return (acc > threshold).float()


# --------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------
class AADiff(Adapter):
    name = "aadiff"
    inputs = ("image", "audio", "text")
    first_frame = "input"
    batch_size = 4
    description = ("AADiff (Lee et al. 2023): training-free; text-token cross-attention of a text-to-image "
                   "model re-weighted per frame by the audio's loudness, from the DDIM-inverted input image")

    def __init__(self, strength: float = 2.0, smoothing: int = 3, steps: int | None = None,
                 mask_threshold: float = 0.3, local: bool = True, base: str | None = None, dtype: str = "auto"):
        try:
            self.strength = float(strength)
            self.mask_threshold = float(mask_threshold)
        except (TypeError, ValueError):
            raise AdapterError(f"adapter 'aadiff': strength and mask_threshold must be numbers, got "
                               f"{strength!r}, {mask_threshold!r}") from None
        if not (isinstance(smoothing, int) and smoothing >= 1):
            raise AdapterError(f"adapter 'aadiff': smoothing must be a whole number of frames >= 1, got {smoothing!r}")
        if steps is not None and not (isinstance(steps, int) and steps >= 1):
            raise AdapterError(f"adapter 'aadiff': steps must be a positive integer, got {steps!r}")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise AdapterError(f"adapter 'aadiff': mask_threshold must be in [0, 1), got {mask_threshold!r}")
        if not isinstance(local, bool):
            raise AdapterError(f"adapter 'aadiff': local must be true or false, got {local!r}")
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise AdapterError(f"adapter 'aadiff': dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        self.smoothing, self.steps, self.local, self.base, self.dtype = smoothing, steps, local, base, dtype
        self.parts = None
        self.profile: str | None = None

    def config(self) -> dict:
        d = super().config()
        d["default_steps"] = dict(DEFAULT_STEPS)
        d["scheduler"] = "ddim"
        # the frozen base decides the output: fingerprint its UNet weights (as AVSyncD does its checkpoint)
        d["base_unet_sha256"] = self._base_fingerprints()
        return d

    def _base_fingerprints(self) -> dict:
        import os
        from pathlib import Path

        from asva_bench.models.avsyncd.components import SD15_ENV, _weight_file, file_fingerprint, mini_base_folder
        folders = ({"given": Path(str(self.base)).expanduser()} if self.base else
                   {"mini": mini_base_folder(None), "paper": os.environ.get(SD15_ENV)})
        out = {}
        for k, folder in folders.items():
            w = _weight_file(Path(folder) / "unet") if folder else None
            out[k] = file_fingerprint(w) if w else None
        return out

    def required_files(self, protocol: ProtocolConfig) -> list:
        """Pre-flight: the paper profile runs on Stable Diffusion 1.5 (``base`` or $ASVA_SD15_DIR)."""
        import os

        from asva_bench.checkpoints import RELEASED
        from asva_bench.models.avsyncd.adapter import profile_name
        if profile_name(protocol) == "mini":
            return []  # the shipped mini base
        sd = RELEASED["stable-diffusion-v1-5"]
        return [sd.requirement(self.base or os.environ.get("ASVA_SD15_DIR") or None,
                               fix=f"asva-bench weights fetch {sd.name}, then --model-arg base=DIR or "
                                   "export ASVA_SD15_DIR=DIR")]

    @property
    def num_steps(self) -> int:
        return int(self.steps) if self.steps is not None else DEFAULT_STEPS[self.profile or "paper"]

    def setup(self, protocol: ProtocolConfig, device: str = "cpu", profile=None) -> None:
        from asva_bench.models.avsyncd.adapter import profile_name
        from asva_bench.models.avsyncd.components import ComponentError, load_frozen_parts
        from asva_bench.models.avsyncd.pipeline import make_scheduler
        profile = profile_name(protocol, profile)
        try:
            parts = load_frozen_parts(profile, base=self.base, with_audio=False, device=device)
        except (ComponentError, FileNotFoundError, ValueError) as e:
            raise AdapterError(f"adapter 'aadiff': {e}") from e
        dtype = {"auto": torch.float16 if str(device).startswith("cuda") and profile == "paper" else torch.float32,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        parts.unet2d.to(device=device, dtype=dtype).eval()
        self.parts, self.profile, self.device, self.unet_dtype = parts, profile, torch.device(device), dtype
        self.state = install_reweighting(parts.unet2d)
        self.scheduler = make_scheduler("ddim")

    # -- sampling ---------------------------------------------------------------
    def _eps(self, z, t, ctx, weights, tokens, record=False):
        st = self.state
        st.update(weights=weights.to(z.device), token_mask=tokens.to(z.device), record=record)
        st["store"] = []
        eps = self.parts.unet2d(z.to(self.unet_dtype), t, encoder_hidden_states=ctx.to(self.unet_dtype)).sample
        return eps.float()

    @torch.no_grad()
    def generate(self, batch: ClipBatch) -> torch.Tensor:
        if self.parts is None:
            raise AdapterError("adapter 'aadiff': call setup(protocol, device) before generate()")
        p, dev = batch.protocol, self.device
        B, T = len(batch), p.num_frames
        env = amplitude_envelope(batch.audio, T, p.fps, p.sample_rate, self.smoothing)     # [B, T]
        z0 = self.parts.encode_frames(batch.first_frame.to(dev))                          # [B, C, h, w]
        ctx = self.parts.encode_text(list(batch.text)).to(dev)                            # [B, L, D]
        tokens = word_token_mask(self.parts.tokenizer, batch.text, ctx.shape[1])
        sched = self.scheduler
        sched.set_timesteps(self.num_steps, device=dev)
        timesteps = sched.timesteps                                                          # descending
        ac = sched.alphas_cumprod.to(dev, torch.float64)

        def alpha(t):
            return ac[int(t)] if int(t) >= 0 else torch.tensor(float(sched.final_alpha_cumprod), dtype=torch.float64)

        # DDIM inversion of the input: z_0 -> z_T, keeping the trajectory (trajectory[i] is the latent
        # at the input of denoising step i)
        ones = torch.ones(B)
        z = z0.clone()
        trajectory = [None] * len(timesteps)
        asc = list(reversed(timesteps.tolist()))
        step = sched.config.num_train_timesteps // self.num_steps
        for i, t in enumerate(asc):
            t_prev = t - step
            eps = self._eps(z, torch.tensor([t] * B, device=dev), ctx, ones, tokens)
            a_prev, a_t = alpha(t_prev), alpha(t)
            x0 = (z.double() - (1 - a_prev).sqrt() * eps.double()) / a_prev.sqrt()
            z = (a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps.double()).float()
            trajectory[len(timesteps) - 1 - i] = z.clone()

        # frames 2..T: denoise from the inverted noise with per-frame re-weighting
        F_ = T - 1
        w = (1.0 + self.strength * env[:, 1:]).reshape(B * F_)                              # [B*F]
        zf = trajectory[0].repeat_interleave(F_, dim=0)
        ctx_f, tok_f = ctx.repeat_interleave(F_, dim=0), tokens.repeat_interleave(F_, dim=0)
        hw = tuple(z0.shape[-2:])
        for i, t in enumerate(timesteps):
            eps = self._eps(zf, t.expand(zf.shape[0]), ctx_f, w, tok_f, record=self.local)
            zf = sched.step(eps, t, zf).prev_sample
            if self.local:
                keep = (trajectory[i + 1] if i + 1 < len(timesteps) else z0).repeat_interleave(F_, dim=0)
                m = blend_mask(self.state["store"], hw, self.mask_threshold)
                zf = m * zf + (1 - m) * keep
        self.state["store"] = []
        lat = torch.cat([z0[:, None], zf.view(B, F_, *zf.shape[1:])], dim=1)              # [B, T, C, h, w]
        flat = lat.reshape(B * T, *lat.shape[2:])
        from asva_bench.models.avsyncd.components import _module_dtype
        vae = self.parts.vae
        sf, vdt = float(vae.config.scaling_factor), _module_dtype(vae)
        x = torch.cat([vae.decode((flat[i:i + 16] / sf).to(vdt)).sample.float()
                       for i in range(0, flat.shape[0], 16)])
        frames = ((x + 1.0) / 2.0).clamp(0.0, 1.0).view(B, T, *x.shape[1:])
        if not torch.isfinite(frames).all():
            raise AdapterError(f"adapter 'aadiff': non-finite frames for clips {batch.clip_ids}")
        return frames.cpu()


__all__ = ["AADiff", "amplitude_envelope", "blend_mask", "install_reweighting", "word_token_mask"]
