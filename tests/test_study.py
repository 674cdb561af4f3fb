"""User study: assignment, sheets (anonymity, media), vote validation, tally and its statistics."""

from __future__ import annotations

import json
import math
import sys
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))
from fixture_runs import make_runs  # noqa: E402

from asva_bench.leaderboard import study as S  # noqa: E402
from asva_bench.leaderboard.cli import main as cli_main  # noqa: E402

QUESTIONS = [q["id"] for q in S.QUESTIONS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("runs"), ("groundtruth", "static", "avsyncd", "i2vd"))


@pytest.fixture(scope="module")
def made(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    summary = S.make_study([runs["static"], runs["avsyncd"], runs["i2vd"]], raters=3, out=out,
                           groundtruth=runs["groundtruth"], progress=False)
    return out, summary, json.loads((out / "key.json").read_text())


def votes_for(key, sheet_id, pick=lambda ex, q, mapping: sorted(mapping)[0]):
    sheet = key["sheets"][sheet_id]
    return {"schema": S.VOTES_SCHEMA, "study_id": key["study_id"], "sheet_id": sheet_id, "rater": sheet["rater"],
            "exported": "2026-11-27T00:00:00Z", "complete": True,
            "answers": [{"example": ex, "question": q, "choice": pick(ex, q, m)}
                        for ex, m in sheet["examples"].items() for q in QUESTIONS]}


def letter_of(mapping, label):
    return next(L for L, lab in mapping.items() if lab == label)


# --------------------------------------------------------------------------
# assignment and example choice
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n_examples, raters, k", [(150, 2, 2), (150, 7, 2), (10, 3, 3), (11, 4, 1), (5, 9, 2)])
def test_assignment_is_balanced(n_examples, raters, k):
    sheets = S.assign(n_examples, raters, k)
    per_example = Counter(i for s in sheets for i in s)
    assert per_example == {i: k for i in range(n_examples)}
    assert all(len(set(s)) == len(s) for s in sheets)          # no example twice on a sheet
    loads = [len(s) for s in sheets]
    assert max(loads) - min(loads) <= 1 and sum(loads) == n_examples * k


def test_assignment_errors():
    with pytest.raises(S.StudyError, match="1 to 2 raters"):
        S.assign(10, 2, 3)
    with pytest.raises(S.StudyError, match="at least 1"):
        S.assign(10, 0, 1)


def test_choose_examples_one_clip_per_shared_video():
    a = {"c/v1_clip-00", "c/v1_clip-01", "c/v2_clip-00", "c/v3_clip-00"}
    b = {"c/v1_clip-00", "c/v1_clip-01", "c/v2_clip-00"}
    chosen, excluded = S.choose_examples([a, b], None, seed=0)
    assert sorted(S.video_of(c) for c in chosen) == ["c/v1", "c/v2"]
    assert excluded == {"clips_not_in_every_run": ["c/v3_clip-00"]}
    assert S.choose_examples([a, b], None, seed=0) == (chosen, excluded)     # deterministic
    assert len(S.choose_examples([a, b], 1, seed=0)[0]) == 1
    with pytest.raises(S.StudyError, match="only 2 test videos"):
        S.choose_examples([a, b], 3, seed=0)


# --------------------------------------------------------------------------
# the sheets
# --------------------------------------------------------------------------
def test_sheets_never_reveal_the_models(made, runs):
    out, summary, key = made
    assert sorted(p.name for p in out.iterdir()) == ["key.json", "sheets"]
    secrets = ["static", "avsyncd", "i2vd", "groundtruth", str(runs["static"].parent), key["salt"]]
    for f in (out / "sheets").rglob("*"):
        if f.is_file():
            assert not any(s in f.name for s in secrets), f
            if f.suffix in (".html", ".css", ".js"):
                text = f.read_text()
                assert not any(s in text for s in secrets), (f, [s for s in secrets if s in text])
    media = [p.stem for p in (out / "sheets" / "media").iterdir()]
    assert all(len(m) == 20 and int(m, 16) >= 0 for m in media)


def test_key_and_orders(made):
    out, summary, key = made
    assert key["ratings_per_example"] == 2 and len(key["sheets"]) == 3
    assert sorted(s["examples"] for s in summary["sheets"]) == [5, 5, 6]    # 8 examples x 2 over 3 raters
    orders = Counter()
    for sheet in key["sheets"].values():
        for mapping in sheet["examples"].values():
            assert sorted(mapping) == ["A", "B", "C"]
            assert sorted(mapping.values()) == ["avsyncd", "i2vd", "static"]
            orders[tuple(mapping.values())] += 1
    assert len(orders) >= 3                      # orders are drawn per example, not fixed
    html = (out / "sheets" / "rater-01.html").read_text()
    data = json.loads(html.split('id="sheet-data">')[1].split("</script>")[0])
    first = next(iter(key["sheets"]))
    assert data["sheet_id"] == first and data["study_id"] == key["study_id"]
    assert [e["letters"] for e in data["examples"]] == [["A", "B", "C"]] * len(data["examples"])
    assert sorted(e["id"] for e in data["examples"]) == sorted(key["sheets"][first]["examples"])


def test_input_media_are_the_ground_truth_frame_and_audio(made, runs):
    from PIL import Image
    from asva_bench.avio import VideoFrames, read_audio

    out, summary, key = made
    html = (out / "sheets" / "rater-01.html").read_text()
    ex = next(iter(key["sheets"][next(iter(key["sheets"]))]["examples"]))
    section = html.split(f'id="{ex}"')[1]
    img = section.split('<img src="')[1].split('"')[0]
    aud = section.split('<audio controls preload="none" src="')[1].split('"')[0]
    clip = runs["groundtruth"] / "videos" / (key["examples"][ex]["clip_id"] + ".mp4")
    png = np.asarray(Image.open(out / "sheets" / img))
    assert np.array_equal(png, VideoFrames(clip).get([0])[0])
    with wave.open(str(out / "sheets" / aud)) as w:
        assert w.getframerate() == 16000 and w.getnframes() == 32000
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32767
    ref, _ = read_audio(clip)
    assert np.abs(pcm - ref.numpy()).max() < 1e-4


def test_make_refuses_non_empty_out_and_single_run(runs, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(S.StudyError, match="not empty"):
        S.make_study([runs["static"], runs["avsyncd"]], 2, tmp_path / "x", progress=False)
    with pytest.raises(S.StudyError, match="at least 2 runs"):
        S.make_study([runs["static"]], 2, tmp_path / "y", progress=False)
    with pytest.raises(S.StudyError, match="not a run folder"):
        S.make_study([runs["static"], tmp_path], 2, tmp_path / "z", progress=False)


# --------------------------------------------------------------------------
# votes and tally
# --------------------------------------------------------------------------
def test_tally_counts_exactly(made, tmp_path):
    out, summary, key = made
    files = []
    for sid, sheet in key["sheets"].items():
        # everyone prefers avsyncd, except frame consistency where static wins
        pick = lambda ex, q, m: letter_of(m, "static" if q == "frame_consistency" else "avsyncd")
        p = tmp_path / f"{sid}.json"
        p.write_text(json.dumps(votes_for(key, sid, pick)))
        files.append(p)
    result = S.tally(key, S.load_votes(files, key))
    assert {m: r["votes"] for m, r in result["votes"]["synchronization"].items()} == \
        {"static": 0, "avsyncd": 16, "i2vd": 0}
    assert result["votes"]["frame_consistency"]["static"]["votes"] == 16
    lo, hi = S.wilson_interval(16, 16)
    assert result["votes"]["synchronization"]["avsyncd"]["ci_low"] == pytest.approx(lo)
    assert result["agreement"]["synchronization"]["percent_agreement"] == 1.0
    assert result["agreement"]["synchronization"]["n_items"] == 8
    assert result["agreement"]["synchronization"]["fleiss_kappa"] is None   # no spread: kappa undefined
    assert result["tests"]["synchronization"]["top"] == "avsyncd"
    text = S.format_tally(result)
    assert "avsyncd 16/0/16" in text and "static 0/16/0" in text and "i2vd 0/0/0" in text


def test_vote_file_problems_are_all_reported(made, tmp_path):
    out, summary, key = made
    sids = list(key["sheets"])
    good = votes_for(key, sids[0])
    dup = votes_for(key, sids[1])
    dup["answers"].append(dict(dup["answers"][0]))
    incomplete = votes_for(key, sids[2])
    incomplete["answers"] = incomplete["answers"][:-2]
    wrong_letter = votes_for(key, sids[2])
    wrong_letter["answers"][0]["choice"] = "Z"
    other_study = dict(good, study_id="ffffffffffff")
    unknown_sheet = dict(good, sheet_id=key["study_id"] + "-rater-99")
    cases = {"dup": dup, "incomplete": incomplete, "letter": wrong_letter, "study": other_study,
             "sheet": unknown_sheet}
    paths = {}
    for name, v in cases.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(v))
    (tmp_path / "garbage.json").write_text("{")
    with pytest.raises(S.StudyError) as e:
        S.load_votes(list(paths.values()) + [tmp_path / "garbage.json"], key)
    msg = str(e.value)
    assert "duplicate answer to" in msg
    assert "incomplete: 2 of" in msg
    assert "choice 'Z' is not a video" in msg
    assert "belongs to study \"ffffffffffff\"" in msg
    assert "rater-99\" is not a sheet" in msg
    assert "garbage.json: not valid JSON" in msg
    # the same sheet twice, and missing sheets
    g = tmp_path / "good.json"
    g.write_text(json.dumps(good))
    with pytest.raises(S.StudyError, match="already given"):
        S.load_votes([g, g], key)
    with pytest.raises(S.StudyError, match="no votes for 2 of 3 sheets"):
        S.load_votes([g], key)
    assert len(S.load_votes([g], key, partial=True)) == 1


def test_tally_cli(made, tmp_path, capsys):
    out, summary, key = made
    files = []
    for sid in key["sheets"]:
        p = tmp_path / f"{sid}.json"
        p.write_text(json.dumps(votes_for(key, sid)))
        files.append(str(p))
    assert cli_main(["study", "tally", *files, "--key", str(out / "key.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["sheets"] == {"total": 3, "tallied": 3}
    assert sum(r["votes"] for r in result["votes"]["image_quality"].values()) == 16
    assert cli_main(["study", "tally", *files, "--key", str(out / "key.json")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"study {key['study_id']}: 3 of 3 sheets, 8 examples") and "Fleiss' kappa" in text
    assert cli_main(["study", "tally", files[0], "--key", str(out / "key.json"), "--json"]) == 1
    assert "no votes for 2 of 3 sheets" in json.loads(capsys.readouterr().out)["error"]


def test_make_cli_json(runs, tmp_path, capsys):
    rc = cli_main(["study", "make", "--runs", str(runs["static"]), str(runs["avsyncd"]), "--raters", "2",
                   "--examples", "3", "--out", str(tmp_path / "s"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 3 and [s["examples"] for s in out["sheets"]] == [3, 3]
    assert out["warnings"] and "first frame of static" in out["warnings"][0]


# --------------------------------------------------------------------------
# statistics: golden values
# --------------------------------------------------------------------------
def test_wilson_interval_golden():
    lo, hi = S.wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    # closed form: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    k, n, z = 163, 300, 1.959963984540054
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert S.wilson_interval(k, n) == pytest.approx((c - h, c + h), abs=1e-9)


def test_chi_square_and_binomial_golden():
    stat, p = S.chi_square_uniform([10, 20, 30])
    assert stat == pytest.approx(10.0) and p == pytest.approx(math.exp(-5))   # df=2: p = exp(-x/2)
    assert S.binomial_p(9, 10) == pytest.approx(2 * 11 / 1024)                # P(X>=9)+P(X<=1)


def test_fleiss_kappa_golden():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert S.fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    assert S.fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)             # perfect agreement
    with pytest.raises(ValueError):
        S.fleiss_kappa([[2, 0], [1, 0]])


def test_cohen_kappa_golden():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert S.cohen_kappa(a, b) == pytest.approx(0.4)
    assert math.isnan(S.cohen_kappa(["y", "y"], ["y", "y"]))
