"""Resumable-training plumbing shared by the trainers: atomic state files and the loss log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary sibling, renamed on success (a killed run never leaves half a file)."""
    from ..avio import atomic_path
    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


def truncate_log(log: Path, step: int) -> None:
    """Drop loss-log records written after ``step`` (they belong to work the resumed run redoes)."""
    log = Path(log)
    if not log.is_file():
        return
    from ..avio import atomic_write_text
    keep = []
    for ln in log.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            continue  # a line cut by a kill
        if rec.get("step", 0) <= step:
            keep.append(ln)
    atomic_write_text(log, "".join(ln + "\n" for ln in keep))


def read_log(log) -> list[dict]:
    out = []
    for ln in Path(log).read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


def warmup_cosine(step: int, warmup: int, total: int, schedule: str = "cosine", floor: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up, then constant or cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


#: Training-config fields that do not change the result; a resumed run may change them.
RUNTIME_FIELDS = ("threads", "log_every", "checkpoint_every")


def same_recipe(saved: dict | None, now: dict) -> bool:
    """Whether a saved training config and the current one train the same model."""
    def norm(d):  # tuples come back as lists
        return {k: v for k, v in json.loads(json.dumps(d or {})).items() if k not in RUNTIME_FIELDS}
    return norm(saved) == norm(now)


class StepClock:
    """Wall and process-CPU seconds spent in training steps, cumulative over resumes."""

    def __init__(self, elapsed: float = 0.0, cpu: float = 0.0):
        import time
        self._time = time
        self.elapsed, self.cpu = float(elapsed), float(cpu)
        self.restart()

    def restart(self) -> None:
        self._t, self._c = self._time.perf_counter(), self._time.process_time()

    def tick(self) -> None:
        t, c = self._time.perf_counter(), self._time.process_time()
        self.elapsed += t - self._t
        self.cpu += c - self._c
        self._t, self._c = t, c


def run_logged_steps(one_step, *, step: int, end: int, total: int, clock: StepClock, log_path, header: dict,
                     log_every: int, checkpoint_every: int, save_state, desc: str, progress: bool,
                     postfix=lambda rec: {"loss": f"{rec['loss']:.3f}"}) -> tuple[int, list[float]]:
    """The evaluator trainers' step loop: run ``one_step(step) -> (loss, stats, lr)`` until
    ``end``; every ``log_every`` steps append {"step", "loss" (mean since the last record),
    **stats, "lr", "elapsed_s"} to the log; call ``save_state(step)`` every ``checkpoint_every``
    steps and at the end. Returns the last step and the losses of this call."""
    import numpy as np
    from tqdm.auto import tqdm
    losses: list[float] = []
    with open(log_path, "a") as log:
        log.write(json.dumps(header) + "\n")
        bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not progress)
        clock.restart()
        while step < end:
            loss, stats, lr = one_step(step)
            step += 1
            losses.append(loss)
            clock.tick()
            if step % log_every == 0 or step == end:
                rec = {"step": step, "loss": float(np.mean(losses[-log_every:])), **stats,
                       "lr": lr, "elapsed_s": round(clock.elapsed, 2)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.set_postfix(**postfix(rec))
            if step % checkpoint_every == 0 or step == end:
                save_state(step)
            bar.update(1)
        bar.close()
    return step, losses


def training_summary(step: int, steps: int, clock: StepClock, out, losses: list[float]) -> dict:
    return {"step": step, "done": step >= steps, "elapsed_s": round(clock.elapsed, 2),
            "cpu_s": round(clock.cpu, 2), "out": str(out), "last_loss": losses[-1] if losses else None}
