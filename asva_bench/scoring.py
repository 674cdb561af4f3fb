"""The scoring stage: a run folder -> features -> metrics -> results.json + scores.jsonl.

Each generated clip is decoded once (by decoding threads, a few batches ahead of
the forwards) and shared by every metric; backbone calls are batched; the
ground-truth side (features of the real clips) is computed once per
fingerprint and cached on disk.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed as D
from .avio import MediaError, VideoFrames, decode_protocol_clips, read_audio
from .datasets import get_dataset
from .evaluators import EvaluatorSuite
from .feature_cache import FeatureCache
from .metrics import METRIC_ORDER, METRICS, ClipMetric, FrechetMetric
from .protocol import ProtocolConfig, audio_window, waveforms_to_mel
from .fsutil import stable_hash
from .provenance import git_revision, package_versions, utc_now
from .runs import (RESULTS_FILE, RESULTS_SCHEMA, SCORES_FILE, ClipJob, RunFolderError, clip_relpath,
                   limited_entries, plan_clips, present_clips, read_run, rescoring_paths, results_fingerprint,
                   write_results)
from .tracks import check_track, record_track, rules

class ScoringError(RunFolderError):
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
    decode_threads: int = 1             # decoding beside the forwards (0: in the main thread)
    progress: bool = True
    device: str = "cpu"
    track: str | None = None            # protocol track to score under (None: the run's own)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Run folder checks
# ---------------------------------------------------------------------------
def run_protocol(record: dict, track: str | None = None) -> ProtocolConfig:
    """The run's protocol, on ``track`` when given (else the run's own; runs made before tracks
    existed carry none and get their profile's default, asva_bench.tracks.record_track)."""
    fields = {k: v for k, v in record["protocol"].items() if k != "fingerprint"}
    fields["track"] = check_track(track or record_track(record["protocol"], record.get("profile", "paper")))
    return ProtocolConfig(**fields)


def results_paths(run_dir: Path, record: dict, cfg: ProtocolConfig) -> tuple[Path, Path]:
    """(results.json, scores.jsonl) of a scoring; a rescoring under another track than the run's
    writes results.<track>.json / results.<track>.scores.jsonl beside them (the leaderboard's naming
    of a results file and its scores), leaving the run's own intact."""
    run_dir = Path(run_dir)
    if cfg.track == record_track(record["protocol"], record.get("profile", "paper")):
        return run_dir / RESULTS_FILE, run_dir / SCORES_FILE
    return rescoring_paths(run_dir, cfg.track)


def coverage(run_dir: Path, jobs: list[ClipJob]) -> RunCoverage:
    present_files = present_clips(run_dir)
    expected_ids = {j.clip_id for j in jobs}
    present = [j for j in jobs if j.clip_id in present_files]
    return RunCoverage(jobs, present, sorted(expected_ids - present_files),
                       sorted(present_files - expected_ids))


def _listing(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" ... ({len(ids)} in all)" if len(ids) > n else "")


