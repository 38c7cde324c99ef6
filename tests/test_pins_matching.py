"""Matching thresholds, MultiBoxLoss normalisers and mining, and the constants of docs/METHOD.md (docs/METHOD.md §3-5).

Boxes are built from multiples of 1/16 so that every IoU below is exact in float32 and the
threshold comparisons are tested *at* the thresholds.
"""
import math

import numpy as np
import pytest
import torch

import config
from layers import MultiBoxLoss, TaskDecoupledDistiller, match_priors

VAR = (0.1, 0.2)
U = 1 / 16
FACE = [0.0, 0.0, 5 * U, 4 * U]  # area 20 units


def _prior(x1, y1, x2, y2):
    """(cx, cy, w, h) of a corner box given in units of 1/16 (all exact binary fractions)."""
    return [(x1 + x2) / 2 * U, (y1 + y2) / 2 * U, (x2 - x1) * U, (y2 - y1) * U]


def _iou32(a, b):
    """IoU in float32, written out from the definition (the oracle)."""
    a, b = np.float32(a), np.float32(b)
    w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _match(faces, priors, labels=None, threshold=0.35):
    faces = torch.tensor(faces)
    labels = torch.ones(len(faces)) if labels is None else torch.tensor(labels)
    return match_priors(faces, labels, torch.zeros(len(faces), 10), torch.tensor(priors), threshold, VAR)


def test_prior_at_iou_exactly_0_35_is_positive():
    priors = [
        _prior(0, 0, 5, 4),  # the face itself: its best prior (forced)
        _prior(0, 0, 3.5, 2),  # area 7 inside the face: IoU 7 / 20 = 0.35
        _prior(0, 0, 3, 2),  # IoU 6 / 20 = 0.3
        _prior(8, 8, 16, 16),  # far away
    ]
    assert _iou32(FACE, [0, 0, 3.5 * U, 2 * U]) == np.float32(0.35)
    loc, conf, _ = _match([FACE], priors)
    assert conf.tolist() == [1, 1, 0, 0]
    # prior 1 is encoded against the face: centre (2.5, 2) vs (1.75, 1), size 5x4 vs 3.5x2 units
    expected = [0.75 / (0.1 * 3.5), 1 / (0.1 * 2), math.log(5 / 3.5) / 0.2, math.log(4 / 2) / 0.2]
    assert loc[1].tolist() == pytest.approx(expected, abs=1e-5)


def test_face_with_best_iou_0_15_leaves_the_image_background():
    priors = [_prior(0, 0, 5, 4), _prior(8, 8, 16, 16)]
    face = [0.0, 0.0, 3 * U, 1 * U]  # area 3 inside the 20-unit prior: IoU 0.15
    assert _iou32(face, [0, 0, 5 * U, 4 * U]) == pytest.approx(0.15)
    loc, conf, landm = _match([face], priors)
    assert conf.tolist() == [0, 0] and loc.abs().sum() == 0 and landm.abs().sum() == 0
    # whatever the positive threshold: no face reaches 0.2, so the image is background
    assert _match([face], priors, threshold=0.1)[1].tolist() == [0, 0]


def test_face_with_best_iou_exactly_0_2_claims_its_prior():
    priors = [_prior(0, 0, 5, 4), _prior(8, 8, 16, 16)]
    face = [0.0, 0.0, 2 * U, 2 * U]  # area 4 inside 20: IoU 0.2, below 0.35 but forced
    assert _iou32(face, [0, 0, 5 * U, 4 * U]) == np.float32(0.2)
    _, conf, _ = _match([face], priors)
    assert conf.tolist() == [1, 0]


def test_only_faces_reaching_0_2_force_their_prior():
    # face 0 is prior 1 exactly; face 1 (label -1) has best IoU 0.15 with prior 0: it claims
    # prior 0 but does not force it, so prior 0 stays background.
    priors = [_prior(0, 0, 5, 4), _prior(8, 8, 16, 16)]
    faces = [[8 * U, 8 * U, 16 * U, 16 * U], [0.0, 0.0, 3 * U, 1 * U]]
    _, conf, _ = _match(faces, priors, labels=[1.0, -1.0])
    assert conf.tolist() == [0, 1]


