"""Contrastive training of the sync classifier (docs/protocol.md, "The sync classifier").

Each step takes ``batch_videos`` videos; from each, K clips whose starts are
``clip_spacing`` (0.2 s) apart; every clip's audio is scored against every
clip's frames of the same video (a K x K matrix of raw logits phi); the loss
is the symmetric cross-entropy (audio -> video and video -> audio) of that
matrix divided by the temperature (0.1), the diagonal being the
synchronized pairs.

Videos too short for K clips contribute the clips that fit (at least 2);
the rest of their rows and columns are masked out of the loss. Videos too
short for 2 clips are never drawn; how many is reported in the log header.

Resumable through the shared training loop (:mod:`.loop`, folder layout in
:mod:`.checkpointing`): ``<out>/checkpoint/`` (model and optimizer state,
progress) is replaced atomically every ``checkpoint_every`` steps and at the
end; batches are drawn from a generator seeded by (seed, step), so a resumed
run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.sync_classifier import SyncClassifier, config_for_size, save_checkpoint
from .checkpointing import RUNTIME_FIELDS, TrainingFolder
from .clip_cache import ClipCache, quantise_start
from .loop import Budget, StepResult, loop_summary, step_rng, train_model
from .schedule import LRSchedule



@dataclass(frozen=True)
class SyncTrainConfig:
    size: str = "mini"
    num_clips: int = 9                 # K; the paper uses 21
    clip_spacing: float = 0.2
    temperature: float = 0.1
    batch_videos: int = 8
    steps: int = 2000
    lr: float = 2e-3                   # the paper: 2e-4 (batch 32 on 8 GPUs)
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    schedule: str = "cosine"           # "cosine" (to 5% of lr) or "constant" (the paper)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    threads: int = 0                   # torch threads; 0 = leave torch's default

    @classmethod
    def paper(cls, **kw) -> "SyncTrainConfig":
        """The paper's recipe (batch 32 = 4 per GPU x 8 GPUs; 40k steps in the release)."""
        base = dict(size="paper", num_clips=21, batch_videos=32, lr=2e-4, warmup_steps=100,
                    schedule="constant", steps=40000, checkpoint_every=500)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_schedule(cfg: SyncTrainConfig) -> LRSchedule:
    return LRSchedule(cfg.warmup_steps, cfg.schedule, floor=0.05, total_steps=cfg.steps)


def clips_that_fit(duration: float, cfg: SyncTrainConfig, clip_seconds: float) -> int:
    return int(math.floor((duration - clip_seconds) / cfg.clip_spacing + 1e-6)) + 1


def draw_batch(cache: ClipCache, eligible: np.ndarray, step: int, cfg: SyncTrainConfig):
    """Frames [B*K,T,3,H,W], mels [B*K,1,F,M] and validity mask [B,K] for one step."""
    rng = step_rng(cfg.seed, step)
    chosen = rng.choice(eligible, size=cfg.batch_videos, replace=len(eligible) < cfg.batch_videos)
    K = cfg.num_clips
    frames, mels, mask = [], [], torch.zeros(len(chosen), K, dtype=torch.bool)
    for b, i in enumerate(chosen):
        v = cache.load(int(i))
        k = min(K, clips_that_fit(v.duration, cfg, cache.cfg.clip_seconds))
        span = v.max_start() - cfg.clip_spacing * (k - 1)
        s0 = quantise_start(rng.uniform(0.0, max(0.0, span)), cache.cfg)
        starts = [round(s0 + j * cfg.clip_spacing, 6) for j in range(k)]
        starts += [starts[-1]] * (K - k)          # padding clips, masked out of the loss
        mask[b, :k] = True
        frames.append(torch.stack([v.clip_frames_uint8(s) for s in starts]))
        mels.append(v.clip_mels(starts))
    frames = torch.cat(frames).permute(0, 1, 4, 2, 3).float().div_(255.0)
    return frames, torch.cat(mels), mask


