"""FID and FVD: Frechet distances of per-frame and per-clip features."""

from __future__ import annotations

import torch

from .base import FrechetMetric


class FID(FrechetMetric):
    """Frame-level FID over frames 2..12 of every clip (frame 1 is the input)."""
    name = "fid"
    long_name = "fid@frames2-12"
    needs = ("image_features",)

    def update_from_features(self, gen, gt, text, video_index):
        fake, real = gen["image_features"], gt["image_features"]       # [B, T-1, D]
        per_clip = fake.shape[1]
        vid = torch.as_tensor(video_index).repeat_interleave(per_clip)
        self.update(fake.reshape(-1, fake.shape[-1]), real.reshape(-1, real.shape[-1]), vid, vid)


class FVD(FrechetMetric):
    """Clip-level FVD over all 12 frames (conditioning frame included)."""
    name = "fvd"
    long_name = "fvd@frames1-12"
    needs = ("video_features",)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["video_features"], gt["video_features"], video_index, video_index)
