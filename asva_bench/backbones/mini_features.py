"""Mini FID and FVD features: the mini profile's stand-ins for Inception-v3 and I3D.

No extra networks: both reuse trained towers, so they need no weights of
their own (and nothing extra to ship):

* ``mini-fid`` (image, 240-d): the mini embedding's image tower
  (:mod:`.mini_embedding`), global-average-pooled output of each of its four
  stages (16 + 32 + 64 + 128 channels at 32, 16, 8 and 4 px) concatenated.
  Inception's pool features are one deep layer; with a tower this small the
  early stages are kept as well because they carry the fine texture that
  additive noise and blur change (the metric validity suite requires FID to
  grow strictly with both), while the deep stage carries the class content.
* ``mini-fvd`` (video, 336-d): per clip, the mini sync classifier's video
  encoder (:mod:`.sync_classifier`; 32x32 frames plus frame differences,
  trained to localise motion in time) gives 48-d features at each of the 12
  steps - their mean and standard deviation over time (96-d) describe the
  motion; the mean over the 12 frames of the ``mini-fid`` features (240-d)
  describes appearance. I3D likewise mixes appearance and motion in one
  vector.

Input conventions are the backbone registry's: frames [N, 3, H, W] / clips
[B, 12, 3, H, W] in [0, 1] (the mini protocol's 64x64).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackboneSpec, ImageBackbone, VideoBackbone, register_backbone
from .mini_embedding import MiniEmbedding, load_checkpoint as load_embedding
from .sync_classifier import SyncClassifier, load_checkpoint as load_sync, mini_weight_file


class MiniImageFeatures(ImageBackbone):
    """``features(frames [N,3,H,W]) -> [N, 240]``: pooled stages of the mini image tower."""

    def __init__(self, embedding: MiniEmbedding):
        super().__init__()
        self.embedding = embedding
        self.feature_dim = sum(embedding.config.image_channels)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        return self.embedding.preprocess_vision(frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.embedding.image.stage_features(x), dim=1)


class MiniVideoFeatures(VideoBackbone):
    """``features(clips [B,12,3,H,W]) -> [B, 336]``: sync-video motion stats + mean image features."""

    num_frames = 12

    def __init__(self, sync: SyncClassifier, embedding: MiniEmbedding):
        super().__init__()
        self.sync = sync
        self.image = MiniImageFeatures(embedding)
        self.feature_dim = 2 * sync.config.video_dim + self.image.feature_dim

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        return clips

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        B, T = clips.shape[:2]
        motion = self.sync.encode_video(clips)                       # [B, C, steps]
        frames = self.image.preprocess(clips.flatten(0, 1))
        appearance = self.image(frames).view(B, T, -1).mean(1)
        return torch.cat([motion.mean(2), motion.std(2), appearance], dim=1)


def _files(*stems: str):
    return tuple(mini_weight_file(f"{s}{ext}") for s in stems for ext in (".safetensors", ".json"))


def build_mini_fid(spec: BackboneSpec, paths: dict[str, Path], device: str) -> MiniImageFeatures:
    return MiniImageFeatures(load_embedding(paths["mini-embedding.safetensors"], device)).to(device)


def build_mini_fvd(spec: BackboneSpec, paths: dict[str, Path], device: str) -> MiniVideoFeatures:
    return MiniVideoFeatures(load_sync(paths["mini-sync.safetensors"], device),
                             load_embedding(paths["mini-embedding.safetensors"], device)).to(device)


MINI_FID = "mini-fid"
MINI_FVD = "mini-fvd"

MINI_FID_SPEC = register_backbone(BackboneSpec(
    name=MINI_FID, profile="mini", kind="image", weights=_files("mini-embedding"),
    preprocessing="frames [0,1] -> antialiased bilinear resize to 64x64 (no-op for mini clips) -> (x-0.5)/0.25",
    output="240-d features [N, 240]: global-average-pooled outputs of the 4 stages of the mini image tower",
    builder=build_mini_fid,
    description="mini FID features (the mini embedding's image tower); stand-in for the FID Inception",
))

MINI_FVD_SPEC = register_backbone(BackboneSpec(
    name=MINI_FVD, profile="mini", kind="video", weights=_files("mini-sync", "mini-embedding"),
    preprocessing="clips [B,12,3,64,64] in [0,1]; sync video tower: area downsample to 32x32 + frame "
                  "differences; image tower as mini-fid",
    output="336-d features [B, 336]: mean and std over time of the mini sync video features (2x48) + "
           "mean over frames of mini-fid features (240)",
    builder=build_mini_fvd,
    description="mini FVD features (mini sync video tower + mini image tower); stand-in for I3D",
))