def test_threshold_argument_is_used():
    priors = [_prior(0, 0, 5, 4), _prior(0, 0, 3, 2)]  # IoU 1 and 0.3
    assert _match([FACE], priors, threshold=0.3)[1].tolist() == [1, 1]
    assert _match([FACE], priors, threshold=0.35)[1].tolist() == [1, 0]


# ---------------------------------------------------------------- MultiBoxLoss

# Twelve disjoint priors: a 4 x 3 grid of cells (w 0.25, h 1/3); a face equal to a cell
# matches that prior only, with zero offsets.
GRID = torch.tensor([[(c + 0.5) / 4, (r + 0.5) / 3, 0.25, 1 / 3] for r in range(3) for c in range(4)])


def _cell_face(index, label):
    cx, cy, w, h = GRID[index].tolist()
    centre = [cx, cy] * 5  # landmarks at the prior centre: encoded as zeros
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] + centre + [label]


def _softplus(z):
    return math.log1p(math.exp(z))


# Background-class logit 0, face logit z: negatives cost softplus(z), positives softplus(-z).
FACE_LOGITS = [
    [0.3, -1.0, 2.0, 0.1, -0.5, 0.0, 1.5, -2.0, 0.7, 1.1, -0.3, 0.4],  # image 1: priors 0, 5 positive
    [1.2, 0.2, -0.7, 0.9, 2.5, -1.5, 0.6, -2.0, -0.2, 1.8, 0.05, -1.1],  # image 2: prior 7 positive (hard)
]


def _batch():
    targets = [torch.tensor([_cell_face(0, 1.0), _cell_face(5, -1.0)]), torch.tensor([_cell_face(7, 1.0)])]
    loc = torch.full((2, 12, 4), 5.0)  # only positives may count
    loc[0, 0] = torch.tensor([2.0, 0, 0, 0])  # smooth-L1 1.5
    loc[0, 5] = torch.tensor([0.5, 0, 0, 0])  # 0.125
    loc[1, 7] = torch.tensor([0, 1.0, 0, 0])  # 0.5
    landms = torch.full((2, 12, 10), 7.0)
    landms[0, 0] = torch.tensor([1.0] + [0.0] * 9)  # 0.5
    landms[1, 7] = torch.tensor([0, 0, 2.0] + [0.0] * 7)  # 1.5
    logits = torch.tensor(FACE_LOGITS)
    conf = torch.stack([torch.zeros_like(logits), logits], dim=-1)
    return dict(loc=loc, conf=conf, landms=landms), targets


def test_targets_of_a_batch_with_different_face_counts():
    # image 0: cells 0 and 5 (labels 1, -1); image 1: no face; image 2: a face covering the top
    # left quarter of cell 6 (IoU 1/4 < 0.35, forced) and a tiny one (best IoU < 0.2)
    cx, cy, w, h = GRID[6].tolist()
    quarter = [cx - w / 2, cy - h / 2, cx, cy] + [cx, cy] * 5 + [1.0]
    tiny = [0.0, 0.0, 0.01, 0.01] + [0.0] * 10 + [1.0]
    targets = [torch.tensor([_cell_face(0, 1.0), _cell_face(5, -1.0)]), torch.zeros(0, 15), torch.tensor([quarter, tiny])]
    loc_t, conf_t, landm_t = MultiBoxLoss().build_targets(GRID, targets)
    expected = torch.zeros(3, 12, dtype=torch.long)
    expected[0, 0], expected[0, 5], expected[2, 6] = 1, -1, 1
    assert torch.equal(conf_t, expected)
    assert loc_t[0, 0].abs().max() < 1e-6 and loc_t[1].abs().sum() == 0
    # quarter of the cell at its top-left corner: centre offset -w/4 over 0.1 w, size log(1/2) / 0.2
    assert loc_t[2, 6].tolist() == pytest.approx([-2.5, -2.5, math.log(0.5) / 0.2, math.log(0.5) / 0.2], abs=1e-5)
    assert landm_t[2, 6].abs().max() < 1e-5


