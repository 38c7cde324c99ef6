"""Task-decoupled knowledge distillation (SPEC section 5)."""
import torch
import torch.nn.functional as F
from torch import nn


class TaskDecoupledDistiller(nn.Module):
    """Feature and probability distillation from a task-head teacher into a student.

    Holds the adaptation convs (1x1, no bias, C_student -> C_teacher; one per level for the
    classification task and one for regression) as registered modules, so they are saved
    and optimised with the student. Returns ``{'feature', 'probability'}``.
    """

    def __init__(self, student_channels, teacher_channels, num_levels=3, negpos_ratio=3,
                 probability_range=(0.1, 0.9)):
        super().__init__()
        self.cls_adapters = nn.ModuleList(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False) for _ in range(num_levels)
        )
        self.reg_adapters = nn.ModuleList(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False) for _ in range(num_levels)
        )
        self.negpos_ratio = negpos_ratio
        self.probability_range = tuple(probability_range)

    def forward(self, student, teacher, match, shapes):
        """``student`` / ``teacher``: model outputs; ``match``: the student's ``MatchResult``;
        ``shapes``: ``[(rows, cols, anchors)]`` per level (``layers.prior_box.level_shapes``)."""
        reg_mask = location_masks(match.positives, shapes)
        cls_mask = location_masks(match.positives | match.hard_negatives(self.negpos_ratio), shapes)
        feature = 0.0
        for level, feat in enumerate(student["features"]):
            feature = feature + masked_feature_loss(
                self.cls_adapters[level](feat), teacher["cls_features"][level], cls_mask[level]
            )
            feature = feature + masked_feature_loss(
                self.reg_adapters[level](feat), teacher["reg_features"][level], reg_mask[level]
            )
        probability = probability_loss(
            F.softmax(student["conf"], dim=-1), F.softmax(teacher["conf"], dim=-1), *self.probability_range
        )
        return dict(feature=feature, probability=probability)


def location_masks(anchor_mask, shapes):
    """Split an anchor mask [B, A] by level and reduce it to locations [B, rows, cols]:
    a location is selected when any of its anchors is."""
    counts = [rows * cols * anchors for rows, cols, anchors in shapes]
    if sum(counts) != anchor_mask.shape[1]:
        raise ValueError(f"levels hold {sum(counts)} priors but the mask has {anchor_mask.shape[1]}")
    chunks = torch.split(anchor_mask, counts, dim=1)
    return [
        chunk.reshape(chunk.shape[0], rows, cols, anchors).any(dim=-1)
        for chunk, (rows, cols, anchors) in zip(chunks, shapes)
    ]


def masked_feature_loss(student_feature, teacher_feature, mask):
    """Sum over selected locations and channels of the squared difference, over max(1, 2n)."""
    squared = (student_feature - teacher_feature).pow(2).sum(dim=1)
    selected = mask.sum()
    return (squared * mask).sum() / torch.clamp(2 * selected, min=1)


def probability_loss(student_prob, teacher_prob, low=0.1, high=0.9):
    """Mean squared difference of class probabilities over the elements where the teacher's
    probability lies strictly between ``low`` and ``high``."""
    mask = (teacher_prob > low) & (teacher_prob < high)
    diff = (student_prob - teacher_prob).pow(2)
    return (diff * mask).sum() / torch.clamp(mask.sum(), min=1)
