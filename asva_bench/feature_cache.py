"""On-disk cache of ground-truth features, keyed by a hash of everything that
affects them (dataset manifest, protocol, evaluator weights, preprocessing,
clip list). Written atomically; a key that does not match is never reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .fsutil import atomic_path, atomic_write_text, home, stable_hash


class FeatureCache:
    def __init__(self, root):
        self.root = Path(root)

    @classmethod
    def default(cls) -> "FeatureCache":
        return cls(home() / "cache" / "features")

    @staticmethod
    def digest(key: dict) -> str:
        return stable_hash(key, 24)

    def paths(self, key: dict) -> tuple[Path, Path]:
        d = self.digest(key)
        return self.root / f"{d}.safetensors", self.root / f"{d}.json"

    def load(self, key: dict) -> dict | None:
        """clip_id -> {feature name: tensor}, or None when absent or stale."""
        data_path, meta_path = self.paths(key)
        if not (data_path.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != json.loads(json.dumps(key, sort_keys=True, default=str)):
            return None
        tensors = load_file(str(data_path))
        ids = meta["clip_ids"]
        return {cid: {n: tensors[n][i] for n in meta["names"]} for i, cid in enumerate(ids)}

    def save(self, key: dict, features: dict) -> None:
        ids = sorted(features)
        names = sorted(next(iter(features.values()))) if ids else []
        tensors = {n: torch.stack([features[c][n] for c in ids]).contiguous() for n in names}
        data_path, meta_path = self.paths(key)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(data_path) as tmp:
            save_file(tensors, str(tmp))
        # the json is written last: its presence marks a complete entry
        atomic_write_text(meta_path, json.dumps({"key": key, "clip_ids": ids, "names": names},
                                                sort_keys=True, default=str))
