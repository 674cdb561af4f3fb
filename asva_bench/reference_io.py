"""Media reading of the reference evaluation (track ``asva-reference``), reimplemented on PyAV.

The paper's numbers were made by a loader built on torchvision's
``video_reader`` backend. What it does, and what this module reproduces
(docs/protocol.md, "Protocol tracks"):

* **Durations** come from the container metadata: each stream's duration
  rescaled to integer microseconds (round to nearest), times 1e-6. Clip starts
  are ``linspace(0, D - 2, n)`` with D = min(video, audio); one clip per file
  (how generated clips are read) is centred: start = (D - 2) / 2.
* **Timestamps** are integer microseconds too (the decoder's frame
  timestamp rescaled, round to nearest, halves away from zero) returned as
  ``us * 1e-6`` seconds. Reading a clip seeks to ``int(start * 1e6)`` us
  (the float truncated), minus the decoder's 10 us seek margin, backwards to a
  key frame; frames before the truncated start are dropped.
* **Frame pick**: walk the frames while ``pts <= start + 2 + 1/12``; keep a
  frame when ``pts >= t`` and then add 1/6 to ``t`` (float accumulation from
  ``t = start``); stop at 12 frames; repeat the last frame when short. A frame
  exactly on the 1/6 s grid whose microsecond timestamp rounds down is
  skipped (a 6 fps 12-frame file reads as frames 0, 1, 3, 4, ..., 11, 11).
* **Audio**: the whole decoded audio frames (AAC: 1024 samples) whose
  timestamp lies in [start, start + 2], concatenated, no priming trim of its
  own (whatever the decoder does), resampled to 16 kHz with torchaudio's
  defaults, centre-cropped to 32000 samples when longer (a shorter window is
  padded in the mel domain, see :func:`asva_bench.protocol.waveforms_to_mel`).
  The mel (ImageBind's ``waveform2melspec``) removes the mean over all
  channels and its filterbank reads channel 0: stereo reaches the mel as its
  first channel.
* **Spatial**: frames in [0, 1]; crop to the target aspect with truncated
  sizes and floor-halved offsets; bilinear antialiased resize to exactly the
  target size.

RGB conversion is swscale's as torchvision's decoder calls it: the area
filter, BT.601 coefficients and the range the pixel format implies, whatever
colour space the stream is tagged with (PyAV would otherwise honour a BT.709
tag: up to 15/255 apart, measured). Each clip opens the file afresh (the
reference re-initialises its decoder on every seek).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from .protocol import ProtocolConfig, ProtocolError

#: torchvision's decoder seeks this many microseconds before the requested start.
SEEK_MARGIN_US = 10


# --------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------
def to_microseconds(ts: int, time_base) -> int:
    """``ts`` (in ``time_base`` units) as integer microseconds, rounded to nearest with halves away
    from zero (FFmpeg's av_rescale_q), in exact integer arithmetic."""
    tb = Fraction(time_base)
    num = int(ts) * tb.numerator * 1_000_000
    den = tb.denominator
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def us_seconds(us: int) -> float:
    """Microseconds -> float seconds the way torchvision computes them (a product, not a quotient)."""
    return float(us) * 1e-6


def seek_start_us(start: float) -> int:
    """The decoder's start offset: the float start in microseconds, truncated toward zero."""
    return int(start * 1e6)


def clip_seconds(cfg: ProtocolConfig) -> float:
    return cfg.num_frames / cfg.fps


def frame_step(cfg: ProtocolConfig) -> float:
    return 1.0 / cfg.fps


class FrameWalk:
    """The reference's frame pick, fed one decoded timestamp at a time (frames after the seek, in
    order): ``offer(ts)`` answers "keep", "skip" or "stop"."""

    def __init__(self, start: float, cfg: ProtocolConfig):
        self.step = frame_step(cfg)
        self.bound = start + clip_seconds(cfg) + self.step / 2.0
        self.t = start
        self.wanted = cfg.num_frames
        self.kept = 0

    def offer(self, ts: float) -> str:
        if self.kept == self.wanted or not ts <= self.bound:
            return "stop"
        if ts >= self.t:
            self.t += self.step  # float accumulation, as the reference
            self.kept += 1
            return "keep"
        return "skip"


def walk_frames(timestamps, start: float, cfg: ProtocolConfig) -> list[int]:
    """Positions of the frames the reference picks among ``timestamps`` (seconds, the frames decoded
    after the seek, in order), the last one repeated up to ``cfg.num_frames``."""
    walk, picked = FrameWalk(start, cfg), []
    for i, ts in enumerate(timestamps):
        verdict = walk.offer(ts)
        if verdict == "stop":
            break
        if verdict == "keep":
            picked.append(i)
    if not picked:
        raise ProtocolError(f"no video frame with a timestamp in [{start:.6f}, {walk.bound:.6f}] s")
    return picked + [picked[-1]] * (cfg.num_frames - len(picked))


def clip_starts(duration: float, cfg: ProtocolConfig, num_clips: int, source: str = "<media>") -> list[float]:
    """The reference's clip starts for a usable duration D: centred for one clip, else
    ``np.linspace(0, D - T, num_clips)``."""
    T = clip_seconds(cfg)
    if not np.isfinite(duration) or duration + 1e-9 < T and num_clips > 1:
        raise ProtocolError(f"{source}: usable duration {duration:.3f} s is shorter than one {T:g} s clip; "
                            "remove it from the split file or supply a longer recording")
    if num_clips == 1:
        return [(duration - T) / 2.0]
    return [float(s) for s in np.linspace(0.0, duration - T, num=num_clips, endpoint=True)]


# --------------------------------------------------------------------------
# Container access
# --------------------------------------------------------------------------
def _open(path):
    from .avio import _open_av
    return _open_av(path)


@dataclass(frozen=True)
class StreamInfo:
    video_duration: float
    audio_duration: float
    audio_rate: int


def stream_info(path) -> StreamInfo:
    """Stream durations from the container metadata (microseconds, rounded) and the audio rate."""
    from .avio import MediaError
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream; remove it from the split file")
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio stream; ASVA needs the audio track "
                             "(re-mux the original audio or drop the file from the split)")
        vs, a = c.streams.video[0], c.streams.audio[0]
        if vs.duration is None or a.duration is None:
            raise MediaError(f"{path}: the container declares no stream duration, which the asva-reference "
                             "track reads; remux the file (ffmpeg -i IN -c copy OUT) or score with --track corrected")
        return StreamInfo(us_seconds(to_microseconds(vs.duration, vs.time_base)),
                          us_seconds(to_microseconds(a.duration, a.time_base)),
                          int(a.codec_context.sample_rate or a.rate or 0))


