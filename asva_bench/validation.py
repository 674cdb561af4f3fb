"""Metric validity suite (`asva-bench validate`): controlled degradations of the
ground truth, and whether each metric moves the right way, monotonically.

Works on decoded test clips in memory (no generation, no mp4 round trip), so
it isolates the metrics and their evaluators. It is the acceptance test of
every evaluator suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .avio import atomic_write_text, decode_protocol_clips
from .metrics import METRIC_ORDER, METRICS
from .protocol import ProtocolConfig
from .scoring import compute_metrics, gen_features, gt_features

SHIFTS = (0.0, 0.17, 0.33, 0.5, 1.0)
NOISE = (0.0, 0.05, 0.1, 0.2, 0.4)
BLUR = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass
class Condition:
    name: str
    family: str
    level: float


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return frames
    from torchvision.transforms.functional import gaussian_blur as tv_blur
    k = int(2 * round(3 * sigma) + 1)
    shape = frames.shape
    return tv_blur(frames.reshape(-1, *shape[-3:]), [k, k], [sigma, sigma]).reshape(shape)


def conditions() -> list[Condition]:
    out = [Condition(f"shift {s:g}s", "shift", s) for s in SHIFTS]
    out += [Condition("static", "static", 0.0), Condition("shuffle", "shuffle", 0.0),
            Condition("wrong-class audio", "wrong_audio", 0.0)]
    out += [Condition(f"noise {s:g}", "noise", s) for s in NOISE[1:]]
    out += [Condition(f"blur {s:g}", "blur", s) for s in BLUR[1:]]
    return out


def _degrade(cond: Condition, base: dict, shifted: dict, wrong_audio: torch.Tensor, gen: torch.Generator):
    """-> (frames [B,T,3,H,W], audio [B,S]) for one condition."""
    frames, audio = base["frames"], base["audio"]
    if cond.family == "shift":
        return shifted[cond.level], audio
    if cond.family == "static":
        return frames[:, :1].expand_as(frames).clone(), audio
    if cond.family == "shuffle":
        T = frames.shape[1]
        out = frames.clone()
        for b in range(frames.shape[0]):
            perm = torch.randperm(T - 1, generator=gen) + 1
            out[b, 1:] = frames[b, perm]
        return out, audio
    if cond.family == "wrong_audio":
        return frames, wrong_audio
    if cond.family == "noise":
        noise = torch.randn(frames.shape, generator=gen) * cond.level
        out = (frames + noise).clamp(0, 1)
        out[:, 0] = frames[:, 0]  # frame 1 stays the input, as for any generator
        return out, audio
    if cond.family == "blur":
        out = gaussian_blur(frames, cond.level)
        out[:, 0] = frames[:, 0]
        return out, audio
    raise ValueError(cond.family)


def load_clips(entries, cfg: ProtocolConfig, progress: bool = True):
    """First clip of each video plus the same clip with its frames shifted later by each SHIFT."""
    base_f, base_a, shifted = [], [], {s: [] for s in SHIFTS}
    for e in tqdm(entries, desc="decode", unit="video", disable=not progress):
        clips = decode_protocol_clips(e.path, cfg, starts=list(SHIFTS))
        base_f.append(clips[0].frames)
        base_a.append(clips[0].audio)
        for s, c in zip(SHIFTS, clips):
            shifted[s].append(c.frames)
    return ({"frames": torch.stack(base_f), "audio": torch.stack(base_a)},
            {s: torch.stack(v) for s, v in shifted.items()})


def validate(suite, entries, cfg: ProtocolConfig, replicates: int = 500, batch_size: int = 64,
             progress: bool = True, seed: int = 0) -> dict:
    from .avio import probe
    need = cfg.clip_seconds + max(SHIFTS)
    long_enough, too_short = [], []
    for e in entries:
        info = probe(e.path)
        (long_enough if min(info.video_duration, info.audio_duration) >= need else too_short).append(e)
    if len(long_enough) < 2:
        raise ValueError(f"validation needs test videos of at least {need:g} s; found {len(long_enough)}")
    base, shifted = load_clips(long_enough, cfg, progress)
    B = base["frames"].shape[0]
    classes = [e.class_name for e in long_enough]
    # wrong-class audio: the audio of the next video of another class
    order = list(range(B))
    wrong_idx = []
    for i in order:
        j = next((k for k in order[i + 1:] + order[:i] if classes[k] != classes[i]), None)
        if j is None:
            raise ValueError("the wrong-class-audio condition needs at least two classes")
        wrong_idx.append(j)
    wrong_audio = base["audio"][wrong_idx]
    texts = [e.text for e in long_enough]
    with torch.no_grad():
        uniq = sorted(set(texts))
        temb = dict(zip(uniq, suite.embed_text(uniq).float().cpu()))
    text = torch.stack([temb[t] for t in texts])
    vid = torch.arange(B)
    classes_all = [METRICS.get(m) for m in METRIC_ORDER]
    needs = {n for c in classes_all for n in c.needs}

    def batched(fn, frames, audio):
        parts = [fn(suite, frames[i:i + batch_size], audio[i:i + batch_size], cfg, needs)
                 for i in range(0, frames.shape[0], batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    with torch.no_grad():
        gt = batched(gt_features, base["frames"], base["audio"])
    gen = torch.Generator().manual_seed(seed)
    table = []
    for cond in tqdm(conditions(), desc="conditions", disable=not progress):
        frames, audio = _degrade(cond, base, shifted, wrong_audio, gen)
        with torch.no_grad():
            feats = batched(gen_features, frames, audio)
        summaries, _ = compute_metrics(classes_all, feats, gt, text, vid, replicates)
        table.append({"condition": cond.name, "family": cond.family, "level": cond.level,
                      "metrics": summaries})
    return {"n_clips": B, "excluded_short_videos": [e.rel_path for e in too_short],
            "table": table, "checks": checks(table)}


def _series(table, family, metric, levels):
    rows = {r["level"]: r["metrics"][metric] for r in table if r["family"] == family}
    return [rows[l] for l in levels]


def checks(table) -> list[dict]:
    """The bars of the mini profile (issue 4), each with its evidence."""
    out = []
    by = {r["condition"]: r for r in table}
    base = by["shift 0s"]["metrics"]
    for m in ("relsync", "alignsync"):
        seq = [base[m]] + _series(table, "shift", m, SHIFTS[1:4])
        means = [s["mean"] for s in seq]
        strictly = all(a > b for a, b in zip(means, means[1:]))
        static = by["static"]["metrics"][m]
        half = means[-1] < static["mean"] or static["ci_low"] <= means[-1] <= static["ci_high"]
        out.append({"check": f"{m} strictly decreases with shift 0 -> 0.5 s", "pass": strictly,
                    "values": [round(v, 3) for v in means]})
        out.append({"check": f"{m} at 0.5 s below Static or within its CI", "pass": half,
                    "values": [round(means[-1], 3), round(static["mean"], 3),
                               [round(static["ci_low"], 3), round(static["ci_high"], 3)]]})
    for m in ("fid", "fvd"):
        for fam, levels in (("noise", NOISE), ("blur", BLUR)):
            seq = [base[m]["mean"]] + [s["mean"] for s in _series(table, fam, m, levels[1:])]
            ok = all(b > a for a, b in zip(seq, seq[1:]))
            out.append({"check": f"{m} strictly increases with {fam} level", "pass": ok,
                        "values": [round(v, 3) for v in seq], "required": fam == "noise"})
    ia0, iaw = base["ia"]["mean"], by["wrong-class audio"]["metrics"]["ia"]["mean"]
    out.append({"check": "ia drops for wrong-class audio", "pass": iaw < ia0,
                "values": [round(ia0, 3), round(iaw, 3)]})
    for c in out:
        c.setdefault("required", True)
    return out


def format_table(report: dict) -> str:
    metrics = list(METRIC_ORDER)
    head = f"{'condition':<20}" + "".join(f"{m:>12}" for m in metrics)
    lines = [head, "-" * len(head)]
    for r in report["table"]:
        lines.append(f"{r['condition']:<20}" + "".join(f"{r['metrics'][m]['mean']:>12.3f}" for m in metrics))
    lines.append("")
    for c in report["checks"]:
        flag = "PASS" if c["pass"] else ("FAIL" if c["required"] else "fail (informative)")
        lines.append(f"[{flag}] {c['check']}: {c['values']}")
    return "\n".join(lines)


def write_report(report: dict, out_dir) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "validation.json", json.dumps(report, indent=2, sort_keys=True))
    atomic_write_text(out_dir / "validation.txt", format_table(report) + "\n")
    return {"json": str(out_dir / "validation.json"), "txt": str(out_dir / "validation.txt")}
