"""I2VD: AVSyncD's architecture and training without the audio path (image + text), docs/avsyncd.md.

Same frozen base, inflation, training recipe and sampler as AVSyncD (see
asva_bench.models.avsyncd.adapter); the checkpoint comes from
`asva-bench train i2vd`.  No guidance (text guidance is off in the paper).
"""

from __future__ import annotations

import torch

from asva_bench.adapters.api import AdapterError, ClipBatch
from asva_bench.models.avsyncd.adapter import AVSyncDFamily


class I2VD(AVSyncDFamily):
    name = "i2vd"
    inputs = ("image", "text")
    model_kind = "i2vd"
    description = "I2VD: AVSyncD without audio (inflated image diffusion conditioned on the first frame and text)"

    def __init__(self, steps: int | None = None, scheduler: str | None = None, strength: float | None = None,
                 conditioning: str | None = None, checkpoint: str | None = None, base: str | None = None,
                 dtype: str = "auto"):
        self._init_common(steps, scheduler, checkpoint, base, None, dtype, strength, conditioning)

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        if self.pipe is None:
            raise AdapterError("adapter 'i2vd': call setup(protocol, device) before generate()")
        return self._sample(batch, None, 1.0)
