"""`asva-bench sync train | eval` and `asva-bench train evaluators`.

Wiring (in asva_bench/cli.py)::

    from .training.cli import add_commands
    add_commands(sub)      # sub = the top-level add_subparsers(...)

Each sub-command sets ``func(args) -> int`` (exit code), like the others;
with ``--json`` it prints exactly one JSON object on stdout.  The training
modules' own ``python -m`` entries go through :func:`run_module`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import _emit
from ..fsutil import show_progress
from ..profiles import PROFILE_NAMES


def run_module(prog: str, add, argv=None, commands: str | None = None, description: str | None = None) -> int:
    """``python -m <training module>``: ``add(subparsers)`` (``commands``: their metavar) or
    ``add(parser)`` builds the options; errors print as ``error: ...`` with exit code 2."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add(parser.add_subparsers(dest="command", metavar=commands, required=True) if commands else parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _cache_args(p) -> None:
    p.add_argument("--dataset", default="synth", help="registered dataset name (default synth)")
    p.add_argument("--root", help="dataset folder (default: the dataset's environment variable; synth is "
                                  "built automatically)")
    p.add_argument("--cache-dir", help="clip cache root (default $ASVA_BENCH_HOME/cache/clips)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes for the clip cache (default 2)")


def _caches(args, size: str, splits):
    from .mini_evaluators import build_caches
    return build_caches(args.dataset, args.root, size, splits=splits, workers=args.workers,
                        cache_dir=args.cache_dir, progress=show_progress())


# --------------------------------------------------------------------------
# sync train
# --------------------------------------------------------------------------
def cmd_sync_train(args) -> int:
    from .sync_trainer import SyncTrainConfig, train_sync
    base = SyncTrainConfig.paper() if args.size == "paper" else SyncTrainConfig()
    changes = {k: v for k, v in {"num_clips": args.num_clips, "batch_videos": args.batch_videos,
                                 "steps": args.steps, "lr": args.lr, "seed": args.seed,
                                 "threads": args.threads, "warmup_steps": args.warmup_steps,
                                 "checkpoint_every": args.checkpoint_every}.items() if v is not None}
    import dataclasses
    cfg = dataclasses.replace(base, **changes)
    out = Path(args.out) if args.out else Path("runs") / "sync" / f"{args.dataset}-{args.size}"
    t0 = time.perf_counter()
    cache = _caches(args, args.size, ("train",))["train"]
    summary = train_sync(cache, out, cfg, resume=not args.no_resume, progress=show_progress(), device=args.device)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    human = (f"sync classifier ({args.size}): step {summary['step']}/{cfg.steps}, last loss "
             f"{summary['last_loss']}; loss log {out / 'loss_log.jsonl'}"
             + (f"\ncheckpoint: {summary['checkpoint']}" if summary.get("checkpoint") else
                "\nnot finished: rerun the same command to resume"))
    _emit(args, summary, human)
    return 0


# --------------------------------------------------------------------------
# sync eval
# --------------------------------------------------------------------------
def load_sync_model(checkpoint: str | None, size: str, device: str = "cpu"):
    """Our .safetensors (+ .json), a released three-module folder, or the registered backbone."""
    from ..backbones.sync_classifier import (MINI_SYNC_NAME, PAPER_SYNC_NAME, config_for_size, load_checkpoint,
                                             load_modules_folder)
    if checkpoint:
        p = Path(checkpoint)
        if p.is_dir():
            return load_modules_folder(p, config_for_size(size), device)
        return load_checkpoint(p, device)
    from ..backbones import build_backbone
    return build_backbone(MINI_SYNC_NAME if size == "mini" else PAPER_SYNC_NAME, device=device)


def cmd_sync_eval(args) -> int:
    from .shift_eval import SHIFT_PROTOCOLS, evaluate_sync
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    for p in protocols:
        if p not in SHIFT_PROTOCOLS:
            raise ValueError(f"unknown --protocol {p!r}; choose from {', '.join(SHIFT_PROTOCOLS)}")
    model = load_sync_model(args.checkpoint, args.size, args.device)
    size = model.config.name if model.config.name in ("paper", "mini") else args.size
    cache = _caches(args, size, (args.split,))[args.split]
    res = evaluate_sync(model, cache, protocols, args.max_videos, progress=show_progress())
    lines = [f"sync classifier '{model.config.name}' on {args.dataset}/{args.split} ({res['videos']} videos)"]
    for p in protocols:
        r = res[p]
        pr = r["protocol"]
        if r["a2v"]["n"] == 0:
            lines.append(f"  {p}: no video long enough (needs {r['min_duration_s']} s)")
            continue
        lines.append(f"  {p} ({pr['num_candidates']} x {pr['spacing_s']} s, tol +-{pr['tolerance_steps']}): "
                     f"within tol {r['within_tol']:.3f} (a2v {r['a2v']['within_tol']:.3f}, v2a "
                     f"{r['v2a']['within_tol']:.3f}), exact {r['exact']:.3f}, P_Sync {r['p_sync']:.3f}, "
                     f"{r['a2v']['n']} videos, {r['skipped_short']} too short")
    rs = res["relsync"]
    lines.append(f"  RelSync checks: shifted 0.5 s {rs['relsync_shifted']}, static {rs['relsync_static']} "
                 f"({rs['videos']} videos)")
    _emit(args, res, "\n".join(lines))
    return 0


