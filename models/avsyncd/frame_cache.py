"""Training videos decoded once into one compact tensor file.

Training the mini models re-reads the same few thousand short videos for
thousands of steps; decoding mp4s on every step would cost more than the
model.  The cache holds, per video, every frame on a regular time grid
(``fps``, default 12 = twice the protocol rate, so clip starts fall on a
1/12 s grid) already resized by the protocol's spatial transform, as uint8
[3, H, W], plus the mono audio at the protocol's sample rate as int16 PCM.

A clip with start ``j / fps`` is exactly what the protocol decodes for that
start time (:func:`asva_bench.avio.decode_protocol_clips`): frames
``j, j + s, j + 2s, ...`` with ``s = fps / protocol.fps`` and the audio
samples ``[ceil(t * sr), ceil(t * sr) + T * sr)`` (tested), up to uint8 /
int16 quantisation.

One file per (dataset manifest of the split, protocol fingerprint, grid
rate, cache version)::

    <cache_dir>/<dataset>-<split>-<protocol>-<fps>fps-<key>.safetensors

written atomically; the key is checked on load, so a rebuilt dataset or a
changed protocol never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asva_bench.avio import MediaError, VideoFrames, atomic_path, read_audio
from asva_bench.protocol import ProtocolConfig, resample, select_frame_indices, spatial_transform, waveforms_to_mel
from asva_bench.progress import show_progress

CACHE_VERSION = 1
DEFAULT_CACHE_FPS = 12.0
PCM_SCALE = 32767.0


# --------------------------------------------------------------------------
# Batches handed to training loops
# --------------------------------------------------------------------------
@dataclass
class ClipBatch:
    """Random training clips: what AVSyncD-mini trains on."""

    frames: torch.Tensor  # [B, F, 3, H, W] float32 in [0, 1]
    audio: torch.Tensor   # [B, T * sample_rate] float32
    texts: list[str]      # class text per clip
    labels: torch.Tensor  # [B] class index into FrameCache.classes
    protocol: ProtocolConfig

    def mel(self) -> torch.Tensor:
        """[B, 1, bins, target] normalised mel of the audio (protocol convention), on the audio's device."""
        return waveforms_to_mel(self.audio.float().cpu(), self.protocol).to(self.audio.device)


@dataclass
class FrameBatch:
    """Random single frames: what the mini base (text-to-image) model trains on."""

    images: torch.Tensor  # [B, 3, H, W] float32 in [0, 1]
    texts: list[str]
    labels: torch.Tensor  # [B]


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------
class FrameCache:
    """Decoded videos of one dataset split, held in memory (CPU or GPU)."""

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

    # -- file ---------------------------------------------------------------
    @classmethod
    def load(cls, path, device="cpu") -> "FrameCache":
        from safetensors import safe_open
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: frame cache not found; build it with build_frame_cache(...) "
                                    "or ensure_frame_cache(...)")
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("frame_cache", "null") or "null")
            if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: not a frame cache of version {CACHE_VERSION}; delete it and rebuild "
                                 "(ensure_frame_cache rebuilds automatically)")
            t = {k: f.get_tensor(k) for k in f.keys()}
        return cls(t["frames"].to(device), t["frame_offsets"], t["audio"].to(device), t["audio_offsets"],
                   t["labels"], t["num_starts"], meta)

    def to(self, device) -> "FrameCache":
        """Move the pixel and sample tensors (the big ones) to ``device``; sampling then gathers there."""
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
        fi, ai = self._indices(torch.tensor([video]), torch.tensor([start]), f)
        return self.frames[fi[0].to(self.device)], self.audio[ai[0].to(self.device)].float() / PCM_SCALE

    def _indices(self, videos: torch.Tensor, starts: torch.Tensor, num_frames: int):
        fo = self.frame_offsets[videos] + starts
        frame_idx = fo[:, None] + self.stride * torch.arange(num_frames)[None, :]
        sr = self.protocol.sample_rate
        first = _first_sample(starts, self.fps, sr)
        audio_idx = (self.audio_offsets[videos] + first)[:, None] + torch.arange(self.protocol.audio_samples)[None, :]
        return frame_idx, audio_idx

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
                     num_frames: int | None = None) -> ClipBatch:
        """Random clips: uniform video, uniform start on the grid, random horizontal flip.

        Draws from ``generator`` (CPU) in this order: videos, start fractions, flip coins.
        """
        f = int(num_frames or self.protocol.num_frames)
        if f > self.protocol.num_frames:
            raise ValueError(f"num_frames={f} exceeds the protocol's {self.protocol.num_frames}; the cache's "
                             "clip starts are computed for protocol-length clips")
        videos = self._draw_videos(batch_size, generator)
        starts = (torch.rand(batch_size, generator=generator, dtype=torch.float64)
                  * self.num_starts[videos]).long()
        fi, ai = self._indices(videos, starts, f)
        frames = self.frames[fi.to(self.device)].float() / 255.0  # [B, F, 3, H, W]
        audio = self.audio[ai.to(self.device)].float() / PCM_SCALE
        frames = self._flip(frames, batch_size, generator, flip)
        labels = self.labels[videos]
        return ClipBatch(frames, audio, [self.class_texts[i] for i in labels.tolist()], labels.to(self.device),
                         self.protocol)

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


