"""Task-decoupled distillation: selected locations, loss values, any image size."""
import pytest
import torch

from config import network_config
from layers import MatchResult, MultiBoxLoss, TaskDecoupledDistiller, level_shapes, prior_boxes
from layers.distiller import feature_loss, location_masks, probability_loss
from models import build_model

SHAPES = [(2, 2, 2), (1, 1, 2)]  # 8 + 2 anchors


def _match(positive_anchors, rank):
    positives = torch.zeros(1, 10, dtype=torch.bool)
    positives[0, positive_anchors] = True
    return MatchResult(positives, torch.tensor([rank]), positives.long().sum(1, keepdim=True))


def test_location_masks_reduce_two_anchors_per_location():
    anchors = torch.zeros(1, 10, dtype=torch.bool)
    anchors[0, 3] = True  # level 1, row 0, col 1, second anchor
    anchors[0, 9] = True  # level 2, the only location, second anchor
    masks = location_masks(anchors, SHAPES)
    assert masks[0].tolist() == [[[False, True], [False, False]]]
    assert masks[1].tolist() == [[[True]]]
    with pytest.raises(ValueError):
        location_masks(torch.zeros(1, 9, dtype=torch.bool), SHAPES)


def test_classification_locations_add_three_hard_negatives_per_positive():
    # one positive at anchor 0; background ranks: anchors 4, 6, 8 hardest, then 1
    rank = [9, 3, 5, 6, 0, 7, 1, 8, 2, 4]
    match = _match([0], rank)
    cls = location_masks(match.positives | match.hard_negatives(3), SHAPES)
    reg = location_masks(match.positives, SHAPES)
    assert reg[0].tolist() == [[[True, False], [False, False]]] and not reg[1].any()
    assert cls[0].tolist() == [[[True, False], [True, True]]]
    assert cls[1].tolist() == [[[True]]]


def test_feature_loss_by_hand_and_zero_when_equal():
    mask = torch.tensor([[[True, False], [False, True]]])
    student = torch.zeros(1, 4, 2, 2)
    teacher = torch.ones(1, 4, 2, 2)
    # 2 locations x 4 channels x 1^2 / (2 x 2)
    assert feature_loss([student], [teacher], [mask]).item() == pytest.approx(2.0)
    assert feature_loss([teacher], [teacher], [mask]).item() == 0.0
    assert feature_loss([student], [teacher], [torch.zeros_like(mask)]).item() == 0.0


def test_probability_mask_has_open_bounds():
    teacher = torch.tensor([[[0.1, 0.9], [0.5, 0.5], [0.95, 0.05]]])
    student = torch.tensor([[[0.3, 0.7], [0.2, 0.8], [0.0, 1.0]]])
    # only the two 0.5 entries count: (0.3^2 + 0.3^2) / 2
    assert probability_loss(student, teacher).item() == pytest.approx(0.09, abs=1e-6)
    assert probability_loss(teacher, teacher).item() == 0.0


def _identity_distiller(channels):
    distiller = TaskDecoupledDistiller(channels, channels)
    with torch.no_grad():
        for conv in list(distiller.cls_adapters) + list(distiller.reg_adapters):
            conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return distiller


def test_zero_feature_loss_when_adapted_student_equals_teacher():
    features = [torch.randn(1, 8, r, c) for r, c, _ in SHAPES]
    student = dict(features=features, conf=torch.zeros(1, 10, 2))
    teacher = dict(cls_features=features, reg_features=features, conf=torch.zeros(1, 10, 2))
    match = _match([0, 9], list(range(10)))
    losses = _identity_distiller(8)(student, teacher, match, SHAPES)
    assert losses["feature"].item() == 0.0
    teacher["reg_features"] = [f + 1 for f in features]
    losses = _identity_distiller(8)(student, teacher, match, SHAPES)
    # level 1: one location, level 2: one location; 8 channels each; / (2 x 1)
    assert losses["feature"].item() == pytest.approx(8.0, abs=1e-5)


def test_adapters_are_registered_parameters():
    distiller = TaskDecoupledDistiller(64, 256)
    names = [name for name, _ in distiller.named_parameters()]
    assert len(names) == 6 and "cls_adapters.0.weight" in names and "reg_adapters.2.weight" in names
    assert distiller.cls_adapters[1].weight.shape == (256, 64, 1, 1)


@pytest.mark.parametrize("height,width", [(96, 160), (100, 70)])
def test_real_models_at_non_640_sizes(height, width):
    torch.manual_seed(0)
    cfg = network_config("mobile0.25")
    student = build_model(cfg)
    teacher = build_model(network_config("mobile0.75"), task_heads=True).eval()
    images = torch.randn(2, 3, height, width)
    target = torch.tensor([[0.2, 0.2, 0.6, 0.7] + [0.4, 0.4] * 5 + [1.0]])
    priors = prior_boxes(cfg, (height, width))
    out = student(images)
    with torch.no_grad():
        teacher_out = teacher(images)
    _, match = MultiBoxLoss()(out, priors, [target, target])
    losses = TaskDecoupledDistiller(64, 64)(out, teacher_out, match, level_shapes(cfg, (height, width)))
    assert losses["feature"].item() > 0 and torch.isfinite(losses["probability"])
    (losses["feature"] + losses["probability"]).backward()
    assert student.ssh1.conv3X3[0].weight.grad.abs().sum() > 0
