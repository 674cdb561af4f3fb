"""Training videos decoded once; protocol clips cut from memory, for every trainer.

Training re-reads the same few thousand videos for thousands of steps;
decoding mp4 per step would cost more than the model.  So each video of a
split is decoded once into one safetensors file:

* ``frames``: uint8 [N, H, W, 3], every decoded frame after the protocol's
  spatial transform (``cfg.height`` x ``cfg.width``), computed in uint8
  (within 1.5/255 of the protocol's float frames);
* ``timestamps``: float64 [N] presentation times of those frames;
* ``pcm``: int16 [S] the mono track at the protocol's sample rate;
* ``fbank``: float32 [M, bins] the Kaldi log-mel filterbank of the whole
  track (hop 10 ms), *before* padding and normalisation.

Two ways to read the cache, one per access pattern:

* :meth:`ClipCache.load` -> :class:`CachedVideo`: one video, protocol clips
  at any start on the 10 ms mel hop grid (the sync classifier's K shifted
  clips, the embedding model's random clips, the evaluations).  Frames by
  :func:`select_frame_indices` on the stored timestamps; mel = fbank rows
  ``100 s .. 100 s + 197`` padded to 204 and normalised.  Kaldi's fbank
  works frame by frame and removes each frame's DC offset, so rows of the
  whole-track fbank equal those of the clip's own fbank (the clip-level mean
  removal of :func:`waveform_to_mel` cancels out).
* :meth:`ClipCache.pack` -> :class:`PackedClips`: every video's frames on a
  regular grid ``k / fps`` (default 12 = twice the protocol rate) and its
  PCM, all videos back to back in a few tensors (CPU or GPU), for batched
  random draws: AVSyncD / I2VD (clips starting at ``j / fps`` with their
  exact protocol audio window) and the mini base (single frames).

tests/test_sync_classifier.py and tests/test_mini_base.py check both
against the protocol decoder.

Files live in ``<cache dir>/<video_id>.safetensors``, written atomically,
each with a record (cache format, protocol fingerprint, source file size
and mtime); a file is reused only when all of these match, so a rebuilt
dataset or a changed protocol never reuses stale frames, and an
interrupted build resumes.  The default cache dir is
``$ASVA_BENCH_HOME/cache/clips/<dataset>-<manifest hash>-<protocol>-<fingerprint>/<split>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import ProtocolConfig, select_frame_indices, waveforms_to_mel

CACHE_FORMAT = 3
DEFAULT_PACK_FPS = 12.0
PCM_SCALE = 32767.0


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


# --------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------
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
# Decoding
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
    channels-last kernel is ~20x faster than the float path on CPU; its output
    is within 1/255 of the float result rounded (tested).
    """
    from ..protocol import center_crop, spatial_sizes
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    crop, resize = spatial_sizes(*x.shape[-2:], cfg)
    x = center_crop(x, *crop)
    if resize is not None:
        x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=resize, mode="bilinear",
                          antialias=True, align_corners=False)
    return center_crop(x, cfg.height, cfg.width).permute(0, 2, 3, 1).contiguous()


def decode_video(path, cfg: ProtocolConfig, batch: int = 64) -> dict:
    """Every frame (protocol spatial transform, uint8), the mono PCM track and its fbank.

    A video whose usable duration (the shorter stream) is below one clip is an
    error naming the file: a silent drop would change what a model sees.
    """
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
        raise MediaError(f"{path}: usable duration {duration:.2f} s (video {vf.duration:.2f} s, audio "
                         f"{wav.numel() / cfg.sample_rate:.2f} s) is shorter than one {cfg.clip_seconds:g} s clip; "
                         "remove it from the split file or supply a longer recording")
    pcm = (wav.clamp(-1.0, 1.0) * PCM_SCALE).round().to(torch.int16)
    return {"frames": frames, "timestamps": vf.timestamps.astype(np.float64), "pcm": pcm,
            "fbank": _full_track_fbank(wav, cfg), "duration": float(duration), "video_duration": float(vf.duration)}


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------
def _cache_file(cache_dir: Path, video_id: str) -> Path:
    return Path(cache_dir) / f"{video_id}.safetensors"


