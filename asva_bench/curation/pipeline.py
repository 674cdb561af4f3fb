"""`asva-bench curate` end to end: shard the pool by video, compute signals, decide, write.

Stages:

1. **Signals** (per shard): the input videos (sorted by path) are split
   round robin, ``videos[i::n]``, as generation and scoring shard; under
   ``torchrun`` shard = rank, and ``--shard i/n`` (job arrays) splits
   further (shard ``i * world + rank`` of ``n * world``). A shard decodes
   each of its videos once (in ``--workers`` loader processes, overlapping
   the models), computes the six signals of every clip and writes its file
   atomically. A finished shard (same signal settings, same input paths
   and sizes) is not recomputed.
2. **Decisions and dataset** (``--merge``; automatic at the end of an
   unsharded or torchrun run): read the complete set of shard files,
   decide (decisions.py), write the manifest, the dataset folder and the
   review pages. Under torchrun every rank decides (cheap, deterministic)
   and writes its share of the example videos; rank 0 writes the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import distributed as D
from ..fsutil import atomic_write_text
from ..protocol import MINI, PAPER
from .clips import BadInput, class_text, decode_video, list_inputs, plan_clips
from .config import CurationConfig, load_config
from .manifest import (CurationError, find_partition, finish_dataset, inputs_hash, read_partition, read_plan,
                       shard_done, shard_path, summary, write_examples, write_plan, write_shard, write_summary,
                       write_tables)

MARKS = "review/marks.json"
MARKS_SCHEMA = "asva-bench/curation-marks/v1"


def analysis_protocol(profile: str):
    """Frames are analysed at the profile's protocol size: mini 64 x 64, paper 256 x 256."""
    return MINI if profile == "mini" else PAPER


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/8), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


# --------------------------------------------------------------------------
# Stage 1: signals of one shard
# --------------------------------------------------------------------------
class _Decoded(torch.utils.data.Dataset):
    def __init__(self, videos, cfg: CurationConfig, protocol):
        self.videos, self.cfg, self.protocol = videos, cfg, protocol

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        v, cfg = self.videos[i], self.cfg
        t = time.perf_counter()
        try:
            d = decode_video(v, self.protocol, cfg.clip_seconds, cfg.analysis_fps, cfg.scene_threshold,
                             cfg.min_scene_seconds)
            return {"video": v, "decoded": d, "decode_s": time.perf_counter() - t}
        except BadInput as e:
            return {"video": v, "bad": (e.kind, str(e)), "decode_s": time.perf_counter() - t}
        except Exception as e:  # one odd file must not stop a pool: it is listed as unreadable, with the error
            return {"video": v, "bad": ("unreadable", f"{v.path}: decoding failed ({type(e).__name__}: {e}); "
                                                      "re-encode the file or leave it out"),
                    "decode_s": time.perf_counter() - t}


def _as_is(item):
    return item


def _worker_init(_):
    torch.set_num_threads(1)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def video_record(item: dict, cfg: CurationConfig, extractor) -> tuple[dict, float]:
    v = item["video"]
    base = {"video": v.rel, "class": v.cls, "source_bytes": v.size}
    if "bad" in item:
        kind, msg = item["bad"]
        return {**base, "status": "bad", "bad_kind": kind, "reason": msg, "clips": []}, 0.0
    d = item["decoded"]
    clips = plan_clips(d.scenes, cfg.clip_seconds, cfg.stride_seconds, cfg.analysis_fps, len(d.frames))
    t = time.perf_counter()
    sig = extractor.signals(d, clips, class_text(v.cls))
    elapsed = time.perf_counter() - t
    rec = {**base, "status": "ok", "duration": d.duration, "video_duration": d.video_duration,
           "audio_duration": d.audio_duration, "fps": round(d.fps, 4), "cuts": d.cuts,
           "clips": [{"scene": s.clip.scene, "start": s.clip.start, "end": s.clip.end, **s.values} for s in sig]}
    return rec, elapsed


def compute_shard(videos, cfg: CurationConfig, path: Path, *, device: str = "cpu", workers: int = 1,
                  progress: bool = True, show: bool = True, extractor=None) -> dict:
    """Signals of ``videos`` into the shard file at ``path``; returns its header."""
    from tqdm import tqdm

    from .signals import SignalExtractor
    protocol = analysis_protocol(cfg.profile)
    extractor = extractor or SignalExtractor(cfg, protocol, device)
    extractor.build()
    extractor.check_texts(class_text(c) for c in {v.cls for v in videos})
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(_Decoded(videos, cfg, protocol), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is, worker_init_fn=_worker_init if workers else None,
                                         prefetch_factor=4 if workers else None)
    records, decode_s, signal_s, n_clips, media_s = [], 0.0, 0.0, 0, 0.0
    for item in tqdm(loader, total=len(videos), desc=f"curate signals [{path.stem}]", unit="video",
                     disable=not (progress and show), dynamic_ncols=True):
        rec, s = video_record(item, cfg, extractor)
        records.append(rec)
        decode_s += item["decode_s"]
        signal_s += s
        n_clips += len(rec["clips"])
        media_s += rec.get("duration", 0.0) or 0.0
    wall = time.perf_counter() - t0
    header = {"signal_fingerprint": cfg.signal_fingerprint(), "signal_settings": cfg.signal_settings(),
              "inputs_hash": inputs_hash(videos), "videos": len(records), "backbones": extractor.fingerprint(),
              "protocol": protocol.to_dict(), "device": device,
              "timing": {"wall_s": round(wall, 3), "decode_s": round(decode_s, 3), "signals_s": round(signal_s, 3),
                         "clips": n_clips, "media_seconds": round(media_s, 3), "loader_workers": workers,
                         "torch_threads": torch.get_num_threads()}}
    write_shard(path, header, records)
    return header


