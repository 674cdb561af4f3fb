"""Pre-flight: a run fails before generating anything, naming every missing file; weights list/verify/fetch
know the released model folders."""

import json

import pytest
import torch

from asva_bench.adapters import build_adapter
from asva_bench.backbones.weights import HOME_ENV, OFFLINE_ENV
from asva_bench.checkpoints import RELEASED
from asva_bench.cli import main
from asva_bench.protocol import PAPER
from asva_bench.requirements import Requirement, unmet

pytestmark = pytest.mark.usefixtures("single_thread")

#: Every evaluator weight file of the paper profile, by the name an error must show.
PAPER_EVALUATOR_FILES = ["pt_inception-2015-12-05-6726825d.pth", "i3d_torchscript.pt", "imagebind_huge.pth",
                         "audio_encoder/diffusion_pytorch_model.bin", "video_encoder/diffusion_pytorch_model.bin",
                         "head/diffusion_pytorch_model.bin"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(root))
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.delenv("ASVA_SD15_DIR", raising=False)
    return root


def place_released_avsyncd(folder, weights="diffusion_pytorch_model.bin", config='{"_class_name": "UNet3D"}'):
    unet = folder / "unet"
    unet.mkdir(parents=True, exist_ok=True)
    (unet / "config.json").write_text(config)
    torch.save({"w": torch.zeros(1)}, unet / weights)
    return folder


def test_paper_run_with_weights_missing_fails_before_generating_naming_every_file(tiny_dataset, tmp_path, capsys,
                                                                                 home):
    out = tmp_path / "run"
    rc = main(["run", "--model", "avsyncd", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert not out.exists()                                   # nothing generated, not even a run folder
    assert err.startswith("error: pre-flight:") and "nothing was generated" in err
    for name in PAPER_EVALUATOR_FILES:
        assert name in err, name
    assert "checkpoint folder (--model-arg checkpoint=DIR): not given" in err
    assert "Stable Diffusion 1.5" in err and "asva-bench weights fetch stable-diffusion-v1-5" in err
    assert err.count("imagebind_huge.pth: ") == 0 and err.count("imagebind-huge/imagebind_huge.pth") <= 2
    # each item says where it comes from, where it goes and how to check it
    assert err.count("comes from:") >= 8 and str(home / "weights") in err
    assert "asva-bench weights verify --profile paper" in err
    assert "1Paqjad4a8mjujMJBEYqmnNEgGPi595lb" in err        # the sync classifier's Google Drive file


def test_preflight_json_lists_the_unmet_requirements(tiny_dataset, tmp_path, capsys):
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--out", str(tmp_path / "r"), "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 2 and obj["type"] == "PreflightError"
    files = sorted(u["path"].split("/weights/")[1] for u in obj["unmet"])
    assert len(files) == 6 and all(any(f.endswith(n) for f in files) for n in PAPER_EVALUATOR_FILES)


def test_metrics_subset_needs_only_its_backbones(tiny_dataset, tmp_path, capsys):
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--out", str(tmp_path / "r"), "--metrics", "fvd"])
    err = capsys.readouterr().err
    assert rc == 2 and "1 thing asva-bench run needs is" in err and "i3d_torchscript.pt" in err
    assert "imagebind" not in err


def test_missing_dataset_root_is_listed_with_the_weights(tmp_path, capsys):
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tmp_path / "nowhere"),
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "dataset 'avsync15'" in err and "nowhere" in err and "i3d_torchscript.pt" in err


def test_a_mismatched_pinned_file_is_named(tiny_dataset, tmp_path, capsys, home):
    f = home / "weights" / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"not the published file")
    rc = main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
               "--out", str(tmp_path / "r"), "--metrics", "fid"])
    err = capsys.readouterr().err
    assert rc == 2 and "expected 6726825d" in err and str(f) in err


def test_score_preflight_names_the_missing_weights(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--model", "static", "--dataset", "avsync15", "--root", str(tiny_dataset),
                 "--out", str(out), "--no-score", "--limit", "1"]) == 0
    capsys.readouterr()
    rc = main(["score", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing was scored" in err and all(n in err for n in PAPER_EVALUATOR_FILES)
    assert not (out / "results.json").exists()


# --------------------------------------------------------------------------
# adapters' required_files
# --------------------------------------------------------------------------
def test_avsyncd_accepts_the_released_layout_and_our_trained_one(tmp_path, monkeypatch):
    modules = place_released_avsyncd(tmp_path / "exp" / "ckpts" / "checkpoint-37000" / "modules")
    sd = tmp_path / "sd15"
    for rel in RELEASED["stable-diffusion-v1-5"].files:
        f = sd / rel.split("|")[0]
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}" if f.suffix == ".json" else "x")
    adapter = build_adapter("avsyncd", [f"checkpoint={modules}", f"base={sd}"])
    reqs = adapter.required_files(PAPER)
    problems = {r.what: p.problems for r, p in ((u.requirement, u) for u in unmet(reqs))}
    assert list(problems) == ["ImageBind-huge weights (AVSyncD's audio encoder)"]   # only the missing ImageBind
    # the released folder without its weights file, or with a config that does not parse
    (modules / "unet" / "diffusion_pytorch_model.bin").unlink()
    (modules / "unet" / "config.json").write_text("{broken")
    bad = [u for u in unmet(adapter.required_files(PAPER)) if "released layout" in u.requirement.what][0]
    assert any("diffusion_pytorch_model.safetensors" in p and ".bin" in p for p in bad.problems)
    assert any("not readable JSON" in p for p in bad.problems)
    # our own trained format
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "avsyncd_config.json").write_text("{}")
    probs = unmet(build_adapter("avsyncd", [f"checkpoint={ours}", f"base={sd}"]).required_files(PAPER))
    ck = [u for u in probs if "checkpoint folder" in u.requirement.what][0]
    assert ck.problems == [f"missing {ours / 'avsyncd_trainable.safetensors'}"]
    # I2VD has no audio encoder to need; the mini profile needs nothing beyond the package
    assert not any("ImageBind" in r.what for r in build_adapter("i2vd", [f"base={sd}"]).required_files(PAPER))
    from asva_bench.protocol import MINI
    assert build_adapter("avsyncd").required_files(MINI) == []


