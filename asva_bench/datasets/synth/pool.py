"""Running build jobs: in this process, or in spawned worker processes with one thread each."""

from __future__ import annotations

import os
from typing import Callable, Sequence


def init_worker() -> None:
    # one thread per worker: the parallelism is across clips
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:
        pass


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_jobs(fn: Callable, jobs: Sequence, *, desc: str, total: int | None = None, workers: int | None = None,
             progress: bool = True) -> None:
    """Call ``fn`` on every job, with a progress bar of ``total`` videos (default: the jobs; the
    difference counts as done already). ``workers``: processes (default: all cores, at most one
    per job); with 1 the jobs run here, in order."""
    total = len(jobs) if total is None else total
    workers = min(default_workers() if workers is None else max(1, int(workers)), max(1, len(jobs)))
    from tqdm.auto import tqdm
    with tqdm(total=total, initial=total - len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                fn(job)
                bar.update(1)
        else:
            import multiprocessing as mp
            # spawn: safe whatever threads (torch, OpenMP) the parent already started
            with mp.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
                for _ in pool.imap_unordered(fn, jobs, chunksize=2):
                    bar.update(1)