def _seek(container, start_us: int) -> None:
    """Position the demuxer as torchvision's decoder does for a start offset in microseconds."""
    if start_us != 0:
        offset = 0 if start_us <= SEEK_MARGIN_US else start_us - SEEK_MARGIN_US
        container.seek(offset, backward=True, any_frame=False)


def _frames_from(container, stream, start_us: int):
    """(decoded frame, its pts in integer microseconds) from ``start_us`` on, as torchvision's decoder
    yields them: seek like it, skip frames without pts or before the start (its own start condition)."""
    _seek(container, start_us)
    for f in container.decode(stream):
        if f.pts is None:
            continue
        us = to_microseconds(f.pts, stream.time_base)
        if us >= start_us:
            yield f, us


def torchvision_rgb(frame) -> np.ndarray:
    """uint8 [H, W, 3]: swscale as torchvision's video_reader runs it (SWS_AREA, no colour space
    details set: BT.601, the range of the pixel format)."""
    full = frame.format.name.startswith("yuvj")
    return frame.to_ndarray(format="rgb24", interpolation="AREA", src_colorspace="ITU601",
                            dst_colorspace="ITU601", src_color_range="JPEG" if full else "MPEG",
                            dst_color_range="JPEG")


def read_clip_frames(path, start: float, cfg: ProtocolConfig) -> tuple[np.ndarray, list[float]]:
    """The reference's frames of the clip at ``start``: uint8 [num_frames, H, W, 3] and their timestamps."""
    from .avio import MediaError
    start_us = seek_start_us(max(start, 0.0))
    walk = FrameWalk(start, cfg)
    kept, times = [], []
    with _open(path) as c:
        try:
            for f, us in _frames_from(c, c.streams.video[0], start_us):
                verdict = walk.offer(us_seconds(us))
                if verdict == "stop":
                    break
                if verdict == "keep":  # only kept frames are converted to RGB
                    kept.append(torchvision_rgb(f))
                    times.append(us_seconds(us))
        except Exception as e:
            if not kept:
                raise MediaError(f"{path}: video stream is corrupt ({e}); re-encode it") from e
    if not kept:
        raise MediaError(f"{path}: no video frame in the clip at {start:.3f} s (asva-reference reader); "
                         "the file is shorter than its metadata says: re-encode it")
    kept += [kept[-1]] * (cfg.num_frames - len(kept))
    times += [times[-1]] * (cfg.num_frames - len(times))
    return np.stack(kept), times


