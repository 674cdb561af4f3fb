"""Released model folders the paper profile uses: where each comes from and where it goes.

The evaluator backbones (Inception, I3D, ImageBind-huge, the sync
classifier's module files) are single files in the backbone registry
(:mod:`asva_bench.backbones`). This module lists the *folders*: the authors'
released AVSyncD checkpoints, the released sync-classifier folder as a whole
(its three module configs beside the weights) and Stable Diffusion 1.5, each
with its source, its place under ``$ASVA_BENCH_HOME/weights/`` and the files
that must be there. `asva-bench weights list | verify | fetch` read it
(docs/weights.md).

Layout of a released AVSyncD checkpoint (the authors' README): an experiment
folder ``<exp>/ckpts/checkpoint-<N>/modules/unet/`` holding a diffusers model
folder (``config.json`` + ``diffusion_pytorch_model.bin`` or
``.safetensors``) with the whole 3D UNet. It is given to the adapter as
``--model-arg checkpoint=<exp>/ckpts/checkpoint-<N>/modules``.

No SHA-256 of these files is published by their authors; they are
*unpinned* (`weights verify` still checks that every file is there and every
config parses, and records the local digest). Stable Diffusion 1.5 comes from
the Hugging Face Hub, whose client checks each large file against the
SHA-256 the Hub records for it while downloading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .requirements import VERIFY_COMMAND, Requirement

#: Google Drive shares cannot be fetched without a browser session; these are the steps instead.
GDRIVE_URL = "https://drive.google.com/file/d/{id}/view"
README_URL = "https://github.com/lzhangbj/ASVA#2-download-pretrained-models"


@dataclass(frozen=True)
class ReleasedFolder:
    """One released model folder.

    ``folder`` is relative to ``$ASVA_BENCH_HOME/weights``. ``files`` are
    relative to it ("a|b": either); ``json_files`` must parse. ``sha256`` pins
    files (relative path -> full hex digest) where an authoritative digest is
    known. Exactly one of ``gdrive_id`` (manual download) and ``hub_id``
    (fetched with huggingface_hub) names the source.
    """
    name: str
    kind: str                   # "model checkpoint" | "evaluator" | "base model"
    description: str
    folder: str
    files: tuple[str, ...]
    json_files: tuple[str, ...] = ()
    gdrive_id: str | None = None
    hub_id: str | None = None
    hub_patterns: tuple[str, ...] = ()
    sha256: dict = field(default_factory=dict)
    unpack: str = ""            # where the download's content goes (manual steps)
    use: str = ""               # how a run is pointed at it ({path} is filled in)
    dataset: str | None = None
    profile: str = "paper"

    @property
    def source(self) -> str:
        if self.gdrive_id:
            return f"Google Drive {GDRIVE_URL.format(id=self.gdrive_id)} (linked from {README_URL})"
        return f"Hugging Face Hub {self.hub_id}"

    def path(self, root=None) -> Path:
        from .backbones.weights import cache_root
        return cache_root(root) / "weights" / self.folder

    def requirement(self, path=..., what: str | None = None, fix: str | None = None) -> Requirement:
        """The pre-flight record of this folder at ``path`` (default: its cache place; None: not given)."""
        place = self.path()
        path = place if path is ... else path
        return Requirement(what=what or f"{self.description} [{self.name}]",
                           path=None if path is None else str(path), kind="folder",
                           files=self.files, json_files=self.json_files, source=self.source,
                           place_at=str(place), fix=fix or f"asva-bench weights fetch {self.name}",
                           check=VERIFY_COMMAND, hub_id=self.hub_id)

    def manual_steps(self, root=None) -> list[str]:
        dest = self.path(root)
        if self.hub_id:
            return [f"huggingface-cli download {self.hub_id} --local-dir {dest}"
                    + "".join(f" --include '{p}'" for p in self.hub_patterns)]
        steps = [f"open {GDRIVE_URL.format(id=self.gdrive_id)} in a browser (signed in to Google if it asks) "
                 "and download the archive",
                 f"unpack it and move {self.unpack} so that this folder exists: {dest}",
                 f"it must then hold: {', '.join(f.replace('|', ' or ') for f in self.files)}",
                 f"check it: {VERIFY_COMMAND}"]
        return steps

    def to_dict(self, root=None) -> dict:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "profile": self.profile, "dataset": self.dataset, "path": str(self.path(root)),
                "files": list(self.files), "source": self.source, "gdrive_id": self.gdrive_id,
                "hub_id": self.hub_id, "pinned": dict(self.sha256), "use": self.use.format(path=self.path(root))}


def _avsyncd(dataset: str, label: str, exp: str, step: int, gdrive: str) -> ReleasedFolder:
    modules = f"{exp}/ckpts/checkpoint-{step}/modules"
    return ReleasedFolder(
        name=f"avsyncd-{dataset}", kind="model checkpoint", dataset=dataset,
        description=f"AVSyncD released checkpoint, {label} (checkpoint-{step})",
        folder=f"avsyncd/{modules}",
        files=("unet/config.json", "unet/diffusion_pytorch_model.safetensors|unet/diffusion_pytorch_model.bin"),
        json_files=("unet/config.json",), gdrive_id=gdrive,
        unpack=f"the folder {exp}/ (the archive's top folder; it holds ckpts/checkpoint-{step}/modules/unet/) "
               "into $ASVA_BENCH_HOME/weights/avsyncd/",
        use=f"--model avsyncd --model-arg checkpoint={{path}} --dataset {dataset}")


RELEASED = {f.name: f for f in (
    _avsyncd("avsync15", "AVSync15", "avsync15_audio-cond_cfg", 37000, "17ZYopMVM1ZuJ1CBZPzhwAyOa4rR9Eo-_"),
    _avsyncd("landscapes", "Landscapes", "landscapes_audio-cond_cfg", 24000, "1Wa0wK9D_qlkT8U2O8zCz6UoQql-A3zjD"),
    _avsyncd("thegreatesthits", "TheGreatestHits", "thegreatesthits_audio-cond_cfg", 16000,
             "1u8Ksc9TrDhcr6tV_7xH9RsbdkklH-2y9"),
    ReleasedFolder(
        name="avsync-classifier", kind="evaluator",
        description="ASVA sync classifier, released VGGSS checkpoint-40000 (RelSync, AlignSync)",
        folder="avsync-classifier",
        files=tuple(f"{m}/{f}" for m in ("audio_encoder", "video_encoder", "head")
                    for f in ("config.json", "diffusion_pytorch_model.bin")),
        json_files=tuple(f"{m}/config.json" for m in ("audio_encoder", "video_encoder", "head")),
        gdrive_id="1Paqjad4a8mjujMJBEYqmnNEgGPi595lb",
        unpack="the three folders audio_encoder/, video_encoder/ and head/ from "
               "vggss_sync_contrast/ckpts/checkpoint-40000/modules/ into $ASVA_BENCH_HOME/weights/avsync-classifier/",
        use="found by the paper profile's scorer (backbone avsync-classifier)"),
    ReleasedFolder(
        name="stable-diffusion-v1-5", kind="base model",
        description="Stable Diffusion 1.5 (diffusers layout), the base of AVSyncD, I2VD and AADiff",
        folder="stable-diffusion-v1-5",
        files=("unet/config.json", "unet/diffusion_pytorch_model.safetensors|unet/diffusion_pytorch_model.bin",
               "vae/config.json", "vae/diffusion_pytorch_model.safetensors|vae/diffusion_pytorch_model.bin",
               "text_encoder/config.json", "text_encoder/model.safetensors|text_encoder/pytorch_model.bin",
               "tokenizer/vocab.json", "tokenizer/merges.txt"),
        json_files=("unet/config.json", "vae/config.json", "text_encoder/config.json"),
        hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        hub_patterns=("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                      "text_encoder/model.safetensors", "tokenizer/*", "scheduler/*"),
        use="--model-arg base={path} (or export ASVA_SD15_DIR={path})"),
)}


def get_released(name: str) -> ReleasedFolder:
    from .registry import Registry
    reg: Registry[ReleasedFolder] = Registry("released model folder")
    for k, v in RELEASED.items():
        reg.register(k, v)
    return reg.get(name)


# --------------------------------------------------------------------------
# Status and fetching
# --------------------------------------------------------------------------
def folder_status(rf: ReleasedFolder, root=None, rehash: bool = False) -> dict:
    """present / missing files, configs that do not parse, pinned digests (re-hashed with ``rehash``)."""
    from .backbones.weights import _write_stamp, read_stamp, sha256_of
    base = rf.path(root)
    req = rf.requirement(base)
    problems = req.problems()
    files = []
    if base.is_dir():
        for rel in rf.files:
            found = next((base / o for o in rel.split("|") if (base / o).is_file()), None)
            if found is None:
                continue
            relname = found.relative_to(base).as_posix()
            digest = None
            if relname.endswith(".json"):
                pass  # small configs: checked by parsing
            elif rehash:
                digest = sha256_of(found)
                _write_stamp(found, digest)
            else:
                digest = read_stamp(found)
            pin = rf.sha256.get(relname)
            state = ("mismatch" if pin and digest and not digest.startswith(pin) else
                     "verified" if pin and digest else "unpinned" if digest else "present")
            if state == "mismatch":
                problems.append(f"{found} has sha256 {digest}, expected {pin}")
            files.append({"file": relname, "sha256": digest, "pinned": pin, "status": state})
    status = "missing" if not base.is_dir() or any(p.startswith(("missing", "not given")) for p in problems) \
        else "bad" if problems else "ok"
    return {**rf.to_dict(root), "status": status, "problems": problems, "present_files": files}


def fetch_released(rf: ReleasedFolder, root=None, progress: bool = True) -> dict:
    """Download a hub-hosted folder (huggingface_hub checks each file's SHA-256 as it arrives);
    for a Google Drive one, return the manual steps (nothing is downloaded)."""
    dest = rf.path(root)
    if rf.hub_id is None:
        return {"name": rf.name, "downloaded": False, "path": str(dest), "manual_steps": rf.manual_steps(root)}
    from .backbones.weights import is_offline
    if is_offline():
        return {"name": rf.name, "downloaded": False, "path": str(dest),
                "manual_steps": ["unset ASVA_BENCH_OFFLINE, or on a machine with network:"] + rf.manual_steps(root)}
    from huggingface_hub import snapshot_download
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the hub client writes each file under a temporary name and moves it into place when complete
    snapshot_download(rf.hub_id, local_dir=str(dest), allow_patterns=list(rf.hub_patterns) or None)
    return {"name": rf.name, "downloaded": True, "path": str(dest), "manual_steps": []}


__all__ = ["RELEASED", "ReleasedFolder", "fetch_released", "folder_status", "get_released"]
