"""FID backbone: the TF-ported Inception-v3 of pytorch-fid, 2048-d pool features.

Architecture: torchvision's Inception3 (1008 classes, no aux head) with the
FID blocks of the ``pytorch-fid`` package (``FIDInceptionA/C/E_1/E_2``:
TF's average pool that ignores padding, and the max pool in the last block).
We assemble it ourselves rather than calling ``pytorch_fid.InceptionV3``
because that constructor downloads the weights itself, unverified, into the
torch.hub cache; here the state dict comes from our cache, checked, and is
read with ``weights_only=True``.

Two separately named variants share the weight file:

* ``fid-inception-229`` (paper): the reference code's preprocessing -
  bicubic antialiased resize of the [0, 1] frame to 229 x 229 (torchvision
  ``Resize((229, 229), BICUBIC, antialias=True)``; the following centre crop
  to 229 is a no-op), then ``x * 2 - 1``; the network then sees 229 x 229
  directly. pytorch-fid's own input handling (``resize_input``: bilinear to
  299; ``normalize_input``: 2x - 1) is *not* applied on top - the reference
  network had neither step.
* ``fid-inception-299`` (standard pytorch-fid, NOT the paper's FID):
  bilinear resize to 299 (``align_corners=False``, no antialias), ``2x - 1``.

Features: Conv2d_1a..Mixed_7c, global average pool -> [N, 2048].

BatchNorm: the reference evaluation builds this network and never calls
``.eval()``, so its BatchNorm layers normalise with the statistics of each
batch. ``features(frames, batch_statistics=True)`` does the same without
touching the running statistics (track ``asva-reference``; the scorer forms
the reference's batches, :func:`asva_bench.scoring.fid_features`); the default
is eval mode (track ``corrected``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import BackboneSpec, ImageBackbone, WeightFile, register_backbone
from .weights import apply_state_dict, load_state_dict

INCEPTION_WEIGHTS = WeightFile(
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    # Published prefix: the torch.hub file-name convention (checked by
    # torch.hub's check_hash in pytorch-fid). No full digest is published.
    sha256="6726825d",
    format="state_dict",
    folder="fid-inception",
    note="pytorch-fid release 'fid_weights'",
)

FEATURE_DIM = 2048


def _import_pytorch_fid():
    try:
        from pytorch_fid import inception as pf
    except ImportError as e:
        raise ImportError("the FID backbones need the 'pytorch-fid' package for the FID Inception "
                          "architecture: pip install pytorch-fid==0.3.0") from e
    return pf


def fid_inception_network() -> nn.Module:
    """pytorch-fid's FID Inception-v3 (randomly initialised; weights are loaded separately)."""
    import torchvision
    pf = _import_pytorch_fid()
    # init_weights=False: the weights are overwritten anyway, and scipy's
    # truncated-normal init is slow.
    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


class FIDInception(ImageBackbone):
    """Inception-v3 pool features; ``resolution`` / ``resize_mode`` pick the variant."""

    feature_dim = FEATURE_DIM

    def __init__(self, net: nn.Module, resolution: int, resize_mode: str):
        super().__init__()
        if resize_mode not in ("bicubic-antialias", "bilinear"):
            raise ValueError(f"unknown resize_mode {resize_mode!r}")
        self.net = net
        self.resolution = int(resolution)
        self.resize_mode = resize_mode

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] in [0,1] -> [N,3,R,R] in [-1,1] (bicubic overshoot is kept, as in the reference)."""
        size = [self.resolution, self.resolution]
        if self.resize_mode == "bicubic-antialias":
            from torchvision.transforms import InterpolationMode
            from torchvision.transforms.functional import resize
            x = resize(frames, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        else:
            x = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        return x * 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1,
                      n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, n.maxpool2,
                      n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                      n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = layer(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def build_fid_inception(spec: BackboneSpec, paths: dict[str, Path], device: str) -> FIDInception:
    wf = spec.weights[0]
    net = fid_inception_network()
    apply_state_dict(spec, wf, paths[wf.filename], net, load_state_dict(spec, wf, paths[wf.filename]))
    return FIDInception(net, spec.options["resolution"], spec.options["resize_mode"]).to(device)


FID_INCEPTION = "fid-inception-229"
FID_INCEPTION_299 = "fid-inception-299"

FID_INCEPTION_SPEC = register_backbone(BackboneSpec(
    name=FID_INCEPTION, profile="paper", kind="image", weights=(INCEPTION_WEIGHTS,),
    preprocessing="frames [0,1] -> torchvision bicubic antialiased resize to 229x229 (centre crop 229 "
                  "is a no-op) -> x*2-1; no further resize inside the network (reference code)",
    output="2048-d final-average-pool features, float32 [N, 2048]",
    builder=build_fid_inception,
    description="FID backbone of the paper: TF-ported Inception-v3 (pytorch-fid), as the ASVA reference calls it",
    options={"resolution": 229, "resize_mode": "bicubic-antialias"},
))

FID_INCEPTION_299_SPEC = register_backbone(FID_INCEPTION_SPEC.replace(
    name=FID_INCEPTION_299, options={"resolution": 299, "resize_mode": "bilinear"},
    preprocessing="frames [0,1] -> bilinear resize to 299x299 (align_corners=False, no antialias) -> "
                  "x*2-1 (pytorch-fid defaults)",
    description="standard pytorch-fid FID Inception; NOT the paper's FID (that is fid-inception-229)"))
