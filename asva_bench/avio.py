"""Audio/video file I/O: probing, decoding protocol clips, writing mp4 clips.

Video frames are read with decord (fast random access, per-frame timestamps),
falling back to PyAV where decord cannot open a file. Audio is read with
PyAV because we need the timestamp of every decoded sample: AAC streams carry
1024 priming samples (docs/protocol.md, "Clips") and only the packet/frame
timestamps tell where sample 0 of the real signal is.

Writing uses PyAV (libx264 yuv420p at default settings like torchvision's
``write_video``, AAC audio) to a temporary name that is renamed at the end,
so a killed writer never leaves a file a reader would accept.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .fsutil import atomic_path
from .protocol import PAPER, ProtocolConfig, ProtocolError, audio_window, clip_start_times, \
    select_frame_indices, shifted_audio_start, spatial_transform


class MediaError(IOError):
    """A media file that cannot be used; the message names the file and the fix."""


@contextmanager
def quiet_native_stderr():
    """Silence what native decoders (decord's bundled FFmpeg) write straight to file descriptor 2.

    On a bad file they print their own lines ("moov atom not found", a C++ source
    location); the MediaError we raise says it all, so those lines never reach
    the user's terminal. Python-level stderr (sys.stderr) is flushed first and
    restored after.

    Only on the main thread: file descriptor 2 belongs to the whole process, and a
    decoding thread that swapped it would also swallow the main thread's progress
    bar (and two threads swapping it could leave it lost). Decoding threads read
    files the main thread already checked (the scoring stage's clips are opened by
    PyAV first, whose messages go to Python logging), so they rarely have anything
    to silence.
    """
    import sys
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --------------------------------------------------------------------------
# Probing and reading
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MediaInfo:
    path: str
    video_duration: float
    audio_duration: float  # 0.0 when there is no audio stream
    fps: float
    num_frames: int
    width: int
    height: int
    has_audio: bool
    audio_sample_rate: int


def _open_av(path):
    import av
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found; check the dataset root and split files")
    try:
        return av.open(str(path))
    except Exception as e:  # av.error.InvalidDataError and friends
        raise MediaError(f"{path}: cannot open as a video container ({e}); "
                         "the file is corrupt or truncated: re-download or re-encode it") from e


def probe(path) -> MediaInfo:
    """Durations and stream facts, from container metadata and decoded timestamps."""
    with _open_av(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream; remove it from the split file")
        vs = c.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 0.0)
        n = int(vs.frames or 0)
        vdur = float(vs.duration * vs.time_base) if vs.duration else float(c.duration or 0) / 1e6
        has_audio = bool(c.streams.audio)
        adur, asr = 0.0, 0
        if has_audio:
            a = c.streams.audio[0]
            asr = int(a.sample_rate or a.codec_context.sample_rate or 0)
            if a.duration:
                adur = float(a.duration * a.time_base)
                # the container duration of AAC includes the priming samples
                if a.start_time is not None and a.start_time < 0:
                    adur += float(a.start_time * a.time_base)
            else:
                adur = float(c.duration or 0) / 1e6
        return MediaInfo(str(path), vdur, adur, fps, n, vs.width, vs.height, has_audio, asr)


def _mono_float(arr: np.ndarray) -> np.ndarray:
    """[channels, samples] of any sample format -> mono float32 [samples] (mean of the channels)."""
    if arr.dtype.kind == "i":
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return arr.astype(np.float32).mean(0)


def read_audio(path) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream to mono float32, sample 0 at time 0.

    Samples the decoder returns with negative timestamps (AAC priming that
    the container's edit list did not remove) are dropped, so sample k has
    timestamp k / sample_rate whatever the library version does.
    """
    with _open_av(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio stream; ASVA needs the audio track "
                             "(re-mux the original audio or drop the file from the split)")
        st = c.streams.audio[0]
        chunks, first_time, sr = [], None, None
        try:
            for frame in c.decode(st):
                arr = frame.to_ndarray()
                channels = len(frame.layout.channels)
                # [channels, samples]; converted to mono float once, after the loop (the same
                # element-wise operations as frame by frame, without their per-frame cost)
                chunks.append(arr.reshape(channels, -1) if frame.format.is_planar
                              else arr.reshape(-1, channels).T)
                sr = frame.sample_rate
                if first_time is None:
                    first_time = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
        except Exception as e:
            raise MediaError(f"{path}: audio stream is corrupt ({e}); re-encode the file") from e
        if not chunks:
            raise MediaError(f"{path}: audio stream decodes to no samples; re-encode the file")
        if len({(a.shape[0], a.dtype) for a in chunks}) == 1:
            wav = _mono_float(np.concatenate(chunks, axis=1))
        else:  # the layout changes inside the stream: frame by frame
            wav = np.concatenate([_mono_float(a) for a in chunks])
        declared = float(st.duration * st.time_base) if st.duration else None
        if first_time and first_time < 0:
            wav = wav[int(round(-first_time * sr)):]
        elif first_time and first_time > 0:
            wav = np.concatenate([np.zeros(int(round(first_time * sr)), np.float32), wav])
        if declared and st.start_time is not None and st.start_time < 0:
            declared += float(st.start_time * st.time_base)
        if declared and declared > 0:
            # the decoder also returns the encoder's final padding: cut to the
            # stream's declared duration
            wav = wav[:int(round(declared * sr))]
        return torch.from_numpy(np.ascontiguousarray(wav)), int(sr)


class VideoFrames:
    """Random access to a video's frames with their presentation timestamps."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise MediaError(f"{self.path}: file not found; check the dataset root and split files")
        self._vr = None
        self._frames = None
        try:
            import decord
            with quiet_native_stderr():
                self._vr = decord.VideoReader(str(self.path), num_threads=1)
                self.timestamps = self._vr.get_frame_timestamp(range(len(self._vr)))[:, 0].astype(np.float64)
        except Exception:
            self._vr = None
            self._decode_with_pyav()
        if len(self.timestamps) == 0:
            raise MediaError(f"{self.path}: video stream has no decodable frames; re-encode it")

    def _decode_with_pyav(self):
        frames, ts = [], []
        with _open_av(self.path) as c:
            if not c.streams.video:
                raise MediaError(f"{self.path}: no video stream; remove it from the split file")
            try:
                for f in c.decode(video=0):
                    frames.append(f.to_ndarray(format="rgb24"))
                    ts.append(float(f.pts * f.time_base) if f.pts is not None else len(ts))
            except Exception as e:
                if not frames:
                    raise MediaError(f"{self.path}: video stream is corrupt ({e}); re-encode it") from e
        order = np.argsort(ts, kind="stable")
        self._frames = np.stack([frames[i] for i in order]) if frames else np.zeros((0, 1, 1, 3), np.uint8)
        self.timestamps = np.asarray(ts, np.float64)[order]

    def __len__(self):
        return len(self.timestamps)

    @property
    def duration(self) -> float:
        # last timestamp plus one frame period
        if len(self.timestamps) > 1:
            return float(self.timestamps[-1] + np.median(np.diff(self.timestamps)))
        return float(self.timestamps[-1]) if len(self.timestamps) else 0.0

    def get(self, indices) -> np.ndarray:
        """uint8 [N, H, W, 3]."""
        indices = np.asarray(indices, np.int64)
        if self._frames is not None:
            return self._frames[indices]
        uniq, inv = np.unique(indices, return_inverse=True)
        try:
            with quiet_native_stderr():
                got = self._vr.get_batch(list(map(int, uniq))).asnumpy()
        except Exception as e:
            raise MediaError(f"{self.path}: frames {uniq.tolist()} cannot be decoded ({e}); "
                             "the file is truncated or corrupt: re-encode it") from e
        return got[inv]


@dataclass
class DecodedClip:
    """One protocol clip: frames [T,3,H,W] float in [0,1], audio [samples], its start time.

    ``model_audio`` is set only for a shifted-audio control run: the window
    the model is given instead of ``audio`` (which stays the clip's own).
    ``audio_length`` is the number of real samples at the start of ``audio``
    when the track pads short windows in the mel domain (asva-reference; None:
    all of it); ``mux_audio`` [C, L] is what a generated clip is muxed with when
    that differs from ``audio`` (asva-reference: the whole-frame window).
    """
    frames: torch.Tensor
    audio: torch.Tensor
    start: float
    frame_indices: np.ndarray
    model_audio: torch.Tensor | None = None
    audio_length: int | None = None
    model_audio_length: int | None = None
    mux_audio: torch.Tensor | None = None
    frame_times: np.ndarray | None = None


def decode_protocol_clips(path, cfg: ProtocolConfig = PAPER, starts=None,
                          audio_shift: float = 0.0) -> list[DecodedClip]:
    """Decode a video and cut the protocol's test clips from it, as the track says
    (asva_bench.tracks: the asva-reference track reads media like the reference code).

    ``audio_shift`` (seconds, control runs only) also cuts each clip's
    ``model_audio``: the window ``shifted_audio_start`` picks.
    """
    from .tracks import rules
    if rules(cfg).media == "reference":
        from .reference_io import decode_reference_clips
        return decode_reference_clips(path, cfg, starts=starts, audio_shift=audio_shift)
    path = Path(path)
    vf = VideoFrames(path)
    wav, sr = read_audio(path)
    duration = min(vf.duration, len(wav) / sr)
    if starts is None:
        try:
            starts = clip_start_times(vf.duration, len(wav) / sr, cfg, source=str(path))
        except ProtocolError as e:
            raise MediaError(str(e)) from e
    clips = []
    for s in starts:
        idx = select_frame_indices(vf.timestamps, s, cfg)
        frames = spatial_transform(vf.get(idx), cfg)
        clip = DecodedClip(frames, audio_window(wav, sr, s, cfg), float(s), idx)
        if audio_shift:
            try:
                s_audio = shifted_audio_start(float(s), float(audio_shift), duration, cfg, source=str(path))
            except ProtocolError as e:
                raise MediaError(str(e)) from e
            clip.model_audio = audio_window(wav, sr, s_audio, cfg)
        clips.append(clip)
    return clips


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
#: float frames in [0, 1] -> uint8: "round" to nearest (mini profile), or "truncate" as the reference
#: pipeline does (``(x * 255).byte()``: floor for values in [0, 255]; paper profile).
QUANTISATIONS = ("round", "truncate")


def to_uint8_frames(frames, quantisation: str = "round") -> np.ndarray:
    """float [T,3,H,W] in [0,1] or uint8 [T,H,W,3] -> uint8 [T,H,W,3]."""
    if quantisation not in QUANTISATIONS:
        raise ValueError(f"unknown quantisation {quantisation!r}; one of {QUANTISATIONS}")
    if torch.is_tensor(frames):
        frames = frames.detach().cpu()
        if frames.dtype != torch.uint8:
            x = frames.float().clamp(0, 1) * 255.0
            frames = (x.round() if quantisation == "round" else x).to(torch.uint8).permute(0, 2, 3, 1)
        return np.ascontiguousarray(frames.numpy())
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        x = np.clip(arr, 0, 1) * 255.0
        arr = (x.round() if quantisation == "round" else x).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(arr)


def write_clip(path, frames, fps: float, audio=None, sample_rate: int = 16000,
               lossless: bool = False, preset: str | None = None, threads: int | None = None,
               quantisation: str = "round", keep_channels: bool = False, x264_params: str | None = None) -> Path:
    """Write an mp4 (h264 yuv420p + AAC) atomically.

    Default settings follow torchvision's write_video (libx264 defaults), which
    the paper's numbers were made with; ``lossless`` uses crf 0 (part of the
    run fingerprint). ``preset`` is only for the synthetic-data builder.
    ``threads`` fixes the encoder's thread count (None: x264's automatic
    count, whose output depends on the machine) and ``x264_params`` passes
    x264 options; generated clips are written with :func:`write_generated_clip`
    (:class:`ClipEncoding`: deterministic settings). Audio is muxed mono
    unless ``keep_channels`` (a [C, samples] array: mono or stereo, as
    torchvision's writer lays it out).
    """
    import av
    from fractions import Fraction
    path = Path(path)
    rgb = to_uint8_frames(frames, quantisation)
    T, H, W, _ = rgb.shape
    if H % 2 or W % 2:
        raise ValueError(f"{path}: yuv420p needs even frame sizes, got {W}x{H}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as c:
            opts = {}
            if lossless:
                opts["crf"] = "0"
            if preset:
                opts["preset"] = preset
            if threads is not None:
                opts["threads"] = str(int(threads))
            if x264_params:
                opts["x264-params"] = x264_params
            vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options=opts)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
            a_stream = None
            if audio is not None:
                a = audio_channels_np(audio) if keep_channels else to_mono_np(audio)[None, :]
                layout = "stereo" if a.shape[0] == 2 else "mono"
                a_stream = c.add_stream("aac", rate=int(sample_rate))
                a_stream.layout = layout
                # mono as packed float (unchanged since the first datasets were written), stereo planar
                fmt = "fltp" if layout == "stereo" else "flt"
            for i in range(T):
                for p in vs.encode(av.VideoFrame.from_ndarray(rgb[i], format="rgb24")):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
            if a_stream is not None:
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format=fmt, layout=layout)
                af.sample_rate, af.pts = int(sample_rate), 0
                for p in a_stream.encode(af):
                    c.mux(p)
                for p in a_stream.encode(None):
                    c.mux(p)
    return path


@dataclass(frozen=True)
class ClipEncoding:
    """How generated clips are written; recorded as the run's "encoding" block (in its fingerprint).

    x264 at its default settings (as torchvision's write_video) with two
    changes that make the same run write the same bytes on every machine and in
    every process (tested): one thread (x264's automatic thread count depends on
    the machine, and its output on the count) and x264's plain C code paths
    (``asm=0``): with its SIMD code, x264's lookahead on frames as small as the
    mini profile's 64 x 64 reads memory it did not write, and 64 x 64 clips of
    one tensor came out different in about half of the encodes, single-threaded
    (measured); which SIMD code runs also depends on the CPU. The C code makes
    the same decisions as x264's defaults, with its own float rounding.
    """
    quantisation: str = "round"
    lossless: bool = False
    threads: int = 1
    x264_params: str = "asm=0"

    def to_dict(self) -> dict:
        return {"codec": "libx264", "pix_fmt": "yuv420p", "x264_settings": "defaults", "lossless": self.lossless,
                "threads": self.threads, "x264_params": self.x264_params, "quantisation": self.quantisation,
                "audio": "aac"}


def encoding_for(profile, lossless: bool = False) -> ClipEncoding:
    """A profile's clip encoding: paper writes like the reference pipeline ((x * 255).byte(),
    truncation); mini keeps rounding to nearest (asva_bench.profiles.Profile.quantisation)."""
    from .profiles import get_profile
    return ClipEncoding(quantisation=get_profile(profile).quantisation, lossless=bool(lossless))


def write_generated_clip(path, frames, cfg: ProtocolConfig, encoding: ClipEncoding, audio=None) -> Path:
    """A generated clip: the protocol's fps, ``encoding``'s settings, the given audio muxed in
    (1-D mono, or [C, samples] kept as mono / stereo, as the reference's writer does)."""
    keep = audio is not None and getattr(audio, "ndim", 1) == 2
    return write_clip(path, frames, cfg.fps, audio=audio, sample_rate=cfg.sample_rate,
                      lossless=encoding.lossless, threads=encoding.threads, x264_params=encoding.x264_params,
                      quantisation=encoding.quantisation, keep_channels=keep)


def audio_channels_np(audio) -> np.ndarray:
    """[C, samples] float32 in [-1, 1] with C of 1 or 2 (more channels are averaged to mono)."""
    a = audio.detach().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio)
    a = np.atleast_2d(a.astype(np.float32))
    if a.shape[0] > 2:
        a = a.mean(0, keepdims=True)
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0))


def to_mono_np(audio) -> np.ndarray:
    a = audio.detach().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio)
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a.mean(0)
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0))