# --------------------------------------------------------------------------
# Grid arithmetic (shared by the builder and the sampler)
# --------------------------------------------------------------------------
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
# Building
# --------------------------------------------------------------------------
def decode_video(path, protocol: ProtocolConfig, fps: float = DEFAULT_CACHE_FPS) -> dict:
    """One video: frames at times k / fps (k while t < duration), protocol-resized, uint8 [n, 3, H, W];
    audio at the protocol's rate, int16; durations."""
    vf = VideoFrames(path)
    wav, sr = read_audio(path)
    wav = resample(wav.float(), sr, protocol.sample_rate)
    dur = vf.duration
    n = max(1, math.ceil(dur * fps - 1e-6))
    idx = select_frame_indices(vf.timestamps, 0.0, protocol.replace(num_frames=n, fps=fps))
    frames = spatial_transform(vf.get(idx), protocol)  # float [n, 3, H, W] in [0, 1]
    frames_u8 = (frames * 255.0).round().clamp(0, 255).to(torch.uint8)
    pcm = (wav.clamp(-1.0, 1.0) * PCM_SCALE).round().to(torch.int16)
    return {"frames": frames_u8.numpy(), "audio": pcm.numpy(), "video_duration": float(dur)}


def _decode_job(job):
    path, proto, fps = job
    return decode_video(path, ProtocolConfig(**proto), fps)


def _init_worker():
    torch.set_num_threads(1)


def cache_key(manifest_hash: str, dataset: str, split: str, protocol: ProtocolConfig, fps: float) -> dict:
    return {"version": CACHE_VERSION, "dataset": dataset, "split": split, "manifest_hash": manifest_hash,
            "protocol": protocol.fingerprint(), "fps": float(fps)}


def cache_filename(key: dict, protocol: ProtocolConfig) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key['dataset']}-{key['split']}-{protocol.name}-{key['fps']:g}fps-{digest}.safetensors"


def default_cache_dir() -> Path:
    from asva_bench.home import home
    return home() / "cache" / "frames"


