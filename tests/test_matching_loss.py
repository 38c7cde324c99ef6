"""Matching rules and MultiBoxLoss on hand-built boxes with hand-computed values."""
import math

import pytest
import torch

from layers import MultiBoxLoss, match_priors

VAR = (0.1, 0.2)
# Four quadrant priors (cx, cy, w, h) plus two shifted copies of the top-left one.
PRIORS = torch.tensor([
    [0.25, 0.25, 0.5, 0.5],   # 0: [0, 0, .5, .5]
    [0.75, 0.25, 0.5, 0.5],   # 1: [.5, 0, 1, .5]
    [0.25, 0.75, 0.5, 0.5],   # 2: [0, .5, .5, 1]
    [0.75, 0.75, 0.5, 0.5],   # 3: [.5, .5, 1, 1]
    [0.30, 0.25, 0.5, 0.5],   # 4: IoU 0.818 with the top-left quadrant
    [0.50, 0.25, 0.5, 0.5],   # 5: IoU 1/3 with the top-left quadrant
])
NO_LANDMARKS = torch.full((1, 10), -1.0)


def _match(boxes, labels, landms=None):
    boxes = torch.tensor(boxes)
    landms = NO_LANDMARKS.repeat(len(boxes), 1) if landms is None else landms
    return match_priors(boxes, torch.tensor(labels), landms, PRIORS, 0.35, VAR)


def test_threshold_separates_positives():
    _, conf, _ = _match([[0.0, 0.0, 0.5, 0.5]], [1.0])
    assert conf.tolist() == [1, 0, 0, 0, 1, 0]  # 0.818 >= 0.35 > 1/3


def test_best_prior_is_forced_positive():
    _, conf, _ = _match([[0.5, 0.5, 0.75, 0.75]], [1.0])  # best IoU 0.25 with prior 3
    assert conf.tolist() == [0, 0, 0, 1, 0, 0]


def test_image_without_any_overlap_of_0_2_is_background():
    loc, conf, landm = _match([[0.5, 0.5, 0.6, 0.6]], [1.0])  # best IoU 0.04
    assert conf.abs().sum() == 0 and loc.abs().sum() == 0 and landm.abs().sum() == 0
    loc, conf, _ = match_priors(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10), PRIORS, 0.35, VAR)
    assert conf.abs().sum() == 0


def test_later_ground_truth_wins_a_shared_best_prior():
    # Both faces have prior 0 as best; prior 0's own best face is the first (IoU 1),
    # but the second claims it last.
    loc, conf, _ = _match([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.45, 0.45]], [1.0, -1.0])
    assert conf[0] == -1
    assert loc[0].tolist() == pytest.approx([-0.5, -0.5, math.log(0.9) / 0.2, math.log(0.9) / 0.2], abs=1e-6)
    assert conf[4] == 1  # prior 4 keeps its own best face, the first


def test_face_without_landmarks_keeps_label_minus_one():
    _, conf, _ = _match([[0.0, 0.0, 0.5, 0.5]], [-1.0])
    assert conf.tolist() == [-1, 0, 0, 0, -1, 0]


def test_encoding_of_landmarks():
    landms = torch.tensor([[0.3, 0.25] + [0.25, 0.25] * 4])
    _, _, landm = _match([[0.0, 0.0, 0.5, 0.5]], [1.0], landms)
    assert landm[0].tolist() == pytest.approx([1.0, 0.0] + [0.0] * 8, abs=1e-6)


def _tiny_batch():
    priors = PRIORS[:4]
    target = torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.3, 0.25] + [0.25, 0.25] * 4 + [1.0]])
    outputs = dict(
        loc=torch.tensor([[[0.1, -0.2, 0.3, 2.0], [5.0, 5, 5, 5], [5.0, 5, 5, 5], [5.0, 5, 5, 5]]]),
        conf=torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]]),
        landms=torch.zeros(1, 4, 10),
    )
    return outputs, priors, [target]


def test_multibox_loss_by_hand():
    outputs, priors, targets = _tiny_batch()
    losses, match = MultiBoxLoss(0.35, 7, VAR)(outputs, priors, targets)
    # smooth-L1 of (0.1, -0.2, 0.3, 2.0) against 0: 0.005 + 0.02 + 0.045 + 1.5
    assert losses["loc"].item() == pytest.approx(1.57, abs=1e-6)
    ce = [math.log1p(math.exp(-1)), math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2))]
    assert losses["conf"].item() == pytest.approx(sum(ce), abs=1e-5)  # 7 negatives clamp to 3
    assert losses["landm"].item() == pytest.approx(0.5, abs=1e-6)  # smooth-L1(1.0)
    assert match.positives.tolist() == [[True, False, False, False]]
    assert match.negative_rank[0, 3] == 0  # the hardest negative

    losses, _ = MultiBoxLoss(0.35, 1, VAR)(outputs, priors, targets)
    assert losses["conf"].item() == pytest.approx(ce[0] + ce[3], abs=1e-5)


def test_landmark_loss_ignores_faces_without_landmarks():
    outputs, priors, targets = _tiny_batch()
    targets[0][0, -1] = -1.0
    losses, match = MultiBoxLoss(0.35, 7, VAR)(outputs, priors, targets)
    assert losses["landm"].item() == 0.0
    assert losses["loc"].item() == pytest.approx(1.57, abs=1e-6)
    assert match.positives.sum() == 1