def contrastive_loss(logits: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric cross-entropy over [B, K, K] logits (audio rows, video columns), masked."""
    B, K, _ = logits.shape
    z = logits / temperature
    pair_ok = mask.unsqueeze(2) & mask.unsqueeze(1)
    z = z.masked_fill(~pair_ok, float("-inf"))
    target = torch.arange(K).expand(B, K)
    rows = mask.flatten()
    a2v = F.cross_entropy(z.flatten(0, 1)[rows], target.flatten()[rows])
    v2a = F.cross_entropy(z.transpose(1, 2).flatten(0, 1)[rows], target.flatten()[rows])
    return 0.5 * (a2v + v2a)


def step_loss(model: SyncClassifier, frames, mels, mask, cfg: SyncTrainConfig) -> tuple[torch.Tensor, float]:
    B, K = mask.shape
    a = model.encode_audio(mels)
    v = model.encode_video(frames)
    logits = torch.stack([model.pairwise(a[b * K:(b + 1) * K], v[b * K:(b + 1) * K]) for b in range(B)])
    loss = contrastive_loss(logits, mask, cfg.temperature)
    with torch.no_grad():  # audio -> video top-1 over the valid clips, for the progress bar
        acc = float((logits.masked_fill(~mask.unsqueeze(1), float("-inf")).argmax(2)
                     == torch.arange(K))[mask].float().mean())
    return loss, acc


def train_sync(cache: ClipCache, out_dir, cfg: SyncTrainConfig = SyncTrainConfig(), resume: bool = True,
               progress: bool = True, device: str = "cpu", stop_after: int | None = None) -> dict:
    """Train (or resume) into ``out_dir``; write ``sync-<size>.safetensors/.json``; return a summary.

    ``stop_after``: return after this many steps of this call (tests, time slicing);
    the state is checkpointed so the next call continues.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    durations = cache.durations()
    fits = np.array([clips_that_fit(d, cfg, cache.cfg.clip_seconds) for d in durations])
    eligible = np.nonzero(fits >= 2)[0]
    if len(eligible) == 0:
        raise ValueError(f"no video in {cache.cache_dir} is long enough for two clips "
                         f"{cfg.clip_spacing} s apart ({cache.cfg.clip_seconds + cfg.clip_spacing:.1f} s)")
    model = SyncClassifier(config_for_size(cfg.size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    header = {"videos": len(cache), "eligible": int(len(eligible)),
              "too_short": int(len(cache) - len(eligible)), "full_k": int((fits >= cfg.num_clips).sum()),
              "config": cfg.to_dict(), "model": model.config.to_dict(),
              "parameters": sum(p.numel() for p in model.parameters())}

    def one_step(step):
        frames, mels, mask = draw_batch(cache, eligible, step, cfg)
        loss, acc = step_loss(model, frames.to(device), mels.to(device), mask.to(device), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return StepResult(loss.item(), {"train_acc": acc})

    model.train()
    outcome = train_model(
        TrainingFolder(out), one_step, model=model, optimizer=opt, config=cfg.to_dict(), resume=resume,
        may_change=RUNTIME_FIELDS, budget=Budget(steps=cfg.steps, session_steps=stop_after), lr=cfg.lr,
        schedule=lr_schedule(cfg), header=header, log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
        device=device, progress=progress, desc=f"sync train ({cfg.size})",
        postfix=lambda rec: {"loss": f"{rec['loss']:.3f}", "acc": f"{rec['train_acc']:.2f}"})
    summary = {**loop_summary(outcome), "done": outcome.finished, "out": str(out)}
    if outcome.finished:
        model.eval()
        st, js = save_checkpoint(model, out / f"sync-{cfg.size}", metadata={
            "train_config": cfg.to_dict(), "steps": outcome.step, "train_seconds": round(outcome.elapsed_s, 2),
            "videos": len(cache), "cache": str(cache.cache_dir)})
        summary["checkpoint"] = str(st)
    return summary
