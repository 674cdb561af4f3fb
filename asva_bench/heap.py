"""The process heap, tuned for batched CPU forwards.

glibc hands every allocation above its mmap threshold (128 KiB at start, raised
only when such a block is freed) fresh pages from the kernel, and returns freed
memory at the top of the heap past 128 KiB. A batched forward allocates and frees
the same large activations every batch, so each batch page-faults them in again:
measured on the 450-clip mini scoring run, 386,000 page faults a pass of the
backbones, and none with the tuning (benchmarks/bench_scoring.py; docs/protocol.md,
"Scoring speed").

``keep_freed_memory`` raises both thresholds once per process: blocks up to
32 MiB come from the heap and are reused, and up to 1 GiB of freed memory stays
mapped. The numbers computed do not change; the resident size can stay up to the
peak of the run. The `asva-bench` command calls it at start; set
ASVA_BENCH_NO_HEAP_TUNING=1 to leave the allocator as it is. Not glibc (macOS, musl):
nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from .fsutil import env_flag

NO_HEAP_TUNING_ENV = "ASVA_BENCH_NO_HEAP_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3    # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20       # the largest value glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator as above (once); True when it is in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if env_flag(NO_HEAP_TUNING_ENV):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
