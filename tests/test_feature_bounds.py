"""The relative feature term cannot blow up: its divisor is the teacher's energy at the selected
locations, or 0.1 x the adapted student's where that is larger (docs/DISTILLATION.md)."""
import pytest
import torch

from layers.distiller import RELATIVE_FLOOR, TaskDecoupledDistiller, feature_loss, level_feature_losses
from layers import MatchResult

BOUND = 2 * (1 + 1 / RELATIVE_FLOOR)  # ||s - t||^2 <= 2 ||s||^2 + 2 ||t||^2


def _one_location(student, teacher):
    """One level, one selected location, values per channel given as lists."""
    return ([torch.tensor(student, dtype=torch.float32).reshape(1, -1, 1, 1)],
            [torch.tensor(teacher, dtype=torch.float32).reshape(1, -1, 1, 1)],
            [torch.ones(1, 1, 1, dtype=torch.bool)])


def test_dead_teacher_gives_the_floor_not_a_blow_up():
    # student (1, 1), teacher 0: error 2, teacher energy 0, student energy 2; divisor 0.1 x 2 = 0.2
    for normalize in ("per_level", "all_levels"):
        assert feature_loss(*_one_location([1, 1], [0, 0]), "relative", normalize).item() == pytest.approx(10.0)
    # the paper's absolute term is unchanged: 2 / (2 x 1 location)
    assert feature_loss(*_one_location([1, 1], [0, 0])).item() == pytest.approx(1.0)


def test_a_teacher_above_the_floor_gives_the_plain_ratio():
    # student (3, 0), teacher (1, 1): error 4 + 1 = 5, teacher energy 2, 0.1 x student energy 0.9
    assert feature_loss(*_one_location([3, 0], [1, 1]), "relative").item() == pytest.approx(5 / 2)
    # student (5, 0): error 16 + 1 = 17, teacher energy 2 < 0.1 x 25 = 2.5: floor
    assert feature_loss(*_one_location([5, 0], [1, 1]), "relative").item() == pytest.approx(17 / 2.5)


def test_one_dead_level_stays_bounded_per_level_and_pooled():
    # level 1: student (1, 0), teacher (1, 1): error 1, teacher energy 2 (student 1)
    # level 2: student (2, 0), teacher dead:   error 4, teacher energy 0, student energy 4
    student = [torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1), torch.tensor([2.0, 0.0]).reshape(1, 2, 1, 1)]
    teacher = [torch.ones(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)]
    masks = [torch.ones(1, 1, 1, dtype=torch.bool)] * 2
    per_level = level_feature_losses(student, teacher, masks, "relative", "per_level")
    assert [v.item() for v in per_level] == pytest.approx([1 / 2, 4 / 0.4])  # level 2 over 0.1 x 4
    pooled = level_feature_losses(student, teacher, masks, "relative", "all_levels")
    assert [v.item() for v in pooled] == pytest.approx([1 / 2, 4 / 2])  # teacher energy 2 >= 0.1 x 5


def test_teacher_only_rescale_stays_bounded_and_a_joint_rescale_changes_nothing():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    masks = [torch.rand(2, 4, 4) < 0.5]
    plain = feature_loss([student], [teacher], masks, "relative", "all_levels").item()
    for scale in (1e-12, 1e-6, 1e-3, 1e3, 1e6):
        joint = feature_loss([scale * student], [scale * teacher], masks, "relative", "all_levels").item()
        assert joint == pytest.approx(plain, rel=1e-4)
        alone = feature_loss([student], [scale * teacher], masks, "relative", "all_levels").item()
        assert alone <= BOUND
    # a vanishing teacher: the error is the student's energy, over 0.1 x the same energy
    assert feature_loss([student], [1e-9 * teacher], masks, "relative").item() == pytest.approx(10.0, rel=1e-4)


def test_the_term_never_exceeds_its_bound():
    generator = torch.Generator().manual_seed(1)
    for trial in range(200):
        scale_s, scale_t = 10.0 ** (torch.rand(2, generator=generator) * 24 - 12)
        student = scale_s * torch.randn(1, 4, 3, 3, generator=generator)
        teacher = scale_t * torch.randn(1, 4, 3, 3, generator=generator) * (trial % 3 != 0)  # a third dead
        masks = [torch.rand(1, 3, 3, generator=generator) < 0.6]
        for normalize in ("per_level", "all_levels"):
            value = feature_loss([student], [teacher], masks, "relative", normalize).item()
            assert 0 <= value <= BOUND * (1 + 1e-5)


