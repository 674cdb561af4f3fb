"""The curation config: every setting and threshold of `asva-bench curate`, read from one TOML file.

Each profile ships a default (``configs/paper.toml``, ``configs/mini.toml``);
``--config FILE`` overlays a file of the user's on it, key by key, so a user
file may hold only the thresholds it changes. The paper publishes no
threshold values: the paper defaults are our choice (docs/curation.md says
how they were picked), the mini defaults were set from the signal
distributions of a synth-wild tuning pool (benchmarks/tune_curation_mini.py).

Two fingerprints: ``signal_fingerprint`` covers what changes the per-clip
signals (profile, scene detection, clip grid, sync candidates, CLIP model,
signal code version): shard files are reused only under the same one.
``fingerprint`` also covers thresholds and dataset rules; changing those
only re-runs the cheap decision step (``curate --merge``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..profiles import check_profile
from ..fsutil import stable_hash

#: Bump when the code that computes a signal changes its values.
SIGNAL_VERSION = 2
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: signal -> (which tails a threshold may cut, what it is)
SIGNALS: dict[str, tuple[tuple[str, ...], str]] = {
    "pixel_diff": (("low", "high"), "mean absolute difference of consecutive frames (0-255 pixel values, "
                                    "frames at the analysis fps and size)"),
    "clip_change": (("low", "high"), "mean 1 - cosine of consecutive frames' CLIP image features"),
    "max_amplitude": (("low",), "maximum absolute audio sample (full scale = 1)"),
    "ia": (("low",), "image-audio alignment: mean cosine of frame and audio embeddings"),
    "it": (("low",), "image-text alignment: mean cosine of frame and class-text embeddings"),
    "p_sync": (("low",), "sync classifier: softmax of phi over shifted audio windows, probability of the true one "
                         "(lowest of the clip's 2 s windows)"),
}


class CurationError(ValueError):
    """A curation input, folder or setting that cannot be used as asked; the message says what to do."""


class CurationConfigError(CurationError):
    """A curation config that cannot be used; names the file and the key."""


@dataclass(frozen=True)
class Threshold:
    low: float | None = None
    high: float | None = None

    def check(self, value: float) -> str | None:
        """None when ``value`` passes, else the failed bound as text ('<0.5' or '>20')."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "=nan"
        if self.low is not None and value < self.low:
            return f"<{self.low:g}"
        if self.high is not None and value > self.high:
            return f">{self.high:g}"
        return None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class CurationConfig:
    profile: str
    # scene cuts: PySceneDetect's content detector
    scene_threshold: float = 27.0
    min_scene_seconds: float = 0.5
    # the clip grid: clip starts on multiples of ``stride`` seconds, inside one scene
    clip_seconds: float = 3.0
    stride_seconds: float = 0.5
    analysis_fps: float = 6.0
    # P_Sync: the clip's centre window against audio windows shifted by -max..+max in ``step``s
    sync_window_seconds: float = 2.0
    sync_max_shift: float = 0.5
    sync_step: float = 0.1
    sync_windows: int = 3          # P_Sync over the clip's start, centre and end windows (1: centre only)
    # paper profile: the open_clip model of the CLIP-change signal
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    # the dataset
    min_class_examples: int = 100
    max_example_seconds: float = 10.0
    test_fraction: float = 0.1
    source: str = ""

    def __post_init__(self):
        check_profile(self.profile)
        where = self.source or "curation config"
        for name in self.thresholds:
            if name not in SIGNALS:
                raise CurationConfigError(f"{where}: [thresholds] has unknown signal '{name}'; known: "
                                          f"{', '.join(SIGNALS)}")
        for name, t in self.thresholds.items():
            tails = SIGNALS[name][0]
            if t.high is not None and "high" not in tails:
                raise CurationConfigError(f"{where}: thresholds.{name} has a 'high' bound, but the paper drops "
                                          f"only low values of {name}; remove it")
            if t.low is not None and t.high is not None and t.low >= t.high:
                raise CurationConfigError(f"{where}: thresholds.{name}: low {t.low} must be below high {t.high}")
        steps = self.clip_seconds / self.stride_seconds
        if self.stride_seconds <= 0 or abs(steps - round(steps)) > 1e-9:
            raise CurationConfigError(f"{where}: clips.seconds ({self.clip_seconds}) must be a whole number of "
                                      f"clips.stride ({self.stride_seconds})")
        per_stride = self.stride_seconds * self.analysis_fps
        if abs(per_stride - round(per_stride)) > 1e-9 or per_stride < 1:
            raise CurationConfigError(f"{where}: clips.stride x clips.fps ({per_stride:g}) must be a whole number "
                                      "of analysis frames, so every clip starts on an analysis frame")
        if self.sync_window_seconds + 2 * self.sync_max_shift > self.clip_seconds + 1e-9:
            raise CurationConfigError(f"{where}: sync.window + 2 x sync.max_shift must fit in one clip "
                                      f"({self.clip_seconds:g} s), so every clip has a window with all its candidates")
        if self.sync_windows not in (1, 3):
            raise CurationConfigError(f"{where}: sync.windows must be 1 (centre) or 3 (start, centre, end)")
        shifts = self.sync_max_shift / self.sync_step if self.sync_step > 0 else -1
        if shifts < 1 or abs(shifts - round(shifts)) > 1e-9:
            raise CurationConfigError(f"{where}: sync.max_shift must be a positive whole number of sync.step")
        if self.min_class_examples < 1 or not (0 < self.test_fraction < 1):
            raise CurationConfigError(f"{where}: dataset.min_class_examples must be >= 1 and "
                                      "dataset.test_fraction in (0, 1)")
        if self.max_example_seconds < 2 * self.clip_seconds:
            raise CurationConfigError(f"{where}: dataset.max_example_seconds must be at least two clips "
                                      f"({2 * self.clip_seconds:g} s), so a long run splits into clips-long pieces")

    # ---- derived ----------------------------------------------------------
    @property
    def frames_per_clip(self) -> int:
        return int(round(self.clip_seconds * self.analysis_fps))

    @property
    def frames_per_stride(self) -> int:
        return int(round(self.stride_seconds * self.analysis_fps))

    @property
    def sync_shifts(self) -> list[float]:
        n = int(round(self.sync_max_shift / self.sync_step))
        return [round(k * self.sync_step, 6) for k in range(-n, n + 1)]

    def signal_settings(self) -> dict:
        d = {"profile": self.profile, "signal_version": SIGNAL_VERSION,
             "scene_threshold": self.scene_threshold, "min_scene_seconds": self.min_scene_seconds,
             "clip_seconds": self.clip_seconds, "stride_seconds": self.stride_seconds,
             "analysis_fps": self.analysis_fps, "sync_window_seconds": self.sync_window_seconds,
             "sync_max_shift": self.sync_max_shift, "sync_step": self.sync_step, "sync_windows": self.sync_windows}
        if self.profile == "paper":
            d.update(clip_model=self.clip_model, clip_pretrained=self.clip_pretrained)
        return d

    def signal_fingerprint(self) -> str:
        return stable_hash(self.signal_settings())

    def to_dict(self) -> dict:
        d = {**self.signal_settings(),
             "thresholds": {k: self.thresholds[k].to_dict() for k in SIGNALS if k in self.thresholds},
             "min_class_examples": self.min_class_examples, "max_example_seconds": self.max_example_seconds,
             "test_fraction": self.test_fraction}
        d.pop("signal_version")
        return d

    def fingerprint(self) -> str:
        return stable_hash({"config": self.to_dict(), "signal_version": SIGNAL_VERSION})

    def replace(self, **changes) -> "CurationConfig":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------