def _source_key(path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_one(job) -> tuple[str, dict | None, str | None]:
    """Decode one video into its cache file (runs in a worker); returns (id, record, error)."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path
    cache_dir, video_id, path, cls, text, cfg_dict = job
    cfg = ProtocolConfig(**cfg_dict)
    dst = _cache_file(Path(cache_dir), video_id)
    try:
        d = decode_video(path, cfg)
    except Exception as e:  # reported by the caller, never dropped silently
        return video_id, None, f"{path}: {e}" if str(path) not in str(e) else str(e)
    record = {"format": CACHE_FORMAT, "video_id": video_id, "class_name": cls, "text": text,
              "duration": d["duration"], "video_duration": d["video_duration"], "num_frames": len(d["frames"]),
              "num_samples": int(d["pcm"].numel()), "protocol": cfg.fingerprint(), "source": str(path),
              **_source_key(path)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        save_file({"frames": d["frames"], "timestamps": torch.from_numpy(d["timestamps"]), "pcm": d["pcm"],
                   "fbank": d["fbank"].contiguous()}, str(tmp), metadata={"record": json.dumps(record)})
        os.chmod(tmp, 0o644)  # safetensors creates it private; caches are shared read-only data
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
    duration: float          # min(video, audio) seconds
    path: str                # the cache file
    video_duration: float
    num_samples: int
    source: dict             # size and mtime of the source video

    @classmethod
    def from_record(cls, rec: dict, path) -> "CacheEntry":
        return cls(rec["video_id"], rec["class_name"], rec["text"], float(rec["duration"]), str(path),
                   float(rec["video_duration"]), int(rec["num_samples"]),
                   {"size": rec["size"], "mtime_ns": rec["mtime_ns"]})


class ClipCache:
    """The cached videos of one (dataset, split, protocol); ``load(i)`` reads one from disk,
    ``pack(fps)`` all of them onto a time grid in memory."""

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

    def _tensors(self, i: int, names=None) -> dict:
        from safetensors import safe_open
        e = self.entries[i]
        try:
            with safe_open(e.path, framework="pt") as f:
                return {k: f.get_tensor(k) for k in (names or f.keys())}
        except Exception as err:
            raise ClipCacheError(f"{e.path}: unreadable cache file ({err}); delete it and rebuild the cache "
                                 "(the build re-decodes only missing files)") from err

    def load(self, i: int) -> CachedVideo:
        e = self.entries[i]
        t = self._tensors(i, ("frames", "timestamps", "fbank"))
        return CachedVideo(e.video_id, e.class_name, e.text, t["frames"], t["timestamps"].numpy(),
                           t["fbank"], e.duration, self.cfg)

    def subset(self, indices) -> "ClipCache":
        return ClipCache([self.entries[i] for i in indices], self.cfg, self.cache_dir)

    def key(self) -> dict:
        """What the cached bytes depend on: format, protocol and every source file's identity."""
        h = hashlib.sha256(json.dumps([[e.video_id, e.source] for e in self.entries], sort_keys=True).encode())
        return {"format": CACHE_FORMAT, "protocol": self.cfg.fingerprint(), "videos": len(self.entries),
                "sources_sha256": h.hexdigest()[:16]}

    def pack(self, fps: float = DEFAULT_PACK_FPS, device="cpu", progress: bool = False) -> "PackedClips":
        """Every video's frames at times k / fps (k while t < the video's duration; the frame the
        protocol would pick for that time) and its PCM, back to back, on ``device``."""
        from tqdm.auto import tqdm
        if not self.entries:
            raise ClipCacheError(f"{self.cache_dir}: no videos to pack (empty split)")
        cfg = self.cfg
        stride = _grid_stride(fps, cfg)
        sizes = [max(1, math.ceil(e.video_duration * fps - 1e-6)) for e in self.entries]
        frames = torch.empty(sum(sizes), 3, cfg.height, cfg.width, dtype=torch.uint8)
        audio = torch.empty(sum(e.num_samples for e in self.entries), dtype=torch.int16)
        fo = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ao = np.concatenate([[0], np.cumsum([e.num_samples for e in self.entries])]).astype(np.int64)
        starts, too_short = [], []
        for i, (e, n) in enumerate(tqdm(list(zip(self.entries, sizes)), desc="pack clips", unit="video",
                                        disable=not progress, leave=False)):
            t = self._tensors(i, ("frames", "timestamps", "pcm"))
            idx = select_frame_indices(t["timestamps"].numpy(), 0.0, cfg.replace(num_frames=n, fps=fps))
            frames[fo[i]:fo[i + 1]] = t["frames"][torch.from_numpy(idx)].permute(0, 3, 1, 2)
            audio[ao[i]:ao[i + 1]] = t["pcm"]
            s = _num_starts(n, e.num_samples, e.video_duration, fps, cfg, stride)
            starts.append(s)
            if s == 0:
                too_short.append(e.video_id)
        if too_short:
            raise ClipCacheError(f"{self.cache_dir}: {len(too_short)} video(s) hold no {cfg.clip_seconds:g} s clip "
                                 f"on the 1/{fps:g} s grid: {', '.join(too_short[:5])}; remove them from the split")
        meta = {"format": CACHE_FORMAT, "key": {**self.key(), "fps": float(fps)}, "protocol": cfg.to_dict(),
                "fps": float(fps), "classes": self.classes, "class_texts": [self.class_texts[c] for c in self.classes],
                "video_ids": [e.video_id for e in self.entries], "cache_dir": str(self.cache_dir)}
        return PackedClips(frames.to(device), torch.from_numpy(fo), audio.to(device), torch.from_numpy(ao),
                           torch.from_numpy(self.labels()), torch.tensor(starts, dtype=torch.int64), meta)


def build_clip_cache(entries, cfg: ProtocolConfig, cache_dir, workers: int = 1, progress: bool = True,
                     skip_bad: bool = False) -> ClipCache:
    """Decode ``entries`` (``VideoEntry`` list) into ``cache_dir``; reuse complete files.

    A video that cannot be decoded (or is shorter than one clip) stops the
    build with its error, unless ``skip_bad``; skipped videos are listed in
    ``<cache_dir>/skipped.json``, never dropped silently.
    """
    from tqdm.auto import tqdm

    from ..fsutil import atomic_write_text
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
                        fix = "" if "split file" in err else "; re-encode the file or remove it from the split file"
                        raise ClipCacheError(f"cannot cache {err}{fix}")
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
    out = [CacheEntry.from_record(records[e.video_id], _cache_file(cache_dir, e.video_id))
           for e in entries if e.video_id in records]
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


# --------------------------------------------------------------------------
# The packed view: all videos on one time grid, for batched random draws
# --------------------------------------------------------------------------
@dataclass
class ClipBatch:
    """Random training clips (AVSyncD / I2VD)."""
    frames: torch.Tensor  # [B, F, 3, H, W] float32 in [0, 1]
    audio: torch.Tensor   # [B, T * sample_rate] float32
    texts: list[str]      # class text per clip
    labels: torch.Tensor  # [B] class index into PackedClips.classes
    protocol: ProtocolConfig
    videos: torch.Tensor | None = None  # [B] video index
    starts: torch.Tensor | None = None  # [B] grid start j (time j / fps)

    def mel(self) -> torch.Tensor:
        """[B, 1, bins, target] normalised mel of the audio (protocol convention), on the audio's device."""
        return waveforms_to_mel(self.audio.float().cpu(), self.protocol).to(self.audio.device)


@dataclass
class FrameBatch:
    """Random single frames (the mini base, a text-to-image model)."""
    images: torch.Tensor  # [B, 3, H, W] float32 in [0, 1]
    texts: list[str]
    labels: torch.Tensor  # [B]


class PackedClips:
    """Decoded videos of one split on a regular time grid, held in memory (CPU or GPU).

    A clip with start ``j / fps`` is exactly what the protocol decodes for that
    start time (:func:`asva_bench.avio.decode_protocol_clips`): frames
    ``j, j + s, j + 2s, ...`` with ``s = fps / protocol.fps`` and the audio
    samples ``[ceil(t * sr), ceil(t * sr) + T * sr)``, up to the cache's
    uint8 / int16 quantisation (tested).
    """

    def __init__(self, frames: torch.Tensor, frame_offsets: torch.Tensor, audio: torch.Tensor,
                 audio_offsets: torch.Tensor, labels: torch.Tensor, num_starts: torch.Tensor, meta: dict):
        self.frames = frames                # uint8 [N, 3, H, W], all videos back to back
        self.frame_offsets = frame_offsets  # int64 [V + 1]
        self.audio = audio                  # int16 [S]
        self.audio_offsets = audio_offsets  # int64 [V + 1]
        self.labels = labels                # int64 [V]
        self.num_starts = num_starts        # int64 [V]: valid clip starts j = 0 .. num_starts - 1
        self.meta = meta
        self.protocol = ProtocolConfig(**meta["protocol"])
        self.fps = float(meta["fps"])
        self.classes: list[str] = list(meta["classes"])
        self.class_texts: list[str] = list(meta["class_texts"])
        self.video_ids: list[str] = list(meta["video_ids"])
        self.stride = _grid_stride(self.fps, self.protocol)

    def to(self, device) -> "PackedClips":
        """Move the pixel and sample tensors (the big ones) to ``device``; draws then gather there."""
        self.frames, self.audio = self.frames.to(device), self.audio.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.frames.device

    @property
    def num_videos(self) -> int:
        return int(self.labels.numel())

    def __len__(self) -> int:
        return self.num_videos

    def nbytes(self) -> int:
        return self.frames.numel() + 2 * self.audio.numel()

    # -- exact access -------------------------------------------------------
    def clip(self, video: int, start: int, num_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip of ``video`` starting at grid step ``start`` (time start / fps):
        frames uint8 [F, 3, H, W] and audio float32 [T * sample_rate]."""
        f = int(num_frames or self.protocol.num_frames)
        if not 0 <= video < self.num_videos:
            raise IndexError(f"video {video} out of range: the cache holds {self.num_videos} videos")
        if not 0 <= start < int(self.num_starts[video]):
            raise IndexError(f"start {start} out of range for video {self.video_ids[video]!r}: "
                             f"valid starts are 0..{int(self.num_starts[video]) - 1} (steps of 1/{self.fps:g} s)")
        fi, ai = self.indices(torch.tensor([video]), torch.tensor([start]), f)
        return self.frames[fi[0].to(self.device)], self.audio[ai[0].to(self.device)].float() / PCM_SCALE

    def indices(self, videos: torch.Tensor, starts: torch.Tensor, num_frames: int):
        """Frame indices [B, F] and audio sample indices [B, T * sr] of the clips (video, grid start)."""
        fo = self.frame_offsets[videos] + starts
        frame_idx = fo[:, None] + self.stride * torch.arange(num_frames)[None, :]
        first = _first_sample(starts, self.fps, self.protocol.sample_rate)
        audio_idx = (self.audio_offsets[videos] + first)[:, None] + torch.arange(self.protocol.audio_samples)[None, :]
        return frame_idx, audio_idx

    def audio_of(self, videos: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """float32 [B, T * sr] protocol audio windows of the clips, on the cache's device."""
        _, ai = self.indices(videos, starts, 1)
        return self.audio[ai.to(self.device)].float() / PCM_SCALE

    # -- random batches -----------------------------------------------------
    def _draw_videos(self, batch_size: int, generator) -> torch.Tensor:
        # uniform over videos: classes stay balanced whatever the video lengths
        return torch.randint(0, self.num_videos, (batch_size,), generator=generator)

    def _flip(self, x: torch.Tensor, batch_size: int, generator, flip: bool) -> torch.Tensor:
        """Mirror left-right the items whose coin says so (last dim is width)."""
        coins = torch.rand(batch_size, generator=generator) < 0.5
        if not flip or not coins.any():
            return x
        coins = coins.to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return torch.where(coins, x.flip(-1), x)

    def sample_clips(self, batch_size: int, generator: torch.Generator | None = None, flip: bool = True,
                     num_frames: int | None = None, device=None) -> ClipBatch:
        """Random clips: uniform video, uniform start on the grid, random horizontal flip.

        Draws from ``generator`` (CPU) in this order: videos, start fractions, flip coins.
        ``device``: where the frames go (gathered as uint8 here, converted there); default the cache's.
        """
        f = int(num_frames or self.protocol.num_frames)
        if f > self.protocol.num_frames:
            raise ValueError(f"num_frames={f} exceeds the protocol's {self.protocol.num_frames}; the cache's "
                             "clip starts are computed for protocol-length clips")
        videos = self._draw_videos(batch_size, generator)
        starts = (torch.rand(batch_size, generator=generator, dtype=torch.float64)
                  * self.num_starts[videos]).long()
        fi, ai = self.indices(videos, starts, f)
        frames = self.frames[fi.to(self.device)].to(device or self.device).float() / 255.0  # [B, F, 3, H, W]
        audio = self.audio[ai.to(self.device)].float() / PCM_SCALE
        frames = self._flip(frames, batch_size, generator, flip)
        labels = self.labels[videos]
        return ClipBatch(frames, audio, [self.class_texts[i] for i in labels.tolist()], labels.to(frames.device),
                         self.protocol, videos, starts)

    def sample_frames(self, batch_size: int, generator: torch.Generator | None = None,
                      flip: bool = True) -> FrameBatch:
        """Random single frames: uniform video, uniform frame of it, random horizontal flip."""
        videos = self._draw_videos(batch_size, generator)
        counts = self.frame_offsets[videos + 1] - self.frame_offsets[videos]
        pick = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * counts).long()
        idx = (self.frame_offsets[videos] + pick).to(self.device)
        images = self._flip(self.frames[idx].float() / 255.0, batch_size, generator, flip)
        labels = self.labels[videos]
        return FrameBatch(images, [self.class_texts[i] for i in labels.tolist()], labels.to(self.device))


# Grid arithmetic (shared by packing and drawing)
def _grid_stride(fps: float, protocol: ProtocolConfig) -> int:
    ratio = fps / protocol.fps
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"cache fps {fps:g} must be a whole multiple of the protocol's {protocol.fps:g} fps "
                         f"(e.g. {protocol.fps:g} or {2 * protocol.fps:g}), so clip frames fall on the grid")
    return int(round(ratio))


