"""Native output rates mapped onto the protocol, and the diffusers-i2v adapter on a tiny random SVD."""

import inspect
import json

import numpy as np
import pytest
import torch

from asva_bench.adapters import Adapter, AdapterError, ClipBatch, build_adapter, validate_output
from asva_bench.adapters.resample import map_to_protocol, native_indices
from asva_bench.cli import main
from asva_bench.protocol import MINI, PAPER, PAPER_GREATEST_HITS

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------
# the mapping rule (golden values derived by hand from "first frame at or after k / 6 s")
# --------------------------------------------------------------------------
def test_native_indices_follow_the_protocol_timestamp_rule():
    assert native_indices(48, 24.0, PAPER).tolist() == list(range(0, 48, 4))          # KeyVID: every 4th
    # SVD, 14 frames at 7 fps: k/6 s -> ceil(7k/6) -> 0 2 3 4 5 6 7 9 10 11 12 13 (k = 6 lands exactly on 7)
    assert native_indices(14, 7.0, PAPER).tolist() == [0, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    assert native_indices(12, 6.0, PAPER).tolist() == list(range(12))                  # already the protocol
    assert native_indices(8, 6.0, PAPER).tolist() == list(range(8)) + [7] * 4          # runs out: last repeats
    with pytest.raises(ValueError):
        native_indices(0, 6.0, PAPER)


def test_map_to_protocol_picks_frames_then_applies_the_spatial_rule():
    n, h, w = 48, 40, 80
    frames = torch.arange(n, dtype=torch.float32).div(n - 1).view(1, n, 1, 1, 1).expand(2, n, 3, h, w).clone()
    out = map_to_protocol(frames, (n, 24.0), PAPER_GREATEST_HITS)
    assert out.shape == (2, 12, 3, 128, 256)
    assert torch.allclose(out[0, :, 0, 0, 0], torch.arange(0, 48, 4) / 47.0, atol=1e-6)
    same = torch.rand(1, 12, 3, 64, 64)
    assert torch.allclose(map_to_protocol(same, (12, 6.0), MINI), same, atol=1e-6)      # identity


class Rate24(Adapter):
    name = "rate-24"
    inputs = ("image",)
    native_rate = (48, 24.0)

    def generate(self, batch):
        B = len(batch)
        ramp = torch.arange(48, dtype=torch.float32).div(47).view(1, 48, 1, 1, 1)
        return ramp.expand(B, 48, 3, 32, 48).clone()        # another frame size too


def batch_of(n=2, cfg=MINI):
    return ClipBatch(first_frame=torch.zeros(n, 3, cfg.height, cfg.width), audio=torch.zeros(n, 32000),
                     mel=torch.zeros(n, 1, 128, 204), text=["t"] * n, clip_ids=[f"c/v{i}_clip-00" for i in range(n)],
                     seeds=list(range(n)), protocol=cfg)


def test_validate_output_maps_a_declared_native_rate():
    out = validate_output(Rate24(), batch_of(), Rate24().generate(batch_of()))
    assert out.shape == (2, 12, 3, 64, 64)
    assert torch.allclose(out[0, 1:, 0, 10, 10], torch.arange(4, 48, 4) / 47.0, atol=1e-5)
    assert float(out[0, 0].abs().max()) == 0.0                   # frame 1 = the input image
    with pytest.raises(AdapterError, match=r"expected \[2, 48, 3, h, w\]"):
        validate_output(Rate24(), batch_of(), torch.rand(2, 12, 3, 64, 64))
    bad = Rate24().generate(batch_of()) * 2
    with pytest.raises(AdapterError, match=r"outputs must be in \[0, 1\]"):
        validate_output(Rate24(), batch_of(), bad)               # range checked before the resize clamps


def test_run_records_the_native_rate_mapping(tiny_dataset, tmp_path, monkeypatch, capsys):
    (tmp_path / "rate_models.py").write_text(inspect.getsource(Rate24).replace("class Rate24(Adapter)",
                                             "import torch\nfrom asva_bench.adapters import Adapter\n\n\nclass Rate24(Adapter)"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    rc = main(["run", "--model", "rate_models:Rate24", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--profile", "mini", "--out", str(out), "--limit", "1", "--no-score", "--json"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    m = rec["model"]["output"]
    assert (m["native_num_frames"], m["native_fps"]) == (48, 24.0) and m["native_indices"] == list(range(0, 48, 4))
    assert "timestamp" in m["temporal_rule"] and rec["clips"]["generated"] == 3


# --------------------------------------------------------------------------
# diffusers-i2v
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_svd(tmp_path_factory):
    from tests.tiny_pipelines import make_tiny_svd
    return make_tiny_svd(tmp_path_factory.mktemp("svd") / "tiny-svd")


def svd_run(tiny_svd, tiny_dataset, out, *extra):
    return main(["run", "--model", "diffusers-i2v", "--model-arg", f"model={tiny_svd}", "--model-arg", "steps=2",
                 "--model-arg", "height=32", "--model-arg", "width=32", "--dataset", "avsync15",
                 "--root", str(tiny_dataset), "--profile", "mini", "--out", str(out), "--limit", "1", *extra])


def test_tiny_svd_runs_end_to_end_through_asva_bench_run(tiny_svd, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    rc = svd_run(tiny_svd, tiny_dataset, out, "--json")
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0, obj
    run = obj["run"]
    assert run["status"] == "complete" and run["clips"]["generated"] == 3
    assert run["model"]["config"]["pipeline_class"] == "StableVideoDiffusionPipeline"
    assert run["model"]["first_frame"] == "input"
    assert run["model"]["output"]["native_num_frames"] == 14 and run["model"]["output"]["native_fps"] == 7.0
    res = obj["results"]
    assert res["status"] == "complete" and set(res["metrics"]) == {"fid", "fvd", "ia", "it", "relsync", "alignsync"}
    from asva_bench.avio import VideoFrames
    clip = VideoFrames(out / "videos" / "dog_bark" / "v1_clip-00.mp4")
    assert len(clip) == 12 and clip.get([0]).shape == (1, 64, 64, 3)


def test_tiny_svd_clips_depend_only_on_their_seeds(tiny_svd, tiny_dataset, tmp_path):
    # lossless clips, so the decoded frames are the generated ones (libx264's lossy output after torch has
    # run in the process is not byte-stable; benchmarks/encoder_determinism.py)
    from asva_bench.avio import VideoFrames
    a, b = tmp_path / "a", tmp_path / "b"
    assert svd_run(tiny_svd, tiny_dataset, a, "--lossless", "--no-score") == 0
    assert svd_run(tiny_svd, tiny_dataset, b, "--lossless", "--no-score", "--seed", "0") == 0
    for f in sorted((a / "videos").rglob("*.mp4")):
        fa, fb = VideoFrames(f).get(range(12)), VideoFrames(b / f.relative_to(a)).get(range(12))
        assert np.array_equal(fa, fb), f
    assert svd_run(tiny_svd, tiny_dataset, tmp_path / "c", "--lossless", "--no-score", "--seed", "1") == 0
    c = VideoFrames(tmp_path / "c" / "videos" / "dog_bark" / "v1_clip-01.mp4").get(range(12))
    assert not np.array_equal(c, VideoFrames(a / "videos" / "dog_bark" / "v1_clip-01.mp4").get(range(12)))


def test_tiny_svd_own_first_frame_is_kept_when_declared(tiny_svd):
    a = build_adapter("diffusers-i2v", [f"model={tiny_svd}", "steps=1", "height=32", "width=32",
                                        "first_frame=generated", "num_frames=7", "fps=3.5"])
    assert a.first_frame == "generated" and a.native_output(MINI) == (7, 3.5)
    a.setup(MINI)
    b = batch_of(1)
    raw = a.generate(b)
    assert raw.shape == (1, 7, 3, 32, 32)
    out = validate_output(a, b, raw)
    assert out.shape == (1, 12, 3, 64, 64) and float(out[0, 0].abs().max()) > 0   # not the (black) input


def fake_pipeline_folder(tmp_path, cls):
    folder = tmp_path / cls
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    return folder


@pytest.mark.parametrize("cls,fps_arg,prompt", [("I2VGenXLPipeline", "target_fps", True),
                                                ("CogVideoXImageToVideoPipeline", None, True),
                                                ("StableVideoDiffusionPipeline", "fps", False)])
def test_call_arguments_fit_each_pipeline_class(tmp_path, cls, fps_arg, prompt):
    import diffusers
    a = build_adapter("diffusers-i2v", [f"model={fake_pipeline_folder(tmp_path, cls)}", "guidance=3"])
    kw = a.call_arguments(image=None, text="dog barking", generator=None, protocol=PAPER)
    params = set(inspect.signature(getattr(diffusers, cls).__call__).parameters)
    assert set(kw) <= params, set(kw) - params
    assert (kw.get("prompt") == "dog barking") == prompt
    assert kw["output_type"] == "pt" and (kw["height"], kw["width"]) == (256, 256)
    if fps_arg:
        assert kw[fps_arg] == round(a.native_output(PAPER)[1])
    n, fps = a.native_output(PAPER)
    assert (n - 1) / fps >= 11 / 6 - 1e-9              # the default output covers the protocol's 2 s clip


def test_unknown_pipeline_classes_and_missing_models_are_refused(tmp_path):
    with pytest.raises(AdapterError, match="does not know how to call; supported: StableVideoDiffusionPipeline"):
        build_adapter("diffusers-i2v", [f"model={fake_pipeline_folder(tmp_path, 'StableDiffusionPipeline')}"])
    with pytest.raises(AdapterError, match="needs --model-arg model="):
        build_adapter("diffusers-i2v", [])
    a = build_adapter("diffusers-i2v", [f"model={tmp_path / 'absent'}"])
    from asva_bench.requirements import unmet
    assert unmet(a.required_files(PAPER))[0].problems == [f"missing folder {tmp_path / 'absent'}"]
    with pytest.raises(AdapterError, match="multiple of 8"):
        build_adapter("diffusers-i2v", [f"model={tmp_path}", "height=30"])


def test_hub_ids_need_the_cache_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("ASVA_BENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    a = build_adapter("diffusers-i2v", ["model=someone/some-i2v-model"])
    from asva_bench.requirements import unmet
    u = unmet(a.required_files(PAPER))
    assert u and u[0].problems == ["not given"] and "huggingface-cli download someone/some-i2v-model" in \
        u[0].requirement.fix
