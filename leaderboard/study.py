"""User-study sheets and their tally (the paper's preference study).

``make_study`` builds one HTML sheet per rater. Each test example shows the
input image, plays the audio and shows the candidate videos side by side in
an order drawn per sheet and example, labelled only A, B, C...; media files
get opaque names. What the letters stand for is written to ``key.json``,
beside (never inside) the folder of sheets that raters receive. The rater
picks one video per question; answers live in the browser's localStorage
under the sheet id and leave it as a votes JSON file.

``tally`` checks vote files against the key (schema, sheet identity,
completeness, duplicates) and counts votes per model and question, with a
Wilson interval per share, a chi-square test against "no preference", a
binomial test of the top model against the runner-up, and inter-rater
agreement (Fleiss' kappa; Cohen's kappa when two raters rated the same
examples).

Output layout of ``make_study(out=DIR)``::

    DIR/key.json                 the mapping (keep it from raters)
    DIR/sheets/rater-01.html     one page per rater
    DIR/sheets/media/*.mp4|png|wav
    DIR/sheets/assets/           styles and script
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import uuid
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from asva_bench import runs

KEY_SCHEMA = "asva-bench/study-key/v1"
VOTES_SCHEMA = "asva-bench/study-votes/v1"
QUESTIONS = [
    {"id": "image_quality", "label": "Image quality",
     "prompt": "Which video has the best image quality?"},
    {"id": "frame_consistency", "label": "Frame consistency",
     "prompt": "Which video stays most consistent from frame to frame?"},
    {"id": "synchronization", "label": "Synchronization",
     "prompt": "Which video moves most in time with the audio?"},
]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HERE = Path(__file__).parent


class StudyError(ValueError):
    """Bad study input or votes; the message names the file and the fix."""


# --------------------------------------------------------------------------
# Runs and examples
# --------------------------------------------------------------------------
@dataclass
class StudyRun:
    label: str          # what the key calls it: the model name, made unique
    model: str
    path: Path
    clips: set[str]     # clip ids with a video file

    def video(self, clip_id: str) -> Path:
        return self.path / runs.clip_relpath(clip_id)


def read_run(path) -> tuple[str, set[str]]:
    """(model name, clip ids with a video file) of a run folder, through the run folder contract."""
    path = Path(path)
    try:
        if (path / runs.RESULTS_FILE).is_file():
            meta = runs.read_results_json(path)
        elif (path / runs.RUN_FILE).is_file():
            meta = runs.read_run_json(path)
        else:
            raise StudyError(f"{path}: not a run folder (no results.json or run.json); pass the "
                             "--out folder of `asva-bench run`")
    except runs.RunFolderError as e:
        raise StudyError(str(e)) from None
    model = meta.get("model", {}).get("name") if isinstance(meta.get("model"), dict) else None
    if not isinstance(model, str) or not model:
        raise StudyError(f"{path}: run manifest has no model.name")
    if not (path / runs.VIDEOS_DIR).is_dir():
        raise StudyError(f"{path}: has no videos/ folder; the run generated nothing")
    clips = runs.present_clips(path)
    if not clips:
        raise StudyError(f"{path / runs.VIDEOS_DIR}: no .mp4 clips")
    return model, clips


def load_runs(paths) -> list[StudyRun]:
    runs, used = [], Counter()
    for p in paths:
        model, clips = read_run(p)
        used[model] += 1
        label = model if used[model] == 1 else f"{model}#{used[model]}"
        runs.append(StudyRun(label, model, Path(p).resolve(), clips))
    return runs


def video_of(clip_id: str) -> str:
    return re.sub(r"_clip-\d+$", "", clip_id)


def _seeded(*parts) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def choose_examples(clip_sets: list[set[str]], n_examples: int | None, seed: int) -> tuple[list[str], dict]:
    """One clip per test video, from the clips every run has; returns (clip ids, exclusion facts)."""
    common = set.intersection(*clip_sets)
    union = set.union(*clip_sets)
    by_video = defaultdict(list)
    for c in sorted(common):
        by_video[video_of(c)].append(c)
    chosen = [clips[_seeded(seed, "clip", v) % len(clips)] for v, clips in sorted(by_video.items())]
    excluded = sorted(union - common)
    if n_examples is not None:
        if n_examples < 1:
            raise StudyError("--examples must be at least 1")
        if n_examples > len(chosen):
            raise StudyError(f"--examples {n_examples} asked, but the runs share clips of only "
                             f"{len(chosen)} test videos")
        chosen = sorted(chosen, key=lambda c: _seeded(seed, "pick", c))[:n_examples]
    return sorted(chosen), {"clips_not_in_every_run": excluded}


def assign(n_examples: int, raters: int, per_example: int) -> list[list[int]]:
    """Example indices per rater: each example to ``per_example`` distinct raters, loads within one.

    Example i goes to raters (i*k + j) mod n for j < k: consecutive residues are
    distinct when k <= n, and walking i*k around the circle spreads the load evenly.
    """
    if raters < 1:
        raise StudyError("--raters must be at least 1")
    if not 1 <= per_example <= raters:
        raise StudyError(f"each example can be rated by 1 to {raters} raters "
                         f"(--per-example {per_example} asked with --raters {raters})")
    sheets = [[] for _ in range(raters)]
    for i in range(n_examples):
        for j in range(per_example):
            sheets[(i * per_example + j) % raters].append(i)
    return sheets


# --------------------------------------------------------------------------
# Media for the sheets
# --------------------------------------------------------------------------
def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


def write_poster(video: Path, dst: Path) -> None:
    """A clip's first frame as PNG: what its player shows before it plays (preload is off, so without
    a poster a sheet of many clips would show black boxes)."""
    from PIL import Image
    from asva_bench.avio import VideoFrames

    Image.fromarray(VideoFrames(video).get([0])[0]).save(dst, format="PNG")


def write_input_media(video: Path, image_dst: Path, audio_dst: Path) -> None:
    """The input image (first frame of the source clip) as PNG and its audio as WAV."""
    from PIL import Image
    from asva_bench.avio import VideoFrames, read_audio

    frame = VideoFrames(video).get([0])[0]
    Image.fromarray(frame).save(image_dst, format="PNG")
    wav, sr = read_audio(video)  # priming samples already trimmed
    write_wav(audio_dst, wav.numpy(), sr)


# --------------------------------------------------------------------------
# Making a study
# --------------------------------------------------------------------------
def make_study(runs, raters: int, out, per_example: int | None = None, examples: int | None = None,
               seed: int = 0, groundtruth=None, progress: bool = True) -> dict:
    """Write rater sheets for ``runs`` (run folders) into ``out``; return a summary."""
    import jinja2
    from tqdm import tqdm

    out = Path(out)
    if len(runs) < 2:
        raise StudyError("a study compares at least 2 runs (--runs RUN_A RUN_B ...)")
    if len(runs) > len(LETTERS):
        raise StudyError(f"at most {len(LETTERS)} runs per study")
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out}: folder exists and is not empty; a new study needs a new --out "
                         "(an old key would no longer match its sheets)")
    study_runs = load_runs(runs)
    gt_run = load_runs([groundtruth])[0] if groundtruth else None
    per_example = min(2, raters) if per_example is None else per_example
    clip_sets = [r.clips for r in study_runs] + ([gt_run.clips] if gt_run else [])
    clip_ids, excluded = choose_examples(clip_sets, examples, seed)
    if not clip_ids:
        raise StudyError("the runs share no clip: they were made on different datasets or splits")
    loads = assign(len(clip_ids), raters, per_example)
    source = gt_run or study_runs[0]
    warnings = []
    if gt_run is None:
        warnings.append(f"input image taken from the first frame of {source.label}'s clips "
                        "(pass --groundtruth GT_RUN to use the real input frame)")
    if excluded["clips_not_in_every_run"]:
        n = len(excluded["clips_not_in_every_run"])
        warnings.append(f"{n} clips are not in every run and were left out, e.g. "
                        f"{excluded['clips_not_in_every_run'][0]}")

    salt = secrets.token_hex(16)
    study_id = hashlib.sha256(salt.encode()).hexdigest()[:12]
    opaque = lambda *parts: hashlib.sha256("\x1f".join((salt,) + parts).encode()).hexdigest()[:20]

    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    sheets_dir = tmp / "sheets"
    (sheets_dir / "media").mkdir(parents=True)
    try:
        # "assets", not "static": no word in the bundle may look like a model name
        (sheets_dir / "assets").mkdir()
        for name in ("leaderboard.css", "study.js"):
            shutil.copyfile(HERE / "static" / name, sheets_dir / "assets" / name)
        ex_ids = [f"ex-{i + 1:04d}" for i in range(len(clip_ids))]
        media = {}
        for ex, clip in tqdm(list(zip(ex_ids, clip_ids)), desc="study media", unit="example",
                             disable=not progress):
            img, aud = f"media/{opaque('image', clip)}.png", f"media/{opaque('audio', clip)}.wav"
            write_input_media(source.video(clip), sheets_dir / img, sheets_dir / aud)
            vids, posters = {}, {}
            for r in study_runs:
                rel = f"media/{opaque('video', r.label, clip)}.mp4"
                link_or_copy(r.video(clip), sheets_dir / rel)
                vids[r.label] = rel
                posters[r.label] = f"media/{opaque('poster', r.label, clip)}.png"
                write_poster(r.video(clip), sheets_dir / posters[r.label])
            media[ex] = {"image": img, "audio": aud, "videos": vids, "posters": posters}

        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                 autoescape=True, undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True)
        template = env.get_template("sheet.html.j2")
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        key_sheets, summary_sheets = {}, []
        for n, load in enumerate(loads, 1):
            rater = f"rater-{n:02d}"
            sheet_id = f"{study_id}-{rater}"
            order = sorted(load, key=lambda i: _seeded(salt, sheet_id, "order", i))  # per-sheet order
            items, mapping = [], {}
            for i in order:
                ex = ex_ids[i]
                labels = [r.label for r in study_runs]
                random.Random(_seeded(salt, sheet_id, ex)).shuffle(labels)
                letters = LETTERS[:len(labels)]
                mapping[ex] = dict(zip(letters, labels))
                items.append({"id": ex, "image": media[ex]["image"], "audio": media[ex]["audio"],
                              "candidates": [{"letter": L, "video": media[ex]["videos"][lab],
                                              "poster": media[ex]["posters"][lab]}
                                             for L, lab in zip(letters, labels)]})
            page = {"schema": VOTES_SCHEMA, "study_id": study_id, "sheet_id": sheet_id, "rater": rater,
                    "questions": QUESTIONS,
                    "examples": [{"id": it["id"], "letters": [c["letter"] for c in it["candidates"]]}
                                 for it in items]}
            html = template.render(sheet=page, items=items, questions=QUESTIONS, created=created)
            (sheets_dir / f"{rater}.html").write_text(html, encoding="utf-8")
            key_sheets[sheet_id] = {"rater": rater, "file": f"sheets/{rater}.html", "examples": mapping}
            summary_sheets.append({"sheet_id": sheet_id, "rater": rater,
                                   "file": str(out / "sheets" / f"{rater}.html"), "examples": len(items)})
        key = {
            "schema": KEY_SCHEMA, "study_id": study_id, "created": created, "seed": seed, "salt": salt,
            "questions": QUESTIONS, "ratings_per_example": per_example,
            "runs": {r.label: {"model": r.model, "path": str(r.path)} for r in study_runs},
            "input_source": {"label": source.label, "path": str(source.path)},
            "examples": {ex: {"clip_id": c, "video_id": video_of(c), "class": c.split("/")[0]}
                         for ex, c in zip(ex_ids, clip_ids)},
            "sheets": key_sheets, "warnings": warnings, "excluded": excluded,
        }
        (tmp / "key.json").write_text(json.dumps(key, indent=1), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"study_id": study_id, "out": str(out), "key": str(out / "key.json"),
            "sheets_dir": str(out / "sheets"), "sheets": summary_sheets, "examples": len(clip_ids),
            "ratings_per_example": per_example, "runs": [r.label for r in study_runs],
            "warnings": warnings}


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------
def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import binomtest
    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def chi_square_uniform(counts) -> tuple[float, float]:
    """Chi-square statistic and p-value of the counts against equal preference."""
    from scipy.stats import chisquare
    counts = np.asarray(counts, float)
    if counts.sum() == 0 or len(counts) < 2:
        return (float("nan"), float("nan"))
    res = chisquare(counts)
    return (float(res.statistic), float(res.pvalue))


def binomial_p(k: int, n: int) -> float:
    from scipy.stats import binomtest
    return float(binomtest(k, n, 0.5).pvalue) if n else float("nan")


def fleiss_kappa(table) -> float:
    """Fleiss' kappa of an items x categories count table, every item with the same number of ratings."""
    t = np.asarray(table, float)
    n_items = t.shape[0]
    m = t.sum(1)
    if n_items == 0 or not np.all(m == m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs at least one item and the same number (>= 2) "
                         "of ratings for every item")
    m = m[0]
    p_item = (np.square(t).sum(1) - m) / (m * (m - 1))
    p_cat = t.sum(0) / (n_items * m)
    p_bar, p_e = p_item.mean(), np.square(p_cat).sum()
    return float("nan") if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two raters' labels on the same items."""
    if len(a) != len(b) or not a:
        raise ValueError("Cohen's kappa needs two equally long, non-empty label lists")
    cats = sorted(set(a) | set(b))
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in cats) / (n * n)
    return float("nan") if p_e == 1 else (p_o - p_e) / (1 - p_e)


