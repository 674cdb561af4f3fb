"""The scoring stage: a run folder -> features -> metrics -> results.json + scores.jsonl.

Each generated clip is decoded once (in a loader worker, overlapping the
forwards) and shared by every metric; backbone calls are batched; the
ground-truth side (features of the real clips) is computed once per
fingerprint and cached on disk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed as D
from .avio import MediaError, VideoFrames, atomic_path, atomic_write_text, decode_protocol_clips, \
    read_audio
from .datasets import get_dataset
from .evaluators import EvaluatorSuite
from .feature_cache import FeatureCache
from .generation import ClipJob, clip_relpath, limited_entries, plan_clips
from .metrics import METRIC_ORDER, METRICS, ClipMetric, FrechetMetric
from .protocol import ProtocolConfig, audio_window, waveforms_to_mel
from .provenance import git_revision, package_versions, results_fingerprint, stable_hash, utc_now

RESULTS_SCHEMA = "asva-bench/results/v1"


class ScoringError(RuntimeError):
    """A run folder that cannot be scored as asked; names the clips and the fix."""


@dataclass
class RunCoverage:
    expected: list[ClipJob]
    present: list[ClipJob]
    missing: list[str]
    extra: list[str]


@dataclass
class ScoreOptions:
    metrics: tuple[str, ...] = METRIC_ORDER
    batch_size: int = 32
    allow_incomplete: bool = False      # score what is there; coverage recorded
    allow_dataset_change: bool = False  # dataset manifest differs from the run's
    replicates: int = 1000
    num_workers: int = 1
    progress: bool = True
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Run folder checks
# ---------------------------------------------------------------------------
def load_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ScoringError(f"{path} is missing: not a run folder. Generate one with `asva-bench run`, "
                           "or write run.json for clips made by another tool (docs/results-format.md)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ScoringError(f"{path} is not valid JSON ({e})") from e


def run_protocol(record: dict) -> ProtocolConfig:
    fields = {k: v for k, v in record["protocol"].items() if k != "fingerprint"}
    return ProtocolConfig(**fields)


def coverage(run_dir: Path, jobs: list[ClipJob]) -> RunCoverage:
    vdir = Path(run_dir) / "videos"
    present_files = {str(p.relative_to(vdir))[:-4] for p in vdir.rglob("*.mp4")
                     if not p.name.startswith(".")} if vdir.is_dir() else set()
    expected_ids = {j.clip_id for j in jobs}
    present = [j for j in jobs if j.clip_id in present_files]
    return RunCoverage(jobs, present, sorted(expected_ids - present_files),
                       sorted(present_files - expected_ids))


def _listing(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" ... ({len(ids)} in all)" if len(ids) > n else "")


# ---------------------------------------------------------------------------
# Decoding (runs in DataLoader workers)
# ---------------------------------------------------------------------------
def decode_generated_clip(path: Path, cfg: ProtocolConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A generated clip file -> frames [T,3,H,W] in [0,1], audio [samples] re-decoded from the file."""
    vf = VideoFrames(path)
    if len(vf) != cfg.num_frames:
        raise MediaError(f"{path}: {len(vf)} frames, the protocol needs {cfg.num_frames}; regenerate "
                         "the clip (delete it and rerun `asva-bench run`)")
    frames = torch.from_numpy(vf.get(np.arange(cfg.num_frames))).permute(0, 3, 1, 2).float() / 255.0
    if tuple(frames.shape[-2:]) != (cfg.height, cfg.width):
        raise MediaError(f"{path}: frames are {frames.shape[-1]}x{frames.shape[-2]}, the protocol needs "
                         f"{cfg.width}x{cfg.height}; regenerate the clip at the protocol size")
    try:
        wav, sr = read_audio(path)
    except MediaError as e:
        raise MediaError(f"{e} (generated clips carry the ground-truth audio, muxed by `asva-bench run`)") from e
    return frames, audio_window(wav, sr, 0.0, cfg)


class _VideoItems(torch.utils.data.Dataset):
    """One item per test video: its generated clips (+ ground truth when not cached)."""

    def __init__(self, groups, run_dir, cfg, need_gt):
        self.groups, self.run_dir, self.cfg, self.need_gt = groups, Path(run_dir), cfg, need_gt

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, i):
        entry, jobs = self.groups[i]
        gen = [decode_generated_clip(self.run_dir / clip_relpath(j.clip_id), self.cfg) for j in jobs]
        gt = None
        if self.need_gt:
            clips = decode_protocol_clips(entry.path, self.cfg)
            gt = [(clips[j.index].frames, clips[j.index].audio) for j in jobs]
        return {"jobs": jobs, "gen": gen, "gt": gt}


