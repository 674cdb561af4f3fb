"""The learning-rate schedule every trainer uses: linear warm-up, then constant or cosine.

Each trainer's recipe is a set of parameters, not its own formula:

* sync classifier: warm-up, cosine to 5% over ``steps`` (mini) or constant (paper);
* mini embedding: warm-up, cosine to 5% over ``steps``;
* mini base: warm-up, constant;
* AVSyncD / I2VD: warm-up, cosine to 10% over ``steps`` or ``minutes`` of training
  time (whichever is further along), or constant (paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """Factor on the base learning rate at a step; ``warmup_steps`` 0 = none."""
    warmup_steps: int = 0
    schedule: str = "cosine"            # cosine | constant
    floor: float = 0.05                 # cosine ends at floor x the base rate
    total_steps: int | None = None      # the cosine spans warm-up end .. total_steps
    total_seconds: float | None = None  # ... or 0 .. total_seconds of training time

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "cosine" and not (self.total_steps or self.total_seconds):
            raise ValueError("a cosine schedule needs total_steps or total_seconds")

    def factor(self, step: int, seconds: float = 0.0) -> float:
        """The factor for optimizer step ``step`` (0-based) after ``seconds`` of training."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = []
        if self.total_steps:
            progress.append((step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.total_seconds:
            progress.append(seconds / self.total_seconds)
        t = min(1.0, max(progress))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


__all__ = ["LRSchedule", "SCHEDULES", "set_lr"]
