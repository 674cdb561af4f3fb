"""Training of the mini base model (`asva-bench train base --profile mini`).

Recipe: SD 1.5's objective on single frames of the training videos: DDPM
1000 steps, scaled-linear betas 0.00085-0.012, epsilon prediction, MSE;
AdamW, linear warm-up then constant learning rate, gradient clip 1.0, EMA of
the weights (exported), random horizontal flip, class text conditioning with
10% of the texts replaced by the empty string (classifier-free guidance).
UNet and text encoder train jointly; the latent codec is fitted once (PCA)
before the first step.  bf16 autocast on CUDA.

Stops at ``--steps`` (total, counting resumed steps) or after ``--minutes``
of training in this invocation, whichever comes first; SIGTERM / Ctrl-C
finishes the step, checkpoints and exports.  The step loop, the schedule,
the folder layout and the noise are the shared training toolkit's
(asva_bench/training: loop.py, schedule.py, checkpointing.py, noise.py):
``OUT/checkpoint/`` holds the resumable state (one safetensors file +
trainer.json + progress.json), replaced atomically every
``--checkpoint-every`` steps and at the end; ``OUT/mini_base/`` the exported
bundle (EMA weights); ``OUT/loss_log.jsonl`` the loss log;
``OUT/train_config.json`` the recipe.  A run on an existing OUT resumes
unless ``--fresh`` (the batch size, seed, text dropout, EMA decay, dataset
and cache grid must then match; the learning rate, weight decay and warm-up
may change for the new segment).  The batch and the noise of step s come
from generators seeded by (seed, s), so a resumed run continues exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .mini_base import MiniBase, MiniBaseConfig, MiniTextEncoder, MiniTokenizer, PatchPCAAutoencoder, build_unet
from .pipeline import make_scheduler

from asva_bench.training.checkpointing import CHECKPOINT_DIR, LOG_FILE, Progress, TrainingFolder  # noqa: F401
from asva_bench.training.loop import Budget, StepResult, run_steps, step_generator
from asva_bench.training.noise import draw_timesteps_and_noise, noised
from asva_bench.training.schedule import LRSchedule

STATE_FILE = "state.safetensors"
TRAINER_FILE = "trainer.json"
BUNDLE_DIR = "mini_base"
LOSS_LOG = LOG_FILE
CHECKPOINT_VERSION = 2       # 1: also held generator states (batches now come from per-step generators)
READABLE_VERSIONS = (1, 2)
#: Settings that define the recipe: a resumed run must keep them.
RECIPE_KEYS = ("dataset", "batch_size", "seed", "text_dropout", "ema_decay", "cache_fps", "class_texts")
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
    from asva_bench.fsutil import home
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
# Checkpoint: one safetensors file (weights, EMA, optimizer) + trainer.json
# --------------------------------------------------------------------------
def _write_state(folder: Path, base: MiniBase, ema: dict | None, opt, record: dict) -> None:
    """Fill a checkpoint folder (TrainingFolder.save replaces the old one atomically)."""
    from safetensors.torch import save_file

    from asva_bench.fsutil import atomic_write_text
    t = {}
    for prefix, module in (("unet.", base.unet), ("text_encoder.", base.text_encoder), ("vae.", base.vae)):
        t.update({prefix + k: v for k, v in module.state_dict().items()})
    if ema is not None:
        t.update({"ema." + k: v for k, v in ema.items()})
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for k, v in st.items():
            t[f"optim.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    t = {k: v.detach().to("cpu").contiguous().clone() for k, v in t.items()}
    record = dict(record, version=CHECKPOINT_VERSION, param_groups=osd["param_groups"])
    save_file(t, str(folder / STATE_FILE), metadata={"trainer": json.dumps(record)})
    atomic_write_text(folder / TRAINER_FILE, json.dumps(record, indent=1) + "\n")


def _load_checkpoint(folder: Path):
    from safetensors import safe_open
    path = folder / STATE_FILE
    with safe_open(str(path), framework="pt") as f:
        record = json.loads(f.metadata()["trainer"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if record.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: checkpoint version {record.get('version')} is not one of {READABLE_VERSIONS}; "
                         "start over with --fresh")
    return record, tensors


def _legacy_progress(ckpt: Path) -> Progress | None:
    """Checkpoints written before progress.json kept the step in trainer.json."""
    f = ckpt / TRAINER_FILE
    if not f.is_file():
        return None
    rec = json.loads(f.read_text())
    return Progress(step=int(rec["step"]), elapsed_s=float(rec.get("elapsed_s", 0.0)), last_loss=rec.get("final_loss"))


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
    noisy = noised(sched, latents, noise, t)
    pred = base.unet(noisy, t, encoder_hidden_states=base.encode_text(list(texts))).sample
    return float(F.mse_loss(pred.float(), noise.float()))


def _apply_ema(base: MiniBase, ema: dict) -> None:
    with torch.no_grad():
        for n, p in _trainable(base).items():
            p.copy_(ema[n])


def train_base(args) -> dict:
    """Train (or resume) the mini base; returns a summary dict.  ``args``: argparse namespace or dict."""
    from asva_bench.training.clip_cache import ensure_clip_cache

    a = _resolve(args)
    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(int(a.threads))
    out = a.out
    folder = TrainingFolder(out)
    ckpt = folder.checkpoint
    cache = ensure_clip_cache(a.dataset, a.root, split="train", profile=a.profile, cache_dir=a.cache_dir,
                              workers=a.workers or _cores(), progress=a.progress).pack(a.cache_fps, device=dev,
                                                                                       progress=a.progress)
    recipe = {"dataset": a.dataset, "batch_size": a.batch_size, "seed": a.seed, "text_dropout": a.text_dropout,
              "ema_decay": a.ema_decay, "cache_fps": a.cache_fps, "class_texts": cache.class_texts,
              "lr": a.lr, "weight_decay": a.weight_decay, "warmup_steps": a.warmup_steps}
    start = folder.start(recipe, resume=not a.fresh, may_change=tuple(k for k in recipe if k not in RECIPE_KEYS),
                         legacy=_legacy_progress)
    tensors, record = None, None
    if start is not None:
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
    else:
        cfg = MiniBaseConfig.from_dict(a.model_config) if a.model_config else MiniBaseConfig()
        n_fit = min(PCA_FIT_FRAMES, int(cache.frame_offsets[-1]))
        fit = cache.sample_frames(n_fit, torch.Generator().manual_seed(a.seed), flip=True).images
        vae = PatchPCAAutoencoder.fit(fit.cpu(), cfg.patch_size, cfg.latent_channels)
        base = MiniBase.create(cache.class_texts, vae, cfg, seed=a.seed)
        start = Progress()
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
    class_ids = base.tokenizer(cache.class_texts).input_ids.to(dev)
    null_ids = base.tokenizer([""]).input_ids.to(dev)
    amp = dev.type == "cuda" and a.bf16
    n_params = base.num_parameters()

    def one_step(step: int) -> StepResult:
        gen = step_generator(a.seed, step, 0)         # batch, flips, text dropout
        dgen = step_generator(a.seed, step, 1, dev)   # timesteps, noise
        batch = cache.sample_frames(a.batch_size, gen, flip=True)
        drop = (torch.rand(a.batch_size, generator=gen) < a.text_dropout).to(dev)
        ids = torch.where(drop[:, None], null_ids, class_ids[batch.labels])
        with torch.no_grad():
            latents = base.vae.encode(batch.images * 2.0 - 1.0).latent_dist.mode() * base.vae.config.scaling_factor
        t, noise = draw_timesteps_and_noise(latents, sched, dgen)
        noisy = noised(sched, latents, noise, t)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            ctx = base.text_encoder(ids)[0]
            pred = base.unet(noisy, t, encoder_hidden_states=ctx).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(param_list, 1.0)
        opt.step()
        if use_ema:
            decay = min(a.ema_decay, (2 + step) / (11 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_list, [p.detach() for p in param_list], 1.0 - decay)
        return StepResult(loss.detach(), {"images": (step + 1) * a.batch_size})  # read only when logged

    def record_now(progress: Progress) -> dict:
        return {"step": progress.step, "config": cfg.to_dict(), "class_texts": cache.class_texts,
                "vocabulary": base.tokenizer.words, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
                "ema_decay": a.ema_decay, "text_dropout": a.text_dropout, "dataset": a.dataset,
                "clip_cache": cache.meta.get("key"), "device": str(dev), "bf16": amp,
                "elapsed_s": round(progress.elapsed_s, 1), "images_seen": int(progress.step * a.batch_size),
                "final_loss": progress.last_loss}

    def save(progress: Progress) -> None:
        folder.save(progress, lambda tmp: _write_state(tmp, base, ema, opt, record_now(progress)))

    with folder.open_log({"step": start.step, "batch_size": a.batch_size, "device": str(dev), "bf16": amp,
                          "parameters": n_params}) as log:
        outcome = run_steps(one_step, start=start,
                            budget=Budget(steps=a.steps, session_seconds=a.minutes * 60 if a.minutes else None),
                            log=log, save=save, log_every=a.log_every or 10 ** 9,
                            checkpoint_every=a.checkpoint_every or None, optimizer=opt, lr=a.lr,
                            schedule=LRSchedule(a.warmup_steps, "constant"), progress=a.progress,
                            desc="train mini base",
                            postfix=lambda rec: {"loss": f"{rec['loss']:.4f}", "it_s": f"{rec['steps_per_s']:.2f}"})
    losses = [r["loss"] for r in outcome.records]
    end = Progress(outcome.step, outcome.elapsed_s, outcome.cpu_s, losses[-1] if losses else None)

    # export: EMA weights in eval mode
    if use_ema:
        _apply_ema(base, ema)
    base.eval()
    base.info = {k: v for k, v in record_now(end).items() if k not in ("config", "vocabulary")}
    export_dtype = torch.float16 if a.export_dtype == "fp16" else torch.float32
    bundle = base.save(out / BUNDLE_DIR, dtype=export_dtype)
    samples = None
    if a.samples_per_class > 0:
        samples = str(write_sample_grid(base, out / "samples.png", per_class=a.samples_per_class,
                                        steps=a.sample_steps, guidance_scale=a.guidance_scale, seed=a.seed))
    return {"out": str(out), "bundle": str(bundle), "checkpoint": str(ckpt), "loss_log": str(folder.log_path),
            "samples": samples, "step": outcome.step, "resumed_from": outcome.start_step,
            "steps_this_run": outcome.steps_done, "first_loss": losses[0] if losses else None,
            "final_loss": end.last_loss, "elapsed_s": round(outcome.session_s, 1),
            "steps_per_s": round(outcome.steps_done / max(outcome.session_s, 1e-9), 3), "batch_size": a.batch_size,
            "device": str(dev), "bf16": amp, "parameters": n_params, "interrupted": outcome.interrupted,
            "finished": outcome.finished,
            "bundle_bytes": sum(f.stat().st_size for f in Path(bundle).rglob("*") if f.is_file())}


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

    from asva_bench.fsutil import atomic_path
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
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training in this run "
                                                 "(checkpoint + export)")
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
    p.add_argument("--cache-dir", help="clip cache root (default $ASVA_BENCH_HOME/cache/clips)")
    p.add_argument("--cache-fps", type=float, default=DEFAULTS["cache_fps"],
                   help="time grid the clip cache is packed on (default 12)")
    p.add_argument("--workers", type=int, help="processes decoding the clip cache (default: all cores)")
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
    summary = train_base(args)
    if summary["interrupted"]:
        print(f"interrupted at step {summary['step']}; checkpoint and bundle saved, rerun to continue",
              file=sys.stderr)
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
    return 130 if summary["interrupted"] else 0


def add_train_base_command(subparsers) -> argparse.ArgumentParser:
    """Register ``base`` under an ``asva-bench train`` subparsers object."""
    p = subparsers.add_parser("base", help="train the mini base model (text-to-image stand-in for SD 1.5)",
                              description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_base_arguments(p)
    p.set_defaults(func=cmd_train_base)
    return p


def main(argv=None) -> int:
    from asva_bench.training.cli import run_module
    return run_module("python -m asva_bench.models.avsyncd.train_base",
                      lambda p: add_train_base_arguments(p).set_defaults(func=cmd_train_base), argv,
                      description="Train the mini base model.")


if __name__ == "__main__":
    sys.exit(main())