def _collate_one(items):
    return items[0]


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------
def gen_features(suite: EvaluatorSuite, frames: torch.Tensor, audio: torch.Tensor, cfg, needs: set) -> dict:
    """Features of generated clips [B,T,3,H,W] with their own (re-decoded) audio."""
    B, T = frames.shape[:2]
    out = {}
    mel = waveforms_to_mel(audio, cfg)
    later = frames[:, 1:].reshape(-1, *frames.shape[2:])  # frames 2..T
    if "image_features" in needs:
        out["image_features"] = suite.image_features(later).reshape(B, T - 1, -1)
    if "video_features" in needs:
        out["video_features"] = suite.video_features(frames)
    if "vision_embedding" in needs:
        out["vision_embedding"] = suite.embed_vision(later).reshape(B, T - 1, -1)
    if "audio_embedding" in needs:
        out["audio_embedding"] = suite.embed_audio(mel)
    if "sync_logit" in needs:
        out["sync_logit"] = suite.sync_logit(frames, mel).reshape(B)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def gt_features(suite: EvaluatorSuite, frames: torch.Tensor, audio: torch.Tensor, cfg, needs: set) -> dict:
    """Ground-truth side: what the metrics compare against (cached by fingerprint)."""
    B, T = frames.shape[:2]
    out = {}
    mel = waveforms_to_mel(audio, cfg)
    if "image_features" in needs:
        out["image_features"] = suite.image_features(frames[:, 1:].reshape(-1, *frames.shape[2:])).reshape(B, T - 1, -1)
    if "video_features" in needs:
        out["video_features"] = suite.video_features(frames)
    if "vision_embedding" in needs:
        out["first_frame_embedding"] = suite.embed_vision(frames[:, 0])
    if "sync_logit" in needs:
        out["sync_logit"] = suite.sync_logit(frames, mel).reshape(B)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def compute_metrics(metric_classes, gen: dict, gt: dict, text, video_index, replicates: int):
    """Stacked features -> ({metric: summary with CI}, {clip metric: per-clip values})."""
    summaries, per_clip = {}, {}
    for cls in metric_classes:
        m = cls()
        m.update_from_features(gen, gt, text, video_index)
        summaries[cls.name] = m.summary() if isinstance(m, FrechetMetric) else m.summary(replicates)
        if isinstance(m, ClipMetric):
            per_clip[cls.name] = m.per_clip()
    return summaries, per_clip


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------
def score_run(run_dir, suite: EvaluatorSuite, opts: ScoreOptions | None = None) -> dict:
    opts = opts or ScoreOptions()
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    rank, world = D.init_from_env()
    record = load_run(run_dir)
    cfg = run_protocol(record)
    if suite.profile != record.get("profile"):
        raise ScoringError(f"{run_dir}: the run was generated for profile '{record.get('profile')}' but "
                           f"the evaluators are '{suite.profile}'; score with --profile {record.get('profile')}")
    metric_classes = [METRICS.get(m) for m in opts.metrics]
    needs = {n for c in metric_classes for n in c.needs}

    ds = record["dataset"]
    spec = get_dataset(ds["name"])
    manifest = spec.load(ds["root"])
    now_hash = manifest.hash(ds["split"])
    if now_hash != ds["manifest_hash"] and not opts.allow_dataset_change:
        raise ScoringError(
            f"dataset '{ds['name']}' at {ds['root']} changed since the run was generated (manifest "
            f"{now_hash} != {ds['manifest_hash']}); regenerate the run, or pass --allow-dataset-change "
            "to score against the current files (recorded in the results)")
    entries = limited_entries(manifest.split(ds["split"]), ds.get("limit"))
    cov = coverage(run_dir, plan_clips(entries, cfg))
    if (cov.missing or cov.extra) and not opts.allow_incomplete:
        parts = []
        if cov.missing:
            parts.append(f"{len(cov.missing)} expected clip(s) missing: {_listing(cov.missing)}")
        if cov.extra:
            parts.append(f"{len(cov.extra)} clip(s) not in the protocol: {_listing(cov.extra)}")
        raise ScoringError(f"{run_dir}: " + "; ".join(parts) + ". Finish the run (rerun `asva-bench run` "
                           "with the same arguments), or pass --allow-incomplete to score what is there "
                           "(the coverage is recorded and shown on the leaderboard)")

    # ground-truth features: cached by everything that affects them
    cache_key = {"dataset": ds["name"], "split": ds["split"], "manifest_hash": now_hash,
                 "protocol": cfg.fingerprint(), "suite": suite.fingerprint(), "needs": sorted(needs),
                 "clips": stable_hash([j.clip_id for j in cov.present]), "cache_version": 1}
    cache = FeatureCache.default()
    cached_gt = cache.load(cache_key)

    groups: dict = {}
    for j in cov.present:
        groups.setdefault(j.entry, []).append(j)
    group_list = D.shard(sorted(groups.items(), key=lambda kv: kv[0].rel_path), rank, world)
    loader = torch.utils.data.DataLoader(
        _VideoItems(group_list, run_dir, cfg, need_gt=cached_gt is None), batch_size=1,
        num_workers=opts.num_workers, collate_fn=_collate_one,
        persistent_workers=False, prefetch_factor=4 if opts.num_workers else None)

    video_ids = {e.video_id: i for i, e in enumerate(entries)}
    rows: list[dict] = []     # per-clip scalar features, for metrics and scores.jsonl
    gt_new: dict = {}
    pending: list = []
    bar = tqdm(total=sum(len(js) for _, js in group_list), desc="score", unit="clip",
               disable=not opts.progress or rank != 0, dynamic_ncols=True)

    def flush():
        if not pending:
            return
        frames = torch.stack([p[1] for p in pending])
        audio = torch.stack([p[2] for p in pending])
        with torch.no_grad():
            g = gen_features(suite, frames, audio, cfg, needs)
            if cached_gt is None:
                gt = gt_features(suite, torch.stack([p[3] for p in pending]),
                                 torch.stack([p[4] for p in pending]), cfg, needs)
                for k, j in enumerate(p[0] for p in pending):
                    gt_new[j.clip_id] = {n: v[k] for n, v in gt.items()}
        for k, (job, *_rest) in enumerate(pending):
            rows.append({"job": job, "gen": {n: v[k] for n, v in g.items()}})
        bar.update(len(pending))
        pending.clear()

    for item in loader:
        for k, job in enumerate(item["jobs"]):
            f, a = item["gen"][k]
            gf, ga = item["gt"][k] if item["gt"] is not None else (None, None)
            pending.append((job, f, a, gf, ga))
            if len(pending) >= opts.batch_size:
                flush()
    flush()
    bar.close()

    # every rank holds its shard; gather the per-clip features on rank 0
    if cached_gt is None:
        merged_gt = {}
        for part in D.all_gather_objects(gt_new):
            merged_gt.update(part)
        if rank == 0 and len(merged_gt) == len(cov.present):
            cache.save(cache_key, merged_gt)
    else:
        merged_gt = cached_gt
    all_rows = [r for part in D.all_gather_objects(rows) for r in part]
    elapsed_local = time.perf_counter() - t0
    D.barrier()
    if rank != 0:
        return {}
    all_rows.sort(key=lambda r: r["job"].clip_id)
    if not all_rows:
        raise ScoringError(f"{run_dir}: no generated clips to score; run `asva-bench run` first")

    need_text = any(c.name == "it" for c in metric_classes)
    text_by = {}
    if need_text:
        texts = sorted({r["job"].entry.text for r in all_rows})
        with torch.no_grad():
            text_by = dict(zip(texts, suite.embed_text(texts).detach().float().cpu()))
    vid = torch.tensor([video_ids[r["job"].entry.video_id] for r in all_rows])
    gen = {n: torch.stack([r["gen"][n] for r in all_rows]) for n in all_rows[0]["gen"]}
    gt_names = next(iter(merged_gt.values())).keys() if merged_gt else []
    gt = {n: torch.stack([merged_gt[r["job"].clip_id][n] for r in all_rows]) for n in gt_names}
    text = torch.stack([text_by[r["job"].entry.text] for r in all_rows]) if need_text else None
    metrics, values = compute_metrics(metric_classes, gen, gt, text, vid, opts.replicates)
    per_clip = {r["job"].clip_id: {m: float(v[i]) for m, v in values.items()} for i, r in enumerate(all_rows)}

    score_rows = [{"clip_id": r["job"].clip_id, "video_id": r["job"].entry.video_id,
                   "class": r["job"].entry.class_name, "text": r["job"].entry.text,
                   "metrics": per_clip[r["job"].clip_id]} for r in all_rows]
    per_class = {}
    for c in sorted({r["class"] for r in score_rows}):
        sel = [r for r in score_rows if r["class"] == c]
        per_class[c] = {m: float(np.mean([r["metrics"][m] for r in sel]))
                        for m in sel[0]["metrics"]} if sel else {}
        per_class[c]["n_clips"] = len(sel)

    results = {
        **record,
        "schema": RESULTS_SCHEMA,
        "backbones": suite.fingerprint(),
        "clips": {**record.get("clips", {}), "expected": len(cov.expected), "scored": len(all_rows),
                  "failed": len(cov.expected) - len(all_rows), "failed_ids": cov.missing,
                  "extra_ignored": cov.extra},
        "coverage": len(all_rows) / max(1, len(cov.expected)),
        # what was scored, not what generation reported: clips deleted or never made count
        "status": "complete" if not cov.missing else "incomplete",
        "dataset_changed": now_hash != ds["manifest_hash"],
        "metrics": metrics,
        "per_class": per_class,
        "ci_method": {"kind": "percentile bootstrap over test videos", "level": 0.95,
                      "replicates": opts.replicates, "frechet_replicates": "per metric (FID/FVD: 200)"},
        "timing_s": {**record.get("timing_s", {}), "score": round(elapsed_local, 3)},
        "versions": package_versions(),
        "git_revision_scored": git_revision(),
        "scored": utc_now(),
    }
    results["fingerprint"] = results_fingerprint(results)
    with atomic_path(run_dir / "scores.jsonl") as tmp:
        Path(tmp).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in score_rows))
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, sort_keys=True))
    return results
