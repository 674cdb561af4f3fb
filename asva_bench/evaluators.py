"""The evaluator suite: the networks every metric stands on, for one profile.

The scorer only talks to this interface; the profile decides which networks
fill it (paper: Inception / I3D / ImageBind-huge / AVID-CMA sync classifier;
mini: the small counterparts trained on `synth`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .profiles import get_profile

#: feature kind -> what it is (the names metrics declare in ``needs``)
FEATURE_KINDS = {
    "image_features": "per-frame features for FID",
    "video_features": "per-clip features for FVD",
    "vision_embedding": "per-frame embedding in the audio-image-text space (IA, IT, AlignSync)",
    "audio_embedding": "per-clip audio embedding in the same space",
    "text_embedding": "class-text embedding in the same space",
    "sync_logit": "raw audio-visual sync logit phi(a, v)",
}


@runtime_checkable
class EvaluatorSuite(Protocol):
    """Frames are float [*, 3, H, W] in [0, 1] at the protocol size; mel is the
    normalised [B, 1, 128, 204] of asva_bench.protocol.waveforms_to_mel."""

    profile: str

    # batch_statistics: BatchNorm uses the statistics of this batch (track asva-reference, FID)
    def image_features(self, frames: torch.Tensor, batch_statistics: bool = False) -> torch.Tensor: ...  # [N, D]
    def video_features(self, clips: torch.Tensor) -> torch.Tensor: ...           # [B, D]
    def embed_vision(self, frames: torch.Tensor) -> torch.Tensor: ...            # [N, E]
    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor: ...                # [B, E]
    def embed_text(self, texts: list[str]) -> torch.Tensor: ...                  # [B, E]
    def sync_logit(self, clips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor: ...  # [B]
    def fingerprint(self) -> dict: ...  # backbone name -> weight hash / config hash



class BackboneSuite:
    """An EvaluatorSuite made of registered backbones (built lazily, once)."""

    def __init__(self, profile: str, names: dict | None = None, device: str = "cpu", cache_root=None):
        self.profile = get_profile(profile).name
        self.names = dict(names or get_profile(profile).backbones)
        self.device = device
        self.cache_root = cache_root
        self._built: dict = {}

    def backbone(self, role: str):
        if role not in self._built:
            from .backbones import build_backbone
            self._built[role] = build_backbone(self.names[role], cache_root=self.cache_root,
                                               device=self.device)
        return self._built[role]

    def image_features(self, frames, batch_statistics: bool = False):
        return self.backbone("image").features(frames, batch_statistics=batch_statistics)

    def video_features(self, clips):
        return self.backbone("video").features(clips)

    def embed_vision(self, frames):
        return self.backbone("embedding").embed_vision(frames)

    def embed_audio(self, mel):
        return self.backbone("embedding").embed_audio(mel)

    def embed_text(self, texts):
        return self.backbone("embedding").embed_text(texts)

    def sync_logit(self, clips, mel):
        return self.backbone("sync").phi(clips, mel)

    def fingerprint(self) -> dict:
        """role -> 'backbone-name:weights-digest' (builds the backbones to read their weights)."""
        return {role: f"{name}:{self.backbone(role).weights_digest[:16]}" for role, name in sorted(self.names.items())}


def load_suite(profile: str, device: str = "cpu") -> BackboneSuite:
    from .profiles import check_profile
    return BackboneSuite(check_profile(profile), device=device)
