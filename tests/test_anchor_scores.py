"""bench/anchor_scores.py: which high-scoring anchors count as background or face, by hand."""
import numpy as np
import pytest
import torch

from bench.anchor_scores import split_high_scores, teacher_summary

FACE = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
BOXES = torch.tensor([
    [50.0, 50.0, 60.0, 60.0],  # far from the face: IoU 0
    [0.0, 0.0, 10.0, 10.0],    # on the face: IoU 1
    [0.0, 0.0, 10.0, 10.0],    # on the face, low score
    [0.0, 0.0, 10.0, 4.0],     # IoU 40 / 100 = 0.4: neither background nor face
    [0.0, 0.0, 10.0, 2.0],     # IoU 20 / 100 = 0.2: background
])
SCORES = torch.tensor([0.9, 0.95, 0.5, 0.99, 0.81])


def test_high_scores_split_by_iou_with_the_nearest_face():
    background, face = split_high_scores(SCORES, BOXES, FACE, 0.8, 0.3, 0.5)
    assert background.tolist() == [True, False, False, False, True]
    assert face.tolist() == [False, True, False, False, False]


def test_without_faces_every_high_score_is_background():
    background, face = split_high_scores(SCORES, BOXES, torch.zeros(0, 4), 0.8, 0.3, 0.5)
    assert background.tolist() == [True, True, False, True, True]
    assert not face.any()


def test_teacher_summary_by_hand():
    assert teacher_summary(np.array([0.05, 0.7, 0.9, 0.02])) == pytest.approx((0.375, 0.5))
    assert all(np.isnan(teacher_summary(np.zeros(0))))
