"""The probability term's settings beyond the paper (ground-truth anchor masks, softened KL, gap
weighting, one-sided pull) and the match's overlaps they use, against values worked out by hand."""
import math

import pytest
import torch

import config
from layers import MatchResult, MultiBoxLoss, TaskDecoupledDistiller, build_distiller
from layers.distiller import (ProbabilitySettings, describe_distiller, probability_anchor_weight,
                              probability_kl_loss, probability_loss)
from utils.errors import TDKDError

# Six anchors of one image: ground truth, IoU with the nearest face, face probability of teacher
# and student. Squared differences of an anchor (both class columns): 2 d^2.
#   a0 positive    IoU 0.6   teacher 0.8   student 0.5   d 0.3   2 d^2 = 0.18
#   a1 background  IoU 0.3   teacher 0.6   student 0.4   d 0.2   0.08  (teacher contradicts: > 0.5)
#   a2 background  IoU 0.05  teacher 0.3   student 0.4   d 0.1   0.02
#   a3 positive    IoU 0.7   teacher 0.7   student 0.9   d 0.2   0.08  (student beyond the teacher)
#   a4 background  IoU 0     teacher 0.05  student 0.5           certain teacher: never selected
#   a5 positive    IoU 0.4   teacher 0.4   student 0.2   d 0.2   0.08  (teacher contradicts: < 0.5)
# The paper's range (0.1, 0.9) selects a0, a1, a2, a3, a5: 10 elements, sum 0.44.
POSITIVES = [True, False, False, True, False, True]
OVERLAPS = [0.6, 0.3, 0.05, 0.7, 0.0, 0.4]
TEACHER = [0.8, 0.6, 0.3, 0.7, 0.05, 0.4]
STUDENT = [0.5, 0.4, 0.4, 0.9, 0.5, 0.2]


def _logits(face):
    """Class logits [1, A, 2] whose softmax gives these face probabilities."""
    face = torch.tensor(face, dtype=torch.float64)
    return torch.stack([torch.zeros_like(face), torch.log(face / (1 - face))], dim=-1)[None]


def _match(positives=POSITIVES, overlaps=OVERLAPS):
    pos = torch.tensor([positives])
    return MatchResult(pos, torch.zeros(pos.shape, dtype=torch.long), pos.long().sum(1, keepdim=True),
                       torch.tensor([overlaps], dtype=torch.float64))


def _term(normalize="uncertain", **settings):
    distiller = TaskDecoupledDistiller(8, 8, terms=("probability",), probability_normalize=normalize,
                                       probability=ProbabilitySettings(**settings))
    return distiller.probability_term(_logits(STUDENT), _logits(TEACHER), _match()).item()


def test_the_default_settings_are_the_paper_term_bit_for_bit():
    assert _term() == pytest.approx(0.44 / 10, abs=1e-9)
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 50, 2), 3 * torch.randn(2, 50, 2)
    match = MatchResult(torch.rand(2, 50) < 0.2, torch.zeros(2, 50, dtype=torch.long), torch.ones(2, 1))
    for normalize, divisor in (("uncertain", None), ("positives", match.positives.sum())):
        term = TaskDecoupledDistiller(8, 8, terms=("probability",), probability_normalize=normalize)
        paper = probability_loss(student.softmax(-1), teacher.softmax(-1), divisor=divisor)
        assert torch.equal(term.probability_term(student, teacher, match), paper)


def test_ground_truth_masks_select_and_count_anchors():
    # positives only: a0, a3, a5 -> (0.18 + 0.08 + 0.08) / 6 elements
    assert _term(anchors="positives") == pytest.approx(0.34 / 6, abs=1e-9)
    # near faces at IoU >= 0.2: the positives and a1 -> 0.42 / 8; at 0.02 a2 joins -> the paper's 0.44 / 10
    assert _term(anchors="near_faces", min_iou=0.2) == pytest.approx(0.42 / 8, abs=1e-9)
    assert _term(anchors="near_faces", min_iou=0.02) == pytest.approx(0.44 / 10, abs=1e-9)
    # a positive counts whatever its IoU (a face's forced best prior may lie below the threshold)
    assert _term(anchors="near_faces", min_iou=0.99) == pytest.approx(0.34 / 6, abs=1e-9)
    # drop where the teacher contradicts the ground truth: a1 and a5 go -> (0.18 + 0.02 + 0.08) / 6
    assert _term(drop_contradicted=True) == pytest.approx(0.28 / 6, abs=1e-9)
    # both: a0 and a3 -> 0.26 / 4; over the 3 positives' divisor instead: 0.26 / 3
    assert _term(anchors="positives", drop_contradicted=True) == pytest.approx(0.26 / 4, abs=1e-9)
    assert _term("positives", anchors="positives", drop_contradicted=True) == pytest.approx(0.26 / 3, abs=1e-9)


