"""Command-line commands of the leaderboard and the user study.

``add_commands(subparsers)`` adds ``leaderboard {build,validate}`` and
``study {make,tally}`` to the main ``asva-bench`` parser. Every command
stores its handler as ``func``; a handler takes the parsed arguments and
returns the exit code (0 ok, 1 the input failed a check, 2 unusable input).
With ``--json`` a command prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from asva_bench.fsutil import show_progress


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj) if args.json else text)


def _fail(args, message: str, code: int = 2) -> int:
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------
# leaderboard
# --------------------------------------------------------------------------
def cmd_leaderboard_build(args) -> int:
    from .build import SiteError, build_site
    from .validate import ResultsError
    try:
        summary = build_site(args.results, args.out, gallery_per_class=args.gallery_per_class,
                             gallery_page_size=args.gallery_page_size, progress=show_progress(),
                             reported=not args.no_reported)
    except (ResultsError, SiteError, ValueError) as e:
        return _fail(args, str(e))
    lines = [f"site written to {args.out} (open {args.out}/index.html)"]
    for b in summary["boards"]:
        warned = [e for e in b["entries"] if e["problems"]]
        lines.append(f"  {b['dataset']}/{b['profile']}/{b['track']}: {len(b['entries'])} entries"
                     + (f" + {len(b['reported'])} reported rows" if b["reported"] else "")
                     + (f", fingerprint {b['fingerprint']}" if b["fingerprint"] else "")
                     + (f", {len(warned)} with warnings" if warned else ""))
        for e in warned:
            for p in e["problems"]:
                lines.append(f"    ! {e['model']}: {p['kind']}: {p['message']}")
    lines += [f"  note: {n}" for n in summary["notes"]]
    _emit(args, dict(summary, ok=True), "\n".join(lines))
    return 0


def cmd_leaderboard_validate(args) -> int:
    from .validate import ENTRIES_DIR, ResultsError, validate_submission
    from .validate import duplicate_labels, load_entry
    try:
        reports = [validate_submission(f, entries_dir=args.entries or ENTRIES_DIR, reference=args.reference)
                   for f in args.files]
        # two of the files given together may also claim one label on one board
        given = [load_entry(f) for f in args.files]
    except ResultsError as e:
        return _fail(args, str(e))
    for i, problem in duplicate_labels(given).items():
        if problem.kind not in {p.kind for p in reports[i].problems}:
            reports[i].problems.append(problem)
            reports[i].ok = False
    ok = all(r.ok for r in reports)
    lines = []
    for r in reports:
        head = f"{r.file}: {'OK' if r.ok else 'FAILED'} ({r.model} on {r.dataset}/{r.profile}, fingerprint {r.fingerprint}"
        head += f", compared with {r.reference})" if r.reference else ", no reference entry on this board)"
        lines.append(head)
        lines += [f"  - {p}" for p in r.problems]
    _emit(args, {"ok": ok, "files": [r.to_dict() for r in reports]}, "\n".join(lines))
    return 0 if ok else 1


# --------------------------------------------------------------------------
# study
# --------------------------------------------------------------------------
def cmd_study_make(args) -> int:
    from .study import StudyError, make_study
    try:
        summary = make_study(args.runs, args.raters, args.out, per_example=args.per_example,
                             examples=args.examples, seed=args.seed, groundtruth=args.groundtruth,
                             progress=show_progress())
    except StudyError as e:
        return _fail(args, str(e))
    lines = [f"study {summary['study_id']}: {summary['examples']} examples, {len(summary['sheets'])} "
             f"sheets, {summary['ratings_per_example']} ratings per example, runs {', '.join(summary['runs'])}",
             f"  send raters the folder {summary['sheets_dir']} (each opens their own sheet)",
             f"  keep {summary['key']} to yourself: it maps the letters to models"]
    lines += [f"  {s['rater']}: {s['file']} ({s['examples']} examples)" for s in summary["sheets"]]
    lines += [f"  warning: {w}" for w in summary["warnings"]]
    _emit(args, dict(summary, ok=True), "\n".join(lines))
    return 0


def cmd_study_tally(args) -> int:
    from .study import StudyError, format_tally, load_key, load_votes, tally
    try:
        key = load_key(args.key)
        votes = load_votes(args.votes, key, partial=args.partial)
    except StudyError as e:
        return _fail(args, str(e), code=1)
    result = tally(key, votes)
    _emit(args, dict(result, ok=True), format_tally(result))
    return 0


# --------------------------------------------------------------------------
# wiring
# --------------------------------------------------------------------------
def add_commands(subparsers) -> None:
    """Add ``leaderboard`` and ``study`` to an argparse sub-parser collection."""
    lb = subparsers.add_parser("leaderboard", help="build the leaderboard site, validate submissions")
    lbs = lb.add_subparsers(dest="leaderboard_command", metavar="{build,validate}")
    lbs.required = True

    p = lbs.add_parser("build", help="render a static site from results files")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files, run folders, or folders of entries (e.g. leaderboard/entries)")
    p.add_argument("--out", required=True, metavar="SITE", help="site folder (replaced if it is an older site)")
    p.add_argument("--gallery-per-class", type=int, default=2, metavar="N",
                   help="sample clips per class on a model page (default 2)")
    p.add_argument("--gallery-page-size", type=int, default=6, metavar="N",
                   help="clips per gallery page (default 6)")
    p.add_argument("--no-reported", action="store_true",
                   help="leave out the published (reported) rows of the paper's Table 1 and the authors' release")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_leaderboard_build)

    p = lbs.add_parser("validate", help="check results files for the published board")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--entries", metavar="DIR", help="board entries to compare fingerprints with "
                   "(default: the package's leaderboard/entries)")
    p.add_argument("--reference", metavar="RESULTS", help="compare the fingerprint with this results file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_leaderboard_validate)

    st = subparsers.add_parser("study", help="user-study sheets and vote tally")
    sts = st.add_subparsers(dest="study_command", metavar="{make,tally}")
    sts.required = True

    p = sts.add_parser("make", help="build per-rater HTML sheets comparing runs")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run folders to compare (2 or more)")
    p.add_argument("--raters", type=int, required=True, metavar="N", help="number of rater sheets")
    p.add_argument("--per-example", type=int, metavar="K",
                   help="raters per example (default min(2, N), as in the paper)")
    p.add_argument("--examples", type=int, metavar="N", help="number of test examples (default: one clip "
                   "of every test video the runs share)")
    p.add_argument("--groundtruth", metavar="RUN", help="ground-truth run giving the input image and audio")
    p.add_argument("--seed", type=int, default=0, help="seed of the example choice (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for the study")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_study_make)

    p = sts.add_parser("tally", help="check vote files and count votes per model and question")
    p.add_argument("votes", nargs="+", metavar="VOTES", help="votes-*.json files exported from the sheets")
    p.add_argument("--key", required=True, metavar="MAPPING", help="the study's key.json")
    p.add_argument("--partial", action="store_true", help="tally even if some sheets have no votes yet")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_study_tally)


def main(argv=None) -> int:
    """Stand-alone entry (``python -m asva_bench.leaderboard.cli``), same commands."""
    parser = argparse.ArgumentParser(prog="asva-bench")
    sub = parser.add_subparsers(dest="command", metavar="{leaderboard,study}")
    sub.required = True
    add_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
