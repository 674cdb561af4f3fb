"""ImageBind-huge: vision / audio / text towers for IA, IT, AlignSync and AVSyncD's audio tokens.

The network is the ``ImageBindModel`` class of the ``imagebind`` package (PyPI
``imagebind-unofficial==0.1.1``), with ``imagebind_huge``'s configuration,
loaded from ``imagebind_huge.pth`` with ``weights_only=True``.

Preprocessing (docs/protocol.md "Metrics", as the reference code does it):

* vision: frames [0, 1] -> torchvision bicubic antialiased squash-resize to
  224 x 224 (the centre crop to 224 after it is a no-op) -> CLIP mean / std;
* audio: our own normalised mel [B, 1, 128, 204]
  (:func:`asva_bench.protocol.waveforms_to_mel`, identical to ImageBind's
  ``waveform2melspec`` + normalisation); ImageBind's file loaders
  (``torchaudio.load``, clip sampling) are never used;
* text: ImageBind's CLIP BPE tokenizer, 77 tokens, the raw class string.

Embeddings are the heads' outputs L2-normalised. ImageBind's postprocessors
also multiply audio / text by a logit scale; the reference divides it out
again, so cosine similarities are the same.

``audio_tokens`` is the audio trunk's output before the head: 1 global token
plus the 12 x 19 (frequency x time) patch grid of the 16 x 16 / stride-10
stem, 768-d.

Installing: ``pip install --no-deps imagebind-unofficial==0.1.1`` plus
``timm ftfy iopath einops regex``. The package's ``__init__`` imports its
data loaders, which need ``pkg_resources`` (setuptools < 82) and
``pytorchvideo``; asva-bench uses neither, so when that import fails the
model modules are imported without running the package ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn

from .base import BackboneSpec, EmbeddingModel, WeightFile, register_backbone
from .weights import apply_state_dict, load_state_dict

IMAGEBIND_WEIGHTS = WeightFile(
    filename="imagebind_huge.pth",
    url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
    sha256=None,  # Meta publishes no digest for this file
    format="state_dict",
    note="Meta's ImageBind release, ~4.5 GB",
)

#: ``imagebind.models.imagebind_model.imagebind_huge``'s arguments (tested against the package).
HUGE_CONFIG = dict(
    vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
    text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
    out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VISION_SIZE = 224
_USED = ("vision", "audio", "text")
_INSTALL_HINT = ("pip install --no-deps imagebind-unofficial==0.1.1 && pip install timm ftfy iopath einops regex")


def import_imagebind():
    """Return ``(imagebind_model, multimodal_preprocessors, bpe_vocab_path)``."""
    try:
        from imagebind.models import imagebind_model, multimodal_preprocessors
    except ImportError as first:
        if importlib.util.find_spec("imagebind") is None:
            raise ImportError(f"the ImageBind backbone needs the 'imagebind' package: {_INSTALL_HINT}") from first
        # The package __init__ pulled in its data loaders (pkg_resources,
        # pytorchvideo); import the model modules under a bare package instead.
        for name in [m for m in sys.modules if m == "imagebind" or m.startswith("imagebind.")]:
            del sys.modules[name]
        pkg = types.ModuleType("imagebind")
        pkg.__path__ = list(importlib.util.find_spec("imagebind").submodule_search_locations)
        sys.modules["imagebind"] = pkg
        try:
            imagebind_model = importlib.import_module("imagebind.models.imagebind_model")
            multimodal_preprocessors = importlib.import_module("imagebind.models.multimodal_preprocessors")
        except ImportError as e:
            del sys.modules["imagebind"]
            raise ImportError(f"the ImageBind model modules cannot be imported ({e}); {_INSTALL_HINT}") from e
    root = Path(imagebind_model.__file__).resolve().parents[1]
    return imagebind_model, multimodal_preprocessors, root / "bpe" / "bpe_simple_vocab_16e6.txt.gz"


def _conv_out(n: int, k: int, s: int) -> int:
    return (n - k) // s + 1


class ImageBindEmbedder(EmbeddingModel):
    """ImageBind's vision, audio and text towers behind the EmbeddingModel interface."""

    def __init__(self, net: nn.Module, config: dict, tokenizer):
        super().__init__()
        self.net = net
        self.tokenizer = tokenizer
        self.embed_dim = int(config.get("out_embed_dim", 768))
        self.audio_token_dim = int(config.get("audio_embed_dim", 768))
        k, s = int(config.get("audio_kernel_size", 16)), int(config.get("audio_stride", 10))
        bins, frames = int(config.get("audio_num_mel_bins", 128)), int(config.get("audio_target_len", 204))
        self.mel_shape = (1, bins, frames)
        self.audio_token_grid = (_conv_out(bins, k, s), _conv_out(frames, k, s))
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess_vision(self, frames: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize
        x = resize(frames, [VISION_SIZE, VISION_SIZE], interpolation=InterpolationMode.BICUBIC, antialias=True)
        return (x - self.clip_mean.to(x.dtype)) / self.clip_std.to(x.dtype)

    def _tower(self, modality: str, value, head: bool = True) -> torch.Tensor:
        pre = self.net.modality_preprocessors[modality](**{modality: value})
        tokens = self.net.modality_trunks[modality](**pre["trunk"])
        return self.net.modality_heads[modality](tokens, **pre["head"]) if head else tokens

    def _vision(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._tower("vision", pixels)

    def _audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self._tower("audio", mel)

    def _text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenize(texts).to(self.device)
        return self._tower("text", tokens)

    def _audio_trunk(self, mel: torch.Tensor) -> torch.Tensor:
        return self._tower("audio", mel, head=False)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """[len(texts), 77] int64 CLIP BPE tokens (start, text, end, zero padding)."""
        tokens = self.tokenizer(list(texts))
        return tokens.unsqueeze(0) if tokens.ndim == 1 else tokens


def build_imagebind(spec: BackboneSpec, paths: dict[str, Path], device: str) -> ImageBindEmbedder:
    ibm, mpp, bpe = import_imagebind()
    config = dict(spec.options.get("config", HUGE_CONFIG))
    wf = spec.weights[0]
    state_dict = load_state_dict(spec, wf, paths[wf.filename])
    # Built directly on the target device: random init of 1.2B parameters is
    # ~20 s on one CPU core and instant on a GPU; the weights overwrite it.
    with torch.device(device):
        net = ibm.ImageBindModel(**config)
    apply_state_dict(spec, wf, paths[wf.filename], net, state_dict)
    del state_dict
    # Depth, thermal and IMU towers are never used: free their memory.
    for part in (net.modality_preprocessors, net.modality_trunks, net.modality_heads, net.modality_postprocessors):
        for key in list(part.keys()):
            if key not in _USED:
                del part[key]
    tokenizer = mpp.SimpleTokenizer(bpe_path=str(bpe))
    return ImageBindEmbedder(net, config, tokenizer).to(device)


IMAGEBIND_HUGE = "imagebind-huge"

IMAGEBIND_HUGE_SPEC = register_backbone(BackboneSpec(
    name=IMAGEBIND_HUGE, profile="paper", kind="embedding", weights=(IMAGEBIND_WEIGHTS,),
    preprocessing="vision: frames [0,1] -> torchvision bicubic antialiased squash-resize to 224x224 -> CLIP "
                  "mean/std; audio: protocol mel [B,1,128,204]; text: CLIP BPE, 77 tokens",
    output="unit-norm 1024-d embeddings (vision [N,1024], audio [B,1024], text [T,1024]); "
           "audio_tokens [B, 229, 768] = 1 global + 12x19 patches",
    builder=build_imagebind,
    description="ImageBind-huge (imagebind-unofficial package) for IA, IT, AlignSync and AVSyncD audio tokens",
    options={"config": HUGE_CONFIG},
))
