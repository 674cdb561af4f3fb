"""`asva-bench demo`: the whole benchmark, end to end, on the embedded world.

Builds `synth` if absent, runs the reference models on its test protocol,
scores them (ground truth included), writes the results table and builds the
leaderboard site. Every stage is resumable, so an interrupted demo reruns to
completion without redoing finished work.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Test videos the demo uses unless --full: the two diffusion models sample 12 frames with 10
#: denoising steps (AVSyncD: two passes each, for audio guidance) on the CPU, which makes the
#: full 450-clip protocol a half-hour job; the reduced protocol is stated in the demo's output.
DEMO_LIMIT = 40

#: (model, model args[, label]) in Table 1 order; the ground truth is the reference row.
DEMO_MODELS = (("groundtruth", ()), ("static", ()), ("i2vd", ()), ("aadiff", ()),
               ("avsyncd", ("eta=4",)))


@dataclass
class DemoReport:
    out: str
    runs: dict = field(default_factory=dict)      # model label -> run folder
    timings: dict = field(default_factory=dict)   # stage -> seconds
    site: str | None = None
    table: dict = field(default_factory=dict)
    reduced_protocol: str | None = None
    unavailable: dict = field(default_factory=dict)


def available_models(models=DEMO_MODELS) -> tuple[list, dict]:
    """Models whose adapter is installed; others listed with the reason."""
    from .adapters import adapter_registry
    reg = adapter_registry()
    ok, missing = [], {}
    for entry in models:
        name = entry[0]
        if name in reg:
            ok.append(entry)
        else:
            missing[name] = "adapter not installed in this version"
    return ok, missing


def run_demo(out="runs/demo", limit: int | None = None, models=DEMO_MODELS, progress: bool = True,
             device: str = "cpu", log=print) -> DemoReport:
    from .adapters import AdapterError, adapter_registry, build_adapter
    from .datasets import get_dataset
    from .datasets.synth import ensure_synth
    from .runs import present_clips
    from .evaluators import load_suite
    from .generation import RunSpec, run_generation
    from .profiles import protocol_for
    from .results import load_results, to_frame, write_tables
    from .scoring import ScoreOptions, score_run

    out = Path(out)
    rep = DemoReport(out=str(out))
    if limit:
        rep.reduced_protocol = (f"REDUCED PROTOCOL: {limit} of synth's 150 test videos, spread over the classes "
                                f"({limit * 3} clips per model), not the full 450 clips; `asva-bench demo --full` "
                                "runs the full protocol")
        log(rep.reduced_protocol)
    t = time.perf_counter()
    root = ensure_synth(progress=progress)
    spec = get_dataset("synth")
    manifest = spec.load(root)
    rep.timings["dataset"] = round(time.perf_counter() - t, 1)
    protocol = protocol_for(spec.protocol, "mini")
    suite = load_suite("mini", device=device)
    todo, rep.unavailable = available_models(models)
    for name, reason in rep.unavailable.items():
        log(f"skipping {name}: {reason}")
    reg = adapter_registry()
    for entry in todo:
        name, args = entry[0], entry[1]
        adapter = build_adapter(name, list(args))
        # an entry may name its own label (name, args, label); else e.g. avsyncd-eta4
        label = entry[2] if len(entry) > 2 else name + ("-" + "-".join(a.replace("=", "") for a in args)
                                                          if args else "")
        run_dir = out / "runs" / label
        t = time.perf_counter()
        try:
            rec = run_generation(RunSpec(adapter=adapter, adapter_target=reg.get(name), manifest=manifest,
                                         split="test", profile="mini", protocol=protocol, limit=limit),
                                 run_dir, device=device, progress=progress)
        except AdapterError as e:
            # e.g. mini weights not shipped in this version: say so, go on with the other models;
            # a run folder without any clip is removed so a later demo starts it afresh
            if run_dir.is_dir() and not present_clips(run_dir):
                shutil.rmtree(run_dir)
            rep.unavailable[label] = str(e)
            log(f"skipping {label}: {e}")
            continue
        rep.timings[f"generate {label}"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        score_run(run_dir, suite, ScoreOptions(progress=progress, device=device))
        rep.timings[f"score {label}"] = round(time.perf_counter() - t, 1)
        rep.runs[label] = str(run_dir)
        log(f"{label}: {rec['clips']['generated']} clips generated and scored")
    results = [load_results(p) for p in rep.runs.values()]
    df = to_frame(results)
    rep.table = write_tables(df, out / "table")
    return rep
