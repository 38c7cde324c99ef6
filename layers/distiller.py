"""Task-decoupled knowledge distillation (SPEC section 5) and the ablation's other terms."""
import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import TDKDError

# Distillation terms, each weighted by ``loss_weights[term]``; a zero weight turns it off:
# feature          task-decoupled feature imitation (SPEC 5; tasks: ``feature_tasks``)
# feature_coupled  one adapter, positives + mined negatives, against the teacher's SSH output
# fitnet           one adapter, every location, against the teacher's SSH output
# probability      the paper's probability distillation (SPEC 5)
# hinton           KL of temperature-softened class distributions, times T^2, mean over anchors
TERMS = ("feature", "feature_coupled", "fitnet", "probability", "hinton")
FEATURE_TASKS = ("cls", "reg")


def build_distiller(cfg, student_channels, teacher_channels):
    """The distiller of a distillation recipe: the terms with a non-zero loss weight."""
    weights = cfg["loss_weights"]
    terms = tuple(term for term in TERMS if weights.get(term, 0))
    if not terms:
        raise TDKDError(f"distillation with every distillation weight zero ({', '.join(TERMS)}): "
                        "train with --mode student instead")
    tasks = tuple(cfg["feature_tasks"])
    if not tasks or set(tasks) - set(FEATURE_TASKS):
        raise TDKDError(f"feature_tasks={list(tasks)}: choose one or both of {list(FEATURE_TASKS)}")
    return TaskDecoupledDistiller(student_channels, teacher_channels, negpos_ratio=cfg["distill_negpos_ratio"],
                                  probability_range=cfg["probability_range"], terms=terms, feature_tasks=tasks,
                                  temperature=cfg["hinton_temperature"], train_adapters=cfg["train_adapters"])


class TaskDecoupledDistiller(nn.Module):
    """Feature and probability distillation from a task-head teacher into a student.

    Holds the adaptation convs (1x1, no bias, C_student -> C_teacher, one per level) of the
    terms it computes as registered modules, so they are saved with the student and, with
    ``train_adapters``, optimised with it (frozen at their random initialisation otherwise,
    as in the public code). ``terms`` (see ``TERMS``) are the losses ``forward`` returns;
    the default is the paper's ``{'feature', 'probability'}``.
    """

    def __init__(self, student_channels, teacher_channels, num_levels=3, negpos_ratio=3,
                 probability_range=(0.1, 0.9), terms=("feature", "probability"), feature_tasks=FEATURE_TASKS,
                 temperature=4.0, train_adapters=True):
        super().__init__()
        unknown = set(terms) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown distillation terms {sorted(unknown)}: choose from {list(TERMS)}")

        def adapters(needed):
            if not needed:
                return None
            return nn.ModuleList(
                nn.Conv2d(student_channels, teacher_channels, 1, bias=False) for _ in range(num_levels)
            ).requires_grad_(train_adapters)

        self.terms = tuple(terms)
        self.cls_adapters = adapters("feature" in terms and "cls" in feature_tasks)
        self.reg_adapters = adapters("feature" in terms and "reg" in feature_tasks)
        self.coupled_adapters = adapters("feature_coupled" in terms)
        self.fitnet_adapters = adapters("fitnet" in terms)
        self.negpos_ratio = negpos_ratio
        self.probability_range = tuple(probability_range)
        self.temperature = temperature

    def forward(self, student, teacher, match, shapes):
        """``student`` / ``teacher``: model outputs; ``match``: the student's ``MatchResult``;
        ``shapes``: ``[(rows, cols, anchors)]`` per level (``layers.prior_box.level_shapes``)."""
        losses = {}
        reg_mask = location_masks(match.positives, shapes)
        cls_mask = location_masks(match.positives | match.hard_negatives(self.negpos_ratio), shapes)
        if "feature" in self.terms:
            feature = 0.0
            for level, feat in enumerate(student["features"]):
                if self.cls_adapters is not None:
                    feature = feature + masked_feature_loss(
                        self.cls_adapters[level](feat), teacher["cls_features"][level], cls_mask[level]
                    )
                if self.reg_adapters is not None:
                    feature = feature + masked_feature_loss(
                        self.reg_adapters[level](feat), teacher["reg_features"][level], reg_mask[level]
                    )
            losses["feature"] = feature
        everywhere = [torch.ones_like(feat[:, 0], dtype=torch.bool) for feat in student["features"]]
        for term, adapters, masks in (("feature_coupled", self.coupled_adapters, cls_mask),
                                      ("fitnet", self.fitnet_adapters, everywhere)):
            if adapters is not None:
                losses[term] = sum(
                    masked_feature_loss(adapters[level](feat), teacher["features"][level], masks[level])
                    for level, feat in enumerate(student["features"])
                )
        if "probability" in self.terms:
            losses["probability"] = probability_loss(
                F.softmax(student["conf"], dim=-1), F.softmax(teacher["conf"], dim=-1), *self.probability_range
            )
        if "hinton" in self.terms:
            losses["hinton"] = hinton_loss(student["conf"], teacher["conf"], self.temperature)
        return losses


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


def hinton_loss(student_logits, teacher_logits, temperature):
    """Hinton et al.'s KD: KL(teacher || student) of the class distributions softened by
    ``temperature``, times temperature squared, averaged over anchors."""
    teacher_log = F.log_softmax(teacher_logits / temperature, dim=-1)
    student_log = F.log_softmax(student_logits / temperature, dim=-1)
    kl = (teacher_log.exp() * (teacher_log - student_log)).sum(dim=-1)
    return kl.mean() * temperature ** 2
