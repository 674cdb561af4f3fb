"""The step loop every trainer runs: budgets, logging, checkpoints, signals, several processes.

A trainer hands :func:`run_steps` a function ``one_step(step) -> StepResult``
that draws the batch of ``step``, computes the loss and updates the model.
For an exact resume, everything random in a step comes from generators
seeded by (seed, step) (:func:`step_generator`, :func:`step_rng`), never
from a generator carried over from earlier steps: a resumed run then draws
what an uninterrupted one draws, whatever device or process count it
resumes on.

The loop, in this order after every step: times it (:class:`StepClock`,
cumulative over resumes), decides whether to stop (budget reached, this
call's share spent, SIGTERM / Ctrl-C; with several processes all agree, by
an all-reduce, so every process stops on the same step), appends a log
record every ``log_every`` steps and at the step it stops on, runs the
hooks (e.g. a probe) every ``hook.every`` steps and when the budget is
reached, and checkpoints every ``checkpoint_every`` steps and/or
``checkpoint_minutes`` and once more when it stops.  A signal never cuts a
step: the step finishes, the checkpoint is written, the loop returns with
``interrupted`` set (a second Ctrl-C raises KeyboardInterrupt).
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .checkpointing import LossLog, Progress, TrainingError, TrainingFolder
from ..fsutil import atomic_torch_save
from .schedule import LRSchedule, set_lr


# --------------------------------------------------------------------------
# Per-step randomness
# --------------------------------------------------------------------------
def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """One integer seed per (run seed, step, stream); streams keep a step's draws apart
    (batches, noise, other processes)."""
    return (int(seed) * 1_000_003 + int(step) * 97 + int(stream)) % (2**63 - 1)


def step_generator(seed: int, step: int, stream: int = 0, device="cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(step_seed(seed, step, stream))


def step_rng(seed: int, step: int) -> np.random.Generator:
    """numpy generator of (seed, step), for batch plans drawn on the host."""
    return np.random.default_rng([int(seed), int(step)])


# --------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------
class StepClock:
    """Wall and process-CPU seconds spent in training steps, cumulative over resumes."""

    def __init__(self, elapsed: float = 0.0, cpu: float = 0.0):
        self.elapsed, self.cpu = float(elapsed), float(cpu)
        self.restart()

    def restart(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def tick(self) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.elapsed += t - self._t
        self.cpu += c - self._c
        self._t, self._c = t, c


@dataclass(frozen=True)
class Budget:
    """When to stop. ``steps`` / ``seconds``: the run's totals (resumed steps and training
    seconds included); ``session_steps`` / ``session_seconds``: at most this much in this
    call (the checkpoint lets the next call continue)."""
    steps: int | None = None
    seconds: float | None = None
    session_steps: int | None = None
    session_seconds: float | None = None

    def finished(self, step: int, elapsed: float) -> bool:
        return (self.steps is not None and step >= self.steps) or \
            (self.seconds is not None and elapsed >= self.seconds)

    def session_spent(self, steps_done: int, seconds_spent: float) -> bool:
        return (self.session_steps is not None and steps_done >= self.session_steps) or \
            (self.session_seconds is not None and seconds_spent >= self.session_seconds)


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------
@dataclass
class StepResult:
    """What one step reports: its loss (a float, or a 0-d tensor read only when logged, so a
    GPU step need not wait for the host) and extra log fields (floats or 0-d tensors)."""
    loss: float | torch.Tensor
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hook:
    """``fn(step) -> dict | None`` every ``every`` steps and when the budget is reached;
    a dict is logged as ``{"step": step, name: dict}``."""
    name: str
    every: int
    fn: Callable[[int], dict | None]


@dataclass
class LoopOutcome:
    step: int
    start_step: int
    finished: bool            # the run's budget is reached
    interrupted: bool         # stopped by SIGTERM / SIGINT
    last_loss: float | None   # the last step's loss
    records: list             # the loss records this call logged
    hook_records: list        # the hook records this call logged
    elapsed_s: float          # training seconds, resumed ones included
    cpu_s: float
    session_s: float          # training seconds of this call

    @property
    def steps_done(self) -> int:
        return self.step - self.start_step


def _as_float(x) -> float:
    return float(x.detach()) if torch.is_tensor(x) else float(x)


def _mean(window: list) -> float:
    if any(torch.is_tensor(x) for x in window):
        return float(torch.stack([torch.as_tensor(x).detach().float().reshape(()) for x in window]).mean())
    return float(np.mean(window))


@contextmanager
def _stop_flag():
    """SIGTERM / SIGINT set a flag (the loop finishes the step and saves); a second SIGINT
    raises KeyboardInterrupt.  Only the main thread can install handlers; elsewhere the
    flag simply never rises."""
    flag = {"signal": None}

    def handler(signum, frame):
        if flag["signal"] == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {}
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            old[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _agree_any(flag: bool, world: int, device) -> bool:
    """True on every process if it is true on one (stop together: budgets, signals)."""
    if world <= 1:
        return flag
    import torch.distributed as dist
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def run_steps(one_step: Callable[[int], StepResult], *, start: Progress, budget: Budget,
              log: LossLog | None = None, save: Callable[[Progress], None] | None = None,
              log_every: int = 10, checkpoint_every: int | None = None, checkpoint_minutes: float | None = None,
              optimizer=None, lr: float | None = None, schedule: LRSchedule | None = None,
              hooks: Sequence[Hook] = (), world: int = 1, device=None, progress: bool = True,
              desc: str = "train", postfix: Callable[[dict], dict] | None = None) -> LoopOutcome:
    """Run ``one_step`` from ``start.step`` until ``budget`` stops it; see the module doc.

    ``optimizer`` + ``lr`` + ``schedule``: the loop sets the rate of every step
    (``lr * schedule.factor(step, training seconds)``) before calling ``one_step``.
    ``log`` / ``save`` / ``hooks``: None or empty on processes that write nothing.
    """
    from tqdm.auto import tqdm
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    step = start_step = int(start.step)
    clock = StepClock(start.elapsed_s, start.cpu_s)
    start_elapsed = clock.elapsed
    postfix = postfix or (lambda rec: {"loss": f"{rec['loss']:.4f}"})
    window, records, hook_records = [], [], []
    last_loss = start.last_loss
    lr_now = None
    rate_mark = (step, clock.elapsed)
    last_save = time.perf_counter()

    def progress_now() -> Progress:
        return Progress(step=step, elapsed_s=clock.elapsed, cpu_s=clock.cpu,
                        last_loss=None if last_loss is None else _as_float(last_loss))

    def stop_now(flag) -> bool:
        local = budget.finished(step, clock.elapsed) or flag["signal"] is not None or \
            budget.session_spent(step - start_step, clock.elapsed - start_elapsed)
        return _agree_any(local, world, device)

    def write_record(stats: dict) -> None:
        nonlocal window, rate_mark
        mean = _mean(window)
        if not math.isfinite(mean):
            raise TrainingError(f"the mean loss became {mean} before step {step}; lower the learning rate "
                                f"(now {lr}) and resume from the last checkpoint")
        n, secs = step - rate_mark[0], clock.elapsed - rate_mark[1]
        rec = {"step": step, "loss": mean,
               "lr": lr_now if lr_now is not None else (optimizer.param_groups[0]["lr"] if optimizer else None),
               **{k: _as_float(v) if torch.is_tensor(v) else v for k, v in stats.items()},
               "elapsed_s": round(clock.elapsed, 2), "steps_per_s": round(n / max(secs, 1e-9), 3)}
        records.append(rec)
        if log is not None:
            log.write(rec)
        bar.set_postfix(**postfix(rec))
        window, rate_mark = [], (step, clock.elapsed)

    bar = tqdm(total=budget.steps, initial=min(step, budget.steps or step), desc=desc, unit="step",
               disable=not progress, dynamic_ncols=True)
    try:
        with _stop_flag() as flag:
            clock.restart()
            stopping = stop_now(flag)
            while not stopping:
                if schedule is not None and optimizer is not None:
                    lr_now = lr * schedule.factor(step, clock.elapsed)
                    set_lr(optimizer, lr_now)
                res = one_step(step)
                step += 1
                last_loss = res.loss
                if not torch.is_tensor(res.loss) and not math.isfinite(res.loss):
                    raise TrainingError(f"the loss became {res.loss} at step {step - 1}; lower the learning "
                                        f"rate (now {lr}) and resume from the last checkpoint")
                window.append(res.loss)
                clock.tick()
                stopping = stop_now(flag)
                if step % log_every == 0 or stopping:
                    write_record(res.stats)
                    clock.tick()  # reading a GPU loss waits for the step's work: training time
                bar.update(1)
                finished = budget.finished(step, clock.elapsed)
                for h in hooks:
                    if h.every and (step % h.every == 0 or finished):
                        out = h.fn(step)
                        if out is not None:
                            rec = {"step": step, h.name: out}
                            hook_records.append(rec)
                            if log is not None:
                                log.write(rec)
                due = (checkpoint_every and step % checkpoint_every == 0) or \
                    (checkpoint_minutes is not None and time.perf_counter() - last_save >= checkpoint_minutes * 60)
                if save is not None and due and not stopping:
                    save(progress_now())
                    last_save = time.perf_counter()
                clock.restart()  # hooks and checkpoints are not training time
            if save is not None:
                save(progress_now())
            interrupted = flag["signal"] is not None
    finally:
        bar.close()
    return LoopOutcome(step=step, start_step=start_step, finished=budget.finished(step, clock.elapsed),
                       interrupted=interrupted, last_loss=None if last_loss is None else _as_float(last_loss),
                       records=records, hook_records=hook_records, elapsed_s=clock.elapsed, cpu_s=clock.cpu,
                       session_s=clock.elapsed - start_elapsed)


def loop_summary(outcome: LoopOutcome) -> dict:
    """The fields every trainer's summary shares."""
    return {"step": outcome.step, "finished": outcome.finished, "interrupted": outcome.interrupted,
            "last_loss": outcome.last_loss, "elapsed_s": round(outcome.elapsed_s, 2),
            "cpu_s": round(outcome.cpu_s, 2),
            "steps_per_s": round(outcome.steps_done / max(outcome.session_s, 1e-9), 3)}


