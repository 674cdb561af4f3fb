"""The authors' released AVSyncD checkpoints, loaded into :class:`AVSyncDUNet` as downloaded.

Layout of a release (docs/avsyncd.md, "Released checkpoints")::

    <exp>/ckpts/checkpoint-<N>/modules/unet/config.json
    <exp>/ckpts/checkpoint-<N>/modules/unet/diffusion_pytorch_model.bin   (or .safetensors)

The folder is a diffusers model folder of the authors' ``AudioUNet3DConditionModel``
holding the *whole* 3D UNet: Stable Diffusion 1.5's tensors under their usual
names plus the new ones (``conv_temp``, ``norm_audio`` / ``attn_audio``,
``norm_temp`` / ``attn_temp``, ``pos_embedding_temp``).  Our inflated UNet uses
the same names, so loading is: read the config, map its 3D block types to the
diffusers 2D blocks they inflate, build and inflate that 2D UNet (on the meta
device: nothing is initialised twice), and assign the file's tensors with every
key accounted for.  No conversion is written to disk.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from asva_bench.state_dicts import state_dict_mismatch

from .audio_tokens import IMAGEBIND_HUGE_AUDIO, AudioTokenGeometry
from .unet3d import AVSyncDUNet

#: The class name the released config.json carries.
RELEASED_CLASS = "AudioUNet3DConditionModel"
#: Released 3D block type -> the diffusers 2D block it inflates (True: has audio cross-attention).
BLOCK_TYPES = {
    "FFSpatioAudioTempCrossAttnDownBlock3D": ("CrossAttnDownBlock2D", True),
    "FFSpatioTempCrossAttnDownBlock3D": ("CrossAttnDownBlock2D", False),
    "FFSpatioTempResDownBlock3D": ("DownBlock2D", False),
    "FFSpatioAudioTempCrossAttnUNetMidBlock3D": ("UNetMidBlock2DCrossAttn", True),
    "FFSpatioTempCrossAttnUNetMidBlock3D": ("UNetMidBlock2DCrossAttn", False),
    "FFSpatioAudioTempCrossAttnUpBlock3D": ("CrossAttnUpBlock2D", True),
    "FFSpatioTempCrossAttnUpBlock3D": ("CrossAttnUpBlock2D", False),
    "FFSpatioTempResUpBlock3D": ("UpBlock2D", False),
}
#: Weight files a diffusers model folder may hold, in the order diffusers prefers them.
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")
#: The releases the authors published (their repository's README), for messages and `weights list`.
RELEASES = {
    "avsync15": "avsync15_audio-cond_cfg/ckpts/checkpoint-37000/modules",
    "landscapes": "landscapes_audio-cond_cfg/ckpts/checkpoint-24000/modules",
    "thegreatesthits": "thegreatesthits_audio-cond_cfg/ckpts/checkpoint-16000/modules",
}


class ReleasedCheckpointError(ValueError):
    """A folder that is not (or not all of) a released AVSyncD UNet; the message says what is wrong."""


def find_released_unet(path) -> Path | None:
    """The released UNet folder at or under ``path`` (``.../modules/unet``, ``.../modules`` or
    ``.../checkpoint-<N>``), or None when ``path`` holds no released config."""
    path = Path(path).expanduser()
    for cand in (path, path / "unet", path / "modules" / "unet"):
        cfg = cand / "config.json"
        if cfg.is_file():
            try:
                if json.loads(cfg.read_text()).get("_class_name") == RELEASED_CLASS:
                    return cand
            except (OSError, json.JSONDecodeError):
                continue
    return None


def released_weight_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ReleasedCheckpointError(
        f"{folder}: no weight file ({' / '.join(WEIGHT_FILES[:2])}); the released UNet folder holds "
        "config.json and diffusion_pytorch_model.bin as downloaded from the authors' release")


def unet2d_config(released: dict, where="config.json") -> tuple[dict, bool, int | None]:
    """The released config -> (UNet2DConditionModel config, has_audio, audio dim)."""
    if released.get("_class_name") != RELEASED_CLASS:
        raise ReleasedCheckpointError(f"{where}: _class_name is {released.get('_class_name')!r}, expected "
                                      f"{RELEASED_CLASS!r} (the authors' AVSyncD UNet)")
    accepted = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
    cfg = {k: v for k, v in released.items() if k in accepted}
    audio_flags = []
    unknown = []

    def mapped(kind):
        if kind not in BLOCK_TYPES:
            unknown.append(kind)
            return kind
        name, audio = BLOCK_TYPES[kind]
        audio_flags.append(audio)
        return name

    cfg["down_block_types"] = [mapped(k) for k in released.get("down_block_types", ())]
    cfg["up_block_types"] = [mapped(k) for k in released.get("up_block_types", ())]
    if released.get("mid_block_type") is not None:
        cfg["mid_block_type"] = mapped(released["mid_block_type"])
    if unknown:
        raise ReleasedCheckpointError(f"{where}: unknown block types {sorted(set(unknown))}; known: "
                                      f"{sorted(BLOCK_TYPES)}")
    has_audio = any(audio_flags)
    audio_dim = int(released.get("audio_cross_attention_dim", 768)) if has_audio else None
    return cfg, has_audio, audio_dim


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download, or not a state dict
        raise ReleasedCheckpointError(f"{path}: cannot be read as a PyTorch state dict ({e}); "
                                      "re-download it") from e
    if not isinstance(sd, dict):
        raise ReleasedCheckpointError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    return sd


def _key_list(keys, n=8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_released_unet(folder, num_frames: int = 12, audio_geometry: AudioTokenGeometry | None = None,
                       reference_unet2d: torch.nn.Module | None = None,
                       torch_dtype: torch.dtype | None = None) -> AVSyncDUNet:
    """Build our AVSyncD UNet from a released ``unet`` folder (or a folder above it), as downloaded.

    Every tensor of the file is used and every tensor of the model comes from the
    file; otherwise the error lists the missing and unexpected keys.
    ``reference_unet2d``: the user's Stable Diffusion 1.5 UNet; the released 2D tensors
    are compared with it and the result is in ``model.released["sd15_comparison"]``
    (the released tensors are used either way).  The audio geometry defaults to
    ImageBind-huge's (1 + 12 x 19 tokens of ``audio_cross_attention_dim``).
    """
    given = Path(folder).expanduser()
    unet_dir = find_released_unet(given)
    if unet_dir is None:
        raise ReleasedCheckpointError(
            f"{given}: no released AVSyncD UNet here (expected unet/config.json with _class_name "
            f"{RELEASED_CLASS!r}, e.g. {RELEASES['avsync15']}/unet); pass the checkpoint's modules/ folder")
    config_path = unet_dir / "config.json"
    released_cfg = json.loads(config_path.read_text())
    cfg2d, has_audio, audio_dim = unet2d_config(released_cfg, config_path)
    wfile = released_weight_file(unet_dir)
    state = read_state_dict(wfile)
    if audio_geometry is None and has_audio:
        audio_geometry = AudioTokenGeometry(**{**IMAGEBIND_HUGE_AUDIO.to_dict(), "dim": audio_dim})
    with torch.device("meta"):
        unet2d = UNet2DConditionModel.from_config(cfg2d)
        model = AVSyncDUNet.from_unet2d(unet2d, audio_dim=audio_dim, num_frames=num_frames,
                                        audio_geometry=audio_geometry if has_audio else None)
    problem = state_dict_mismatch(model.unet.state_dict(), state, show=8)
    if problem:
        raise ReleasedCheckpointError(f"{wfile}: does not match the released AVSyncD layout its config.json "
                                      f"describes ({problem}); the file is partial or from another "
                                      "model: re-download the release")
    dtype = torch_dtype or next(iter(state.values())).dtype
    model.unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.requires_grad_(False)
    for name, p in model.trainable_named_parameters():
        p.requires_grad_(True)
    model.eval()
    from .components import file_fingerprint
    model.released = {"folder": str(unet_dir), "weights": wfile.name, "weights_sha256": file_fingerprint(wfile),
                      "tensors": len(state), "has_audio": has_audio,
                      "sd15_comparison": (None if reference_unet2d is None
                                          else compare_2d_tensors(state, reference_unet2d))}
    return model


def compare_2d_tensors(state: dict[str, torch.Tensor], unet2d: torch.nn.Module, atol: float = 0.0) -> dict:
    """Compare the released file's pretrained (2D) tensors with a 2D UNet's state dict."""
    ref = unet2d.state_dict()
    shared = sorted(set(ref) & set(state))
    differ = [k for k in shared
              if state[k].shape != ref[k].shape
              or (state[k].float() - ref[k].float().to(state[k].device)).abs().max().item() > atol]
    absent = sorted(set(ref) - set(state))
    if differ or absent:
        message = (f"the released UNet's 2D tensors differ from the given Stable Diffusion 1.5 UNet in "
                   f"{len(differ)} of {len(shared)} tensors ({_key_list(differ, 4) or 'none'}); "
                   f"{len(absent)} SD tensors absent; the released tensors are used as they are")
    else:
        message = (f"the released UNet's {len(shared)} 2D tensors equal the given Stable Diffusion 1.5 UNet's "
                   "(frozen during training, as expected)")
    return {"equal": not differ and not absent, "compared": len(shared), "differ": len(differ),
            "absent": len(absent), "message": message}