# --------------------------------------------------------------------------
# Reading votes
# --------------------------------------------------------------------------
def load_key(path) -> dict:
    path = Path(path)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: key file not found; it is DIR/key.json of `study make --out DIR`") from None
    except json.JSONDecodeError as e:
        raise StudyError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(key, dict) or key.get("schema") != KEY_SCHEMA:
        raise StudyError(f"{path}: not a study key (schema must be {KEY_SCHEMA}); pass the key.json "
                         "written by `study make`")
    for field in ("study_id", "sheets", "runs", "questions", "examples"):
        if field not in key:
            raise StudyError(f"{path}: key has no '{field}'; the file was edited or truncated")
    return key


def check_votes(path: Path, votes, key: dict) -> list[str]:
    """Problems of one votes file against the key; empty when it is usable."""
    if not isinstance(votes, dict):
        return ["top level must be a JSON object"]
    problems = []
    if votes.get("schema") != VOTES_SCHEMA:
        problems.append(f"schema is {json.dumps(votes.get('schema'))}, expected \"{VOTES_SCHEMA}\"")
    if votes.get("study_id") != key["study_id"]:
        return problems + [f"belongs to study {json.dumps(votes.get('study_id'))}, not to this key's "
                           f"study {key['study_id']}: pass the key.json of the study it came from"]
    sheet = key["sheets"].get(votes.get("sheet_id"))
    if sheet is None:
        return problems + [f"sheet_id {json.dumps(votes.get('sheet_id'))} is not a sheet of study "
                           f"{key['study_id']}"]
    if votes.get("rater") != sheet["rater"]:
        problems.append(f"rater {json.dumps(votes.get('rater'))} does not match the sheet's rater "
                        f"{sheet['rater']}")
    answers = votes.get("answers")
    if not isinstance(answers, list):
        return problems + ["'answers' must be a list of {example, question, choice} objects"]
    questions = [q["id"] for q in key["questions"]]
    seen = {}
    for i, a in enumerate(answers):
        if not isinstance(a, dict) or not all(isinstance(a.get(k), str) for k in ("example", "question", "choice")):
            problems.append(f"answers[{i}] must be an object with string example, question and choice")
            continue
        ex, q, c = a["example"], a["question"], a["choice"]
        if ex not in sheet["examples"]:
            problems.append(f"answers[{i}]: example {ex} is not on this sheet")
        elif q not in questions:
            problems.append(f"answers[{i}]: unknown question {q!r} (known: {', '.join(questions)})")
        elif c not in sheet["examples"][ex]:
            problems.append(f"answers[{i}]: choice {c!r} is not a video of example {ex} "
                            f"({', '.join(sheet['examples'][ex])})")
        elif (ex, q) in seen:
            problems.append(f"answers[{i}]: duplicate answer to {ex} / {q} (first at answers[{seen[(ex, q)]}])")
        else:
            seen[(ex, q)] = i
    missing = [(ex, q) for ex in sheet["examples"] for q in questions if (ex, q) not in seen]
    if missing:
        shown = ", ".join(f"{ex}/{q}" for ex, q in missing[:4]) + (" ..." if len(missing) > 4 else "")
        problems.append(f"incomplete: {len(missing)} of {len(sheet['examples']) * len(questions)} "
                        f"questions unanswered ({shown}); the rater must finish the sheet and export again")
    return problems


