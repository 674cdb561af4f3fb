"""Named registries with "did you mean" errors (lm-evaluation-harness style)."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        key = name.lower()
        if key in self._items and not replace and self._items[key] is not item:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[key] = item
        return item

    def remove(self, name: str) -> None:
        self.get(name)  # an unknown name is the same error as in get()
        del self._items[name.lower()]

    def get(self, name: str) -> T:
        key = name.lower()
        if key not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[key]

    def unknown_message(self, name: str) -> str:
        known = sorted(self._items)
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}."

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self):
        return sorted(self._items.items())


def import_object(spec: str, what: str):
    """'module:attr' -> the object, the module resolved as ``python -m`` resolves it (the working
    directory first: the console script starts without it on the path). ``what`` names the object
    in the messages (e.g. "adapter"). Raises ImportError."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ImportError(f"'{spec}' is not of the form module:Class ({what})")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"cannot import module '{module}' for {what} '{spec}': {e} "
                          f"(looked in the working directory {cwd} and the installed packages)") from e
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise ImportError(f"module '{module}' has no attribute '{attr}' ({what} '{spec}')") from e
    return obj
