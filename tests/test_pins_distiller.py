"""TDKD's decoupled sample selection and loss normalisers, pinned by hand (docs/METHOD.md §5).

Two levels: 2x2 and 1x2 locations, two anchors each (8 + 4 anchors), 3 channels. One positive
anchor; the hard-negative ranking puts anchors 6, 9, 4 first, then 3. With 3 negatives per
positive the selected locations are:

    level 1 (row, col): regression {(0,0)};  classification {(0,0), (1,1), (1,0)}
    level 2 (row, col): regression {};       classification {(0,0)}

and (0,1) of level 1 holds the 4th hardest negative, which is not selected.
"""
import math

import pytest
import torch

from layers import MatchResult, TaskDecoupledDistiller

SHAPES = [(2, 2, 2), (1, 2, 2)]
C = 3
POSITIVE = 1  # level 1, location (0, 0), second anchor
RANK = [11, 10, 7, 3, 2, 5, 0, 8, 6, 1, 9, 4]  # rank 0: anchor 6, 1: anchor 9, 2: anchor 4, 3: anchor 3


def _match():
    positives = torch.zeros(1, 12, dtype=torch.bool)
    positives[0, POSITIVE] = True
    return MatchResult(positives, torch.tensor([RANK]), positives.long().sum(1, keepdim=True))


def _distiller(cls_scale=1.0, reg_scale=1.0):
    distiller = TaskDecoupledDistiller(C, C)
    with torch.no_grad():
        for conv in distiller.cls_adapters:
            conv.weight.copy_(cls_scale * torch.eye(C).view(C, C, 1, 1))
        for conv in distiller.reg_adapters:
            conv.weight.copy_(reg_scale * torch.eye(C).view(C, C, 1, 1))
    return distiller


def _run(cls_offsets=(), reg_offsets=(), distiller=None, reg_scale=1.0):
    """Feature loss when the teacher equals the adapted student except at the given
    ``(level, row, col, value)`` places, where every channel is offset by ``value``."""
    torch.manual_seed(0)
    features = [torch.randn(1, C, rows, cols) for rows, cols, _ in SHAPES]
    cls = [f.clone() for f in features]
    reg = [reg_scale * f.clone() for f in features]
    for level, row, col, value in cls_offsets:
        cls[level][0, :, row, col] += value
    for level, row, col, value in reg_offsets:
        reg[level][0, :, row, col] += value
    student = dict(features=features, conf=torch.zeros(1, 12, 2))
    teacher = dict(cls_features=cls, reg_features=reg, conf=torch.zeros(1, 12, 2))
    distiller = distiller or _distiller()
    return distiller(student, teacher, _match(), SHAPES)["feature"].item()


def test_regression_ignores_a_location_with_only_mined_negatives():
    assert _run(reg_offsets=[(0, 1, 1, 1.0)]) == pytest.approx(0.0, abs=1e-6)
    assert _run(reg_offsets=[(1, 0, 0, 1.0)]) == pytest.approx(0.0, abs=1e-6)


def test_classification_counts_a_location_with_only_mined_negatives():
    # 3 channels x 1^2 / (2 x 3 classification locations of level 1)
    assert _run(cls_offsets=[(0, 1, 1, 1.0)]) == pytest.approx(3 / 6, abs=1e-6)
    # level 2 has 1 classification location: 3 x 2^2 / (2 x 1)
    assert _run(cls_offsets=[(1, 0, 0, 2.0)]) == pytest.approx(6.0, abs=1e-5)


def test_regression_counts_the_positive_location_over_its_own_level():
    # 3 channels x 2^2 / (2 x 1 regression location)
    assert _run(reg_offsets=[(0, 0, 0, 2.0)]) == pytest.approx(6.0, abs=1e-5)
    # both tasks at the positive location, summed: 6 + 3 x 2^2 / (2 x 3)
    assert _run(cls_offsets=[(0, 0, 0, 2.0)], reg_offsets=[(0, 0, 0, 2.0)]) == pytest.approx(8.0, abs=1e-5)


def test_levels_are_normalised_separately_and_summed():
    # level 1: 3 x 1 / 6 = 0.5 at (1, 0); level 2: 3 x 1 / 2 = 1.5 at (0, 0)
    assert _run(cls_offsets=[(0, 1, 0, 1.0), (1, 0, 0, 1.0)]) == pytest.approx(2.0, abs=1e-5)


def test_only_three_hard_negatives_per_positive():
    # (0, 1) of level 1 holds the 4th hardest negative; (0, 1) of level 2 is never selected
    assert _run(cls_offsets=[(0, 0, 1, 1.0), (1, 0, 1, 1.0)]) == pytest.approx(0.0, abs=1e-6)
    seven = _distiller()
    seven.negpos_ratio = 7  # 7 per positive select every location of both levels
    assert _run(cls_offsets=[(0, 0, 1, 1.0)], distiller=seven) == pytest.approx(3 / 8, abs=1e-6)


def test_each_task_uses_its_own_adapters():
    # regression adapters double the student, the teacher's regression feature is doubled too
    assert _run(distiller=_distiller(reg_scale=2.0), reg_scale=2.0) == pytest.approx(0.0, abs=1e-5)
    assert _run(distiller=_distiller(cls_scale=2.0), reg_scale=2.0) > 1.0


def test_probability_loss_from_logits_by_hand():
    student_logits = torch.zeros(1, 12, 2)
    teacher_logits = torch.zeros(1, 12, 2)
    teacher_logits[0, :, 1] = 10.0  # p(face) ~ 0.99995: outside (0.1, 0.9), ignored
    teacher_logits[0, 3] = torch.tensor([0.0, 0.0])  # (0.5, 0.5): inside
    student_logits[0, 3] = torch.tensor([0.0, math.log(3.0)])  # (0.25, 0.75)
    teacher_logits[0, 5] = torch.tensor([0.0, math.log(4.0)])  # (0.2, 0.8): inside
    student_logits[0, 5] = torch.tensor([0.0, math.log(4.0)])  # equal: contributes 0 to the sum
    features = [torch.zeros(1, C, rows, cols) for rows, cols, _ in SHAPES]
    student = dict(features=features, conf=student_logits)
    teacher = dict(cls_features=features, reg_features=features, conf=teacher_logits)
    losses = _distiller()(student, teacher, _match(), SHAPES)
    # (0.25^2 + 0.25^2 + 0 + 0) / 4 selected probabilities
    assert losses["probability"].item() == pytest.approx(0.125 / 4, abs=1e-6)
    assert losses["feature"].item() == 0.0
    # a teacher sure of every anchor selects nothing: 0, not 0 / 0
    teacher["conf"] = torch.tensor([0.0, 10.0]).expand(1, 12, 2)
    assert _distiller()(student, teacher, _match(), SHAPES)["probability"].item() == 0.0
