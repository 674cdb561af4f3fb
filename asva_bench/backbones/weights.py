"""The weight cache: where backbone weights live, how they are fetched, verified and loaded.

Layout: ``<root>/weights/<folder>/<filename>``, where ``<root>`` is
``$ASVA_BENCH_HOME`` (default ``~/.cache/asva-bench``) and ``<folder>`` is the
weight file's folder (default: the backbone name). A file shipped inside a
package (``WeightFile.bundled``) is used in place when present.

Rules:

* A missing file is downloaded (when a URL is known and the network allowed)
  to a temporary sibling name, hashed while it streams, and renamed onto the
  final name only when its SHA-256 matches. ``ASVA_BENCH_OFFLINE=1`` forbids
  any network access; then a missing file raises one message that names the
  file, its source and the exact path to place it at.
* A present file whose SHA-256 differs from the pinned value is an error,
  never silently re-used or overwritten. Hashing a multi-GB file costs
  seconds, so a successful check leaves a stamp ``<file>.sha256.json`` (size,
  mtime, digest); a later build trusts the stamp only while size and mtime
  are unchanged. ``asva-bench weights verify`` always re-hashes.
* Checkpoints are read with ``torch.load(weights_only=True)`` or safetensors;
  a pickle that needs arbitrary Python objects is refused. TorchScript
  archives (the I3D) are read with ``torch.jit.load``, whose code runs in the
  TorchScript interpreter, not as Python.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import pickle
import struct
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from tqdm import tqdm

from ..fsutil import (
    DEFAULT_HOME,
    HOME_ENV,
    OFFLINE_ENV,
    atomic_path,
    atomic_write_text,
    home,
)
from ..fsutil import offline as is_offline
from ..state_dicts import state_dict_mismatch
from .base import (
    BackboneSpec,
    WeightFile,
    WeightsChecksumError,
    WeightsFormatError,
    WeightsMissingError,
)

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
# Files above this size show a progress bar while hashed.
_HASH_PROGRESS_BYTES = 256 << 20


# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------
def cache_root(override=None) -> Path:
    """The weights' cache root, resolved: ``override``, else the home folder (fsutil.home)."""
    return home(override).resolve()


def cache_path(spec: BackboneSpec, wf: WeightFile, root=None) -> Path:
    """Where ``wf`` of ``spec`` lives in the cache (whether or not it exists)."""
    return cache_root(root) / "weights" / (wf.folder or spec.name) / wf.filename


def bundled_path(wf: WeightFile) -> Path | None:
    if not wf.bundled:
        return None
    package, _, rel = wf.bundled.partition(":")
    try:
        base = importlib.resources.files(package)
    except ModuleNotFoundError:
        return None
    return Path(str(base.joinpath(rel)))


def locate(spec: BackboneSpec, wf: WeightFile, root=None) -> Path:
    """The path a build would use: the bundled copy when present, else the cache path."""
    b = bundled_path(wf)
    if b is not None and b.is_file():
        return b
    return cache_path(spec, wf, root)


# --------------------------------------------------------------------------
# Hashing, with a stamp so a multi-GB file is not re-hashed on every build
# --------------------------------------------------------------------------
def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_stamp(path: Path) -> str | None:
    """The digest recorded for ``path`` if the file is unchanged since, else None."""
    try:
        data = json.loads(_stamp_path(path).read_text())
        if data.get("size") == path.stat().st_size and data.get("mtime_ns") == path.stat().st_mtime_ns:
            return str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_stamp(path: Path, digest: str) -> None:
    try:
        atomic_write_text(_stamp_path(path), json.dumps({"sha256": digest, **_stat_key(path)}))
    except OSError:
        pass  # a read-only cache only loses the shortcut


def sha256_of(path: Path) -> str:
    """Hash ``path`` (progress bar for large files)."""
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}",
                                     disable=size < _HASH_PROGRESS_BYTES, leave=False) as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def file_sha256(path: Path, use_stamp: bool = True) -> str:
    """SHA-256 of ``path``; with ``use_stamp``, read from / recorded in the stamp."""
    path = Path(path)
    if use_stamp and (d := read_stamp(path)) is not None:
        return d
    digest = sha256_of(path)
    if use_stamp:
        _write_stamp(path, digest)
    return digest


def matches(wf: WeightFile, digest: str) -> bool:
    return wf.sha256 is None or digest.lower().startswith(wf.sha256)


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------
def _source(wf: WeightFile) -> str:
    if wf.url is None and wf.note:  # the note names the manual source (e.g. a Google Drive share)
        return wf.note
    src = wf.url or "no public download; it is produced by this project's training commands"
    return src + (f" ({wf.note})" if wf.note else "")


