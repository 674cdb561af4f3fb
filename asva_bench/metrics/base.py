"""Metric base classes (torchmetrics.Metric): states reduce across processes.

Two kinds: clip-level metrics keep one value per clip (mean = the metric,
per-clip values go to scores.jsonl); set-level metrics (FID, FVD) keep the
features of both sets. Both keep the video index of every row so confidence
intervals can resample videos (bootstrap.py).
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import numpy as np
import torch
from torchmetrics import Metric

from . import bootstrap
from .frechet import bootstrap_frechet, frechet_distance_from_features


#: The feature kinds the scorer can provide, what a metric may name in ``needs``. Per generated clip:
#: Inception frame features (also computed for the ground truth), I3D clip features (also ground
#: truth), the embedding model's frame and audio embeddings (the ground truth's first frame too),
#: the sync classifier's logit (also ground truth); per test video, the class text's embedding.
FEATURE_KINDS = ("image_features", "video_features", "vision_embedding", "audio_embedding",
                 "sync_logit", "text_embedding")


class AsvaMetric(Metric):
    """A metric of the suite; it describes itself, and every part of the harness reads that
    description (the scorer its ``needs``, results tables, the CLI and the board its ``label``,
    ``order`` and ``higher_is_better``, docs/metrics.md its ``help``). A subclass is registered with
    ``asva_bench.metrics.register_metric``, which checks these fields (docs/metrics.md)."""
    name: ClassVar[str] = ""          # registry key and results-file key, e.g. "relsync"
    label: ClassVar[str] = ""         # display name in tables and on the board, e.g. "RelSync"
    order: ClassVar[int]              # column position (the paper's Table 1: FID, IA, IT, FVD, AlignSync, RelSync)
    higher_is_better: ClassVar[bool]
    help: ClassVar[str] = ""          # one sentence: what it measures, under which protocol (the docstring)
    needs: ClassVar[tuple[str, ...]] = ()  # FEATURE_KINDS the scorer must provide
    long_name: ClassVar[str] = ""     # encodes the protocol, e.g. "ia@frames2-12/cos"
    scale: ClassVar[float] = 1.0      # paper reports x100 metrics multiplied by 100
    #: a primary metric (the sync metrics): the board ranks by the lowest ``board_rank`` among the
    #: metrics its entries have and plots primary metrics per class on run pages (None: neither)
    board_rank: ClassVar[int | None] = None
    full_state_update = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # the class's own docstring is its help text (one line), unless it sets ``help``
        if "help" not in cls.__dict__ and cls.__doc__:
            cls.help = " ".join(inspect.cleandoc(cls.__doc__).split("\n\n")[0].split())

    def summary(self, replicates: int = bootstrap.DEFAULT_REPLICATES) -> dict:
        raise NotImplementedError

    def update_from_features(self, gen: dict, gt: dict, text: torch.Tensor | None, video_index) -> None:
        """Update from the scorer's stacked features.

        gen: generated clips' features by kind (frames 2..T for per-frame kinds);
        gt: ground-truth features ("image_features", "video_features",
        "first_frame_embedding", "sync_logit"); text: class-text embeddings.
        """
        raise NotImplementedError


class ClipMetric(AsvaMetric):
    """Mean over clips of a per-clip value."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("videos", default=[], dist_reduce_fx="cat")

    def _add(self, values: torch.Tensor, video_index) -> None:
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        if not torch.isfinite(values).all():
            raise ValueError(f"{self.name}: non-finite per-clip values; a backbone produced NaN/inf")
        self.values.append(values)
        self.videos.append(torch.as_tensor(video_index, dtype=torch.long).flatten())

    def per_clip(self) -> np.ndarray:
        return (_cat(self.values) * self.scale).numpy()

    def video_index(self) -> np.ndarray:
        return _cat(self.videos).numpy()

    def compute(self) -> torch.Tensor:
        return _cat(self.values).mean() * self.scale

    def summary(self, replicates: int = bootstrap.DEFAULT_REPLICATES) -> dict:
        v, vid = self.per_clip(), self.video_index()
        lo, hi = bootstrap.bootstrap_mean(v, vid, replicates)
        return {"mean": float(v.mean()), "ci_low": lo, "ci_high": hi,
                "higher_is_better": bool(self.higher_is_better), "scale": self.scale,
                "n_clips": int(len(v)), "long_name": self.long_name}


class FrechetMetric(AsvaMetric):
    """Frechet distance between generated and ground-truth feature sets."""
    higher_is_better = False
    bootstrap_replicates: ClassVar[int] = 200  # each replicate is a full Frechet distance

    def __init__(self, **kw):
        super().__init__(**kw)
        for s in ("fake", "real", "fake_videos", "real_videos"):
            self.add_state(s, default=[], dist_reduce_fx="cat")

    def update(self, fake: torch.Tensor, real: torch.Tensor, fake_videos, real_videos) -> None:
        self.fake.append(torch.as_tensor(fake, dtype=torch.float64).flatten(1))
        self.real.append(torch.as_tensor(real, dtype=torch.float64).flatten(1))
        self.fake_videos.append(torch.as_tensor(fake_videos, dtype=torch.long).flatten())
        self.real_videos.append(torch.as_tensor(real_videos, dtype=torch.long).flatten())

    def update_from_features(self, gen, gt, text, video_index):
        """Rows of the one feature kind in ``needs``: one per clip ([B, D]) or one per frame ([B, K, D],
        each frame's row keeps its clip's video)."""
        (kind,) = self.needs
        fake, real = gen[kind], gt[kind]
        vid = torch.as_tensor(video_index)
        if fake.dim() == 3:
            vid = vid.repeat_interleave(fake.shape[1])
        self.update(fake.reshape(-1, fake.shape[-1]), real.reshape(-1, real.shape[-1]), vid, vid)

    def compute(self) -> torch.Tensor:
        return torch.tensor(frechet_distance_from_features(_cat(self.fake).numpy(), _cat(self.real).numpy()),
                            dtype=torch.float64)

    def summary(self, replicates: int | None = None, device: str = "cpu", threads: int = 1) -> dict:
        """Value and percentile interval; every replicate is an exact Frechet distance of the drawn
        videos' rows (frechet.bootstrap_frechet, ``threads`` replicates at once; on a CUDA ``device``
        in float64 there)."""
        fake, real = _cat(self.fake).numpy(), _cat(self.real).numpy()
        fv, rv = _cat(self.fake_videos).numpy(), _cat(self.real_videos).numpy()
        value = frechet_distance_from_features(fake, real)
        # resample videos; a drawn video contributes its rows to both sets
        videos = np.unique(np.concatenate([fv, rv]))
        n = replicates or self.bootstrap_replicates
        counts = bootstrap.draw_counts(len(videos), n)
        lo, hi = bootstrap.percentile_ci(bootstrap_frechet(
            fake, np.searchsorted(videos, fv), real, np.searchsorted(videos, rv), counts, device=device,
            threads=threads))
        return {"mean": value, "ci_low": lo, "ci_high": hi, "higher_is_better": False,
                "scale": self.scale, "n_rows": int(len(fv)), "n_videos": int(len(videos)),
                "long_name": self.long_name}


def _cat(xs) -> torch.Tensor:
    if isinstance(xs, torch.Tensor):
        return xs.cpu()
    if not xs:
        raise ValueError("metric has no data: update() was never called")
    return torch.cat([x.cpu() for x in xs])
