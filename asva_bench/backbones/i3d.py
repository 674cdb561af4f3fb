"""FVD backbone: the StyleGAN-V I3D TorchScript (``i3d_torchscript.pt``), 400-d features.

Called as docs/protocol.md ("Metrics") states: the 12 frames of a clip, each
bicubic antialiased squash-resize to 224 x 224 (torchvision ``Resize((224,
224), BICUBIC, antialias=True)``; the centre crop to 224 that follows in the
reference is a no-op), ``x * 2 - 1``, laid out [B, 3, T, 224, 224], then
``model(x, rescale=False, resize=False, return_features=True)`` -> [B, 400].
With rescale/resize off the TorchScript does no input handling of its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackboneSpec, VideoBackbone, WeightFile, WeightsFormatError, register_backbone
from .weights import load_torchscript

I3D_WEIGHTS = WeightFile(
    filename="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    sha256=None,  # no authoritative digest is published (StyleGAN-V links the file only)
    format="torchscript",
    note="StyleGAN-V's FVD detector",
)

FEATURE_DIM = 400
NUM_FRAMES = 12
RESOLUTION = 224
# The exported forward's arguments after ``self``.
_SIGNATURE = ("x", "rescale", "resize", "return_features")


class StyleGANVI3D(VideoBackbone):
    feature_dim = FEATURE_DIM
    num_frames = NUM_FRAMES

    def __init__(self, detector: torch.jit.ScriptModule):
        super().__init__()
        self.detector = detector

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] in [0,1] -> [B,3,T,224,224] in [-1,1]."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize
        b, t = clips.shape[:2]
        x = resize(clips.flatten(0, 1), [RESOLUTION, RESOLUTION], interpolation=InterpolationMode.BICUBIC,
                   antialias=True)
        x = x * 2 - 1
        return x.unflatten(0, (b, t)).transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector(x, rescale=False, resize=False, return_features=True)


def check_detector_signature(spec: BackboneSpec, path: Path, detector) -> None:
    try:
        args = tuple(a.name for a in detector.forward.schema.arguments)[1:]
    except (AttributeError, RuntimeError):
        args = ()
    if args[:len(_SIGNATURE)] != _SIGNATURE:
        raise WeightsFormatError(
            f"backbone '{spec.name}': {path} is a TorchScript module whose forward takes {args or 'unknown'}, "
            f"not {_SIGNATURE} like the StyleGAN-V I3D detector. Delete it and place "
            f"'{I3D_WEIGHTS.filename}' from {I3D_WEIGHTS.url} there.")


def build_stylegan_v_i3d(spec: BackboneSpec, paths: dict[str, Path], device: str) -> StyleGANVI3D:
    wf = spec.weights[0]
    detector = load_torchscript(spec, wf, paths[wf.filename], device)
    check_detector_signature(spec, paths[wf.filename], detector)
    return StyleGANVI3D(detector.eval()).to(device)


FVD_I3D = "fvd-i3d"

FVD_I3D_SPEC = register_backbone(BackboneSpec(
    name=FVD_I3D, profile="paper", kind="video", weights=(I3D_WEIGHTS,),
    preprocessing="12 frames [0,1] -> torchvision bicubic antialiased squash-resize to 224x224 -> x*2-1, "
                  "[B,3,T,224,224]; detector(x, rescale=False, resize=False, return_features=True)",
    output="400-d I3D features, float32 [B, 400]",
    builder=build_stylegan_v_i3d,
    description="FVD backbone of the paper: StyleGAN-V's I3D TorchScript",
))
