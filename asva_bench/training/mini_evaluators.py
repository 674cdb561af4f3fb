"""Train every mini evaluator from scratch and write the files shipped in the package.

One command (``asva-bench train evaluators --profile mini``, or
``benchmarks/train_mini_evaluators.py``) does all of it:

1. the dataset (synth is built if missing) is cut at the mini protocol and
   every train and test video decoded once into a clip cache;
2. the mini sync classifier (:mod:`.sync_trainer`) and the mini embedding
   model (:mod:`.embedding_trainer`) train *at the same time*, in two
   single-threaded processes (on a 2-core machine that is faster than one
   after the other with two threads each); both are resumable, so rerunning
   the command after an interruption continues where it stopped;
3. the final checkpoints are copied to the output folder (default: the
   package's ``asva_bench/backbones/mini_weights``) with ``manifest.json``,
   which pins each file's SHA-256 and records the training figures.

The mini FID / FVD features reuse these two networks (:mod:`..backbones.mini_features`),
so nothing else is trained.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

from ..backbones.sync_classifier import MINI_MANIFEST, MINI_WEIGHTS_DIR
from .checkpointing import LOG_FILE, read_log
from .clip_cache import ensure_clip_cache, load_manifest
from .embedding_trainer import EmbeddingTrainConfig, train_embedding
from .sync_trainer import SyncTrainConfig, train_sync

SHIPPED = ("mini-sync.safetensors", "mini-sync.json", "mini-embedding.safetensors", "mini-embedding.json")
#: All mini evaluator weights together must stay under this (issue 3, item 4).
SIZE_LIMIT_BYTES = 20 * 1024 * 1024


def build_caches(dataset: str, root, profile: str, splits=("train", "test"), workers: int = 2,
                 cache_dir=None, progress: bool = True):
    """Clip caches of ``splits`` at the profile's protocol: {split: ClipCache}."""
    _, manifest = load_manifest(dataset, root, progress=progress, workers=workers)
    return {split: ensure_clip_cache(dataset, split=split, profile=profile, cache_dir=cache_dir, workers=workers,
                                     progress=progress, manifest=manifest) for split in splits}


def default_work_dir() -> Path:
    from ..backbones.weights import cache_root
    return cache_root() / "train" / "mini-evaluators"