# --------------------------------------------------------------------------
# train evaluators
# --------------------------------------------------------------------------
def cmd_train_evaluators(args) -> int:
    import dataclasses

    from .embedding_trainer import EmbeddingTrainConfig
    from .mini_evaluators import train_mini_evaluators
    from .sync_trainer import SyncTrainConfig
    if args.profile != "mini":
        print("error: only the mini profile's evaluators are trained here; the paper profile uses the "
              "published networks (`asva-bench weights list --profile paper`)", file=sys.stderr)
        return 2
    sync_cfg, emb_cfg = SyncTrainConfig(), EmbeddingTrainConfig()
    if args.sync_steps:
        sync_cfg = dataclasses.replace(sync_cfg, steps=args.sync_steps)
    if args.embedding_steps:
        emb_cfg = dataclasses.replace(emb_cfg, steps=args.embedding_steps)
    res = train_mini_evaluators(args.dataset, args.root, args.out, args.work, args.cache_dir, sync_cfg, emb_cfg,
                                workers=args.workers, parallel=not args.sequential, resume=not args.no_resume,
                                progress=show_progress(), evaluate=not args.no_eval)
    m = res["manifest"]
    lines = [f"mini evaluators written to {res['out_dir']} ({m['total_bytes'] / 2**20:.2f} MiB)",
             f"wall time: {m['wall_seconds']['total']:.0f} s (decode {m['wall_seconds']['decode_cache']:.0f} s, "
             f"train {m['wall_seconds']['train']:.0f} s)"]
    if "quality" in res:
        for k, b in res["quality"]["bars"].items():
            lines.append(f"  {'PASS' if b['pass'] else ('FAIL' if b['required'] else 'fail (informative)')} {k}: {b['value']} ({b['bar']})")
    _emit(args, res, "\n".join(lines))
    return 0 if res.get("quality", {}).get("all_pass", True) else 1


class _DeprecatedSize(argparse.Action):
    """``--size`` of the sync commands: the old name of ``--profile``, kept for one release."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use --profile {values} (the same choice, the flag every "
              "other command uses)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _profile_args(p, help_text: str) -> None:
    # stored as args.size, the name the handlers read
    p.add_argument("--profile", dest="size", choices=PROFILE_NAMES, default="mini", help=help_text)
    p.add_argument("--size", dest="size", choices=PROFILE_NAMES, action=_DeprecatedSize,
                   help="deprecated alias of --profile")


def add_commands(sub):
    """Add `sync` and `train` to the top-level sub-parsers; returns the `train` sub-parsers
    so model training commands (base, avsyncd, i2vd) join the same group."""
    s = sub.add_parser("sync", help="train or evaluate the audio-visual sync classifier")
    ssub = s.add_subparsers(dest="sync_command", metavar="ACTION")
    ssub.required = True

    t = ssub.add_parser("train", help="contrastive training (docs/protocol.md, 'The sync classifier'), resumable")
    _cache_args(t)
    _profile_args(t, "the classifier's size and training recipe (default mini)")
    t.add_argument("--out", help="training folder: checkpoint/, loss_log.jsonl, train_config.json, "
                                 "sync-<profile>.safetensors (default runs/sync/<dataset>-<profile>)")
    t.add_argument("--steps", type=int)
    t.add_argument("--num-clips", type=int, help="K clips 0.2 s apart per video (mini 9, paper 21)")
    t.add_argument("--batch-videos", type=int, help="videos per step (mini 8, paper 32)")
    t.add_argument("--lr", type=float)
    t.add_argument("--warmup-steps", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--no-resume", action="store_true", help="start over even if --out holds a state")
    t.add_argument("--device", default="cpu")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_sync_train)

    e = ssub.add_parser("eval", help="shift-classification accuracy (paper and coarse protocols), P_Sync, "
                                     "RelSync checks")
    _cache_args(e)
    _profile_args(e, "classifier size when --checkpoint is a released folder or absent (default mini)")
    e.add_argument("--checkpoint", help="our sync-*.safetensors, or a released 'modules' folder with "
                                        "audio_encoder/ video_encoder/ head/ (default: the registered backbone)")
    e.add_argument("--split", default="test")
    e.add_argument("--protocol", default="paper,coarse", help="comma list of: paper, coarse")
    e.add_argument("--max-videos", type=int)
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_sync_eval)

    tr = sub.add_parser("train", help="train evaluator networks")
    trsub = tr.add_subparsers(dest="train_command", metavar="WHAT")
    trsub.required = True
    ev = trsub.add_parser("evaluators", help="train all mini evaluators on synth and write the shipped files")
    _cache_args(ev)
    ev.add_argument("--profile", default="mini", help="only 'mini'")
    ev.add_argument("--out", help="where the shipped files go (default: the package's backbones/mini_weights)")
    ev.add_argument("--work", help="training folders (default $ASVA_BENCH_HOME/train/mini-evaluators)")
    ev.add_argument("--sync-steps", type=int)
    ev.add_argument("--embedding-steps", type=int)
    ev.add_argument("--sequential", action="store_true", help="train one model after the other")
    ev.add_argument("--no-resume", action="store_true")
    ev.add_argument("--no-eval", action="store_true", help="skip the quality-bar evaluation at the end")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_train_evaluators)
    return trsub
