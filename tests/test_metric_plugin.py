"""A new metric is one file: the worked example of docs/metrics.md, "Adding a metric".

``Drift`` below is all a new metric needs: a class that declares its name,
label, column order, direction, help (its docstring) and feature needs, and
registers itself. The tests score a tiny run with it selected and check its
numbers against the embeddings computed here directly, then find it in the
results table and on the leaderboard with its label and arrow.
"""

import json

import numpy as np
import pytest
import torch

from asva_bench import avio
from asva_bench.cli import main
from asva_bench.evaluators import load_suite
from asva_bench.metrics import (METRIC_ORDER, METRICS, ClipMetric, MetricDeclarationError, declaration_table,
                                metric_order, register_metric, unregister_metric)
from asva_bench.protocol import waveforms_to_mel
from asva_bench.results import formatted, load_results, to_frame
from asva_bench.runs import read_run
from asva_bench.scoring import ScoreOptions, decode_generated_clip, it_texts, run_protocol, score_run


# --- the worked example: everything a new metric needs ----------------------------------------
class Drift(ClipMetric):
    """How far a clip moves away from its input image: 1 - cos(generated frame k, ground-truth first
    frame) in the embedding space, mean over frames 2-12 and clips, x100 (0: the input image held)."""
    name = "drift"
    label = "Drift"
    order = 70                       # after the paper's six columns
    higher_is_better = False
    long_name = "drift@frames2-12/1-cos-x100"
    scale = 100.0
    needs = ("vision_embedding",)    # the generated frames' embeddings; the scorer adds the first frame's

    def update(self, frame_emb: torch.Tensor, first_frame_emb: torch.Tensor, video_index) -> None:
        cos = torch.nn.functional.cosine_similarity(frame_emb.double(), first_frame_emb.double().unsqueeze(1), dim=-1)
        self._add(1.0 - cos.mean(1), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["vision_embedding"], gt["first_frame_embedding"], video_index)
# ----------------------------------------------------------------------------------------------


class AudioText(ClipMetric):
    """Audio-text alignment: cos(clip audio, class text) in the embedding space, mean over clips, x100."""
    name = "audiotext"
    label = "AT"
    order = 80
    higher_is_better = True
    long_name = "audiotext@cos-x100"
    scale = 100.0
    needs = ("audio_embedding", "text_embedding")   # text without IT: the scorer must embed the texts

    def update(self, audio_emb: torch.Tensor, text_emb: torch.Tensor, video_index) -> None:
        self._add(torch.nn.functional.cosine_similarity(audio_emb.double(), text_emb.double(), dim=-1), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["audio_embedding"], text, video_index)


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASVA_BENCH_HOME", str(tmp_path / "home"))


@pytest.fixture
def plugins():
    """Register the test's metrics for one test (as importing a plugin module would), then remove them."""
    register_metric(Drift)
    register_metric(AudioText)
    yield
    unregister_metric("drift")
    unregister_metric("audiotext")


@pytest.fixture(scope="module")
def suite():
    return load_suite("mini")


