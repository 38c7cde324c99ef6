"""RetinaFace's MultiBoxLoss with hard negative mining (docs/METHOD.md §4)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .matching import match_batch


@dataclass
class MatchResult:
    """What the distiller needs from the loss: positives, the hard-negative ranking and each
    prior's best IoU with a face."""

    positives: torch.Tensor  # [B, A] bool, priors matched to any face
    negative_rank: torch.Tensor  # [B, A] rank of each prior's background loss (0 = hardest)
    num_positives: torch.Tensor  # [B, 1]
    overlaps: torch.Tensor = None  # [B, A] best IoU with a face of the image (0 without faces)

    def hard_negatives(self, negpos_ratio):
        """Priors among the ``negpos_ratio`` x positives hardest negatives of their image."""
        limit = torch.clamp(negpos_ratio * self.num_positives, max=self.positives.shape[1] - 1)
        return self.negative_rank < limit


class MultiBoxLoss(nn.Module):
    """Smooth-L1 box and landmark losses and mined cross-entropy.

    Returns ``({'loc', 'conf', 'landm'}, MatchResult)``. Box and class terms are divided by the
    number of positives, the landmark term by the number of positives with landmarks.
    """

    def __init__(self, overlap_threshold=0.35, negpos_ratio=7, variance=(0.1, 0.2)):
        super().__init__()
        self.threshold = overlap_threshold
        self.negpos_ratio = negpos_ratio
        self.variance = variance

    def build_targets(self, priors, targets):
        """Encode every image's faces against the priors: loc [B,A,4], conf [B,A], landm [B,A,10]."""
        return self._match(priors, targets)[:3]

    @torch.no_grad()
    def _match(self, priors, targets):
        """``build_targets``'s targets and each prior's best IoU with a face [B, A]."""
        padded, present = pad_targets(targets)
        loc_t, conf_t, landm_t, overlap = match_batch(padded[..., :4], padded[..., -1], padded[..., 4:14], present,
                                                      priors, self.threshold, self.variance)
        return loc_t, conf_t.long(), landm_t, overlap

    def forward(self, outputs, priors, targets):
        loc_data, conf_data, landm_data = outputs["loc"], outputs["conf"], outputs["landms"]
        device = loc_data.device
        loc_t, conf_t, landm_t, overlap = self._match(priors.to(device), [t.to(device) for t in targets])

        with_landmarks = conf_t > 0
        num_landm = with_landmarks.sum().clamp(min=1)
        loss_landm = F.smooth_l1_loss(landm_data[with_landmarks], landm_t[with_landmarks], reduction="sum")

        pos = conf_t != 0
        conf_t[pos] = 1
        loss_loc = F.smooth_l1_loss(loc_data[pos], loc_t[pos], reduction="sum")

        with torch.no_grad():
            background_loss = torch.logsumexp(conf_data, dim=-1) - conf_data.gather(2, conf_t.unsqueeze(2)).squeeze(2)
            background_loss[pos] = 0
            _, loss_idx = background_loss.sort(1, descending=True)
            _, negative_rank = loss_idx.sort(1)
        match = MatchResult(pos, negative_rank, pos.long().sum(1, keepdim=True), overlap)
        selected = pos | match.hard_negatives(self.negpos_ratio)
        loss_conf = F.cross_entropy(conf_data[selected], conf_t[selected], reduction="sum")

        num_pos = pos.sum().clamp(min=1)
        losses = dict(loc=loss_loc / num_pos, conf=loss_conf / num_pos, landm=loss_landm / num_landm)
        return losses, match


def pad_targets(targets):
    """Per-image ``(N_i, 15)`` targets -> zero-padded ``[B, N, 15]`` (N = max N_i) and the
    ``[B, N]`` mask of the real faces."""
    counts = torch.tensor([len(t) for t in targets])
    padded = torch.nn.utils.rnn.pad_sequence(list(targets), batch_first=True)
    present = torch.arange(padded.shape[1])[None] < counts[:, None]
    return padded, present.to(padded.device)
