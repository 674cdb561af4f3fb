"""Dataset manifests: what a dataset folder holds, read from its documented layout."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..protocol import PAPER, ProtocolConfig


class DatasetError(FileNotFoundError):
    """A dataset root or file that does not match the documented layout."""


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset split."""
    rel_path: str      # relative to the root's video folder, e.g. "dog_barking/x.mp4"
    class_name: str    # folder name
    text: str          # class text given to models (e.g. "dog barking")
    split: str
    path: str          # absolute path

    @property
    def video_id(self) -> str:
        return self.rel_path.rsplit(".", 1)[0]

    @property
    def stem(self) -> str:
        return Path(self.rel_path).stem


@dataclass
class Manifest:
    """The videos of one dataset root, with a hash of what identifies them."""
    dataset: str
    root: str
    entries: list[VideoEntry]
    protocol: ProtocolConfig = PAPER

    def split(self, name: str) -> list[VideoEntry]:
        return [e for e in self.entries if e.split == name]

    def classes(self) -> list[str]:
        return sorted({e.class_name for e in self.entries})

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in self.entries:
            out.setdefault(e.split, {}).setdefault(e.class_name, 0)
            out[e.split][e.class_name] += 1
        return out

    def hash(self, split: str | None = None) -> str:
        """sha256 over (split, relative path, class, text, file size) of every entry.

        File sizes make a re-encoded or replaced video change the hash without
        reading every byte of the dataset.
        """
        h = hashlib.sha256()
        for e in sorted(self.entries, key=lambda e: (e.split, e.rel_path)):
            if split is not None and e.split != split:
                continue
            try:
                size = os.path.getsize(e.path)
            except OSError:
                size = -1
            h.update(json.dumps([e.split, e.rel_path, e.class_name, e.text, size]).encode())
        return h.hexdigest()[:16]


def curated_expectations(root) -> tuple[dict, int] | None:
    """(split counts, classes) that `asva-bench curate` recorded in ``<root>/curation.json``, else None."""
    try:
        rec = json.loads((Path(root) / "curation.json").read_text())
        ds = rec["dataset"] if rec.get("generator") == "asva-bench curate" else None
        return ({k: int(v) for k, v in ds["counts"].items()}, len(ds["classes"])) if ds else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: how to read its root and what it should contain."""
    name: str
    description: str
    reader: Callable[[Path, "DatasetSpec"], Manifest]
    layout: str
    expected_counts: dict = field(default_factory=dict)    # split -> total videos
    expected_classes: int | None = None
    class_texts: dict = field(default_factory=dict)        # folder -> text
    protocol: ProtocolConfig = PAPER
    env_var: str = ""
    default_root: str | None = None                        # None: must be given

    def expectations(self, root) -> tuple[dict, int | None]:
        """(split -> expected videos, expected classes) for the folder at ``root``.

        A folder made by `asva-bench curate` is held to what its curation.json says it wrote.
        """
        declared = curated_expectations(root)
        if declared is not None:
            return declared
        return dict(self.expected_counts), self.expected_classes

    def text_for(self, class_folder: str) -> str:
        return self.class_texts.get(class_folder, class_folder.replace("_", " ").strip())

    def resolve_root(self, root=None) -> Path:
        tried = []
        if root is not None:
            tried.append(f"--root {root}")
            cand = Path(root)
        elif self.env_var and os.environ.get(self.env_var):
            tried.append(f"${self.env_var}={os.environ[self.env_var]}")
            cand = Path(os.environ[self.env_var])
        elif self.default_root:
            cand = Path(self.default_root).expanduser()
            tried.append(f"default {cand}")
        else:
            raise DatasetError(self.missing_message(None))
        if not cand.is_dir():
            raise DatasetError(self.missing_message(cand))
        return cand

    def missing_message(self, path) -> str:
        where = f"no folder at {path}" if path is not None else "no root given"
        return (f"dataset '{self.name}': {where}.\n"
                f"Expected layout:\n{self.layout}\n"
                f"Point at it with --root DIR or the environment variable {self.env_var}.")

    def load(self, root=None) -> Manifest:
        return self.reader(self.resolve_root(root), self)