def build_frame_cache(entries, path, protocol: ProtocolConfig, fps: float = DEFAULT_CACHE_FPS,
                      key: dict | None = None, workers: int = 1, progress: bool = True) -> Path:
    """Decode ``entries`` (VideoEntry list of one split) into the cache file ``path`` (atomic).

    A video too short for one protocol clip is an error naming the file: a
    silent drop would change what the model sees.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    entries = list(entries)
    if not entries:
        raise ValueError(f"{path}: no videos to cache (empty split)")
    stride = _grid_stride(fps, protocol)
    classes = sorted({e.class_name for e in entries})
    texts = {e.class_name: e.text for e in entries}
    jobs = [(e.path, protocol.to_dict(), float(fps)) for e in entries]
    workers = max(1, min(int(workers), len(jobs)))
    bar = tqdm(total=len(jobs), desc="frame cache", unit="video", disable=not progress)
    results = []
    try:
        if workers == 1:
            for j in jobs:
                results.append(_decode_job(j))
                bar.update(1)
        else:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for r in pool.imap(_decode_job, jobs, chunksize=4):
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()

    starts, too_short = [], []
    for e, r in zip(entries, results):
        s = _num_starts(len(r["frames"]), len(r["audio"]), r["video_duration"], fps, protocol, stride)
        starts.append(s)
        if s == 0:
            too_short.append(f"{e.path} (video {r['video_duration']:.2f} s, audio "
                             f"{len(r['audio']) / protocol.sample_rate:.2f} s)")
    if too_short:
        raise MediaError(f"{len(too_short)} video(s) are shorter than one {protocol.clip_seconds:g} s clip: "
                         + "; ".join(too_short[:5]) + ("..." if len(too_short) > 5 else "")
                         + ". Remove them from the split file or supply longer recordings")

    def offsets(sizes):
        return torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

    tensors = {
        "frames": torch.from_numpy(np.concatenate([r["frames"] for r in results])),
        "frame_offsets": offsets([len(r["frames"]) for r in results]),
        "audio": torch.from_numpy(np.concatenate([r["audio"] for r in results])),
        "audio_offsets": offsets([len(r["audio"]) for r in results]),
        "labels": torch.tensor([classes.index(e.class_name) for e in entries], dtype=torch.int64),
        "num_starts": torch.tensor(starts, dtype=torch.int64),
    }
    meta = {"version": CACHE_VERSION, "key": key or {}, "protocol": protocol.to_dict(), "fps": float(fps),
            "classes": classes, "class_texts": [texts[c] for c in classes],
            "video_ids": [e.video_id for e in entries]}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"frame_cache": json.dumps(meta)})
        os.chmod(tmp, 0o644)  # safetensors creates it private; caches are shared read-only data
    return path


def ensure_frame_cache(dataset: str = "synth", root=None, split: str = "train", profile: str = "mini",
                       fps: float = DEFAULT_CACHE_FPS, cache_dir=None, workers: int = 1,
                       progress: bool = True, device="cpu") -> FrameCache:
    """The cache of ``dataset``'s ``split`` at the profile's protocol, built on first use.

    ``synth`` without a root uses (and builds if needed) the default synth build.
    """
    from asva_bench.datasets import get_dataset
    from asva_bench.profiles import protocol_for

    spec = get_dataset(dataset)
    if dataset == "synth" and root is None:
        from asva_bench.datasets.synth import ensure_synth
        root = ensure_synth(progress=progress, workers=workers)
    manifest = spec.load(root)
    entries = manifest.split(split)
    if not entries:
        raise ValueError(f"dataset '{dataset}' at {manifest.root} has no '{split}' videos; "
                         f"splits present: {sorted({e.split for e in manifest.entries})}")
    protocol = protocol_for(spec.protocol, profile)
    key = cache_key(manifest.hash(split), dataset, split, protocol, fps)
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = path / cache_filename(key, protocol)
    if not path.is_file():
        if progress:
            import sys
            print(f"frame cache: decoding {len(entries)} {split} videos of {dataset} into {path}", file=sys.stderr)
        build_frame_cache(entries, path, protocol, fps, key=key, workers=workers, progress=progress)
    cache = FrameCache.load(path, device=device)
    if cache.meta.get("key") != key:
        raise ValueError(f"{path}: its key {cache.meta.get('key')} does not match {key}; delete the file "
                         "and run again")
    return cache


# --------------------------------------------------------------------------
# Command line: python -m asva_bench.models.avsyncd.frame_cache (builds or finds the cache)
# --------------------------------------------------------------------------
def main(argv=None) -> int:
    import argparse
    import sys
    import time
    p = argparse.ArgumentParser(prog="python -m asva_bench.models.avsyncd.frame_cache",
                                description="Decode a dataset split once into the training frame cache.")
    p.add_argument("--dataset", default="synth")
    p.add_argument("--root", help="dataset folder (default: the dataset's environment variable / synth's cache)")
    p.add_argument("--split", default="train")
    p.add_argument("--profile", default="mini")
    p.add_argument("--fps", type=float, default=DEFAULT_CACHE_FPS)
    p.add_argument("--cache-dir", help="default $ASVA_BENCH_HOME/cache/frames")
    p.add_argument("--workers", type=int, default=1, help="decoding processes")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        c = ensure_frame_cache(args.dataset, args.root, args.split, args.profile, args.fps, args.cache_dir,
                               args.workers, progress=args.progress and show_progress())
    except (ValueError, FileNotFoundError, MediaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = {"videos": c.num_videos, "frames": list(c.frames.shape), "bytes": c.nbytes(), "fps": c.fps,
            "protocol": c.protocol.name, "key": c.meta.get("key"), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(info) if args.json else
          f"frame cache: {info['videos']} videos, {tuple(info['frames'])} frames, {info['bytes'] / 1e9:.2f} GB "
          f"({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
