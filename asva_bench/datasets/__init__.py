"""Named datasets: manifest readers for user-supplied roots, plus the synthetic world."""

from ..registry import Registry
from .base import DatasetError, DatasetSpec, Manifest, VideoEntry
from .real import AVSYNC15, LANDSCAPES, THEGREATESTHITS
from .synth import SYNTH

DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (AVSYNC15, LANDSCAPES, THEGREATESTHITS):
    DATASETS.register(_spec.name, _spec)
DATASETS.register(SYNTH.name, SYNTH)


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


__all__ = ["DATASETS", "DatasetError", "DatasetSpec", "Manifest", "VideoEntry", "get_dataset"]
