"""Contrastive training of the mini audio-image-text embedding model on a clip cache.

Each step draws ``videos_per_class`` videos of every class; from each, a
random protocol clip: one of its 12 frames (random, horizontally flipped
half of the time), its mel, and its class text. Loss: CLIP-style symmetric
InfoNCE with a learnable temperature on three pairs - image-audio (B x B),
image-text and audio-text (B x classes). Pairs of the same class count as
partial positives (targets: half on the item's own pair, half spread over
its class), so retrieval by class is what the space learns, while the own
pair stays the best match.

Resumable like the sync trainer (the shared loop of :mod:`.loop`; batches
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
from .checkpointing import RUNTIME_FIELDS, TrainingFolder
from .clip_cache import ClipCache, quantise_start
from .loop import Budget, StepResult, loop_summary, step_rng, train_model
from .schedule import LRSchedule


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
    rng = step_rng(cfg.seed, step)
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

    def one_step(step):
        images, mels, lab = draw_batch(cache, by_class, step, cfg)
        loss, stats = embedding_loss(model, images, mels, lab, class_texts, cfg.own_pair_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return StepResult(loss.item(), stats)

    model.train()
    header = {"videos": len(cache), "classes": cache.classes, "config": cfg.to_dict(), "model": mcfg.to_dict(),
              "parameters": sum(p.numel() for p in model.parameters())}
    outcome = train_model(
        TrainingFolder(out), one_step, model=model, optimizer=opt,
        config={**cfg.to_dict(), "model_config": mcfg.to_dict()}, resume=resume, may_change=RUNTIME_FIELDS,
        budget=Budget(steps=cfg.steps, session_steps=stop_after), lr=cfg.lr,
        schedule=LRSchedule(cfg.warmup_steps, "cosine", floor=0.05, total_steps=cfg.steps), header=header,
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, progress=progress, desc="embedding train",
        postfix=lambda rec: {"loss": f"{rec['loss']:.3f}", "at": f"{rec['acc_at']:.2f}"})
    summary = {**loop_summary(outcome), "done": outcome.finished, "out": str(out)}
    if outcome.finished:
        model.eval()
        st, _ = save_checkpoint(model, out / "mini-embedding", metadata={
            "train_config": cfg.to_dict(), "steps": outcome.step, "train_seconds": round(outcome.elapsed_s, 2),
            "videos": len(cache), "cache": str(cache.cache_dir), "classes": cache.classes})
        summary["checkpoint"] = str(st)
    return summary
