"""The published rows as package data, and where they go on the site."""

from asva_bench.leaderboard.build import load_entries, make_boards
from asva_bench.leaderboard.published import load_published, reported_value, rows_for, track_of
from tests.browser.fixture_runs import results_for, write_entry


def test_published_rows_hold_every_table_row_with_its_source():
    rows, doc = load_published()
    per_table = {}
    for r in rows:
        per_table.setdefault((r.dataset, r.where), []).append(r)
    assert len(per_table[("avsync15", "Table 1a")]) == 12          # 10 rows + the two text+audio rows
    assert len(per_table[("landscapes", "Table 1b")]) == 10
    assert len(per_table[("thegreatesthits", "Table 1c")]) == 5
    by = {(r.dataset, r.model): r.metrics for r in rows}
    assert by[("avsync15", "AVSyncD (eta=4)")] == {"fid": 11.7, "ia": 38.53, "it": 30.45, "fvd": 349.1,
                                                   "alignsync": 22.62, "relsync": 45.52}
    assert "ia" not in by[("avsync15", "I2VD")] and "fid" not in by[("avsync15", "Static")]
    assert by[("landscapes", "AADiff")]["fid"] == 70.7 and by[("thegreatesthits", "Ground truth")]["relsync"] == 50.0
    # the authors' repository table for the released checkpoints
    release = {(r.dataset, r.model.rsplit("=", 1)[1].rstrip(")")): r.metrics for r in rows if r.source == "repo-release"}
    assert release == {
        ("avsync15", "1"): {"fvd": 323.06, "alignsync": 22.21}, ("avsync15", "4"): {"fvd": 300.82, "alignsync": 22.64},
        ("avsync15", "8"): {"fvd": 375.02, "alignsync": 22.70},
        ("landscapes", "1"): {"fvd": 491.37, "alignsync": 24.94}, ("landscapes", "4"): {"fvd": 449.59, "alignsync": 25.02},
        ("landscapes", "8"): {"fvd": 547.97, "alignsync": 25.16},
        ("thegreatesthits", "1"): {"fvd": 305.41, "alignsync": 22.56},
        ("thegreatesthits", "4"): {"fvd": 255.49, "alignsync": 22.89},
        ("thegreatesthits", "8"): {"fvd": 279.12, "alignsync": 23.14}}
    assert (doc["sync_classifier"]["a2v_accuracy"], doc["sync_classifier"]["v2a_accuracy"]) == (40.76, 40.86)
    assert doc["user_study"]["votes"]["AVSyncD (eta=4)"] == [163, 186, 192]
    assert doc["user_study"]["votes"]["VideoCrafter"] == [38, 20, 12]
    assert all(r.citation and r.url and r.track == "asva-reference" and r.profile == "paper" for r in rows)


def test_a_measured_run_is_compared_with_the_matching_reported_row():
    rows = rows_for("avsync15", "paper", "asva-reference")
    assert reported_value(rows, "avsyncd", {"eta": 4.0}, "relsync")[0] == 45.52
    assert reported_value(rows, "avsyncd", {"eta": 4.0}, "fvd")[0] == 349.1           # Table 1a
    released = {"eta": 4, "checkpoint": "/w/avsync15_audio-cond_cfg/ckpts/checkpoint-37000/modules"}
    assert reported_value(rows, "avsyncd", released, "fvd")[0] == 300.82              # the release's own number
    assert reported_value(rows, "avsyncd", {"eta": 2}, "fvd") is None
    assert reported_value(rows, "i2vd", {}, "ia") is None                              # not reported
    assert rows_for("avsync15", "mini", "corrected") == []


def test_missing_tracks_follow_the_profile():
    assert track_of({"profile": "mini", "protocol": {}}) == "corrected"
    assert track_of({"profile": "paper", "protocol": {"name": "paper-256"}}) == "asva-reference"
    assert track_of({"profile": "paper", "protocol": {"track": "corrected"}}) == "corrected"


def test_mini_runs_go_to_the_mini_board_and_reported_rows_to_the_paper_boards(tmp_path):
    for m in ("groundtruth", "static", "avsyncd", "i2vd"):
        write_entry(tmp_path, m, results_for(m))
    entries, _ = load_entries([tmp_path])
    boards = {(b.dataset, b.profile, b.track): b for b in make_boards(entries)}
    assert set(boards) == {("synth", "mini", "corrected"), ("avsync15", "paper", "asva-reference"),
                           ("landscapes", "paper", "asva-reference"), ("thegreatesthits", "paper", "asva-reference")}
    mini = boards[("synth", "mini", "corrected")]
    assert len(mini.entries) == 4 and mini.reported == []
    assert all(not b.entries for k, b in boards.items() if k[1] == "paper")
    assert [len(boards[(d, "paper", "asva-reference")].reported) for d in ("avsync15", "landscapes", "thegreatesthits")] \
        == [15, 13, 8]
    assert set(make_boards(load_entries([tmp_path])[0], reported=False)[0].__dict__) and \
        len(make_boards(load_entries([tmp_path])[0], reported=False)) == 1