def test_the_floor_leaves_every_term_below_its_trigger_unchanged():
    """Where the floor decides, ||s|| > sqrt(10) ||t||, so the plain ratio is at least
    (sqrt(10) - 1)^2 = 4.68: a run whose relative feature losses stay below that never met it."""
    trigger = (1 / RELATIVE_FLOOR ** 0.5 - 1) ** 2
    generator = torch.Generator().manual_seed(2)
    for _ in range(200):
        student = torch.randn(1, 4, 3, 3, generator=generator) * 10 ** torch.rand(1, generator=generator)
        teacher = torch.randn(1, 4, 3, 3, generator=generator)
        masks = [torch.ones(1, 3, 3, dtype=torch.bool)]
        floored = feature_loss([student], [teacher], masks, "relative").item()
        plain = feature_loss([student], [teacher], masks, "relative", floor=0.0).item()
        if plain < trigger:
            assert floored == plain


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", ["absolute", "relative", "standardised"])
def test_half_precision_inputs_are_computed_in_float32(dtype, scale):
    student, teacher, masks = _one_location([3, 0], [1, 1])
    empty = [torch.zeros_like(m) for m in masks]
    for normalize in ("per_level", "all_levels"):
        half = [student[0].to(dtype)], [teacher[0].to(dtype)]
        assert feature_loss(*half, empty, scale, normalize).item() == 0.0  # not 0 / 0
        value = feature_loss(*half, masks, scale, normalize)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(feature_loss(student, teacher, masks, scale, normalize).item())


def test_empty_masks_give_zero_in_every_setting():
    student, teacher, masks = _one_location([1, 2], [0, 0])
    empty = [torch.zeros_like(m) for m in masks]
    for scale in ("absolute", "relative", "standardised"):
        for normalize in ("per_level", "all_levels"):
            assert feature_loss(student, teacher, empty, scale, normalize).item() == 0.0


def _match(positives):
    """A MatchResult whose positives are ``positives`` and with no mined negative."""
    return MatchResult(positives=positives, negative_rank=torch.full(positives.shape, 100),
                       num_positives=positives.sum(dim=1, keepdim=True))


def test_dead_teacher_features_are_named():
    distiller = TaskDecoupledDistiller(2, 2, num_levels=1, terms=("feature",))
    shapes = [(1, 2, 1)]
    match = _match(torch.tensor([[True, False]]))
    student = {"features": [torch.ones(1, 2, 1, 2)]}
    live = torch.ones(1, 2, 1, 2)
    teacher = {"cls_features": [live], "reg_features": [1e-9 * live]}
    dead = distiller.dead_teacher_features(student, teacher, match, shapes)
    assert [(term, task) for term, task, _, _ in dead] == [("feature", "reg")]
    assert dead[0][2] == pytest.approx(1e-9) and dead[0][3] == pytest.approx(1.0)
    teacher["reg_features"] = [1e-3 * live]  # small but alive: 1e-3 of the student's RMS
    assert distiller.dead_teacher_features(student, teacher, match, shapes) == []


def _two_locations(student, teacher, selected):
    """One level, one channel, two locations (values given per location), ``selected`` [2] bool."""
    return ([torch.tensor(student, dtype=torch.float32).reshape(1, 1, 1, 2)],
            [torch.tensor(teacher, dtype=torch.float32).reshape(1, 1, 1, 2)],
            [torch.tensor(selected).reshape(1, 1, 2)])


def test_standardised_scale_by_hand():
    # Two locations standardise to (-1, +1) whatever the map's scale or offset (population SD);
    # the term is the squared difference at the selected locations over 2 x channels x count.
    same = _two_locations([0, 4], [1e3 + 1e-2, 1e3 + 3e-2], [True, True])  # both rising: z = (-1, 1) for each
    assert feature_loss(*same, scale="standardised").item() == pytest.approx(0.0, abs=1e-6)
    opposite = _two_locations([0, 4], [7e3, 5e3], [True, False])  # z_s = (-1, 1), z_t = (1, -1)
    assert feature_loss(*opposite, scale="standardised").item() == pytest.approx((-1 - 1) ** 2 / (2 * 1 * 1))
    both = _two_locations([0, 4], [7e3, 5e3], [True, True])  # (4 + 4) / (2 x 2)
    assert feature_loss(*both, scale="standardised").item() == pytest.approx(2.0)


def test_standardised_scale_ignores_a_dead_or_rescaled_teacher():
    student, teacher, masks = _two_locations([0, 4], [3.0, 1.0], [True, False])
    base = feature_loss(student, teacher, masks, "standardised").item()
    assert base == pytest.approx(2.0)  # z_s = -1, z_t = +1 at the selected location
    for factor in (1e-2, 1e6):
        assert feature_loss(student, [teacher[0] * factor], masks, "standardised").item() == pytest.approx(base)
    # A teacher whose spread is far below PKD_EPS standardises to 0 everywhere: (-1 - 0)^2 / 2.
    for dead in (torch.zeros_like(teacher[0]), teacher[0] * 1e-12):
        assert feature_loss(student, [dead], masks, "standardised").item() == pytest.approx(0.5, abs=1e-5)
