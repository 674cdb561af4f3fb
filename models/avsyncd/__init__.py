"""AVSyncD (Zhang et al., ECCV 2024): an image-to-video latent diffusion model
inflated from a 2D text-to-image UNet, conditioned on time-aligned audio tokens.

    unet = AVSyncDUNet.from_unet2d(UNet2DConditionModel(...), audio_dim=768, num_frames=12)
    loss = training_loss(unet, latents, audio_tokens, text_emb, null_audio_tokens, make_scheduler("ddpm"))
    clip = AVSyncDPipeline(unet, vae=vae)(image, audio_tokens, null_audio_tokens, text_embeddings=text)
"""

from .attention import AudioCrossAttention, AVSyncDTransformerBlock, FirstFrameAttnProcessor
from .audio_tokens import (IMAGEBIND_HUGE_AUDIO, AudioTokenGeometry, check_audio_tokens, gather_frame_tokens,
                           null_audio_tokens)
from .pipeline import (NOISE_SCHEDULE, AVSyncDOutput, AVSyncDPipeline, load_sd_folder, make_scheduler,
                       training_loss)
from .temporal import (FirstFrameTemporalConv2d, FrameContext, FrameContextHolder, TemporalSelfAttention,
                       sinusoidal_frame_embedding)
from .unet3d import CONFIG_FILE, TRAINABLE_WEIGHTS_FILE, AVSyncDConfig, AVSyncDUNet

__all__ = [
    "AudioCrossAttention", "AVSyncDTransformerBlock", "FirstFrameAttnProcessor",
    "IMAGEBIND_HUGE_AUDIO", "AudioTokenGeometry", "check_audio_tokens", "gather_frame_tokens", "null_audio_tokens",
    "NOISE_SCHEDULE", "AVSyncDOutput", "AVSyncDPipeline", "load_sd_folder", "make_scheduler", "training_loss",
    "FirstFrameTemporalConv2d", "FrameContext", "FrameContextHolder", "TemporalSelfAttention",
    "sinusoidal_frame_embedding",
    "CONFIG_FILE", "TRAINABLE_WEIGHTS_FILE", "AVSyncDConfig", "AVSyncDUNet",
]
