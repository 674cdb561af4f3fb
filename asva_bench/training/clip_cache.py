"""Decode each training video once; cut protocol clips at any start from memory.

Training the sync classifier needs K shifted clips of every video at every
step, and the embedding model needs random clips; decoding mp4 per step is
far too slow on CPU. So each video is decoded once into one safetensors file:

* ``frames``: uint8 [N, H, W, 3], every decoded frame after the protocol's
  spatial transform (``cfg.height`` x ``cfg.width``), computed in uint8
  (within 1.5/255 of the protocol's float frames);
* ``timestamps``: float64 [N] presentation times of those frames;
* ``fbank``: float32 [M, bins] the Kaldi log-mel filterbank of the whole
  16 kHz track (hop 10 ms), *before* padding and normalisation.

A clip starting at ``s`` (a multiple of the 10 ms hop) is then exactly the
protocol's clip: frames by :func:`select_frame_indices` on the stored
timestamps, mel = fbank rows ``100 s .. 100 s + 197`` padded to 204 and
normalised. Kaldi's fbank works frame by frame and removes each frame's DC
offset, so rows of the whole-track fbank equal those of the clip's own
fbank (the clip-level mean removal of :func:`waveform_to_mel` cancels out);
tests/test_sync_classifier.py checks both against the protocol decoder.

Files live in ``<cache dir>/<video_id>.safetensors``, written atomically;
rebuilding skips files that are already complete, so an interrupted build
resumes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import ProtocolConfig, select_frame_indices

CACHE_FORMAT = 2


class ClipCacheError(ValueError):
    """A cache file or request that cannot be served; the message names the file and the fix."""


def hop_samples(cfg: ProtocolConfig) -> int:
    return int(round(cfg.sample_rate * cfg.mel_frame_shift_ms / 1000))


def clip_fbank_rows(cfg: ProtocolConfig) -> int:
    """Filterbank frames inside one clip's audio window (198 for 2 s at 16 kHz)."""
    win = int(round(cfg.sample_rate * cfg.mel_frame_length_ms / 1000))
    return 1 + (cfg.audio_samples - win) // hop_samples(cfg)


def hop_seconds(cfg: ProtocolConfig) -> float:
    return cfg.mel_frame_shift_ms / 1000.0


def quantise_start(start: float, cfg: ProtocolConfig) -> float:
    """Round a start time down to the mel hop grid (10 ms), where cached cuts are exact."""
    h = hop_seconds(cfg)
    return round(math.floor(start / h + 1e-6) * h, 6)


@dataclass
class CachedVideo:
    """One decoded video, ready to be cut into protocol clips."""
    video_id: str
    class_name: str
    text: str
    frames: torch.Tensor        # uint8 [N, H, W, 3]
    timestamps: np.ndarray      # float64 [N]
    fbank: torch.Tensor         # float32 [M, bins]
    duration: float             # min(video, audio) seconds
    cfg: ProtocolConfig

    def max_start(self) -> float:
        """Latest start of a full clip inside both streams."""
        return self.duration - self.cfg.clip_seconds

    def _fbank_row(self, start: float) -> int:
        r = start / hop_seconds(self.cfg)
        ri = int(round(r))
        if abs(r - ri) > 1e-4:
            raise ClipCacheError(f"{self.video_id}: clip start {start} s is not on the {hop_seconds(self.cfg)} s "
                                 "mel hop grid; round it with quantise_start()")
        return ri

    def frame_indices(self, start: float) -> np.ndarray:
        return select_frame_indices(self.timestamps, start, self.cfg)

    def clip_frames_uint8(self, start: float) -> torch.Tensor:
        """uint8 [T, H, W, 3] of the protocol clip at ``start``."""
        return self.frames[torch.from_numpy(self.frame_indices(start))]

    def clip_frames(self, start: float) -> torch.Tensor:
        """float [T, 3, H, W] in [0, 1]."""
        return self.clip_frames_uint8(start).permute(0, 3, 1, 2).float().div_(255.0)

    def clip_mel(self, start: float) -> torch.Tensor:
        """Normalised mel [1, bins, target] of the clip at ``start`` (exactly the protocol's)."""
        cfg = self.cfg
        r0 = self._fbank_row(start)
        n = clip_fbank_rows(cfg)
        if r0 < 0 or r0 + n > self.fbank.shape[0]:
            raise ClipCacheError(f"{self.video_id}: a clip at {start:.2f} s needs audio up to "
                                 f"{start + cfg.clip_seconds:.2f} s but the cached track ends at "
                                 f"{(self.fbank.shape[0] - 1) * hop_seconds(cfg) + cfg.mel_frame_length_ms / 1000:.2f} s; "
                                 "choose starts in [0, max_start()]")
        mel = self.fbank[r0:r0 + n].t()
        p = cfg.mel_target_length - n
        mel = F.pad(mel, (0, p)) if p > 0 else mel[:, :cfg.mel_target_length]
        return ((mel - cfg.mel_mean) / cfg.mel_std).unsqueeze(0)

    def clip_mels(self, starts: Sequence[float]) -> torch.Tensor:
        return torch.stack([self.clip_mel(s) for s in starts])

    def clips(self, starts: Sequence[float]) -> torch.Tensor:
        """float [len(starts), T, 3, H, W]."""
        return torch.stack([self.clip_frames(s) for s in starts])


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------
def _full_track_fbank(wav: torch.Tensor, cfg: ProtocolConfig) -> torch.Tensor:
    from ..protocol import _fbank
    w = wav.float()
    win = int(round(cfg.sample_rate * cfg.mel_frame_length_ms / 1000))
    if w.numel() < win:
        return torch.zeros(0, cfg.num_mel_bins)
    return _fbank(w - w.mean(), cfg)


