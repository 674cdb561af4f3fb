"""The AVSyncD adapter: `asva-bench run --model avsyncd [--model-arg eta=4 ...]`.

Loads the frozen parts of the run's profile (components.py), inflates the
base with a trained checkpoint folder (written by `asva-bench train
avsyncd`), and samples each batch with audio guidance
eps = eps(null audio) + eta * (eps(audio) - eps(null audio)), both passes
in one UNet call, frame 1 held fixed (pipeline.py).  Every clip's noise
comes from its own seed (``batch.generators()``), so a clip does not depend
on its batch-mates.

Profile defaults (recorded in the adapter config, hence in the results
fingerprint):

======  ==============================  =========================================
        sampler / conditioning          why
======  ==============================  =========================================
paper   pndm-reference 50, from pure    the authors' sampling code (docs/avsyncd.md,
        noise; conditioning reference   "Sampling"): PNDM driven through a latent
                                        view, uint8 image, sampled frame-1 latent,
                                        frame 1 decoded from it
mini    DDIM 20, from frame 1 noised    450 test clips on a CPU; the CPU-trained
        half-way (strength 0.5: 10      mini models cannot draw frames from pure
        steps); conditioning exact      noise (docs/avsyncd.md has the measurements)
======  ==============================  =========================================

Checkpoints: mini defaults to the shipped ``models/avsyncd/weights/
avsyncd_mini``; paper needs ``checkpoint=DIR``: either a folder written by
`asva-bench train avsyncd` or the authors' release as downloaded
(``<exp>/ckpts/checkpoint-37000/modules``, see released.py), plus the Stable
Diffusion 1.5 folder (``base=DIR`` or $ASVA_SD15_DIR: VAE, text encoder) and the
ImageBind-huge weights (`asva-bench weights list --profile paper`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import torch

from asva_bench.adapters.api import Adapter, AdapterError, ClipBatch
from asva_bench.profiles import defaults_by_profile, get_profile, profile_of_protocol
from asva_bench.protocol import ProtocolConfig

from .components import (SHIPPED_MINI, ComponentError, check_identity, file_fingerprint, load_frozen_parts,
                         read_training_record)
from .pipeline import CONDITIONING_MODES, SCHEDULERS, AVSyncDPipeline
from .released import ReleasedCheckpointError, find_released_unet, load_released_unet, released_weight_file
from .unet3d import CONFIG_FILE, TRAINABLE_WEIGHTS_FILE, AVSyncDUNet

# The sampler when an argument is not given, per profile (asva_bench.profiles.SamplerDefaults):
# steps, scheduler, strength (1.0 = pure noise, the paper; below 1, frames 2..F start from frame 1
# noised to that fraction of the schedule, docs/avsyncd.md) and frame-1 conditioning.
DEFAULT_STEPS = defaults_by_profile("steps")
DEFAULT_SCHEDULER = defaults_by_profile("scheduler")
DEFAULT_CONDITIONING = defaults_by_profile("conditioning")
DEFAULT_STRENGTH = defaults_by_profile("strength")


def profile_name(protocol: ProtocolConfig, profile=None) -> str:
    """The run's profile (handed to setup), else the one that registers ``protocol``."""
    return (get_profile(profile) if profile is not None else profile_of_protocol(protocol)).name