def test_near_faces_needs_the_overlaps():
    match = MatchResult(torch.tensor([POSITIVES]), torch.zeros(1, 6, dtype=torch.long), torch.tensor([[3]]))
    distiller = TaskDecoupledDistiller(8, 8, terms=("probability",),
                                       probability=ProbabilitySettings(anchors="near_faces"))
    with pytest.raises(ValueError, match="overlaps"):
        distiller.probability_term(_logits(STUDENT), _logits(TEACHER), match)


def test_one_sided_never_pulls_a_student_beyond_the_teacher_toward_the_truth():
    # no pull on a3 (positive, student 0.9 above the teacher's 0.7) nor on a1 (background, student
    # 0.4 below the teacher's 0.6); both still count: (0.18 + 0.02 + 0.08) / 10
    assert _term(one_sided=True) == pytest.approx(0.28 / 10, abs=1e-9)
    # the correct confident student of a3 gets no gradient; a0's student is pulled up toward the teacher
    student = _logits(STUDENT).requires_grad_()
    distiller = TaskDecoupledDistiller(8, 8, terms=("probability",), probability=ProbabilitySettings(one_sided=True))
    distiller.probability_term(student, _logits(TEACHER), _match()).backward()
    assert student.grad[0, 3].abs().max() == 0 and student.grad[0, 1].abs().max() == 0
    assert student.grad[0, 0, 1] < 0  # descending raises the face logit


def test_gap_weighting_by_hand_and_without_gradient():
    # weights |d|: 0.18 x 0.3 + 0.08 x 0.2 + 0.02 x 0.1 + 0.08 x 0.2 + 0.08 x 0.2 = 0.104, over 10
    assert _term(gap_gamma=1.0) == pytest.approx(0.104 / 10, abs=1e-9)
    # |d|^2: 0.18 x 0.09 + 3 x 0.08 x 0.04 + 0.02 x 0.01 = 0.026, over 10
    assert _term(gap_gamma=2.0) == pytest.approx(0.026 / 10, abs=1e-9)
    # with one-sided: a1 and a3 drop out of the |d| sum: 0.104 - 2 x 0.016 = 0.072
    assert _term(gap_gamma=1.0, one_sided=True) == pytest.approx(0.072 / 10, abs=1e-9)
    student = _logits(STUDENT).softmax(-1).requires_grad_()
    weight = probability_anchor_weight(ProbabilitySettings(gap_gamma=1.0), student, _logits(TEACHER).softmax(-1),
                                       _match().positives)
    assert not weight.requires_grad and weight[0].tolist() == pytest.approx([0.3, 0.2, 0.1, 0.2, 0.45, 0.2])


def test_softened_kl_on_the_uncertain_anchors_by_hand():
    # anchor 0: teacher (0.5, 0.5), student (0.25, 0.75); anchor 1: teacher sure (0.95), not selected
    student = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [0.0, math.log(19.0)]]])
    # T = 1: 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4 / 3), over 1 selected anchor
    assert probability_kl_loss(student, teacher, 1.0).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    # T = 2: the student becomes (1, sqrt 3) / (1 + sqrt 3); 0.5 ln(0.5 (1 + sqrt 3)) + 0.5 ln(0.5 (1 + sqrt 3) /
    # sqrt 3) = 0.5 ln((1 + sqrt 3)^2 / (4 sqrt 3)), times T^2 = 4
    root3 = math.sqrt(3)
    expected = 2 * math.log((1 + root3) ** 2 / (4 * root3))
    assert probability_kl_loss(student, teacher, 2.0).item() == pytest.approx(expected, abs=1e-6)
    assert probability_kl_loss(student, teacher, 2.0, divisor=torch.tensor(4)).item() == pytest.approx(expected / 4,
                                                                                                       abs=1e-6)
    # kept out by the ground-truth mask: nothing selected, 0
    assert probability_kl_loss(student, teacher, 2.0, keep=torch.tensor([[False, True]])).item() == 0.0


