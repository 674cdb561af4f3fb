"""The leaderboard site in headless Chromium: loads clean, sorts, plays clips with audio, escapes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # helpers beside this file, whatever pytest's import mode
from browser_support import artifacts, browser, console_errors, play_video, screenshot, serve, wait_for  # noqa: F401
from fixture_runs import EVIL_NAME, EVIL_STRINGS, make_board, results_for, write_entry

from asva_bench.leaderboard.build import build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    inputs = make_board(root)
    out = root / "site"
    summary = build_site(list(inputs.values()), out, gallery_per_class=2, gallery_page_size=6, progress=False)
    return out, summary


def measured_board_page(summary):
    """The board of the measured entries (the published rows have paper boards of their own)."""
    return next(b["page"] for b in summary["boards"] if b["entries"])


def entry_page(summary, model):
    return next(e["page"] for b in summary["boards"] for e in b["entries"] if e["model"] == model)


def row_models(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#results tbody tr')].map(r => r.dataset.model)")


def test_board_loads_clean_and_sorts(browser, site, artifacts):
    out, summary = site
    board = out / measured_board_page(summary)
    browser.get(board.as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    assert console_errors(browser) == []
    models = row_models(browser)
    assert sorted(models) == sorted(["avsyncd", "avsyncd-lossless", "groundtruth", "i2vd", "static", EVIL_NAME])
    # banner names the incomplete and the mismatched entries, nobody else
    banner = browser.execute_script("return document.getElementById('warnings').innerText")
    assert "avsyncd-lossless" in banner and EVIL_NAME in banner and "coverage" in banner
    assert "fingerprint" in banner and "i2vd" not in banner
    # best ranked RelSync is avsyncd's (reference rows and warned rows do not compete)
    bold = browser.execute_script("""
        const col = [...document.querySelectorAll('#results thead th')].findIndex(th => th.dataset.key === 'relsync');
        return [...document.querySelectorAll('#results tbody tr')]
            .filter(r => r.cells[col].querySelector('b')).map(r => r.dataset.model)""")
    assert bold == ["avsyncd"]
    screenshot(browser, artifacts / "leaderboard.png", height=760)

    click = "document.querySelector(`#results thead th[data-key='${arguments[0]}'] button`).click()"
    values = lambda key: browser.execute_script("""
        const col = [...document.querySelectorAll('#results thead th')].findIndex(th => th.dataset.key === arguments[0]);
        return [...document.querySelectorAll('#results tbody tr')].map(r => r.cells[col].dataset.v)""", key)
    before = row_models(browser)
    browser.execute_script(click, "relsync")           # first click: best first (higher is better)
    relsync = [float(v) for v in values("relsync")]
    assert relsync == sorted(relsync, reverse=True)
    assert row_models(browser) != before
    assert row_models(browser)[0] == "groundtruth"     # 50.0
    browser.execute_script(click, "relsync")           # second click flips
    assert [float(v) for v in values("relsync")] == sorted(relsync)
    browser.execute_script(click, "fid")               # lower is better: ascending, missing last
    fid = values("fid")
    present = [float(v) for v in fid if v != ""]
    assert present == sorted(present) and fid[len(present):] == [""] * (len(fid) - len(present))
    assert browser.execute_script(
        "return document.querySelector(\"#results th[data-key='fid']\").getAttribute('aria-sort')") == "ascending"
    assert console_errors(browser) == []


def test_model_page_plays_clips_with_audio(browser, site, artifacts):
    out, summary = site
    browser.set_window_size(1200, 300)   # gallery far below the fold
    browser.get((out / entry_page(summary, "avsyncd")).as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    # nothing is fetched before the gallery is in view
    assert browser.execute_script("return document.querySelectorAll('#gallery video[src]').length") == 0
    browser.set_window_size(1200, 900)
    pages = browser.execute_script("return +document.getElementById('pager').dataset.pages")
    assert pages == 2  # 8 clips, 6 a page
    browser.execute_script("document.getElementById('gallery').scrollIntoView()")
    wait_for(browser, "return document.querySelectorAll('#gallery figure:not([hidden]) video[src]').length >= 2")
    fig = browser.execute_script("return document.querySelector('#gallery figure.clip:not([hidden])')")
    gt = fig.find_element("css selector", "video.gt")
    gen = fig.find_element("css selector", "video.gen")
    # same clip on both sides: media names hash the clip id
    assert gt.get_attribute("src").rsplit("/", 1)[1] == gen.get_attribute("src").rsplit("/", 1)[1]
    m = play_video(browser, gen)
    assert m.get("error") is None, m
    assert m["readyState"] >= 2 and abs(m["duration"] - 2.0) < 0.1, m
    assert m["t1"] > m["t0"] + 0.2 and not m["paused"], m
    assert m["audioBytes"] > 0 and m["videoBytes"] > 0, m
    browser.execute_script("arguments[0].pause(); arguments[0].currentTime = 0.9", gen)
    wait_for(browser, "return arguments[0].readyState >= 2 && !arguments[0].seeking", 5, gen)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.set_window_size(1200, 1250)
    wait_for(browser, "return [...document.querySelectorAll('#gallery figure:not([hidden]) video[src]')]"
                      ".every(v => v.readyState >= 2)")
    screenshot(browser, artifacts / "model.png", height=1250)
    # page 2 shows the rest and hides page 1
    browser.execute_script("document.querySelector('#pager button[data-page=\"1\"]').click()")
    visible = browser.execute_script(
        "return [...document.querySelectorAll('#gallery figure.clip')].filter(f => !f.hidden).map(f => +f.dataset.page)")
    assert visible == [1, 1]
    assert browser.execute_script("return location.hash") == "#page=2"
    # plot: one bar per class for the model and for the ground truth
    n = browser.execute_script("return document.querySelectorAll('#plot-relsync rect.bar.model').length")
    assert n == 4 and browser.execute_script(
        "return document.querySelectorAll('#plot-relsync rect.bar.gt').length") == 4
    assert console_errors(browser) == []


def test_site_works_behind_http_server(browser, site, serve):
    out, summary = site
    base = serve(out)
    browser.get(base + "index.html")
    wait_for(browser, "return document.readyState === 'complete'")
    browser.find_element("css selector", "#boards tr[data-board^='synth'] a").click()
    wait_for(browser, "return !!document.getElementById('results')")
    browser.find_element("css selector", "tr[data-model='avsyncd'] td.model a").click()
    wait_for(browser, "return !!document.getElementById('gallery')")
    browser.execute_script("document.getElementById('gallery').scrollIntoView()")
    wait_for(browser, "return document.querySelector('#gallery video.gen[src]')")
    m = play_video(browser, browser.find_element("css selector", "#gallery video.gen"))
    assert m.get("error") is None and m["t1"] > m["t0"] and m["audioBytes"] > 0, m
    assert console_errors(browser) == []


def test_hostile_strings_are_shown_not_run(browser, site):
    out, summary = site
    for page in (measured_board_page(summary), entry_page(summary, EVIL_NAME), "index.html"):
        browser.get((out / page).as_uri())
        wait_for(browser, "return document.readyState === 'complete'")
        state = browser.execute_script("""return {
            dialogs: window.__dialogs,
            scripts: [...document.scripts].map(s => s.getAttribute('src')),
            handlers: [...document.querySelectorAll('*')].filter(el =>
                [...el.attributes].some(a => a.name.startsWith('on'))).length,
            injected: document.querySelectorAll('img[src=x], svg[onload], b[onmouseover]').length,
            text: document.body.innerText}""")
        assert state["dialogs"] == [], page
        assert state["scripts"] == ["static/leaderboard.js"], page
        assert state["handlers"] == 0 and state["injected"] == 0, page
        assert console_errors(browser) == [], page       # the page policy would log a blocked script
        if page != "index.html":
            assert EVIL_NAME in state["text"], page
    # the model page shows every hostile string as text
    browser.get((out / entry_page(summary, EVIL_NAME)).as_uri())
    text = browser.execute_script("return document.body.innerText")
    for s in EVIL_STRINGS.values():
        assert s in text or json.dumps(s)[1:-1] in text, s  # nested values are shown as JSON
    assert browser.execute_script("return document.getElementById('model-name').firstChild.textContent.trim()") == EVIL_NAME
    assert browser.execute_script("return window.__dialogs") == []


def test_hundreds_of_entries_load_fast(browser, tmp_path):
    entries = tmp_path / "entries"
    for i in range(300):
        write_entry(entries, f"m{i:03d}", results_for("avsyncd", name=f"model-{i:03d}", scores={
            "ia": 30 + (i * 7919) % 1000 / 100, "relsync": 40 + (i * 104729) % 1000 / 100,
            "fvd": 300 + (i * 31) % 500, "alignsync": 20 + i % 50 / 10}))
    t = time.perf_counter()
    summary = build_site([entries], tmp_path / "site", progress=False)
    build_s = time.perf_counter() - t
    assert build_s < 20, build_s
    browser.get((tmp_path / "site" / measured_board_page(summary)).as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    timing = browser.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const t0 = performance.now();
        document.querySelector("#results th[data-key='relsync'] button").click();
        return {load: nav.loadEventEnd - nav.startTime, sort: performance.now() - t0,
                rows: document.querySelectorAll('#results tbody tr').length}""")
    assert timing["rows"] == 300
    print(f"300 entries: build {build_s:.2f} s, page load {timing['load']:.0f} ms, sort {timing['sort']:.1f} ms")
    assert timing["load"] < 3000 and timing["sort"] < 500, timing
    assert console_errors(browser) == []