MODEL_STATE_FILE = "state.pt"


def train_model(folder: TrainingFolder, one_step: Callable[[int], StepResult], *, model, optimizer, config: dict,
                resume: bool, may_change=(), budget: Budget, lr: float, schedule: LRSchedule, header: dict,
                log_every: int, checkpoint_every: int, device="cpu", progress: bool = True, desc: str = "train",
                postfix=None) -> LoopOutcome:
    """:func:`run_steps` for a model trained whole: its checkpoint is ``state.pt`` (model and
    optimizer state) in ``folder``'s checkpoint; resumed when ``resume`` and one is there."""
    start = folder.start(config, resume=resume, may_change=may_change)
    if start is not None:
        st = torch.load(folder.checkpoint / MODEL_STATE_FILE, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])

    def write(tmp):
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp / MODEL_STATE_FILE)

    start = start or Progress()
    with folder.open_log({"step": start.step, **header}) as log:
        return run_steps(one_step, start=start, budget=budget, log=log, save=lambda p: folder.save(p, write),
                         log_every=log_every, checkpoint_every=checkpoint_every, optimizer=optimizer, lr=lr,
                         schedule=schedule, device=device, progress=progress, desc=desc, postfix=postfix)


__all__ = ["train_model", "Budget", "Hook", "LoopOutcome", "StepClock", "StepResult", "loop_summary", "run_steps",
           "step_generator", "step_rng", "step_seed"]

