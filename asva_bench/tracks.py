"""Protocol tracks: ``asva-reference`` (the published numbers) and ``corrected``.

The paper's reference evaluation has quirks that shape its numbers
(docs/protocol.md, "Protocol tracks"). The ``asva-reference`` track
reproduces every one of them; ``corrected`` does what the protocol text
says. The track is a field of :class:`asva_bench.protocol.ProtocolConfig`, so
it is in every fingerprint, and runs of different tracks are never ranked
together.

Every behaviour that differs between the tracks is one field of
:class:`TrackRules` below, read in exactly one place of the code (named in
the field's comment); nothing else looks at the track name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import PROFILES

REFERENCE = "asva-reference"
CORRECTED = "corrected"
TRACKS = (REFERENCE, CORRECTED)


@dataclass(frozen=True)
class TrackRules:
    name: str
    # (a, b, f) how media is cut into clips: "reference" (asva_bench.reference_io: microsecond pts,
    # accumulate-and-walk frame pick, whole decoded audio frames, the reference's crop/resize, one
    # centred clip per generated file) or "protocol" (asva_bench.avio / protocol: the exact 1/6 s grid,
    # sample-accurate priming-free audio). Read by avio.decode_protocol_clips and
    # scoring.decode_generated_clip.
    media: str
    # (c) FID Inception BatchNorm: "batch" (batch statistics on the reference's groups: one batch per
    # test video = all its clips x 12 frames for the ground truth, one per generated clip file) or
    # "running" (eval mode). Read by scoring.fid_features.
    fid_batchnorm: str
    # (d) IT's text: "folder" (the raw class folder name, paired with the videos as the reference
    # pairs them) or "class-text" (the dataset's class text, underscores as spaces). Read by
    # scoring.it_text / it_texts.
    it_text: str
    # (e) the audio of AlignSync's first-frame term c(a, v_1): "ground-truth" or "generated" (the audio
    # decoded from the generated clip, as c(a, v_k)). Read by scoring.alignsync_first_frame_audio.
    alignsync_first_frame_audio: str


RULES = {
    REFERENCE: TrackRules(REFERENCE, media="reference", fid_batchnorm="batch", it_text="folder",
                          alignsync_first_frame_audio="ground-truth"),
    CORRECTED: TrackRules(CORRECTED, media="protocol", fid_batchnorm="running", it_text="class-text",
                          alignsync_first_frame_audio="generated"),
}

#: The default track of each profile (asva_bench.profiles): the paper profile reproduces the published numbers.
DEFAULT_TRACK = {name: p.default_track for name, p in PROFILES.items()}


def check_track(name: str) -> str:
    if name not in RULES:
        import difflib
        close = difflib.get_close_matches(str(name), TRACKS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown protocol track '{name}'.{hint} Known: {', '.join(TRACKS)}")
    return name


def default_track(profile: str) -> str:
    return DEFAULT_TRACK.get(profile, CORRECTED)


def rules(track_or_cfg) -> TrackRules:
    """The rules of a track name or of a ProtocolConfig."""
    name = getattr(track_or_cfg, "track", track_or_cfg)
    return RULES[check_track(name)]


def register_ablation(base: str, **changes) -> str:
    """A diagnostic track: ``base``'s rules with some fields taken from the other track (e.g.
    ``register_ablation("corrected", it_text="folder")``), named ``"<base>+<field>=<value>,..."``.
    For attributing a difference between the tracks to its behaviours
    (benchmarks/track_differences.py --attribute); never a default, never on a board."""
    unknown = set(changes) - {f for f in TrackRules.__dataclass_fields__ if f != "name"}
    if unknown:
        raise ValueError(f"unknown track rule(s) {sorted(unknown)}")
    name = base + "+" + ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
    import dataclasses
    RULES[name] = dataclasses.replace(rules(base), name=name, **changes)
    return name


def record_track(protocol: dict, profile: str) -> str:
    """The track of a run.json / results.json protocol block; results written before tracks existed
    have none and were made with their profile's default (mini: corrected, paper: asva-reference)."""
    return protocol.get("track") or default_track(profile)
