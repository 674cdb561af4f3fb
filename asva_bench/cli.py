"""`asva-bench` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .fsutil import show_progress
from .profiles import PROFILE_NAMES


def _emit(args, obj: dict, human: str) -> None:
    """--json: exactly one JSON object on stdout; otherwise the human text."""
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True, default=str))
    else:
        print(human)


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------
def cmd_models(args) -> int:
    from .adapters import adapter_registry, get_adapter_class
    rows = []
    for name, target in adapter_registry().items():
        try:
            cls = get_adapter_class(target)
            rows.append({"name": name, "adapter": target, "inputs": list(cls.inputs),
                         "arguments": cls.argument_names(), "description": cls.description})
        except Exception as e:  # an installed plugin that fails to import is reported, not hidden
            rows.append({"name": name, "adapter": target, "error": str(e)})
    from .adapters import refused_plugins
    refused = refused_plugins()
    lines = ["models (use with: asva-bench run --model NAME, or --model module:Class):"]
    for r in rows:
        if "error" in r:
            lines.append(f"  {r['name']:<12} {r['adapter']}  [cannot load: {r['error']}]")
        else:
            extra = f" args: {', '.join(r['arguments'])}" if r["arguments"] else ""
            lines.append(f"  {r['name']:<12} inputs: {'+'.join(r['inputs']):<16} {r['description']}{extra}")
    lines += [f"  refused: {msg}" for msg in refused.values()]
    _emit(args, {"models": rows, "refused_plugins": refused}, "\n".join(lines))
    return 0


# ---------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------
def cmd_datasets_list(args) -> int:
    from .datasets import DATASETS
    from .datasets.layouts import class_folders
    rows = [{"name": n, "description": s.description, "expected_counts": s.expected_counts,
             "env_var": s.env_var, "default_root": s.resolve_default() if hasattr(s, "resolve_default") else
             s.default_root, "layout": s.layout, "class_folders": class_folders(s)}
            for n, s in DATASETS.items()]
    lines = ["datasets (use with: asva-bench run --dataset NAME [--root DIR]):"]
    for r in rows:
        lines.append(f"  {r['name']:<16} {r['description']}  (root: --root or ${r['env_var']})")
        lines += [f"      {x}" for x in r["layout"].strip("\n").splitlines()]
        if r["class_folders"]:
            lines.append(f"      class folders ({len(r['class_folders'])}, exact names): "
                         + ", ".join(r["class_folders"]))
    _emit(args, {"datasets": rows}, "\n".join(lines))
    return 0


def cmd_datasets_check(args) -> int:
    from .datasets import get_dataset
    from .datasets.check import check_dataset
    spec = get_dataset(args.name)
    manifest = spec.load(args.root)
    rep = check_dataset(spec, manifest, progress=show_progress())
    d = rep.to_dict()
    lines = [f"{spec.name} at {manifest.root}"]
    for split, classes in sorted(rep.counts.items()):
        exp = rep.expected_counts.get(split)
        lines.append(f"  {split}: {sum(classes.values())} videos in {len(classes)} classes"
                     + (f" (expected {exp})" if exp is not None else ""))
        for c, n in sorted(classes.items()):
            lines.append(f"    {c:<28} {n}")
    lines.append("OK" if rep.ok else f"{len(rep.problems)} problem(s):")
    lines += [f"  {p['file']}: {p['problem']}" for p in rep.problems]
    if rep.warnings:
        lines.append(f"{len(rep.warnings)} warning(s):")
        lines += [f"  {w['file']}: {w['warning']}" for w in rep.warnings]
    _emit(args, d, "\n".join(lines))
    return 0 if rep.ok else 1


def cmd_datasets_make(args) -> int:
    from .datasets import get_dataset
    progress = show_progress() and not args.no_progress
    if args.name == "synth-wild":  # the curation test pool (docs/curation.md)
        from .datasets.synth.wild import make_from_args
        rec = make_from_args(args, progress=progress)
        _emit(args, rec, f"synth-wild pool written to {rec['root']} ({rec['videos']} videos); curate it with "
                         f"`asva-bench curate --input {rec['input']} --out OUT --profile mini`")
        return 0
    if args.name != "synth":
        get_dataset(args.name)  # did-you-mean for typos
        print(f"error: only 'synth' can be made; '{args.name}' is a real dataset you supply "
              "(see `asva-bench datasets`)", file=sys.stderr)
        return 2
    from .datasets.synth.build import make_from_args
    rec = make_from_args(args, progress=progress)
    _emit(args, rec, f"synth: {rec['counts']['train']} train + {rec['counts']['test']} test videos in "
                     f"{rec['root']} ({rec['built_now']} built now, {rec['seconds']:.1f} s)")
    return 0


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------
def _load_manifest(dataset: str, root):
    from .datasets import get_dataset
    spec = get_dataset(dataset)
    if dataset == "synth" and root is None:
        from .datasets.synth import ensure_synth
        root = ensure_synth()
    return spec, spec.load(root)


def default_run_dir(dataset: str, profile: str, adapter) -> Path:
    from .fsutil import stable_hash
    cfg = adapter.config()
    tag = adapter.name + (f"-{stable_hash(cfg, 8)}" if cfg else "")
    return Path("runs") / f"{dataset}-{profile}" / tag


def cmd_run(args) -> int:
    from .adapters import adapter_registry, build_adapter
    from .datasets import DatasetError, get_dataset
    from .generation import RunSpec
    from .preflight import check_run, is_rank0
    from .profiles import check_profile, default_profile, protocol_for
    from .runlock import run_lock

    check_limit(args.limit)
    profile = check_profile(args.profile or default_profile(args.dataset))
    adapter = build_adapter(args.model, args.model_arg)
    target = args.model if ":" in args.model else adapter_registry().get(args.model)
    spec_ds = get_dataset(args.dataset)
    protocol = protocol_for(spec_ds.protocol, profile, args.track)
    out = Path(args.out) if args.out else default_run_dir(args.dataset, profile, adapter)
    if args.audio_shift and not args.out:
        out = out.with_name(f"{out.name}-audio-shift-{args.audio_shift:g}s")
    manifest, dataset_problem = None, None
    try:
        spec_ds, manifest = _load_manifest(args.dataset, args.root)
    except DatasetError as e:
        dataset_problem = str(e)
    from .metrics.registry import resolve_metrics
    metrics = resolve_metrics(args.metrics)
    # everything the run will need, before anything is generated (docs/weights.md)
    check_run(adapter, protocol, profile, out, dataset_problem=dataset_problem, score=not args.no_score,
              metrics=metrics, dataset=args.dataset)
    spec = RunSpec(adapter=adapter, adapter_target=target, manifest=manifest, split=args.split,
                   profile=profile, protocol=protocol, seed=args.seed, limit=args.limit,
                   lossless=args.lossless, audio_shift=args.audio_shift)
    with run_lock(out, enabled=is_rank0()):
        return _run_locked(args, spec, out)


def check_limit(limit) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of test videos (or leave --limit out for "
                         "the full protocol)")


def _run_locked(args, spec, out) -> int:
    from .generation import run_generation
    from .runs import RUN_FILE
    record = run_generation(spec, out, skip_bad=args.skip_bad, device=args.device,
                            progress=show_progress())
    c = record.get("clips", {})
    human = (f"{c.get('generated')}/{c.get('expected')} clips in {out / 'videos'} "
             f"({record.get('status')}); manifest: {out / RUN_FILE}")
    if c.get("skipped_inputs"):
        human += f"\nskipped {len(c['skipped_inputs'])} bad input video(s): listed in run.json"
    results = None
    if not args.no_score:
        if record.get("status") != "complete":
            human += "\nnot scored: the run is incomplete (see --skip-bad); `asva-bench score --allow-incomplete` scores what is there"
        else:
            results = _score(args, out, allow_incomplete=False)
            if results:
                human += "\n" + _results_text(results, out)
    if _is_rank0():
        _emit(args, {"run_dir": str(out), "run": record, "results": results}, human)
    return 0 if record.get("status") == "complete" else 1


def _is_rank0() -> bool:
    import torch.distributed as dist
    return not dist.is_initialized() or dist.get_rank() == 0


def _score(args, run_dir, allow_incomplete=None):
    from .evaluators import load_suite
    from .preflight import check_score
    from .runs import read_run
    from .scoring import ScoreOptions, score_run
    record = read_run(run_dir).to_dict()
    from .metrics.registry import resolve_metrics
    metrics = resolve_metrics(getattr(args, "metrics", None))
    check_score(record["profile"], run_dir, metrics)
    suite = load_suite(record["profile"], device=args.device)
    opts = ScoreOptions(progress=show_progress(), device=args.device, track=getattr(args, "track", None),
                        allow_incomplete=getattr(args, "allow_incomplete", False) if allow_incomplete is None else allow_incomplete,
                        allow_dataset_change=getattr(args, "allow_dataset_change", False))
    if metrics:
        opts.metrics = metrics
    return score_run(run_dir, suite, opts)


def _results_text(results: dict, run_dir) -> str:
    from .metrics import metric_label
    lines = [f"{results['model']['name']} on {results['dataset']['name']} ({results['profile']} profile, "
             f"{results['clips']['scored']}/{results['clips']['expected']} clips):"]
    for m, s in results["metrics"].items():
        arrow = "higher is better" if s["higher_is_better"] else "lower is better"
        lines.append(f"  {metric_label(m):<10} {s['mean']:9.2f}  95% CI [{s['ci_low']:.2f}, {s['ci_high']:.2f}]  ({arrow})")
    from .runs import RESULTS_FILE, rescoring_paths, scores_path_for
    if results.get("generated_on_track"):  # rescored under another track than the run's
        res = rescoring_paths(run_dir, results["protocol"]["track"])[0]
    else:
        res = Path(run_dir) / RESULTS_FILE
    lines.append(f"results: {res}  per clip: {scores_path_for(res)}  "
                 f"(track {results['protocol'].get('track')})")
    return "\n".join(lines)


def cmd_score(args) -> int:
    results = _score(args, args.run_dir)
    if _is_rank0():
        _emit(args, results, _results_text(results, args.run_dir))
    return 0


def cmd_validate(args) -> int:
    from .evaluators import load_suite
    from .profiles import protocol_for
    from .validation import format_table, validate, write_report
    spec, manifest = _load_manifest(args.dataset, args.root)
    cfg = protocol_for(spec.protocol, args.profile, args.track)
    from .runs import limited_entries
    entries = limited_entries(manifest.split("test"), args.limit)
    report = validate(load_suite(args.profile, device=args.device), entries, cfg,
                      replicates=args.replicates, progress=show_progress())
    report.update({"profile": args.profile, "dataset": args.dataset, "protocol": cfg.to_dict()})
    out = Path(args.out or Path("runs") / f"validate-{args.dataset}-{args.profile}")
    files = write_report(report, out)
    _emit(args, {**report, "files": files}, format_table(report) + f"\nwritten to {out}")
    required = [c for c in report["checks"] if c["required"]]
    return 0 if all(c["pass"] for c in required) else 1


def cmd_demo(args) -> int:
    import dataclasses
    import time
    from .demo import run_demo
    from .results import formatted, load_results, to_frame
    t = time.perf_counter()
    from .demo import DEMO_LIMIT
    if args.full and args.limit:
        raise ValueError("--full and --limit contradict each other; give one")
    limit = None if args.full else (args.limit or DEMO_LIMIT)
    rep = run_demo(args.out, limit=limit, progress=show_progress(), device=args.device,
                   log=(lambda *_: None) if args.json else print)
    # the site is the presentation layer's: the CLI wires it after the core's runs and tables
    from .leaderboard.build import build_site
    t_site = time.perf_counter()
    build_site(list(rep.runs.values()), Path(args.out) / "site", progress=show_progress())
    rep.site = str(Path(args.out) / "site" / "index.html")
    rep.timings["leaderboard"] = round(time.perf_counter() - t_site, 1)
    total = round(time.perf_counter() - t, 1)
    df = to_frame([load_results(p) for p in rep.runs.values()])
    skipped = "\n".join(f"NOT RUN {k}: {v}" for k, v in rep.unavailable.items())
    human = "\n".join(filter(None, [
        rep.reduced_protocol,
        formatted(df).to_markdown(index=False),
        skipped,
        f"\ntotal {total} s; tables: {rep.table.get('md')} (also .csv, .tex)",
        f"leaderboard: open {rep.site}",
        f"run folders: {Path(args.out) / 'runs'}"]))
    _emit(args, {**dataclasses.asdict(rep), "total_s": total}, human)
    return 0


def cmd_results_table(args) -> int:
    from .results import formatted, load_results, to_frame, write_tables
    res = [load_results(p) for p in args.runs]
    df = to_frame(res, allow_mixed=args.allow_mixed)
    paths = write_tables(df, args.out) if args.out else {}
    human = formatted(df).to_markdown(index=False)
    if paths:
        human += "\n" + "\n".join(f"{k}: {v}" for k, v in paths.items())
    _emit(args, {"rows": df.drop(columns=["path"]).to_dict(orient="records"), "files": paths}, human)
    return 0


def cmd_results_paired(args) -> int:
    from .metrics import metric_label
    from .results import paired_difference
    d = paired_difference(args.run_a, args.run_b, args.metric, args.replicates)
    name = metric_label(d["metric"])
    verdict = ("the 95% interval excludes zero" if d["excludes_zero"]
               else "the 95% interval includes zero: no significant difference")
    human = (f"{name}: A = {d['a']['label']} {d['a']['mean']:.2f}, B = {d['b']['label']} {d['b']['mean']:.2f}\n"
             f"A - B = {d['difference']:.2f}  95% CI [{d['ci_low']:.2f}, {d['ci_high']:.2f}]  paired over "
             f"{d['n_clips']} clips, resampling {d['n_videos']} test videos; {verdict}")
    _emit(args, d, human)
    return 0


# ---------------------------------------------------------------------------
#: Commands whose parsers import torch + diffusers (seconds); other commands build them as stubs.
HEAVY_COMMANDS = ("train", "animate")
ANIMATE_HELP = "animate one image with one audio clip (AVSyncD) into an mp4"


def build_parser(heavy: bool = True) -> argparse.ArgumentParser:
    """The full parser; ``heavy=False`` leaves out the sub-commands of HEAVY_COMMANDS (listed, not
    parseable), so every other command starts without importing diffusers."""
    p = argparse.ArgumentParser(
        prog="asva-bench",
        description="Benchmark for Audio-Synchronized Visual Animation (image + audio -> video).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser("models", help="list model adapters")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("datasets", help="list, check or make datasets")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_datasets_list)
    dsub = d.add_subparsers(dest="datasets_command", metavar="ACTION")
    dc = dsub.add_parser("check", help="verify a dataset root against its expected layout and counts")
    dc.add_argument("name")
    dc.add_argument("--root", help="dataset folder (default: the dataset's environment variable)")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=cmd_datasets_check)
    dm = dsub.add_parser("make", help="build the synthetic dataset, or the synth-wild curation pool")
    dm.add_argument("name", help="'synth', or 'synth-wild' (a raw pool with labelled defects, for curate)")
    dm.add_argument("--root", help="output folder (default: $ASVA_SYNTH_ROOT or the cache; synth-wild: "
                                   "$ASVA_BENCH_HOME/datasets/synth-wild)")
    dm.add_argument("--seed", type=int, default=0, help="dataset seed (default 0); the same seed writes the same bytes")
    dm.add_argument("--videos-per-class", type=int, default=None,
                    help="default: 100 (synth: 10%% of them, at least 1, in test), 30 (synth-wild)")
    dm.add_argument("--classes", default=None, help="comma-separated subset of synth's class folders (listed by "
                                                    "`asva-bench datasets`; synth-wild: the last --small-classes "
                                                    "of them are the small ones)")
    dm.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    dm.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    from .curation.cli import add_synth_wild_arguments
    add_synth_wild_arguments(dm)
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_datasets_make)

    r = sub.add_parser("run", help="generate (and score) a model's clips on a dataset's test protocol")
    r.add_argument("--model", required=True, help="adapter name (see `asva-bench models`) or module:Class")
    r.add_argument("--dataset", required=True, help="dataset name (see `asva-bench datasets`)")
    r.add_argument("--root", help="dataset folder (default: the dataset's environment variable; "
                                  "synth is built automatically)")
    r.add_argument("--out", help="run folder (default: runs/<dataset>-<profile>/<model>)")
    r.add_argument("--profile", choices=PROFILE_NAMES,
                   help="paper (published networks) or mini (embedded CPU world); "
                        "default: mini for synth, paper otherwise")
    r.add_argument("--split", default="test")
    r.add_argument("--seed", type=int, default=0, help="run seed; per-clip seeds derive from it")
    r.add_argument("--limit", type=int, help="only N test videos, round robin over the classes (a reduced "
                                             "protocol, recorded in the fingerprint)")
    r.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter argument, repeatable (e.g. eta=4)")
    r.add_argument("--skip-bad", action="store_true",
                   help="count and list unreadable input videos instead of stopping")
    r.add_argument("--lossless", action="store_true",
                   help="write clips with lossless h264 (part of the fingerprint; the paper used the default)")
    r.add_argument("--audio-shift", type=float, default=0.0, metavar="SECONDS",
                   help="sync control: give the model the audio SECONDS off (same recording; clips and scores "
                        "keep the true audio); compare with `asva-bench results paired`")
    r.add_argument("--track", choices=["asva-reference", "corrected"],
                   help="protocol track: asva-reference (the reference evaluation's behaviour, the paper default) or "
                        "corrected (the mini default); docs/protocol.md")
    r.add_argument("--device", default="cpu")
    r.add_argument("--metrics", help="comma-separated metrics: names (default: the paper's six), "
                   "module:Class of your own, or installed asva_bench.metrics plugins (docs/metrics.md)")
    r.add_argument("--no-score", action="store_true", help="generate only")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("score", help="score an existing run folder (also runs made by other tools)")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--metrics", help="comma-separated metrics: names (default: the paper's six), "
                   "module:Class of your own, or installed asva_bench.metrics plugins (docs/metrics.md)")
    s.add_argument("--allow-incomplete", action="store_true",
                   help="score the clips that are there; the coverage is recorded")
    s.add_argument("--allow-dataset-change", action="store_true",
                   help="score although the dataset changed since generation (recorded)")
    s.add_argument("--track", choices=["asva-reference", "corrected"],
                   help="rescore the same clips under this protocol track (default: the run's); another track "
                        "than the run's writes results.<track>.json (+ .scores.jsonl) beside results.json")
    s.add_argument("--device", default="cpu")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    dm = sub.add_parser("demo", help="build synth, run and score the reference models, build the leaderboard")
    dm.add_argument("--out", default="runs/demo")
    from .demo import DEMO_LIMIT
    dm.add_argument("--limit", type=int,
                    help="only N test videos, round robin over the classes (a reduced protocol, stated in the "
                         f"output; default {DEMO_LIMIT}, so that the five models run in under 10 minutes on 2 "
                         "CPU cores)")
    dm.add_argument("--full", action="store_true", help="the full test protocol (150 videos, 450 clips per model)")
    dm.add_argument("--device", default="cpu")
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_demo)

    v = sub.add_parser("validate", help="metric validity suite: controlled degradations of the ground truth")
    v.add_argument("--profile", choices=PROFILE_NAMES, default="mini")
    v.add_argument("--dataset", default="synth")
    v.add_argument("--root")
    v.add_argument("--limit", type=int, help="only N test videos, round robin over the classes")
    v.add_argument("--replicates", type=int, default=500)
    v.add_argument("--track", choices=["asva-reference", "corrected"],
                   help="protocol track: asva-reference (the reference evaluation's behaviour, the paper default) or "
                        "corrected (the mini default); docs/protocol.md")
    v.add_argument("--out", help="folder for validation.json / validation.txt")
    v.add_argument("--device", default="cpu")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_validate)

    from .curation.cli import add_curate_command
    add_curate_command(sub)

    from .weights_cli import add_weights_commands
    add_weights_commands(sub)
    from .leaderboard.cli import add_commands as add_leaderboard_commands
    add_leaderboard_commands(sub)
    from .training.cli import add_commands as add_training_commands
    train_sub = add_training_commands(sub)
    if heavy:
        from .models.avsyncd.train_base import add_train_base_command
        add_train_base_command(train_sub)
        from .models.avsyncd.train import add_train_commands
        add_train_commands(train_sub)
        from .models.avsyncd.animate import add_animate_command
        add_animate_command(sub)
    else:
        sub.add_parser("animate", help=ANIMATE_HELP)

    res = sub.add_parser("results", help="tables of scored runs")
    rsub = res.add_subparsers(dest="results_command", metavar="ACTION")
    rsub.required = True
    rt = rsub.add_parser("table", help="print a Table-1-style table (with --out, also write CSV, Markdown and "
                                       "LaTeX)")
    rt.add_argument("runs", nargs="+", help="run folders or results.json files")
    rt.add_argument("--out", help="path prefix: also write PREFIX.csv, PREFIX.md and PREFIX.tex (without it the "
                                  "table is only printed)")
    rt.add_argument("--allow-mixed", action="store_true",
                    help="show runs of different fingerprints together (marked)")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_results_table)
    rp = rsub.add_parser("paired", help="A - B of a per-clip metric over the same clips, with a paired "
                                        "bootstrap interval (e.g. true vs shifted audio)")
    rp.add_argument("run_a", help="run folder or results.json (A)")
    rp.add_argument("run_b", help="run folder or results.json (B)")
    rp.add_argument("--metric", default="relsync",
                    help="a metric with per-clip values in both runs' scores.jsonl (default relsync; the "
                         "paper's are alignsync, ia, it and relsync; a plugin metric by its name)")
    rp.add_argument("--replicates", type=int, default=1000)
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_results_paired)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(heavy=bool(argv) and argv[0] in HEAVY_COMMANDS)
    args = parser.parse_args(argv)
    from .heap import keep_freed_memory
    keep_freed_memory()     # batched forwards reuse their freed activations (heap.py)
    from .adapters import AdapterError
    from .avio import MediaError
    from .datasets import DatasetError
    from .runs import RunFolderError
    from .preflight import PreflightError
    from .registry import UnknownNameError
    from .results import ResultsError
    from .runlock import RunLockedError
    from .scoring import ScoringError
    try:
        return int(args.func(args) or 0)
    except PreflightError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(e), "type": "PreflightError", **e.to_dict()}, default=str))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (AdapterError, MediaError, DatasetError, RunFolderError, UnknownNameError, ScoringError,
            ResultsError, RunLockedError, ValueError, OSError) as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(e), "type": type(e).__name__}))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