# --------------------------------------------------------------------------
# Stage 2: decisions and outputs
# --------------------------------------------------------------------------
def read_marks(out: Path) -> list[dict]:
    path = Path(out) / MARKS
    if not path.is_file():
        return []
    return json.loads(path.read_text())["marks"]


def merge(out, cfg: CurationConfig | None = None, *, rank: int = 0, world: int = 1, progress: bool = True,
          review: bool = True) -> dict:
    """Decide from the complete shard set and write manifest, dataset and review pages."""
    from .decisions import decide
    out = Path(out)
    plan = read_plan(out)
    if cfg is None:
        cfg = load_config(plan["profile"], out / "curation.toml") if (out / "curation.toml").is_file() \
            else load_config(plan["profile"])
    if cfg.signal_fingerprint() != plan["signal_fingerprint"]:
        raise CurationError(f"{out}: the config changes signal settings (scenes, clips, sync, CLIP model) from the "
                            "ones the shards were computed with; only [thresholds] and [dataset] may change at "
                            "--merge. Curate into another --out for new signal settings")
    input_root = Path(plan["input"])
    videos, ignored = list_inputs(input_root)
    _, paths = find_partition(out, plan["signal_fingerprint"], videos)
    records, headers = read_partition(paths)
    marks = read_marks(out)
    dec = decide(records, cfg, marks)
    sizes = {r["video"]: r.get("source_bytes") for r in records}
    wrote = write_examples(input_root, out, dec, rank, world, progress, sizes)
    D.barrier()
    result = {}
    if rank == 0:
        finish_dataset(out, dec, sizes)
        tables = write_tables(out, dec, cfg)
        pages = {}
        if review:
            from .review import build_review
            pages = build_review(out, input_root, dec, cfg)
        data = summary(dec, cfg, plan, headers, ignored, marks)
        write_summary(out, data)
        result = {"summary": data, "tables": tables, "review": pages, "written_now": wrote}
    D.barrier()
    return result


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------
def curate(input_root, out, *, profile: str | None = None, config_path=None, shard: tuple[int, int] | None = None,
           device: str = "cpu", workers: int = 1, progress: bool = True, review: bool = True) -> dict:
    """Stage 1 for this process's shard, then (unless ``shard`` was given) stage 2."""
    out = Path(out)
    rank, world = D.init_from_env()
    cfg = load_config(profile, config_path)
    videos, ignored = list_inputs(input_root)
    if not videos:
        raise CurationError(f"{input_root}: no videos in class folders (<input>/<class>/<video>)"
                            + (f"; {len(ignored)} other file(s), e.g. {ignored[0]['file']}: {ignored[0]['reason']}"
                               if ignored else ""))
    if rank == 0:
        write_plan(out, Path(input_root), cfg)
        if config_path:   # the thresholds a later --merge starts from
            from .config import config_to_toml
            atomic_write_text(out / "curation.toml", config_to_toml(cfg))
    D.barrier()
    i, n = shard or (0, 1)
    index, count = i * world + rank, n * world
    mine = D.shard(videos, index, count)
    path = shard_path(out, index, count)
    t0 = time.perf_counter()
    skipped = shard_done(path, cfg.signal_fingerprint(), inputs_hash(mine))
    header = None if skipped else compute_shard(mine, cfg, path, device=device, workers=workers,
                                                progress=progress, show=rank == 0)
    timing = {"shard": [index, count], "skipped": skipped, "videos": len(mine),
              "seconds": round(time.perf_counter() - t0, 3), **((header or {}).get("timing") or {})}
    timings = D.all_gather_objects(timing)
    D.barrier()
    result: dict = {"out": str(out), "shards": timings}
    if shard is not None:
        result["next"] = (f"shard {i}/{n} done; when all {n} shards are, run `asva-bench curate --merge --out {out}`")
        return result
    if rank == 0:
        atomic_write_text(out / "timing.json", json.dumps({"shards": timings}, indent=1, sort_keys=True) + "\n")
    result.update(merge(out, cfg, rank=rank, world=world, progress=progress, review=review))
    return result


def apply_review(out, files, *, progress: bool = True, review: bool = True) -> dict:
    """Fold exported review marks into ``out`` (OUT/review/marks.json), then decide and write again."""
    from .review import read_marks_file
    out = Path(out)
    plan = read_plan(out)
    videos, _ = list_inputs(plan["input"])
    known = {v.rel for v in videos}
    marks = {(m["video"], m["start"], m["end"]): m for m in read_marks(out)}
    for f in files:
        for m in read_marks_file(f, known):
            marks[(m["video"], m["start"], m["end"])] = m   # a later file's mark of the same span wins
    ordered = [marks[k] for k in sorted(marks)]
    atomic_write_text(out / MARKS, json.dumps({"schema": MARKS_SCHEMA, "marks": ordered}, indent=1,
                                              sort_keys=True) + "\n")
    result = merge(out, progress=progress, review=review)
    result["marks"] = len(ordered)
    return result
