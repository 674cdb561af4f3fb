"""The model adapter API: what a model receives and must return.

A model is a small class with a ``name``, the ``inputs`` it uses and a
``generate(batch)`` call; the harness validates every output before writing.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..protocol import PAPER, ProtocolConfig
from ..requirements import Requirement

#: Inputs an adapter may declare. "video" (the ground-truth clip) is reserved
#: for the reference row and never given to a model under test.
KNOWN_INPUTS = ("image", "audio", "text", "video")


class AdapterError(RuntimeError):
    """An adapter misbehaved or was configured wrongly; names the adapter and clip."""


@dataclass
class ClipBatch:
    """A batch of test clips, as the protocol cuts them.

    first_frame: float [B, 3, H, W] in [0, 1] (frame 1 of the ground-truth clip)
    audio:       float [B, samples] mono at ``protocol.sample_rate`` (2 s)
    mel:         float [B, 1, 128, 204] normalised ImageBind-convention mel
    text:        class texts, e.g. "dog barking"
    clip_ids:    "<class>/<stem>_clip-NN"
    seeds:       one integer seed per clip (derived from the run seed and clip id)
    video:       float [B, T, 3, H, W] ground truth, only for adapters whose
                 ``inputs`` include "video"
    """
    first_frame: torch.Tensor
    audio: torch.Tensor
    mel: torch.Tensor
    text: list[str]
    clip_ids: list[str]
    seeds: list[int]
    protocol: ProtocolConfig = PAPER
    video: torch.Tensor | None = None
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def generators(self, device="cpu") -> list[torch.Generator]:
        """One torch.Generator per clip, seeded with its clip seed."""
        return [torch.Generator(device).manual_seed(int(s)) for s in self.seeds]


class Adapter:
    """Base class of model adapters.

    Subclasses set ``name`` and ``inputs`` and implement :meth:`generate`.
    Keyword arguments of ``__init__`` are the model arguments a user can set
    with ``--model-arg key=value``; they are recorded in the run manifest.

    ``first_frame``: "input" means frame 1 of the output is the conditioning
    image (the harness writes the input image there exactly, as AVSyncD keeps
    the frame-1 latent fixed); "generated" keeps the model's own frame 1.

    ``native_rate``: None (the default) means ``generate`` returns exactly the
    protocol's clip (12 frames at the protocol size). An adapter whose model
    has its own output rate declares it as ``(num_frames, fps)`` (e.g.
    ``(48, 24.0)``), or overrides :meth:`native_output`; it then returns
    ``[B, num_frames, 3, h, w]`` at any size, and the harness maps that onto the
    protocol with the protocol's own rules (timestamp selection, spatial
    transform; :mod:`asva_bench.adapters.resample`) and records the mapping in
    run.json.

    ``required_files(protocol)`` lists the weights and checkpoints the adapter
    will load (:class:`asva_bench.requirements.Requirement`), so `asva-bench
    run` can report every missing one before it generates anything.
    """

    name: ClassVar[str] = "adapter"
    inputs: ClassVar[tuple[str, ...]] = ("image",)
    first_frame: ClassVar[str] = "input"
    batch_size: ClassVar[int] = 8
    description: ClassVar[str] = ""
    native_rate: ClassVar[tuple[int, float] | None] = None

    def __init__(self, **kwargs):
        if kwargs:
            raise AdapterError(f"adapter '{self.name}' takes no arguments, got {sorted(kwargs)}")

    # -- the model's job ---------------------------------------------------
    def generate(self, batch: ClipBatch) -> torch.Tensor:  # pragma: no cover - interface
        """Return float frames [B, T, 3, H, W] in [0, 1]."""
        raise NotImplementedError

    def setup(self, protocol: ProtocolConfig, device: str = "cpu", profile=None) -> None:
        """Load weights etc. Called once before the first batch, with the run's
        :class:`asva_bench.profiles.Profile` (the paper or mini world the protocol belongs to)."""

    def required_files(self, protocol: ProtocolConfig) -> list[Requirement]:
        """The weight files, checkpoints and model folders ``setup`` will load (default: none).

        Called before any generation; must not load anything itself.
        """
        return []

    def native_output(self, protocol: ProtocolConfig) -> tuple[int, float] | None:
        """``(num_frames, fps)`` of what ``generate`` returns, or None for the protocol's clip."""
        return self.native_rate

    # -- recorded in the run manifest ---------------------------------------
    def config(self) -> dict:
        """The adapter's arguments (as given to __init__), for provenance."""
        sig = inspect.signature(type(self).__init__)
        out = {}
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[p.name] = getattr(self, p.name, p.default)
        return out

    @classmethod
    def argument_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def setup_adapter(adapter: Adapter, protocol: ProtocolConfig, device: str = "cpu", profile=None) -> None:
    """Call ``adapter.setup`` with the run's profile; an adapter written before profiles were handed
    over (``setup(protocol, device)``) is called without it."""
    import inspect
    params = inspect.signature(adapter.setup).parameters
    takes = "profile" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    if takes:
        adapter.setup(protocol, device, profile=profile)
    else:
        adapter.setup(protocol, device)


