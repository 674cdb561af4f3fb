"""The six per-clip signals of the paper's Sec. 3.1, from the harness's own backbones.

For a clip of ``n`` analysis frames ``F_j0 .. F_j0+n-1`` (3 s at 6 fps: 18
frames at the protocol size) and its audio:

=============  ==============================================================
pixel_diff     mean over the clip's n-1 consecutive pairs of the mean absolute
               difference of raw pixel values (0-255)
clip_change    mean over the same pairs of ``1 - cos(c_j, c_j+1)``, ``c`` the
               CLIP image features (paper: open_clip, the model of the config;
               mini: the mini embedding's image tower)
max_amplitude  max |sample| of the clip's audio at its native rate
ia             mean over the n frames of ``cos(v_j, a)``: ImageBind-huge (paper)
               or mini-embedding vision embeddings against the audio embedding
               of the clip's centre 2 s window
it             mean over the n frames of ``cos(v_j, t)``, ``t`` the class text's
               embedding (text = the class folder, underscores as spaces)
p_sync         P_Sync (docs/protocol.md, "The sync classifier"): the sync classifier's ``phi`` of
               2 s of frames against the 2 s audio windows shifted by
               -0.5..+0.5 s in 0.1 s steps (11 candidates), softmax without
               temperature, the probability of the unshifted one. Taken for
               the 2 s windows at the clip's start, centre and end
               (``sync.windows = 3``; moved inward where a candidate would
               leave the recording) and the lowest kept: every part of the
               clip must be in sync. ``sync.windows = 1``: the centre only.
=============  ==============================================================

Each backbone runs once per video on everything the video's clips need,
in one batch: all grid frames (features shared by the overlapping clips), all
distinct audio window, every distinct 2 s sync window of frames (shared by
neighbouring clips); the sync head scores every (window, candidate) pair in
one call. Batches never mix videos, so a clip's values do not depend on
which other videos share its process or shard (the sharded run equals the
single-process one). Values are rounded to 6 significant digits, and
decisions are made on the rounded values the manifest stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import ProtocolConfig, audio_window, waveforms_to_mel
from .clips import MODEL_SAMPLE_RATE, Clip, DecodedVideo
from .config import SIGNALS, CurationConfig

#: profile -> role -> registered backbone name
CURATION_BACKBONES = {
    "paper": {"embedding": "imagebind-huge", "sync": "avsync-classifier", "clip": "openclip-image"},
    "mini": {"embedding": "mini-embedding", "sync": "mini-sync", "clip": None},   # mini: the embedding's image tower
}


def round6(x: float) -> float:
    return float(f"{float(x):.6g}") if math.isfinite(float(x)) else float("nan")


@dataclass
class ClipSignals:
    clip: Clip
    values: dict[str, float]


class SignalExtractor:
    """Builds the profile's backbones once and computes every clip's signals, video by video."""

    def __init__(self, cfg: CurationConfig, protocol: ProtocolConfig, device: str = "cpu", cache_root=None):
        self.cfg, self.protocol, self.device, self.cache_root = cfg, protocol, device, cache_root
        self.names = dict(CURATION_BACKBONES[cfg.profile])
        self._built: dict = {}
        self._text: dict[str, torch.Tensor] = {}
        win_frames = cfg.sync_window_seconds * cfg.analysis_fps
        if abs(win_frames - round(win_frames)) > 1e-9:
            raise ValueError(f"{cfg.source}: sync.window x clips.fps must be a whole number of frames")
        self.sync_frames = int(round(win_frames))
        if abs(cfg.sync_window_seconds - protocol.clip_seconds) > 1e-9:
            raise ValueError(f"{cfg.source}: sync.window must be the protocol's {protocol.clip_seconds:g} s "
                             "(the audio models take that much audio)")
        offset = (cfg.clip_seconds - cfg.sync_window_seconds) / 2
        self.centre_offset = offset                          # seconds from clip start to its centre window
        self.window_offsets = (0.0, offset, 2 * offset) if cfg.sync_windows == 3 else (offset,)
        self.shifts = cfg.sync_shifts
        self.true_index = self.shifts.index(0.0)

    # ---- backbones -------------------------------------------------------
    def _backbone(self, role: str):
        if role not in self._built:
            from ..backbones import build_backbone, get_backbone_spec
            if role == "clip":
                if self.cfg.profile == "mini":
                    return self._backbone("embedding")
                from ..backbones.open_clip_image import open_clip_spec
                spec = open_clip_spec(self.cfg.clip_model, self.cfg.clip_pretrained)
                try:
                    spec = get_backbone_spec(spec.name)     # a registered variant (tests register one)
                except Exception:
                    pass
                self._built[role] = spec.build(cache_root=self.cache_root, device=self.device)
            else:
                self._built[role] = build_backbone(self.names[role], cache_root=self.cache_root, device=self.device)
            if role == "sync":
                n = self._built[role].config.num_frames
                if n != self.sync_frames:
                    raise ValueError(f"{self.cfg.source}: the sync classifier takes {n} frames, but sync.window x "
                                     f"clips.fps is {self.sync_frames}; use a {n / self.cfg.analysis_fps:g} s window")
        return self._built[role]

    def build(self) -> "SignalExtractor":
        """Build (and verify) every backbone now, before any video is decoded."""
        for role in ("embedding", "sync", "clip"):
            self._backbone(role)
        return self

    def fingerprint(self) -> dict:
        out = {}
        for role in ("embedding", "sync", "clip"):
            bb = self._backbone(role)
            out[role] = f"{bb.name}:{bb.weights_digest[:16]}"
        return out

    def text_embedding(self, text: str) -> torch.Tensor:
        if text not in self._text:
            self._text[text] = self._backbone("embedding").embed_text([text])[0].cpu()
        return self._text[text]

    def check_texts(self, texts) -> None:
        """Embed every class text up front: a text the model cannot take is an error before any work."""
        for t in sorted(set(texts)):
            self.text_embedding(t)

    # ---- audio ----------------------------------------------------------
    def _mels(self, wav16: torch.Tensor, keys_ms: list[int]) -> torch.Tensor:
        """The protocol mel [W, 1, 128, 204] of the 2 s windows starting at ``keys_ms``.

        The filterbank of the whole recording is computed once and each window's frames are sliced out
        of it: Kaldi frames are computed one by one with their own DC offset removed, so a window that
        starts on a hop boundary has the same frames as the per-window computation of
        :func:`asva_bench.protocol.waveforms_to_mel` (up to float rounding; tested). Windows off the hop
        grid, or running past the recording, take the per-window path.
        """
        from ..protocol import _fbank, _pad_normalise
        p = self.protocol
        hop = int(round(p.sample_rate * p.mel_frame_shift_ms / 1000))
        win = int(round(p.sample_rate * p.mel_frame_length_ms / 1000))
        per = 1 + (p.audio_samples - win) // hop
        fb = _fbank(wav16.float() - wav16.float().mean(), p) if wav16.numel() >= win else None
        out = []
        for k in keys_ms:
            first = k * p.sample_rate // 1000
            if fb is not None and (k * p.sample_rate) % (1000 * hop) == 0 and first // hop + per <= fb.shape[0] \
                    and first + p.audio_samples <= wav16.numel():
                out.append(_pad_normalise(fb[first // hop:first // hop + per], p))
            else:
                window = audio_window(wav16, MODEL_SAMPLE_RATE, k / 1000, p)
                out.append(waveforms_to_mel(window[None], p)[0])
        return torch.stack(out)

    # ---- one video -------------------------------------------------------
    def signals(self, video: DecodedVideo, clips: list[Clip], text: str) -> list[ClipSignals]:
        if not clips:
            return []
        cfg = self.cfg
        n = cfg.frames_per_clip
        frames_u8 = video.frames                                          # [J, H, W, 3]
        J = frames_u8.shape[0]
        frames = frames_u8.permute(0, 3, 1, 2).float() / 255.0            # [J, 3, H, W]

        # pixel difference of consecutive grid frames (exact integer sums)
        diff = (frames_u8[1:].to(torch.int16) - frames_u8[:-1].to(torch.int16)).abs()
        pair_pixel = diff.flatten(1).to(torch.float64).mean(1).numpy() if J > 1 else np.zeros(0)

        with torch.no_grad():
            emb = self._backbone("embedding")
            vision = emb.embed_vision(frames).double().cpu()              # [J, E] unit
            if cfg.profile == "mini":
                change_feat = vision
            else:
                change_feat = F.normalize(self._backbone("clip").features(frames).double().cpu(), dim=-1)
            pair_change = (1.0 - (change_feat[1:] * change_feat[:-1]).sum(-1)).numpy()

            # sync windows: 2 s of frames at the clip's start, centre and end (or the centre only), each
            # moved inside the recording far enough that all its shifted audio candidates exist
            # (window starts stay on the stride grid, so every audio window starts on a 10 ms mel hop)
            fps, D, grid = cfg.analysis_fps, video.duration, cfg.stride_seconds
            lo = math.ceil(cfg.sync_max_shift / grid - 1e-9) * grid
            hi = math.floor((D - cfg.sync_window_seconds - cfg.sync_max_shift) / grid + 1e-9) * grid
            win_starts = []                                               # per clip: its windows' starts (frames)
            for c in clips:
                own = sorted({int(round(min(max(c.start + o, lo), hi) * fps)) for o in self.window_offsets})
                win_starts.append(own)
            windows = sorted({w for own in win_starts for w in own})
            wpos = {w: i for i, w in enumerate(windows)}
            # every distinct audio window (ms keys): the sync candidates and the clips' centre windows
            def ms(t):
                return int(round(t * 1000))
            keys = sorted({ms(w / fps + sh) for w in windows for sh in self.shifts}
                          | {ms(c.start + self.centre_offset) for c in clips})
            index = {k: i for i, k in enumerate(keys)}
            mel = self._mels(video.audio_16k, keys)
            centre = [index[ms(c.start + self.centre_offset)] for c in clips]
            audio_emb = emb.embed_audio(mel[centre]).double().cpu()        # [K, E]
            text_emb = self.text_embedding(text).double()

            sync = self._backbone("sync")
            from ..backbones.base import check_clips, check_mel
            sync_clips = torch.stack([frames[w:w + self.sync_frames] for w in windows])
            check_clips(sync_clips, sync.name, sync.config.num_frames)
            check_mel(mel, sync.name, (1, 128, 204))
            vfeat = sync.encode_video(sync._to_model(sync_clips))         # [V, ...]
            afeat = sync.encode_audio(sync._to_model(mel))                # [A, ...]
            cand = torch.tensor([[index[ms(w / fps + sh)] for sh in self.shifts] for w in windows])   # [V, S]
            V, S = cand.shape
            phi = sync.score(afeat[cand.flatten()],
                             vfeat.unsqueeze(1).expand(V, S, *vfeat.shape[1:]).flatten(0, 1)).float().view(V, S)
            p_window = torch.softmax(phi.double(), dim=-1)[:, self.true_index].cpu().numpy()
            p_sync = [min(p_window[wpos[w]] for w in own) for own in win_starts]

        sr = video.sample_rate
        magnitude = video.audio.abs()
        out = []
        for k, c in enumerate(clips):
            j0 = c.first_frame
            a, b = int(round(c.start * sr)), int(round(c.end * sr))
            seg = magnitude[a:b]
            v = vision[j0:j0 + n]
            values = {
                "pixel_diff": float(pair_pixel[j0:j0 + n - 1].mean()),
                "clip_change": float(pair_change[j0:j0 + n - 1].mean()),
                "max_amplitude": float(seg.max()) if seg.numel() else 0.0,
                "ia": float((v @ audio_emb[k]).mean()),
                "it": float((v @ text_emb).mean()),
                "p_sync": float(p_sync[k]),
            }
            out.append(ClipSignals(c, {name: round6(values[name]) for name in SIGNALS}))
        return out