def _first_sample(starts: torch.Tensor, fps: float, sample_rate: int) -> torch.Tensor:
    """First audio sample of a clip starting at grid step ``starts``: ceil(t * sr), as audio_window does."""
    return torch.ceil(starts.double() * (sample_rate / fps) - 1e-6).long()


def _num_starts(n_frames: int, n_samples: int, video_duration: float, fps: float,
                protocol: ProtocolConfig, stride: int) -> int:
    """How many grid starts j give a clip inside the video, its frames and its audio."""
    d = min(video_duration, n_samples / protocol.sample_rate)
    by_duration = math.floor((d - protocol.clip_seconds) * fps + 1e-6) + 1
    by_frames = n_frames - stride * (protocol.num_frames - 1)
    j = max(0, min(by_duration, by_frames))
    while j > 0 and int(_first_sample(torch.tensor([j - 1]), fps, protocol.sample_rate)) \
            + protocol.audio_samples > n_samples:
        j -= 1
    return j


# --------------------------------------------------------------------------
# Finding a dataset's cache
# --------------------------------------------------------------------------
def load_manifest(dataset: str, root=None, progress: bool = True, workers: int | None = None):
    """(spec, manifest) of a registered dataset; synth is built (or finished) when missing."""
    from ..datasets import get_dataset
    spec = get_dataset(dataset)
    if dataset == "synth":
        from ..datasets.synth import ensure_synth
        root = ensure_synth(root, progress=progress, workers=workers)
    return spec, spec.load(root)


