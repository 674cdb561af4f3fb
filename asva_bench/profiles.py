"""Profiles: `paper` (the published networks and protocol) and `mini` (the embedded CPU world).

A :class:`Profile` is handed to adapters at setup and decides, in one place:
the protocol a dataset is cut at (frame size, default protocol track), the
evaluator backbones of the metric suite, how generated clips are quantised,
and the AVSyncD-family sampler defaults.  Every protocol a profile can
produce for the registered datasets is registered (:func:`registered_protocols`),
so a results file's protocol is checked by lookup, never guessed from its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the protocol module imports torch; the CLI reads profile names without it
    from .protocol import ProtocolConfig


@dataclass(frozen=True)
class SamplerDefaults:
    """The AVSyncD / I2VD sampler when an argument is not given (docs/avsyncd.md)."""
    steps: int
    scheduler: str        # pndm-reference | pndm | ddim
    strength: float       # 1.0: from pure noise; below 1: frame 1 noised to that fraction
    conditioning: str     # reference | exact (how frame 1 conditions the sampler)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: frame height every dataset is cut at (None: the dataset's own size); the width keeps its aspect
    frame_height: int | None
    default_track: str
    #: role -> registered backbone name of the metric suite
    backbones: dict = field(default_factory=dict)
    #: float frames -> uint8 when clips are written: "truncate" (the reference's) or "round"
    quantisation: str = "round"
    sampler: SamplerDefaults | None = None

    def protocol_for(self, dataset_protocol: ProtocolConfig, track: str | None = None) -> ProtocolConfig:
        """The protocol a dataset is cut at under this profile, on ``track`` (default: the profile's).

        A profile with a frame height keeps every timing parameter and scales the frame size down to
        that height, keeping the dataset's aspect ratio (even width), named ``mini-64`` for a square
        frame and ``mini-64x<W>`` otherwise."""
        from .tracks import check_track
        track = check_track(track or self.default_track)
        if self.frame_height is None:
            return dataset_protocol.replace(track=track)
        h = self.frame_height
        w = int(round(dataset_protocol.width * h / dataset_protocol.height / 2)) * 2
        name = f"{self.name}-{h}" if w == h else f"{self.name}-{h}x{w}"
        return dataset_protocol.replace(name=name, height=h, width=w, track=track)


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper", description="the published networks and protocol (weights under $ASVA_BENCH_HOME/weights)",
        frame_height=None, default_track="asva-reference",
        backbones={"image": "fid-inception-229", "video": "fvd-i3d", "embedding": "imagebind-huge",
                   "sync": "avsync-classifier"},
        quantisation="truncate",
        sampler=SamplerDefaults(steps=50, scheduler="pndm-reference", strength=1.0, conditioning="reference")),
    "mini": Profile(
        name="mini", description="the embedded CPU world: synth-trained counterparts shipped in the package",
        frame_height=64, default_track="corrected",
        backbones={"image": "mini-fid", "video": "mini-fvd", "embedding": "mini-embedding", "sync": "mini-sync"},
        quantisation="round",
        sampler=SamplerDefaults(steps=20, scheduler="ddim", strength=0.5, conditioning="exact")),
}
#: The profile names, for CLI choices.
PROFILE_NAMES = tuple(PROFILES)


def get_profile(profile) -> Profile:
    """A Profile from its name (or the Profile itself), with a 'did you mean' error."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        import difflib
        close = difflib.get_close_matches(str(profile), PROFILE_NAMES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown profile '{profile}'.{hint} Known: {', '.join(PROFILE_NAMES)}")
    return PROFILES[profile]


def check_profile(profile: str) -> str:
    return get_profile(profile).name


def default_profile(dataset: str) -> str:
    """`synth` is the embedded world and defaults to `mini`; real datasets to `paper`."""
    return "mini" if dataset == "synth" else "paper"


def protocol_for(dataset_protocol: ProtocolConfig, profile, track: str | None = None) -> ProtocolConfig:
    return get_profile(profile).protocol_for(dataset_protocol, track)


def defaults_by_profile(attribute: str) -> dict:
    """{profile name: sampler default}, e.g. ``defaults_by_profile("steps")`` (recorded in adapter configs)."""
    return {n: getattr(p.sampler, attribute) for n, p in PROFILES.items() if p.sampler is not None}


def registered_protocols() -> dict[str, tuple[Profile, ProtocolConfig]]:
    """protocol name -> (profile, protocol on the profile's default track), for every profile and every
    registered dataset's protocol."""
    from .datasets import DATASETS
    out = {}
    for _, spec in DATASETS.items():
        for p in PROFILES.values():
            cfg = p.protocol_for(spec.protocol)
            out.setdefault(cfg.name, (p, cfg))
    return out


def profile_of_protocol(protocol: ProtocolConfig) -> Profile:
    """The profile that produces ``protocol`` (a registered protocol name), for callers that were
    handed a protocol but no profile (adapters used outside the harness)."""
    try:
        return registered_protocols()[protocol.name][0]
    except KeyError:
        raise ValueError(f"protocol '{protocol.name}' is not produced by any profile for the registered "
                         f"datasets ({', '.join(sorted(registered_protocols()))}); pass the profile "
                         "explicitly (adapter.setup(protocol, device, profile=...))") from None
