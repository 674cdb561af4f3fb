"""`asva-bench curate`: the command line of the curation pipeline.

Wiring (asva_bench/cli.py)::

    from .curation.cli import add_curate_command
    add_curate_command(sub)

Forms::

    asva-bench curate --input POOL --out OUT [--profile mini|paper] [--config FILE]   # signals + dataset
    asva-bench curate --input POOL --out OUT --shard I/N                             # one job of an array
    asva-bench curate --merge --out OUT [--config FILE]                              # decide + write
    asva-bench curate --apply-review review-CLASS.json ... --out OUT                 # fold review marks in

Under ``torchrun --nproc-per-node K asva-bench curate ...`` each rank takes
its shard and the ranks write the dataset together. ``--json`` prints one
JSON object on stdout; progress bars go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "dataset curation (paper Sec. 3.1): scene cuts, 3 s clips, six filters, merged examples, review pages"


def _human(res: dict) -> str:
    if "summary" not in res:
        return res.get("next", "")
    s = res["summary"]
    c = s["counts"]
    lines = [f"curated {c['videos']['input']} videos into {res['out'] if 'out' in res else ''}".rstrip(),
             f"  videos: {c['videos']['ok']} ok, {c['videos']['bad']} bad "
             + (f"({', '.join(f'{k} {n}' for k, n in c['videos']['bad_by_kind'].items())})" if c['videos']['bad'] else "")
             + (f"; {c['ignored_files']} other file(s) ignored, listed in curation.json" if c["ignored_files"] else ""),
             f"  clips: {c['clips']['total']} total, {c['clips']['passed_filters']} pass every filter, "
             f"{c['clips']['kept']} kept",
             "  failed per filter: " + ", ".join(f"{k} {n}" for k, n in c["clips"]["failed_by_filter"].items()),
             f"  examples: {c['examples']['kept']} kept ({c['examples']['train']} train, {c['examples']['test']} test, "
             f"{c['examples']['seconds_kept']:.0f} s), {c['examples']['dropped_class_too_small']} dropped with their class",
             f"  classes: {c['classes']['kept']} of {c['classes']['input']} kept"
             + (f"; dropped: {', '.join(c['classes']['dropped'])}" if c["classes"]["dropped"] else "")]
    if res.get("review"):
        lines.append(f"  review pages: {res['review']['index']}")
    if res.get("tables"):
        lines.append(f"  manifest: {Path(res['tables']['clips']).parent}/{{clips,videos,examples,classes}}.csv")
    return "\n".join(lines)


def cmd_curate(args) -> int:
    from ..fsutil import show_progress
    from .pipeline import apply_review, curate, merge, parse_shard
    progress = show_progress()
    if args.apply_review:
        if args.input or args.shard or args.merge:
            raise ValueError("--apply-review takes only --out (and the review files): the signals are already there")
        res = apply_review(args.out, args.apply_review, progress=progress, review=not args.no_review)
    elif args.merge:
        if args.shard:
            raise ValueError("--merge combines every shard: drop --shard")
        from .config import load_config
        cfg = None
        if args.config or args.profile:
            from .manifest import read_plan
            cfg = load_config(args.profile or read_plan(Path(args.out))["profile"], args.config)
        from .. import distributed as D
        rank, world = D.init_from_env()
        res = merge(args.out, cfg, rank=rank, world=world, progress=progress, review=not args.no_review)
    else:
        if not args.input:
            raise ValueError("curate needs --input DIR (a folder of class folders), or --merge / --apply-review")
        res = curate(args.input, args.out, profile=args.profile, config_path=args.config,
                     shard=parse_shard(args.shard), device=args.device, workers=args.workers,
                     progress=progress, review=not args.no_review)
    import torch.distributed as dist
    if dist.is_initialized() and dist.get_rank() != 0:
        return 0
    res = {"out": str(args.out), **res}
    if args.json:
        print(json.dumps(res, sort_keys=True, default=str))
    else:
        print(_human(res))
    return 0


def add_curate_command(subparsers):
    """Add ``curate`` to the top-level sub-parsers."""
    from ..profiles import PROFILES
    p = subparsers.add_parser("curate", help=HELP, description=HELP + ". See docs/curation.md.")
    p.add_argument("--input", help="the raw pool: a folder of class folders, <input>/<class>/<video>")
    p.add_argument("--out", required=True, help="curation folder: manifest, dataset (AVSync15 layout), review pages")
    p.add_argument("--profile", choices=PROFILES, help="paper (ImageBind, CLIP, ASVA sync classifier) or mini "
                                                       "(the embedded mini models); default: the config's, else mini")
    p.add_argument("--config", help="TOML file overlaid on the profile's defaults (thresholds, scenes, clips, "
                                    "dataset rules); see asva_bench/curation/configs/")
    p.add_argument("--shard", metavar="I/N", help="compute only shard I of N (job arrays); then run --merge")
    p.add_argument("--merge", action="store_true",
                   help="combine the shard files into the manifest and dataset (a changed --config re-decides)")
    p.add_argument("--apply-review", nargs="+", metavar="FILE", help="fold exported review marks back in")
    p.add_argument("--workers", type=int, default=1, help="decoding processes beside the models (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-review", action="store_true", help="do not write the review pages")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_curate)
    return p


def add_synth_wild_arguments(parser) -> None:
    """The options only `asva-bench datasets make synth-wild` has (defaults in asva_bench.datasets.synth.wild)."""
    parser.add_argument("--defects-per-class", type=int, default=None,
                        help="synth-wild: videos of each defect type per regular class (default 2)")
    parser.add_argument("--small-classes", type=int, default=None,
                        help="synth-wild: classes too small to keep (default 3)")
    parser.add_argument("--small-class-videos", type=int, default=None,
                        help="synth-wild: videos in each small class (default 3)")


def main(argv=None) -> int:  # pragma: no cover - `python -m asva_bench.curation.cli`
    import argparse
    parser = argparse.ArgumentParser(prog="asva-bench")
    add_curate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