def default_cache_root() -> Path:
    from ..fsutil import home
    return home() / "cache" / "clips"


def cache_dir_for(dataset: str, manifest_hash: str, split: str, cfg: ProtocolConfig, root=None) -> Path:
    """``<root>/<dataset>-<manifest hash>-<protocol>-<fingerprint>/<split>`` (root: default_cache_root())."""
    root = Path(root).expanduser() if root is not None else default_cache_root()
    return root / f"{dataset}-{manifest_hash[:12]}-{cfg.name}-{cfg.fingerprint()[:8]}" / split


def ensure_clip_cache(dataset: str = "synth", root=None, split: str = "train", profile: str = "mini",
                      cache_dir=None, workers: int = 1, progress: bool = True, skip_bad: bool = False,
                      manifest=None) -> ClipCache:
    """The clip cache of ``dataset``'s ``split`` at the profile's protocol, decoding what is missing.

    ``cache_dir``: the cache root (default ``$ASVA_BENCH_HOME/cache/clips``);
    the split's files go to :func:`cache_dir_for` below it.
    """
    from ..profiles import protocol_for
    if manifest is None:
        spec, manifest = load_manifest(dataset, root, progress=progress, workers=workers)
    else:
        from ..datasets import get_dataset
        spec = get_dataset(dataset)
    entries = manifest.split(split)
    if not entries:
        raise ClipCacheError(f"dataset '{dataset}' at {manifest.root} has no '{split}' videos; "
                             f"splits present: {sorted({e.split for e in manifest.entries})}")
    cfg = protocol_for(spec.protocol, profile)
    d = cache_dir_for(dataset, manifest.hash(), split, cfg, cache_dir)
    return build_clip_cache(entries, cfg, d, workers=workers, progress=progress, skip_bad=skip_bad)


