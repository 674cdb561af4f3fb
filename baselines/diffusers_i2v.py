"""diffusers-i2v: any diffusers image-to-video pipeline as a peer on the board.

`asva-bench run --model diffusers-i2v --model-arg model=DIR_OR_HUB_ID ...`
loads the pipeline class named in the folder's ``model_index.json``
(``_class_name``) and runs it from each test clip's first frame. Supported
classes and how each is called (docs/adapters.md, "diffusers-i2v"):

=================================  ======  ===========================  ===================
class                              prompt  output rate (default)        rate argument
=================================  ======  ===========================  ===================
StableVideoDiffusionPipeline       none    unet ``num_frames`` at 7 fps ``fps`` (conditioning)
I2VGenXLPipeline                   class   16 frames at 8 fps           ``target_fps``
CogVideoXImageToVideoPipeline      class   49 frames at 8 fps           none (8 fps model)
=================================  ======  ===========================  ===================

The model's output is its own: ``num_frames`` frames at ``fps``, at
``height`` x ``width`` (default: the protocol's frame size). The adapter
declares that rate (``native_output``) and the harness maps it onto the
protocol with the protocol's own rules (asva_bench/adapters/resample.py):
protocol frame k is the first native frame at or after k / 6 s, then centre
crop and antialiased resize; the mapping is recorded in run.json. The
prompt, where the pipeline takes one, is the clip's class text. Frame 1 is
the input image (``first_frame=input``, the default) or the model's own
(``first_frame=generated``); either is recorded.

Each clip is generated alone with its own seeded generator, so a clip never
depends on its batch-mates and the same command writes the same clips.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asva_bench.adapters.api import Adapter, AdapterError, ClipBatch
from asva_bench.protocol import ProtocolConfig


@dataclass(frozen=True)
class PipelineCall:
    """How one pipeline class is called."""
    prompt: bool                 # takes the class text as ``prompt``
    default_frames: int | None   # None: read ``num_frames`` from unet/config.json
    default_fps: float
    fps_argument: str | None     # the call argument that tells the model its frame rate
    default_steps: int


PIPELINES = {
    "StableVideoDiffusionPipeline": PipelineCall(prompt=False, default_frames=None, default_fps=7.0,
                                                 fps_argument="fps", default_steps=25),
    "I2VGenXLPipeline": PipelineCall(prompt=True, default_frames=16, default_fps=8.0,
                                     fps_argument="target_fps", default_steps=50),
    "CogVideoXImageToVideoPipeline": PipelineCall(prompt=True, default_frames=49, default_fps=8.0,
                                                  fps_argument=None, default_steps=50),
}
#: ``num_frames`` of an SVD unet config that does not say (the original SVD release).
SVD_FRAMES = 14


def _hub_file(repo_id: str, filename: str) -> Path | None:
    """A file of a hub repository from the local hub cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
        got = try_to_load_from_cache(repo_id, filename)
    except Exception:  # not a valid repo id, no cache
        return None
    return Path(got) if isinstance(got, str) else None


