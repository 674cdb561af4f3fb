"""The registry entry of ``synth``: its reader, its default root, and building on first load.

Imports no numpy and no renderer: `asva-bench datasets` and registry look-ups read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...protocol import PAPER
from ..base import DatasetError, DatasetSpec, Manifest
from ..real import read_split_files
from .classes import CLASS_TEXTS
from .constants import DEFAULT_ROOT, ENV_VAR, MARKER
from .layout import default_root, read_marker


def read_synth(root: Path, spec: DatasetSpec) -> Manifest:
    """AVSync15's split-file layout, accepted only once ``synth.json`` marks the build complete."""
    root = Path(root)
    if read_marker(root) is None:
        raise DatasetError(
            f"dataset '{spec.name}': {root} holds no complete build ({MARKER} is missing: the build "
            f"was interrupted or never run). Run `asva-bench datasets make synth --root {root}` "
            f"(it resumes and keeps finished videos).")
    return read_split_files(root, spec)


class SynthSpec(DatasetSpec):
    """``synth`` builds itself: loading from the default root builds the set there first."""

    def resolve_default(self) -> Path:
        """$ASVA_SYNTH_ROOT or $ASVA_BENCH_HOME/datasets/synth (need not exist yet)."""
        return default_root()

    def resolve_root(self, root=None) -> Path:
        # the default follows $ASVA_BENCH_HOME at call time, not at import
        return super().resolve_root(root if root is not None or os.environ.get(self.env_var) else default_root())

    def expectations(self, root) -> tuple[dict, int | None]:
        """A synth build is checked against what its own build record says it made."""
        marker = read_marker(root) or {}
        counts = marker.get("counts")
        if not counts:
            return super().expectations(root)
        totals = {split: sum(per_class.values()) if isinstance(per_class, dict) else per_class
                  for split, per_class in counts.items()}
        return totals, len(marker.get("classes", [])) or self.expected_classes

    def load(self, root=None) -> Manifest:
        if root is None:
            from .build import ensure_synth
            ensure_synth()  # builds the default root when it holds no complete build
        return super().load(root)


SYNTH = SynthSpec(
    name="synth",
    description="Synthetic synchronized clips: 15 procedural classes echoing AVSync15, "
                "1350 train / 150 test by default (built on demand)",
    reader=read_synth,
    layout=("  <root>/train.txt, <root>/test.txt   one '<class_folder>/<file>.mp4' per line\n"
            "  <root>/videos/<class_folder>/<file>.mp4\n"
            "  <root>/events/<class_folder>/<file>.json   event times per video\n"
            "  <root>/synth.json                          build record (present = complete)"),
    expected_counts={"train": 1350, "test": 150},
    expected_classes=15,
    class_texts=CLASS_TEXTS,
    protocol=PAPER,
    env_var=ENV_VAR,
    default_root=DEFAULT_ROOT,
)