def missing_message(spec: BackboneSpec, wf: WeightFile, path: Path, reason: str) -> str:
    pin = f"sha256 {wf.sha256}" if wf.sha256 else "no published sha256 (unpinned)"
    return (f"backbone '{spec.name}' ({spec.profile} profile) needs weight file '{wf.filename}' "
            f"[{wf.format}, {pin}], which is not in the cache and {reason}.\n"
            f"  source: {_source(wf)}\n"
            f"  place it at: {path}\n"
            f"  (cache root: ${HOME_ENV} or {DEFAULT_HOME}; then check it with `asva-bench weights verify`)")


def mismatch_message(spec: BackboneSpec, wf: WeightFile, path: Path, digest: str, downloaded: bool) -> str:
    if downloaded:
        return (f"backbone '{spec.name}': the file downloaded from {wf.url} has sha256 {digest}, "
                f"expected {wf.sha256}{'...' if wf.pinning == 'prefix' else ''}; it was discarded and "
                f"nothing was written to {path}. The source may have changed or the download been "
                "altered; fetch the file by hand from a trusted source and check its hash.")
    return (f"backbone '{spec.name}': weight file {path} has sha256 {digest}, expected "
            f"{wf.sha256}{'...' if wf.pinning == 'prefix' else ''}. It is not used. Delete it and "
            f"download '{wf.filename}' again from {_source(wf)}.")


# --------------------------------------------------------------------------
# Resolve (verify, download)
# --------------------------------------------------------------------------
def ensure_weight(spec: BackboneSpec, wf: WeightFile, root=None, download: bool = True) -> Path:
    """Return the verified local path of ``wf``, downloading it when missing and allowed."""
    return resolve_weight(spec, wf, root, download)[0]


def resolve_weight(spec: BackboneSpec, wf: WeightFile, root=None, download: bool = True) -> tuple[Path, str]:
    """Like :func:`ensure_weight`, also returning the file's SHA-256."""
    path = locate(spec, wf, root)
    if path.is_file():
        # no stamps beside bundled files: they live in the package (source tree)
        digest = file_sha256(path, use_stamp=path != bundled_path(wf))
        if not matches(wf, digest):
            raise WeightsChecksumError(mismatch_message(spec, wf, path, digest, downloaded=False))
        return path, digest
    if wf.url is None:
        raise WeightsMissingError(missing_message(spec, wf, path, "has no download URL"))
    if not download:
        raise WeightsMissingError(missing_message(spec, wf, path, "downloads were turned off"))
    if is_offline():
        raise WeightsMissingError(missing_message(spec, wf, path, f"{OFFLINE_ENV} is set, so it was not downloaded"))
    return download_weight(spec, wf, path)


def download_weight(spec: BackboneSpec, wf: WeightFile, path: Path) -> tuple[Path, str]:
    """Stream ``wf.url`` to a temporary sibling of ``path``; rename only if the hash matches."""
    try:
        with atomic_path(path) as tmp:
            digest = _fetch(wf.url, Path(tmp), desc=f"{spec.name}: {wf.filename}")
            if not matches(wf, digest):
                raise WeightsChecksumError(mismatch_message(spec, wf, path, digest, downloaded=True))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise WeightsMissingError(missing_message(spec, wf, path, f"could not be downloaded ({e})")) from e
    _write_stamp(path, digest)
    return path, digest


def _fetch(url: str, dst: Path, desc: str) -> str:
    """Download ``url`` to ``dst``, returning the SHA-256 computed on the fly."""
    req = urllib.request.Request(url, headers={"User-Agent": "asva-bench"})
    h = hashlib.sha256()
    with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as r, open(dst, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc) as bar:
            while chunk := r.read(_CHUNK):
                f.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    return h.hexdigest()


# --------------------------------------------------------------------------
# Status (for `asva-bench weights list / verify`)
# --------------------------------------------------------------------------
@dataclass
class WeightStatus:
    backbone: str
    profile: str
    filename: str
    format: str
    url: str | None
    sha256: str | None
    pinning: str
    path: str
    present: bool
    # missing | present (not hashed yet) | verified | unpinned | mismatch | bad-format
    status: str
    local_sha256: str | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def weight_status(spec: BackboneSpec, wf: WeightFile, root=None, rehash: bool = False) -> WeightStatus:
    """Where ``wf`` is and whether it checks out. Without ``rehash`` only stamps are read."""
    path = locate(spec, wf, root)
    st = WeightStatus(spec.name, spec.profile, wf.filename, wf.format, wf.url, wf.sha256, wf.pinning,
                      str(path), path.is_file(), "missing")
    if not st.present:
        return st
    stamped = path != bundled_path(wf)
    digest = file_sha256(path, use_stamp=False) if rehash else (read_stamp(path) if stamped else None)
    if rehash and stamped:
        _write_stamp(path, digest)
    st.local_sha256 = digest
    if digest is None:
        st.status = "present"
    elif not matches(wf, digest):
        st.status = "mismatch"
        st.detail = f"expected sha256 {wf.sha256}"
    else:
        st.status = "unpinned" if wf.pinning == "unpinned" else "verified"
    if rehash and st.status != "mismatch":
        found = sniff_format(path)
        if not format_compatible(wf.format, found):
            st.status = "bad-format"
            st.detail = f"expected a {wf.format} file, found {found}"
    return st