def test_kl_form_in_the_distiller_counts_anchors():
    # the six anchors, T = 1, positives only (a0, a3, a5), 3 anchors:
    # KL(t || s) = t ln(t / s) + (1 - t) ln((1 - t) / (1 - s)) of the face probabilities
    def kl(t, s):
        return t * math.log(t / s) + (1 - t) * math.log((1 - t) / (1 - s))

    expected = (kl(0.8, 0.5) + kl(0.7, 0.9) + kl(0.4, 0.2)) / 3
    assert _term(form="kl", temperature=1.0, anchors="positives") == pytest.approx(expected, abs=1e-9)


def test_the_match_holds_each_priors_best_iou_not_the_forced_two():
    # prior 0 is the box [0, 0, 0.5, 0.5], prior 1 [0.5, 0.5, 1, 1]; the face [0, 0, 0.5, 0.125]
    # has IoU 0.0625 / 0.25 = 0.25 with prior 0 (below 0.35, but its best prior: forced positive)
    # and 0 with prior 1; the second image has no face
    priors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]])
    face = torch.tensor([[0.0, 0.0, 0.5, 0.125] + [0.1] * 10 + [1.0]])
    outputs = dict(loc=torch.zeros(2, 2, 4), conf=torch.zeros(2, 2, 2), landms=torch.zeros(2, 2, 10))
    _, match = MultiBoxLoss(0.35, 7, (0.1, 0.2))(outputs, priors, [face, torch.zeros(0, 15)])
    assert match.positives.tolist() == [[True, False], [False, False]]
    assert match.overlaps.flatten().tolist() == pytest.approx([0.25, 0.0, 0.0, 0.0])


def _cfg(*overrides):
    return config.apply_overrides(config.training_config("distillation", "mobile0.25"), list(overrides))


def test_settings_come_from_config_and_the_command_line():
    paper = build_distiller(_cfg("distiller=features", "loss_weights.probability=1"), 8, 8)
    assert paper.probability == ProbabilitySettings("all", 0.2, False, "squared", 2.0, 0.0, False)
    default = build_distiller(_cfg(), 8, 8)  # the default distiller: the positive anchors only
    assert default.probability == ProbabilitySettings("positives", 0.2, False, "squared", 2.0, 0.0, False)
    chosen = build_distiller(_cfg("loss_weights.probability=1", "probability_anchors=near_faces",
                                  "probability_min_iou=0.3", "probability_drop_contradicted=true",
                                  "probability_form=kl", "probability_temperature=4", "probability_gap_gamma=2",
                                  "probability_one_sided=true"), 8, 8)
    assert chosen.probability == ProbabilitySettings("near_faces", 0.3, True, "kl", 4.0, 2.0, True)
    line = describe_distiller(_cfg("loss_weights.probability=1", "probability_anchors=near_faces",
                                   "probability_form=kl", "probability_one_sided=true"))
    assert ("probability / positives, anchors positive or with IoU >= 0.2, KL at temperature 2, one-sided; "
            in line)
    assert "probability / positives; warm-up" in describe_distiller(_cfg("distiller=features", "loss_weights.probability=1"))
    assert "probability / positives, positive anchors only; CWD temperature 1; warm-up" in describe_distiller(_cfg())
    for bad, message in (("probability_anchors=faces", "probability_anchors=faces: choose one of"),
                         ("probability_form=l1", "probability_form=l1: choose one of"),
                         ("probability_min_iou=1.5", "probability_min_iou=1.5: must lie in"),
                         ("probability_gap_gamma=-1", "probability_gap_gamma=-1.0: must be 0 or above"),
                         ("probability_temperature=0", "probability_temperature=0.0: must be above 0")):
        with pytest.raises(TDKDError, match=message):
            build_distiller(_cfg("loss_weights.probability=1", bad), 8, 8)