def spatial_transform_uint8(frames: np.ndarray, cfg: ProtocolConfig) -> torch.Tensor:
    """The protocol's spatial transform on uint8 [T,H,W,3] frames, computed in uint8.

    Same crop / antialiased-bilinear resize / crop steps as
    :func:`asva_bench.protocol.spatial_transform`, but torch's uint8
    channels-last kernel is ~30x faster than the float path on CPU; its output
    is within 1/255 of the float result rounded (tested).
    """
    from ..protocol import center_crop
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    H, W = x.shape[-2:]
    th, tw = cfg.height, cfg.width
    if W * th > H * tw:
        cw, ch = int(round(H * tw / th)), H
    else:
        cw, ch = W, int(round(W * th / tw))
    x = center_crop(x, ch, cw)
    if (ch, cw) != (th, tw):
        scale = max(th / ch, tw / cw)
        nh, nw = max(th, int(round(ch * scale))), max(tw, int(round(cw * scale)))
        x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(nh, nw), mode="bilinear",
                          antialias=True, align_corners=False)
    return center_crop(x, th, tw).permute(0, 2, 3, 1).contiguous()


def decode_video(path, cfg: ProtocolConfig, batch: int = 64) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, float]:
    """Decode all frames (protocol spatial transform, uint8) and the track's fbank."""
    from ..avio import MediaError, VideoFrames, read_audio
    from ..protocol import resample, to_mono
    vf = VideoFrames(path)
    n = len(vf)
    frames = torch.cat([spatial_transform_uint8(vf.get(np.arange(i, min(n, i + batch))), cfg)
                        for i in range(0, n, batch)])
    wav, sr = read_audio(path)
    wav = resample(to_mono(wav), sr, cfg.sample_rate)
    duration = min(vf.duration, wav.numel() / cfg.sample_rate)
    if duration < cfg.clip_seconds:
        raise MediaError(f"{path}: usable duration {duration:.2f} s is shorter than one "
                         f"{cfg.clip_seconds:g} s clip; remove it from the split file")
    return frames, vf.timestamps.astype(np.float64), _full_track_fbank(wav, cfg), float(duration)


def _cache_file(cache_dir: Path, video_id: str) -> Path:
    return Path(cache_dir) / f"{video_id}.safetensors"