def test_multibox_loss_normalisers_and_mining_by_hand():
    outputs, targets = _batch()
    losses, match = MultiBoxLoss(0.35, 7, VAR)(outputs, GRID, targets)
    assert match.positives.nonzero().tolist() == [[0, 0], [0, 5], [1, 7]]
    assert losses["loc"].item() == pytest.approx((1.5 + 0.125 + 0.5) / 3, abs=1e-6)  # 3 positives
    # landmarks: the label -1 face's prior 5 is left out; 2 positives with landmarks
    assert losses["landm"].item() == pytest.approx((0.5 + 1.5) / 2, abs=1e-6)
    # image 1: 2 positives -> 14 negatives, clamped to its 10: all negatives.
    z1 = FACE_LOGITS[0]
    image1 = _softplus(-z1[0]) + _softplus(-z1[5]) + sum(_softplus(z) for i, z in enumerate(z1) if i not in (0, 5))
    # image 2: 1 positive -> the 7 negatives with the largest face logit.
    z2 = FACE_LOGITS[1]
    hardest = sorted((z for i, z in enumerate(z2) if i != 7), reverse=True)[:7]
    image2 = _softplus(-z2[7]) + sum(_softplus(z) for z in hardest)
    assert losses["conf"].item() == pytest.approx((image1 + image2) / 3, abs=1e-5)


def test_default_negative_ratio_is_7():
    outputs, targets = _batch()
    default, _ = MultiBoxLoss()(outputs, GRID, targets)
    seven, _ = MultiBoxLoss(0.35, 7, VAR)(outputs, GRID, targets)
    assert default["conf"].item() == seven["conf"].item()
    six, _ = MultiBoxLoss(0.35, 6, VAR)(outputs, GRID, targets)
    assert six["conf"].item() < seven["conf"].item()


def test_image_without_faces_mines_nothing_and_losses_stay_finite():
    outputs, _ = _batch()
    empty = [torch.zeros(0, 15), torch.zeros(0, 15)]
    losses, match = MultiBoxLoss()(outputs, GRID, empty)
    assert {k: v.item() for k, v in losses.items()} == {"loc": 0.0, "conf": 0.0, "landm": 0.0}
    assert not match.hard_negatives(7).any()
    # image 1 holds image 2's face (prior 7), image 2 none: only image 1 mines, 7 negatives
    outputs, targets = _batch()
    losses, match = MultiBoxLoss()(outputs, GRID, [targets[1], torch.zeros(0, 15)])
    z1 = FACE_LOGITS[0]
    hardest = sorted((z for i, z in enumerate(z1) if i != 7), reverse=True)[:7]
    assert losses["conf"].item() == pytest.approx(_softplus(-z1[7]) + sum(_softplus(z) for z in hardest), abs=1e-5)
    assert match.hard_negatives(7)[1].sum() == 0 and match.hard_negatives(7)[0].sum() == 7


# ---------------------------------------------------------------- constants of docs/METHOD.md


def test_spec_constants():
    for name in ("mobile0.25", "mobile0.75", "resnet50"):
        cfg = config.network_config(name)
        assert cfg["min_sizes"] == [[16, 32], [64, 128], [256, 512]] and cfg["steps"] == [8, 16, 32]
        assert cfg["variance"] == [0.1, 0.2]
    student = config.training_config("student", "mobile0.25")
    assert student["overlap_threshold"] == 0.35 and student["negpos_ratio"] == 7
    assert student["rgb_mean"] == [104, 117, 123]
    assert student["loss_weights"] == dict(loc=2.0, conf=1.0, landm=1.0)
    kd = config.apply_overrides(config.training_config("distillation", "mobile0.25"), ["distiller=paper"])
    assert kd["distill_negpos_ratio"] == 3 and list(kd["probability_range"]) == [0.1, 0.9]
    active = {name: weight for name, weight in kd["loss_weights"].items() if weight}
    assert active == dict(loc=2.0, conf=1.0, landm=1.0, feature=1.0, probability=50.0)
    distiller = TaskDecoupledDistiller(8, 8)
    assert distiller.negpos_ratio == 3 and distiller.probability_range == (0.1, 0.9)
