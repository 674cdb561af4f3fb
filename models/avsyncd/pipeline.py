"""AVSyncD diffusion: schedulers, the training objective and guided sampling.

Kept apart from the network (unet3d.py): the model predicts epsilon for a
[B, F, C, H, W] latent clip; this module decides which latents are noised,
how guidance combines the passes, and how frames map to and from latents.

* Noise schedule (docs/avsyncd.md): DDPM, 1000 steps, scaled-linear
  betas 0.00085-0.012, epsilon prediction (Stable Diffusion 1.5's).
* Frame 1 is the conditioning image: clean in training (loss on frames
  2..F only) and re-inserted clean before every denoising step.
* Audio guidance: eps = eps(null) + eta * (eps(audio) - eps(null)), the two
  passes batched into one UNet call.  Text guidance is off (1.0) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, PNDMScheduler
from tqdm.auto import tqdm

from .unet3d import AVSyncDUNet

#: Stable Diffusion 1.5's noise schedule, shared by training and every sampler.
NOISE_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", prediction_type="epsilon")

#: Sampler names.  "pndm-reference" is PNDM driven the way the authors' sampling loop drives it
#: (each step written back into a view of the latent tensor that PNDM's warm-up reads again,
#: docs/avsyncd.md "Sampling"); "pndm" is the textbook loop.  The scheduler object is the same.
SCHEDULERS = ("pndm-reference", "pndm", "ddim", "ddpm")
#: How the conditioning frame becomes frame 1's latent (docs/avsyncd.md "Sampling"):
#: "reference" = uint8-truncated image, a sample of the VAE posterior, output frame 1 decoded
#: from that latent; "exact" = the float image, the posterior mode, output frame 1 = the input.
CONDITIONING_MODES = ("reference", "exact")


def make_scheduler(name: str = "pndm"):
    """A fresh diffusers scheduler on the SD 1.5 schedule ("pndm" default for sampling, "ddpm" for training)."""
    name = name.lower()
    if name in ("pndm", "pndm-reference"):
        return PNDMScheduler(**NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    if name == "ddim":
        return DDIMScheduler(**NOISE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if name == "ddpm":
        return DDPMScheduler(**NOISE_SCHEDULE, clip_sample=False, steps_offset=1)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")


def _check_epsilon(scheduler) -> None:
    if scheduler.config.prediction_type != "epsilon":
        raise ValueError(f"AVSyncD predicts epsilon; scheduler has prediction_type="
                         f"{scheduler.config.prediction_type!r}")


# --------------------------------------------------------------------------
# Training objective
# --------------------------------------------------------------------------
def training_loss(model: AVSyncDUNet, latents: torch.Tensor, audio_tokens: torch.Tensor | None,
                  text_emb: torch.Tensor, null_audio_tokens: torch.Tensor | None, scheduler,
                  p_drop_audio: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Epsilon-prediction MSE on frames 2..F of clean ``latents`` [B, F, C, H, W].

    Random draws, in this order, from ``generator`` (on its own device):
    timesteps [B] uniform in [0, num_train_timesteps); noise [B, F, C, H, W]
    standard normal (float32); audio-drop uniforms [B] (only with audio) -
    clip b uses ``null_audio_tokens`` when its uniform < ``p_drop_audio``.
    Frame 1 stays clean; the loss ignores it.
    """
    _check_epsilon(scheduler)
    if latents.ndim != 5 or latents.shape[1] < 2:
        raise ValueError(f"training_loss: latents must be [B, F>=2, C, H, W], got {tuple(latents.shape)}")
    b, dev = latents.shape[0], latents.device
    gdev = generator.device if generator is not None else dev
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=gdev).to(dev)
    noise = torch.randn(latents.shape, generator=generator, device=gdev, dtype=torch.float32).to(dev, latents.dtype)
    noisy = scheduler.add_noise(latents, noise, t)
    noisy = torch.cat([latents[:, :1], noisy[:, 1:]], dim=1)
    if audio_tokens is not None:
        if null_audio_tokens is None:
            raise ValueError("training_loss: null_audio_tokens are required to drop the audio")
        drop = torch.rand(b, generator=generator, device=gdev).to(dev) < p_drop_audio
        null = null_audio_tokens.to(audio_tokens).expand_as(audio_tokens)
        audio_tokens = torch.where(drop[:, None, None], null, audio_tokens)
    pred = model(noisy, t, text_emb, audio_tokens)
    return F.mse_loss(pred[:, 1:].float(), noise[:, 1:].float())


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------
@dataclass
class AVSyncDOutput:
    latents: torch.Tensor  # [B, F, C, h, w], frame 1 = the clean conditioning latent
    frames: torch.Tensor | None  # [B, F, 3, H, W] in [0, 1]; None for output_type="latent"