def groundtruth_run(tiny_dataset, out):
    assert main(["run", "--model", "groundtruth", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--profile", "mini", "--out", str(out), "--no-score"]) == 0
    return out


def _cos(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_plugin_metric_is_scored_and_shown(plugins, tiny_dataset, tmp_path, suite):
    run = groundtruth_run(tiny_dataset, tmp_path / "gt")
    res = score_run(run, suite, ScoreOptions(metrics=("relsync", "drift"), progress=False, replicates=100,
                                             decode_threads=0))
    assert list(res["metrics"]) == ["relsync", "drift"]
    s = res["metrics"]["drift"]
    assert s["higher_is_better"] is False and s["long_name"] == Drift.long_name and s["n_clips"] == 12

    # independently: embed each generated clip's frames 2..12 and its ground-truth first frame here
    cfg = run_protocol(read_run(run).to_dict())
    rows = [json.loads(l) for l in (run / "scores.jsonl").read_text().splitlines()]
    expected = []
    for row in rows:
        frames = decode_generated_clip(run / "videos" / f"{row['clip_id']}.mp4", cfg)[0]
        video, k = row["clip_id"].rsplit("_clip-", 1)
        first = avio.decode_protocol_clips(tiny_dataset / "videos" / f"{video}.mp4", cfg)[int(k)].frames[0]
        with torch.no_grad():
            emb = suite.embed_vision(frames[1:]).numpy()
            ref = suite.embed_vision(first[None]).numpy()[0]
        expected.append(100.0 * (1.0 - _cos(emb, ref[None]).mean()))
        assert row["metrics"]["drift"] == pytest.approx(expected[-1], abs=1e-3), row["clip_id"]
    assert s["mean"] == pytest.approx(np.mean(expected), abs=1e-3)
    assert 0.01 < s["mean"] < 100       # the ground truth moves: not a held image
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]

    # the results table: its label, its arrow (lower is better), after RelSync as its order says
    table = formatted(to_frame([load_results(run)]))
    assert list(table.columns) == ["Model", "RelSync \u2191", "Drift \u2193"]
    assert table["Drift \u2193"][0].startswith(f"{s['mean']:.2f} [")
    latex = formatted(to_frame([load_results(run)]), latex=True)
    assert "Drift $\\downarrow$" in latex.columns

    # the board: a column with the label, the arrow and the help text from the class
    from leaderboard.build import build_site
    site = tmp_path / "site"
    build_site([run], site, progress=False, reported=False)
    board = next(site.glob("board-*.html")).read_text()
    assert 'data-key="drift"' in board and 'data-best="asc"' in board.split('data-key="drift"')[0].rsplit("<th", 1)[1]
    assert "Drift <span" in board and Drift.help.split(":")[0] in board


def test_text_embeddings_follow_the_declared_needs(plugins, tiny_dataset, tmp_path, suite, monkeypatch):
    run = groundtruth_run(tiny_dataset, tmp_path / "gt")
    asked = []
    embed = suite.embed_text
    monkeypatch.setattr(suite, "embed_text", lambda texts: (asked.append(list(texts)), embed(texts))[1])
    score_run(run, suite, ScoreOptions(metrics=("relsync",), progress=False, replicates=50, decode_threads=0))
    assert asked == []                  # no selected metric needs text: none embedded
    res = score_run(run, suite, ScoreOptions(metrics=("audiotext",), progress=False, replicates=50, decode_threads=0))
    assert len(asked) == 1              # IT is not selected; AudioText declares text_embedding

    record = read_run(run).to_dict()
    cfg = run_protocol(record)
    from asva_bench.datasets import get_dataset
    manifest = get_dataset("avsync15").load(record["dataset"]["root"])
    text_of = it_texts(manifest.split("test"), cfg)
    rows = [json.loads(l) for l in (run / "scores.jsonl").read_text().splitlines()]
    for row in rows:
        _, audio, length = decode_generated_clip(run / "videos" / f"{row['clip_id']}.mp4", cfg)
        with torch.no_grad():
            a = suite.embed_audio(waveforms_to_mel(audio[None], cfg, [length])).numpy()[0]
            t = suite.embed_text([text_of[row["video_id"]]]).numpy()[0]
        assert row["metrics"]["audiotext"] == pytest.approx(100.0 * _cos(a, t), abs=1e-3), row["clip_id"]
    assert res["metrics"]["audiotext"]["mean"] == pytest.approx(np.mean([r["metrics"]["audiotext"] for r in rows]))


def test_registry_orders_and_documents_registered_metrics(plugins):
    assert METRIC_ORDER == ("fid", "ia", "it", "fvd", "alignsync", "relsync")   # the suite: the default
    assert metric_order() == [*METRIC_ORDER, "drift", "audiotext"]
    assert metric_order({"drift", "zeta", "fid"}) == ["fid", "drift", "zeta"]
    assert "| `drift` | Drift | 70 | \u2193 lower | `vision_embedding` |" in declaration_table()
    assert Drift.help.startswith("How far a clip moves away from its input image: 1 - cos(")
    from asva_bench.metrics import FEATURE_KINDS
    from asva_bench.preflight import ROLE_OF_FEATURE, evaluator_roles
    assert set(ROLE_OF_FEATURE) == set(FEATURE_KINDS)        # every kind a metric may need has its evaluator
    assert evaluator_roles(["drift", "audiotext"]) == {"embedding": ["drift", "audiotext"]}
    with pytest.raises(ValueError, match="metric 'drift' is already registered"):
        register_metric(type("Drift2", (Drift,), {"__doc__": "Another drift."}))


def _declared(**fields):
    body = {"__module__": __name__, "__doc__": "Test metric.", "name": "m", "label": "M", "order": 1, "higher_is_better": True,
            "needs": ("sync_logit",), "update": lambda self, *a: None,
            "update_from_features": lambda self, gen, gt, text, video_index: None}
    body.update(fields)
    return type("Broken", (ClipMetric,), {k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize("fields, message", [
    ({"label": ...}, "label = '': set the display name"),
    ({"__doc__": ...}, "help is missing: give the class a docstring"),
    ({"order": ...}, "order = None: set an int"),
    ({"order": True}, "order = True: set an int"),
    ({"higher_is_better": ...}, "higher_is_better = None: set True or False"),
    ({"needs": ("sync_logits",)}, "unknown feature kind\\(s\\) 'sync_logits': the scorer provides image_features"),
    ({"needs": ()}, "needs = \\(\\): set a non-empty tuple"),
    ({"name": "Rel Sync"}, "name = 'Rel Sync': set a lower-case identifier"),
    ({"update": ...}, "update\\(\\) is not defined: a torchmetrics.Metric needs it"),
    ({"update_from_features": ...}, "update_from_features\\(gen, gt, text, video_index\\) is not defined"),
])
def test_incomplete_declarations_are_refused_with_the_fix(fields, message):
    cls = _declared(**fields)
    with pytest.raises(MetricDeclarationError, match=f"metric class {__name__}.Broken cannot be registered:\n(.|\n)*{message}"):
        register_metric(cls)
    assert "m" not in METRICS
    with pytest.raises(MetricDeclarationError, match="is not a subclass of asva_bench.metrics.AsvaMetric"):
        register_metric(dict)


def test_docs_hold_the_declarations_and_the_worked_example():
    import inspect
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    assert declaration_table(METRIC_ORDER) in doc, \
        "regenerate: python -c 'from asva_bench.metrics import declaration_table, METRIC_ORDER; " \
        "print(declaration_table(METRIC_ORDER))'"
    assert "@register_metric\n" + inspect.getsource(Drift) in doc


USER_METRIC = '''
import torch
from asva_bench.metrics import ClipMetric


class Stillness(ClipMetric):
    """How still a clip is: 100 minus the mean absolute change between consecutive frame embeddings."""
    name = "stillness"
    label = "Still"
    order = 90
    higher_is_better = True
    long_name = "stillness@frames2-12/100-mean|de|"
    needs = ("vision_embedding",)

    def update(self, frame_emb, video_index):
        self._add(100.0 - (frame_emb[:, 1:] - frame_emb[:, :-1]).abs().mean((1, 2)), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["vision_embedding"], video_index)
'''


def test_cli_scores_a_metric_file_named_module_class(tiny_dataset, tmp_path, monkeypatch, capsys):
    """`score --metrics relsync,my_metrics:Stillness` from the folder holding my_metrics.py: the file
    is all the user writes (the CLI registers the class), and an unknown or broken one is refused."""
    run = groundtruth_run(tiny_dataset, tmp_path / "gt")
    (tmp_path / "my_metrics.py").write_text(USER_METRIC)
    monkeypatch.chdir(tmp_path)
    try:
        capsys.readouterr()
        assert main(["score", str(run), "--metrics", "relsync,my_metrics:Stillness", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert list(out["metrics"]) == ["relsync", "stillness"]
        assert 0 < out["metrics"]["stillness"]["mean"] <= 100
        assert main(["score", str(run), "--metrics", "my_metrics:Nope", "--json"]) == 2
        assert "has no attribute 'Nope'" in json.loads(capsys.readouterr().out)["error"]
        assert main(["score", str(run), "--metrics", "relsnyc", "--json"]) == 2
        assert "Did you mean 'relsync'" in json.loads(capsys.readouterr().out)["error"]
    finally:
        if "stillness" in METRICS:
            unregister_metric("stillness")