# ---------------------------------------------------------------------------
# Decoding (runs in the decoding threads)
# ---------------------------------------------------------------------------
def decode_generated_clip(path: Path, cfg: ProtocolConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A generated clip file -> frames [T,3,H,W] in [0,1], audio [samples] re-decoded from the file,
    and the number of real samples in it (the rest is padding; see DecodedClip.audio_length).

    The protocol track reads all the file's frames and its sample-accurate audio; the asva-reference
    track reads the file as the reference evaluation does (one centred clip, reference_io)."""
    frames, audio, length = read_generated_clip(path, cfg)
    return frames_to_float(frames), audio, length


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (any leading shape) -> float in [0, 1]; float frames pass through."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames


def read_generated_clip(path: Path, cfg: ProtocolConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """decode_generated_clip, the frames left as the file's uint8 where the track reads them as they
    are (frames_to_float converts them): what the decoding threads do. They run no torch op on the
    frames, whose OpenMP team would spin on the cores the forwards use; the conversion, element-wise,
    runs on whole batches in the forwards' thread and gives the same numbers."""
    if rules(cfg).media == "reference":
        from .reference_io import decode_reference_generated
        clip = decode_reference_generated(path, cfg)
        frames, audio, length = clip.frames, clip.audio, clip.audio_length
    else:
        try:  # first: PyAV reports a broken container as a MediaError, without native stderr lines
            wav, sr = read_audio(path)
        except MediaError as e:
            raise MediaError(f"{e} (generated clips carry the ground-truth audio, muxed by `asva-bench run`)") from e
        vf = VideoFrames(path)
        if len(vf) != cfg.num_frames:
            raise MediaError(f"{path}: {len(vf)} frames, the protocol needs {cfg.num_frames}; regenerate "
                             "the clip (delete it and rerun `asva-bench run`)")
        frames = torch.from_numpy(vf.get(np.arange(cfg.num_frames))).permute(0, 3, 1, 2)
        audio, length = audio_window(wav, sr, 0.0, cfg), cfg.audio_samples
    if tuple(frames.shape[-2:]) != (cfg.height, cfg.width):
        raise MediaError(f"{path}: frames are {frames.shape[-1]}x{frames.shape[-2]}, the protocol needs "
                         f"{cfg.width}x{cfg.height}; regenerate the clip at the protocol size")
    return frames, audio, int(length or cfg.audio_samples)


class _VideoItems:
    """One item per test video: its generated clips (+ ground truth when not cached)."""

    def __init__(self, run_dir, cfg, need_gt, need_video_batch=False):
        self.run_dir, self.cfg, self.need_gt = Path(run_dir), cfg, need_gt
        self.need_video_batch = need_video_batch

    def __call__(self, group):
        entry, jobs = group
        gen = [read_generated_clip(self.run_dir / clip_relpath(j.clip_id), self.cfg) for j in jobs]
        gt, video = None, None
        if self.need_gt:
            clips = decode_protocol_clips(entry.path, self.cfg)
            gt = [(clips[j.index].frames, clips[j.index].audio,
                   clips[j.index].audio_length or self.cfg.audio_samples) for j in jobs]
            if self.need_video_batch:  # all the video's clips, for per-video batch statistics
                video = torch.stack([c.frames for c in clips])
        return {"jobs": jobs, "gen": gen, "gt": gt, "gt_video": video}


def prefetched(fn, items, threads: int, ahead: int):
    """fn(item) for each item, in order, computed by ``threads`` threads; while the consumer waits
    for an item, at most ``ahead`` more are queued (0 threads: computed in the caller, one at a time).

    Threads, not worker processes: decord decodes without the GIL, the decoded tensors are not
    copied between processes, and nothing is forked; the forwards' ops release the GIL too."""
    if threads <= 0:
        yield from map(fn, items)
        return
    from collections import deque

    from .threads import single_torch_thread_pool

    it = iter(items)
    pending: deque = deque()
    # single torch threads: where a track's reader runs tensor ops (the asva-reference track's
    # conversion, the ground truth's clips), a team of OpenMP threads would spin beside the forwards;
    # on exit (an error, an abandoned loop) what is queued is dropped, what runs is waited for
    with single_torch_thread_pool(threads, "asva-decode") as pool:
        for x in it:
            pending.append(pool.submit(fn, x))
            if len(pending) >= ahead:
                break
        while pending:
            done = pending.popleft()
            for x in it:
                pending.append(pool.submit(fn, x))
                break
            yield done.result()


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------
def fid_features(suite: EvaluatorSuite, clips: torch.Tensor, cfg, one_batch: bool = False) -> torch.Tensor:
    """FID features of frames 2..T of clips [B,T,3,H,W] -> [B, T-1, D].

    Track corrected: eval-mode BatchNorm, any batching. Track asva-reference: BatchNorm normalises
    with the statistics of the batch it is given, as the reference's Inception (never put in eval
    mode) does, and the batches are the reference's: each clip's 12 frames on their own (a
    generated clip file), or all clips of a test video in one batch (``one_batch``, its ground
    truth); conditioning frames included, their features then dropped. Deterministic given the
    batch, so FID depends on how frames are grouped, as it does in the reference."""
    B, T = clips.shape[:2]
    if rules(cfg).fid_batchnorm == "batch":
        if one_batch:
            feats = suite.image_features(clips.reshape(-1, *clips.shape[2:]), batch_statistics=True)
            return feats.reshape(B, T, -1)[:, 1:]
        return torch.stack([suite.image_features(c, batch_statistics=True)[1:] for c in clips])
    return suite.image_features(clips[:, 1:].reshape(-1, *clips.shape[2:])).reshape(B, T - 1, -1)


def gen_features(suite: EvaluatorSuite, frames: torch.Tensor, audio: torch.Tensor, cfg, needs: set,
                 lengths=None) -> dict:
    """Features of generated clips [B,T,3,H,W] with their own (re-decoded) audio."""
    B, T = frames.shape[:2]
    out = {}
    mel = waveforms_to_mel(audio, cfg, lengths)
    later = frames[:, 1:].reshape(-1, *frames.shape[2:])  # frames 2..T
    if "image_features" in needs:
        out["image_features"] = fid_features(suite, frames, cfg)
    if "video_features" in needs:
        out["video_features"] = suite.video_features(frames)
    if "vision_embedding" in needs:
        out["vision_embedding"] = suite.embed_vision(later).reshape(B, T - 1, -1)
    if "audio_embedding" in needs:
        out["audio_embedding"] = suite.embed_audio(mel)
    if "sync_logit" in needs:
        out["sync_logit"] = suite.sync_logit(frames, mel).reshape(B)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def gt_features(suite: EvaluatorSuite, frames: torch.Tensor, audio: torch.Tensor, cfg, needs: set,
                lengths=None) -> dict:
    """Ground-truth side: what the metrics compare against (cached by fingerprint)."""
    B, T = frames.shape[:2]
    out = {}
    mel = waveforms_to_mel(audio, cfg, lengths)
    if "image_features" in needs:
        out["image_features"] = fid_features(suite, frames, cfg)
    if "video_features" in needs:
        out["video_features"] = suite.video_features(frames)
    if "vision_embedding" in needs:
        out["first_frame_embedding"] = suite.embed_vision(frames[:, 0])
        if rules(cfg).alignsync_first_frame_audio == "ground-truth":
            out["first_frame_audio_embedding"] = suite.embed_audio(mel)
    if "sync_logit" in needs:
        out["sync_logit"] = suite.sync_logit(frames, mel).reshape(B)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def alignsync_first_frame_audio(gen: dict, gt: dict, cfg) -> torch.Tensor | None:
    """The audio embedding of AlignSync's first-frame term c(a, v_1): the ground-truth clip's audio
    (asva-reference, as the reference computes it) or the generated clip's (corrected: the same
    audio as c(a, v_k))."""
    if rules(cfg).alignsync_first_frame_audio == "ground-truth":
        return gt.get("first_frame_audio_embedding")
    return gen.get("audio_embedding")


def it_text(entry, cfg) -> str:
    """IT's text for a test video: the raw class folder name on the asva-reference track (underscores
    kept, as the reference passes it; a dataset without class folders, TheGreatestHits, gives its
    fixed text), the dataset's class text on corrected (folder name with underscores as spaces)."""
    if rules(cfg).it_text == "folder" and Path(entry.rel_path).parent.name == entry.class_name:
        return entry.class_name
    return entry.text


def it_texts(split_entries, cfg) -> dict:
    """video_id -> IT's text, for the videos of a split given in split-file order.

    asva-reference: the reference sorts its list of test videos but not the list of their categories
    read beside it from the split file, so the i-th video in sorted order is paired with the category
    of the split file's i-th line. For a split file in sorted order that is each video's own class;
    otherwise the reference mis-pairs texts, and so does this track (synth's test.txt lists its
    classes in generator order, not sorted: docs/protocol.md)."""
    if rules(cfg).it_text != "folder":
        return {e.video_id: it_text(e, cfg) for e in split_entries}
    ordered = sorted(split_entries, key=lambda e: e.rel_path)
    return {e.video_id: it_text(line, cfg) for e, line in zip(ordered, split_entries)}


def compute_metrics(metric_classes, gen: dict, gt: dict, text, video_index, replicates: int,
                    device: str = "cpu", workers: int | None = None):
    """Stacked features -> ({metric: summary with CI}, {clip metric: per-clip values}).

    The Frechet intervals (FID / FVD: 200 exact distances each) are the long part: each spreads its
    replicates over ``workers`` threads, one metric after the other, and the other metrics then
    run one a thread. Every thread uses a single-threaded BLAS: the small matrices of a replicate
    gain nothing from BLAS threads, and several BLAS thread pools on the same cores oversubscribe
    them badly. Every replicate is computed exactly as alone, so the numbers do not depend on the
    threads."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    workers = workers or max(1, os.cpu_count() or 1)

    def one(cls, threads=1):
        m = cls()
        m.update_from_features(gen, gt, text, video_index)
        s = m.summary(device=device, threads=threads) if isinstance(m, FrechetMetric) else m.summary(replicates)
        return s, (m.per_clip() if isinstance(m, ClipMetric) else None)

    frechet = [c for c in metric_classes if issubclass(c, FrechetMetric)]
    others = [c for c in metric_classes if not issubclass(c, FrechetMetric)]
    with threadpool_limits(limits=1, user_api="blas"):
        done = {c.name: one(c, workers) for c in frechet}
        with ThreadPoolExecutor(max(1, min(workers, len(others)))) as pool:
            done.update(zip([c.name for c in others], pool.map(one, others)))
    summaries = {c.name: done[c.name][0] for c in metric_classes}
    per_clip = {c.name: done[c.name][1] for c in metric_classes if done[c.name][1] is not None}
    return summaries, per_clip


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------
def score_run(run_dir, suite: EvaluatorSuite, opts: ScoreOptions | None = None) -> dict:
    opts = opts or ScoreOptions()
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    rank, world = D.init_from_env()
    record = read_run(run_dir).to_dict()
    cfg = run_protocol(record, opts.track)
    run_track = record_track(record["protocol"], record.get("profile", "paper"))
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
    # asva-reference: the ground truth's FID batch is a whole test video (all its clips)
    video_batch_fid = "image_features" in needs and rules(cfg).fid_batchnorm == "batch"
    # an item is one test video (its clips); the decoding threads keep two forward batches decoded
    # ahead, so decoding overlaps the forwards instead of waiting for each batch to be consumed
    ahead = max(2, -(-2 * opts.batch_size // max(1, cfg.clips_per_video)))
    decode = _VideoItems(run_dir, cfg, need_gt=cached_gt is None,
                         need_video_batch=video_batch_fid and cached_gt is None)
    loader = prefetched(decode, group_list, opts.decode_threads, ahead)

    video_ids = {e.video_id: i for i, e in enumerate(entries)}
    rows: list[dict] = []     # per-clip scalar features, for metrics and scores.jsonl
    gt_new: dict = {}
    pending: list = []
    bar = tqdm(total=sum(len(js) for _, js in group_list), desc="score", unit="clip",
               disable=not opts.progress or rank != 0, dynamic_ncols=True)
    gt_needs = needs - {"image_features"} if video_batch_fid else needs

    def flush():
        if not pending:
            return
        frames = frames_to_float(torch.stack([p["gen"][0] for p in pending]))
        audio = torch.stack([p["gen"][1] for p in pending])
        with torch.no_grad():
            g = gen_features(suite, frames, audio, cfg, needs, [p["gen"][2] for p in pending])
            if cached_gt is None:
                gt = gt_features(suite, torch.stack([p["gt"][0] for p in pending]),
                                 torch.stack([p["gt"][1] for p in pending]), cfg, gt_needs,
                                 [p["gt"][2] for p in pending])
                for k, p in enumerate(pending):
                    gt_new[p["job"].clip_id] = {**{n: v[k] for n, v in gt.items()}, **p["gt_extra"]}
        for k, p in enumerate(pending):
            rows.append({"job": p["job"], "gen": {n: v[k] for n, v in g.items()}})
        bar.update(len(pending))
        pending.clear()

    with closing(loader):  # an error below stops the decoding threads at once
        for item in loader:
            video_fid = None
            if item["gt_video"] is not None:
                with torch.no_grad():
                    video_fid = fid_features(suite, item["gt_video"], cfg, one_batch=True).detach().float().cpu()
            for k, job in enumerate(item["jobs"]):
                extra = {"image_features": video_fid[job.index]} if video_fid is not None else {}
                pending.append({"job": job, "gen": item["gen"][k],
                                "gt": item["gt"][k] if item["gt"] is not None else None, "gt_extra": extra})
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
    D.barrier()
    if rank != 0:
        return {}
    all_rows.sort(key=lambda r: r["job"].clip_id)
    if not all_rows:
        raise ScoringError(f"{run_dir}: no generated clips to score; run `asva-bench run` first")

    need_text = "text_embedding" in needs   # any selected metric that declares it (IT, a plugin)
    text_by, text_of = {}, it_texts(manifest.split(ds["split"]), cfg)
    if need_text:
        texts = sorted({text_of[r["job"].entry.video_id] for r in all_rows})
        with torch.no_grad():
            text_by = dict(zip(texts, suite.embed_text(texts).detach().float().cpu()))
    vid = torch.tensor([video_ids[r["job"].entry.video_id] for r in all_rows])
    gen = {n: torch.stack([r["gen"][n] for r in all_rows]) for n in all_rows[0]["gen"]}
    gt_names = next(iter(merged_gt.values())).keys() if merged_gt else []
    gt = {n: torch.stack([merged_gt[r["job"].clip_id][n] for r in all_rows]) for n in gt_names}
    first_audio = alignsync_first_frame_audio(gen, gt, cfg)
    if first_audio is not None:
        gt["first_frame_audio_embedding"] = first_audio
    text = torch.stack([text_by[text_of[r["job"].entry.video_id]] for r in all_rows]) if need_text else None
    metrics, values = compute_metrics(metric_classes, gen, gt, text, vid, opts.replicates, device=opts.device)
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
        "protocol": {**cfg.to_dict(), "fingerprint": cfg.fingerprint()},
        **({"generated_on_track": run_track} if cfg.track != run_track else {}),
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
        # the whole stage: checks, features, metrics and their intervals (the write is all that follows)
        "timing_s": {**record.get("timing_s", {}), "score": round(time.perf_counter() - t0, 3)},
        "versions": package_versions(),
        "git_revision_scored": git_revision(),
        "scored": utc_now(),
    }
    results["fingerprint"] = results_fingerprint(results)
    results_path, _ = results_paths(run_dir, record, cfg)
    write_results(results_path, results, score_rows)
    return results
