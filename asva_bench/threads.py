"""Worker threads beside torch's own: decoding ahead of the forwards, bootstrap replicates.

A thread that runs a torch op starts an OpenMP team of its own (as many threads
as the caller's setting), whose threads then spin on the cores the main
thread's forwards use. The pool's threads therefore run one torch thread each.
torch.set_num_threads in a thread also becomes the default of threads started
later, so the caller's count is set back when the pool closes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


@contextmanager
def single_torch_thread_pool(workers: int, name: str = "asva-worker"):
    """A ThreadPoolExecutor of ``workers`` (at least 1) threads, each on one torch thread; on exit
    it waits for the running work and drops what was queued."""
    own = torch.get_num_threads()
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name, initializer=torch.set_num_threads,
                              initargs=(1,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(own)   # the default a new thread starts with, as it was
