"""The forward diffusion process for the diffusion trainers (mini base, AVSyncD / I2VD).

Noise is added by the diffusers scheduler the model is trained for
(``scheduler.add_noise``, the DDPM q(x_t | x_0)), never by a hand-written
formula, so training and sampling share one definition of the schedule.
"""

from __future__ import annotations

import torch


def draw_timesteps_and_noise(latents: torch.Tensor, scheduler, generator: torch.Generator | None = None):
    """Timesteps [B] uniform over the scheduler's training steps, then standard-normal noise
    shaped like ``latents`` (drawn in float32), in that order from ``generator`` (on its own
    device), returned on the latents' device (noise in their dtype)."""
    b, dev = latents.shape[0], latents.device
    gdev = generator.device if generator is not None else dev
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=gdev)
    noise = torch.randn(latents.shape, generator=generator, device=gdev, dtype=torch.float32)
    return t.to(dev), noise.to(dev, latents.dtype)


def noised(scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
           clean_first_frame: bool = False) -> torch.Tensor:
    """x_t of ``latents`` at timesteps ``t``; ``clean_first_frame``: latents are [B, F, ...] and
    frame 1 stays clean (the image the video model animates)."""
    x = scheduler.add_noise(latents, noise, t)
    if clean_first_frame:
        x = torch.cat([latents[:, :1], x[:, 1:]], dim=1)
    return x


__all__ = ["draw_timesteps_and_noise", "noised"]
