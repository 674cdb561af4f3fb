"""Requirement records: the files and folders a command needs, checked before any work.

An adapter lists what it will load with ``Adapter.required_files(protocol)``
(asva_bench/adapters/api.py); the scorer's evaluator weights, the dataset
root and the output folder are added by :mod:`asva_bench.preflight`. Each
record says what the thing is, where it is expected, where it comes from and
what to run to check it, so a missing one is reported with its fix before a
single clip is generated (docs/weights.md).

This module imports nothing heavy: `asva-bench weights list` and the
pre-flight run it before torch is loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

#: The one command that re-checks every paper-profile weight file and checkpoint.
VERIFY_COMMAND = "asva-bench weights verify --profile paper"


@dataclass(frozen=True)
class Requirement:
    """One thing a run needs on disk.

    ``path`` is where it is expected (None: nothing was given at all, e.g. no
    ``--model-arg checkpoint=``). ``files`` are paths relative to ``path`` that
    must exist; an entry "a|b" is satisfied by either file. ``json_files``
    (relative) must also parse as JSON objects (a config that cannot be read
    is as unusable as a missing one). ``kind`` is "file" (``path`` itself is
    the file) or "folder". ``source`` says where it comes from, ``place_at``
    where to put it, ``fix`` the argument or command that provides it and
    ``check`` the command that verifies it. ``hub_id`` is a Hugging Face
    repository id the path may also be (resolved from the local hub cache).
    """
    what: str
    path: str | None
    kind: str = "folder"
    files: tuple[str, ...] = ()
    json_files: tuple[str, ...] = ()
    source: str = ""
    place_at: str = ""
    fix: str = ""
    check: str = ""
    hub_id: str | None = None

    def __post_init__(self):
        if self.kind not in ("file", "folder"):
            raise ValueError(f"requirement {self.what!r}: kind must be 'file' or 'folder', got {self.kind!r}")
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "json_files", tuple(self.json_files))

    def problems(self) -> list[str]:
        """What is wrong with it, in words; empty when it is usable."""
        if self.path is None:
            return ["not given"]
        p = Path(self.path).expanduser()
        if self.kind == "file":
            if not p.is_file():
                return [f"missing file {p}"]
            return []
        if not p.is_dir():
            return [f"missing folder {p}"]
        out = []
        for rel in self.files:
            options = rel.split("|")
            if not any((p / o).is_file() for o in options):
                out.append(f"missing {p / options[0]}" + (f" (or {', '.join(options[1:])})" if len(options) > 1 else ""))
        for rel in self.json_files:
            f = p / rel
            if not f.is_file():
                if not any(rel in r.split("|") for r in self.files):
                    out.append(f"missing {f}")
                continue
            try:
                obj = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                out.append(f"{f} is not readable JSON ({str(e).splitlines()[0]})")
                continue
            if not isinstance(obj, dict):
                out.append(f"{f} is not a JSON object")
        return out

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["files"], d["json_files"] = list(self.files), list(self.json_files)
        return d


@dataclass
class Unmet:
    """A requirement together with what is wrong with it."""
    requirement: Requirement
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        r = self.requirement
        lines = [f"- {r.what}: {'; '.join(self.problems)}"]
        if r.source:
            lines.append(f"    comes from: {r.source}")
        if r.place_at:
            lines.append(f"    put it at:  {r.place_at}")
        if r.fix:
            lines.append(f"    then:       {r.fix}")
        if r.check:
            lines.append(f"    check with: {r.check}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**self.requirement.to_dict(), "problems": list(self.problems)}


def unmet(requirements) -> list[Unmet]:
    """The requirements that are not satisfied, each once (same what and path)."""
    seen, out = set(), []
    for r in requirements:
        key = (r.what, r.path)
        if key in seen:
            continue
        seen.add(key)
        probs = r.problems()
        if probs:
            out.append(Unmet(r, probs))
    return out


def writable_problem(folder, what: str) -> str | None:
    """None when files can be created in ``folder`` (or in its nearest existing parent, where it
    does not exist yet); else one line naming the folder. Tries a real file: permission bits
    say nothing to root or on a read-only mount."""
    folder = Path(folder).expanduser()
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        return f"{what} {folder}: {probe_dir} is a file, not a folder; choose another location"
    test = probe_dir / f".asva-bench-write-test-{os.getpid()}"
    try:
        with open(test, "w") as f:
            f.write("")
        test.unlink()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        return (f"{what} {folder} is not writable ({reason} at {probe_dir}); "
                "choose a writable location" + (" with --out" if "output" in what else ""))
    return None


__all__ = ["Requirement", "Unmet", "VERIFY_COMMAND", "unmet", "writable_problem"]
