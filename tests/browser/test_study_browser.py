"""A 2-rater study in headless Chromium: answered by clicking, kept across a reload, exported, tallied."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # helpers beside this file, whatever pytest's import mode
from browser_support import artifacts, browser, console_errors, screenshot, wait_for  # noqa: F401
from fixture_runs import make_runs

from asva_bench.leaderboard.cli import main as cli_main
from asva_bench.leaderboard.study import make_study

QUESTIONS = ["image_quality", "frame_consistency", "synchronization"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    runs = make_runs(root / "runs")
    out = root / "study"
    summary = make_study([runs["static"], runs["avsyncd"]], raters=2, out=out,
                         groundtruth=runs["groundtruth"], progress=False)
    return out, summary, json.loads((out / "key.json").read_text())


def click_answers(driver, mapping: dict, policy: dict, examples):
    """Click, as a rater would, the label of the letter that stands for policy[question]."""
    for ex in examples:
        for q in QUESTIONS:
            letter = next(L for L, label in mapping[ex].items() if label == policy[q])
            label = driver.execute_script(
                "const l = document.querySelector(`input[name='${arguments[0]}'][value='${arguments[1]}']`)"
                ".closest('label'); l.scrollIntoView({block: 'center'}); return l;", f"{ex}:{q}", letter)
            label.click()   # a real click on the label, as a rater would


def export_votes(driver, folder: Path, sheet_id: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    driver.execute_script("window.scrollTo(0, 0)")
    driver.find_element("id", "export").click()
    target = folder / f"votes-{sheet_id}.json"
    deadline = time.monotonic() + 10
    # Chromium can show the file before its bytes are flushed: wait until it parses
    while time.monotonic() < deadline:
        try:
            return json.loads(target.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    assert target.exists(), sorted(p.name for p in folder.iterdir())
    return json.loads(target.read_text())


def answered(driver) -> int:
    return driver.execute_script("return document.querySelectorAll('input[type=radio]:checked').length")


def test_two_raters_answer_export_and_tally(browser, study, artifacts, tmp_path, capsys):
    out, summary, key = study
    assert [s["examples"] for s in summary["sheets"]] == [8, 8]   # 2 raters, 2 ratings per example
    policies = {  # rater -> model picked per question
        "rater-01": dict.fromkeys(QUESTIONS, "avsyncd"),
        "rater-02": {"image_quality": "avsyncd", "frame_consistency": "static", "synchronization": "avsyncd"},
    }
    vote_files = []
    for sheet_id, sheet in key["sheets"].items():
        page = (out / sheet["file"]).as_uri()
        mapping = sheet["examples"]
        examples = list(mapping)
        browser.get(page)
        wait_for(browser, "return document.readyState === 'complete'")
        assert "avsyncd" not in browser.page_source and "static" not in browser.page_source
        # input image shown, audio plays, the candidate videos play with it
        wait_for(browser, "return document.querySelector('.example img').naturalWidth === 64")
        browser.execute_script("document.querySelector('.example button.play-all').click()")
        wait_for(browser, """const s = document.querySelector('.example');
            return s.querySelector('audio').currentTime > 0.2 &&
                   [...s.querySelectorAll('video')].every(v => v.currentTime > 0.2)""")
        assert abs(browser.execute_script("return document.querySelector('.example audio').duration") - 2.0) < 0.05

        half = len(examples) // 2
        click_answers(browser, mapping, policies[sheet["rater"]], examples[:half])
        assert answered(browser) == half * 3
        browser.refresh()
        wait_for(browser, "return document.readyState === 'complete'")
        assert answered(browser) == half * 3                      # kept across the reload
        assert browser.find_element("id", "progress").text == f"{half * 3} of {len(examples) * 3} answered"
        click_answers(browser, mapping, policies[sheet["rater"]], examples[half:])
        assert browser.find_element("id", "progress").text == f"{len(examples) * 3} of {len(examples) * 3} answered"
        if sheet["rater"] == "rater-01":
            browser.execute_script("window.scrollTo(0, 0)")
            browser.set_window_size(1200, 1000)
            wait_for(browser, "const v = [...document.querySelector('.example').querySelectorAll('video')];"
                              "return v.every(v => v.readyState >= 3)")
            # show a frame from the middle of each clip, settled
            browser.execute_script("document.querySelectorAll('.example:first-of-type video')"
                                   ".forEach(v => { v.currentTime = 1.0; })")
            wait_for(browser, "return [...document.querySelector('.example').querySelectorAll('video')]"
                              ".every(v => !v.seeking && v.readyState >= 2)")
            time.sleep(1.5)
            screenshot(browser, artifacts / "study.png", height=1000)
        votes = export_votes(browser, tmp_path / sheet["rater"], sheet_id)
        assert votes["complete"] is True and votes["sheet_id"] == sheet_id and len(votes["answers"]) == 24
        vote_files.append(str(tmp_path / sheet["rater"] / f"votes-{sheet_id}.json"))
        assert console_errors(browser) == []

    capsys.readouterr()
    assert cli_main(["study", "tally", *vote_files, "--key", str(out / "key.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    counts = {q: {m: r["votes"] for m, r in result["votes"][q].items()} for q in QUESTIONS}
    assert counts == {"image_quality": {"static": 0, "avsyncd": 16},
                      "frame_consistency": {"static": 8, "avsyncd": 8},
                      "synchronization": {"static": 0, "avsyncd": 16}}
    # the raters always disagree on frame consistency: no agreement beyond chance
    fc = result["agreement"]["frame_consistency"]
    assert fc["percent_agreement"] == 0.0 and fc["cohen_kappa"] == pytest.approx(0.0)
    assert result["agreement"]["synchronization"]["percent_agreement"] == 1.0
    assert result["tests"]["synchronization"]["p_top_vs_runner_up"] == pytest.approx(2 * 0.5 ** 16)