def load_votes(paths, key: dict, partial: bool = False) -> list[dict]:
    errors, loaded, by_sheet = [], [], {}
    for p in map(Path, paths):
        try:
            votes = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            errors.append(f"{p}: file not found")
            continue
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            errors.append(f"{p}: not valid JSON ({e}); export it again from the sheet")
            continue
        problems = check_votes(p, votes, key)
        if problems:
            errors.extend(f"{p}: {msg}" for msg in problems)
            continue
        sid = votes["sheet_id"]
        if sid in by_sheet:
            errors.append(f"{p}: sheet {sid} was already given as {by_sheet[sid]}; pass each sheet's "
                          "votes once")
            continue
        by_sheet[sid] = p
        loaded.append(votes)
    missing = sorted(set(key["sheets"]) - set(by_sheet))
    if missing and not partial and not errors:
        errors.append(f"no votes for {len(missing)} of {len(key['sheets'])} sheets "
                      f"({', '.join(key['sheets'][s]['rater'] for s in missing)}); pass every sheet's "
                      "file, or --partial to tally what is there")
    if errors:
        raise StudyError(f"{len(errors)} problems in the vote files:\n" + "\n".join(f"  - {e}" for e in errors))
    return loaded


# --------------------------------------------------------------------------
# Tally
# --------------------------------------------------------------------------
def _nan_to_none(x):
    return None if isinstance(x, float) and math.isnan(x) else x


