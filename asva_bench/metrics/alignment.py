"""IA and IT: semantic alignment of generated frames with the audio / class text."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClipMetric


def frame_cosines(frame_emb: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """[B, K, E] frame embeddings x [B, E] -> [B, K] cosine similarities."""
    return F.cosine_similarity(frame_emb.double(), other.double().unsqueeze(1), dim=-1)


class IA(ClipMetric):
    """Image-audio alignment: cos(frame k, clip audio), mean over frames 2..12, x100."""
    name = "ia"
    long_name = "ia@frames2-12/cos-x100"
    scale = 100.0
    higher_is_better = True
    needs = ("vision_embedding", "audio_embedding")

    def update(self, frame_emb: torch.Tensor, audio_emb: torch.Tensor, video_index) -> None:
        self._add(frame_cosines(frame_emb, audio_emb).mean(1), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["vision_embedding"], gen["audio_embedding"], video_index)


class IT(ClipMetric):
    """Image-text alignment: cos(frame k, class text), mean over frames 2..12, x100."""
    name = "it"
    long_name = "it@frames2-12/cos-x100"
    scale = 100.0
    higher_is_better = True
    needs = ("vision_embedding", "text_embedding")

    def update(self, frame_emb: torch.Tensor, text_emb: torch.Tensor, video_index) -> None:
        self._add(frame_cosines(frame_emb, text_emb).mean(1), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["vision_embedding"], text, video_index)
