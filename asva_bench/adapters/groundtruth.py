"""The ground-truth 'model': returns the real clip, for the reference row."""

from __future__ import annotations

import torch

from .api import Adapter, ClipBatch


class GroundTruth(Adapter):
    name = "groundtruth"
    inputs = ("video",)
    first_frame = "generated"  # the real frame 1 is the input already
    description = "The ground-truth test clips (reference row of every table)."

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        return batch.video.clone()
