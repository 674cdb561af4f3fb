"""`asva-bench weights list | verify` (kept outside the backbones package, whose import loads torch): what each profile needs, and whether it checks out.

Wiring (in asva_bench/cli.py)::

    from .weights_cli import add_weights_commands
    add_weights_commands(sub)      # sub = the top-level add_subparsers(...)

Each sub-command sets ``func(args) -> int`` (exit code), like the others.
``weights list`` reads only verification stamps (fast, no hashing);
``weights verify`` re-hashes every present file and sniffs its format, and
exits 1 if any file is a checksum mismatch or of the wrong format.
"""

from __future__ import annotations

import json

_MARK = {"verified": "verified", "unpinned": "present, unpinned (no published sha256)",
         "present": "present, not verified yet", "missing": "MISSING", "mismatch": "CHECKSUM MISMATCH",
         "bad-format": "WRONG FORMAT"}


_PROFILE_HELP = "only backbones of this profile (default: all)"


def _statuses(profile: str | None, rehash: bool) -> tuple[str, list[dict]]:
    from .backbones import specs_for_profile
    from .backbones.weights import cache_root, weight_status
    rows = []
    for spec in specs_for_profile(profile):
        files = [weight_status(spec, wf, rehash=rehash).to_dict() for wf in spec.weights]
        rows.append({"name": spec.name, "profile": spec.profile, "kind": spec.kind,
                     "preprocessing": spec.preprocessing, "output": spec.output,
                     "description": spec.description, "weights": files})
    return str(cache_root()), rows


def _human(root: str, rows: list[dict], offline: bool) -> str:
    lines = [f"weight cache: {root}" + ("  (offline: ASVA_BENCH_OFFLINE is set)" if offline else "")]
    for r in rows:
        lines.append(f"{r['name']}  [{r['profile']}, {r['kind']}]  {r['description']}")
        for w in r["weights"]:
            lines.append(f"  {w['filename']}: {_MARK.get(w['status'], w['status'])}")
            lines.append(f"    path: {w['path']}")
            if w["status"] in ("missing", "mismatch", "bad-format"):
                lines.append(f"    source: {w['url'] or 'produced by this project (no download)'}")
            pinned = f"pinned {w['sha256']} ({w['pinning']})" if w["sha256"] else "unpinned (no published digest)"
            lines.append(f"    sha256: {pinned}; local {w['local_sha256'] or 'not hashed'}")
            if w["detail"]:
                lines.append(f"    {w['detail']}")
    if not rows:
        lines.append("(no backbones registered for this profile)")
    return "\n".join(lines)


def _run(args, rehash: bool) -> int:
    from .backbones.weights import is_offline
    root, rows = _statuses(getattr(args, "profile", None), rehash)
    # backbones may share a file: count each path once
    bad = {w["path"] for r in rows for w in r["weights"] if w["status"] in ("mismatch", "bad-format")}
    missing = {w["path"] for r in rows for w in r["weights"] if w["status"] == "missing"}
    obj = {"cache_root": root, "offline": is_offline(), "profile": getattr(args, "profile", None),
           "backbones": rows, "ok": not bad, "missing": len(missing), "bad": len(bad)}
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True))
    else:
        print(_human(root, rows, obj["offline"]))
        if rehash:
            print(f"{len(bad)} bad, {len(missing)} missing" + ("" if bad else "; every present file checks out"))
    return 1 if (rehash and bad) else 0


def cmd_weights_list(args) -> int:
    return _run(args, rehash=False)


def cmd_weights_verify(args) -> int:
    return _run(args, rehash=True)


def add_weights_commands(subparsers) -> None:
    """Add ``weights [list|verify]`` to an argparse sub-parser collection."""
    from .profiles import PROFILES
    w = subparsers.add_parser("weights", help="list or verify evaluator backbone weights")
    w.set_defaults(func=cmd_weights_list)  # bare `weights` = `weights list`
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION")
    lp = wsub.add_parser("list", help="what each profile needs: present or missing, verified or not")
    lp.add_argument("--profile", choices=PROFILES, default=None, help=_PROFILE_HELP)
    lp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    lp.set_defaults(func=cmd_weights_list)
    vp = wsub.add_parser("verify", help="re-hash every present weight file; exit 1 on a mismatch")
    vp.add_argument("--profile", choices=PROFILES, default=None, help=_PROFILE_HELP)
    vp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    vp.set_defaults(func=cmd_weights_verify)
