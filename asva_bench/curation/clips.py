"""Inputs, decoding, scene cuts and the clip grid of the curation pipeline.

A pool is a folder of class folders (VGGSound-style): ``<input>/<class>/<file>``
with any video container decord or PyAV reads. Each video is decoded once:

* every frame passes, downscaled the way PySceneDetect's ``SceneManager``
  does it, through its ``ContentDetector`` (hard cuts; its threshold and the
  minimum scene length come from the config);
* the frames on the analysis grid (``t_j = j / fps``, fps = 6 by default,
  the first decoded frame at or after each time, as the protocol selects
  frames) are kept, centre-cropped and resized to the profile's protocol
  size (mini 64 x 64, paper 256 x 256);
* the audio is decoded once (native rate for the amplitude signal, 16 kHz
  for the audio models).

Clips: 3 s windows whose starts are multiples of the 0.5 s stride, lying
wholly inside one scene and inside the usable duration (the shorter of the
video and audio streams). The grid is global, not restarted at each scene
cut, so a clip's analysis frames are always grid frames ``j0 .. j0 + 17``
and neighbouring clips share their frames' features (computed once per
video). A scene starting between grid points loses the part before its
first grid point (at most one stride).

Bad input is never dropped silently: :class:`BadInput` carries the kind
(``unreadable``, ``no_audio``, ``too_short``) and the message, and the
pipeline lists it in the manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..avio import MediaError, VideoFrames, probe, read_audio
from ..fsutil import is_temp_file
from ..protocol import ProtocolConfig, resample, spatial_transform
from .config import CurationError

#: Containers the input listing treats as videos (anything else in a class folder is listed as ignored).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
MODEL_SAMPLE_RATE = 16000
_TOL = 1e-6
_CHUNK = 32   # frames decoded per batch: bounded memory at any resolution


class BadInput(Exception):
    """A video the pipeline cannot use; ``kind`` is one of BAD_KINDS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


BAD_KINDS = ("unreadable", "no_audio", "too_short")


@dataclass(frozen=True)
class VideoInput:
    rel: str        # path below the input root, e.g. "dog_barking/abc.mp4"
    cls: str        # its class folder
    path: str
    size: int

    @property
    def stem(self) -> str:
        """A file-name-safe id inside the class (sub-folders joined with '__')."""
        inner = Path(self.rel).relative_to(self.cls).with_suffix("")
        return "__".join(inner.parts)


def class_text(folder: str) -> str:
    """The class text models are given: the folder name with underscores as spaces."""
    return " ".join(folder.replace("_", " ").split())


def list_inputs(root) -> tuple[list[VideoInput], list[dict]]:
    """(videos under class folders, sorted; files that are not used, each with the reason)."""
    root = Path(root)
    if not root.is_dir():
        raise CurationError(f"{root}: input folder not found; give --input a folder of class folders "
                                "(<input>/<class>/<video>)")
    videos, ignored = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or is_temp_file(p) or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() not in VIDEO_SUFFIXES:
            ignored.append({"file": rel, "reason": f"not a video file (suffix {p.suffix or 'none'}; videos are "
                                                   f"{', '.join(VIDEO_SUFFIXES)})"})
            continue
        parts = Path(rel).parts
        if len(parts) < 2:
            ignored.append({"file": rel, "reason": "not inside a class folder; move it to <input>/<class>/"})
            continue
        videos.append(VideoInput(rel, parts[0], str(p), p.stat().st_size))
    return videos, ignored


@dataclass
class DecodedVideo:
    """One video, decoded once: analysis frames, audio and scene cuts."""
    video: VideoInput
    duration: float                 # usable: min(video, audio)
    video_duration: float
    audio_duration: float
    fps: float                      # native frame rate
    frames: torch.Tensor            # uint8 [J, H, W, 3], grid frames at the protocol size
    audio: torch.Tensor             # float32 mono, native rate (amplitude)
    sample_rate: int
    audio_16k: torch.Tensor         # float32 mono, 16 kHz (audio models)
    cuts: list[float] = field(default_factory=list)

    @property
    def scenes(self) -> list[tuple[float, float]]:
        edges = [0.0] + [c for c in self.cuts if 0.0 < c < self.duration] + [self.duration]
        return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass(frozen=True)
class Clip:
    scene: int
    start: float
    end: float
    first_frame: int        # index into the analysis grid


