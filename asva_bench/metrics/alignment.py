"""IA and IT: semantic alignment of generated frames with the audio / class text."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClipMetric
from .registry import register_metric


def frame_cosines(frame_emb: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """[B, K, E] frame embeddings x [B, E] -> [B, K] cosine similarities."""
    return F.cosine_similarity(frame_emb.double(), other.double().unsqueeze(1), dim=-1)


class FrameAlignment(ClipMetric):
    """cos(frame k, one embedding per clip), mean over frames 2..12, x100; ``needs`` names the frames'
    kind, then the kind they are compared with."""
    scale = 100.0
    higher_is_better = True

    def update(self, frame_emb: torch.Tensor, other_emb: torch.Tensor, video_index) -> None:
        self._add(frame_cosines(frame_emb, other_emb).mean(1), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        frames, other = self.needs
        self.update(gen[frames], text if other == "text_embedding" else gen[other], video_index)


@register_metric
class IA(FrameAlignment):
    """Image-audio alignment: cosine of each generated frame 2-12 with its clip's audio in the
    embedding model's joint space, mean over frames and clips, x100."""
    name = "ia"
    label = "IA"
    order = 20
    long_name = "ia@frames2-12/cos-x100"
    needs = ("vision_embedding", "audio_embedding")


@register_metric
class IT(FrameAlignment):
    """Image-text alignment: cosine of each generated frame 2-12 with the embedding of its test
    video's class text, mean over frames and clips, x100."""
    name = "it"
    label = "IT"
    order = 30
    long_name = "it@frames2-12/cos-x100"
    needs = ("vision_embedding", "text_embedding")
