"""Results files -> pandas tables (CSV, Markdown, LaTeX in the paper's Table 1 style)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .metrics import METRICS, arrow, metric_label, metric_order
from .runs import RunFolderError, read_results, read_scores, results_file, scores_path_for

REFERENCE_MODELS = ("groundtruth", "static")  # reference rows: shown, never ranked (as on the site)


#: Results that cannot be used as asked (the run folder contract's one error type).
ResultsError = RunFolderError


def load_results(path) -> dict:
    """A results file (or a run folder's), checked against the results schema; ``_path`` added."""
    p = results_file(path)
    r = read_results(p).to_dict()
    r["_path"] = str(p)
    return r


def _changed_args(name: str, cfg: dict) -> dict:
    """The model arguments of ``cfg`` that differ from the adapter's defaults (the full config
    stays in the results file; a table shows what tells runs of one model apart)."""
    import inspect
    try:
        from .adapters import get_adapter_class
        params = inspect.signature(get_adapter_class(name).__init__).parameters
    except Exception:  # adapter not installed here: show the short scalar settings
        return {k: v for k, v in cfg.items()
                if isinstance(v, (int, float, bool, str)) and len(str(v)) <= 30}
    return {k: v for k, v in cfg.items()
            if k in params and k != "self" and params[k].default is not inspect.Parameter.empty
            and v != params[k].default}


def model_label(r: dict) -> str:
    cfg = r["model"].get("config") or {}
    args = ", ".join(f"{k}={v}" for k, v in sorted(_changed_args(r["model"]["name"], cfg).items()))
    shift = (r.get("conditioning") or {}).get("audio_shift_s")
    return (r["model"]["name"] + (f" ({args})" if args else "")
            + (f" [audio shifted {shift:g} s]" if shift else ""))


def to_frame(results: list[dict], allow_mixed: bool = False) -> pd.DataFrame:
    """One row per run: mean, ci_low, ci_high per metric, plus identity columns."""
    fps = sorted({r["fingerprint"] for r in results})
    if len(fps) > 1 and not allow_mixed:
        detail = "; ".join(f"{model_label(r)}: {r['fingerprint']} ({r['profile']}, "
                           f"{r['dataset']['name']}, protocol {r['protocol']['fingerprint']})" for r in results)
        raise ResultsError("runs with different fingerprints cannot be ranked in one table "
                           f"({detail}); pass --allow-mixed to show them together, marked")
    majority = pd.Series([r["fingerprint"] for r in results]).mode()[0]
    rows, hib_of = [], {}
    for r in results:
        row = {"model": model_label(r), "fingerprint": r["fingerprint"],
               "mismatched": r["fingerprint"] != majority,
               "coverage": r.get("coverage", 1.0), "profile": r["profile"],
               "dataset": r["dataset"]["name"], "path": r.get("_path")}
        for m, s in r["metrics"].items():
            hib_of.setdefault(m, s["higher_is_better"])
            row[m] = s["mean"]
            row[f"{m}_ci_low"] = s["ci_low"]
            row[f"{m}_ci_high"] = s["ci_high"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["higher_is_better"] = hib_of   # as recorded: the direction of a metric not registered here
    return df


def _best(df: pd.DataFrame, metric: str, higher_is_better: bool):
    ranked = df[~df["model"].isin(REFERENCE_MODELS) & df[metric].notna()]
    if ranked.empty:
        return None
    return ranked[metric].idxmax() if higher_is_better else ranked[metric].idxmin()


def _directions(df: pd.DataFrame) -> dict[str, bool]:
    """metric -> higher_is_better, for the metric columns of a table (those with an interval): a
    registered metric's class says; a metric known only from its results files keeps the direction
    they record (to_frame notes it), or is left out of the display."""
    recorded = df.attrs.get("higher_is_better", {})
    metrics = [c for c in df.columns if f"{c}_ci_low" in df.columns]
    return {m: METRICS.get(m).higher_is_better if m in METRICS else recorded[m]
            for m in metrics if m in METRICS or m in recorded}


def formatted(df: pd.DataFrame, latex: bool = False) -> pd.DataFrame:
    """Display table: 'mean [lo, hi]' per metric in the metrics' column order, with each metric's
    label and direction arrow, best per column in bold, marks for caveats."""
    hib_of = _directions(df)
    out = pd.DataFrame({"Model": df["model"]})
    for m in metric_order(hib_of):
        best = _best(df, m, hib_of[m])
        col = []
        for i, row in df.iterrows():
            if pd.isna(row.get(m)):
                col.append("-")
                continue
            txt = f"{row[m]:.2f}"
            ci = f" [{row[f'{m}_ci_low']:.2f}, {row[f'{m}_ci_high']:.2f}]"
            if i == best:
                txt = f"\\textbf{{{txt}}}" if latex else f"**{txt}**"
            col.append(txt + ci)
        out[f"{metric_label(m)} {arrow(hib_of[m], latex)}"] = col
    marks = []
    for _, row in df.iterrows():
        mk = ""
        if row["mismatched"]:
            mk += " (fingerprint differs)"
        if row["coverage"] < 1.0:
            mk += f" (coverage {row['coverage']:.0%})"
        marks.append(mk)
    out["Model"] = [m + k for m, k in zip(out["Model"], marks)]
    return out


def write_tables(df: pd.DataFrame, out_prefix) -> dict:
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_prefix.with_suffix(".csv"), "md": out_prefix.with_suffix(".md"),
             "tex": out_prefix.with_suffix(".tex")}
    df.drop(columns=["path"]).to_csv(paths["csv"], index=False)
    paths["md"].write_text(formatted(df).to_markdown(index=False) + "\n")
    paths["tex"].write_text(formatted(df, latex=True).to_latex(index=False, escape=False))
    return {k: str(v) for k, v in paths.items()}


# --------------------------------------------------------------------------
# Paired comparison of two runs over the same clips
# --------------------------------------------------------------------------
def read_per_clip(run) -> dict[str, dict]:
    """clip_id -> {"video_id", "metrics"} from a scored run's scores (beside its results file)."""
    f = scores_path_for(results_file(run))
    out = {}
    for row in read_scores(f):
        try:
            out[row["clip_id"]] = {"video_id": row["video_id"], "metrics": row["metrics"]}
        except KeyError as e:
            raise ResultsError(f"{f}: clip {row['clip_id']} has no {e}; rescore the run") from e
    return out


def paired_difference(run_a, run_b, metric: str = "relsync", replicates: int = 1000) -> dict:
    """Mean over shared clips of metric(a) - metric(b), with a 95% bootstrap interval over
    test videos (the same resampling unit as every interval of the benchmark).

    Both runs must score the same test clips (the same fingerprint); a clip
    scored in only one run is an error, never silently dropped.
    """
    import numpy as np
    from .metrics.bootstrap import bootstrap_paired_difference
    if metric not in METRICS:
        raise ResultsError(METRICS.unknown_message(metric))
    ra, rb = load_results(run_a), load_results(run_b)
    if ra["fingerprint"] != rb["fingerprint"]:
        raise ResultsError(f"{ra['_path']} and {rb['_path']} have different fingerprints "
                           f"({ra['fingerprint']} vs {rb['fingerprint']}): not the same test clips and evaluators")
    a, b = read_per_clip(ra["_path"]), read_per_clip(rb["_path"])
    only = sorted(set(a) ^ set(b))
    if only:
        raise ResultsError(f"the runs score different clips ({len(only)} in only one, e.g. {only[0]}); "
                           "complete both runs (`asva-bench run` resumes) and rescore")
    ids = sorted(a)
    if not ids:
        raise ResultsError(f"{ra['_path']}: no scored clips")
    if metric not in a[ids[0]]["metrics"]:
        raise ResultsError(f"{metric} has no per-clip values (FID and FVD are set-level metrics); "
                           f"choose one of {', '.join(sorted(a[ids[0]]['metrics']))}")
    va = np.array([a[i]["metrics"][metric] for i in ids])
    vb = np.array([b[i]["metrics"][metric] for i in ids])
    vid = np.unique([a[i]["video_id"] for i in ids], return_inverse=True)[1]
    mean, lo, hi = bootstrap_paired_difference(va, vb, vid, replicates)
    return {"metric": metric, "a": {"label": model_label(ra), "path": ra["_path"], "mean": float(va.mean())},
            "b": {"label": model_label(rb), "path": rb["_path"], "mean": float(vb.mean())},
            "difference": mean, "ci_low": lo, "ci_high": hi, "level": 0.95, "n_clips": len(ids),
            "n_videos": int(vid.max()) + 1, "replicates": replicates,
            "excludes_zero": bool(lo > 0 or hi < 0)}