def tally(key: dict, votes: list[dict]) -> dict:
    labels = list(key["runs"])
    questions = [q["id"] for q in key["questions"]]
    # choices[q][example] -> [(rater, label)]
    choices = {q: defaultdict(list) for q in questions}
    for v in votes:
        mapping = key["sheets"][v["sheet_id"]]["examples"]
        for a in v["answers"]:
            choices[a["question"]][a["example"]].append((v["rater"], mapping[a["example"]][a["choice"]]))
    k_per = int(key.get("ratings_per_example", 2))
    result = {"study_id": key["study_id"], "models": labels,
              "model_names": {lab: key["runs"][lab]["model"] for lab in labels},
              "questions": key["questions"],
              "sheets": {"total": len(key["sheets"]), "tallied": len(votes)},
              "examples": len(key["examples"]), "ratings_per_example": k_per,
              "votes": {}, "tests": {}, "agreement": {}}
    for q in questions:
        counts = Counter(lab for ex in choices[q].values() for _, lab in ex)
        n = sum(counts.values())
        rows = {}
        for lab in labels:
            lo, hi = wilson_interval(counts[lab], n)
            rows[lab] = {"votes": counts[lab], "share": counts[lab] / n if n else None,
                         "ci_low": _nan_to_none(lo), "ci_high": _nan_to_none(hi)}
        result["votes"][q] = rows
        chi2, p = chi_square_uniform([counts[lab] for lab in labels])
        ranked = sorted(labels, key=lambda lab: -counts[lab])
        top, second = ranked[0], ranked[1]
        result["tests"][q] = {"n": n, "chi2": _nan_to_none(chi2), "p_uniform": _nan_to_none(p),
                              "top": top, "runner_up": second,
                              "p_top_vs_runner_up": _nan_to_none(binomial_p(counts[top], counts[top] + counts[second]))}
        # agreement over examples with the full number of ratings
        full = {ex: r for ex, r in choices[q].items() if len(r) == k_per}
        agree = {"n_items": len(full), "fleiss_kappa": None, "cohen_kappa": None, "percent_agreement": None}
        if full and k_per >= 2:
            table = [[sum(1 for _, lab in r if lab == L) for L in labels] for r in full.values()]
            agree["fleiss_kappa"] = _nan_to_none(fleiss_kappa(table))
            pairs = [(a, b) for r in full.values() for i, (_, a) in enumerate(r) for (_, b) in r[i + 1:]]
            agree["percent_agreement"] = sum(a == b for a, b in pairs) / len(pairs)
            raters = {rater for r in full.values() for rater, _ in r}
            if len(raters) == 2 and k_per == 2:
                r1, r2 = sorted(raters)
                a = [dict(r)[r1] for r in full.values()]
                b = [dict(r)[r2] for r in full.values()]
                agree["cohen_kappa"] = _nan_to_none(cohen_kappa(a, b))
        result["agreement"][q] = agree
    return result


