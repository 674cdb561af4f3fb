"""Training AVSyncD and I2VD (docs/avsyncd.md, "Training"), both profiles, resumable.

    asva-bench train avsyncd --profile mini --dataset synth --minutes 5 --device cuda --out runs/train/avsyncd-mini
    asva-bench train i2vd    --profile mini --dataset synth --minutes 2 --device cuda --out runs/train/i2vd-mini

Recipe (both profiles): the frozen base UNet is inflated (unet3d.py); only the
temporal and audio modules train.  Each step draws random clips from the
clip cache packed on its 12 fps grid (uniform video, uniform start, random
horizontal flip; asva_bench/training/clip_cache.py), encodes
the frames to latents, keeps frame 1 clean, noises frames 2..F at a uniform
DDPM timestep (1000 steps, scaled-linear 0.00085-0.012) and regresses the
noise (epsilon) on frames 2..F.  The audio condition is replaced by the
null audio tokens (the encoder's tokens for an all-zero normalised mel) for
20% of the clips.  AdamW, weight decay 1e-2, gradient clip 1.0; bf16
autocast on CUDA; gradient checkpointing on CUDA for the paper profile.
I2VD is the same without the audio path.

The mini profile deviates from the paper recipe (docs/avsyncd.md):

* ``lr`` 5e-4 with a cosine decay to 10% (paper: constant 1e-4), because
  the mini run lasts minutes, not 37k steps;
* ``motion_weight`` 4: the loss of a latent pixel whose frame differs from
  frame 1 (mean absolute pixel change over ``motion_threshold``, saturating)
  counts up to 1 + 4 times more.  On synth most of the picture is a static
  background, and an unweighted loss is minimised almost entirely by
  copying frame 1 (docs/avsyncd.md, mini deviations), leaving the audio-driven pixels with
  too little gradient.  The paper profile keeps 0 (plain MSE).

Audio tokens: the frozen encoder's tokens depend only on (video, clip
start), so on CUDA the mini profile precomputes them once for every start
of the cache (``precompute_audio``); otherwise they are computed per batch.

The step loop, the learning-rate schedule, the folder layout and the noise
are the shared training toolkit's (asva_bench/training: loop.py,
schedule.py, checkpointing.py, noise.py).  Files in ``--out``::

    train_config.json     the TrainConfig (checked on --resume)
    loss_log.jsonl        {"step", "loss", "lr", "grad_norm", ...} every log_every steps; {"step", "probe": {...}}
    checkpoint/           replaced atomically (temporary folder, then renamed):
        avsyncd_config.json, avsyncd_trainable.safetensors   (AVSyncDUNet.save_trainable)
        avsyncd_training.json   frozen-part identity, config, step, last loss (components.TRAINING_RECORD)
        optimizer.pt            AdamW state
        progress.json           step, training seconds, last loss

``checkpoint/`` is what the adapters load (``--model-arg checkpoint=DIR``).
Batches and noise of step s come from generators seeded by (seed, s), so a
resumed run continues exactly as an uninterrupted one.

The probe (every ``probe_every`` steps and at the end) scores a fixed set of
clips at fixed noise: the loss with the true audio, with the audio of the
same video 0.5 s later, and with the null audio.  ``shift_gain`` = loss
(shifted) - loss (true) > 0 means the model uses the audio's timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .components import TRAINING_RECORD, FrozenParts, check_identity, load_frozen_parts
from .pipeline import make_scheduler
from .unet3d import AVSyncDUNet

from asva_bench import distributed as D
from asva_bench.fsutil import atomic_torch_save, show_progress
from asva_bench.profiles import PROFILE_NAMES
from asva_bench.training.checkpointing import (CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE,  # noqa: F401 (re-exported)
                                               Progress, TrainingError, TrainingFolder)
from asva_bench.training.clip_cache import DEFAULT_PACK_FPS
from asva_bench.training.loop import Budget, Hook, StepResult, run_steps, step_generator, step_seed
from asva_bench.training.noise import draw_timesteps_and_noise, noised
from asva_bench.training.schedule import LRSchedule

MODELS = ("avsyncd", "i2vd")
OPTIMIZER_FILE = "optimizer.pt"
#: Keys that may change between a run and its --resume (budgets and bookkeeping).
RESUMABLE_KEYS = ("steps", "minutes", "log_every", "probe_every", "checkpoint_minutes", "device", "progress",
                  "world_size")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "avsyncd"              # avsyncd | i2vd (no audio path)
    profile: str = "mini"
    dataset: str = "synth"
    steps: int | None = None            # stop after this many steps (None: only --minutes)
    minutes: float | None = None        # stop after this much training time (cumulative over resumes)
    batch_size: int = 64
    grad_accum: int = 1                 # micro-batches per optimizer step
    lr: float = 5e-4
    schedule: str = "cosine"            # cosine (to 10% of lr, over steps or minutes) | constant
    warmup_steps: int = 100
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    p_drop_audio: float = 0.2
    motion_weight: float = 4.0          # 0 = the paper's plain MSE
    motion_threshold: float = 0.1       # mean |pixel change| (in [0, 1] units) that counts as full motion
    flip: bool = True
    seed: int = 0
    mixed_precision: str = "auto"       # auto (bf16 on cuda) | bf16 | no
    gradient_checkpointing: str = "auto"  # auto (paper on cuda) | on | off
    precompute_audio: str = "auto"      # auto (mini on cuda) | on | off
    log_every: int = 10
    probe_every: int = 500
    probe_clips: int = 32
    checkpoint_minutes: float = 2.0
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def for_profile(cls, model: str, profile: str, **overrides) -> "TrainConfig":
        """The recipe of ``profile`` (paper: docs/avsyncd.md "Training"; mini: documented deviations)."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        if profile == "paper":
            # batch 64 as in the paper: 8 clips x 8 accumulation steps on one GPU by default
            base = dict(batch_size=8, grad_accum=8, lr=1e-4, schedule="constant", warmup_steps=0,
                        motion_weight=0.0, steps=37000, probe_every=1000, probe_clips=16,
                        checkpoint_minutes=15.0)
        elif profile == "mini":
            base = {}
        else:
            raise ValueError(f"unknown profile {profile!r}; choose paper or mini")
        base.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(model=model, profile=profile, **base)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a training budget: --steps N and/or --minutes M")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("--batch-size and --grad-accum must be >= 1")
        for name, choices in (("schedule", ("cosine", "constant")), ("mixed_precision", ("auto", "bf16", "no")),
                              ("gradient_checkpointing", ("auto", "on", "off")),
                              ("precompute_audio", ("auto", "on", "off"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # -- resolved switches ----------------------------------------------------
    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    @property
    def use_bf16(self) -> bool:
        return self.mixed_precision == "bf16" or (self.mixed_precision == "auto" and self.on_cuda)

    @property
    def use_checkpointing(self) -> bool:
        g = self.gradient_checkpointing
        return g == "on" or (g == "auto" and self.on_cuda and self.profile == "paper")

    @property
    def use_precompute(self) -> bool:
        p = self.precompute_audio
        return self.model == "avsyncd" and (p == "on" or (p == "auto" and self.on_cuda and self.profile == "mini"))

    def lr_schedule(self) -> LRSchedule:
        """Warm-up, then constant or cosine to 10% over the steps or minutes (whichever is further)."""
        return LRSchedule(self.warmup_steps, self.schedule, floor=0.1, total_steps=self.steps,
                          total_seconds=self.minutes * 60.0 if self.minutes else None)


# --------------------------------------------------------------------------
# Data: random clips from the packed clip cache, with their audio tokens
# --------------------------------------------------------------------------
def local_device(device: str) -> torch.device:
    """``cuda`` under torchrun means this process's GPU (LOCAL_RANK); anything else as given."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the trainable gradients (one flat buffer) and divide by the world size, so every
    process applies the update of the whole multi-process batch."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
    for p in params:
        if p.grad is None:  # a module unused by this process's batch still joins the reduction
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(avg)


def weights_digest(net) -> str:
    """sha256 of the trainable tensors (identical on every process of a multi-process run)."""
    h = hashlib.sha256()
    for name, t in sorted(net.trainable_state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class ClipSource:
    """Random training clips of a PackedClips cache, with their frozen-encoder audio tokens.

    Draws from ``generator`` as PackedClips.sample_clips does (videos, start
    fractions, flip coins).  Tokens come from a precomputed table over every
    (video, start) of the cache, or are computed per batch.
    """

    def __init__(self, cache, parts: FrozenParts | None, device, precompute: bool = False,
                 progress: bool = False, chunk: int = 256):
        self.cache = cache
        self.parts = parts
        self.device = torch.device(device)
        self.num_frames = cache.protocol.num_frames
        self.start_offsets = torch.cat([torch.zeros(1, dtype=torch.long), cache.num_starts.cumsum(0)])
        self.table = None
        if parts is not None and parts.audio_encoder is not None and precompute:
            self.table = self._precompute(progress, chunk)

    def _audio(self, videos: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        return self.cache.audio_of(videos, starts)  # the exact protocol audio window of a grid start

    def tokens_for(self, videos: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """[B, N, D] float32 audio tokens of the clips (video, start) on the training device."""
        if self.table is not None:
            return self.table[(self.start_offsets[videos] + starts).to(self.table.device)].float()
        return self.parts.audio_tokens(mel_on(self._audio(videos, starts), self.cache.protocol, self.device))

    @torch.no_grad()
    def _precompute(self, progress: bool, chunk: int) -> torch.Tensor:
        from tqdm.auto import tqdm
        n_starts = self.cache.num_starts
        videos = torch.repeat_interleave(torch.arange(len(n_starts)), n_starts)
        starts = torch.cat([torch.arange(int(n)) for n in n_starts])
        g = self.parts.geometry
        table = torch.empty(len(videos), g.n_tokens, g.dim, dtype=torch.float16, device=self.device)
        for i in tqdm(range(0, len(videos), chunk), desc="audio tokens", unit="chunk", disable=not progress,
                      leave=False):
            v, s = videos[i:i + chunk], starts[i:i + chunk]
            table[i:i + len(v)] = self.parts.audio_tokens(
                mel_on(self._audio(v, s), self.cache.protocol, self.device)).half()
        return table

    def draw(self, batch_size: int, generator: torch.Generator, flip: bool = True):
        """(frames [B, F, 3, H, W] float in [0, 1] on device, labels [B], videos [B], starts [B])."""
        b = self.cache.sample_clips(batch_size, generator, flip, self.num_frames, device=self.device)
        return b.frames, b.labels, b.videos, b.starts


def mel_on(audio: torch.Tensor, protocol, device) -> torch.Tensor:
    """Normalised protocol mel of ``audio`` [B, samples], computed on ``device`` when it can be
    (Kaldi fbank is plain torch), else on the CPU."""
    from asva_bench.protocol import waveforms_to_mel
    device = torch.device(device)
    if device.type != "cpu":
        try:
            return waveforms_to_mel(audio.to(device), protocol)
        except (RuntimeError, NotImplementedError):
            pass
    return waveforms_to_mel(audio.float().cpu(), protocol).to(device)


# --------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------
def motion_weights(frames: torch.Tensor, latent_hw: tuple[int, int], strength: float,
                   threshold: float) -> torch.Tensor:
    """Loss weights [B, F-1, 1, h, w] for frames 2..F: 1 + strength * min(1, change / threshold),
    change = mean over channels and each latent pixel's patch of |frame_k - frame_1|."""
    diff = (frames[:, 1:] - frames[:, :1]).abs().mean(dim=2)  # [B, F-1, H, W]
    b, f1 = diff.shape[:2]
    change = F.adaptive_avg_pool2d(diff.reshape(b * f1, 1, *diff.shape[-2:]), latent_hw)
    w = 1.0 + strength * (change / threshold).clamp(max=1.0)
    return w.view(b, f1, 1, *latent_hw)


def diffusion_loss(model: AVSyncDUNet, latents: torch.Tensor, audio_tokens: torch.Tensor | None,
                   text_emb: torch.Tensor, null_audio_tokens: torch.Tensor | None, scheduler,
                   p_drop_audio: float = 0.2, generator: torch.Generator | None = None,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """pipeline.training_loss with optional per-position weights [B, F-1, 1|C, h, w] on frames 2..F.

    Same random draws in the same order (timesteps, noise, audio-drop
    uniforms), so ``weights=None`` gives exactly pipeline.training_loss.
    The weighted loss is sum(w * err^2) / sum(w) (a weighted mean).
    """
    t, noise = draw_timesteps_and_noise(latents, scheduler, generator)
    noisy = noised(scheduler, latents, noise, t, clean_first_frame=True)
    if audio_tokens is not None:
        gdev = generator.device if generator is not None else latents.device
        drop = torch.rand(latents.shape[0], generator=generator, device=gdev).to(latents.device) < p_drop_audio
        null = null_audio_tokens.to(audio_tokens).expand_as(audio_tokens)
        audio_tokens = torch.where(drop[:, None, None], null, audio_tokens)
    pred = model(noisy, t, text_emb, audio_tokens)
    err = (pred[:, 1:].float() - noise[:, 1:].float()).square()
    if weights is None:
        return err.mean()
    w = weights.float().expand_as(err)
    return (w * err).sum() / w.sum()


# --------------------------------------------------------------------------
# Building the model
# --------------------------------------------------------------------------
def build_model(parts: FrozenParts, model: str, num_frames: int, seed: int = 0) -> AVSyncDUNet:
    """Inflate the frozen base into AVSyncD (audio path) or I2VD (none); new modules seeded by ``seed``."""
    torch.manual_seed(seed)
    with_audio = model == "avsyncd"
    g = parts.geometry if with_audio else None
    net = AVSyncDUNet.from_unet2d(parts.unet2d, audio_dim=g.dim if g is not None else None,
                                  num_frames=num_frames, audio_geometry=g)
    for p in net.trainable_parameters():  # AdamW state and updates in float32 whatever the base's dtype
        p.data = p.data.float()
    return net


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
def _write_checkpoint(folder: Path, net: AVSyncDUNet, opt, step: int, seconds: float, cfg: TrainConfig,
                      parts: FrozenParts, last_loss: float | None) -> None:
    """Fill a checkpoint folder: what the adapters load, plus the optimizer state."""
    from asva_bench.fsutil import atomic_write_text
    net.save_trainable(folder)
    atomic_torch_save({"optimizer": opt.state_dict()}, folder / OPTIMIZER_FILE)
    record = {**parts.identity, "model": cfg.model, "step": step, "train_seconds": round(seconds, 1),
              "last_loss": last_loss, "train_config": cfg.to_dict(), "num_parameters": net.num_parameters()}
    atomic_write_text(folder / TRAINING_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _legacy_progress(ckpt: Path) -> Progress | None:
    """Checkpoints written before progress.json kept the step in optimizer.pt."""
    if not (ckpt / OPTIMIZER_FILE).is_file():
        return None
    st = torch.load(ckpt / OPTIMIZER_FILE, map_location="cpu", weights_only=False)
    return Progress(step=int(st["step"]), elapsed_s=float(st["seconds"]), last_loss=st.get("last_loss"))


# --------------------------------------------------------------------------
# Probe: does the model use the audio's timing?
# --------------------------------------------------------------------------
class Probe:
    """Fixed clips, timesteps and noise; loss with true, 0.5 s-shifted and null audio."""

    def __init__(self, source: ClipSource, parts: FrozenParts, text_table: torch.Tensor, n: int, seed: int,
                 with_audio: bool, shift_s: float = 0.5):
        c = source.cache
        g = torch.Generator().manual_seed(step_seed(seed, 0, 7))
        shift = int(round(shift_s * c.fps))
        ok = torch.nonzero(c.num_starts > shift).flatten()
        if len(ok) == 0:
            ok, shift = torch.arange(c.num_videos), 0
        videos = ok[torch.randint(0, len(ok), (n,), generator=g)]
        starts = (torch.rand(n, generator=g, dtype=torch.float64) * (c.num_starts[videos] - shift)).long()
        fi, _ = c.indices(videos, starts, source.num_frames)
        dev = source.device
        frames = c.frames[fi.to(c.device)].to(dev).float() / 255.0
        lat = parts.encode_frames(frames.flatten(0, 1))
        self.latents = lat.view(n, source.num_frames, *lat.shape[1:])
        self.moving = motion_weights(frames, self.latents.shape[-2:], 1.0, 0.05) > 1.5  # changed latent pixels
        self.text = text_table[c.labels[videos].to(text_table.device)]
        self.t = ((torch.arange(n) + 0.5) / n * 1000).long().to(dev)
        self.noise = torch.randn(self.latents.shape, generator=g).to(dev)
        self.audio = None
        self.shift_s = shift / c.fps
        if with_audio:
            self.audio = {"true": source.tokens_for(videos, starts),
                          "shifted": source.tokens_for(videos, starts + shift),
                          "null": parts.null_tokens().to(dev).expand(n, -1, -1)}

    @torch.no_grad()
    def __call__(self, net: AVSyncDUNet, scheduler, autocast) -> dict:
        was_training = net.training
        net.eval()
        noisy = noised(scheduler, self.latents, self.noise, self.t, clean_first_frame=True)
        out = {}
        for name, tokens in (self.audio or {"none": None}).items():
            with autocast():
                pred = net(noisy, self.t, self.text, tokens)
            err = (pred[:, 1:].float() - self.noise[:, 1:]).square()
            m = self.moving.expand_as(err).float()
            out[f"mse_{name}"] = round(float(err.mean()), 6)
            out[f"mse_moving_{name}"] = round(float((err * m).sum() / m.sum().clamp_min(1)), 6)
        if self.audio is not None:
            for kind in ("", "moving_"):
                out[f"{kind}shift_gain"] = round(out[f"mse_{kind}shifted"] - out[f"mse_{kind}true"], 6)
                out[f"{kind}null_gain"] = round(out[f"mse_{kind}null"] - out[f"mse_{kind}true"], 6)
            out["shift_s"] = self.shift_s
        net.train(was_training)
        return out


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------
def train(cfg: TrainConfig, out, cache, *, base=None, audio_encoder=None, resume: bool = False,
          parts: FrozenParts | None = None) -> dict:
    """Train (or resume) into ``out`` on a PackedClips ``cache``; returns a summary dict."""
    cfg.check()
    out = Path(out)
    # several processes (torchrun): each draws its own clips, gradients are averaged, rank 0 writes
    rank, world = D.init_from_env()
    main = rank == 0
    dev = local_device(cfg.device)
    folder = TrainingFolder(out, writer=main)
    ckpt = folder.checkpoint
    # a different recipe or a missing --resume fails here, before any loading; budgets may grow
    start = folder.start({**cfg.to_dict(), "world_size": world}, resume=resume, may_change=RESUMABLE_KEYS,
                         refuse_existing=True, legacy=_legacy_progress)
    t_setup = time.perf_counter()
    if cfg.on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if parts is None:
        parts = load_frozen_parts(cfg.profile, base=base, audio_encoder=audio_encoder,
                                  with_audio=cfg.model == "avsyncd", device=dev)
    if cache.protocol.num_frames < 2:
        raise TrainingError("the clip cache's protocol has fewer than 2 frames")
    net = build_model(parts, cfg.model, cache.protocol.num_frames, cfg.seed).to(dev)
    if cfg.use_checkpointing:
        net.enable_gradient_checkpointing()
    net.train()
    opt = torch.optim.AdamW(net.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=True if cfg.on_cuda else None)
    if start is not None:
        from .components import read_training_record
        check_identity(read_training_record(ckpt), parts, ckpt)
        net.load_trainable(ckpt)
        opt.load_state_dict(torch.load(ckpt / OPTIMIZER_FILE, map_location=dev, weights_only=False)["optimizer"])
    start = start or Progress()
    D.barrier()

    with_audio = cfg.model == "avsyncd"
    source = ClipSource(cache, parts if with_audio else None, dev, precompute=cfg.use_precompute,
                        progress=cfg.progress)
    text_table = parts.encode_text(cache.class_texts).to(dev)
    null = parts.null_tokens().to(dev) if with_audio else None
    sched = make_scheduler("ddpm")
    probe = (Probe(source, parts, text_table, cfg.probe_clips, cfg.seed, with_audio)
             if cfg.probe_every and main else None)
    setup_seconds = time.perf_counter() - t_setup

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.use_bf16)

    def one_step(step: int) -> StepResult:
        # rank 0 draws exactly what a single process draws; rank r its own streams
        gen = step_generator(cfg.seed, step, 1000 * rank)
        ngen = step_generator(cfg.seed, step, 1 + 1000 * rank, dev)
        total = 0.0
        for _ in range(cfg.grad_accum):
            frames, labels, videos, starts = source.draw(cfg.batch_size, gen, cfg.flip)
            b, f = frames.shape[:2]
            lat = parts.encode_frames(frames.flatten(0, 1))
            lat = lat.view(b, f, *lat.shape[1:])
            tokens = source.tokens_for(videos, starts) if with_audio else None
            w = (motion_weights(frames, lat.shape[-2:], cfg.motion_weight, cfg.motion_threshold)
                 if cfg.motion_weight > 0 else None)
            with autocast():
                loss = diffusion_loss(net, lat, tokens, text_table[labels.to(dev)], null, sched,
                                      cfg.p_drop_audio, ngen, w)
            (loss / cfg.grad_accum).backward()
            total += float(loss.detach()) / cfg.grad_accum
        if world > 1:
            average_gradients(net.trainable_parameters(), world)
            t_loss = torch.tensor([total], device=dev)
            torch.distributed.all_reduce(t_loss)
            total = float(t_loss.item()) / world
        if not math.isfinite(total):  # before the update reaches the weights
            raise TrainingError(f"loss became {total} at step {step}; lower --lr (now {cfg.lr})")
        gnorm = torch.nn.utils.clip_grad_norm_(net.trainable_parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cfg.on_cuda:
            torch.cuda.synchronize()
        return StepResult(total, {"grad_norm": gnorm})

    def save(progress: Progress) -> None:
        folder.save(progress, lambda tmp: _write_checkpoint(tmp, net, opt, progress.step, progress.elapsed_s, cfg,
                                                            parts, progress.last_loss))

    hooks = [Hook("probe", cfg.probe_every, lambda step: probe(net, sched, autocast))] if probe is not None else []
    log = folder.open_log({"step": start.step, "model": cfg.model, "profile": cfg.profile, "world_size": world,
                           "videos": cache.num_videos, "parameters": net.num_parameters()})
    try:
        budget = Budget(steps=cfg.steps, seconds=cfg.minutes * 60.0 if cfg.minutes is not None else None)
        outcome = run_steps(one_step, start=start, budget=budget, log=log, save=save if main else None, log_every=cfg.log_every,
                            checkpoint_minutes=cfg.checkpoint_minutes, optimizer=opt, lr=cfg.lr,
                            schedule=cfg.lr_schedule(), hooks=hooks, world=world, device=dev,
                            progress=cfg.progress and main, desc=f"train {cfg.model} ({cfg.profile})",
                            postfix=lambda rec: {"loss": f"{rec['loss']:.4f}"})
        D.barrier()
    finally:
        if log is not None:
            log.close()
    probes = [r["probe"] for r in outcome.hook_records]
    summary = {"model": cfg.model, "profile": cfg.profile, "step": outcome.step, "finished": outcome.finished,
               "interrupted": not outcome.finished, "last_loss": outcome.last_loss,
               "train_seconds": round(outcome.elapsed_s, 1), "setup_seconds": round(setup_seconds, 1),
               "steps_per_s": round(outcome.step / max(outcome.elapsed_s, 1e-9), 3), "checkpoint": str(ckpt),
               "loss_log": str(folder.log_path), "num_parameters": net.num_parameters(),
               "probe": probes[-1] if probes else None, "world_size": world, "rank": rank,
               "weights_digest": weights_digest(net)}
    if outcome.interrupted and main:
        print(f"interrupted at step {outcome.step}; checkpoint saved, rerun with --resume to continue",
              file=sys.stderr)
    return summary


# --------------------------------------------------------------------------
# CLI: asva-bench train avsyncd | i2vd
# --------------------------------------------------------------------------
def _clip_cache(args):
    from asva_bench.training.clip_cache import ensure_clip_cache
    cache = ensure_clip_cache(args.dataset, root=args.root, split="train", profile=args.profile,
                              cache_dir=args.cache_dir, workers=args.workers, progress=show_progress())
    return cache.pack(DEFAULT_PACK_FPS, progress=show_progress())


def cmd_train(args) -> int:
    overrides = {"steps": args.steps, "minutes": args.minutes, "batch_size": args.batch_size,
                 "grad_accum": args.grad_accum, "lr": args.lr, "seed": args.seed,
                 "motion_weight": args.motion_weight, "probe_every": args.probe_every,
                 "checkpoint_minutes": args.checkpoint_minutes, "mixed_precision": args.mixed_precision,
                 "gradient_checkpointing": args.gradient_checkpointing,
                 "precompute_audio": args.precompute_audio, "device": args.device, "dataset": args.dataset,
                 "progress": show_progress()}
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = TrainConfig.for_profile(args.model, args.profile, **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / "train" / f"{args.model}-{args.profile}-{args.dataset}"
    rank, _ = D.init_from_env()
    if rank != 0:
        D.barrier()  # rank 0 builds the clip cache first; the others then read it
    cache = _clip_cache(args)
    if rank == 0:
        D.barrier()
    if cfg.on_cuda and cfg.profile == "mini":  # 1.4 GB at 64x64; the paper's 256x256 cache stays in host memory
        cache.to(local_device(args.device))
    summary = train(cfg, out, cache, base=args.base, audio_encoder=args.audio_encoder, resume=args.resume)
    if rank != 0:
        return 0
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    else:
        p = summary["probe"] or {}
        loss = "n/a" if summary["last_loss"] is None else f"{summary['last_loss']:.4f}"
        print(f"{cfg.model} ({cfg.profile}): step {summary['step']}, last loss {loss}, "
              f"{summary['steps_per_s']} steps/s; checkpoint {summary['checkpoint']}"
              + (f"\nprobe: shift gain {p.get('moving_shift_gain')} (moving pixels), null gain "
                 f"{p.get('moving_null_gain')}" if "moving_shift_gain" in p else ""))
    return 0


def add_train_commands(train_subparsers) -> None:
    """Add `avsyncd` and `i2vd` to the sub-parsers of the `train` command group."""
    for model, help_ in (("avsyncd", "train AVSyncD (image + audio + text) on a base model, resumable"),
                         ("i2vd", "train I2VD (AVSyncD without the audio path), resumable")):
        p = train_subparsers.add_parser(model, help=help_)
        p.add_argument("--profile", choices=PROFILE_NAMES, default="mini")
        p.add_argument("--dataset", default="synth", help="registered dataset (default synth)")
        p.add_argument("--root", help="dataset folder (default: the dataset's environment variable; synth is "
                                      "built automatically)")
        p.add_argument("--cache-dir", help="clip cache root (default $ASVA_BENCH_HOME/cache/clips)")
        p.add_argument("--workers", type=int, default=2, help="decoding processes when building the clip cache")
        p.add_argument("--out", help=f"training folder (default runs/train/{model}-<profile>-<dataset>)")
        p.add_argument("--steps", type=int, help="total optimizer steps (paper default 37000)")
        p.add_argument("--minutes", type=float, help="training-time budget, cumulative over resumes")
        p.add_argument("--batch-size", type=int, help="clips per micro-batch (mini 64, paper 8)")
        p.add_argument("--grad-accum", type=int, help="micro-batches per step (paper 8: batch 64)")
        p.add_argument("--lr", type=float, help="AdamW learning rate (mini 5e-4 cosine, paper 1e-4 constant)")
        p.add_argument("--motion-weight", type=float, help="extra loss weight on changing pixels (mini 4, paper 0)")
        p.add_argument("--seed", type=int)
        p.add_argument("--probe-every", type=int, help="steps between audio-use probes (0: never)")
        p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (mini 2)")
        p.add_argument("--mixed-precision", choices=["auto", "bf16", "no"])
        p.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"])
        p.add_argument("--precompute-audio", choices=["auto", "on", "off"],
                       help="precompute the audio tokens of every clip start (auto: mini on cuda)")
        p.add_argument("--base", help="mini: base bundle folder (default: shipped); paper: Stable Diffusion 1.5 "
                                      "diffusers folder (default $ASVA_SD15_DIR)")
        p.add_argument("--audio-encoder", help="mini only: a mini-embedding .safetensors (default: the "
                                               "registered mini-embedding backbone)")
        p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
        p.add_argument("--threads", type=int, help="torch CPU threads")
        p.add_argument("--resume", action="store_true", help="continue the run in --out")
        p.add_argument("--json", action="store_true", help="print one JSON summary object")
        p.set_defaults(func=cmd_train, model=model)


def main(argv=None) -> int:
    """`python -m asva_bench.models.avsyncd.train avsyncd|i2vd ...` (same options as `asva-bench train`)."""
    from asva_bench.training.cli import run_module
    return run_module("python -m asva_bench.models.avsyncd.train", add_train_commands, argv, commands="MODEL")


if __name__ == "__main__":
    sys.exit(main())
