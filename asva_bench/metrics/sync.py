"""RelSync and AlignSync (docs/metrics.md).

RelSync(a, v_hat, v) = exp(phi(a, v_hat)) / (exp(phi(a, v)) + exp(phi(a, v_hat)))
                     = sigmoid(phi(a, v_hat) - phi(a, v)),  phi = raw sync logit.
P_Align = mean_k exp(c(a, v_hat_k)) / (exp(c(a, v_hat_k)) + exp(c(a, v_1))), k = 2..12,
c = image-audio cosine (not x100), v_1 = the ground-truth first frame.
AlignSync = P_Align * RelSync per clip, then averaged.

The audio of the first-frame term c(a, v_1) is a protocol-track choice
(asva_bench.scoring.alignsync_first_frame_audio): the scorer passes it as
``gt["first_frame_audio_embedding"]``; without it c(a, v_1) uses the same
audio as c(a, v_hat_k).
"""

from __future__ import annotations

import torch

from .alignment import frame_cosines
from .base import ClipMetric
from .registry import register_metric


def relsync(phi_gen: torch.Tensor, phi_gt: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(phi_gen.double() - phi_gt.double())


def p_align(frame_emb: torch.Tensor, first_frame_emb: torch.Tensor, audio_emb: torch.Tensor,
            first_frame_audio_emb: torch.Tensor | None = None) -> torch.Tensor:
    c_k = frame_cosines(frame_emb, audio_emb)                              # [B, K]
    a_1 = audio_emb if first_frame_audio_emb is None else first_frame_audio_emb
    c_1 = frame_cosines(first_frame_emb.unsqueeze(1), a_1)                 # [B, 1]
    return torch.sigmoid(c_k - c_1).mean(1)


class SyncMetric(ClipMetric):
    """A per-clip probability from the sync classifier, x100 (the paper's primary metrics)."""
    scale = 100.0
    higher_is_better = True


@register_metric
class RelSync(SyncMetric):
    """The sync classifier's preference for the generated clip over the ground-truth clip with the
    same audio, sigmoid(phi(a, v_gen) - phi(a, v_gt)), mean over clips, x100 (50: as synchronized as
    the real video)."""
    name = "relsync"
    label = "RelSync"
    order = 60
    long_name = "relsync@sigmoid(phi_gen-phi_gt)-x100"
    needs = ("sync_logit",)
    board_rank = 2

    def update(self, phi_gen: torch.Tensor, phi_gt: torch.Tensor, video_index) -> None:
        self._add(relsync(phi_gen, phi_gt), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["sync_logit"], gt["sync_logit"], video_index)


@register_metric
class AlignSync(SyncMetric):
    """P_Align x RelSync per clip, mean over clips, x100: P_Align is the mean over frames 2-12 of
    sigmoid(c(a, v_k) - c(a, v_1)), how much better each generated frame matches the audio than the
    first frame does (c: image-audio cosine)."""
    name = "alignsync"
    label = "AlignSync"
    order = 50
    long_name = "alignsync@palign(frames2-12)*relsync-x100"
    needs = ("sync_logit", "vision_embedding", "audio_embedding")
    board_rank = 1

    def update(self, frame_emb: torch.Tensor, first_frame_emb: torch.Tensor, audio_emb: torch.Tensor,
               phi_gen: torch.Tensor, phi_gt: torch.Tensor, video_index,
               first_frame_audio_emb: torch.Tensor | None = None) -> None:
        self._add(p_align(frame_emb, first_frame_emb, audio_emb, first_frame_audio_emb)
                  * relsync(phi_gen, phi_gt), video_index)

    def update_from_features(self, gen, gt, text, video_index):
        self.update(gen["vision_embedding"], gt["first_frame_embedding"], gen["audio_embedding"],
                    gen["sync_logit"], gt["sync_logit"], video_index,
                    first_frame_audio_emb=gt.get("first_frame_audio_embedding"))
