"""Board usability in headless Chromium: the default rank, ties, reduced protocols, reported rows, posters."""

from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))   # helpers beside this file, whatever pytest's import mode
from browser_support import artifacts, browser, console_errors, screenshot, wait_for  # noqa: F401
from fixture_runs import fingerprint_of, make_runs, results_for, write_entry

from asva_bench.leaderboard.build import build_site
from asva_bench.leaderboard.study import make_study


def board_page(summary, dataset, profile, track):
    return next(b["page"] for b in summary["boards"]
                if (b["dataset"], b["profile"], b["track"]) == (dataset, profile, track))


def open_page(browser, path):
    browser.get(Path(path).as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    assert console_errors(browser) == []


ROWS = """return [...document.querySelectorAll('#results tbody.measured tr')].map(r => ({
    model: r.dataset.model, rank: r.cells[0].innerText.trim(), tie: r.cells[0].classList.contains('tie'),
    tags: [...r.cells[1].querySelectorAll('.tag')].filter(t => t.offsetParent !== null).map(t => t.innerText),
    bold: [...r.querySelectorAll('td b')].map(b => b.innerText),
    weight: [...r.querySelectorAll('td.best b')].map(b => getComputedStyle(b).fontWeight)}))"""


def paper_run(model, scores, config=None, limit=None):
    d = results_for(model, scores=scores)
    d["profile"] = "paper"
    d["protocol"] = {**d["protocol"], "track": "asva-reference"}  # the paper profile's default track
    d["dataset"]["name"] = "avsync15"
    d["dataset"]["limit"] = limit
    d["model"]["config"] = dict(config or {})
    d["fingerprint"] = fingerprint_of(d)
    return d


def test_default_rank_is_the_primary_sync_metric_and_ties_look_alike(browser, tmp_path, artifacts):
    entries = tmp_path / "entries"
    # alignsync 22.621 and 22.624 both show as 22.62: a tie, the same rank and the same bold style
    write_entry(entries, "a", results_for("avsyncd", name="model-a", scores={"alignsync": 22.621, "relsync": 45.0}))
    write_entry(entries, "b", results_for("avsyncd", name="model-b", scores={"alignsync": 22.624, "relsync": 44.0}))
    write_entry(entries, "c", results_for("avsyncd", name="model-c", scores={"alignsync": 23.5, "relsync": 43.0}))
    write_entry(entries, "d", results_for("avsyncd", name="model-d", scores={"alignsync": 20.0, "relsync": 46.0}))
    summary = build_site([entries], tmp_path / "site", progress=False)
    open_page(browser, tmp_path / "site" / board_page(summary, "synth", "mini", "corrected"))
    assert "Ranked by AlignSync" in browser.find_element("id", "rank-rule").text
    rows = browser.execute_script(ROWS)
    assert [(r["model"], r["rank"]) for r in rows] == [
        ("model-c", "1"), ("model-a", "2="), ("model-b", "2="), ("model-d", "4")]
    assert [r["tie"] for r in rows] == [False, True, True, False]
    # RelSync: model-d is best alone; AlignSync: model-c
    by = {r["model"]: r for r in rows}
    assert "46.00" in by["model-d"]["bold"] and "23.50" in by["model-c"]["bold"]
    assert "22.62" not in by["model-a"]["bold"]
    screenshot(browser, artifacts / "board-ranks.png", height=500)
    # a tie on the best value: both bold, same computed weight
    write_entry(entries, "c", results_for("avsyncd", name="model-c", scores={"alignsync": 22.622, "relsync": 43.0}))
    summary = build_site([entries], tmp_path / "site", progress=False)
    open_page(browser, tmp_path / "site" / board_page(summary, "synth", "mini", "corrected"))
    rows = {r["model"]: r for r in browser.execute_script(ROWS)}
    assert {m: r["rank"] for m, r in rows.items()} == {"model-a": "1=", "model-b": "1=", "model-c": "1=",
                                                       "model-d": "4"}
    assert all("22.62" in rows[m]["bold"] for m in ("model-a", "model-b", "model-c"))
    weights = {w for m in ("model-a", "model-b", "model-c") for w in rows[m]["weight"]}
    assert len(weights) == 1 and int(next(iter(weights))) >= 600


def test_reduced_protocol_is_tagged_on_every_row_it_applies_to(browser, tmp_path):
    entries = tmp_path / "entries"
    for model in ("groundtruth", "avsyncd", "i2vd"):
        d = results_for(model)
        if model != "i2vd":
            d["dataset"]["limit"] = 2
            d["fingerprint"] = fingerprint_of(d)
        write_entry(entries, model, d)
    summary = build_site([entries], tmp_path / "site", progress=False)
    open_page(browser, tmp_path / "site" / board_page(summary, "synth", "mini", "corrected"))
    tags = {r["model"]: r["tags"] for r in browser.execute_script(ROWS)}
    assert "reduced: --limit 2" in tags["groundtruth"] and "reduced: --limit 2" in tags["avsyncd"]
    assert not any("reduced" in t for t in tags["i2vd"])


def test_reported_rows_sit_apart_on_the_paper_board_and_measured_rows_show_the_difference(browser, tmp_path,
                                                                                           artifacts):
    entries = tmp_path / "entries"
    write_entry(entries, "mini-avsyncd", results_for("avsyncd"))      # a mini run: the mini board only
    write_entry(entries, "gt", paper_run("groundtruth", {"alignsync": 25.0, "relsync": 50.0}))
    write_entry(entries, "av4", paper_run("avsyncd", {"alignsync": 22.5, "relsync": 45.0, "fvd": 360.0},
                                          config={"eta": 4.0}))
    summary = build_site([entries], tmp_path / "site", progress=False)
    tracks = {(b["dataset"], b["profile"], b["track"]) for b in summary["boards"]}
    assert tracks >= {("synth", "mini", "corrected"), ("avsync15", "paper", "asva-reference"),
                      ("landscapes", "paper", "asva-reference"), ("thegreatesthits", "paper", "asva-reference")}
    mini = next(b for b in summary["boards"] if b["profile"] == "mini")
    assert mini["reported"] == [] and [e["model"] for e in mini["entries"]] == ["avsyncd"]

    open_page(browser, tmp_path / "site" / board_page(summary, "avsync15", "paper", "asva-reference"))
    info = browser.execute_script("""
        const rep = document.getElementById('reported');
        const rows = [...rep.querySelectorAll('tr.reported')];
        return {visible: rep.offsetParent !== null, n: rows.length,
                models: rows.map(r => r.dataset.model),
                ranks: rows.map(r => r.cells[0].innerText.trim()),
                tags: rows.map(r => r.querySelector('.tag.reported').innerText),
                bold: rep.querySelectorAll('b').length,
                measuredAfter: [...document.querySelectorAll('#results tbody')].map(b => b.className),
                bg: [getComputedStyle(rows[0].cells[2]).backgroundColor,
                     getComputedStyle(document.querySelector('tbody.measured tr').cells[2]).backgroundColor]}""")
    assert info["visible"] and info["n"] == 12 + 3
    assert "AVSyncD (eta=4)" in info["models"] and "AVSyncD release checkpoint-37000 (eta=4)" in info["models"]
    assert set(info["ranks"]) == {"\u2013"} and info["bold"] == 0      # never ranked, never 'best'
    assert info["measuredAfter"] == ["measured", "reported"] and info["bg"][0] != info["bg"][1]
    assert all(t.startswith("reported") for t in info["tags"])
    # the measured AVSyncD eta=4 (no released checkpoint given) is compared with Table 1a: 45.00 - 45.52
    delta = browser.execute_script("""
        const col = [...document.querySelectorAll('#results thead th')].findIndex(th => th.dataset.key === 'relsync');
        const row = document.querySelector("tbody.measured tr[data-model='avsyncd']");
        return row.cells[col].querySelector('.delta').innerText""")
    assert delta == "-0.52 vs reported 45.52"
    # sorting keeps the reported rows in their own section
    browser.execute_script("document.querySelector(\"#results th[data-key='relsync'] button\").click()")
    sections = browser.execute_script(
        "return [...document.querySelectorAll('#results tbody')].map(b => [...b.rows].filter("
        "r => !r.classList.contains('section')).map(r => r.className.split(' ')[0]))")
    assert set(sections[0]) == {"measured"} and set(sections[1]) == {"reported"}
    assert "Reported user study" in browser.find_element("tag name", "main").text
    screenshot(browser, artifacts / "board-reported.png", height=900)
    # the index lists the boards by dataset and track
    open_page(browser, tmp_path / "site" / "index.html")
    listed = browser.execute_script(
        "return [...document.querySelectorAll('#boards tbody tr')].map(r => [...r.cells].slice(0, 5).map(c => c.innerText))")
    assert ["avsync15", "paper", "asva-reference", "2", "15"] in listed
    assert ["synth", "mini", "corrected", "1", "0"] in listed


def test_study_videos_show_a_poster_frame_before_playing(browser, tmp_path, artifacts):
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "study"
    make_study([runs["static"], runs["avsyncd"]], raters=1, out=out, groundtruth=runs["groundtruth"],
               progress=False)
    open_page(browser, out / "sheets" / "rater-01.html")
    state = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const vids = [...document.querySelectorAll('video')];
        Promise.all(vids.map(v => { const i = new Image(); i.src = v.poster; return i.decode().then(() => i.naturalWidth); }))
          .then(widths => done({n: vids.length, widths: widths, preload: vids.map(v => v.getAttribute('preload')),
                                posters: vids.map(v => v.getAttribute('poster'))}))
          .catch(e => done({error: String(e)}));""")
    assert "error" not in state, state
    assert state["n"] > 0 and all(w == 64 for w in state["widths"])       # the clips' own 64x64 frame
    # players load a clip only when it scrolls into view, so the poster is what a rater sees first
    assert len(set(state["posters"])) == state["n"]
    screenshot(browser, artifacts / "study-posters.png", height=700)
