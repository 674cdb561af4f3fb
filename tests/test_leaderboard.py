"""Leaderboard: results validation, site building, escaping, CLI (no browser; see tests/browser/)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))
from fixture_runs import EVIL_NAME, clip_ids, fingerprint_of, make_board, results_for, write_entry  # noqa: E402

from asva_bench.leaderboard import validate as V  # noqa: E402
from asva_bench.leaderboard.build import (SITE_MARKER, SiteError, build_site, format_value,  # noqa: E402
                                          metric_order, plot_context)
from asva_bench.leaderboard.cli import main as cli_main  # noqa: E402
from asva_bench.protocol import MINI  # noqa: E402


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    return root, make_board(root)


@pytest.fixture(scope="module")
def site(board):
    root, inputs = board
    out = root / "site"
    return out, build_site(list(inputs.values()), out, progress=False)


def entry(summary, model):
    return next(e for b in summary["boards"] for e in b["entries"] if e["model"] == model)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
def test_fixture_results_are_valid(board):
    _, inputs = board
    for name in ("groundtruth", "static", "avsyncd", "i2vd"):
        rf = V.load_entry(inputs[name] / "results.json" if inputs[name].is_dir() else inputs[name])
        assert rf.problems == [], (name, rf.problems)


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.pop("schema"), "schema"),
    (lambda d: d["model"].pop("name"), "model.name"),
    (lambda d: d["metrics"].__setitem__("ia", None), "metrics.ia"),
    (lambda d: d["metrics"]["ia"].__setitem__("ci_low", 99.0), "metrics.ia"),
    (lambda d: d["metrics"]["ia"].__setitem__("mean", float("nan")), "metrics.ia.mean"),
    (lambda d: d["metrics"]["ia"].__setitem__("higher_is_better", "yes"), "metrics.ia.higher_is_better"),
    (lambda d: d.__setitem__("fingerprint", "XYZ"), "fingerprint"),
    (lambda d: d["clips"].__setitem__("scored", -1), "clips.scored"),
    (lambda d: d.__setitem__("metrics", {}), "metrics"),
    (lambda d: d["per_class"].__setitem__("dog_barking", {"ia": "high"}), "per_class.dog_barking"),
    (lambda d: d.__setitem__("notes", "x" * 5000), "notes"),
])
def test_schema_problems_name_the_field(mutate, where):
    d = results_for("avsyncd")
    mutate(d)
    problems = V.check_schema(d)
    assert [p.where for p in problems] == [where], problems
    assert all(p.kind == "schema" for p in problems)


def test_coverage_problems():
    d = results_for("avsyncd")
    n = d["clips"]["expected"]
    assert V.check_coverage(d) == []
    d["clips"].update(scored=n - 2, failed=2, failed_ids=["a/b_clip-00", "a/c_clip-01"])
    d["metrics"]["ia"]["n_clips"] = n - 3
    msgs = [p.message for p in V.check_coverage(d)]
    assert msgs == [f"{n - 2} of {n} clips scored (2 missing) (a/b_clip-00, a/c_clip-01)",
                    f"computed on {n - 3} of {n - 2} scored clips"]
    d["clips"]["failed"] = 3            # failures beyond the missing clips are reported on their own
    assert [p.where for p in V.check_coverage(d)] == ["clips.scored", "clips.failed", "metrics.ia.n_clips"]
    d = results_for("avsyncd")
    rows = [{"clip_id": c} for c, _ in clip_ids()]
    assert V.check_coverage(d, rows) == []
    problems = V.check_coverage(d, rows[:-1] + [rows[0]])
    assert [p.where for p in problems] == ["scores.jsonl", "scores.jsonl"]
    assert "duplicate clip ids" in problems[0].message


def test_protocol_block_is_checked_against_the_published_protocol():
    d = results_for("avsyncd")
    assert V.check_protocol(d) == []
    d["protocol"]["height"] = 128                       # edited, stale fingerprint
    msgs = [p.message for p in V.check_protocol(d)]
    assert len(msgs) == 2 and "edited by hand" in msgs[0] and "['height']" in msgs[1]
    d["protocol"]["fingerprint"] = MINI.replace(height=128).fingerprint()   # consistent, but not published
    msgs = [p.message for p in V.check_protocol(d)]
    assert len(msgs) == 1 and "differs from the published 'mini-64' protocol in ['height']" in msgs[0]


def test_fingerprint_is_recomputed_like_the_scoring_stage():
    d = results_for("avsyncd")
    # fixture_runs.fingerprint_of hashes the same inputs with hashlib directly
    assert V.expected_fingerprint(d) == fingerprint_of(d) == d["fingerprint"]
    assert V.check_fingerprint_inputs(d) == []
    d["encoding"]["lossless"] = True                  # edited after scoring
    (p,) = V.check_fingerprint_inputs(d)
    assert p.kind == "fingerprint" and "edited" in p.message and fingerprint_of(d) in p.message
    d = results_for("avsyncd")
    d["dataset_changed"] = True
    assert [p.where for p in V.check_fingerprint_inputs(d)] == ["dataset_changed"]


def test_frechet_metrics_need_no_clip_count():
    d = results_for("avsyncd")
    assert "n_clips" not in d["metrics"]["fid"] and d["metrics"]["fid"]["n_videos"] == 8
    assert V.check_schema(d) == [] and V.check_coverage(d) == []
    d["metrics"]["fid"].update(mean=13.0, ci_low=13.5, ci_high=14.0)  # bootstrap beside the estimate: allowed
    assert V.check_schema(d) == []
    d["metrics"]["fid"]["n_videos"] = -1
    assert [p.where for p in V.check_schema(d)] == ["metrics.fid.n_videos"]


def test_fingerprint_mismatch_names_the_differing_inputs(tmp_path):
    ref = write_entry(tmp_path / "entries", "groundtruth", results_for("groundtruth"))
    other = results_for("avsyncd")
    other["backbones"]["mini-sync"] = "c" * 64
    other["fingerprint"] = fingerprint_of(other)
    path = write_entry(tmp_path, "sub", other)
    report = V.validate_submission(path, entries_dir=tmp_path / "entries")
    assert not report.ok and report.reference == str(ref)
    assert [p.kind for p in report.problems] == ["fingerprint"]
    assert "differs in backbones" in report.problems[0].message
    good = write_entry(tmp_path, "good", results_for("avsyncd"))
    assert V.validate_submission(good, entries_dir=tmp_path / "entries").ok


def test_board_reference_prefers_groundtruth_then_majority(tmp_path):
    files = []
    for name, fp in [("a", "1" * 16), ("b", "2" * 16), ("c", "2" * 16)]:
        d = results_for("avsyncd", name=name)
        d["fingerprint"] = fp
        files.append(V.read_results(write_entry(tmp_path, name, d)))
    assert V.board_reference(files).model == "b"
    gt = results_for("groundtruth")
    gt["fingerprint"] = "1" * 16
    files.append(V.read_results(write_entry(tmp_path, "gt", gt)))
    assert V.board_reference(files).model == "groundtruth"


def test_validate_cli_json(tmp_path, capsys):
    good = write_entry(tmp_path, "good", results_for("avsyncd"))
    bad_d = results_for("i2vd")  # another model: one label per board (tests/test_rough_edges.py)
    bad_d["clips"]["scored"] -= 1
    bad = write_entry(tmp_path, "bad", bad_d)
    empty = tmp_path / "no-entries"
    empty.mkdir()
    assert cli_main(["leaderboard", "validate", str(good), "--entries", str(empty), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["files"][0]["problems"] == []
    assert cli_main(["leaderboard", "validate", str(good), str(bad), "--entries", str(empty), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [f["ok"] for f in out["files"]] == [True, False]
    assert out["files"][1]["problems"][0]["kind"] == "coverage"
    (tmp_path / "junk.json").write_text("{not json")
    assert cli_main(["leaderboard", "validate", str(tmp_path / "junk.json"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert not out["ok"] and "junk.json: not valid JSON" in out["error"]


# --------------------------------------------------------------------------
# site
# --------------------------------------------------------------------------
def measured_board(summary):
    """The board of the measured (synth, mini) entries; the reported rows have paper boards of their own."""
    return next(b for b in summary["boards"] if b["entries"])


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src", "data-src") and v:
                self.links.append(v)
        self.scripts += tag == "script"


def test_site_is_self_contained_with_relative_links(site):
    out, summary = site
    pages = sorted(out.glob("*.html"))
    # index, the measured board, one page per entry, and the three paper boards of the reported rows
    assert len(pages) == 1 + 1 + 6 + 3
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text())
        for link in parser.links:
            u = urlparse(link)
            if u.scheme == "data":
                continue
            assert not u.scheme and not u.netloc and not link.startswith("/"), (page.name, link)
            target = out / unquote(u.path) if u.path else page
            assert target.exists(), (page.name, link)
    for f in list(out.rglob("*.html")) + list(out.rglob("*.css")) + list(out.rglob("*.js")):
        assert not re.search(r"(https?:)?//[a-z0-9]", f.read_text().replace("http://www.w3.org/2000/svg", "")), f
    assert (out / SITE_MARKER).exists() and json.loads((out / "site.json").read_text())["boards"]


def test_gallery_clips_are_the_run_files(board, site):
    root, inputs = board
    out, summary = site
    page = (out / entry(summary, "avsyncd")["page"]).read_text()
    srcs = re.findall(r'data-src="([^"]+)"', page)
    assert len(srcs) == 16                        # 8 clips (2 per class), ground truth + generated
    gen = [s for s in srcs if "/avsyncd-" in s]
    clip = clip_ids()[0][0]
    name = hashlib.sha256(clip.encode()).hexdigest()[:16] + ".mp4"
    assert any(s.endswith(name) for s in gen)
    placed = out / next(s for s in gen if s.endswith(name))
    assert placed.read_bytes() == (inputs["avsyncd"] / "videos" / f"{clip}.mp4").read_bytes()
    assert 'preload="none"' in page


def test_board_ranks_only_comparable_complete_entries(site):
    out, summary = site
    assert entry(summary, "avsyncd")["ranked"] and entry(summary, "i2vd")["ranked"]
    assert not entry(summary, "static")["ranked"] and entry(summary, "static")["reference"]
    assert [p["kind"] for p in entry(summary, "avsyncd-lossless")["problems"]] == ["fingerprint"]
    assert {p["kind"] for p in entry(summary, EVIL_NAME)["problems"]} == {"coverage"}
    html = (out / measured_board(summary)["page"]).read_text()
    # bold marks the best ranked mean per column: avsyncd (11.70 FID, 45.52 RelSync) not the lossless run
    assert "<b>11.70</b>" in html and "<b>45.52</b>" in html and "<b>10.00</b>" not in html
    assert len(re.findall(r"<td[^>]*><b>", html)) == 6      # one best per metric column
    assert measured_board(summary)["fingerprint"] == entry(summary, "groundtruth")["fingerprint"]


def test_hostile_strings_are_escaped_in_the_html(site):
    out, summary = site
    for page in out.glob("*.html"):
        text = page.read_text()
        parser = _Links()
        parser.feed(text)
        assert parser.scripts == 1, page.name         # only our own script tag
        assert "<script>alert" not in text and "onerror=alert(2)>" not in text.replace("&gt;", "")
        assert not re.search(r"<(img|svg|b)\s+on", text), page.name
    evil = (out / entry(summary, EVIL_NAME)["page"]).read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil
    assert re.fullmatch(r"run-script-alert-1-script-synth-mini-[0-9a-f]{8}\.html", entry(summary, EVIL_NAME)["page"])


def test_build_refuses_bad_input_and_foreign_folders(tmp_path, board):
    root, inputs = board
    broken = results_for("avsyncd")
    del broken["metrics"]
    path = write_entry(tmp_path / "in", "broken", broken)
    with pytest.raises(V.ResultsError, match=r"broken\.json:\n  - metrics: missing"):
        build_site([path], tmp_path / "s1", progress=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(SiteError, match="not a leaderboard site"):
        build_site([inputs["i2vd"]], foreign, progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    # an older site is replaced as a whole
    site = tmp_path / "site"
    build_site([inputs["i2vd"], inputs["static"]], site, progress=False)
    build_site([inputs["i2vd"]], site, progress=False)
    assert len(list(site.glob("run-*.html"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp folders left


def test_unsafe_clip_ids_are_refused(tmp_path):
    d = results_for("avsyncd")
    path = write_entry(tmp_path, "x", d, scores=[{"clip_id": "../../etc/passwd", "class": "a"}])
    with pytest.raises(V.ResultsError, match="not a relative path"):
        build_site([path], tmp_path / "site", progress=False)


def test_build_cli_json(board, tmp_path, capsys):
    root, inputs = board
    rc = cli_main(["leaderboard", "build", str(inputs["static"]), str(inputs["avsyncd"]),
                   "--out", str(tmp_path / "site"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)          # exactly one JSON object on stdout
    assert out["ok"] and [e["model"] for e in measured_board(out)["entries"]] == ["avsyncd", "static"]
    assert out["clips"] == 16


# --------------------------------------------------------------------------
# golden values of the formatting and plot geometry
# --------------------------------------------------------------------------
def test_format_value_and_metric_order():
    assert [format_value(v) for v in (38.364, 1220.44, 0.5, -3.0, None)] == ["38.36", "1220.4", "0.50", "-3.00", "\u2013"]
    assert metric_order({"relsync", "zeta", "fid", "ia", "alpha"}) == ["fid", "ia", "relsync", "alpha", "zeta"]


def test_plot_geometry():
    p = plot_context(["a", "b"], {"a": 50.0, "b": 25.0}, {"a": 40.0})
    # 420 px of bar for the largest value (50), starting after the 170 px label column
    a_model, a_gt = p["rows"][0]["bars"]
    assert (a_model["x"], a_model["w"]) == (170.0, 420.0)
    assert (a_gt["x"], a_gt["w"]) == (170.0, 336.0)
    assert p["rows"][1]["bars"][0]["w"] == 210.0 and len(p["rows"][1]["bars"]) == 1
    assert p["height"] == 2 * 8 + 2 * 26 and p["axis_x"] == 170.0
    neg = plot_context(["a"], {"a": -10.0}, None)["rows"][0]["bars"][0]
    assert (neg["x"], neg["w"]) == (170.0, 420.0)     # bar from -10 up to the zero axis at the right
