"""What keeps a state dict from loading into a module, said once for every loader."""

from __future__ import annotations

from typing import Mapping


def _listing(keys, n: int) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def state_dict_mismatch(expected: Mapping, given: Mapping, show: int = 5) -> str | None:
    """None when ``given`` has exactly ``expected``'s keys and shapes; else one line naming the
    missing, unexpected and mis-shaped keys (``show`` of each, then a count)."""
    missing = set(expected) - set(given)
    unexpected = set(given) - set(expected)
    wrong = sorted(k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing, show)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected, show)}")
    if wrong:
        parts.append("wrong shapes: " + _listing([f"{k} {tuple(given[k].shape)} != {tuple(expected[k].shape)}"
                                                  for k in wrong], show))
    return "; ".join(parts) or None