class AVSyncDFamily(Adapter):
    """Shared loading and sampling of AVSyncD (audio) and I2VD (no audio)."""

    model_kind: ClassVar[str] = "avsyncd"
    batch_size = 8
    # The pipeline decides frame 1: the input itself (conditioning "exact") or its VAE
    # reconstruction (conditioning "reference", as the authors' pipeline outputs it).
    first_frame = "generated"

    def _init_common(self, steps, scheduler, checkpoint, base, audio_encoder, device_dtype,
                     strength=None, conditioning=None) -> None:
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise AdapterError(f"adapter '{self.name}': steps must be a positive integer, got {steps!r}")
        samplers = [n for n in SCHEDULERS if n != "ddpm"]
        if scheduler is not None and str(scheduler).lower() not in samplers:
            raise AdapterError(f"adapter '{self.name}': scheduler must be one of {', '.join(samplers)}, "
                               f"got {scheduler!r}")
        if conditioning is not None and conditioning not in CONDITIONING_MODES:
            raise AdapterError(f"adapter '{self.name}': conditioning must be one of "
                               f"{', '.join(CONDITIONING_MODES)}, got {conditioning!r}")
        self.conditioning = conditioning
        if strength is not None:
            try:
                strength = float(strength)
            except (TypeError, ValueError):
                raise AdapterError(f"adapter '{self.name}': strength must be a number in (0, 1], "
                                   f"got {strength!r}") from None
            if not 0.0 < strength <= 1.0:
                raise AdapterError(f"adapter '{self.name}': strength must be in (0, 1], got {strength}")
        if strength is not None and scheduler is not None:  # both given: refuse now, not at setup
            self._check_sampler(strength, str(scheduler).lower())
        self.strength = strength
        if device_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise AdapterError(f"adapter '{self.name}': dtype must be auto, float32, bfloat16 or float16, "
                               f"got {device_dtype!r}")
        self.steps = steps
        self.scheduler = None if scheduler is None else str(scheduler).lower()
        self.checkpoint = checkpoint
        self.base = base
        self.audio_encoder = audio_encoder
        self.dtype = device_dtype
        self.pipe: AVSyncDPipeline | None = None
        self.parts = None
        self.profile: str | None = None

    def config(self) -> dict:
        d = super().config()
        # steps=None resolves per profile; the table is part of the fingerprint
        d["default_steps"] = dict(DEFAULT_STEPS)
        d["default_scheduler"] = dict(DEFAULT_SCHEDULER)
        d["default_strength"] = dict(DEFAULT_STRENGTH)
        d["default_conditioning"] = dict(DEFAULT_CONDITIONING)
        # the trained weights decide the output: fingerprint them (the shipped mini ones when no checkpoint)
        folder = Path(str(self.checkpoint)).expanduser() if self.checkpoint else SHIPPED_MINI[self.model_kind]
        released = find_released_unet(folder)
        if released is not None:
            d["checkpoint_format"] = "released"
            try:
                d["weights_sha256"] = file_fingerprint(released_weight_file(released))
            except ReleasedCheckpointError:
                d["weights_sha256"] = None
        else:
            wfile = folder / TRAINABLE_WEIGHTS_FILE
            d["weights_sha256"] = file_fingerprint(wfile) if wfile.is_file() else None
        return d

    # -- setup ----------------------------------------------------------------
    def _checkpoint_folder(self, profile: str) -> Path:
        if self.checkpoint:
            folder = Path(str(self.checkpoint)).expanduser()
        elif profile == "mini":
            folder = SHIPPED_MINI[self.model_kind]
        else:
            raise AdapterError(
                f"adapter '{self.name}' (paper profile) needs a trained checkpoint: --model-arg checkpoint=DIR "
                f"(the checkpoint/ folder of `asva-bench train {self.model_kind} --profile paper`, or the "
                "authors' release as downloaded, e.g. avsync15_audio-cond_cfg/ckpts/checkpoint-37000/modules); "
                "the paper also needs the Stable Diffusion 1.5 folder (--model-arg base=DIR or $ASVA_SD15_DIR) "
                "and the ImageBind-huge weights")
        if find_released_unet(folder) is not None:
            return folder
        missing = [n for n in (CONFIG_FILE, TRAINABLE_WEIGHTS_FILE) if not (folder / n).is_file()]
        if missing:
            hint = (f"train it with `asva-bench train {self.model_kind} --profile {profile} --out DIR` and pass "
                    f"--model-arg checkpoint=DIR/checkpoint, or pass the authors' released modules/ folder "
                    "(it holds unet/config.json)")
            raise AdapterError(f"adapter '{self.name}': checkpoint folder {folder} is missing "
                               f"{', '.join(missing)}; {hint}")
        return folder

    def _check_sampler(self, strength: float, scheduler: str) -> None:
        if strength < 1.0 and scheduler.startswith("pndm"):
            raise AdapterError(f"adapter '{self.name}': strength {strength} < 1 needs scheduler=ddim (PNDM's "
                               "multistep warm-up cannot begin mid-schedule)")

    def setup(self, protocol: ProtocolConfig, device: str = "cpu", profile=None) -> None:
        profile = profile_name(protocol, profile)
        # the profile's defaults fill what was not given; check the pair before loading weights
        self._check_sampler(self.strength if self.strength is not None else DEFAULT_STRENGTH[profile],
                            self.scheduler or DEFAULT_SCHEDULER[profile])
        folder = self._checkpoint_folder(profile)
        with_audio = self.model_kind == "avsyncd"
        dtype = {"auto": torch.float16 if str(device).startswith("cuda") and profile == "paper" else torch.float32,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        self.released_info = None
        try:
            released = find_released_unet(folder)
            if released is None:
                record = read_training_record(folder)
                if record.get("model") not in (None, self.model_kind):
                    raise AdapterError(f"adapter '{self.name}': {folder} holds a '{record.get('model')}' "
                                       f"checkpoint, not '{self.model_kind}'")
            elif profile != "paper":
                raise AdapterError(f"adapter '{self.name}': {released} is the authors' released UNet (Stable "
                                   "Diffusion 1.5 + ImageBind-huge); run it with --profile paper")
            parts = load_frozen_parts(profile, base=self.base, audio_encoder=self.audio_encoder,
                                      with_audio=with_audio, device=device)
            if released is None:
                check_identity(record, parts, folder)
                unet = AVSyncDUNet.from_trainable(parts.unet2d, folder)
            else:
                # the release holds the whole UNet; the user's SD 1.5 UNet only serves the comparison
                unet = load_released_unet(released, num_frames=protocol.num_frames,
                                          reference_unet2d=parts.unet2d)
                parts.unet2d = None
                self.released_info = unet.released
                print(f"[{self.name}] {released}: {unet.released['sd15_comparison']['message']}", file=sys.stderr)
        except (ComponentError, FileNotFoundError, ValueError) as e:
            if isinstance(e, AdapterError):
                raise
            raise AdapterError(f"adapter '{self.name}': {e}") from e
        if (unet.config.audio is None) == with_audio:
            raise AdapterError(f"adapter '{self.name}': {folder} was trained "
                               f"{'without' if with_audio else 'with'} an audio path")
        unet.to(device=device, dtype=dtype).eval()
        parts.vae.to(device=device)
        self.parts, self.profile = parts, profile
        self.pipe = AVSyncDPipeline(unet, self.scheduler_name, vae=parts.vae,
                                    text_encoder=parts.text_encoder, tokenizer=parts.tokenizer)
        self.null = parts.null_tokens().to(device) if with_audio else None

    @property
    def num_steps(self) -> int:
        if self.steps is not None:
            return int(self.steps)
        return DEFAULT_STEPS[self.profile or "paper"]

    @property
    def scheduler_name(self) -> str:
        return self.scheduler or DEFAULT_SCHEDULER[self.profile or "paper"]

    @property
    def conditioning_mode(self) -> str:
        return self.conditioning or DEFAULT_CONDITIONING[self.profile or "paper"]

    @property
    def sampling_strength(self) -> float:
        return self.strength if self.strength is not None else DEFAULT_STRENGTH[self.profile or "paper"]

    # -- sampling ---------------------------------------------------------------
    def _sample(self, batch: ClipBatch, tokens, eta: float) -> torch.Tensor:
        if self.pipe is None:
            raise AdapterError(f"adapter '{self.name}': call setup(protocol, device) before generate()")
        dev = self.pipe.device
        text = self.parts.encode_text(list(batch.text)).to(dev)
        out = self.pipe(batch.first_frame.to(dev), tokens, self.null, text_embeddings=text,
                        audio_guidance=eta, num_inference_steps=self.num_steps, generator=batch.generators(),
                        num_frames=batch.protocol.num_frames, progress=False,
                        init_strength=self.sampling_strength, conditioning=self.conditioning_mode)
        return out.frames.float().cpu()

    # -- pre-flight (asva_bench/preflight.py) -----------------------------------------
    def required_files(self, protocol: ProtocolConfig) -> list:
        """The checkpoint folder (ours, or the authors' released ``.../checkpoint-N/modules`` with
        ``unet/``), Stable Diffusion 1.5 and, for AVSyncD, ImageBind-huge (paper profile)."""
        import os

        from asva_bench.checkpoints import RELEASED
        from asva_bench.requirements import VERIFY_COMMAND, Requirement
        if profile_name(protocol) == "mini":
            return []  # the shipped mini checkpoints and base; a given folder is checked at setup
        ck = Path(str(self.checkpoint)).expanduser() if self.checkpoint else None
        released = RELEASED["avsyncd-avsync15"]
        what = f"{self.name} checkpoint folder (--model-arg checkpoint=DIR)"
        source = (f"`asva-bench train {self.model_kind} --profile paper` (its checkpoint/ folder)"
                  + (f", or the authors' release: {released.source}" if self.model_kind == "avsyncd" else ""))
        unet_dir = None if ck is None else (find_released_unet(ck)
                                            or (ck / "unet" if (ck / "unet").is_dir() else None))
        if unet_dir is not None:  # the released layout (.../modules, .../modules/unet or checkpoint-N)
            reqs = [Requirement(what=what + ", released layout", path=str(unet_dir.parent), files=released.files,
                                json_files=released.json_files, source=source, check=VERIFY_COMMAND)]
        else:
            reqs = [Requirement(what=what, path=None if ck is None else str(ck), files=(CONFIG_FILE, TRAINABLE_WEIGHTS_FILE),
                                json_files=(CONFIG_FILE,), source=source,
                                place_at="any folder; released ones: `asva-bench weights list --profile paper`",
                                fix="--model-arg checkpoint=DIR")]
        sd = RELEASED["stable-diffusion-v1-5"]
        base = self.base or os.environ.get("ASVA_SD15_DIR")
        reqs.append(sd.requirement(base or None, fix=f"asva-bench weights fetch {sd.name}, then --model-arg base=DIR "
                                              "or export ASVA_SD15_DIR=DIR"))
        if self.model_kind == "avsyncd":
            from asva_bench.backbones import get_backbone_spec
            from asva_bench.backbones.weights import _source, cache_path, locate
            spec = get_backbone_spec("imagebind-huge")
            wf = spec.weights[0]
            reqs.append(Requirement(what="ImageBind-huge weights (AVSyncD's audio encoder)", kind="file",
                                    path=str(locate(spec, wf)), source=_source(wf), place_at=str(cache_path(spec, wf)),
                                    fix="asva-bench weights fetch imagebind-huge", check=VERIFY_COMMAND))
        return reqs


class AVSyncD(AVSyncDFamily):
    name = "avsyncd"
    inputs = ("image", "audio", "text")
    model_kind = "avsyncd"
    description = ("AVSyncD (Zhang et al. 2024): inflated image diffusion with time-aligned audio cross-attention "
                   "and audio classifier-free guidance eta")

    def __init__(self, eta: float = 4.0, steps: int | None = None, scheduler: str | None = None,
                 strength: float | None = None, conditioning: str | None = None, checkpoint: str | None = None,
                 base: str | None = None, audio_encoder: str | None = None, dtype: str = "auto"):
        try:
            self.eta = float(eta)
        except (TypeError, ValueError):
            raise AdapterError(f"adapter 'avsyncd': eta must be a number, got {eta!r}") from None
        self._init_common(steps, scheduler, checkpoint, base, audio_encoder, dtype, strength, conditioning)

    def generate(self, batch: ClipBatch) -> torch.Tensor:
        if self.pipe is None:
            raise AdapterError("adapter 'avsyncd': call setup(protocol, device) before generate()")
        tokens = self.parts.audio_tokens(batch.mel.to(self.pipe.device))
        return self._sample(batch, tokens, self.eta)


__all__ = ["AVSyncD", "AVSyncDFamily", "DEFAULT_STEPS", "SCHEDULERS", "profile_name"]