# --------------------------------------------------------------------------
# Formats and loading
# --------------------------------------------------------------------------
def sniff_format(path: Path) -> str:
    """What a file is, from its first bytes / zip directory, without loading it.

    Returns 'torchscript', 'state_dict' (torch.save zip), 'state_dict-legacy'
    (pre-1.6 torch.save), 'safetensors', 'json' or 'unknown'.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if any(n.split("/", 1)[-1].startswith("code/") for n in names):  # torch.save never writes code/
                return "torchscript"
            if any(n.endswith("data.pkl") for n in names):
                return "state_dict"
            return "unknown"
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) >= 9:  # safetensors: u64 little-endian header length, then a JSON object
            (n,) = struct.unpack("<Q", head[:8])
            if 2 <= n <= 100_000_000 and head[8:9] == b"{":
                return "safetensors"
        if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):  # pickle: legacy torch.save
            return "state_dict-legacy"
        if head.lstrip()[:1] in (b"{", b"["):
            return "json"
    except OSError:
        pass
    return "unknown"


def format_compatible(declared: str, found: str) -> bool:
    if declared == "state_dict":
        return found in ("state_dict", "state_dict-legacy")
    return declared == found


_FORMAT_WORDS = {"torchscript": "a TorchScript archive", "state_dict": "a PyTorch state dict",
                 "state_dict-legacy": "a PyTorch state dict (legacy format)",
                 "safetensors": "a safetensors file", "json": "a JSON file",
                 "unknown": "not a recognised model file"}


def _format_error(spec: BackboneSpec, wf: WeightFile, path: Path, found: str, extra: str = "") -> WeightsFormatError:
    return WeightsFormatError(
        f"backbone '{spec.name}': {path} is {_FORMAT_WORDS.get(found, found)}, but '{wf.filename}' must be "
        f"{_FORMAT_WORDS.get(wf.format, wf.format)}{extra}. Delete it and place the right file there "
        f"(source: {_source(wf)}).")


def load_state_dict(spec: BackboneSpec, wf: WeightFile, path: Path) -> dict[str, torch.Tensor]:
    """Read a flat tensor dict from a state-dict or safetensors file, safely."""
    path = Path(path)
    found = sniff_format(path)
    if not format_compatible(wf.format, found):
        raise _format_error(spec, wf, path, found)
    if wf.format == "safetensors":
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise _format_error(spec, wf, path, "unknown", f" (safetensors: {e})") from e
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=(found == "state_dict"))
        except pickle.UnpicklingError as e:
            raise WeightsFormatError(
                f"backbone '{spec.name}': refused to load {path}: it is a pickle that needs arbitrary "
                "Python objects, not a plain state dict, and such files are never unpickled here "
                f"(weights_only=True). Use the published file from {_source(wf)}, or re-save a trusted "
                "checkpoint as `torch.save(model.state_dict(), path)` or with safetensors.") from e
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise _format_error(spec, wf, path, "unknown", f" (torch.load: {str(e).splitlines()[0]})") from e
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        what = (f"a dict with keys {sorted(map(str, sd))[:5]}" if isinstance(sd, Mapping) else type(sd).__name__)
        raise WeightsFormatError(
            f"backbone '{spec.name}': {path} holds {what}, not a flat name -> tensor state dict. "
            f"Use the published file from {_source(wf)} (a checkpoint wrapping the weights, e.g. under "
            "'state_dict' or 'model', must be unwrapped and re-saved).")
    return dict(sd)


def apply_state_dict(spec: BackboneSpec, wf: WeightFile, path: Path, module: torch.nn.Module,
                     state_dict: Mapping[str, torch.Tensor]) -> None:
    """``module.load_state_dict`` with an error that lists missing / unexpected / misshapen keys."""
    problem = state_dict_mismatch(module.state_dict(), state_dict)
    if problem:
        raise WeightsFormatError(
            f"backbone '{spec.name}': the state dict in {path} does not fit its network; {problem}. "
            f"This is not the file '{wf.filename}' the backbone expects; "
            f"delete it and place the published file there (source: {_source(wf)}).")
    module.load_state_dict(state_dict, strict=True)


def load_torchscript(spec: BackboneSpec, wf: WeightFile, path: Path, device: str) -> torch.jit.ScriptModule:
    path = Path(path)
    found = sniff_format(path)
    if found != "torchscript":
        raise _format_error(spec, wf, path, found)
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as e:
        raise _format_error(spec, wf, path, "unknown", f" (torch.jit.load: {str(e).splitlines()[0]})") from e
