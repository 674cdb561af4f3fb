"""Where asva-bench keeps files: one root, named by $ASVA_BENCH_HOME."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ASVA_BENCH_HOME"


def home() -> Path:
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "asva-bench").expanduser()
