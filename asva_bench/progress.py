"""When long jobs show progress bars.

Bars (tqdm) write to stderr, so they stay on with ``--json``, whose one JSON
object goes to stdout.  ``TQDM_DISABLE=1`` (tqdm's own switch) or
``ASVA_BENCH_NO_PROGRESS=1`` turns them off, e.g. for log files.
"""

from __future__ import annotations

import os


def show_progress() -> bool:
    return not any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes")
                   for v in ("ASVA_BENCH_NO_PROGRESS", "TQDM_DISABLE"))