def format_tally(result: dict) -> str:
    """The paper-style vote table: votes per model per question, share and 95% Wilson interval."""
    qs = result["questions"]
    w = max(32, *(len(m) + 2 for m in result["models"]))
    col = 26
    lines = [f"study {result['study_id']}: {result['sheets']['tallied']} of {result['sheets']['total']} "
             f"sheets, {result['examples']} examples, {result['ratings_per_example']} ratings per example",
             "votes (share, 95% Wilson interval)",
             "model".ljust(w) + "".join(q["label"].ljust(col) for q in qs)]
    order = sorted(result["models"], key=lambda m: -sum(result["votes"][q["id"]][m]["votes"] for q in qs))
    for m in order:
        cells = []
        for q in qs:
            r = result["votes"][q["id"]][m]
            if r["share"] is None:
                cells.append("0".ljust(col))
                continue
            cells.append(f"{r['votes']} ({100 * r['share']:.0f}%, {100 * r['ci_low']:.0f}-{100 * r['ci_high']:.0f})".ljust(col))
        lines.append(m.ljust(w) + "".join(cells))
    fmt_p = lambda p: "n/a" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")
    fmt_k = lambda k: "n/a" if k is None else f"{k:.2f}"
    lines.append("")
    lines.append("paper style (" + " / ".join(q["label"].lower() for q in qs) + "): " + ", ".join(
        f"{m} " + "/".join(str(result["votes"][q["id"]][m]["votes"]) for q in qs) for m in order))
    lines.append("chi-square vs no preference, p".ljust(w) + "".join(
        fmt_p(result["tests"][q["id"]]["p_uniform"]).ljust(col) for q in qs))
    lines.append("top vs runner-up, p".ljust(w) + "".join(
        f"{fmt_p(result['tests'][q['id']]['p_top_vs_runner_up'])} ({result['tests'][q['id']]['top']})".ljust(col)
        for q in qs))
    lines.append("Fleiss' kappa".ljust(w) + "".join(
        f"{fmt_k(result['agreement'][q['id']]['fleiss_kappa'])} (n={result['agreement'][q['id']]['n_items']})".ljust(col)
        for q in qs))
    if any(result["agreement"][q["id"]]["cohen_kappa"] is not None for q in qs):
        lines.append("Cohen's kappa".ljust(w) + "".join(
            fmt_k(result["agreement"][q["id"]]["cohen_kappa"]).ljust(col) for q in qs))
    lines.append("agreement".ljust(w) + "".join(
        ("n/a" if result["agreement"][q["id"]]["percent_agreement"] is None
         else f"{100 * result['agreement'][q['id']]['percent_agreement']:.0f}%").ljust(col) for q in qs))
    return "\n".join(line.rstrip() for line in lines)
