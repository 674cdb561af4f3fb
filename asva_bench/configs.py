"""Config dataclasses that are saved as JSON next to their weights."""

from __future__ import annotations

import dataclasses
from typing import Mapping


def _json_shaped(v):
    if isinstance(v, (tuple, list)):
        return [_json_shaped(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_shaped(x) for k, x in v.items()}
    return v


class JsonConfig:
    """Mixin for (frozen) config dataclasses: ``to_dict`` gives the JSON shape (tuples as lists),
    ``from_dict`` refuses unknown keys by name and turns lists back into tuples."""

    #: how errors name the config, e.g. "mini base config"
    config_label = "config"

    def to_dict(self) -> dict:
        return _json_shaped(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.config_label}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})
