"""Results files -> pandas tables (CSV, Markdown, LaTeX in the paper's Table 1 style)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .metrics import METRIC_ORDER, METRICS

LABELS = {"fid": "FID", "fvd": "FVD", "ia": "IA", "it": "IT", "relsync": "RelSync", "alignsync": "AlignSync"}
REFERENCE_MODELS = ("groundtruth", "static")  # reference rows: shown, never ranked (as on the site)


class ResultsError(ValueError):
    pass


def load_results(path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise ResultsError(f"{p}: no results file; score the run with `asva-bench score {p.parent}`")
    r = json.loads(p.read_text())
    if r.get("schema") != "asva-bench/results/v1":
        raise ResultsError(f"{p}: schema {r.get('schema')!r} is not asva-bench/results/v1")
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
    return r["model"]["name"] + (f" ({args})" if args else "")


def to_frame(results: list[dict], allow_mixed: bool = False) -> pd.DataFrame:
    """One row per run: mean, ci_low, ci_high per metric, plus identity columns."""
    fps = sorted({r["fingerprint"] for r in results})
    if len(fps) > 1 and not allow_mixed:
        detail = "; ".join(f"{model_label(r)}: {r['fingerprint']} ({r['profile']}, "
                           f"{r['dataset']['name']}, protocol {r['protocol']['fingerprint']})" for r in results)
        raise ResultsError("runs with different fingerprints cannot be ranked in one table "
                           f"({detail}); pass --allow-mixed to show them together, marked")
    majority = pd.Series([r["fingerprint"] for r in results]).mode()[0]
    rows = []
    for r in results:
        row = {"model": model_label(r), "fingerprint": r["fingerprint"],
               "mismatched": r["fingerprint"] != majority,
               "coverage": r.get("coverage", 1.0), "profile": r["profile"],
               "dataset": r["dataset"]["name"], "path": r.get("_path")}
        for m, s in r["metrics"].items():
            row[m] = s["mean"]
            row[f"{m}_ci_low"] = s["ci_low"]
            row[f"{m}_ci_high"] = s["ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)


def _best(df: pd.DataFrame, metric: str):
    ranked = df[~df["model"].isin(REFERENCE_MODELS) & df[metric].notna()]
    if ranked.empty:
        return None
    hib = METRICS.get(metric).higher_is_better
    return ranked[metric].idxmax() if hib else ranked[metric].idxmin()


def formatted(df: pd.DataFrame, latex: bool = False) -> pd.DataFrame:
    """Display table: 'mean [lo, hi]', best per column in bold, marks for caveats."""
    metrics = [m for m in METRIC_ORDER if m in df.columns]
    out = pd.DataFrame({"Model": df["model"]})
    for m in metrics:
        best = _best(df, m)
        arrow = "\u2191" if METRICS.get(m).higher_is_better else "\u2193"
        if latex:
            arrow = "$\\uparrow$" if METRICS.get(m).higher_is_better else "$\\downarrow$"
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
        out[f"{LABELS[m]} {arrow}"] = col
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
