"""The synthetic dataset ``synth``: procedural audio-video clips, synchronized by construction.

Fifteen classes echo AVSync15's variety (impacts, bursts, vocal-like tones
with a moving mouth or throat, bowed/scraped strokes, sustained brass tones,
a continuous flush). Every clip is drawn from its own seeded random stream
(global seed, class name, index), so any subset of a build is reproducible
on its own and the result does not depend on the number of workers.

Synchrony: event onsets are whole source frames (24 fps). The audio of an
event starts at the sample of that frame's timestamp, and the visual change
(strike, flash, open mouth, moving bow...) is already visible in that frame.
Vocal and sustained classes drive the picture from the audio's own amplitude
envelope (its maximum over each frame period), so mouth opening or bell
vibration rises and falls with the sound; bows, knives and slides move only
while their sound plays. Each visual event lasts at
least 4 frames (1/6 s), so the protocol's 6 fps sampling always sees it.

The package, one concept a module:

=============  ==============================================================
constants      the generator's fixed numbers and file names
classes        the fifteen classes (a table of plain data)
raster         shapes filled on their bounding boxes; the pen objects draw with
palette        per-clip colours and backgrounds
audio          tones, filtered noise, envelopes (16 kHz)
clip           the per-clip context: event schedule, audio track, envelopes
scenes         the fifteen scene builders
render         one clip: placement, distractors, frames, the audio mix
layout         where a build keeps its files; the split rule; build records
pool           running build jobs in worker processes
build          building (or resuming) a root: ``make_synth``, ``ensure_synth``
spec           the registry entry ``SYNTH``
wild           ``synth-wild``, the curation test pool made from these clips
=============  ==============================================================

Importing the package (what the dataset registry does) loads only the
constants, the class table, the layout and the registry entry; the renderer
(numpy, scipy) and the builder load on first use of one of their names, e.g.
``from asva_bench.datasets.synth import render_clip``. Build with
``asva-bench datasets make synth`` (docs/datasets.md).
"""

from __future__ import annotations

import importlib

from .classes import CLASS_TEXTS, CLASSES, SynthClass, parse_class_list
from .constants import (DEFAULT_ROOT, DEFAULT_VIDEOS_PER_CLASS, ENCODER_PRESET, ENV_VAR, EVENT_RATE_LIMITS, FPS,
                        GENERATOR, MARKER, MAX_FRAMES, MIN_EVENT_FRAMES, MIN_EVENT_GAP_S, MIN_FRAMES, PLAN,
                        SAMPLE_RATE, SIZE, TEST_FRACTION, VERSION)
from .layout import default_root, read_marker, split_sizes
from .spec import SYNTH, SynthSpec, read_synth

#: Names served from the heavier modules, imported when first asked for.
_LAZY = {
    "render": ("render_clip", "clip_rng"),
    "build": ("make_synth", "ensure_synth", "build_video"),
    "clip": ("Clip", "Scene", "levels"),
    "palette": ("Palette", "make_palette", "make_background", "pick_color", "shade", "BACKGROUNDS"),
    "raster": ("Pen", "fill_capsule", "fill_ellipse", "fill_polygon", "fill_ring", "fill_star"),
    "audio": ("harmonics", "noise", "adsr"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["CLASSES", "CLASS_TEXTS", "DEFAULT_ROOT", "DEFAULT_VIDEOS_PER_CLASS", "ENCODER_PRESET", "ENV_VAR",
           "EVENT_RATE_LIMITS", "FPS", "GENERATOR", "MARKER", "MAX_FRAMES", "MIN_EVENT_FRAMES", "MIN_EVENT_GAP_S",
           "MIN_FRAMES", "PLAN", "SAMPLE_RATE", "SIZE", "SYNTH", "SynthClass", "SynthSpec", "TEST_FRACTION",
           "VERSION", "default_root", "parse_class_list", "read_marker", "read_synth", "split_sizes",
           *_LAZY_NAMES]


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_NAMES))
