"""The ASVA clip protocol (docs/protocol.md, "Clips"), in one place.

Everything that decides *which* pixels and samples a clip is made of lives
here: the frozen :class:`ProtocolConfig` (hashed into every fingerprint),
clip start times, timestamp-based frame selection, the spatial transform,
the audio window and the ImageBind-convention mel spectrogram.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


class ProtocolError(ValueError):
    """Media that cannot be cut into protocol clips (too short, no audio...)."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Every parameter of the clip protocol; hashable, part of fingerprints."""

    name: str = "paper-256"
    num_frames: int = 12
    fps: float = 6.0
    clip_seconds: float = 2.0
    height: int = 256
    width: int = 256
    clips_per_video: int = 3
    sample_rate: int = 16000
    num_mel_bins: int = 128
    mel_frame_length_ms: float = 25.0
    mel_frame_shift_ms: float = 10.0
    mel_target_length: int = 204
    mel_mean: float = -4.268
    mel_std: float = 9.138
    # Tolerance when comparing a frame timestamp with a sampling time: only
    # there to absorb float noise (decord reports float32 timestamps, whose
    # error reaches ~4e-6 s at one minute); far below any frame period.
    timestamp_tolerance: float = 1e-4
    # Protocol track (asva_bench.tracks): "asva-reference" reproduces the reference evaluation's
    # quirks, "corrected" follows the protocol text; the default follows the profile.
    track: str = "asva-reference"

    def __post_init__(self):
        from .tracks import check_track
        check_track(self.track)

    @property
    def audio_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        return fingerprint_of(self.to_dict())

    def replace(self, **changes) -> "ProtocolConfig":
        return dataclasses.replace(self, **changes)


