"""Profiles: `paper` (the published networks and protocol) and `mini` (the
embedded CPU world). A profile decides the protocol size a dataset is cut at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the protocol module imports torch; profile names must not
    from .protocol import ProtocolConfig

PROFILES = ("paper", "mini")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        import difflib
        close = difflib.get_close_matches(profile, PROFILES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown profile '{profile}'.{hint} Known: {', '.join(PROFILES)}")
    return profile


def default_profile(dataset: str) -> str:
    """`synth` is the embedded world and defaults to `mini`; real datasets to `paper`."""
    return "mini" if dataset == "synth" else "paper"


def protocol_for(dataset_protocol: ProtocolConfig, profile: str, track: str | None = None) -> ProtocolConfig:
    """The protocol a dataset is cut at under a profile, on ``track`` (default: the profile's,
    asva_bench.tracks.DEFAULT_TRACK).

    The mini profile keeps every timing parameter and scales the frame size
    down to MINI's height (64), keeping the dataset's aspect ratio.
    """
    check_profile(profile)
    from .tracks import check_track, default_track
    track = check_track(track or default_track(profile))
    if profile == "paper":
        return dataset_protocol.replace(track=track)
    from .protocol import MINI
    scale = MINI.height / dataset_protocol.height
    w = int(round(dataset_protocol.width * scale / 2)) * 2
    name = MINI.name if w == MINI.width else f"mini-{MINI.height}x{w}"
    return dataset_protocol.replace(name=name, height=MINI.height, width=w, track=track)
