"""`asva-bench animate IMAGE AUDIO --out clip.mp4`: animate one image with one sound.

The image is cut as the protocol cuts frames (centre crop to the target
aspect ratio, antialiased resize, never a distortion); the audio is the
2 s from ``--start`` at 16 kHz mono.  Both are handed to the AVSyncD adapter
as a one-clip batch, and the clip is written as the benchmark writes
generated clips (h264 + AAC with the input audio muxed).

Warnings (Python ``AnimateWarning``, printed on stderr by the CLI) for:
an image of another size or aspect (resized / cropped), audio shorter than
the clip (zero-padded), silent audio (nothing to synchronise with).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from asva_bench.adapters import setup_adapter
from asva_bench.profiles import PROFILE_NAMES, get_profile

#: Peak below which audio counts as silent (int16 quantisation is 3e-5).
SILENCE_PEAK = 1e-3


class AnimateWarning(UserWarning):
    """Input that animate accepted but changed or that will give a poor clip."""


def load_image(path, protocol) -> torch.Tensor:
    """An image file -> [3, H, W] in [0, 1] at the protocol size (warns when resized or cropped)."""
    from PIL import Image, UnidentifiedImageError

    from asva_bench.protocol import spatial_transform
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            mode = im.mode
            rgb = im.convert("RGB")  # palette, grey, RGBA (alpha dropped), CMYK... -> RGB
    except UnidentifiedImageError as e:
        raise ValueError(f"{path}: not an image PIL can read ({e}); give a PNG or JPEG") from e
    x = torch.from_numpy(np.asarray(rgb).copy())[None]  # [1, H, W, 3] uint8
    h, w = x.shape[1:3]
    th, tw = protocol.height, protocol.width
    if mode not in ("RGB",):
        warnings.warn(f"{path}: {mode} image converted to RGB", AnimateWarning, stacklevel=2)
    if (h, w) != (th, tw):
        crop = "" if h * tw == w * th else f", centre-cropped to the {tw}:{th} aspect ratio first"
        warnings.warn(f"{path}: {w}x{h} image resized to {tw}x{th}{crop} (as the protocol cuts frames)",
                      AnimateWarning, stacklevel=2)
    return spatial_transform(x, protocol)[0]


def load_audio(path, protocol, start: float = 0.0) -> torch.Tensor:
    """The ``protocol.clip_seconds`` from ``start`` of an audio (or video) file: float [samples] at
    the protocol rate, zero-padded with a warning when short; warns when silent."""
    from asva_bench.avio import read_audio
    from asva_bench.protocol import audio_window
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio {path} does not exist")
    wav, sr = read_audio(path)
    dur = wav.shape[-1] / sr
    if start < 0 or start >= dur:
        raise ValueError(f"{path}: --start {start} s is outside the audio (duration {dur:.2f} s)")
    if dur - start < protocol.clip_seconds - 1e-6:
        warnings.warn(f"{path}: {dur - start:.2f} s of audio from {start:g} s, shorter than the "
                      f"{protocol.clip_seconds:g} s clip; zero-padded at the end (the last frames see silence)",
                      AnimateWarning, stacklevel=2)
    audio = audio_window(wav, sr, start, protocol)
    if float(audio.abs().max()) < SILENCE_PEAK:
        warnings.warn(f"{path}: the audio is silent (peak {float(audio.abs().max()):.1e}); the clip will have no "
                      "audio-driven motion", AnimateWarning, stacklevel=2)
    return audio


def guess_text(adapter, mel: torch.Tensor) -> str:
    """Mini profile: the synth class text whose embedding is nearest the audio's (zero-shot), among the
    texts both the base's tokenizer and the audio encoder's text tower know; '' when none."""
    from asva_bench.backbones.base import BackboneInputError
    from asva_bench.datasets.synth import CLASS_TEXTS
    enc, tok = adapter.parts.audio_encoder, adapter.parts.tokenizer
    texts, embs = [], []
    for t in sorted(set(CLASS_TEXTS.values())):
        try:
            tok([t])
            embs.append(enc.embed_text([t]))
        except (ValueError, BackboneInputError):
            continue  # a word one of the two models was not trained on
        texts.append(t)
    if not texts:
        return ""
    sims = enc.embed_audio(mel) @ torch.cat(embs).T
    return texts[int(sims.argmax())]


def animate(image, audio, out, eta: float = 4.0, profile: str = "mini", steps: int | None = None,
            seed: int = 0, text: str | None = None, start: float = 0.0, checkpoint=None, base=None,
            audio_encoder=None, scheduler: str | None = None, device: str = "cpu",
            strength: float | None = None) -> dict:
    """Animate ``image`` with ``audio`` into the mp4 ``out``; returns a summary dict."""
    from asva_bench.adapters.api import ClipBatch, validate_output
    from asva_bench.avio import encoding_for, write_generated_clip
    from asva_bench.protocol import PAPER, waveforms_to_mel

    from .adapter import AVSyncD
    run_profile = get_profile(profile)
    protocol = run_profile.protocol_for(PAPER)
    frame = load_image(image, protocol)
    wav = load_audio(audio, protocol, start)
    mel = waveforms_to_mel(wav[None], protocol)
    adapter = AVSyncD(eta=eta, steps=steps, scheduler=scheduler, strength=strength, checkpoint=checkpoint, base=base,
                      audio_encoder=audio_encoder)
    setup_adapter(adapter, protocol, device, run_profile)
    text_source = "given"
    if text is None:
        if profile == "mini":
            text, text_source = guess_text(adapter, mel.to(adapter.pipe.device)), "nearest synth class to the audio"
        else:
            text, text_source = "", "none (unconditional); pass --text with the class text for better clips"
    clip_id = f"animate/{Path(image).stem}"
    batch = ClipBatch(first_frame=frame[None], audio=wav[None], mel=mel, text=[text], clip_ids=[clip_id],
                      seeds=[int(seed)], protocol=protocol)
    with torch.no_grad():
        frames = validate_output(adapter, batch, adapter.generate(batch))
    out = write_generated_clip(out, frames[0], protocol, encoding_for(profile), audio=wav)
    return {"out": str(out), "profile": profile, "eta": adapter.eta, "steps": adapter.num_steps,
            "seed": int(seed), "text": text, "text_source": text_source,
            "frames": list(frames.shape[1:]), "fps": protocol.fps}


def cmd_animate(args) -> int:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", AnimateWarning)
        warnings.showwarning = show
        res = animate(args.image, args.audio, args.out, eta=args.eta, profile=args.profile, steps=args.steps,
                      seed=args.seed, text=args.text, start=args.start, checkpoint=args.checkpoint,
                      base=args.base, audio_encoder=args.audio_encoder, scheduler=args.scheduler, strength=args.strength,
                      device=args.device)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print(f"wrote {res['out']} ({res['frames'][0]} frames at {res['fps']:g} fps, eta {res['eta']:g}, "
              f"{res['steps']} steps, text {res['text']!r}: {res['text_source']})")
    return 0


def add_animate_command(subparsers) -> None:
    """Add `animate` to the top-level sub-parsers."""
    from asva_bench.cli import ANIMATE_HELP
    p = subparsers.add_parser("animate", help=ANIMATE_HELP)
    p.add_argument("image", help="image file (PNG, JPEG...); converted to RGB, centre-cropped and resized to "
                                 "the profile's frame size")
    p.add_argument("audio", help="audio or video file PyAV can read; 2 s from --start are used")
    p.add_argument("--out", required=True, help="output mp4 (written atomically)")
    p.add_argument("--eta", type=float, default=4.0, help="audio guidance scale (paper: 1, 4 or 8; default 4)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default="mini")
    p.add_argument("--steps", type=int, help="sampling steps (default: mini 20, paper 50)")
    p.add_argument("--scheduler", choices=["pndm", "ddim"], help="sampler (default: mini ddim, paper pndm)")
    p.add_argument("--strength", type=float, help="start of sampling: 1 = pure noise (paper default); below 1, "
                                                  "from the image noised that far (mini default 0.5, ddim only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", help="class text (default: mini = the synth class nearest the audio; paper = none)")
    p.add_argument("--start", type=float, default=0.0, help="audio start time in seconds (default 0)")
    p.add_argument("--checkpoint", help="trained AVSyncD folder (default: mini = the shipped one; paper: "
                                        "required)")
    p.add_argument("--base", help="mini base bundle or Stable Diffusion 1.5 folder (paper default $ASVA_SD15_DIR)")
    p.add_argument("--audio-encoder", help="mini only: a mini-embedding .safetensors")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_animate)