def fingerprint_of(params: dict) -> str:
    """The fingerprint of protocol parameters as written (a results file from before protocol tracks
    has no ``track`` field; its fingerprint is still the hash of what it holds)."""
    blob = json.dumps(params, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


PAPER = ProtocolConfig()
#: TheGreatestHits is 128x256 in the paper.
PAPER_GREATEST_HITS = ProtocolConfig(name="paper-128x256", height=128, width=256)
#: The mini profile works on 64x64 clips so every model and evaluator runs on CPU.
MINI = ProtocolConfig(name="mini-64", height=64, width=64, track="corrected")

PROTOCOLS = {p.name: p for p in (PAPER, PAPER_GREATEST_HITS, MINI)}


# --------------------------------------------------------------------------
# Clip start times
# --------------------------------------------------------------------------
def clip_start_times(video_duration: float, audio_duration: float,
                     cfg: ProtocolConfig = PAPER, source: str = "<media>") -> list[float]:
    """Start times of the test clips: linspace(0, D - T, n), D = min(durations).

    With one clip per video the clip is centred.
    """
    d = min(float(video_duration), float(audio_duration))
    if not math.isfinite(d) or d + 1e-9 < cfg.clip_seconds:
        raise ProtocolError(
            f"{source}: usable duration {d:.3f} s (video {video_duration:.3f} s, audio "
            f"{audio_duration:.3f} s) is shorter than one {cfg.clip_seconds:g} s clip; "
            "remove it from the split file or supply a longer recording")
    last = max(0.0, d - cfg.clip_seconds)
    if cfg.clips_per_video == 1:
        return [last / 2.0]
    return [float(t) for t in np.linspace(0.0, last, cfg.clips_per_video)]


def shifted_audio_start(start: float, shift: float, duration: float, cfg: ProtocolConfig = PAPER,
                        source: str = "<media>") -> float:
    """Start of the audio window a model is given in a shifted-audio control run.

    The window moves ``shift`` seconds later in the same recording, clamped to
    the recording's usable ``duration``; where it then moves less than
    ``shift`` it moves ``shift`` earlier instead (clamped at 0) if that moves it
    further. Clips cut to the recording's end (the protocol's last clip, a
    few ms short on AAC audio) are thereby off by at least ``shift`` minus one
    protocol frame; a recording too short for that is an error.
    """
    shift = abs(float(shift))
    last = max(0.0, duration - cfg.clip_seconds)
    later = min(start + shift, last)
    earlier = max(start - shift, 0.0)
    pick = later if later - start >= start - earlier else earlier
    if abs(pick - start) + 1e-9 < shift - 1.0 / cfg.fps:
        raise ProtocolError(
            f"{source}: an audio window shifted by {shift:g} s from the clip at {start:.3f} s does not fit in "
            f"the {duration:.3f} s recording either way (at most {abs(pick - start):.3f} s); use a smaller "
            "--audio-shift")
    return float(pick)


# --------------------------------------------------------------------------
# Frame selection
# --------------------------------------------------------------------------
def sampling_times(start: float, cfg: ProtocolConfig = PAPER) -> np.ndarray:
    return start + np.arange(cfg.num_frames, dtype=np.float64) / cfg.fps


def select_frame_indices(frame_timestamps, start: float, cfg: ProtocolConfig = PAPER) -> np.ndarray:
    """For t = start + k / fps, the first decoded frame with timestamp >= t.

    When the video runs out, the last frame is repeated.
    """
    ts = np.asarray(frame_timestamps, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ProtocolError("video has no decodable frames")
    times = sampling_times(start, cfg) - cfg.timestamp_tolerance
    idx = np.searchsorted(ts, times, side="left")  # first ts >= time (ts sorted)
    return np.minimum(idx, ts.size - 1).astype(np.int64)


# --------------------------------------------------------------------------
# Spatial transform
# --------------------------------------------------------------------------
def _to_float_tchw(frames) -> torch.Tensor:
    """uint8 [T,H,W,3] (numpy or torch) or float [T,3,H,W] -> float [T,3,H,W] in [0,1]."""
    x = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    if x.ndim != 4:
        raise ProtocolError(f"expected 4-D frames, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise ProtocolError(f"uint8 frames must be [T,H,W,3], got {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[1] != 3:
        raise ProtocolError(f"float frames must be [T,3,H,W], got {tuple(x.shape)}")
    return x.float()


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    top = int(round((H - h) / 2.0))
    left = int(round((W - w) / 2.0))
    return x[..., top:top + h, left:left + w]


def spatial_sizes(H: int, W: int, cfg: ProtocolConfig = PAPER) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The spatial rule's sizes for an H x W frame: (crop to the target aspect (h, w), the resize that
    covers the target (h, w), or None when the crop already has the target size)."""
    th, tw = cfg.height, cfg.width
    if W * th > H * tw:  # too wide
        cw, ch = int(round(H * tw / th)), H
    else:
        cw, ch = W, int(round(W * th / tw))
    if (ch, cw) == (th, tw):
        return (ch, cw), None
    scale = max(th / ch, tw / cw)
    return (ch, cw), (max(th, int(round(ch * scale))), max(tw, int(round(cw * scale))))


def spatial_transform(frames, cfg: ProtocolConfig = PAPER) -> torch.Tensor:
    """Centre-crop to the target aspect, antialiased bilinear resize, centre crop.

    Returns float32 [T, 3, height, width] in [0, 1].
    """
    x = _to_float_tchw(frames)
    th, tw = cfg.height, cfg.width
    crop, resize = spatial_sizes(*x.shape[-2:], cfg)
    # 1) centre crop to the target aspect ratio
    x = center_crop(x, *crop)
    # 2) resize so both sides cover the target, antialiased bilinear
    if resize is not None:
        x = F.interpolate(x, size=resize, mode="bilinear", antialias=True, align_corners=False)
    # 3) centre crop to the exact size (absorbs rounding)
    x = center_crop(x, th, tw)
    return x.clamp_(0.0, 1.0).contiguous()


# --------------------------------------------------------------------------
# Audio window
# --------------------------------------------------------------------------
def to_mono(waveform) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(waveform)) if not torch.is_tensor(waveform) else waveform
    w = w.float()
    if w.ndim == 2:
        # [channels, samples]
        w = w.mean(0)
    if w.ndim != 1:
        raise ProtocolError(f"expected a mono or [channels, samples] waveform, got {tuple(w.shape)}")
    return w


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    if int(orig_sr) == int(new_sr):
        return waveform
    import torchaudio.functional as AF
    return AF.resample(waveform, int(orig_sr), int(new_sr))


def fit_length(waveform: torch.Tensor, n: int) -> torch.Tensor:
    """Centre-crop when longer; zero-pad at the end when shorter.

    Padding at the end keeps sample 0 at the clip's start time, so audio stays
    aligned with the frames (a clip cut short only at its end).
    """
    L = waveform.shape[-1]
    if L > n:
        off = (L - n) // 2
        return waveform[..., off:off + n]
    if L < n:
        return F.pad(waveform, (0, n - L))
    return waveform


def audio_window(waveform, sample_rate: int, start: float, cfg: ProtocolConfig = PAPER,
                 audio_start_time: float = 0.0) -> torch.Tensor:
    """The samples with timestamps in [start, start + T], at cfg.sample_rate.

    ``audio_start_time`` is the timestamp of sample 0 of ``waveform``.
    Returns float32 [cfg.audio_samples].
    """
    w = to_mono(waveform)
    sr = int(sample_rate)
    t0 = start - audio_start_time
    first = max(0, int(math.ceil(t0 * sr - 1e-6)))
    last = int(math.floor((t0 + cfg.clip_seconds) * sr + 1e-6))  # inclusive
    seg = w[first:last + 1]
    seg = resample(seg, sr, cfg.sample_rate)
    return fit_length(seg, cfg.audio_samples).contiguous()


# --------------------------------------------------------------------------
# Mel spectrogram (ImageBind convention)
# --------------------------------------------------------------------------
def _fbank(waveform: torch.Tensor, cfg: ProtocolConfig) -> torch.Tensor:
    from torchaudio.compliance import kaldi
    return kaldi.fbank(
        waveform.unsqueeze(0), htk_compat=True, sample_frequency=cfg.sample_rate,
        use_energy=False, window_type="hanning", num_mel_bins=cfg.num_mel_bins,
        dither=0.0, frame_length=cfg.mel_frame_length_ms, frame_shift=cfg.mel_frame_shift_ms)


def _pad_normalise(fb: torch.Tensor, cfg: ProtocolConfig) -> torch.Tensor:
    """[frames, bins] -> [1, bins, target] normalised, ImageBind's pad/crop rule."""
    mel = fb.transpose(0, 1)
    p = cfg.mel_target_length - mel.shape[1]
    mel = F.pad(mel, (0, p)) if p > 0 else mel[:, :cfg.mel_target_length]
    return ((mel - cfg.mel_mean) / cfg.mel_std).unsqueeze(0)


def waveform_to_mel(waveform: torch.Tensor, cfg: ProtocolConfig = PAPER) -> torch.Tensor:
    """One clip's waveform [samples] -> normalised mel [1, bins, target frames]."""
    w = to_mono(waveform)
    w = w - w.mean()
    return _pad_normalise(_fbank(w, cfg), cfg)


def waveforms_to_mel(waveforms: torch.Tensor, cfg: ProtocolConfig = PAPER, lengths=None) -> torch.Tensor:
    """Batched mel: [B, samples] -> [B, 1, bins, target].

    ``lengths`` (optional, [B]): clip b is ``waveforms[b, :lengths[b]]``; a clip
    shorter than the protocol window then has fewer filterbank frames and is
    padded in the mel domain (how the reference evaluation treats short audio,
    track asva-reference). Without it every clip is the whole row.

    kaldi.fbank has a fixed cost per call (~0.17 s), so clips are concatenated
    (each padded to a whole number of hops) and cut in one call; every Kaldi
    step is per frame, so the frames of each clip are bit-identical to a
    per-clip call (tested).
    """
    w = torch.as_tensor(waveforms).float()
    if w.ndim == 1:
        w = w.unsqueeze(0)
    B, L = w.shape
    hop = int(round(cfg.sample_rate * cfg.mel_frame_shift_ms / 1000))
    win = int(round(cfg.sample_rate * cfg.mel_frame_length_ms / 1000))
    if lengths is not None:
        lengths = [min(int(n), L) for n in lengths]
        if len(lengths) != B:
            raise ValueError(f"{len(lengths)} lengths for {B} waveforms")
        if any(n != L for n in lengths):
            return _ragged_mel([w[b, :n] for b, n in enumerate(lengths)], cfg, hop, win)
    if B == 1 or L % hop != 0 or L < win:
        return torch.stack([waveform_to_mel(x, cfg) for x in w])
    w = w - w.mean(dim=1, keepdim=True)
    fb = _fbank(w.reshape(-1), cfg)  # [B*L/hop - (win/hop - 1), bins]
    per_clip = 1 + (L - win) // hop
    stride = L // hop
    out = [_pad_normalise(fb[i * stride:i * stride + per_clip], cfg) for i in range(B)]
    return torch.stack(out)


def _ragged_mel(clips: list, cfg: ProtocolConfig, hop: int, win: int) -> torch.Tensor:
    """Mel of clips of different lengths in one fbank call: each clip is DC-removed over its own
    samples, zero-padded to whole hops and concatenated; its frames are the ones that lie in it."""
    if any(c.shape[0] < win for c in clips):
        return torch.stack([waveform_to_mel(c, cfg) for c in clips])
    parts, spans, offset = [], [], 0
    for c in clips:
        c = c - c.mean()
        padded = int(math.ceil(c.shape[0] / hop)) * hop
        parts.append(F.pad(c, (0, padded - c.shape[0])))
        spans.append((offset // hop, 1 + (c.shape[0] - win) // hop))
        offset += padded
    fb = _fbank(torch.cat(parts), cfg)
    return torch.stack([_pad_normalise(fb[first:first + n], cfg) for first, n in spans])