def validate_output(adapter: Adapter, batch: ClipBatch, out) -> torch.Tensor:
    """Check an adapter's output; returns float32 [B, T, 3, H, W] in [0, 1].

    An adapter with a native output rate (:meth:`Adapter.native_output`) has
    its frames mapped onto the protocol first. Frame 1 is replaced by the
    conditioning image for ``first_frame == "input"`` adapters (the protocol
    defines frame 1 as the input).
    """
    cfg = batch.protocol
    want = (len(batch), cfg.num_frames, 3, cfg.height, cfg.width)
    ids = ", ".join(batch.clip_ids[:3]) + (" ..." if len(batch) > 3 else "")
    who = f"adapter '{adapter.name}' on clips [{ids}]"
    if not torch.is_tensor(out):
        raise AdapterError(f"{who}: generate() returned {type(out).__name__}, expected a torch.Tensor {list(want)}")
    native = adapter.native_output(cfg)
    if native is None:
        if tuple(out.shape) != want:
            raise AdapterError(f"{who}: output shape {list(out.shape)}, expected {list(want)} "
                               "([batch, frames, 3, height, width] at the protocol size)")
        out = _checked_values(adapter, batch, who, out)
    else:
        from .resample import map_to_protocol
        n = int(native[0])
        if out.ndim != 5 or out.shape[0] != len(batch) or out.shape[1] != n or out.shape[2] != 3:
            raise AdapterError(f"{who}: output shape {list(out.shape)}, expected [{len(batch)}, {n}, 3, h, w] "
                               f"(the {n} frames its native_output {tuple(native)} declares)")
        out = map_to_protocol(_checked_values(adapter, batch, who, out), native, cfg)
    out = out.clamp(0.0, 1.0)
    if adapter.first_frame == "input":
        out[:, 0] = batch.first_frame.float()
    elif adapter.first_frame != "generated":
        raise AdapterError(f"adapter '{adapter.name}': first_frame must be 'input' or 'generated', "
                           f"got {adapter.first_frame!r}")
    return out


def _checked_values(adapter: Adapter, batch: ClipBatch, who: str, out: torch.Tensor) -> torch.Tensor:
    """uint8 or float frames -> float32 on the CPU; NaN/inf and values outside [0, 1] are errors."""
    if out.dtype == torch.uint8:
        out = out.float() / 255.0
    if not out.is_floating_point():
        raise AdapterError(f"{who}: output dtype {out.dtype}; return float in [0, 1] or uint8")
    out = out.detach().float().cpu()
    bad = ~torch.isfinite(out)
    if bad.any():
        i = int(bad.flatten(1).any(1).nonzero()[0])
        raise AdapterError(f"adapter '{adapter.name}': clip {batch.clip_ids[i]} has NaN/inf values "
                           "in its output; check the model's numerics (dtype, guidance scale)")
    lo, hi = float(out.min()), float(out.max())
    tol = 1e-3
    if lo < -tol or hi > 1 + tol:
        flat = out.flatten(1)
        i = int(((flat.min(1).values < -tol) | (flat.max(1).values > 1 + tol)).nonzero()[0])
        raise AdapterError(f"adapter '{adapter.name}': clip {batch.clip_ids[i]} has values in "
                           f"[{lo:.3f}, {hi:.3f}]; outputs must be in [0, 1] (map [-1, 1] with (x + 1) / 2)")
    return out.clamp(0.0, 1.0)


def check_adapter_class(cls, target: str = "") -> None:
    """Refuse an adapter class that cannot work: no ``name`` of its own, or unknown ``inputs``.

    Called when a name or ``module:Class`` is resolved (built-ins, plugins, the command line).
    """
    where = f" ({target})" if target else ""
    own_name = any("name" in vars(c) for c in cls.__mro__ if c is not Adapter and issubclass(c, Adapter))
    if not own_name or not isinstance(cls.name, str) or not cls.name.strip():
        raise AdapterError(f"adapter class {cls.__name__}{where} has no name: set the class attribute "
                           "`name = \"my-model\"` (it labels runs and the leaderboard)")
    inputs = cls.inputs
    if isinstance(inputs, str) or not isinstance(inputs, (tuple, list)) or not inputs:
        raise AdapterError(f"adapter '{cls.name}'{where}: inputs must be a non-empty tuple of names from "
                           f"{', '.join(KNOWN_INPUTS)}, got {inputs!r}")
    unknown = [i for i in inputs if i not in KNOWN_INPUTS]
    if unknown:
        import difflib
        hints = [f"'{u}' (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(str(u), KNOWN_INPUTS, n=1))
                 else f"'{u}'" for u in unknown]
        raise AdapterError(f"adapter '{cls.name}'{where}: unknown input name {', '.join(hints)}; "
                           f"inputs are chosen from {', '.join(KNOWN_INPUTS)}")


def parse_model_args(adapter_cls: type[Adapter], pairs: list[str]) -> dict:
    """'k=v' strings -> kwargs, with values parsed as int/float/bool when they look so."""
    valid = adapter_cls.argument_names()
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise AdapterError(f"--model-arg '{pair}': expected key=value")
        k, v = pair.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in valid:
            import difflib
            close = difflib.get_close_matches(k, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise AdapterError(f"adapter '{adapter_cls.name}' has no argument '{k}'.{hint} "
                               f"Valid: {', '.join(valid) or '(none)'}")
        out[k] = _parse_value(v)
    return out


def _parse_value(v: str):
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            x = cast(v)
            if cast is float and not math.isfinite(x):
                raise ValueError
            return x
        except ValueError:
            pass
    return v