def _planar(frame) -> np.ndarray:
    """A decoded audio frame as float32 [channels, samples]."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: [1, samples * channels]
        arr = arr.reshape(-1, channels).T
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_audio_frames(path, start: float, cfg: ProtocolConfig) -> tuple[list[np.ndarray], list[float], int]:
    """The decoded audio frames whose timestamp lies in [start, start + T]: ([C, n] arrays, their
    timestamps in seconds, the sample rate)."""
    from .avio import MediaError
    start_us = seek_start_us(start)
    end = start + clip_seconds(cfg)
    chunks, times, rate = [], [], 0
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio stream; ASVA needs the audio track "
                             "(re-mux the original audio or drop the file from the split)")
        try:
            for f, us in _frames_from(c, c.streams.audio[0], start_us):
                ts = us_seconds(us)
                if not ts <= end:
                    break
                if ts >= start:
                    chunks.append(_planar(f))
                    times.append(ts)
                    rate = int(f.sample_rate)
        except Exception as e:
            raise MediaError(f"{path}: audio stream is corrupt ({e}); re-encode the file") from e
    if not chunks:
        raise MediaError(f"{path}: no decoded audio frame starts in [{start:.3f}, {end:.3f}] s "
                         "(asva-reference reader); the audio track is shorter than the video or corrupt")
    return chunks, times, rate


@dataclass
class ReferenceAudio:
    """One clip's audio as the reference evaluation sees it."""
    window: torch.Tensor   # [C, L'] the whole-frame window at 16 kHz (what a generated clip is muxed with)
    mel_input: torch.Tensor  # [L <= audio_samples]: centre-cropped, mean of all channels removed, channel 0

    def padded(self, n: int) -> torch.Tensor:
        """``mel_input`` zero-padded at the end to ``n`` samples (its length travels beside it)."""
        x = self.mel_input
        return torch.nn.functional.pad(x, (0, n - x.shape[-1])) if x.shape[-1] < n else x


def reference_audio(chunks: list[np.ndarray], sample_rate: int, cfg: ProtocolConfig) -> ReferenceAudio:
    """Concatenated whole frames -> torchaudio-default resample -> centre crop -> channel 0."""
    import torchaudio.functional as AF
    wav = torch.from_numpy(np.concatenate(chunks, axis=1))
    wav = AF.resample(wav, orig_freq=int(sample_rate), new_freq=int(cfg.sample_rate))
    n = cfg.audio_samples
    clip = wav
    if clip.shape[1] > n:
        off = (clip.shape[1] - n) // 2
        clip = clip[:, off:off + n]
    clip = clip - clip.mean()
    return ReferenceAudio(wav, clip[0].contiguous())


# --------------------------------------------------------------------------
# Spatial transform
# --------------------------------------------------------------------------
def reference_spatial(frames: np.ndarray, cfg: ProtocolConfig) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, height, width] in [0, 1], the reference's crop and resize."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    H, W = x.shape[-2:]
    target, current = float(cfg.height) / cfg.width, float(H) / W
    if target >= current:
        w = int(H / target)
        x = x[..., (W - w) // 2:(W - w) // 2 + w]
    else:
        h = int(W * target)
        x = x[..., (H - h) // 2:(H - h) // 2 + h, :]
    if tuple(x.shape[-2:]) != (cfg.height, cfg.width):
        x = resize(x, [cfg.height, cfg.width], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return x.contiguous()


# --------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------
def decode_reference_clips(path, cfg: ProtocolConfig, starts=None, audio_shift: float = 0.0, num_clips=None):
    """The asva-reference counterpart of :func:`asva_bench.avio.decode_protocol_clips`."""
    from .avio import DecodedClip, MediaError
    from .protocol import shifted_audio_start
    info = stream_info(path)
    duration = min(info.video_duration, info.audio_duration)
    if starts is None:
        try:
            starts = clip_starts(duration, cfg, num_clips or cfg.clips_per_video, source=str(path))
        except ProtocolError as e:
            raise MediaError(str(e)) from e
    clips = []
    for s in starts:
        raw, times = read_clip_frames(path, s, cfg)
        audio = reference_audio(*_audio_at(path, s, cfg), cfg)
        clip = DecodedClip(reference_spatial(raw, cfg), audio.padded(cfg.audio_samples), float(s),
                           np.arange(cfg.num_frames), audio_length=int(audio.mel_input.shape[-1]),
                           mux_audio=audio.window, frame_times=np.asarray(times))
        if audio_shift:
            try:
                s_audio = shifted_audio_start(float(s), float(audio_shift), duration, cfg, source=str(path))
            except ProtocolError as e:
                raise MediaError(str(e)) from e
            shifted = reference_audio(*_audio_at(path, s_audio, cfg), cfg)
            clip.model_audio = shifted.padded(cfg.audio_samples)
            clip.model_audio_length = int(shifted.mel_input.shape[-1])
        clips.append(clip)
    return clips


def _audio_at(path, start, cfg):
    chunks, _, rate = read_audio_frames(path, start, cfg)
    return chunks, rate


def decode_reference_generated(path, cfg: ProtocolConfig):
    """A generated clip file as the reference evaluation reads it: one centred clip."""
    return decode_reference_clips(path, cfg, num_clips=1)[0]
