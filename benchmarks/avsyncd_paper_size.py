"""AVSyncD at paper size: parameter counts, one training step, guided sampling steps.

Builds a randomly initialised UNet2DConditionModel with Stable Diffusion
1.5's shape (no download), inflates it to AVSyncD (ImageBind-huge audio
tokens: 229 x 768, 12 frames), then times

* training steps: training_loss (frame 1 clean, 20% null audio) + backward
  + gradient clipping 1.0 + AdamW(lr 1e-4, wd 1e-2) on the trainable
  parameters only;
* guided sampling steps: AVSyncDPipeline with audio guidance 4 (null and
  audio passes batched, one UNet call per step), DDIM so that one step is
  one UNet call; VAE excluded (latent in, latent out).

    python benchmarks/avsyncd_paper_size.py --latent-size 16            # CPU, minutes
    python benchmarks/avsyncd_paper_size.py --device cuda --dtype bf16 --latent-size 32 --steps 10 --json

With --json exactly one JSON object is printed on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from contextlib import nullcontext

import torch

#: Stable Diffusion 1.5's UNet config (diffusers), written out so no download is needed.
SD15_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
    freq_shift=0, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                    "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    cross_attention_dim=768, attention_head_dim=8, use_linear_projection=False,
)
#: Same block types at toy width: --tiny checks the script end to end in seconds.
TINY_UNET_CONFIG = dict(SD15_UNET_CONFIG, block_out_channels=(32, 32, 64, 64), layers_per_block=1,
                        cross_attention_dim=768)
TEXT_TOKENS = 77
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    # ru_maxrss is KiB on Linux: the process's peak resident memory so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Memory:
    """Peak memory of a phase: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        return peak_rss_gb()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="weights/autocast dtype; trainable weights stay fp32 (default fp32)")
    p.add_argument("--latent-size", type=int, default=32, help="latent side (pixels = 8x); default 32")
    p.add_argument("--batch", type=int, default=1, help="clips per step (default 1)")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--steps", type=int, default=1, help="timed training steps and guided sampling steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on cuda, 0 on cpu)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--audio-guidance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tiny", action="store_true", help="smoke test: toy-width UNet with the same block types")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from diffusers import UNet2DConditionModel
    import diffusers

    from asva_bench.models.avsyncd import AVSyncDPipeline, AVSyncDUNet, make_scheduler, training_loss

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.frames < 2 or args.latent_size < 8 or args.latent_size % 8:
        raise SystemExit("--steps >= 1, --frames >= 2 and --latent-size a multiple of 8 (SD downsamples 3x)")
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)
    dtype = DTYPES[args.dtype]
    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    mem = Memory(device)
    torch.manual_seed(args.seed)

    log("building SD-1.5-shaped UNet (random weights) and inflating ...")
    t0 = time.perf_counter()
    unet2d = UNet2DConditionModel(**(TINY_UNET_CONFIG if args.tiny else SD15_UNET_CONFIG))
    params_2d = sum(p.numel() for p in unet2d.parameters())
    model = AVSyncDUNet.from_unet2d(unet2d, audio_dim=768, num_frames=args.frames)
    model.to(device, dtype)
    for p in model.trainable_parameters():  # master weights of what trains stay fp32
        p.data = p.data.float()
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    sync(device)
    build_s = time.perf_counter() - t0
    counts = model.num_parameters()
    groups = {"temporal_conv": (".conv_temp.",), "audio_attn": (".norm_audio.", ".attn_audio."),
              "temporal_attn": (".pos_embedding_temp.", ".norm_temp.", ".attn_temp.")}
    breakdown = {k: sum(p.numel() for n, p in model.trainable_named_parameters() if any(x in n for x in keys))
                 for k, keys in groups.items()}
    log(f"  params total {counts['total']:,} (2D {params_2d:,}), trainable {counts['trainable']:,}; "
        f"built in {build_s:.1f} s, peak RSS {peak_rss_gb():.2f} GiB")

    geo = model.config.audio
    b, f, s = args.batch, args.frames, args.latent_size
    g = torch.Generator().manual_seed(args.seed)
    latents = torch.randn(b, f, 4, s, s, generator=g).to(device)
    audio = torch.randn(b, geo.n_tokens, geo.dim, generator=g).to(device)
    null_audio = torch.randn(1, geo.n_tokens, geo.dim, generator=g).to(device)
    text = torch.randn(b, TEXT_TOKENS, 768, generator=g).to(device)

    # -- training steps ----------------------------------------------------
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-2)
    ddpm = make_scheduler("ddpm")
    model.train()

    def train_step(i: int) -> float:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = training_loss(model, latents, audio, text, null_audio, ddpm,
                                 generator=torch.Generator().manual_seed(args.seed + i))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    for i in range(warmup):
        log(f"training warm-up {i + 1}/{warmup} ...")
        train_step(i)
    mem.reset()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        log(f"training step {i + 1}/{args.steps} ...")
        loss = train_step(warmup + i)
    sync(device)
    train_s = (time.perf_counter() - t0) / args.steps
    train_cpu_s = (time.process_time() - c0) / args.steps
    train_peak = mem.peak_gb()
    log(f"  training step {train_s:.2f} s, loss {loss:.4f}, peak {train_peak:.2f} GiB")
    opt.zero_grad(set_to_none=True)
    del opt

    # -- guided sampling steps ---------------------------------------------
    model.eval()
    pipe = AVSyncDPipeline(model, make_scheduler("ddim"))
    calls = []
    hook = model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))

    def sample(n_steps: int):
        with autocast():
            return pipe(None, audio, null_audio, text_embeddings=text, image_latents=latents[:, 0],
                        audio_guidance=args.audio_guidance, num_frames=f, num_inference_steps=n_steps,
                        scheduler="ddim", generator=list(range(b)), output_type="latent", progress=False)

    if warmup:
        log("sampling warm-up ...")
        sample(warmup)
    mem.reset()
    calls.clear()
    sync(device)
    log(f"guided sampling, {args.steps} step(s) ...")
    t0, c0 = time.perf_counter(), time.process_time()
    out = sample(args.steps)
    sync(device)
    step_s = (time.perf_counter() - t0) / args.steps
    step_cpu_s = (time.process_time() - c0) / args.steps
    sample_peak = mem.peak_gb()
    hook.remove()
    assert torch.equal(out.latents[:, 0], latents[:, 0].to(out.latents.dtype))

    pndm = make_scheduler("pndm")
    pndm.set_timesteps(50)
    unet_calls_50 = len(pndm.timesteps)  # PNDM (PLMS) 50 steps = 51 UNet calls
    result = {
        "benchmark": "avsyncd_paper_size",
        "unet": "tiny (smoke test)" if args.tiny else "sd15",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "batch": b, "frames": f, "latent_size": s, "pixel_size": 8 * s,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "attention": "torch scaled_dot_product_attention",
        "params_2d": params_2d,
        "params_total": counts["total"],
        "params_trainable": counts["trainable"],
        "params_trainable_breakdown": breakdown,
        # the authors' released AVSync15 UNet holds about 1.17e9 parameters (docs/avsyncd.md)
        "params_total_vs_released_1_17e9": round(counts["total"] / 1.17e9, 4),
        "transformer_blocks": model.num_transformer_blocks,
        "build_s": round(build_s, 3),
        "train_step_s": round(train_s, 4),
        "train_step_process_cpu_s": round(train_cpu_s, 3),
        "train_loss": round(loss, 6),
        "train_peak_mem_gb": round(train_peak, 3),
        "guided_step_s": round(step_s, 4),
        "guided_step_process_cpu_s": round(step_cpu_s, 3),
        "guided_unet_batch": calls[0] if calls else None,
        "guided_unet_calls_per_step": len(calls) / args.steps,
        "guided_frames_per_s": round(b * f / step_s, 3),
        "est_clip_s_pndm50": round(unet_calls_50 * step_s / b, 3),
        "est_video_frames_per_s_pndm50": round(b * f / (unet_calls_50 * step_s), 4),
        "sampling_peak_mem_gb": round(sample_peak, 3),
        "peak_mem_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "steps_timed": args.steps, "warmup": warmup,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "diffusers": diffusers.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        w = max(map(len, result))
        for k, v in result.items():
            print(f"{k:<{w}}  {v}")
    return result


if __name__ == "__main__":
    main()