def _generators(generator, batch: int) -> list[torch.Generator]:
    """One CPU generator per clip, so a clip's noise does not depend on its batch-mates."""
    if generator is None:
        return [torch.Generator().manual_seed(int(torch.randint(0, 2**63 - 1, ()).item())) for _ in range(batch)]
    if isinstance(generator, int):
        return [torch.Generator().manual_seed(generator + i) for i in range(batch)]
    if isinstance(generator, torch.Generator):
        return [generator] * batch
    gens = list(generator)
    if len(gens) != batch:
        raise ValueError(f"got {len(gens)} generators/seeds for {batch} clips; give one per clip")
    return [torch.Generator().manual_seed(int(g)) if isinstance(g, int) else g for g in gens]


class AVSyncDPipeline:
    """Image + audio (+ text) -> F-frame clip, diffusers style.

    ``vae=None`` diffuses pixels directly (latents = pixels scaled to
    [-1, 1]); otherwise a diffusers AutoencoderKL maps frames to latents
    (posterior mode x scaling_factor) and back.  Text conditioning is a
    pre-computed embedding [B, L, D], or prompts when a tokenizer and text
    encoder are attached.
    """

    def __init__(self, unet: AVSyncDUNet, scheduler="pndm", vae=None, text_encoder=None, tokenizer=None):
        """``scheduler``: a name of :data:`SCHEDULERS` or a diffusers scheduler object (sampled
        with the textbook loop)."""
        self.unet = unet
        self.sampler = scheduler.lower() if isinstance(scheduler, str) else None
        self.scheduler = make_scheduler(scheduler) if isinstance(scheduler, str) else scheduler
        _check_epsilon(self.scheduler)
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer

    @classmethod
    def from_sd_folder(cls, folder, trainable=None, audio_dim: int | None = 768, num_frames: int = 12,
                       audio_geometry=None, scheduler: str = "pndm", text_encoder: bool = True,
                       torch_dtype: torch.dtype | None = None, device="cpu") -> "AVSyncDPipeline":
        """Build from a local SD 1.5 diffusers folder; ``trainable`` = a save_trainable folder."""
        parts = load_sd_folder(folder, text_encoder=text_encoder, torch_dtype=torch_dtype)
        if trainable is not None:
            unet = AVSyncDUNet.from_trainable(parts["unet"], trainable)
        else:
            unet = AVSyncDUNet.from_unet2d(parts["unet"], audio_dim=audio_dim, num_frames=num_frames,
                                           audio_geometry=audio_geometry)
        pipe = cls(unet.to(device), scheduler, vae=parts["vae"].to(device),
                   text_encoder=parts.get("text_encoder"), tokenizer=parts.get("tokenizer"))
        if pipe.text_encoder is not None:
            pipe.text_encoder.to(device)
        return pipe

    # -- frames <-> latents ---------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, H, W] in [0, 1] -> (mean, std) of the scaled latent posterior [N, C, h, w]
        (pixel space: the image in [-1, 1] with std 0)."""
        x = images.to(self.device, self.dtype) * 2.0 - 1.0
        if self.vae is None:
            if x.shape[1] != self.unet.unet.config.in_channels:
                raise ValueError(f"pixel-space AVSyncD: images have {x.shape[1]} channels but the UNet takes "
                                 f"{self.unet.unet.config.in_channels}; attach a VAE for latent diffusion")
            return x, torch.zeros_like(x)
        dist = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        sf = self.vae.config.scaling_factor
        return dist.mode().to(self.dtype) * sf, dist.std.to(self.dtype) * sf

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> latents [N, C, h, w] (posterior mode x scaling factor)."""
        return self.posterior(images)[0]

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """[B, F, C, h, w] -> frames [B, F, 3, H, W] in [0, 1] (VAE decoded ``chunk`` frames at a time)."""
        b, f = latents.shape[:2]
        flat = latents.reshape(b * f, *latents.shape[2:])
        if self.vae is None:
            x = flat.float()
        else:
            sf = self.vae.config.scaling_factor
            x = torch.cat([self.vae.decode((flat[i:i + chunk] / sf).to(self.vae.dtype)).sample.float()
                           for i in range(0, flat.shape[0], chunk)])
        x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
        return x.view(b, f, *x.shape[1:])

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("prompts need a tokenizer and text encoder; pass text_embeddings instead, or "
                             "build with AVSyncDPipeline.from_sd_folder(..., text_encoder=True)")
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        enc = self.text_encoder
        return enc(ids.to(enc.device))[0].to(self.dtype)

    # -- sampling -----------------------------------------------------------
    @torch.no_grad()
    def __call__(self, image: torch.Tensor | None, audio_tokens: torch.Tensor | None,
                 null_audio_tokens: torch.Tensor | None = None, text_embeddings: torch.Tensor | None = None,
                 prompt: Sequence[str] | None = None, null_text_embeddings: torch.Tensor | None = None,
                 audio_guidance: float = 4.0, text_guidance: float = 1.0, num_frames: int | None = None,
                 num_inference_steps: int = 50, scheduler: str | None = None, generator=None,
                 output_type: str = "pt", skip_unit_guidance: bool = True,
                 image_latents: torch.Tensor | None = None, progress: bool = True,
                 init_strength: float = 1.0, conditioning: str = "exact") -> AVSyncDOutput:
        """Animate ``image`` [B, 3, H, W] in [0, 1] with ``audio_tokens`` [B, N, D].

        ``image_latents`` [B, C, h, w] replaces ``image`` when the first frame
        is already encoded.

        Guidance passes are batched into one UNet call per step, in the order
        [null audio (+ null text), ..., audio + text].  With
        ``audio_guidance == 1`` and ``text_guidance == 1`` the combination
        equals the conditional pass, which ``skip_unit_guidance`` runs alone.
        ``generator``: a seed (clip i gets seed + i), a list of seeds or
        generators (one per clip), or one generator shared in order.

        ``init_strength`` < 1 (DDIM only) starts frames 2..F from frame 1's latent
        noised to about timestep ``init_strength`` x 1000 and runs only the
        schedule's last ``round(init_strength x num_inference_steps)`` steps (the img2img / SDEdit
        start, a frame-1 noise prior as in image-to-video samplers).  1.0, the
        paper's sampler, starts from pure noise.

        ``conditioning`` (:data:`CONDITIONING_MODES`): "reference" quantises ``image`` to
        uint8 by truncation, encodes it to a *sample* of the VAE posterior (eps drawn from each
        clip's generator after its frame noise) and decodes frame 1 from that latent, as the
        authors' pipeline does; "exact" encodes the float image to the posterior mode.  Frame
        1's latent is held fixed either way.  ``scheduler="pndm-reference"`` writes each step
        back into a view of the latents, as the authors' loop does (PNDM's second warm-up step
        then reads the updated latents).
        """
        if conditioning not in CONDITIONING_MODES:
            raise ValueError(f"conditioning must be one of {CONDITIONING_MODES}, got {conditioning!r}")
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pt' or 'latent', got {output_type!r}")
        if (image is None) == (image_latents is None):
            raise ValueError("give exactly one of image [B, 3, H, W] and image_latents [B, C, h, w]")
        b = image.shape[0] if image is not None else image_latents.shape[0]
        f = int(num_frames or self.unet.config.num_frames)
        sampler = scheduler.lower() if scheduler else self.sampler
        sched = make_scheduler(sampler) if sampler else type(self.scheduler).from_config(self.scheduler.config)
        _check_epsilon(sched)
        write_back = sampler == "pndm-reference"
        dev, dtype = self.device, self.dtype

        if text_embeddings is None:
            if prompt is None:
                raise ValueError("give text_embeddings [B, L, D] or prompt (a list of B strings)")
            text_embeddings = self.encode_prompt(prompt)
        text = text_embeddings.to(dev, dtype)
        use_audio = self.unet.config.audio is not None
        if not use_audio and audio_tokens is not None:
            raise ValueError("this AVSyncD UNet has no audio path (built with audio_dim=None); pass audio_tokens=None")
        if use_audio and (audio_tokens is None or audio_tokens.shape[0] != b):
            raise ValueError(f"audio_tokens must be [{b}, N, D] for {b} clips, got "
                             f"{None if audio_tokens is None else tuple(audio_tokens.shape)}")
        audio_guided = use_audio and audio_guidance != 1.0
        text_guided = text_guidance != 1.0
        if audio_guided or (use_audio and not skip_unit_guidance):
            if null_audio_tokens is None:
                raise ValueError("audio guidance needs null_audio_tokens (encoder output for an all-zero mel)")
        if text_guided and null_text_embeddings is None:
            null_text_embeddings = self.encode_prompt([""] * b)

        # Conditions of each pass, batched along dim 0 (clips are repeated per pass).
        audio = audio_tokens.to(dev, dtype) if use_audio else None
        null_a = null_audio_tokens.to(dev, dtype).expand(b, -1, -1) if null_audio_tokens is not None else None
        guided = audio_guided or text_guided or (use_audio and not skip_unit_guidance)
        if not guided:
            passes = [(audio, text)]
        else:
            passes = []
            if text_guided:
                passes.append((null_a, null_text_embeddings.to(dev, dtype).expand(b, -1, -1)))
            if use_audio:
                passes.append((null_a, text))
            passes.append((audio, text))
        n_pass = len(passes)
        batch_audio = torch.cat([p[0] for p in passes]) if use_audio else None
        batch_text = torch.cat([p[1] for p in passes])

        gens = _generators(generator, b)
        if image_latents is not None:
            first, std = image_latents.to(dev, dtype), None  # [B, C, h, w]
        elif conditioning == "reference":
            # the authors' pipeline goes through PIL: (255 x).byte() truncates
            first, std = self.posterior(torch.floor(image.float().clamp(0, 1) * 255.0) / 255.0)
        else:
            first, std = self.encode_images(image), None
        noise = torch.stack([torch.randn((f - 1, *first.shape[1:]), generator=g, device=g.device,
                                         dtype=torch.float32) for g in gens]).to(dev, dtype)
        if std is not None:  # a posterior sample, its eps drawn after the clip's frame noise
            eps = torch.stack([torch.randn(first.shape[1:], generator=g, device=g.device, dtype=torch.float32)
                               for g in gens]).to(dev, dtype)
            first = first + std * eps
        if not 0.0 < init_strength <= 1.0:
            raise ValueError(f"init_strength must be in (0, 1], got {init_strength}")
        sched.set_timesteps(num_inference_steps, device=dev)
        timesteps = sched.timesteps
        if init_strength < 1.0:
            if isinstance(sched, PNDMScheduler):
                raise ValueError("init_strength < 1 needs the DDIM scheduler: PNDM's multistep warm-up "
                                 "cannot begin mid-schedule")
            n_run = max(1, int(round(init_strength * num_inference_steps)))
            timesteps = timesteps[len(timesteps) - n_run:]
            prior = first[:, None].expand(-1, f - 1, -1, -1, -1)
            start = sched.add_noise(prior, noise, timesteps[:1].repeat(b))
            latents = torch.cat([first[:, None], start], dim=1)
        else:
            latents = torch.cat([first[:, None], noise * sched.init_noise_sigma], dim=1)
        for t in tqdm(timesteps, desc="AVSyncD sampling", disable=not progress, leave=False):
            model_in = sched.scale_model_input(latents, t)
            eps = self.unet(model_in.repeat(n_pass, 1, 1, 1, 1), t, batch_text, batch_audio).chunk(n_pass)
            if not guided:
                eps_hat = eps[0]
            elif text_guided and use_audio:
                e_null, e_text, e_full = eps
                eps_hat = e_null + text_guidance * (e_text - e_null) + audio_guidance * (e_full - e_text)
            elif text_guided:
                e_null, e_text = eps
                eps_hat = e_null + text_guidance * (e_text - e_null)
            else:
                e_null, e_audio = eps
                eps_hat = e_null + audio_guidance * (e_audio - e_null)
            # frame 1 is the condition: only frames 2..F are stepped
            if write_back:
                latents[:, 1:] = sched.step(eps_hat[:, 1:], t, latents[:, 1:]).prev_sample
            else:
                latents = torch.cat([latents[:, :1], sched.step(eps_hat[:, 1:], t, latents[:, 1:].clone()).prev_sample],
                                    dim=1)
        frames = None if output_type == "latent" else self.decode_latents(latents)
        if frames is not None and conditioning == "exact" and image is not None:
            frames[:, 0] = image.to(frames.device, frames.dtype).clamp(0, 1)
        return AVSyncDOutput(latents=latents, frames=frames)


