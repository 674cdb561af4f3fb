"""One `asva-bench run` per run folder: an advisory lock the operating system releases with its holder.

The lock is ``fcntl.flock`` on ``<out>/.asva-run.lock``: a second run on the
same ``--out`` is refused at once (naming the holder's pid and command) instead of
generating every clip a second time, and a killed run never leaves it stuck,
because the kernel drops a dead process's locks (the file itself may stay; it
holds only the last holder's facts).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".asva-run.lock"


class RunLockedError(RuntimeError):
    """Another process holds the run folder."""


@contextmanager
def run_lock(out, enabled: bool = True):
    """Hold the run folder ``out`` for the duration of the block (no-op when not ``enabled``)."""
    if not enabled:
        yield None
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(Path(path).read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            who = f"pid {holder.get('pid', '?')}" + (f", `{holder['command']}`" if holder.get("command") else "")
            raise RunLockedError(
                f"{out} is in use by another asva-bench run ({who}); wait for it to finish (rerun then to "
                "resume) or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "command": " ".join(["asva-bench"] + sys.argv[1:])[:500]}).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


__all__ = ["LOCK_NAME", "RunLockedError", "run_lock"]
