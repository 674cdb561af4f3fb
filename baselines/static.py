"""Static: the input frame repeated for every frame (paper Table 1)."""

from __future__ import annotations

import torch

from asva_bench.adapters.api import Adapter, ClipBatch


class Static(Adapter):
    name = "static"
    inputs = ("image",)
    batch_size = 32
    description = "The conditioning frame repeated 12 times."

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        T = batch.protocol.num_frames
        return batch.first_frame.unsqueeze(1).expand(-1, T, -1, -1, -1).clone()