# --------------------------------------------------------------------------
# Local Stable Diffusion 1.5 folder
# --------------------------------------------------------------------------
_WEIGHT_NAMES = {
    "unet": ("diffusion_pytorch_model",),
    "vae": ("diffusion_pytorch_model",),
    "text_encoder": ("model", "pytorch_model"),
}


def _weights_variant(sub: Path, stems: tuple[str, ...]) -> tuple[bool, str | None]:
    """(found, variant) for diffusers/transformers weight files in ``sub``."""
    for variant in (None, "fp16"):
        for stem in stems:
            for ext in ("safetensors", "bin"):
                name = f"{stem}.{ext}" if variant is None else f"{stem}.{variant}.{ext}"
                if (sub / name).is_file():
                    return True, variant
    return False, None


def load_sd_folder(folder, text_encoder: bool = True, torch_dtype: torch.dtype | None = None) -> dict:
    """Load unet (UNet2DConditionModel), vae (AutoencoderKL) and optionally the CLIP
    text_encoder + tokenizer from a local diffusers folder of Stable Diffusion 1.5.

    Every missing file is named in one error before anything loads.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = Path(folder)
    layout = ("expected the diffusers layout of Stable Diffusion 1.5 (stable-diffusion-v1-5/"
              "stable-diffusion-v1-5 on the Hugging Face Hub): unet/, vae/, text_encoder/, tokenizer/, "
              "each with config.json and weights")
    if not folder.is_dir():
        raise FileNotFoundError(f"Stable Diffusion folder {folder} does not exist; {layout}")
    parts = ["unet", "vae"] + (["text_encoder"] if text_encoder else [])
    missing, variants = [], {}
    for part in parts:
        sub = folder / part
        if not (sub / "config.json").is_file():
            missing.append(f"{part}/config.json")
        found, variants[part] = _weights_variant(sub, _WEIGHT_NAMES[part])
        if not found:
            stem = _WEIGHT_NAMES[part][0]
            missing.append(f"{part}/{stem}.safetensors (or .bin / .fp16.safetensors)")
    if text_encoder:
        for name in ("vocab.json", "merges.txt"):
            if not (folder / "tokenizer" / name).is_file():
                missing.append(f"tokenizer/{name}")
    if missing:
        raise FileNotFoundError(f"Stable Diffusion folder {folder} is missing: {', '.join(missing)}; {layout}")
    if text_encoder:
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as e:
            raise ImportError("loading the CLIP text encoder needs the 'transformers' package "
                              "(pip install transformers), or pass text_encoder=False and give "
                              "text embeddings directly") from e
    kw = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    out = {
        "unet": UNet2DConditionModel.from_pretrained(folder, subfolder="unet", variant=variants["unet"], **kw),
        "vae": AutoencoderKL.from_pretrained(folder, subfolder="vae", variant=variants["vae"], **kw),
    }
    out["vae"].requires_grad_(False)
    if text_encoder:
        out["text_encoder"] = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder",
                                                            variant=variants["text_encoder"], **kw)
        out["text_encoder"].requires_grad_(False)
        out["tokenizer"] = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    return out