def _child(kind: str, cache, out_dir: str, cfg, resume: bool, queue) -> None:
    """One trainer in its own process, one thread (the parent shows progress from the logs)."""
    import torch
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        fn = train_sync if kind == "sync" else train_embedding
        queue.put((kind, fn(cache, out_dir, cfg, resume=resume, progress=False), None))
    except BaseException as e:  # reported by the parent
        import traceback
        queue.put((kind, None, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _log_step(log: Path) -> int:
    recs = read_log(log) if log.is_file() else []
    return int(recs[-1].get("step", 0)) if recs else 0


def train_both(train_cache, work: Path, sync_cfg: SyncTrainConfig, emb_cfg: EmbeddingTrainConfig,
               resume: bool = True, parallel: bool = True, progress: bool = True) -> dict:
    """Train the sync classifier and the embedding model; returns their summaries."""
    jobs = {"sync": (work / "sync", sync_cfg), "embedding": (work / "embedding", emb_cfg)}
    if parallel:
        results, errors = _train_in_processes(jobs, train_cache, resume, progress)
    else:
        results = {"sync": train_sync(train_cache, jobs["sync"][0], sync_cfg, resume=resume, progress=progress),
                   "embedding": train_embedding(train_cache, jobs["embedding"][0], emb_cfg, resume=resume,
                                                progress=progress)}
        errors = {}
    errors.update({k: "interrupted before the last step" for k, r in results.items() if not r["done"]})
    if errors:
        raise RuntimeError("mini evaluator training failed (rerun the same command to resume):\n"
                           + "\n".join(f"[{k}] {e}" for k, e in errors.items()))
    return results


def _train_in_processes(jobs: dict, train_cache, resume: bool, progress: bool) -> tuple[dict, dict]:
    from tqdm.auto import tqdm
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = {k: ctx.Process(target=_child, args=(k, train_cache, str(d), c, resume, queue), daemon=True)
             for k, (d, c) in jobs.items()}
    for p in procs.values():
        p.start()
    bars = {k: tqdm(total=c.steps, desc=f"{k} train", unit="step", position=i, disable=not progress)
            for i, (k, (d, c)) in enumerate(jobs.items())}
    results, errors = {}, {}
    try:
        while len(results) + len(errors) < len(procs):
            while not queue.empty():
                k, res, err = queue.get()
                (errors if err else results)[k] = err or res
            for k, (d, _) in jobs.items():
                bars[k].n = _log_step(d / LOG_FILE)
                bars[k].refresh()
            dead = [k for k, p in procs.items() if not p.is_alive() and k not in results and k not in errors]
            if dead and queue.empty():
                time.sleep(1.0)
                if queue.empty():
                    for k in dead:
                        errors[k] = f"the {k} trainer process died (exit code {procs[k].exitcode})"
            time.sleep(2.0)
    finally:
        for b in bars.values():
            b.close()
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    return results, errors


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ship(work: Path, out_dir: Path, record: dict) -> dict:
    """Copy the trained files into ``out_dir`` and write manifest.json (sha256 pins + record)."""
    from ..fsutil import atomic_path, atomic_write_text
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {"mini-sync.safetensors": work / "sync" / "sync-mini.safetensors",
               "mini-sync.json": work / "sync" / "sync-mini.json",
               "mini-embedding.safetensors": work / "embedding" / "mini-embedding.safetensors",
               "mini-embedding.json": work / "embedding" / "mini-embedding.json"}
    total = sum(p.stat().st_size for p in sources.values())
    if total > SIZE_LIMIT_BYTES:
        raise ValueError(f"mini evaluator weights total {total / 2**20:.1f} MiB, above the "
                         f"{SIZE_LIMIT_BYTES / 2**20:.0f} MiB limit; shrink the configs")
    files = {}
    for name, src in sources.items():
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(src, tmp)
        files[name] = {"sha256": sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size}
    manifest = {"files": files, "total_bytes": total, **record}
    atomic_write_text(out_dir / MINI_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def train_mini_evaluators(dataset: str = "synth", root=None, out_dir=None, work_dir=None, cache_dir=None,
                          sync_cfg: SyncTrainConfig = SyncTrainConfig(),
                          emb_cfg: EmbeddingTrainConfig = EmbeddingTrainConfig(), workers: int = 2,
                          parallel: bool = True, resume: bool = True, progress: bool = True,
                          evaluate: bool = True) -> dict:
    """The whole pipeline; returns a record with wall times (also written to manifest.json)."""
    import torch
    t0 = time.perf_counter()
    work = Path(work_dir) if work_dir else default_work_dir()
    out_dir = Path(out_dir) if out_dir else MINI_WEIGHTS_DIR
    caches = build_caches(dataset, root, "mini", workers=workers, cache_dir=cache_dir, progress=progress)
    t_cache = time.perf_counter() - t0
    t1 = time.perf_counter()
    summaries = train_both(caches["train"], work, sync_cfg, emb_cfg, resume=resume, parallel=parallel,
                           progress=progress)
    t_train = time.perf_counter() - t1
    record = {"dataset": dataset, "train_videos": len(caches["train"]), "test_videos": len(caches["test"]),
              "protocol": caches["train"].cfg.name,
              "wall_seconds": {"decode_cache": round(t_cache, 1), "train": round(t_train, 1),
                               "total": round(time.perf_counter() - t0, 1)},
              "train_seconds": {k: v["elapsed_s"] for k, v in summaries.items()},
              "train_cpu_seconds": {k: v.get("cpu_s") for k, v in summaries.items()},
              "sync_train_config": sync_cfg.to_dict(), "embedding_train_config": emb_cfg.to_dict(),
              "command": "asva-bench train evaluators --profile mini", "cpu_count": os.cpu_count(),
              "torch": torch.__version__}
    manifest = ship(work, out_dir, record)
    result = {"out_dir": str(out_dir), "manifest": manifest}
    if evaluate:
        from ..backbones.mini_embedding import load_checkpoint as load_emb
        from ..backbones.sync_classifier import load_checkpoint as load_sync
        from .mini_eval import evaluate_mini_evaluators
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        result["quality"] = evaluate_mini_evaluators(load_sync(out_dir / "mini-sync.safetensors"),
                                                     load_emb(out_dir / "mini-embedding.safetensors"),
                                                     caches["test"], progress=progress)
    result["wall_seconds_total"] = round(time.perf_counter() - t0, 1)
    return result


__all__ = ["SHIPPED", "build_caches", "load_manifest", "train_mini_evaluators", "train_both", "ship"]
