"""The fifteen classes of synth: names, kinds, the AVSync15 class each echoes, the scene that draws it.

A table of plain data, so the dataset registry and the command line read it
without importing the renderer; a class's scene builder is imported when a
clip is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class SynthClass:
    folder: str
    kind: str                  # impact | burst | vocal | stroke | sustained | continuous
    avsync15: str              # the AVSync15 class it echoes
    scene: str                 # its builder in .scenes (imported when a clip is rendered)
    extent: tuple              # (u0, v0, u1, v1) local box that holds everything drawn
    gated: bool = True         # the object moves only during events

    @property
    def text(self) -> str:
        return self.folder.replace("_", " ")

    @property
    def eventful(self) -> bool:
        return self.kind != "continuous"

    @property
    def build(self) -> Callable:
        """The scene builder: (Clip, Palette) -> Scene."""
        from . import scenes
        return getattr(scenes, self.scene)


CLASSES: dict[str, SynthClass] = {c.folder: c for c in (
    SynthClass("hammer_strike", "impact", "hammering", "scene_hammer", (-73, -98, 81, 60)),
    SynthClass("ball_bounce", "impact", "(none: extra impact class)", "scene_ball", (-78, -115, 78, 62),
               gated=False),
    SynthClass("bowling_pins", "impact", "striking_bowling", "scene_bowling", (-124, -54, 131, 52),
               gated=False),
    SynthClass("gun_bang", "burst", "cap_gun_shooting", "scene_gun", (-119, -53, 70, 49)),
    SynthClass("rapid_fire", "burst", "machine_gun_shooting", "scene_rapid", (-132, -51, 82, 49)),
    SynthClass("dog_bark", "vocal", "dog_barking", "scene_dog", (-85, -52, 64, 97)),
    SynthClass("frog_croak", "vocal", "frog_croaking", "scene_frog", (-84, -41, 84, 77)),
    SynthClass("lion_roar", "vocal", "lions_roaring", "scene_lion", (-96, -103, 96, 96)),
    SynthClass("rooster_crow", "vocal", "chicken_crowing", "scene_rooster", (-82, -93, 99, 99)),
    SynthClass("baby_cry", "vocal", "baby_babbling_crying", "scene_baby", (-74, -71, 74, 100)),
    SynthClass("bowed_string", "stroke", "playing_cello / playing_violin__fiddle", "scene_bowed",
               (-106, -115, 106, 90)),
    SynthClass("knife_sharpening", "stroke", "sharpen_knife", "scene_knife", (-118, -52, 92, 71)),
    SynthClass("trumpet_bell", "sustained", "playing_trumpet", "scene_trumpet", (-125, -50, 108, 40)),
    SynthClass("trombone_slide", "sustained", "playing_trombone", "scene_trombone", (-130, -46, 83, 45)),
    SynthClass("toilet_flush", "continuous", "toilet_flushing", "scene_toilet", (-88, -116, 88, 96)),
)}
CLASS_TEXTS = {k: c.text for k, c in CLASSES.items()}


def parse_class_list(text: str | None) -> list[str] | None:
    """The --classes option ('a,b') as a list; None when not given (every class)."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None
