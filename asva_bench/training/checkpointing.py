"""One training-folder layout for every trainer, written so a killed run never leaves half a state.

    <out>/train_config.json   the recipe; on resume every setting that changes the result must match
    <out>/loss_log.jsonl      {"event": "start", "step", ...} at each (re)start, then {"step", "loss",
                              "lr", ..., "elapsed_s", "steps_per_s"} records and hook records
                              ({"step", "probe": {...}}); cut back to the checkpoint's step on resume
    <out>/checkpoint/         the resumable state, replaced as a whole (filled in a temporary sibling
                              folder, then renamed): ``progress.json`` (step, training seconds, last
                              loss) and the trainer's own files (weights, optimizer state)

What a trainer exports at the end (the shipped weights, a bundle) sits next to these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable


CONFIG_FILE = "train_config.json"
LOG_FILE = "loss_log.jsonl"
CHECKPOINT_DIR = "checkpoint"
PROGRESS_FILE = "progress.json"
#: Config fields of the evaluator trainers that do not change the result; a resumed run may change them.
RUNTIME_FIELDS = ("threads", "log_every", "checkpoint_every")


class TrainingError(ValueError):
    """A training folder that cannot be resumed as asked, or a run that went wrong."""


def read_log(log) -> list[dict]:
    out = []
    for ln in Path(log).read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass  # a line cut by a kill
    return out


def truncate_log(log: Path, step: int) -> None:
    """Drop loss-log records written after ``step`` (they belong to work the resumed run redoes)."""
    log = Path(log)
    if not log.is_file():
        return
    from ..fsutil import atomic_write_text
    keep = [json.dumps(rec) for rec in read_log(log) if rec.get("step", 0) <= step]
    atomic_write_text(log, "".join(ln + "\n" for ln in keep))


def config_mismatch(saved: dict, now: dict, may_change=()) -> list[str]:
    """``"key: saved X, now Y"`` for every setting outside ``may_change`` that differs."""
    def norm(d):  # tuples come back from JSON as lists
        return json.loads(json.dumps(d or {}, sort_keys=True, default=str))
    saved, now = norm(saved), norm(now)
    return [f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(saved) | set(now))
            if k not in may_change and saved.get(k) != now.get(k)]


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, training seconds (wall, process CPU), last loss."""
    step: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    last_loss: float | None = None


class LossLog:
    """Appends JSON records to the loss log, flushed at once (a killed run keeps what it logged)."""

    def __init__(self, path):
        self.path = Path(path)
        self._f = open(self.path, "a")

    def write(self, rec: dict) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TrainingFolder:
    """The folder of one training run (layout in the module doc).

    Under several processes pass ``writer=False`` on all but one: they read the
    checkpoint but never write the folder.
    """

    def __init__(self, out, writer: bool = True):
        self.out = Path(out)
        self.writer = writer
        self.checkpoint = self.out / CHECKPOINT_DIR
        self.log_path = self.out / LOG_FILE
        self.config_path = self.out / CONFIG_FILE

    def saved_progress(self, legacy: Callable[[Path], Progress | None] | None = None) -> Progress | None:
        """The checkpoint's progress; ``legacy(checkpoint)`` reads folders written before progress.json."""
        f = self.checkpoint / PROGRESS_FILE
        if f.is_file():
            return Progress(**json.loads(f.read_text()))
        if legacy is not None and self.checkpoint.is_dir():
            return legacy(self.checkpoint)
        return None

    def start(self, config: dict, *, resume: bool, may_change=(), refuse_existing: bool = False,
              legacy: Callable[[Path], Progress | None] | None = None) -> Progress | None:
        """Open the folder for training with ``config``; returns the progress to resume from, or None.

        ``resume`` and a checkpoint present: the saved config must match ``config``
        outside ``may_change`` (else TrainingError naming the differences), and the log
        is cut back to the checkpoint's step.  Otherwise a fresh start (the log is
        cleared; ``refuse_existing``: a checkpoint present without ``resume`` is an error).
        The config is (re)written either way: budgets may grow between calls.
        """
        saved = self.saved_progress(legacy)
        if saved is not None and not resume and refuse_existing:
            raise TrainingError(f"{self.out} already holds a training run ({CHECKPOINT_DIR}/); pass --resume to "
                                "continue it, or choose another --out")
        if saved is not None and resume:
            if self.config_path.is_file():
                diffs = config_mismatch(json.loads(self.config_path.read_text()), config, may_change)
                if diffs:
                    raise TrainingError(f"{self.config_path}: cannot resume with a different training config ("
                                        + "; ".join(diffs) + "). Use the saved settings, or another --out to "
                                        "start over")
            if self.writer:
                truncate_log(self.log_path, saved.step)
        else:
            saved = None
            if self.writer and self.log_path.exists():
                self.log_path.unlink()
        if self.writer:
            from ..fsutil import atomic_write_text
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        return saved

    def open_log(self, header: dict | None = None) -> LossLog | None:
        """The log to append to (None for a process that does not write); ``header`` is logged as
        ``{"event": "start", **header}``."""
        if not self.writer:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        log = LossLog(self.log_path)
        if header is not None:
            log.write({"event": "start", **header})
        return log

    def save(self, progress: Progress, write: Callable[[Path], None]) -> Path:
        """Replace ``checkpoint/`` atomically with ``write(tmp_folder)``'s files plus progress.json."""
        from ..fsutil import atomic_folder, atomic_write_text
        with atomic_folder(self.checkpoint) as tmp:
            write(tmp)
            atomic_write_text(tmp / PROGRESS_FILE, json.dumps(asdict(progress), indent=1) + "\n")
        return self.checkpoint


__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "LOG_FILE", "PROGRESS_FILE", "RUNTIME_FIELDS", "LossLog", "Progress", "TrainingError",
           "TrainingFolder", "config_mismatch", "read_log", "truncate_log"]
