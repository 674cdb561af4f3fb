"""Training of the mini base model (`asva-bench train base --profile mini`).

Recipe: SD 1.5's objective on single frames of the training videos: DDPM
1000 steps, scaled-linear betas 0.00085-0.012, epsilon prediction, MSE;
AdamW, linear warm-up then constant learning rate, gradient clip 1.0, EMA of
the weights (exported), random horizontal flip, class text conditioning with
10% of the texts replaced by the empty string (classifier-free guidance).
UNet and text encoder train jointly; the latent codec is fitted once (PCA)
before the first step.  bf16 autocast on CUDA.

Stops at ``--steps`` (total, counting resumed steps) or after ``--minutes``
of this invocation, whichever comes first.  ``OUT/checkpoint/`` holds the
resumable state (one safetensors file + trainer.json), rewritten atomically
every ``--checkpoint-every`` steps and at the end; ``OUT/mini_base/`` the
exported bundle (EMA weights); ``OUT/loss.jsonl`` the loss log; a run on an
existing OUT resumes unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .mini_base import MiniBase, MiniBaseConfig, MiniTextEncoder, MiniTokenizer, PatchPCAAutoencoder, build_unet
from .pipeline import make_scheduler

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.safetensors"
TRAINER_FILE = "trainer.json"
BUNDLE_DIR = "mini_base"
LOSS_LOG = "loss.jsonl"
CHECKPOINT_VERSION = 1
PCA_FIT_FRAMES = 2048  # x 256 patches each: ample for a 48 x 48 covariance

DEFAULTS = dict(
    profile="mini", dataset="synth", root=None, steps=None, minutes=None, batch_size=16, lr=5e-4,
    weight_decay=1e-2, warmup_steps=100, text_dropout=0.1, ema_decay=0.999, device="cpu", bf16=True, seed=0,
    out=None, fresh=False, threads=None, cache_dir=None, cache_fps=12.0, workers=None, log_every=25,
    checkpoint_every=500,
    samples_per_class=4, sample_steps=25, guidance_scale=3.0, export_dtype="fp16", model_config=None,
    progress=True, json=False,
)
DEFAULT_STEPS = 20000


def default_out() -> Path:
    from asva_bench.home import home
    return home() / "training" / "mini_base"


def _resolve(args) -> SimpleNamespace:
    given = vars(args) if not isinstance(args, dict) else args
    a = SimpleNamespace(**{k: given.get(k, v) if given.get(k) is not None else v for k, v in DEFAULTS.items()})
    if a.profile != "mini":
        raise ValueError(f"train base: profile '{a.profile}' has no trainable base here; the paper profile's "
                         "base is Stable Diffusion 1.5 (pretrained). Use --profile mini")
    if a.steps is None and a.minutes is None:
        a.steps = DEFAULT_STEPS
    if a.steps is not None and a.steps < 0 or a.minutes is not None and a.minutes <= 0:
        raise ValueError("train base: --steps must be >= 0 and --minutes > 0")
    if a.export_dtype not in ("fp16", "fp32"):
        raise ValueError(f"train base: --export-dtype must be fp16 or fp32, got {a.export_dtype!r}")
    a.out = Path(a.out).expanduser() if a.out else default_out()
    return a


def _device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train base: --device cuda but torch sees no CUDA device; use --device cpu")
    return dev


# --------------------------------------------------------------------------
# Checkpoint: one safetensors file (weights, EMA, optimizer, RNG) + trainer.json
# --------------------------------------------------------------------------
def _save_checkpoint(folder: Path, base: MiniBase, ema: dict | None, opt, gens: dict, record: dict) -> None:
    from safetensors.torch import save_file

    from asva_bench.avio import atomic_path, atomic_write_text
    t = {}
    for prefix, module in (("unet.", base.unet), ("text_encoder.", base.text_encoder), ("vae.", base.vae)):
        t.update({prefix + k: v for k, v in module.state_dict().items()})
    if ema is not None:
        t.update({"ema." + k: v for k, v in ema.items()})
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for k, v in st.items():
            t[f"optim.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    for name, g in gens.items():
        t[f"rng.{name}"] = g.get_state()
    t = {k: v.detach().to("cpu").contiguous().clone() for k, v in t.items()}
    record = dict(record, version=CHECKPOINT_VERSION, param_groups=osd["param_groups"])
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / STATE_FILE) as tmp:
        save_file(t, str(tmp), metadata={"trainer": json.dumps(record)})
    atomic_write_text(folder / TRAINER_FILE, json.dumps(record, indent=1) + "\n")


def _load_checkpoint(folder: Path):
    from safetensors import safe_open
    path = folder / STATE_FILE
    with safe_open(str(path), framework="pt") as f:
        record = json.loads(f.metadata()["trainer"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if record.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {record.get('version')} is not {CHECKPOINT_VERSION}; "
                         "start over with --fresh")
    return record, tensors


def _sub(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict, param_groups: list) -> dict:
    state: dict = {}
    for k, v in _sub(tensors, "optim.").items():
        idx, name = k.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": param_groups}


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def _trainable(base: MiniBase) -> dict:
    named = {"unet." + n: p for n, p in base.unet.named_parameters()}
    named.update({"text_encoder." + n: p for n, p in base.text_encoder.named_parameters()})
    return named


def add_noise(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor):
    """DDPM forward process q(x_t | x_0) (what DDPMScheduler.add_noise computes)."""
    ab = alphas_cumprod[t].view(-1, *([1] * (latents.ndim - 1))).to(latents.dtype)
    return ab.sqrt() * latents + (1 - ab).sqrt() * noise


@torch.no_grad()
def validation_loss(base: MiniBase, images: torch.Tensor, texts, seed: int = 0) -> float:
    """Epsilon MSE on fixed (image, text, timestep, noise): comparable across checkpoints.

    Image i gets timestep round(i * 999 / (n - 1)) and noise from ``seed``.
    """
    n = images.shape[0]
    sched = make_scheduler("ddpm")
    t = torch.linspace(0, sched.config.num_train_timesteps - 1, n).round().long().to(base.device)
    latents = base.encode_images(images.to(base.device))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    noisy = add_noise(latents, noise, t, sched.alphas_cumprod.to(base.device))
    pred = base.unet(noisy, t, encoder_hidden_states=base.encode_text(list(texts))).sample
    return float(F.mse_loss(pred.float(), noise.float()))


def _apply_ema(base: MiniBase, ema: dict) -> None:
    with torch.no_grad():
        for n, p in _trainable(base).items():
            p.copy_(ema[n])


def train_base(args) -> dict:
    """Train (or resume) the mini base; returns a summary dict.  ``args``: argparse namespace or dict."""
    from tqdm.auto import tqdm

    from .frame_cache import ensure_frame_cache

    a = _resolve(args)
    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(int(a.threads))
    out = a.out
    ckpt = out / CHECKPOINT_DIR
    cache = ensure_frame_cache(a.dataset, a.root, split="train", profile=a.profile, fps=a.cache_fps,
                               cache_dir=a.cache_dir, workers=a.workers or _cores(), progress=a.progress)
    cache.to(dev)

    gen = torch.Generator().manual_seed(a.seed)                   # batches, text dropout
    dgen = torch.Generator(dev).manual_seed(a.seed + 1)            # timesteps, noise
    resumed_from = 0
    prior = {"elapsed_s": 0.0}
    if (ckpt / STATE_FILE).is_file() and not a.fresh:
        record, tensors = _load_checkpoint(ckpt)
        cfg = MiniBaseConfig.from_dict(record["config"])
        if record["class_texts"] != cache.class_texts:
            raise ValueError(f"{ckpt}: checkpoint was trained on classes {record['class_texts']}, the dataset "
                             f"has {cache.class_texts}; use another --out or --fresh")
        tok = MiniTokenizer(record["vocabulary"], cfg.max_text_tokens)
        vae = PatchPCAAutoencoder(patch_size=cfg.patch_size, latent_channels=cfg.latent_channels)
        vae.load_state_dict(_sub(tensors, "vae."))
        text = MiniTextEncoder(tok.vocab_size, cfg.max_text_tokens, cfg.text_dim, cfg.text_layers, cfg.text_heads)
        base = MiniBase(build_unet(cfg), vae, text, tok, cfg)
        base.unet.load_state_dict(_sub(tensors, "unet."))
        base.text_encoder.load_state_dict(_sub(tensors, "text_encoder."))
        resumed_from = int(record["step"])
        gen.set_state(tensors["rng.cpu"])
        if torch.device(record["device"]).type == dev.type:
            dgen.set_state(tensors["rng.device"])
        else:  # a CPU generator state does not fit a CUDA generator: a new, still seeded, noise stream
            dgen.manual_seed(a.seed + 1 + resumed_from)
        prior = record
    else:
        tensors, record = None, None
        cfg = MiniBaseConfig.from_dict(a.model_config) if a.model_config else MiniBaseConfig()
        n_fit = min(PCA_FIT_FRAMES, int(cache.frame_offsets[-1]))
        fit = cache.sample_frames(n_fit, torch.Generator().manual_seed(a.seed), flip=True).images
        vae = PatchPCAAutoencoder.fit(fit.cpu(), cfg.patch_size, cfg.latent_channels)
        base = MiniBase.create(cache.class_texts, vae, cfg, seed=a.seed)
        if a.fresh:
            (out / LOSS_LOG).unlink(missing_ok=True)
    base.to(dev)
    base.unet.train()
    base.text_encoder.train()
    params = _trainable(base)
    opt = torch.optim.AdamW(list(params.values()), lr=a.lr, weight_decay=a.weight_decay,
                            fused=dev.type == "cuda")
    use_ema = a.ema_decay > 0
    ema = None
    if use_ema:
        ema = {n: p.detach().clone() for n, p in params.items()}
    if tensors is not None:
        opt.load_state_dict(_optimizer_state(tensors, record["param_groups"]))
        for g in opt.param_groups:  # the command line decides the rate of the new segment
            g["weight_decay"] = a.weight_decay
        if use_ema:
            saved = _sub(tensors, "ema.")
            if saved and set(saved) != set(ema):
                raise ValueError(f"{ckpt}: EMA tensors do not match the model; start over with --fresh")
            if saved:  # a run without EMA resumed with EMA starts averaging from the current weights
                ema = {n: saved[n].to(dev) for n in ema}
        del tensors
    ema_names = list(params)
    ema_list = [ema[n] for n in ema_names] if use_ema else []
    param_list = [params[n] for n in ema_names]

    sched = make_scheduler("ddpm")
    alphas = sched.alphas_cumprod.to(dev)
    class_ids = base.tokenizer(cache.class_texts).input_ids.to(dev)
    null_ids = base.tokenizer([""]).input_ids.to(dev)
    amp = dev.type == "cuda" and a.bf16
    n_params = base.num_parameters()

    out.mkdir(parents=True, exist_ok=True)
    log = open(out / LOSS_LOG, "a")
    step = resumed_from
    target = a.steps if a.steps is not None else None
    deadline = time.perf_counter() + a.minutes * 60 if a.minutes is not None else None
    t_start = time.perf_counter()
    window, first_loss, last_loss, t_window, step_window = [], None, None, time.perf_counter(), step
    bar = tqdm(total=target, initial=step, desc="train mini base", unit="step", disable=not a.progress)

    def record_now() -> dict:
        return {"step": step, "config": cfg.to_dict(), "class_texts": cache.class_texts,
                "vocabulary": base.tokenizer.words, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
                "ema_decay": a.ema_decay, "text_dropout": a.text_dropout, "dataset": a.dataset,
                "frame_cache": cache.meta.get("key"), "device": str(dev), "bf16": amp,
                "elapsed_s": round(float(prior.get("elapsed_s", 0.0)) + time.perf_counter() - t_start, 1),
                "images_seen": int(step * a.batch_size), "final_loss": last_loss}

    def checkpoint() -> None:
        _save_checkpoint(ckpt, base, ema, opt, {"cpu": gen, "device": dgen}, record_now())

    interrupted = False
    try:
        while (target is None or step < target) and (deadline is None or time.perf_counter() < deadline):
            lr = a.lr * min(1.0, (step + 1) / max(1, a.warmup_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            batch = cache.sample_frames(a.batch_size, gen, flip=True)
            drop = (torch.rand(a.batch_size, generator=gen) < a.text_dropout).to(dev)
            ids = torch.where(drop[:, None], null_ids, class_ids[batch.labels])
            with torch.no_grad():
                latents = base.vae.encode(batch.images * 2.0 - 1.0).latent_dist.mode() * base.vae.config.scaling_factor
            t = torch.randint(0, sched.config.num_train_timesteps, (a.batch_size,), generator=dgen, device=dev)
            noise = torch.randn(latents.shape, generator=dgen, device=dev)
            noisy = add_noise(latents, noise, t, alphas)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                ctx = base.text_encoder(ids)[0]
                pred = base.unet(noisy, t, encoder_hidden_states=ctx).sample
            loss = F.mse_loss(pred.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(param_list, 1.0)
            opt.step()
            step += 1
            if use_ema:
                decay = min(a.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_list, [p.detach() for p in param_list], 1.0 - decay)
            window.append(loss.detach())
            if a.log_every and step % a.log_every == 0 and window:
                mean = float(torch.stack(window).mean())  # the only host sync of the loop
                if not math.isfinite(mean):
                    raise FloatingPointError(f"train base: mean loss became {mean} before step {step}; lower "
                                             f"--lr (now {a.lr}) and resume from the last checkpoint in {ckpt}")
                now = time.perf_counter()
                rate = (step - step_window) / max(1e-9, now - t_window)
                first_loss = mean if first_loss is None else first_loss
                last_loss = mean
                log.write(json.dumps({"step": step, "loss": round(mean, 6), "lr": lr,
                                      "steps_per_s": round(rate, 3), "elapsed_s": round(now - t_start, 1),
                                      "images": step * a.batch_size}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{mean:.4f}", it_s=f"{rate:.2f}")
                window, t_window, step_window = [], now, step
            bar.update(1)
            if a.checkpoint_every and step % a.checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        log.close()
    if window:
        last_loss = float(torch.stack(window).mean())
        first_loss = last_loss if first_loss is None else first_loss
    elapsed = time.perf_counter() - t_start
    checkpoint()

    # export: EMA weights in eval mode
    if use_ema:
        _apply_ema(base, ema)
    base.eval()
    base.info = {k: v for k, v in record_now().items() if k not in ("config", "vocabulary")}
    export_dtype = torch.float16 if a.export_dtype == "fp16" else torch.float32
    bundle = base.save(out / BUNDLE_DIR, dtype=export_dtype)
    samples = None
    if a.samples_per_class > 0:
        samples = str(write_sample_grid(base, out / "samples.png", per_class=a.samples_per_class,
                                        steps=a.sample_steps, guidance_scale=a.guidance_scale, seed=a.seed))
    summary = {"out": str(out), "bundle": str(bundle), "checkpoint": str(ckpt), "loss_log": str(out / LOSS_LOG),
               "samples": samples, "step": step, "resumed_from": resumed_from, "steps_this_run": step - resumed_from,
               "first_loss": first_loss, "final_loss": last_loss, "elapsed_s": round(elapsed, 1),
               "steps_per_s": round((step - resumed_from) / max(elapsed, 1e-9), 3), "batch_size": a.batch_size,
               "device": str(dev), "bf16": amp, "parameters": n_params, "interrupted": interrupted,
               "bundle_bytes": sum(f.stat().st_size for f in Path(bundle).rglob("*") if f.is_file())}
    if interrupted:
        raise KeyboardInterrupt(json.dumps(summary))
    return summary


def _cores() -> int:
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@torch.no_grad()
def write_sample_grid(base: MiniBase, path, per_class: int = 4, steps: int = 25, guidance_scale: float = 3.0,
                      seed: int = 0, texts=None) -> Path:
    """One row per class text (``per_class`` samples), saved as a PNG, atomically."""
    from torchvision.utils import save_image

    from asva_bench.avio import atomic_path
    from .mini_base import sample_images
    texts = list(texts) if texts is not None else _class_texts(base)
    prompts = [t for t in texts for _ in range(per_class)]
    was_training = base.unet.training
    base.eval()
    imgs = sample_images(base, prompts, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed)
    if was_training:
        base.unet.train()
        base.text_encoder.train()
    path = Path(path)
    with atomic_path(path) as tmp:
        save_image(imgs.float().cpu(), str(tmp), nrow=per_class, padding=1, format="png")
    return path


def _class_texts(base: MiniBase) -> list[str]:
    texts = base.info.get("class_texts")
    if not texts:
        raise ValueError("this mini base records no class texts; pass texts=[...]")
    return list(texts)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def add_train_base_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--profile", default="mini", help="only 'mini' (the paper's base is Stable Diffusion 1.5)")
    p.add_argument("--dataset", default="synth", help="training dataset (default synth, built if missing)")
    p.add_argument("--root", help="dataset folder (default: the dataset's environment variable / synth's cache)")
    p.add_argument("--steps", type=int, help=f"total optimizer steps, resumed ones included "
                                             f"(default {DEFAULT_STEPS} unless --minutes is given)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of this run (checkpoint + export)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="frames per step (default 16)")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="AdamW learning rate (default 5e-4)")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    p.add_argument("--warmup-steps", type=int, default=DEFAULTS["warmup_steps"])
    p.add_argument("--text-dropout", type=float, default=DEFAULTS["text_dropout"],
                   help="fraction of texts replaced by '' (classifier-free guidance; default 0.1)")
    p.add_argument("--ema-decay", type=float, default=DEFAULTS["ema_decay"], help="0 disables EMA (default 0.999)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="no bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is fastest on a "
                                              "busy machine, where OpenMP barriers wait on descheduled threads)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="training folder (default $ASVA_BENCH_HOME/training/mini_base); resumed if present")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--cache-dir", help="frame cache folder (default $ASVA_BENCH_HOME/cache/frames)")
    p.add_argument("--cache-fps", type=float, default=DEFAULTS["cache_fps"], help="frame cache grid (default 12)")
    p.add_argument("--workers", type=int, help="processes decoding the frame cache (default: all cores)")
    p.add_argument("--log-every", type=int, default=DEFAULTS["log_every"])
    p.add_argument("--checkpoint-every", type=int, default=DEFAULTS["checkpoint_every"])
    p.add_argument("--samples-per-class", type=int, default=DEFAULTS["samples_per_class"],
                   help="sample grid OUT/samples.png at the end (0: none)")
    p.add_argument("--sample-steps", type=int, default=DEFAULTS["sample_steps"])
    p.add_argument("--guidance-scale", type=float, default=DEFAULTS["guidance_scale"])
    p.add_argument("--export-dtype", choices=["fp16", "fp32"], default="fp16", help="weights of OUT/mini_base")
    p.add_argument("--model-config", type=json.loads, help="JSON overrides of MiniBaseConfig (new runs only)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    return p


def cmd_train_base(args) -> int:
    try:
        summary = train_base(args)
    except KeyboardInterrupt as e:
        print(f"interrupted; checkpoint and bundle saved: {e}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        n = summary["parameters"]

        def loss(x):
            return "n/a" if x is None else f"{x:.4f}"
        print(f"mini base: step {summary['step']} ({summary['steps_this_run']} this run, "
              f"{summary['steps_per_s']} steps/s on {summary['device']}), loss {loss(summary['first_loss'])} -> "
              f"{loss(summary['final_loss'])}; {n['total'] / 1e6:.2f}M parameters; bundle {summary['bundle']} "
              f"({summary['bundle_bytes'] / 1e6:.1f} MB); samples {summary['samples']}")
    return 0


def add_train_base_command(subparsers) -> argparse.ArgumentParser:
    """Register ``base`` under an ``asva-bench train`` subparsers object."""
    p = subparsers.add_parser("base", help="train the mini base model (text-to-image stand-in for SD 1.5)",
                              description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_base_arguments(p)
    p.set_defaults(func=cmd_train_base)
    return p


def main(argv=None) -> int:
    p = add_train_base_arguments(argparse.ArgumentParser(
        prog="python -m asva_bench.models.avsyncd.train_base", description="Train the mini base model."))
    args = p.parse_args(argv)
    try:
        return cmd_train_base(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