def plan_clips(scenes, clip_seconds: float, stride: float, fps: float, num_grid: int) -> list[Clip]:
    """Clips of ``clip_seconds`` at multiples of ``stride``, wholly inside a scene and the grid."""
    n = int(round(clip_seconds * fps))
    per = int(round(stride * fps))
    clips = []
    for si, (a, b) in enumerate(scenes):
        k = math.ceil(a / stride - _TOL)
        while True:
            s = k * stride
            if s + clip_seconds > b + _TOL:
                break
            j0 = k * per
            if j0 + n > num_grid:
                break
            clips.append(Clip(si, round(s, 6), round(s + clip_seconds, 6), j0))
            k += 1
    return clips


def _detector(threshold: float, min_scene_seconds: float):
    from scenedetect import ContentDetector
    return ContentDetector(threshold=float(threshold), min_scene_len=float(min_scene_seconds))


def _downscaled_bgr(frame: np.ndarray, factor: float) -> np.ndarray:
    """What SceneManager hands its detectors: BGR, linearly downscaled to about 256 px wide."""
    import cv2
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    if factor > 1:
        h, w = bgr.shape[:2]
        bgr = cv2.resize(bgr, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_LINEAR)
    return bgr


def decode_video(video: VideoInput, protocol: ProtocolConfig, clip_seconds: float, fps: float,
                 scene_threshold: float, min_scene_seconds: float) -> DecodedVideo:
    """Decode ``video`` once (see the module docstring); raises :class:`BadInput`."""
    path = Path(video.path)
    try:
        info = probe(path)
    except MediaError as e:
        raise BadInput("unreadable", str(e)) from e
    if not info.has_audio:
        raise BadInput("no_audio", f"{path}: no audio stream; curation needs the audio track "
                                   "(re-mux the original audio or leave the file out)")
    try:
        vf = VideoFrames(path)
        wav, sr = read_audio(path)
    except MediaError as e:
        raise BadInput("unreadable", str(e)) from e
    vdur, adur = vf.duration, len(wav) / sr
    duration = min(vdur, adur)
    if duration + _TOL < clip_seconds:
        raise BadInput("too_short", f"{path}: usable duration {duration:.2f} s (video {vdur:.2f} s, audio "
                                    f"{adur:.2f} s) is shorter than one {clip_seconds:g} s clip")
    ts = vf.timestamps
    native_fps = float(1.0 / np.median(np.diff(ts))) if len(ts) > 1 else float(info.fps or fps)

    n_grid = int(math.floor(duration * fps + _TOL))
    grid_times = np.arange(n_grid, dtype=np.float64) / fps
    grid_idx = np.minimum(np.searchsorted(ts, grid_times - protocol.timestamp_tolerance, side="left"), len(ts) - 1)
    wanted: dict[int, list[int]] = {}
    for j, i in enumerate(grid_idx.tolist()):
        wanted.setdefault(i, []).append(j)

    from scenedetect import FrameTimecode
    from scenedetect.scene_manager import compute_downscale_factor
    detector = _detector(scene_threshold, min_scene_seconds)
    rate = round(native_fps, 6)
    cut_frames: list[int] = []
    grid = [None] * n_grid
    factor = None
    last_needed = len(ts)   # cuts are searched over the whole stream, frames kept up to the grid's end
    try:
        for a in range(0, last_needed, _CHUNK):
            idx = np.arange(a, min(a + _CHUNK, last_needed))
            chunk = vf.get(idx)
            if factor is None:
                factor = compute_downscale_factor(chunk.shape[2])
            for k, i in enumerate(idx.tolist()):
                cut_frames += [c.frame_num for c in detector.process_frame(FrameTimecode(i, rate),
                                                                           _downscaled_bgr(chunk[k], factor))]
            keep = [k for k, i in enumerate(idx.tolist()) if i in wanted]
            if keep:
                small = spatial_transform(chunk[keep], protocol)          # float [n, 3, h, w] in [0, 1]
                small = (small * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
                for k, s in zip(keep, small):
                    for j in wanted[int(idx[k])]:
                        grid[j] = s
        cut_frames += [c.frame_num for c in detector.post_process(FrameTimecode(len(ts) - 1, rate))]
    except MediaError as e:
        raise BadInput("unreadable", str(e)) from e
    frames = torch.stack(grid) if grid else torch.zeros((0, protocol.height, protocol.width, 3), torch.uint8)
    cuts = sorted({round(float(ts[min(f, len(ts) - 1)]), 6) for f in cut_frames if 0 < f < len(ts)})
    mono = wav.float()
    return DecodedVideo(video=video, duration=round(duration, 6), video_duration=round(vdur, 6),
                        audio_duration=round(adur, 6), fps=native_fps, frames=frames, audio=mono,
                        sample_rate=int(sr), audio_16k=resample(mono, sr, MODEL_SAMPLE_RATE).contiguous(),
                        cuts=[c for c in cuts if c < duration])
