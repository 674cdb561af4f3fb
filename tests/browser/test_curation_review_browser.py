"""The curation review pages in headless Chromium: escaped, sortable, playable, marks kept, exported, folded back."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # helpers beside this file, whatever pytest's import mode
from browser_support import artifacts, browser, console_errors, play_video, screenshot, wait_for  # noqa: F401

from asva_bench.cli import main as cli_main

HOSTILE = '<img src=x onerror=alert(1)> "q"&amp'


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    from asva_bench.datasets.synth.wild import make_synth_wild
    root = tmp_path_factory.mktemp("review")
    pool = make_synth_wild(root / "pool", seed=11, videos_per_class=8, defects_per_class=1, small_classes=0,
                           small_class_videos=0, classes=["dog_bark"], workers=1, progress=False)
    clean_like = sorted((pool / "videos" / "dog_bark").glob("*.mp4"))[0]
    shutil.copyfile(clean_like, pool / "videos" / "dog_bark" / f"{HOSTILE}.mp4")   # a file name that is markup
    cfg = root / "c.toml"
    cfg.write_text("[dataset]\nmin_class_examples = 1\n")
    out = root / "cur"
    assert cli_main(["curate", "--input", str(pool / "videos"), "--out", str(out), "--profile", "mini",
                     "--config", str(cfg)]) == 0
    return out


def rows(driver) -> list[dict]:
    return driver.execute_script("""return [...document.querySelectorAll('#items tbody tr.item')].map(tr => ({
        id: tr.getAttribute('data-item'), kind: tr.getAttribute('data-kind'),
        psync: tr.cells[9].getAttribute('data-v'), hidden: tr.hidden}))""")


def click_mark(driver, item_id: str, mark: str):
    label = driver.execute_script(
        "const i = [...document.querySelectorAll('#items input[type=radio]')].find(x => x.name === arguments[0] "
        "&& x.value === arguments[1]); const l = i.closest('label'); l.scrollIntoView({block: 'center'}); return l;",
        f"mark:{item_id}", mark)
    label.click()


def test_review_page_sort_play_mark_export_apply(browser, curated, artifacts, tmp_path):
    index = curated / "review" / "index.html"
    browser.get(index.as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    browser.find_element("link text", "dog_bark").click()
    wait_for(browser, "return document.querySelectorAll('#items tbody tr.item').length > 0")
    data = json.loads(browser.execute_script("return document.getElementById('review-data').textContent"))
    items = rows(browser)
    assert [r["id"] for r in items] == [it["id"] for it in data["items"]]
    assert {"kept", "dropped"} <= {r["kind"] for r in items}
    # the markup in a file name is shown as text, never run
    assert HOSTILE in browser.find_element("id", "items").text
    assert browser.execute_script("return window.__dialogs") == []
    assert not browser.find_elements("css selector", "#items img")

    # sortable: P_Sync ascending, then descending
    header = browser.find_element("css selector", "#items th[data-key='p_sync'] button")
    header.click()
    vals = [float(r["psync"]) for r in rows(browser)]
    assert vals == sorted(vals)
    header.click()
    vals = [float(r["psync"]) for r in rows(browser)]
    assert vals == sorted(vals, reverse=True)

    # playable: a kept span plays from its start
    kept = next(it for it in data["items"] if it["kind"] == "kept")
    video = browser.execute_script(
        "const tr = [...document.querySelectorAll('#items tr.item')].find(t => t.getAttribute('data-item') === "
        "arguments[0]); tr.scrollIntoView({block: 'center'}); return tr.querySelector('video');", kept["id"])
    got = play_video(browser, video)
    assert got.get("error") is None and got["readyState"] >= 2, got
    assert got["t0"] >= kept["start"] - 0.05 and got["t1"] > got["t0"], got
    assert got["audioBytes"] > 0

    # marks: reject a kept span, accept a dropped one; kept across a reload; filter; export
    dropped = next(it for it in data["items"] if it["kind"] == "dropped")
    click_mark(browser, kept["id"], "reject")
    click_mark(browser, dropped["id"], "accept")
    browser.refresh()
    wait_for(browser, "return document.querySelectorAll('#items input[type=radio]:checked').length === 2")
    assert browser.find_element("id", "progress").text == f"2 of {len(items)} marked"
    browser.execute_script("const s = document.getElementById('show'); s.value = 'unmarked';"
                           "s.dispatchEvent(new Event('change'))")
    assert sum(not r["hidden"] for r in rows(browser)) == len(items) - 2
    browser.execute_script("const s = document.getElementById('show'); s.value = 'all';"
                           "s.dispatchEvent(new Event('change'))")
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    screenshot(browser, artifacts / "curation-review.png", height=900)
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    browser.find_element("id", "export").click()
    target = folder / "review-dog-bark.json"
    deadline = time.monotonic() + 10
    marks = None
    while time.monotonic() < deadline:
        try:
            marks = json.loads(target.read_text())
            break
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    assert marks is not None, sorted(p.name for p in folder.iterdir())
    assert {(m["video"], m["mark"]) for m in marks["marks"]} == {(kept["video"], "reject"),
                                                                 (dropped["video"], "accept")}
    assert console_errors(browser) == []

    # folded back: the rejected example leaves the dataset, the accepted span's clips are kept
    out = tmp_path / "cur"
    shutil.copytree(curated, out)
    assert cli_main(["curate", "--apply-review", str(target), "--out", str(out)]) == 0
    examples = list(csv.DictReader(open(out / "manifest" / "examples.csv")))
    assert not any(e["video"] == kept["video"] and float(e["start"]) == kept["start"] and e["status"] == "kept"
                   for e in examples)
    clips = list(csv.DictReader(open(out / "manifest" / "clips.csv")))
    accepted = [c for c in clips if c["video"] == dropped["video"] and float(c["start"]) >= dropped["start"] - 1e-6
                and float(c["end"]) <= dropped["end"] + 1e-6]
    assert accepted and all(c["review"] == "accepted" for c in accepted)
    rejected = [c for c in clips if c["video"] == kept["video"] and float(c["start"]) < kept["end"]
                and float(c["end"]) > kept["start"]]
    assert rejected and all(c["review"] == "rejected" and c["status"] == "dropped" for c in rejected)
