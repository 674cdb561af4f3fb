"""The exact class folder names each dataset expects (shown by `asva-bench datasets`, docs/datasets.md)."""

from __future__ import annotations

from .base import DatasetSpec

#: Datasets whose videos sit directly under videos/ (one class, no class folders).
FLAT = ("thegreatesthits",)


def class_folders(spec: DatasetSpec) -> list[str]:
    """Folder names under ``videos/`` (Landscapes: under ``videos/train`` and ``videos/test``)."""
    if spec.name in FLAT:
        return []
    return sorted(k for k in spec.class_texts if k)


__all__ = ["FLAT", "class_folders"]