def _source_key(path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_one(job) -> tuple[str, dict | None, str | None]:
    """Decode one video into its cache file (runs in a worker); returns (id, record, error)."""
    from safetensors.torch import save_file

    from ..avio import atomic_path
    cache_dir, video_id, path, cls, text, cfg_dict = job
    cfg = ProtocolConfig(**cfg_dict)
    dst = _cache_file(Path(cache_dir), video_id)
    try:
        frames, ts, fbank, duration = decode_video(path, cfg)
    except Exception as e:  # reported by the caller, never dropped silently
        return video_id, None, f"{path}: {e}"
    record = {"format": CACHE_FORMAT, "video_id": video_id, "class_name": cls, "text": text,
              "duration": duration, "protocol": cfg.fingerprint(), "source": str(path), **_source_key(path)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        save_file({"frames": frames, "timestamps": torch.from_numpy(ts), "fbank": fbank.contiguous()},
                  str(tmp), metadata={"record": json.dumps(record)})
    return video_id, record, None


def _read_record(path: Path) -> dict | None:
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["record"])
    except Exception:
        return None


@dataclass
class CacheEntry:
    video_id: str
    class_name: str
    text: str
    duration: float
    path: str


class ClipCache:
    """The cached videos of one (dataset, split, protocol); ``load(i)`` reads one from disk."""

    def __init__(self, entries: list[CacheEntry], cfg: ProtocolConfig, cache_dir: Path):
        self.entries = entries
        self.cfg = cfg
        self.cache_dir = Path(cache_dir)
        self.classes = sorted({e.class_name for e in entries})
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.class_texts = {e.class_name: e.text for e in entries}

    def __len__(self) -> int:
        return len(self.entries)

    def labels(self) -> np.ndarray:
        return np.array([self.class_index[e.class_name] for e in self.entries], np.int64)

    def durations(self) -> np.ndarray:
        return np.array([e.duration for e in self.entries], np.float64)

    def load(self, i: int) -> CachedVideo:
        from safetensors.torch import load_file
        e = self.entries[i]
        try:
            t = load_file(e.path)
        except Exception as err:
            raise ClipCacheError(f"{e.path}: unreadable cache file ({err}); delete it and rebuild the cache "
                                 "(the build command re-decodes only missing files)") from err
        return CachedVideo(e.video_id, e.class_name, e.text, t["frames"], t["timestamps"].numpy(),
                           t["fbank"], e.duration, self.cfg)

    def subset(self, indices) -> "ClipCache":
        return ClipCache([self.entries[i] for i in indices], self.cfg, self.cache_dir)


def default_cache_dir(dataset: str, manifest_hash: str, split: str, cfg: ProtocolConfig) -> Path:
    from ..backbones.weights import cache_root
    return cache_root() / "clip-cache" / f"{dataset}-{manifest_hash}-{cfg.name}-{cfg.fingerprint()[:8]}" / split


def build_clip_cache(entries, cfg: ProtocolConfig, cache_dir, workers: int = 1, progress: bool = True,
                     skip_bad: bool = False) -> ClipCache:
    """Decode ``entries`` (``VideoEntry`` list) into ``cache_dir``; reuse complete files.

    A video that cannot be decoded stops the build with its error, unless
    ``skip_bad``; skipped videos are listed in ``<cache_dir>/skipped.json``
    and counted in the progress output, never dropped silently.
    """
    from tqdm.auto import tqdm

    from ..avio import atomic_write_text
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fp = cfg.fingerprint()
    records: dict[str, dict] = {}
    todo = []
    for e in entries:
        f = _cache_file(cache_dir, e.video_id)
        rec = _read_record(f) if f.is_file() else None
        if rec and rec.get("format") == CACHE_FORMAT and rec.get("protocol") == fp \
                and {k: rec.get(k) for k in ("size", "mtime_ns")} == _source_key(e.path):
            records[e.video_id] = rec
        else:
            todo.append((str(cache_dir), e.video_id, e.path, e.class_name, e.text, cfg.to_dict()))
    errors = []
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"decode -> {cache_dir.name}",
               unit="video", disable=not progress)
    try:
        if workers <= 1 or len(todo) <= 1:
            results = map(_cache_one, todo)
            pool = None
        else:
            import multiprocessing as mp
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
            results = pool.imap_unordered(_cache_one, todo, chunksize=4)
        try:
            for vid, rec, err in results:
                if err is not None:
                    if not skip_bad:
                        raise ClipCacheError(f"cannot cache {err}; fix or remove the video, or pass --skip-bad")
                    errors.append(err)
                else:
                    records[vid] = rec
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        bar.close()
    if errors:
        atomic_write_text(cache_dir / "skipped.json", json.dumps(errors, indent=1))
    out = [CacheEntry(e.video_id, e.class_name, e.text, float(records[e.video_id]["duration"]),
                      str(_cache_file(cache_dir, e.video_id))) for e in entries if e.video_id in records]
    return ClipCache(out, cfg, cache_dir)


def _worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def check_cache_matches(cache: ClipCache, video: CachedVideo, start: float, path) -> dict:
    """Max differences between a cached clip and the protocol decoder's clip (for tests/diagnostics)."""
    from ..avio import decode_protocol_clips
    from ..protocol import waveforms_to_mel
    # the cache is cut on the protocol grid: compare with the corrected track's decoder
    clip = decode_protocol_clips(path, cache.cfg.replace(track="corrected"), starts=[start])[0]
    mel = waveforms_to_mel(clip.audio.unsqueeze(0), cache.cfg)[0]
    return {"frames": float((video.clip_frames(start) - clip.frames).abs().max()),
            "mel": float((video.clip_mel(start) - mel).abs().max())}


__all__ = ["CachedVideo", "CacheEntry", "ClipCache", "ClipCacheError", "build_clip_cache",
           "clip_fbank_rows", "decode_video", "default_cache_dir", "quantise_start"]
