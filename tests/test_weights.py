"""The weight cache: locations, download-verify-rename, checksums, offline errors, safe loading, CLI."""

import argparse
import hashlib
import json
import os

import pytest
import torch
import torch.nn as nn

from asva_bench.backbones import (BACKBONES, BackboneSpec, ImageBackbone, WeightFile, WeightsChecksumError,
                                  WeightsFormatError, WeightsMissingError, build_backbone, get_backbone_spec)
from asva_bench.backbones import weights as W
from asva_bench.weights_cli import add_weights_commands

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script's deprecation notice


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache root and no network."""
    root = tmp_path / "home"
    monkeypatch.setenv(W.HOME_ENV, str(root))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    return root


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class TinyLinear(ImageBackbone):
    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def preprocess(self, frames):
        return frames.mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(x)


def build_tiny(spec, paths, device):
    wf = spec.weights[0]
    model = TinyLinear()
    W.apply_state_dict(spec, wf, paths[wf.filename], model, W.load_state_dict(spec, wf, paths[wf.filename]))
    return model.to(device)


def tiny_spec(wf: WeightFile, name="test-tiny") -> BackboneSpec:
    return BackboneSpec(name=name, profile="mini", kind="image", weights=(wf,), preprocessing="mean over pixels",
                        output="[N, 3]", builder=build_tiny, description="test backbone")


def tiny_state_dict_bytes(tmp_path, seed=0) -> tuple[bytes, dict]:
    torch.manual_seed(seed)
    sd = TinyLinear().state_dict()
    p = tmp_path / f"sd{seed}.pth"
    torch.save(sd, p)
    return p.read_bytes(), sd


def run_cli(argv, capsys):
    p = argparse.ArgumentParser(prog="asva-bench")
    add_weights_commands(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------
def test_cache_root_env_default_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv(W.HOME_ENV, str(tmp_path / "a"))
    assert W.cache_root() == (tmp_path / "a").resolve()
    assert W.cache_root(tmp_path / "b") == (tmp_path / "b").resolve()
    monkeypatch.delenv(W.HOME_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert W.cache_root() == (tmp_path / "user" / ".cache" / "asva-bench").resolve()


def test_cache_path_layout_and_shared_folder(isolated_cache):
    wf = WeightFile("w.pth", folder="shared")
    assert W.cache_path(tiny_spec(wf), wf) == isolated_cache.resolve() / "weights" / "shared" / "w.pth"
    wf2 = WeightFile("w.pth")
    assert W.cache_path(tiny_spec(wf2, "my-net"), wf2) == isolated_cache.resolve() / "weights" / "my-net" / "w.pth"
    # the paper FID variants share one file, never two downloads
    a, b = get_backbone_spec("fid-inception-229"), get_backbone_spec("fid-inception-299")
    assert W.cache_path(a, a.weights[0]) == W.cache_path(b, b.weights[0])


def test_bundled_weights_are_used_in_place(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgroot" / "fakeassets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    data, _ = tiny_state_dict_bytes(tmp_path)
    (pkg / "tiny.pth").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgroot"))
    wf = WeightFile("tiny.pth", sha256=sha256_bytes(data), bundled="fakeassets:tiny.pth")
    model = tiny_spec(wf).build()
    assert model.weight_paths["tiny.pth"] == pkg / "tiny.pth"
    assert model.weights_digest == sha256_bytes(data)
    assert sorted(p.name for p in pkg.iterdir()) == ["__init__.py", "tiny.pth"]  # no stamp in the package


def test_weightfile_and_spec_validation():
    with pytest.raises(ValueError, match="8-64 hex"):
        WeightFile("x.pth", sha256="xyz")
    with pytest.raises(ValueError, match="format"):
        WeightFile("x.pth", format="pickle")
    assert WeightFile("x", sha256="ABCDEF12").sha256 == "abcdef12"
    assert WeightFile("x", sha256="abcdef12").pinning == "prefix"
    assert WeightFile("x", sha256="a" * 64).pinning == "full"
    assert WeightFile("x").pinning == "unpinned"
    with pytest.raises(ValueError, match="profile"):
        tiny_spec(WeightFile("x")).replace(profile="huge")


def test_unknown_backbone_suggests_names():
    with pytest.raises(KeyError, match="Did you mean 'imagebind-huge'"):
        build_backbone("imagebind-hug")


# --------------------------------------------------------------------------
# Missing weights: offline, unreachable
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fid-inception-229", "fid-inception-299", "fvd-i3d", "imagebind-huge"])
def test_offline_missing_paper_weights_name_file_source_and_path(name, isolated_cache):
    spec = get_backbone_spec(name)
    wf = spec.weights[0]
    with pytest.raises(WeightsMissingError) as e:
        build_backbone(name)
    msg = str(e.value)
    expected_path = W.cache_path(spec, wf)
    assert f"backbone '{name}'" in msg and wf.filename in msg and wf.url in msg
    assert f"place it at: {expected_path}" in msg
    assert "ASVA_BENCH_OFFLINE" in msg
    assert not expected_path.exists()


def test_offline_flag_blocks_even_reachable_sources(tmp_path):
    src = tmp_path / "src.pth"
    data, _ = tiny_state_dict_bytes(tmp_path)
    src.write_bytes(data)
    spec = tiny_spec(WeightFile("tiny.pth", url=src.as_uri(), sha256=sha256_bytes(data)))
    with pytest.raises(WeightsMissingError, match="ASVA_BENCH_OFFLINE"):
        spec.build()
    assert not W.cache_path(spec, spec.weights[0]).exists()


def test_unreachable_url_gives_the_same_clear_error(monkeypatch):
    monkeypatch.delenv(W.OFFLINE_ENV)
    # port 9 (discard) on loopback: refused at once, no network involved
    spec = tiny_spec(WeightFile("tiny.pth", url="http://127.0.0.1:9/tiny.pth", sha256="a" * 64))
    path = W.cache_path(spec, spec.weights[0])
    with pytest.raises(WeightsMissingError) as e:
        spec.build()
    msg = str(e.value)
    assert "could not be downloaded" in msg and "http://127.0.0.1:9/tiny.pth" in msg and str(path) in msg
    assert not path.exists() and list(path.parent.iterdir()) == []  # no temp file left


def test_no_url_and_download_off_messages():
    spec = tiny_spec(WeightFile("tiny.pth"))
    with pytest.raises(WeightsMissingError, match="no download URL"):
        spec.build()
    spec2 = tiny_spec(WeightFile("tiny.pth", url="http://127.0.0.1:9/x"))
    with pytest.raises(WeightsMissingError, match="downloads were turned off"):
        spec2.build(download=False)


# --------------------------------------------------------------------------
# Download: temp file, verify, rename
# --------------------------------------------------------------------------
def test_download_verifies_then_renames(tmp_path, monkeypatch):
    monkeypatch.delenv(W.OFFLINE_ENV)
    data, sd = tiny_state_dict_bytes(tmp_path)
    src = tmp_path / "src.pth"
    src.write_bytes(data)
    spec = tiny_spec(WeightFile("tiny.pth", url=src.as_uri(), sha256=sha256_bytes(data)))
    model = spec.build()
    path = W.cache_path(spec, spec.weights[0])
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.pth", "tiny.pth.sha256.json"]
    assert json.loads((path.parent / "tiny.pth.sha256.json").read_text())["sha256"] == sha256_bytes(data)
    assert torch.equal(model.fc.weight, sd["fc.weight"])
    assert model.name == "test-tiny" and model.profile == "mini" and not model.training
    assert all(not p.requires_grad for p in model.parameters())


def test_download_with_wrong_checksum_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(W.OFFLINE_ENV)
    data, _ = tiny_state_dict_bytes(tmp_path)
    src = tmp_path / "src.pth"
    src.write_bytes(data)
    spec = tiny_spec(WeightFile("tiny.pth", url=src.as_uri(), sha256="0" * 64))
    with pytest.raises(WeightsChecksumError) as e:
        spec.build()
    path = W.cache_path(spec, spec.weights[0])
    assert "discarded" in str(e.value) and sha256_bytes(data) in str(e.value) and str(path) in str(e.value)
    assert not path.exists() and list(path.parent.iterdir()) == []


# --------------------------------------------------------------------------
# Checksums of present files
# --------------------------------------------------------------------------
def test_present_file_with_wrong_checksum_is_an_error_every_time(tmp_path):
    data, _ = tiny_state_dict_bytes(tmp_path)
    spec = tiny_spec(WeightFile("tiny.pth", url="http://127.0.0.1:9/x", sha256="0" * 64))
    path = W.cache_path(spec, spec.weights[0])
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    for _ in range(2):  # never silently re-used, never overwritten
        with pytest.raises(WeightsChecksumError) as e:
            spec.build()
        assert "backbone 'test-tiny'" in str(e.value) and "Delete it and download" in str(e.value)
    assert path.read_bytes() == data


def test_prefix_pin_and_unpinned(tmp_path):
    data, _ = tiny_state_dict_bytes(tmp_path)
    digest = sha256_bytes(data)
    for sha in (digest[:8], None):
        spec = tiny_spec(WeightFile("tiny.pth", sha256=sha), name=f"t-{sha}")
        path = W.cache_path(spec, spec.weights[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        assert spec.build().weights_digest == digest


def test_stamp_is_trusted_only_while_the_file_is_unchanged(tmp_path):
    data, _ = tiny_state_dict_bytes(tmp_path, seed=0)
    other, _ = tiny_state_dict_bytes(tmp_path, seed=1)
    assert len(data) == len(other) and data != other
    spec = tiny_spec(WeightFile("tiny.pth", sha256=sha256_bytes(data)))
    path = W.cache_path(spec, spec.weights[0])
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    spec.build()
    assert W.read_stamp(path) == sha256_bytes(data)
    path.write_bytes(other)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later write, same size
    assert W.read_stamp(path) is None
    with pytest.raises(WeightsChecksumError):
        spec.build()


# --------------------------------------------------------------------------
# Formats and safe loading
# --------------------------------------------------------------------------
def _place(spec, payload: bytes):
    path = W.cache_path(spec, spec.weights[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_sniff_format(tmp_path):
    sd = {"w": torch.ones(2)}
    torch.save(sd, tmp_path / "zip.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.jit.script(nn.Linear(2, 2)).save(str(tmp_path / "ts.pt"))
    from safetensors.torch import save_file
    save_file(sd, str(tmp_path / "w.safetensors"))
    (tmp_path / "c.json").write_text('{"a": 1}')
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a model")
    got = {p: W.sniff_format(tmp_path / p) for p in
           ("zip.pth", "legacy.pth", "ts.pt", "w.safetensors", "c.json", "junk.bin")}
    assert got == {"zip.pth": "state_dict", "legacy.pth": "state_dict-legacy", "ts.pt": "torchscript",
                   "w.safetensors": "safetensors", "c.json": "json", "junk.bin": "unknown"}


def test_legacy_and_safetensors_state_dicts_load(tmp_path):
    torch.manual_seed(3)
    sd = TinyLinear().state_dict()
    legacy = tmp_path / "legacy.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    spec = tiny_spec(WeightFile("tiny.pth"))
    _place(spec, legacy.read_bytes())
    assert torch.equal(spec.build().fc.bias, sd["fc.bias"])
    from safetensors.torch import save_file
    st = tmp_path / "w.safetensors"
    save_file(sd, str(st))
    spec2 = tiny_spec(WeightFile("tiny.safetensors", format="safetensors"), name="t-st")
    _place(spec2, st.read_bytes())
    assert torch.equal(spec2.build().fc.weight, sd["fc.weight"])


def test_full_pickle_is_refused(tmp_path):
    p = tmp_path / "module.pth"
    torch.save(TinyLinear(), p)  # a whole module: needs arbitrary classes to unpickle
    spec = tiny_spec(WeightFile("tiny.pth"))
    _place(spec, p.read_bytes())
    with pytest.raises(WeightsFormatError) as e:
        spec.build()
    assert "refused" in str(e.value) and "weights_only=True" in str(e.value) and "test-tiny" in str(e.value)


@pytest.mark.parametrize("payload_kind", ["torchscript", "junk", "wrapped"])
def test_wrong_file_format_is_named(tmp_path, payload_kind):
    spec = tiny_spec(WeightFile("tiny.pth", url="https://example.org/tiny.pth"))
    p = tmp_path / "payload"
    if payload_kind == "torchscript":
        torch.jit.script(nn.Linear(3, 3)).save(str(p))
        expect = "is a TorchScript archive, but 'tiny.pth' must be a PyTorch state dict"
    elif payload_kind == "junk":
        p.write_bytes(b"<html>404 not found</html>")
        expect = "is not a recognised model file"
    else:
        torch.save({"state_dict": TinyLinear().state_dict(), "epoch": 3}, p)
        expect = "holds a dict with keys ['epoch', 'state_dict']"
    _place(spec, p.read_bytes())
    with pytest.raises(WeightsFormatError) as e:
        spec.build()
    assert expect in str(e.value) and "test-tiny" in str(e.value) and "https://example.org/tiny.pth" in str(e.value)


def test_state_dict_with_missing_unexpected_and_misshapen_keys(tmp_path):
    sd = TinyLinear().state_dict()
    bad = {"fc.weight": torch.zeros(4, 3), "extra.bias": torch.zeros(1)}  # fc.bias missing
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    spec = tiny_spec(WeightFile("tiny.pth"))
    _place(spec, p.read_bytes())
    with pytest.raises(WeightsFormatError) as e:
        spec.build()
    msg = str(e.value)
    assert "1 missing key(s): fc.bias" in msg and "1 unexpected key(s): extra.bias" in msg
    assert "fc.weight (4, 3) != (3, 3)" in msg and "test-tiny" in msg
    assert set(sd) == {"fc.weight", "fc.bias"}


def test_torchscript_expected_but_state_dict_found(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "sd.pth")
    wf = WeightFile("net.pt", format="torchscript", url="https://example.org/net.pt")
    spec = tiny_spec(wf)
    path = _place(spec, (tmp_path / "sd.pth").read_bytes())
    with pytest.raises(WeightsFormatError, match="is a PyTorch state dict, but 'net.pt' must be a TorchScript"):
        W.load_torchscript(spec, wf, path, "cpu")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def test_cli_list_json_reports_each_state(tmp_path, monkeypatch, capsys):
    data, _ = tiny_state_dict_bytes(tmp_path)
    good = tiny_spec(WeightFile("tiny.pth", sha256=sha256_bytes(data)), name="test-verified")
    monkeypatch.setitem(BACKBONES._items, good.name, good)
    _place(good, data)
    good.build()  # leaves a verification stamp
    ib = get_backbone_spec("imagebind-huge")
    _place(ib, data)  # an unpinned file, not hashed yet
    rc, out = run_cli(["weights", "list", "--json"], capsys)
    obj = json.loads(out)  # exactly one JSON object
    assert rc == 0 and obj["offline"] is True
    status = {(b["name"], w["filename"]): w for b in obj["backbones"] for w in b["weights"]}
    assert status[("test-verified", "tiny.pth")]["status"] == "verified"
    assert status[("imagebind-huge", "imagebind_huge.pth")]["status"] == "present"
    assert status[("fvd-i3d", "i3d_torchscript.pt")]["status"] == "missing"
    assert status[("fvd-i3d", "i3d_torchscript.pt")]["path"] == str(W.cache_path(get_backbone_spec("fvd-i3d"),
                                                                               get_backbone_spec("fvd-i3d").weights[0]))
    rc, out = run_cli(["weights", "list", "--profile", "mini", "--json"], capsys)
    assert {b["name"] for b in json.loads(out)["backbones"]} >= {"test-verified"}
    assert all(b["profile"] == "mini" for b in json.loads(out)["backbones"])


def test_cli_verify_flags_mismatch_and_unpinned(tmp_path, capsys):
    data, _ = tiny_state_dict_bytes(tmp_path)
    inc = get_backbone_spec("fid-inception-229")
    _place(inc, data)  # not the published file: its digest does not start with 6726825d
    ib = get_backbone_spec("imagebind-huge")
    _place(ib, data)
    rc, out = run_cli(["weights", "verify", "--profile", "paper", "--json"], capsys)
    obj = json.loads(out)
    assert rc == 1 and obj["ok"] is False and obj["bad"] == 1  # shared file counted once
    status = {(b["name"], w["filename"]): w for b in obj["backbones"] for w in b["weights"]}
    w = status[("fid-inception-229", inc.weights[0].filename)]
    assert w["status"] == "mismatch" and w["local_sha256"] == sha256_bytes(data) and w["pinning"] == "prefix"
    w = status[("imagebind-huge", "imagebind_huge.pth")]
    assert w["status"] == "unpinned" and w["local_sha256"] == sha256_bytes(data)
    rc, out = run_cli(["weights", "verify"], capsys)
    assert rc == 1 and "CHECKSUM MISMATCH" in out and "present, unpinned" in out and "MISSING" in out


def test_cli_verify_detects_wrong_format_of_unpinned_file(tmp_path, capsys):
    i3d = get_backbone_spec("fvd-i3d")
    torch.save({"w": torch.ones(1)}, tmp_path / "sd.pth")
    _place(i3d, (tmp_path / "sd.pth").read_bytes())
    rc, out = run_cli(["weights", "verify", "--json"], capsys)
    obj = json.loads(out)
    w = [w for b in obj["backbones"] if b["name"] == "fvd-i3d" for w in b["weights"]][0]
    assert rc == 1 and w["status"] == "bad-format" and "expected a torchscript file, found state_dict" in w["detail"]


def test_cli_bare_weights_lists(capsys):
    rc, out = run_cli(["weights"], capsys)
    assert rc == 0 and "weight cache:" in out and "imagebind-huge" in out and "MISSING" in out
