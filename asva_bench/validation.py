"""Metric validity suite (`asva-bench validate`): controlled degradations of the
ground truth, and whether each metric moves the right way, monotonically.

Works on decoded test clips in memory (no generation, no mp4 round trip), so
it isolates the metrics and their evaluators. It is the acceptance test of
every evaluator suite.

Every check is a paired bootstrap test over test videos (the same draws for
the conditions compared), one-sided at level ``ALPHA`` = 5% per comparison,
instead of an inequality of means: "falls" means the overall drop is
significant and no single step rises significantly; "below" means not
significantly above. A curve that flattens (two shifts both far from sync)
then passes on a small test set, where strict inequalities of means fail by
noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .avio import decode_protocol_clips
from .fsutil import atomic_write_text
from .metrics import METRIC_ORDER, METRICS, FrechetMetric
from .metrics.bootstrap import draw_counts, percentile_ci
from .metrics.frechet import bootstrap_frechet, frechet_distance_from_features
from .protocol import ProtocolConfig
from .scoring import compute_metrics, gen_features, gt_features, it_text

#: One-sided level of each paired bootstrap test of the suite.
ALPHA = 0.05
#: set-level metrics of the suite -> the one feature kind each declares it needs (FID, FVD)
FRECHET_FEATURES = {m: METRICS.get(m).needs[0] for m in METRIC_ORDER
                    if issubclass(METRICS.get(m), FrechetMetric)}

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
    texts = [it_text(e, cfg) for e in long_enough]
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
    counts = draw_counts(B, replicates, seed=seed)   # the same video draws for every condition: paired
    table, evidence = [], {}
    for cond in tqdm(conditions(), desc="conditions", disable=not progress):
        frames, audio = _degrade(cond, base, shifted, wrong_audio, gen)
        with torch.no_grad():
            feats = batched(gen_features, frames, audio)
        # clip metrics as `score` computes them; FID / FVD from the paired replicates (one bootstrap)
        clip_classes = [c for c in classes_all if c.name not in FRECHET_FEATURES]
        summaries, per_clip = compute_metrics(clip_classes, feats, gt, text, vid, replicates)
        ev = {m: np.asarray(v, np.float64) for m, v in per_clip.items()}
        for m, kind in FRECHET_FEATURES.items():
            fake, real = feats[kind].flatten(0, -2).numpy(), gt[kind].flatten(0, -2).numpy()
            rows = np.repeat(np.arange(B), fake.shape[0] // B)
            ev[m] = bootstrap_frechet(fake, rows, real, rows, counts)   # replicate values, paired draws
            lo, hi = percentile_ci(ev[m])
            summaries[m] = {"mean": frechet_distance_from_features(fake, real), "ci_low": lo, "ci_high": hi,
                            "higher_is_better": False, "scale": 1.0, "n_rows": int(len(rows)), "n_videos": B}
        summaries = {m: summaries[m] for m in METRIC_ORDER}
        table.append({"condition": cond.name, "family": cond.family, "level": cond.level,
                      "metrics": summaries})
        evidence[cond.name] = ev
    return {"n_clips": B, "excluded_short_videos": [e.rel_path for e in too_short],
            "table": table, "checks": checks(table, evidence, counts)}


def _series(table, family, metric, levels):
    rows = {r["level"]: r["metrics"][metric] for r in table if r["family"] == family}
    return [rows[l] for l in levels]


def paired_bounds(a_name: str, b_name: str, metric: str, evidence: dict, counts: np.ndarray) -> dict:
    """Paired bootstrap of (condition a) - (condition b) for a metric over the same video draws:
    the mean difference and its one-sided ALPHA / 1 - ALPHA percentile bounds.

    Clip metrics: per-clip differences averaged per replicate (the draws ``counts``); Frechet
    metrics: differences of the replicate distances, which were computed on the same draws."""
    a, b = evidence[a_name][metric], evidence[b_name][metric]
    if metric in FRECHET_FEATURES:
        reps, point = a - b, float(np.mean(a - b))
    else:  # one clip per test video (the suite's clips)
        d = a - b
        reps, point = (counts @ d) / counts.sum(1), float(d.mean())
    lo, hi = np.percentile(reps, [100 * ALPHA, 100 * (1 - ALPHA)])
    return {"difference": point, "lower": float(lo), "upper": float(hi)}


def _falls(names: list[str], metric: str, evidence, counts) -> tuple[bool, dict]:
    """Significant drop from the first to the last condition (first - last), and no significant rise
    at any step (next - prev not significantly above 0)."""
    overall = paired_bounds(names[0], names[-1], metric, evidence, counts)
    steps = [paired_bounds(b, a, metric, evidence, counts) for a, b in zip(names, names[1:])]  # next - prev
    ok = overall["lower"] > 0 and all(st["lower"] <= 0 for st in steps)
    return ok, {"overall": overall, "steps": steps}


def checks(table, evidence: dict, counts: np.ndarray) -> list[dict]:
    """The bars of the mini profile (issue 4), each a paired bootstrap test with its evidence."""
    out = []
    by = {r["condition"]: r for r in table}
    base = by["shift 0s"]["metrics"]
    shift_names = ["shift 0s"] + [f"shift {s:g}s" for s in SHIFTS[1:4]]
    test = f"paired bootstrap over test videos, one-sided {ALPHA:.0%} per comparison"
    for m in ("relsync", "alignsync"):
        means = [by[n]["metrics"][m]["mean"] for n in shift_names]
        ok, detail = _falls(shift_names, m, evidence, counts)
        out.append({"check": f"{m} falls with shift 0 -> 0.5 s (significant overall drop, no significant rise "
                             "at any step)", "pass": ok, "values": [round(v, 3) for v in means],
                    "test": test, "evidence": detail})
        vs_static = paired_bounds("shift 0.5s", "static", m, evidence, counts)
        static = by["static"]["metrics"][m]
        out.append({"check": f"{m} at 0.5 s not significantly above Static", "pass": vs_static["lower"] <= 0,
                    "values": [round(means[-1], 3), round(static["mean"], 3),
                               [round(static["ci_low"], 3), round(static["ci_high"], 3)]],
                    "test": test, "evidence": vs_static})
    for m in ("fid", "fvd"):
        for fam, levels in (("noise", NOISE), ("blur", BLUR)):
            names = ["shift 0s"] + [r["condition"] for r in table if r["family"] == fam]
            seq = [base[m]["mean"]] + [s["mean"] for s in _series(table, fam, m, levels[1:])]
            rises, detail = _falls(names[::-1], m, evidence, counts)  # rising = falling read backwards
            out.append({"check": f"{m} rises with {fam} level (significant overall rise, no significant fall "
                                 "at any step)", "pass": rises, "values": [round(v, 3) for v in seq],
                        "required": fam == "noise", "test": test, "evidence": detail})
    ia0, iaw = base["ia"]["mean"], by["wrong-class audio"]["metrics"]["ia"]["mean"]
    drop = paired_bounds("shift 0s", "wrong-class audio", "ia", evidence, counts)
    out.append({"check": "ia drops for wrong-class audio (significantly)", "pass": drop["lower"] > 0,
                "values": [round(ia0, 3), round(iaw, 3)], "test": test, "evidence": drop})
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
