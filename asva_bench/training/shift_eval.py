"""Sync classifier evaluation: shift classification, P_Sync and RelSync sanity checks.

Shift classification (docs/protocol.md "The sync classifier", VGGSoundSync style): around the
centre of a test video take N candidate clips ``spacing`` seconds apart; the
clip at the centre is the synchronized one.

* audio -> video (a2v): the centre clip's audio is scored against the frames
  of every candidate; the prediction is the arg-max of phi;
* video -> audio (v2a): the centre clip's frames against every candidate's
  audio.

A prediction is correct within the protocol's tolerance (in steps). Two
protocols:

* ``paper``: 31 candidates 0.04 s apart, tolerance +-5 steps (+-0.2 s);
  needs videos of at least 2 + 1.2 s;
* ``coarse`` (synth-appropriate): 9 candidates 0.2 s apart (the training
  spacing; the mini world's events are at least 1/6 s long), reported both
  exact and within +-1 step; needs 2 + 1.6 s.

Videos too short for a protocol are counted in ``skipped_short`` (never
silently dropped). P_Sync is the softmax of raw phi over the candidates
(no temperature), taken at the true candidate and averaged.

RelSync checks: with the audio at the centre, sigmoid(phi(frames shifted by
+-0.5 s) - phi(true frames)), and the same for a static clip (the true clip's
first frame repeated); a good classifier keeps both well below 0.5. Also the
curve for frames shifted later by 0.17, 0.33 and 0.5 s, which must fall
strictly (the metric validity suite's RelSync check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..backbones.sync_classifier import SyncClassifier
from .clip_cache import ClipCache, quantise_start


@dataclass(frozen=True)
class ShiftProtocol:
    name: str
    num_candidates: int
    spacing: float
    tolerance: int

    def to_dict(self) -> dict:
        return {"name": self.name, "num_candidates": self.num_candidates, "spacing_s": self.spacing,
                "tolerance_steps": self.tolerance}


PAPER_SHIFT = ShiftProtocol("paper", 31, 0.04, 5)
COARSE_SHIFT = ShiftProtocol("coarse", 9, 0.2, 1)
SHIFT_PROTOCOLS = {p.name: p for p in (PAPER_SHIFT, COARSE_SHIFT)}


def candidate_starts(max_start: float, proto: ShiftProtocol, cfg) -> list[float] | None:
    """Starts of the candidates centred in [0, max_start], on the hop grid; None if they do not fit."""
    half = proto.num_candidates // 2
    span = proto.spacing * (proto.num_candidates - 1)
    if max_start + 1e-6 < span:
        return None
    centre = max(quantise_start(max_start / 2, cfg), round(proto.spacing * half, 6))
    starts = [round(centre + proto.spacing * (j - half), 6) for j in range(proto.num_candidates)]
    return starts if starts[-1] <= max_start + 1e-6 else None


def _summarise(preds: list[int], psync: list[float], true: int, proto: ShiftProtocol) -> dict:
    p = np.asarray(preds)
    if len(p) == 0:
        return {"n": 0}
    err = np.abs(p - true)
    return {"n": int(len(p)), "exact": float((err == 0).mean()), "within_tol": float((err <= proto.tolerance).mean()),
            "within_1": float((err <= 1).mean()), "mean_abs_error_steps": float(err.mean()),
            "p_sync": float(np.mean(psync))}


@torch.no_grad()
def shift_classification(model: SyncClassifier, cache: ClipCache, proto: ShiftProtocol,
                         max_videos: int | None = None, progress: bool = False) -> dict:
    from tqdm.auto import tqdm
    from ..backbones.sync_classifier import p_sync
    model.eval()
    half = proto.num_candidates // 2
    res = {"a2v": ([], []), "v2a": ([], [])}
    skipped = 0
    n = len(cache) if max_videos is None else min(len(cache), max_videos)
    for i in tqdm(range(n), desc=f"shift eval ({proto.name})", disable=not progress, unit="video"):
        v = cache.load(i)
        starts = candidate_starts(v.max_start(), proto, cache.cfg)
        if starts is None:
            skipped += 1
            continue
        clips, mels = v.clips(starts), v.clip_mels(starts)
        a = model.encode_audio(mels)
        f = model.encode_video(clips)
        a2v = model.pairwise(a[half:half + 1], f)[0]          # centre audio vs every clip
        v2a = model.pairwise(a, f[half:half + 1])[:, 0]       # every audio vs centre clip
        for key, row in (("a2v", a2v), ("v2a", v2a)):
            res[key][0].append(int(row.argmax()))
            res[key][1].append(float(p_sync(row, half)))
    out = {"protocol": proto.to_dict(), "videos": n, "skipped_short": skipped,
           "min_duration_s": round(cache.cfg.clip_seconds + proto.spacing * (proto.num_candidates - 1), 3)}
    for key, (preds, ps) in res.items():
        out[key] = _summarise(preds, ps, half, proto)
    if out["a2v"]["n"]:
        for k in ("exact", "within_tol", "within_1", "p_sync"):
            out[k] = 0.5 * (out["a2v"][k] + out["v2a"][k])
    return out


CURVE_SHIFTS = (0.17, 0.33, 0.5)   # the metric validity suite's frame shifts (asva_bench.validation)


@torch.no_grad()
def relsync_checks(model: SyncClassifier, cache: ClipCache, shift: float = 0.5,
                   max_videos: int | None = None) -> dict:
    """With the audio at the video's centre: mean sigmoid(phi(frames shifted by +-shift) - phi(true)),
    the same for a static clip (true first frame repeated), and the curve over frames shifted later
    by CURVE_SHIFTS (it should fall strictly, as the validity suite requires)."""
    model.eval()
    later = sorted(set(CURVE_SHIFTS) | {shift})
    shifted, static, lower = [], [], []
    curve = {s: [] for s in later}
    skipped = 0
    n = len(cache) if max_videos is None else min(len(cache), max_videos)
    for i in range(n):
        v = cache.load(i)
        ms = v.max_start()
        reach = max(later)
        if ms + 1e-6 < shift + reach:
            skipped += 1
            continue
        c = min(max(quantise_start(ms / 2, cache.cfg), shift), quantise_start(ms - reach, cache.cfg))
        starts = [c, round(c - shift, 6)] + [round(c + s, 6) for s in later]
        clips = v.clips(starts)
        still = clips[:1, :1].expand(1, clips.shape[1], *clips.shape[2:])
        mel = v.clip_mel(c).unsqueeze(0)
        phi = model.pairwise(model.encode_audio(mel), model.encode_video(torch.cat([clips, still])))[0]
        true = phi[0]
        rel = torch.sigmoid(phi - true)
        for j, s in enumerate(later):
            curve[s].append(float(rel[2 + j]))
        pair = torch.stack([rel[1], rel[2 + later.index(shift)]])
        shifted += pair.tolist()
        lower += (pair < 0.5).float().tolist()
        static.append(float(rel[-1]))
    means = [float(np.mean(curve[s])) for s in later] if static else []
    return {"shift_s": shift, "videos": n - skipped, "skipped_short": skipped,
            "relsync_shifted": float(np.mean(shifted)) if shifted else None,
            "relsync_static": float(np.mean(static)) if static else None,
            "shifted_below_true": float(np.mean(lower)) if lower else None,
            "relsync_curve_later": dict(zip(map(str, later), means)),
            "relsync_curve_decreasing": bool(means and all(b < a for a, b in zip([0.5] + means, means)))}


def evaluate_sync(model: SyncClassifier, cache: ClipCache, protocols=("paper", "coarse"),
                  max_videos: int | None = None, progress: bool = False) -> dict:
    """Everything `asva-bench sync eval` reports, as one dict."""
    out = {"videos": len(cache) if max_videos is None else min(len(cache), max_videos),
           "classifier": model.config.name}
    for name in protocols:
        if name not in SHIFT_PROTOCOLS:
            raise ValueError(f"unknown shift protocol {name!r}; choose from {', '.join(SHIFT_PROTOCOLS)}")
        out[name] = shift_classification(model, cache, SHIFT_PROTOCOLS[name], max_videos, progress)
    out["relsync"] = relsync_checks(model, cache, 0.5, max_videos)
    return out