class DiffusersI2V(Adapter):
    name = "diffusers-i2v"
    inputs = ("image", "text")
    batch_size = 4
    description = ("any diffusers image-to-video pipeline (Stable Video Diffusion, I2VGen-XL, CogVideoX-I2V) from "
                   "a folder or hub id; its frames mapped onto the protocol by its timestamp and spatial rules")

    def __init__(self, model: str | None = None, num_frames: int | None = None, fps: float | None = None,
                 steps: int | None = None, height: int | None = None, width: int | None = None,
                 guidance: float | None = None, first_frame: str = "input", dtype: str = "auto"):
        if not model:
            raise AdapterError("adapter 'diffusers-i2v' needs --model-arg model=DIR_OR_HUB_ID: a local diffusers "
                               "pipeline folder (with model_index.json) or a Hugging Face Hub id")
        for key, v in (("num_frames", num_frames), ("steps", steps), ("height", height), ("width", width)):
            if v is not None and not (isinstance(v, int) and v >= 1):
                raise AdapterError(f"adapter 'diffusers-i2v': {key} must be a positive integer, got {v!r}")
        for key, v in (("height", height), ("width", width)):
            if v is not None and v % 8:
                raise AdapterError(f"adapter 'diffusers-i2v': {key} must be a multiple of 8 (latent grids), got {v}")
        if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
            raise AdapterError(f"adapter 'diffusers-i2v': fps must be a positive number, got {fps!r}")
        if first_frame not in ("input", "generated"):
            raise AdapterError(f"adapter 'diffusers-i2v': first_frame must be 'input' (frame 1 = the input image) "
                               f"or 'generated' (the model's own), got {first_frame!r}")
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise AdapterError(f"adapter 'diffusers-i2v': dtype must be auto, float32, bfloat16 or float16, "
                               f"got {dtype!r}")
        self.model, self.num_frames, self.fps, self.steps = str(model), num_frames, fps, steps
        self.height, self.width, self.guidance, self.dtype = height, width, guidance, dtype
        self.first_frame = first_frame  # instance value: read by the harness and recorded in run.json
        self.pipe = None
        cls = self.pipeline_class()
        if cls is not None and cls not in PIPELINES:
            raise AdapterError(f"adapter 'diffusers-i2v': {self.model} holds a {cls}, which this adapter does not "
                               f"know how to call; supported: {', '.join(PIPELINES)}")

    # -- the model folder ---------------------------------------------------------
    def _local(self) -> Path | None:
        p = Path(self.model).expanduser()
        return p if p.is_dir() or p.is_absolute() or self.model.startswith((".", "~")) else None

    def _config_file(self, rel: str) -> Path | None:
        local = self._local()
        if local is not None:
            return local / rel if (local / rel).is_file() else None
        return _hub_file(self.model, rel)

    def _read_json(self, rel: str) -> dict | None:
        f = self._config_file(rel)
        if f is None:
            return None
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise AdapterError(f"adapter 'diffusers-i2v': {f} is not readable JSON ({e})") from e
        return obj if isinstance(obj, dict) else None

    def pipeline_class(self) -> str | None:
        """``_class_name`` of model_index.json (None while the folder is not there)."""
        index = self._read_json("model_index.json")
        return None if index is None else str(index.get("_class_name"))

    def _call(self) -> PipelineCall:
        cls = self.pipeline_class()
        if cls is None:
            raise AdapterError(f"adapter 'diffusers-i2v': no model_index.json in {self.model}; give a diffusers "
                               "pipeline folder or a hub id")
        return PIPELINES[cls]

    # -- what the harness asks before generating ----------------------------------------
    def required_files(self, protocol: ProtocolConfig) -> list:
        from asva_bench.backbones.weights import is_offline
        from asva_bench.requirements import Requirement
        local = self._local()
        what = f"diffusers image-to-video pipeline {self.model}"
        if local is not None:
            return [Requirement(what=what, path=str(local), files=("model_index.json",),
                                json_files=("model_index.json",), source="the model's release (a diffusers "
                                "pipeline folder, e.g. `huggingface-cli download ID --local-dir DIR`)",
                                fix="--model-arg model=DIR")]
        if _hub_file(self.model, "model_index.json") is None and is_offline():
            return [Requirement(what=what + " (Hugging Face Hub)", path=None, hub_id=self.model,
                                source=f"Hugging Face Hub {self.model}",
                                fix=f"unset ASVA_BENCH_OFFLINE to download it, or `huggingface-cli download "
                                    f"{self.model} --local-dir DIR` and --model-arg model=DIR")]
        return []  # in the hub cache, or downloaded by from_pretrained at setup

    def native_output(self, protocol: ProtocolConfig) -> tuple[int, float]:
        return (self.frames_to_make(), float(self.fps if self.fps is not None else self._call().default_fps))

    def frames_to_make(self) -> int:
        if self.num_frames is not None:
            return int(self.num_frames)
        call = self._call()
        if call.default_frames is not None:
            return call.default_frames
        unet = self._read_json("unet/config.json") or {}
        return int(unet.get("num_frames") or SVD_FRAMES)

    def config(self) -> dict:
        d = super().config()
        d["pipeline_class"] = self.pipeline_class()
        d["model_files"] = self._fingerprint()
        return d

    def _fingerprint(self) -> str | None:
        """sha256 over (relative path, size) of the pipeline folder's files and model_index.json's bytes:
        tells weights apart without reading gigabytes."""
        local = self._local()
        root = local if local is not None else (self._config_file("model_index.json") or Path("")).parent
        if not root or not (root / "model_index.json").is_file():
            return None
        h = hashlib.sha256((root / "model_index.json").read_bytes())
        for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.relative_to(root).as_posix()}:{f.stat().st_size}\n".encode())
        return h.hexdigest()[:16]

    # -- running --------------------------------------------------------------------
    def setup(self, protocol: ProtocolConfig, device: str = "cpu") -> None:
        from diffusers import DiffusionPipeline

        from asva_bench.backbones.weights import is_offline
        self._call()  # refuses an unknown class before loading
        dtype = {"auto": torch.float16 if str(device).startswith("cuda") else torch.float32,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        source = str(self._local()) if self._local() is not None else self.model
        try:
            pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, local_files_only=is_offline())
        except Exception as e:
            raise AdapterError(f"adapter 'diffusers-i2v': cannot load the pipeline from {source}: "
                               f"{type(e).__name__}: {e}") from e
        if type(pipe).__name__ not in PIPELINES:
            raise AdapterError(f"adapter 'diffusers-i2v': {source} loaded as {type(pipe).__name__}; supported: "
                               f"{', '.join(PIPELINES)}")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        self.size = (self.height or protocol.height, self.width or protocol.width)

    def call_arguments(self, image, text: str, generator, protocol: ProtocolConfig) -> dict:
        """The keyword arguments of one pipeline call (tested against each class's signature)."""
        call = self._call()
        n, fps = self.native_output(protocol)
        h, w = getattr(self, "size", None) or (self.height or protocol.height, self.width or protocol.width)
        kw = {"image": image, "height": h, "width": w, "num_frames": n, "generator": generator,
              "num_inference_steps": int(self.steps or call.default_steps), "output_type": "pt"}
        if call.prompt:
            kw["prompt"] = text
        if call.fps_argument:
            kw[call.fps_argument] = int(round(fps))
        if self.guidance is not None:
            if self.pipeline_class() == "StableVideoDiffusionPipeline":
                kw["min_guidance_scale"] = kw["max_guidance_scale"] = float(self.guidance)
            else:
                kw["guidance_scale"] = float(self.guidance)
        if "decode_chunk_size" in _signature(self.pipeline_class()):
            kw["decode_chunk_size"] = n
        return kw

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        from PIL import Image
        if self.pipe is None:
            raise AdapterError("adapter 'diffusers-i2v': call setup(protocol, device) before generate()")
        gens = batch.generators()
        clips = []
        for i in range(len(batch)):
            frame = (batch.first_frame[i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            kw = self.call_arguments(Image.fromarray(frame), batch.text[i], gens[i], batch.protocol)
            clips.append(_as_frames(self.pipe(**kw).frames, kw["num_frames"]))
        return torch.stack(clips)


def _signature(class_name: str | None) -> set[str]:
    import inspect

    import diffusers
    cls = getattr(diffusers, class_name or "", None)
    return set(inspect.signature(cls.__call__).parameters) if cls is not None else set()


def _as_frames(frames, n: int) -> torch.Tensor:
    """A pipeline's ``frames`` for one clip -> float [n, 3, h, w] in [0, 1]."""
    x = frames
    if isinstance(x, (list, tuple)):
        x = x[0]
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x):
        raise AdapterError(f"adapter 'diffusers-i2v': the pipeline returned {type(x).__name__} frames; "
                           "expected a tensor (output_type='pt')")
    x = x.float().cpu()
    if x.ndim == 5:
        x = x[0]
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[0] != n or x.shape[1] != 3:
        raise AdapterError(f"adapter 'diffusers-i2v': the pipeline returned frames {tuple(x.shape)}, expected "
                           f"[{n}, 3, h, w]")
    return x


__all__ = ["DiffusersI2V", "PIPELINES", "PipelineCall"]
