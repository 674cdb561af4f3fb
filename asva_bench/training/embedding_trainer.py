"""Contrastive training of the mini audio-image-text embedding model on a clip cache.

Each step draws ``videos_per_class`` videos of every class; from each, a
random protocol clip: one of its 12 frames (random, horizontally flipped
half of the time), its mel, and its class text. Loss: CLIP-style symmetric
InfoNCE with a learnable temperature on three pairs - image-audio (B x B),
image-text and audio-text (B x classes). Pairs of the same class count as
partial positives (targets: half on the item's own pair, half spread over
its class), so retrieval by class is what the space learns, while the own
pair stays the best match.

Resumable like the sync trainer (``state.pt``, ``loss_log.jsonl``, batches
seeded by (seed, step)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.mini_embedding import MiniEmbedding, MiniEmbeddingConfig, build_vocabulary, save_checkpoint
from .checkpointing import (StepClock, atomic_torch_save, run_logged_steps, same_recipe, training_summary,
                            truncate_log, warmup_cosine)
from .clip_cache import ClipCache, quantise_start


@dataclass(frozen=True)
class EmbeddingTrainConfig:
    videos_per_class: int = 4
    steps: int = 400
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    own_pair_weight: float = 0.5      # target mass on the item's own pair (the rest: its class)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    threads: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def draw_batch(cache: ClipCache, by_class: list[np.ndarray], step: int, cfg: EmbeddingTrainConfig):
    """images [B,3,H,W], mels [B,1,F,M], labels [B]."""
    rng = np.random.default_rng([cfg.seed, step])
    images, mels, labels = [], [], []
    for c, idx in enumerate(by_class):
        for i in rng.choice(idx, size=cfg.videos_per_class, replace=len(idx) < cfg.videos_per_class):
            v = cache.load(int(i))
            s = quantise_start(rng.uniform(0.0, max(0.0, v.max_start())), cache.cfg)
            k = int(rng.integers(cache.cfg.num_frames))
            img = v.frames[int(v.frame_indices(s)[k])].permute(2, 0, 1).float().div_(255.0)
            if rng.random() < 0.5:
                img = img.flip(-1)
            images.append(img)
            mels.append(v.clip_mel(s))
            labels.append(c)
    return torch.stack(images), torch.stack(mels), torch.tensor(labels)


def soft_targets(labels: torch.Tensor, own_weight: float) -> torch.Tensor:
    """[B, B] rows: ``own_weight`` on the diagonal, the rest spread over the same class."""
    same = (labels[:, None] == labels[None, :]).float()
    t = (1 - own_weight) * same / same.sum(1, keepdim=True)
    return t + own_weight * torch.eye(len(labels))


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def embedding_loss(model: MiniEmbedding, images, mels, labels, class_texts: list[str],
                   own_weight: float) -> tuple[torch.Tensor, dict]:
    img = F.normalize(model.image(model.preprocess_vision(images)), dim=-1)
    aud = F.normalize(model.audio(mels), dim=-1)
    ids, offsets = model.text.tokenize(class_texts)
    txt = F.normalize(model.text(ids, offsets), dim=-1)
    scale = model.logit_scale.clamp(max=4.6052).exp()    # at most 100, as CLIP
    t_pair = soft_targets(labels, own_weight)
    onehot = F.one_hot(labels, len(class_texts)).float()
    t_text = onehot.t() / onehot.t().sum(1, keepdim=True).clamp(min=1)  # class -> its items
    l_ia = scale * img @ aud.t()
    l_it = scale * img @ txt.t()
    l_at = scale * aud @ txt.t()
    loss_ia = 0.5 * (_soft_ce(l_ia, t_pair) + _soft_ce(l_ia.t(), t_pair))
    loss_it = 0.5 * (F.cross_entropy(l_it, labels) + _soft_ce(l_it.t(), t_text))
    loss_at = 0.5 * (F.cross_entropy(l_at, labels) + _soft_ce(l_at.t(), t_text))
    loss = (loss_ia + loss_it + loss_at) / 3
    with torch.no_grad():
        stats = {"ia": loss_ia.item(), "it": loss_it.item(), "at": loss_at.item(),
                 "acc_at": float((l_at.argmax(1) == labels).float().mean()),
                 "acc_it": float((l_it.argmax(1) == labels).float().mean()),
                 "acc_ai": float((labels[l_ia.argmax(0)] == labels).float().mean()),
                 "scale": scale.item()}
    return loss, stats


def train_embedding(cache: ClipCache, out_dir, cfg: EmbeddingTrainConfig = EmbeddingTrainConfig(),
                    model_config: MiniEmbeddingConfig | None = None, resume: bool = True, progress: bool = True,
                    stop_after: int | None = None) -> dict:
    """Train (or resume) into ``out_dir``; write ``mini-embedding.safetensors/.json`` at the end."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    class_texts = [cache.class_texts[c] for c in cache.classes]
    vocab = build_vocabulary(class_texts)
    mcfg = model_config or MiniEmbeddingConfig(vocabulary=vocab)
    if not mcfg.vocabulary:
        mcfg = dataclasses.replace(mcfg, vocabulary=vocab)
    model = MiniEmbedding(mcfg)
    labels = cache.labels()
    by_class = [np.nonzero(labels == c)[0] for c in range(len(cache.classes))]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.steps))
    state_path, log_path = out / "state.pt", out / "loss_log.jsonl"
    step, elapsed, cpu = 0, 0.0, 0.0   # wall and process-CPU seconds spent training
    if resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if not same_recipe(st.get("train_config"), cfg.to_dict()) or \
                not same_recipe(st.get("model_config"), mcfg.to_dict()):
            raise ValueError(f"{state_path} was written with a different config; use another --out or delete it")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, elapsed, cpu = int(st["step"]), float(st.get("elapsed", 0.0)), float(st.get("cpu", 0.0))
        truncate_log(log_path, step)
    elif log_path.exists():
        log_path.unlink()

    clock = StepClock(elapsed, cpu)

    def save_state(at_step):
        atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "step": at_step, "elapsed": clock.elapsed,
                           "cpu": clock.cpu, "train_config": cfg.to_dict(), "model_config": mcfg.to_dict()},
                          state_path)

    def one_step(_step):
        images, mels, lab = draw_batch(cache, by_class, _step, cfg)
        loss, stats = embedding_loss(model, images, mels, lab, class_texts, cfg.own_pair_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.item(), stats, sched.get_last_lr()[0]

    model.train()
    header = {"event": "start", "step": step, "videos": len(cache), "classes": cache.classes,
              "config": cfg.to_dict(), "model": mcfg.to_dict(),
              "parameters": sum(p.numel() for p in model.parameters())}
    step, losses = run_logged_steps(
        one_step, step=step, end=cfg.steps if stop_after is None else min(cfg.steps, step + stop_after),
        total=cfg.steps, clock=clock, log_path=log_path, header=header, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, save_state=save_state, desc="embedding train", progress=progress,
        postfix=lambda rec: {"loss": f"{rec['loss']:.3f}", "at": f"{rec['acc_at']:.2f}"})
    elapsed = clock.elapsed
    summary = training_summary(step, cfg.steps, clock, out, losses)
    if step >= cfg.steps:
        model.eval()
        st, _ = save_checkpoint(model, out / "mini-embedding", metadata={
            "train_config": cfg.to_dict(), "steps": step, "train_seconds": round(elapsed, 2),
            "videos": len(cache), "cache": str(cache.cache_dir), "classes": cache.classes})
        summary["checkpoint"] = str(st)
    return summary
