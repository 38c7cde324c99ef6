"""The field's feature baselines as terms of the one distiller: PKD (1 - Pearson r per channel)
and CWD (channel-wise spatial softmax, KL with temperature), and the public code's preset,
against values worked out by hand."""
import math

import pytest
import torch

import config
from layers import MatchResult, build_distiller
from layers.distiller import (TaskDecoupledDistiller, channel_softmax_level_losses, describe_distiller,
                              pearson_level_losses)
from tests.test_distiller_settings import _trainer

SHAPES = [(2, 2, 2), (1, 1, 2)]  # 8 + 2 anchors
# one channel of 2 x 2 locations: the teacher 1, 2, 3, 4; the student swaps 2 and 3. Deviations
# from the mean 2.5: teacher (-1.5, -0.5, 0.5, 1.5), student (-1.5, 0.5, -0.5, 1.5); covariance
# sum 2.25 - 0.25 - 0.25 + 2.25 = 4, variance sums 5 and 5: r = 4 / 5, PKD = 1 - r = 0.2
TEACHER = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
STUDENT = torch.tensor([[[[1.0, 3.0], [2.0, 4.0]]]])


def _pkd(student, teacher):
    return pearson_level_losses([student], [teacher])[0].item()


def test_pkd_is_one_minus_pearson_r_by_hand():
    assert _pkd(STUDENT, TEACHER) == pytest.approx(0.2, abs=1e-5)
    assert _pkd(TEACHER, TEACHER) == pytest.approx(0.0, abs=1e-6)
    assert _pkd(-TEACHER, TEACHER) == pytest.approx(2.0, abs=1e-5)  # r = -1
    # free of each map's scale and offset
    assert _pkd(STUDENT, 1000 * TEACHER + 7) == pytest.approx(0.2, abs=1e-5)
    assert _pkd(1e-3 * STUDENT, TEACHER) == pytest.approx(0.2, abs=1e-3)


def test_pkd_averages_channels_and_standardises_each_image_on_its_own():
    # a second channel where the student equals the teacher: (0.2 + 0) / 2
    assert _pkd(torch.cat([STUDENT, TEACHER], 1), torch.cat([TEACHER, TEACHER], 1)) == pytest.approx(0.1, abs=1e-5)
    # a second image whose teacher is 10x the first's: each image standardised alone, 0.2 each
    assert _pkd(torch.cat([STUDENT, STUDENT]), torch.cat([TEACHER, 10 * TEACHER])) == pytest.approx(0.2, abs=1e-5)


