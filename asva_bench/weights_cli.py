"""`asva-bench weights list | verify | fetch` (kept outside the backbones package, whose import loads torch): what each profile needs, and whether it checks out.

Wiring (in asva_bench/cli.py)::

    from .weights_cli import add_weights_commands
    add_weights_commands(sub)      # sub = the top-level add_subparsers(...)

Each sub-command sets ``func(args) -> int`` (exit code), like the others.
``weights list`` reads only verification stamps (fast, no hashing);
``weights verify`` re-hashes every present file and sniffs its format, and
exits 1 if any file is a checksum mismatch or of the wrong format, or if
anything listed is missing. Both also list the released model folders
(:mod:`asva_bench.checkpoints`: the AVSyncD checkpoints, the sync
classifier's release, Stable Diffusion 1.5). ``weights fetch NAME``
downloads what has a direct URL or hub id (hash-checked, atomic) and prints
the manual steps for files behind Google Drive (docs/weights.md).
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


def _folders(profile: str | None, rehash: bool) -> list[dict]:
    from .checkpoints import RELEASED, folder_status
    return [folder_status(rf, rehash=rehash) for rf in RELEASED.values() if profile in (None, rf.profile)]


_FOLDER_MARK = {"ok": "present", "missing": "MISSING", "bad": "UNUSABLE"}


def _human_folders(folders: list[dict]) -> list[str]:
    lines = ["released model folders:" if folders else ""]
    for f in folders:
        pins = "; ".join(f"{x['file']}: {x['status']}" for x in f["present_files"] if x["sha256"])
        lines.append(f"{f['name']}  [{f['profile']}, {f['kind']}]  {f['description']}")
        lines.append(f"  {_FOLDER_MARK.get(f['status'], f['status'])}: {f['path']}")
        if f["status"] != "ok":
            lines += [f"    {p}" for p in f["problems"][:6]]
            lines.append(f"    source: {f['source']}")
            lines.append(f"    get it: asva-bench weights fetch {f['name']}")
        lines.append(f"    sha256: {'pinned ' + ', '.join(f['pinned']) if f['pinned'] else 'unpinned (no published digest)'}"
                     + (f"; local {pins}" if pins else ""))
        if f["use"]:
            lines.append(f"    use: {f['use']}")
    return [x for x in lines if x]


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
    profile = getattr(args, "profile", None)
    root, rows = _statuses(profile, rehash)
    folders = _folders(profile, rehash)
    # backbones may share a file: count each path once
    bad = {w["path"] for r in rows for w in r["weights"] if w["status"] in ("mismatch", "bad-format")}
    bad |= {f["path"] for f in folders if f["status"] == "bad"}
    missing = {w["path"] for r in rows for w in r["weights"] if w["status"] == "missing"}
    missing |= {f["path"] for f in folders if f["status"] == "missing"}
    obj = {"cache_root": root, "offline": is_offline(), "profile": profile,
           "backbones": rows, "folders": folders, "ok": not bad and not (rehash and missing),
           "missing": len(missing), "bad": len(bad)}
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True))
    else:
        print("\n".join([_human(root, rows, obj["offline"])] + _human_folders(folders)))
        if rehash:
            print(f"{len(bad)} bad, {len(missing)} missing" + ("" if bad or missing else
                                                             "; everything is present and checks out"))
    return 1 if (rehash and (bad or missing)) else 0


def cmd_weights_fetch(args) -> int:
    """Download NAME (a backbone or a released folder), or print the manual steps."""
    from .backbones import get_backbone_spec
    from .backbones.base import WeightsError
    from .backbones.weights import cache_path, ensure_weight, locate
    from .checkpoints import RELEASED, fetch_released, get_released
    from .registry import UnknownNameError
    names = list(args.names)
    results, rc = [], 0
    for name in names:
        if name.lower() in RELEASED:
            res = fetch_released(get_released(name))
            if res["manual_steps"]:
                rc = max(rc, 3)
            results.append(res)
            continue
        try:
            spec = get_backbone_spec(name)
        except UnknownNameError:
            known = sorted(RELEASED) + sorted(s.name for s in _all_specs())
            raise UnknownNameError(f"nothing called '{name}' to fetch; known: {', '.join(known)}") from None
        files, steps = [], []
        for wf in spec.weights:
            if locate(spec, wf).is_file() and wf.url is None:
                files.append({"file": wf.filename, "path": str(locate(spec, wf)), "status": "present"})
                continue
            if wf.url is None:
                steps.append(f"{wf.filename}: from {wf.note or 'this project (train it)'}; place it at "
                             f"{cache_path(spec, wf)}")
                continue
            try:
                path = ensure_weight(spec, wf)
                files.append({"file": wf.filename, "path": str(path), "status": "verified" if wf.sha256 else
                              "downloaded, unpinned"})
            except WeightsError as e:
                rc = max(rc, 1)
                files.append({"file": wf.filename, "path": str(cache_path(spec, wf)), "status": "failed",
                              "error": str(e)})
        if steps:
            steps.append("check it: asva-bench weights verify --profile " + spec.profile)
            rc = max(rc, 3)
        results.append({"name": spec.name, "files": files, "manual_steps": steps,
                        "downloaded": any(f["status"] != "present" for f in files)})
    if getattr(args, "json", False):
        print(json.dumps({"fetched": results, "ok": rc == 0}, sort_keys=True))
    else:
        lines = []
        for r in results:
            for f in r.get("files", []):
                lines.append(f"{r['name']}: {f['file']}: {f['status']} ({f['path']})" +
                             (f"\n  {f['error']}" if f.get("error") else ""))
            if r.get("path") and not r["manual_steps"]:
                lines.append(f"{r['name']}: downloaded to {r['path']}")
            if r["manual_steps"]:
                lines.append(f"{r['name']} cannot be downloaded by this command; by hand:")
                lines += [f"  {i}. {s}" for i, s in enumerate(r["manual_steps"], 1)]
        print("\n".join(lines))
    # 3: manual steps printed (nothing wrong, but nothing fetched either)
    return rc


def _all_specs():
    from .backbones import specs_for_profile
    return specs_for_profile(None)


def cmd_weights_list(args) -> int:
    return _run(args, rehash=False)


def cmd_weights_verify(args) -> int:
    return _run(args, rehash=True)


def add_weights_commands(subparsers) -> None:
    """Add ``weights [list|verify]`` to an argparse sub-parser collection."""
    from .profiles import PROFILES
    w = subparsers.add_parser("weights", help="list, verify or fetch evaluator weights and released model folders")
    w.set_defaults(func=cmd_weights_list)  # bare `weights` = `weights list`
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION")
    lp = wsub.add_parser("list", help="what each profile needs: present or missing, verified or not")
    lp.add_argument("--profile", choices=PROFILES, default=None, help=_PROFILE_HELP)
    lp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    lp.set_defaults(func=cmd_weights_list)
    vp = wsub.add_parser("verify", help="re-hash every present weight file; exit 1 on a mismatch or anything "
                                        "missing")
    vp.add_argument("--profile", choices=PROFILES, default=None, help=_PROFILE_HELP)
    vp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    vp.set_defaults(func=cmd_weights_verify)
    fp = wsub.add_parser("fetch", help="download NAME (hash-checked, atomic), or print the manual steps for "
                                       "files behind Google Drive (exit 3)")
    fp.add_argument("names", nargs="+", metavar="NAME", help="a backbone or released folder (see `weights list`)")
    fp.add_argument("--json", action="store_true", help="print exactly one JSON object")
    fp.set_defaults(func=cmd_weights_fetch)