# Reading TOML
# --------------------------------------------------------------------------
#: TOML table.key -> CurationConfig field
_KEYS = {
    ("scenes", "threshold"): "scene_threshold", ("scenes", "min_scene_seconds"): "min_scene_seconds",
    ("clips", "seconds"): "clip_seconds", ("clips", "stride"): "stride_seconds", ("clips", "fps"): "analysis_fps",
    ("sync", "window"): "sync_window_seconds", ("sync", "max_shift"): "sync_max_shift", ("sync", "step"): "sync_step", ("sync", "windows"): "sync_windows",
    ("clip_model", "name"): "clip_model", ("clip_model", "pretrained"): "clip_pretrained",
    ("dataset", "min_class_examples"): "min_class_examples",
    ("dataset", "max_example_seconds"): "max_example_seconds", ("dataset", "test_fraction"): "test_fraction",
}
_TABLES = {t for t, _ in _KEYS} | {"thresholds"}


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise CurationConfigError(f"{path}: curation config not found") from e
    except tomllib.TOMLDecodeError as e:
        raise CurationConfigError(f"{path}: not valid TOML ({e})") from e


def _overlay(base: dict, extra: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if key == "profile":
            out["profile"] = value
            continue
        if key not in _TABLES:
            raise CurationConfigError(f"{where}: unknown table [{key}]; known: profile, {', '.join(sorted(_TABLES))}")
        if not isinstance(value, dict):
            raise CurationConfigError(f"{where}: [{key}] must be a table")
        table = out.setdefault(key, {})
        for k, v in value.items():
            if key == "thresholds":
                if not isinstance(v, dict) or set(v) - {"low", "high"}:
                    raise CurationConfigError(f"{where}: thresholds.{k} must be a table with 'low' and/or 'high', "
                                              f"e.g. {k} = {{ low = 0.1 }}")
                table[k] = dict(v)   # a user's bounds replace the default's for that signal
            elif (key, k) not in _KEYS:
                raise CurationConfigError(f"{where}: unknown key {key}.{k}; known in [{key}]: "
                                          f"{', '.join(sorted(kk for t, kk in _KEYS if t == key))}")
            else:
                table[k] = v
    return out


def _from_dict(d: dict, source: str) -> CurationConfig:
    kwargs: dict = {"profile": d.get("profile"), "source": source}
    for (table, key), name in _KEYS.items():
        if key in d.get(table, {}):
            kwargs[name] = d[table][key]
    thresholds = {}
    for name, bounds in d.get("thresholds", {}).items():
        try:
            thresholds[name] = Threshold(**{k: None if v is None else float(v) for k, v in bounds.items()})
        except (TypeError, ValueError) as e:
            raise CurationConfigError(f"{source}: thresholds.{name}: bounds must be numbers ({e})") from e
    kwargs["thresholds"] = thresholds
    try:
        return CurationConfig(**kwargs)
    except TypeError as e:
        raise CurationConfigError(f"{source}: {e}") from e


def default_config_path(profile: str) -> Path:
    return CONFIG_DIR / f"{check_profile(profile)}.toml"


def load_config(profile: str | None = None, path=None) -> CurationConfig:
    """The profile's default config, overlaid with the file at ``path`` (if any).

    ``profile`` None takes the file's ``profile`` (else mini); a file whose
    profile contradicts an explicit ``profile`` is an error.
    """
    user = _read_toml(Path(path)) if path else {}
    if profile and user.get("profile") and user["profile"] != profile:
        raise CurationConfigError(f"{path}: the file says profile = '{user['profile']}' but --profile "
                                  f"{profile} was given; drop one")
    profile = check_profile(profile or user.get("profile") or "mini")
    base = _read_toml(default_config_path(profile))
    merged = _overlay(base, user, str(path)) if user else base
    merged["profile"] = profile
    source = f"{default_config_path(profile).name}" + (f" + {path}" if path else "")
    return _from_dict(merged, source)


def config_to_toml(cfg: CurationConfig) -> str:
    """The config as TOML text (what ``curate`` writes beside its outputs)."""
    lines = [f'profile = "{cfg.profile}"', "", "[scenes]", f"threshold = {cfg.scene_threshold!r}",
             f"min_scene_seconds = {cfg.min_scene_seconds!r}", "", "[clips]", f"seconds = {cfg.clip_seconds!r}",
             f"stride = {cfg.stride_seconds!r}", f"fps = {cfg.analysis_fps!r}", "", "[sync]",
             f"window = {cfg.sync_window_seconds!r}", f"max_shift = {cfg.sync_max_shift!r}",
             f"step = {cfg.sync_step!r}", f"windows = {cfg.sync_windows}", ""]
    if cfg.profile == "paper":
        lines += ["[clip_model]", f'name = "{cfg.clip_model}"', f'pretrained = "{cfg.clip_pretrained}"', ""]
    lines.append("[thresholds]")
    for name in SIGNALS:
        t = cfg.thresholds.get(name)
        if t is not None and t.to_dict():
            lines.append(f"{name} = {{ " + ", ".join(f"{k} = {v!r}" for k, v in t.to_dict().items()) + " }")
    lines += ["", "[dataset]", f"min_class_examples = {cfg.min_class_examples}",
              f"max_example_seconds = {cfg.max_example_seconds!r}", f"test_fraction = {cfg.test_fraction!r}", ""]
    return "\n".join(lines)
