"""The run folder contract (asva_bench.runs): one reader and writer, the schema check from the dataclasses."""

import ast
import json
from pathlib import Path

import pytest

from asva_bench import runs

ROOT = Path(__file__).resolve().parents[1]


def minimal_results(**changes) -> dict:
    d = {"schema": runs.RESULTS_SCHEMA, "fingerprint": "0123456789abcdef",
         "model": {"name": "static", "config": {}}, "dataset": {"name": "synth", "manifest_hash": "ab" * 8},
         "profile": "mini", "protocol": {"name": "mini-64", "fingerprint": "fedcba9876543210", "fps": 6.0},
         "created": "2026-12-01T00:00:00Z", "seeds": {"run_seed": 0}, "versions": {"torch": "2.14.1"},
         "clips": {"expected": 3, "scored": 3, "failed": 0, "failed_ids": []},
         "metrics": {"relsync": {"mean": 11.0, "ci_low": 10.0, "ci_high": 12.0, "higher_is_better": True,
                                 "n_clips": 3, "long_name": "relsync"}},
         "per_class": {"dog": {"relsync": 11.0}}, "status": "complete", "a_future_field": [1, 2]}
    d.update(changes)
    return d


def test_results_round_trip_keeps_every_key_and_types_the_known_ones(tmp_path):
    d = minimal_results()
    runs.write_results(tmp_path / "results.json", d, [{"clip_id": "dog/a_clip-00", "metrics": {"relsync": 11.0}}])
    r = runs.read_results(tmp_path)
    assert isinstance(r.metrics["relsync"], runs.MetricSummary) and r.metrics["relsync"].n_clips == 3
    assert isinstance(r.clips, runs.ClipCounts) and r.clips.expected == 3 and r.model.name == "static"
    assert r.to_dict() == d  # unknown keys ride along; nothing added, nothing lost
    assert runs.read_scores(tmp_path) == [{"clip_id": "dog/a_clip-00", "metrics": {"relsync": 11.0}}]
    assert (tmp_path / "scores.jsonl").is_file()
    assert not [p for p in tmp_path.iterdir() if runs.is_temp_file(p)]


def test_schema_problems_are_derived_from_the_fields():
    assert runs.results_problems(minimal_results()) == []
    bad = minimal_results(fingerprint="XYZ", profile="", metrics={"ia": None, "fid": {"mean": 1.0, "ci_low": 3.0,
                                                                                      "ci_high": 2.0,
                                                                                      "higher_is_better": "no"}},
                          per_class={"dog": {"ia": "high"}})
    del bad["created"]
    got = dict(runs.results_problems(bad))
    assert set(got) == {"fingerprint", "profile", "created", "metrics.ia", "metrics.fid.higher_is_better",
                        "metrics.fid", "per_class.dog"}
    assert "16 lowercase hex digits" in got["fingerprint"] and "reversed" in got["metrics.fid"]
    assert "never null" in got["metrics.ia"]
    with pytest.raises(runs.RunFolderError, match="fingerprint: expected 16 lowercase hex digits"):
        runs.Results.from_dict(bad, where="x.json")


def test_run_record_reader_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(runs.RunFolderError, match=r"run\.json is missing: not a run folder.*asva-bench run"):
        runs.read_run(tmp_path)
    (tmp_path / "run.json").write_text("{broken")
    with pytest.raises(runs.RunFolderError, match="not valid JSON"):
        runs.read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"schema": runs.RUN_SCHEMA, "profile": "mini"}))
    with pytest.raises(runs.RunFolderError, match="model: missing"):
        runs.read_run(tmp_path)


def test_clip_plan_and_present_clips(tmp_path):
    class E:
        def __init__(self, c, s):
            self.class_name, self.stem, self.rel_path = c, s, f"{c}/{s}.mp4"

    class Cfg:
        clips_per_video = 3

    entries = [E("b", "1"), E("a", "2"), E("a", "1"), E("b", "2")]
    picked = runs.limited_entries(entries, 2)
    assert [e.rel_path for e in picked] == ["a/1.mp4", "b/1.mp4"]  # round robin, path order
    jobs = runs.plan_clips(picked, Cfg())
    assert [j.clip_id for j in jobs][:2] == ["a/1_clip-00", "a/1_clip-01"]
    for j in jobs[:2]:
        p = tmp_path / runs.clip_relpath(j.clip_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "videos" / "a" / ".1_clip-02.tmp-deadbeef.mp4").write_bytes(b"half")
    assert runs.present_clips(tmp_path) == {"a/1_clip-00", "a/1_clip-01"}
    runs.remove_stale_temp_files(tmp_path)
    assert not (tmp_path / "videos" / "a" / ".1_clip-02.tmp-deadbeef.mp4").exists()


def test_fingerprint_covers_its_named_fields():
    d = minimal_results()
    fp = runs.results_fingerprint(d)
    for path, value in [("profile", "paper"), ("protocol.fingerprint", "1" * 16), ("dataset.limit", 5),
                        ("backbones", {"x": 1}), ("encoding", {"lossless": True})]:
        e = json.loads(json.dumps(d))
        head, *rest = path.split(".")
        if rest:
            e[head][rest[0]] = value
        else:
            e[head] = value
        assert runs.results_fingerprint(e) != fp, path
    assert runs.results_fingerprint({**d, "created": "other"}) == fp


def test_results_format_doc_holds_the_generated_field_tables():
    doc = (ROOT / "docs" / "results-format.md").read_text()
    assert runs.schema_table() in doc, "regenerate: python -c 'from asva_bench.runs import schema_table; print(schema_table())'"


def test_the_core_does_not_import_the_leaderboard():
    """The leaderboard (presentation) builds on the core, not the other way round; only the CLI, the
    entry point that wires the layers, and curation's review page (presentation) import it."""
    allowed = {"cli.py", "curation/review.py"}
    offenders = []
    for path in (ROOT / "asva_bench").rglob("*.py"):
        rel = path.relative_to(ROOT / "asva_bench").as_posix()
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any("leaderboard" in n for n in names):
                offenders.append(rel)
    assert offenders == []
