"""CLIP image features through ``open_clip_torch``: the paper profile's "CLIP image-feature change" signal.

The curation pipeline (docs/curation.md) drops clips whose CLIP image
features change too little (static) or too much (shake, glitches) from
frame to frame. The paper names CLIP without saying which one; the model and
its pretrained tag are part of the curation config, and
:func:`open_clip_spec` makes the registry entry for any pair open_clip
knows (``open_clip.list_pretrained()``). The registered default is
``ViT-B-32`` / ``openai`` (OpenAI's original CLIP: our choice).

Weights: one file per (model, tag), the open_clip checkpoint that the tag's
Hugging Face Hub repository holds (``open_clip_model.safetensors``), kept in
the project's weight cache at ``<home>/weights/open_clip/<model>-<tag>/`` and
fetched from the hub when missing and the network is allowed. Offline, the
error names the file, its hub source and where to put it. A local
checkpoint of your own works too: place it at that path.

Preprocessing is open_clip's own evaluation transform for the model
(``open_clip.image_transform`` with the model's preprocess config: resize
the shortest side to the model's input size, centre crop, the model's
mean / std), applied to tensors: frames ``[N, 3, H, W]`` in ``[0, 1]`` go
through the transform's tensor steps, so no PIL round trip changes them.
Output: ``encode_image`` features ``[N, D]`` (not normalised; the curation
signal normalises them before taking cosines).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackboneError, BackboneSpec, ImageBackbone, WeightFile, register_backbone

OPEN_CLIP_NAME = "openclip-image"
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"
CHECKPOINT_FILE = "open_clip_model.safetensors"   # open_clip's HF_SAFE_WEIGHTS_NAME
_INSTALL_HINT = "pip install open_clip_torch"


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise BackboneError(f"the CLIP curation signal needs the 'open_clip_torch' package: {_INSTALL_HINT}") from e
    return open_clip


#: open_clip's hub repository for the default pair (what ``get_pretrained_cfg`` says; kept here so that
#: importing the registry does not import open_clip; tests check the two agree).
DEFAULT_HUB_REPO = "timm/vit_base_patch32_clip_224.openai"


def hub_source(model: str, pretrained: str) -> tuple[str | None, str | None]:
    """(hub repo id, download URL) of ``pretrained`` weights for ``model``, from open_clip's table."""
    if (model, pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED):
        repo = DEFAULT_HUB_REPO
    else:
        cfg = _open_clip().get_pretrained_cfg(model, pretrained) or {}
        repo = (cfg.get("hf_hub") or "").strip("/") or None
    url = f"https://huggingface.co/{repo}/resolve/main/{CHECKPOINT_FILE}" if repo else None
    return repo, url


class OpenClipImage(ImageBackbone):
    """open_clip's image tower behind the ImageBackbone interface."""

    def __init__(self, net: torch.nn.Module, transform_steps: list, feature_dim: int):
        super().__init__()
        self.net = net
        self.steps = transform_steps
        self.feature_dim = int(feature_dim)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames
        for step in self.steps:
            x = step(x)
        return x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.encode_image(pixels)


def tensor_transform(net) -> list:
    """open_clip's evaluation transform for ``net``, less its PIL-only steps (RGB conversion, ToTensor)."""
    open_clip = _open_clip()
    from torchvision import transforms as T
    pp = open_clip.get_model_preprocess_cfg(net)
    tf = open_clip.image_transform(pp["size"], is_train=False, mean=pp.get("mean"), std=pp.get("std"),
                                   resize_mode=pp.get("resize_mode"), interpolation=pp.get("interpolation"))
    steps = []
    for step in getattr(tf, "transforms", [tf]):
        if isinstance(step, T.ToTensor) or getattr(step, "__name__", "") == "_convert_to_rgb":
            continue  # frames are already RGB float tensors in [0, 1]
        if isinstance(step, T.Resize):  # the PIL transform antialiases; tensors need it asked for
            step = T.Resize(step.size, interpolation=step.interpolation, max_size=step.max_size, antialias=True)
        steps.append(step)
    return steps


def build_open_clip(spec: BackboneSpec, paths: dict[str, Path], device: str) -> OpenClipImage:
    open_clip = _open_clip()
    model = spec.options["model"]
    path = paths[spec.weights[0].filename]
    try:
        net = open_clip.create_model(model, pretrained=str(path), device=device,
                                     **dict(spec.options.get("create_kwargs", {})))
    except RuntimeError as e:
        raise BackboneError(f"{spec.name}: open_clip could not load {path} into '{model}' ({e}); the file must be "
                            f"an open_clip checkpoint of that model (`asva-bench weights verify`)") from e
    dim = int(getattr(net.visual, "output_dim", 0) or net.visual.proj.shape[1])
    return OpenClipImage(net.eval(), tensor_transform(net), dim).to(device)


def open_clip_spec(model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, **create_kwargs) -> BackboneSpec:
    """The registry entry for open_clip's ``model`` with ``pretrained`` weights (not registered by itself)."""
    try:
        repo, url = hub_source(model, pretrained)
    except BackboneError:
        repo, url = None, None
    where = f"Hugging Face Hub {repo}/{CHECKPOINT_FILE}" if repo else \
        f"no hub source known to open_clip for {model}/{pretrained}: export an open_clip checkpoint of that model"
    weights = WeightFile(CHECKPOINT_FILE, url=url, sha256=None, format="safetensors",
                         folder=f"open_clip/{model}-{pretrained}", note=where)
    return BackboneSpec(
        name=OPEN_CLIP_NAME if (model, pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED)
        else f"{OPEN_CLIP_NAME}:{model}:{pretrained}",
        profile="paper", kind="image", weights=(weights,),
        preprocessing="frames [0,1] -> open_clip's eval transform for the model (shortest-side resize, centre "
                      "crop, model mean/std) on tensors",
        output="open_clip encode_image features [N, D] float32 (D = 512 for ViT-B-32)",
        builder=build_open_clip,
        description=f"open_clip {model} ({pretrained}) image tower for the curation CLIP-change signal",
        options={"model": model, "pretrained": pretrained, "create_kwargs": create_kwargs},
    )


OPEN_CLIP_SPEC = register_backbone(open_clip_spec())
