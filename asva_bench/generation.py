"""The generation stage of `asva-bench run`: test clips -> adapter -> clip files.

Resumable per clip (a clip file exists only once it is complete, thanks to
atomic writes), sharded across ranks under torchrun, with a run manifest
that records everything that produced the clips.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed as D
from .adapters import Adapter, AdapterError, ClipBatch, setup_adapter, validate_output
from .profiles import get_profile
from .avio import ClipEncoding, MediaError, decode_protocol_clips, encoding_for, write_generated_clip
from .datasets import Manifest, VideoEntry
from .protocol import ProtocolConfig, waveforms_to_mel
from .provenance import clip_seed, git_revision, package_versions, utc_now
from .runs import (LIMIT_RULE, RUN_FILE, RUN_SCHEMA, RunFolderError, clip_relpath, limited_entries, plan_clips,
                   read_run_json, remove_stale_temp_files, write_run)

@dataclass
class RunSpec:
    """Everything that identifies a generation run (compared on resume)."""
    adapter: Adapter
    adapter_target: str
    manifest: Manifest
    split: str
    profile: str
    protocol: ProtocolConfig
    seed: int = 0
    limit: int | None = None
    lossless: bool = False
    # control runs: the model hears the audio this many seconds off (clips keep their own audio)
    audio_shift: float = 0.0

    @property
    def encoding(self) -> ClipEncoding:
        return encoding_for(self.profile, self.lossless)

    def identity(self) -> dict:
        ident = {
            "model": {"name": self.adapter.name, "adapter": self.adapter_target,
                      "config": self.adapter.config(), "first_frame": self.adapter.first_frame},
            "dataset": {"name": self.manifest.dataset, "split": self.split,
                        "root": self.manifest.root,
                        "manifest_hash": self.manifest.hash(self.split),
                        "limit": self.limit, **({"limit_rule": LIMIT_RULE} if self.limit else {})},
            "profile": self.profile,
            "protocol": {**self.protocol.to_dict(), "fingerprint": self.protocol.fingerprint()},
            "encoding": {**self.encoding.to_dict(), "audio_source": "ground truth",
                         "audio_window": MUXED_AUDIO[self.protocol.track]},
            "seeds": {"run_seed": self.seed, "clip_seed_rule": "sha256('<run_seed>:<clip_id>')[:8] & (2^63-1)"},
        }
        native = self.adapter.native_output(self.protocol)
        if native is not None:  # absent for adapters that return the protocol's clip
            from .adapters.resample import mapping_record
            ident["model"]["output"] = mapping_record(native, self.protocol)
        if self.audio_shift:  # absent for ordinary runs, so their identity is unchanged
            ident["conditioning"] = {
                "audio_shift_s": float(self.audio_shift),
                "rule": SHIFT_RULE}
        return ident


SHIFT_RULE = ("the model is given the audio window |shift| s later in the same recording, or earlier where "
              "later runs past its end (clamped to the recording: at least |shift| - 1 frame off); written "
              "clips and scoring use the true audio")
#: The ground-truth audio muxed into generated clips, per protocol track.
MUXED_AUDIO = {"asva-reference": "the reference's whole decoded frames in [start, start + 2 s] at 16 kHz, "
                                 "uncropped, original channels",
               "corrected": "the protocol window: 32000 samples at 16 kHz, mono"}


def _entries(spec: RunSpec) -> list[VideoEntry]:
    entries = spec.manifest.split(spec.split)
    if not entries:
        raise RunFolderError(f"dataset '{spec.manifest.dataset}' at {spec.manifest.root} has no "
                             f"'{spec.split}' videos; check its {spec.split}.txt")
    return limited_entries(entries, spec.limit)


def _check_or_write_manifest(out: Path, spec: RunSpec, rank: int) -> dict:
    ident = spec.identity()
    if (out / RUN_FILE).exists():
        old = read_run_json(out)
        diffs = [k for k in sorted(set(ident) | ({"conditioning"} & set(old))) if old.get(k) != ident.get(k)]
        if diffs:
            raise RunFolderError(
                f"{out} holds a different run (differs in: {', '.join(diffs)}); "
                "use another --out, or delete the folder to start over")
        return old
    if rank == 0:
        record = {"schema": RUN_SCHEMA, **ident, "status": "running", "created": utc_now()}
        write_run(out, record)
        return record
    return {}


def _batches(jobs_by_video: dict, spec: RunSpec, skip_bad: bool, skipped: list):
    """Decode each video once, yield ClipBatch-sized groups of (job, DecodedClip)."""
    cfg = spec.protocol
    bs = max(1, int(spec.adapter.batch_size))
    pending = []
    for entry, jobs in jobs_by_video.items():
        try:
            clips = decode_protocol_clips(entry.path, cfg, audio_shift=spec.audio_shift)
        except MediaError as e:
            if not skip_bad:
                raise MediaError(f"{e}\n(run with --skip-bad to count and list bad files instead "
                                 "of stopping)") from e
            skipped.append({"video": entry.rel_path, "error": str(e), "clips": [j.clip_id for j in jobs]})
            continue
        for job in jobs:
            pending.append((job, clips[job.index]))
            if len(pending) == bs:
                yield pending
                pending = []
    if pending:
        yield pending


def _make_batch(group, spec: RunSpec) -> ClipBatch:
    cfg = spec.protocol
    # what the model hears: its own audio, or the shifted window of a control run
    audio = torch.stack([c.audio if c.model_audio is None else c.model_audio for _, c in group])
    lengths = [(c.audio_length if c.model_audio is None else c.model_audio_length) or cfg.audio_samples
               for _, c in group]
    wants_video = "video" in spec.adapter.inputs
    return ClipBatch(
        first_frame=torch.stack([c.frames[0] for _, c in group]),
        audio=audio,
        mel=waveforms_to_mel(audio, cfg, lengths),
        text=[j.entry.text for j, _ in group],
        clip_ids=[j.clip_id for j, _ in group],
        seeds=[clip_seed(spec.seed, j.clip_id) for j, _ in group],
        protocol=cfg,
        video=torch.stack([c.frames for _, c in group]) if wants_video else None,
        class_names=[j.entry.class_name for j, _ in group],
    )


def run_generation(spec: RunSpec, out, *, skip_bad: bool = False, device: str = "cpu",
                   progress: bool = True) -> dict:
    """Generate every missing clip of the run into ``out``; returns the run manifest."""
    out = Path(out)
    rank, world = D.init_from_env()
    record = _check_or_write_manifest(out, spec, rank)
    if rank == 0:
        remove_stale_temp_files(out)
    D.barrier()
    if rank != 0:
        record = read_run_json(out)

    jobs = plan_clips(_entries(spec), spec.protocol)
    missing = [j for j in jobs if not (out / clip_relpath(j.clip_id)).exists()]
    D.barrier()  # every rank has listed the same missing clips before anyone writes
    mine = D.shard(missing, rank, world)
    by_video: dict = {}
    for j in mine:
        by_video.setdefault(j.entry, []).append(j)

    t0 = time.perf_counter()
    skipped: list = []
    bar = tqdm(total=len(mine), desc=f"generate [{spec.adapter.name}]", unit="clip",
               disable=not progress or rank != 0, dynamic_ncols=True)
    if mine:
        setup_adapter(spec.adapter, spec.protocol, device, get_profile(spec.profile))
    for group in _batches(by_video, spec, skip_bad, skipped):
        batch = _make_batch(group, spec)
        with torch.no_grad():
            try:
                raw = spec.adapter.generate(batch)
            except AdapterError:
                raise
            except Exception as e:
                raise AdapterError(f"adapter '{spec.adapter.name}' failed on clips "
                                   f"{batch.clip_ids}: {type(e).__name__}: {e}") from e
        frames = validate_output(spec.adapter, batch, raw)
        for k, (job, clip) in enumerate(group):
            write_generated_clip(out / clip_relpath(job.clip_id), frames[k], spec.protocol, spec.encoding,
                                 audio=clip.audio if clip.mux_audio is None else clip.mux_audio)
        bar.update(len(group))
    bar.close()
    elapsed = time.perf_counter() - t0

    all_skipped = [s for part in D.all_gather_objects(skipped) for s in part]
    times = D.all_gather_objects(elapsed)
    D.barrier()
    if rank == 0:
        present = sum((out / clip_relpath(j.clip_id)).exists() for j in jobs)
        prior = record.get("clips", {}).get("skipped_inputs", [])
        seen = {s["video"] for s in all_skipped}
        all_skipped += [s for s in prior if s["video"] not in seen]
        record.update({
            "clips": {"expected": len(jobs), "generated": present,
                      "failed": len(jobs) - present, "skipped_inputs": all_skipped},
            "versions": package_versions(),
            "git_revision": git_revision(),
            # cumulative over resumed invocations (a resume that finds every clip adds ~0)
            "timing_s": {"generate": round(float((record.get("timing_s") or {}).get("generate", 0.0))
                                           + max(times), 3)},
            "launch": {"world_size": world, "device": device},
            "status": "complete" if present == len(jobs) else "incomplete",
            "finished": utc_now(),
        })
        write_run(out, record)
    D.barrier()
    if rank != 0:
        record = read_run_json(out)
    return record
