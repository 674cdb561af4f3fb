"""AVSyncD (Zhang et al., ECCV 2024): an image-to-video latent diffusion model
inflated from a 2D text-to-image UNet, conditioned on time-aligned audio tokens.

    unet = AVSyncDUNet.from_unet2d(UNet2DConditionModel(...), audio_dim=768, num_frames=12)
    loss = training_loss(unet, latents, audio_tokens, text_emb, null_audio_tokens, make_scheduler("ddpm"))
    clip = AVSyncDPipeline(unet, vae=vae)(image, audio_tokens, null_audio_tokens, text_embeddings=text)
    unet = load_released_unet("<exp>/ckpts/checkpoint-37000/modules")   # the authors' release, as downloaded
"""

from .attention import AVSyncDTransformerBlock, FirstFrameAttnProcessor
from .audio_tokens import (IMAGEBIND_HUGE_AUDIO, AudioTokenGeometry, check_audio_tokens, gather_frame_tokens,
                           null_audio_tokens)
from .pipeline import (CONDITIONING_MODES, NOISE_SCHEDULE, SCHEDULERS, AVSyncDOutput, AVSyncDPipeline,
                       load_sd_folder, make_scheduler, training_loss)
from .released import ReleasedCheckpointError, find_released_unet, load_released_unet
from .temporal import (ClipGroupNorm, FirstFrameTemporalConv2d, FrameContext, FrameContextHolder,
                       frame_index_embedding)
from .unet3d import ARCHITECTURE, CONFIG_FILE, TRAINABLE_WEIGHTS_FILE, AVSyncDConfig, AVSyncDUNet

__all__ = [
    "AVSyncDTransformerBlock", "FirstFrameAttnProcessor",
    "IMAGEBIND_HUGE_AUDIO", "AudioTokenGeometry", "check_audio_tokens", "gather_frame_tokens", "null_audio_tokens",
    "CONDITIONING_MODES", "NOISE_SCHEDULE", "SCHEDULERS", "AVSyncDOutput", "AVSyncDPipeline", "load_sd_folder",
    "make_scheduler", "training_loss",
    "ReleasedCheckpointError", "find_released_unet", "load_released_unet",
    "ClipGroupNorm", "FirstFrameTemporalConv2d", "FrameContext", "FrameContextHolder", "frame_index_embedding",
    "ARCHITECTURE", "CONFIG_FILE", "TRAINABLE_WEIGHTS_FILE", "AVSyncDConfig", "AVSyncDUNet",
]