def test_aadiff_paper_needs_stable_diffusion(monkeypatch, tmp_path):
    reqs = build_adapter("aadiff").required_files(PAPER)
    assert [u.problems for u in unmet(reqs)] == [["not given"]]
    monkeypatch.setenv("ASVA_SD15_DIR", str(tmp_path / "sd"))
    assert "missing folder" in unmet(build_adapter("aadiff").required_files(PAPER))[0].problems[0]


def test_requirement_records_check_files_alternatives_and_json(tmp_path):
    (tmp_path / "a.json").write_text("[1]")
    (tmp_path / "w.safetensors").write_text("x")
    r = Requirement("thing", str(tmp_path), files=("w.bin|w.safetensors", "x.txt"), json_files=("a.json",))
    assert r.problems() == [f"missing {tmp_path / 'x.txt'}", f"{tmp_path / 'a.json'} is not a JSON object"]
    assert Requirement("f", str(tmp_path / "w.safetensors"), kind="file").problems() == []
    with pytest.raises(ValueError, match="kind"):
        Requirement("f", None, kind="blob")


# --------------------------------------------------------------------------
# weights list / verify / fetch
# --------------------------------------------------------------------------
def test_weights_list_shows_the_released_checkpoints_with_source_and_place(capsys, home):
    assert main(["weights", "list", "--profile", "paper", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    folders = {f["name"]: f for f in obj["folders"]}
    assert set(folders) == {"avsyncd-avsync15", "avsyncd-landscapes", "avsyncd-thegreatesthits",
                            "avsync-classifier", "stable-diffusion-v1-5"}
    a = folders["avsyncd-avsync15"]
    assert a["path"] == str(home / "weights" / "avsyncd" / "avsync15_audio-cond_cfg" / "ckpts" / "checkpoint-37000"
                            / "modules")
    assert a["gdrive_id"] == "17ZYopMVM1ZuJ1CBZPzhwAyOa4rR9Eo-_" and a["status"] == "missing" and a["pinned"] == {}
    assert "checkpoint-24000" in folders["avsyncd-landscapes"]["path"]
    assert "checkpoint-16000" in folders["avsyncd-thegreatesthits"]["path"]
    assert folders["stable-diffusion-v1-5"]["hub_id"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert main(["weights", "list", "--profile", "paper"]) == 0
    text = capsys.readouterr().out
    assert "released model folders:" in text and "--model-arg checkpoint=" in text


def test_weights_verify_checks_released_folders_and_exits_nonzero_on_anything_missing(capsys, home):
    folder = RELEASED["avsyncd-avsync15"].path()
    place_released_avsyncd(folder)
    assert main(["weights", "verify", "--profile", "paper", "--json"]) == 1       # other files are missing
    obj = json.loads(capsys.readouterr().out)
    f = {x["name"]: x for x in obj["folders"]}["avsyncd-avsync15"]
    assert f["status"] == "ok" and obj["missing"] >= 6 and not obj["ok"]
    weights = {x["file"]: x for x in f["present_files"]}["unet/diffusion_pytorch_model.bin"]
    assert weights["status"] == "unpinned" and len(weights["sha256"]) == 64      # hashed, recorded
    (folder / "unet" / "config.json").write_text("{oops")
    main(["weights", "verify", "--profile", "paper", "--json"])
    f = {x["name"]: x for x in json.loads(capsys.readouterr().out)["folders"]}["avsyncd-avsync15"]
    assert f["status"] == "bad" and "not readable JSON" in f["problems"][0]


def test_weights_verify_mini_profile_is_complete(capsys):
    assert main(["weights", "verify", "--profile", "mini"]) == 0
    assert "everything is present and checks out" in capsys.readouterr().out


def test_weights_fetch_prints_manual_steps_for_google_drive(capsys, home):
    rc = main(["weights", "fetch", "avsyncd-avsync15"])
    out = capsys.readouterr().out
    assert rc == 3 and "cannot be downloaded by this command" in out
    assert "https://drive.google.com/file/d/17ZYopMVM1ZuJ1CBZPzhwAyOa4rR9Eo-_/view" in out
    assert str(RELEASED["avsyncd-avsync15"].path()) in out and "asva-bench weights verify" in out
    rc = main(["weights", "fetch", "avsync-classifier", "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 3 and "checkpoint-40000/modules" in " ".join(obj["fetched"][0]["manual_steps"])


def test_weights_fetch_offline_refuses_downloads_with_the_fix(capsys):
    rc = main(["weights", "fetch", "fvd-i3d", "--json"])
    obj = json.loads(capsys.readouterr().out)
    f = obj["fetched"][0]["files"][0]
    assert rc == 1 and f["status"] == "failed" and "ASVA_BENCH_OFFLINE is set" in f["error"]
    rc = main(["weights", "fetch", "stable-diffusion-v1-5"])
    assert rc == 3 and "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in capsys.readouterr().out
    assert main(["weights", "fetch", "no-such-thing"]) == 2