def test_pkd_stays_bounded_for_a_dead_teacher():
    # a constant teacher channel standardises to 0: the loss is the student's mean square over 2,
    # 1 / 2 (unit variance), however small the teacher
    assert _pkd(STUDENT, torch.full_like(TEACHER, 1e-12)) == pytest.approx(0.5, abs=1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        value = _pkd(STUDENT.to(dtype), (1e-3 * TEACHER).to(dtype))
        assert math.isfinite(value) and value == pytest.approx(0.2, abs=0.02)
    # a constant student channel (e.g. an adapter fitted to a dead teacher): value 1 / 2 and a
    # finite gradient (the standard deviation's own is infinite at 0)
    student = torch.zeros_like(STUDENT).requires_grad_()
    loss = pearson_level_losses([student], [TEACHER])[0]
    loss.backward()
    assert loss.item() == pytest.approx(0.5, abs=1e-5) and torch.isfinite(student.grad).all()


def test_cwd_by_hand():
    # one channel over 2 locations: teacher logits (ln 3, 0) -> softmax (0.75, 0.25); student
    # (0, 0) -> (0.5, 0.5). T = 1: 0.75 ln(0.75 / 0.5) + 0.25 ln(0.25 / 0.5)
    teacher = torch.tensor([[[[math.log(3.0), 0.0]]]])
    student = torch.zeros(1, 1, 1, 2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert channel_softmax_level_losses([student], [teacher], 1.0)[0].item() == pytest.approx(expected, abs=1e-6)
    # T = 2: the teacher becomes (p, 1 - p), p = sqrt 3 / (1 + sqrt 3); KL times T^2 = 4
    p = math.sqrt(3) / (1 + math.sqrt(3))
    expected = 4 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert channel_softmax_level_losses([student], [teacher], 2.0)[0].item() == pytest.approx(expected, abs=1e-6)
    # averaged over channels and images: a second, equal channel halves it; so does a second image
    pair = channel_softmax_level_losses([torch.cat([student, teacher], 1)], [torch.cat([teacher, teacher], 1)], 2.0)
    assert pair[0].item() == pytest.approx(expected / 2, abs=1e-6)
    images = channel_softmax_level_losses([torch.cat([student, teacher])], [torch.cat([teacher, teacher])], 2.0)
    assert images[0].item() == pytest.approx(expected / 2, abs=1e-6)
    # a student equal to the teacher up to a constant per channel has the same softmax: 0
    assert channel_softmax_level_losses([teacher + 5], [teacher], 1.0)[0].item() == pytest.approx(0.0, abs=1e-6)


def _match():
    positives = torch.zeros(1, 10, dtype=torch.bool)
    positives[0, 0] = True
    return MatchResult(positives, torch.arange(10)[None], positives.long().sum(1, keepdim=True))


def test_pkd_and_cwd_terms_through_the_distiller():
    """Identity adapters; level 1 holds the hand-worked maps in channel 0 and equal maps in
    channel 1; level 2 has one location, where both terms are 0 (r of one value: standardised
    to 0; a softmax over one location: 1)."""
    distiller = TaskDecoupledDistiller(2, 2, terms=("pkd", "cwd"), cwd_temperature=1.0)
    with torch.no_grad():
        for conv in distiller.parameters():
            conv.copy_(torch.eye(2).view(2, 2, 1, 1))
    student = dict(features=[torch.cat([STUDENT, TEACHER], 1), torch.tensor([[[[1.0]], [[2.0]]]])])
    teacher = dict(features=[torch.cat([TEACHER, TEACHER], 1), torch.tensor([[[[5.0]], [[-1.0]]]])])
    losses = distiller(student, teacher, _match(), SHAPES)
    assert set(losses) == {"pkd", "cwd"}
    assert losses["pkd"].item() == pytest.approx(0.2 / 2, abs=1e-5)
    # CWD of channel 0 at T = 1: the softmaxes of (1, 2, 3, 4) and (1, 3, 2, 4) share Z = sum e^v;
    # KL = sum t ln(t / s) over the 4 locations; channel 1 adds 0; over 2 channels
    z = sum(math.exp(v) for v in (1, 2, 3, 4))
    t = [math.exp(v) / z for v in (1, 2, 3, 4)]
    s = [math.exp(v) / z for v in (1, 3, 2, 4)]
    kl = sum(a * math.log(a / b) for a, b in zip(t, s))
    assert losses["cwd"].item() == pytest.approx(kl / 2, abs=1e-6)
    parts = distiller.feature_parts(student, teacher, _match(), SHAPES)
    assert sorted(parts) == [("cwd", "ssh", 0), ("cwd", "ssh", 1), ("pkd", "ssh", 0), ("pkd", "ssh", 1)]
    assert parts[("pkd", "ssh", 1)].item() == 0.0 and parts[("cwd", "ssh", 1)].item() == pytest.approx(0.0, abs=1e-7)


def test_pkd_and_cwd_adapters_are_fitted_by_least_squares_over_every_location():
    torch.manual_seed(0)
    student_maps = [torch.randn(1, 3, 2, 2), torch.randn(1, 3, 1, 1)]
    maps = [torch.randn(5, 3), torch.randn(5, 3)]
    teacher = dict(features=[torch.einsum("oc,bchw->bohw", m, f) for m, f in zip(maps, student_maps)])
    distiller = TaskDecoupledDistiller(3, 5, terms=("pkd", "cwd"))
    assert [n for n, _ in distiller.named_parameters()] == [f"{t}_adapters.{i}.weight" for t in ("pkd", "cwd")
                                                            for i in range(3)]
    stats = distiller.adapter_statistics(dict(features=student_maps), teacher, _match(), SHAPES)
    distiller.init_adapters("lstsq", stats, ridge=1e-9)
    # level 1: 4 locations of 3 channels determine the 5 x 3 map; level 2's single location does not
    for adapters in (distiller.pkd_adapters, distiller.cwd_adapters):
        assert torch.allclose(adapters[0].weight.view(5, 3), maps[0], atol=1e-4)


def _cfg(*overrides):
    return config.apply_overrides(config.training_config("distillation", "mobile0.25"), list(overrides))


def test_public_preset_is_the_paper_with_frozen_random_adapters():
    cfg = _cfg("distiller=public")
    assert cfg["loss_weights"]["feature"] == 1.0 and cfg["loss_weights"]["probability"] == 50.0
    assert (cfg["adapter_init"], cfg["train_adapters"], cfg["feature_scale"], cfg["feature_normalize"],
            cfg["probability_normalize"], cfg["distill_warmup"]) == ("random", False, "absolute", "per_level",
                                                                     "uncertain", 0)
    distiller = build_distiller(cfg, 8, 16)
    assert len(list(distiller.parameters())) == 6 and not any(p.requires_grad for p in distiller.parameters())
    assert _cfg("distiller=paper")["train_adapters"] is True


def test_cwd_temperature_from_config_and_described():
    distiller = build_distiller(_cfg("distiller=features", "loss_weights.cwd=2", "cwd_temperature=4"), 8, 16)
    assert distiller.terms == ("feature", "cwd") and distiller.cwd_temperature == 4.0
    assert "feature 10, cwd 2; " in describe_distiller(_cfg("distiller=features", "loss_weights.cwd=2", "cwd_temperature=4"))
    assert "CWD temperature 4; " in describe_distiller(_cfg("loss_weights.cwd=2", "cwd_temperature=4"))


def test_a_tiny_run_with_every_new_term_and_setting_stays_finite(tiny_dataset, tmp_path):
    trainer = _trainer(tiny_dataset, tmp_path, "loss_weights.pkd=1", "loss_weights.cwd=1", "loss_weights.probability=1",
                       "probability_anchors=near_faces", "probability_drop_contradicted=true", "probability_form=kl",
                       "probability_gap_gamma=2", "probability_one_sided=true", "adapter_init_batches=1")
    trainer._init_adapters()
    trainer.fit()
    state = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)
    assert {k.split(".")[0] for k in state["distiller"]} == {"cls_adapters", "reg_adapters", "pkd_adapters",
                                                             "cwd_adapters"}