# --------------------------------------------------------------------------
# Command line: python -m asva_bench.training.clip_cache (decodes a split, or finds it decoded)
# --------------------------------------------------------------------------
def main(argv=None) -> int:
    import argparse
    import sys
    import time

    from ..avio import MediaError
    from ..fsutil import show_progress
    p = argparse.ArgumentParser(prog="python -m asva_bench.training.clip_cache",
                                description="Decode a dataset split once into the training clip cache.")
    p.add_argument("--dataset", default="synth")
    p.add_argument("--root", help="dataset folder (default: the dataset's environment variable / synth's cache)")
    p.add_argument("--split", default="train")
    p.add_argument("--profile", default="mini")
    p.add_argument("--cache-dir", help="cache root (default $ASVA_BENCH_HOME/cache/clips)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes")
    p.add_argument("--pack-fps", type=float, help="also pack onto this grid and report its size (AVSyncD: 12)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        c = ensure_clip_cache(args.dataset, args.root, args.split, args.profile, args.cache_dir, args.workers,
                              progress=args.progress and show_progress())
        info = {"videos": len(c), "cache_dir": str(c.cache_dir), "protocol": c.cfg.name, "key": c.key(),
                "bytes": sum(os.path.getsize(e.path) for e in c.entries)}
        if args.pack_fps:
            packed = c.pack(args.pack_fps)
            info["packed"] = {"fps": packed.fps, "frames": list(packed.frames.shape), "bytes": packed.nbytes()}
    except (ValueError, FileNotFoundError, MediaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(info) if args.json else
          f"clip cache: {info['videos']} videos in {info['cache_dir']}, {info['bytes'] / 1e9:.2f} GB "
          f"({info['seconds']} s)")
    return 0


__all__ = ["CACHE_FORMAT", "DEFAULT_PACK_FPS", "PCM_SCALE", "CachedVideo", "CacheEntry", "ClipBatch", "ClipCache",
           "ClipCacheError", "FrameBatch", "PackedClips", "build_clip_cache", "cache_dir_for", "check_cache_matches",
           "clip_fbank_rows", "decode_video", "default_cache_root", "ensure_clip_cache", "load_manifest",
           "quantise_start"]


if __name__ == "__main__":
    raise SystemExit(main())
