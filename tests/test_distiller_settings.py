"""The distiller's settings (docs/DISTILLATION.md): scale-free feature term, level pooling,
probability normaliser, adapter initialisation, warm-up, the dominance warning and the named
distillers, each against values worked out by hand."""
import os
import subprocess
import sys

import pytest
import torch

import config
import train
from layers import MatchResult, build_distiller
from layers.distiller import (TaskDecoupledDistiller, dominance_warning, feature_loss, level_feature_losses,
                              probability_loss, ridge_solve, warmup_factor)
from tests.conftest import REPO
from tests.test_pins_distiller import SHAPES as PIN_SHAPES
from tests.test_pins_distiller import _match as pin_match
from tests.test_train import SMALL, _teacher
from utils.errors import TDKDError

SHAPES = [(2, 2, 2), (1, 1, 2)]  # 8 + 2 anchors


def _two_levels(teacher_value=1.0):
    """Level 1: 3 selected locations, the student 1 below the teacher in both of 2 channels;
    level 2: 1 selected location, 2 below. Teacher constant ``teacher_value`` on level 1, twice
    that on level 2."""
    mask1 = torch.tensor([[[True, True], [True, False]]])
    mask2 = torch.tensor([[[True]]])
    teacher1 = torch.full((1, 2, 2, 2), teacher_value)
    teacher2 = torch.full((1, 2, 1, 1), 2 * teacher_value)
    return [teacher1 - 1, teacher2 - 2], [teacher1, teacher2], [mask1, mask2]


def test_absolute_per_level_is_the_paper_and_all_levels_pools_the_locations():
    student, teacher, masks = _two_levels()
    # errors: level 1 3 x 2 x 1 = 6 over 2 x 3; level 2 1 x 2 x 4 = 8 over 2 x 1
    assert feature_loss(student, teacher, masks).item() == pytest.approx(6 / 6 + 8 / 2)
    # pooled: (6 + 8) / (2 x 4)
    assert feature_loss(student, teacher, masks, normalize="all_levels").item() == pytest.approx(14 / 8)
    levels = level_feature_losses(student, teacher, masks, normalize="all_levels")
    assert [v.item() for v in levels] == pytest.approx([6 / 8, 8 / 8])


def test_relative_term_divides_by_the_teacher_energy_and_is_scale_free():
    student, teacher, masks = _two_levels()
    # teacher energy: level 1 3 x 2 x 1 = 6, level 2 1 x 2 x 4 = 8
    assert feature_loss(student, teacher, masks, scale="relative").item() == pytest.approx(6 / 6 + 8 / 8)
    assert feature_loss(student, teacher, masks, "relative", "all_levels").item() == pytest.approx(14 / 14)
    # teacher and student 10x larger: the absolute term grows 100x, the relative one not at all
    big = ([10 * s for s in student], [10 * t for t in teacher])
    assert feature_loss(*big, masks).item() == pytest.approx(100 * 5.0, rel=1e-6)
    assert feature_loss(*big, masks, "relative", "all_levels").item() == pytest.approx(1.0)
    # half the teacher everywhere: a quarter of its energy is left
    half = [0.5 * t for t in teacher]
    assert feature_loss(half, teacher, masks, "relative", "all_levels").item() == pytest.approx(0.25)
    # nothing selected: 0, not 0 / 0
    empty = [torch.zeros_like(m) for m in masks]
    assert feature_loss(student, teacher, empty, "relative", "all_levels").item() == 0.0


def test_probability_over_positive_anchors():
    teacher = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.95, 0.05]]])
    student = torch.tensor([[[0.3, 0.7], [0.5, 0.5], [0.0, 1.0]]])
    # uncertain: 4 elements; squared differences 0.04 + 0.04
    assert probability_loss(student, teacher).item() == pytest.approx(0.08 / 4)
    assert probability_loss(student, teacher, divisor=torch.tensor(2)).item() == pytest.approx(0.08 / 2)
    # the same disagreement with one more uncertain anchor that agrees: the paper's term
    # shrinks, the term over positives does not
    teacher2 = torch.cat([teacher, torch.tensor([[[0.4, 0.6]]])], dim=1)
    student2 = torch.cat([student, torch.tensor([[[0.4, 0.6]]])], dim=1)
    assert probability_loss(student2, teacher2).item() == pytest.approx(0.08 / 6)
    assert probability_loss(student2, teacher2, divisor=torch.tensor(2)).item() == pytest.approx(0.08 / 2)


def test_ridge_solve_by_hand():
    s = torch.tensor([[1.0], [2.0]])
    t = torch.tensor([[2.0], [4.0]])
    # sum s^2 = 5, sum s t = 10; lambda = ridge x mean diagonal = 1 x 5: w = 10 / (5 + 5)
    assert ridge_solve(s.T @ s, s.T @ t, 1.0).item() == pytest.approx(1.0)
    assert ridge_solve(s.T @ s, s.T @ t, 1e-9).item() == pytest.approx(2.0)
    assert torch.equal(ridge_solve(torch.zeros(2, 2), torch.zeros(2, 3), 1e-3), torch.zeros(2, 3))


def _match(positive_anchors, rank):
    positives = torch.zeros(1, 10, dtype=torch.bool)
    positives[0, positive_anchors] = True
    return MatchResult(positives, torch.tensor([rank]), positives.long().sum(1, keepdim=True))


def test_lstsq_adapters_recover_a_linear_teacher_at_the_selected_locations():
    torch.manual_seed(0)
    # 4 positives on level 1 (every location), none on level 2; the teacher is a fixed linear
    # map of the student on level 1 and noise on level 2
    match = _match([0, 2, 4, 6], list(range(10)))
    student_maps = [torch.randn(1, 3, 2, 2), torch.randn(1, 3, 1, 1)]
    maps = {task: torch.randn(5, 3) for task in ("cls", "reg")}
    teacher = {f"{task}_features": [torch.einsum("oc,bchw->bohw", maps[task], student_maps[0]),
                                    torch.randn(1, 5, 1, 1)] for task in maps}
    distiller = TaskDecoupledDistiller(3, 5, terms=("feature",))
    stats = distiller.adapter_statistics(dict(features=student_maps), teacher, match, SHAPES)
    distiller.init_adapters("lstsq", stats, ridge=1e-9)
    for task, adapters in (("cls", distiller.cls_adapters), ("reg", distiller.reg_adapters)):
        assert torch.allclose(adapters[0].weight.view(5, 3), maps[task], atol=1e-4)
    # level 2: its location holds a mined negative (classification) but no positive
    assert torch.equal(distiller.reg_adapters[1].weight, torch.zeros(5, 3, 1, 1))
    assert distiller.cls_adapters[1].weight.abs().sum() > 0
    loss = distiller(dict(features=student_maps, conf=torch.zeros(1, 10, 2)), teacher, match, SHAPES)["feature"]
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_zero_and_random_adapter_init():
    distiller = TaskDecoupledDistiller(3, 5, terms=("feature", "fitnet"))
    before = [p.clone() for p in distiller.parameters()]
    distiller.init_adapters("random")
    assert all(torch.equal(a, b) for a, b in zip(before, distiller.parameters()))
    distiller.init_adapters("zero")
    assert len(before) == 9 and all(not p.any() for p in distiller.parameters())
    with pytest.raises(ValueError, match="adapter_init"):
        distiller.init_adapters("ones")


def test_warmup_ramps_linearly():
    assert [warmup_factor(i, 4) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_dominance_warning_names_the_largest_weighted_term():
    weights = dict(loc=2.0, conf=1.0, landm=1.0, feature=1.0, probability=50.0)
    losses = dict(loc=1.0, conf=2.0, landm=6.0, feature=70.0, probability=0.5)  # detection 2 + 2 + 6 = 10
    assert dominance_warning(losses, weights) is None  # 70 + 25 = 95: 9.5x
    assert dominance_warning(dict(losses, feature=80.0), weights) is not None  # 10.5x
    assert dominance_warning(dict(losses, feature=80.0), weights, ratio=11) is None
    message = dominance_warning(dict(losses, feature=205.0), weights)  # 230: 23x
    assert message.startswith("warning: ") and "23x" in message and "loss_weights.feature" in message
    assert "loss_weights.probability" in dominance_warning(dict(losses, probability=5.0), weights)
    assert dominance_warning(dict(loc=1.0, conf=1.0, landm=1.0), weights) is None


def _cfg(*overrides):
    return config.apply_overrides(config.training_config("distillation", "mobile0.25"), list(overrides))


def test_named_distillers_and_their_order_in_overrides():
    default = _cfg()
    # the default distiller: relative features pooled over levels, fitted adapters, and the
    # probability term over the positive anchors, at about half of tdkd's weights, beside CWD
    assert default["distiller"] == "cwd_tdkd"
    assert {k: default["loss_weights"][k] for k in ("feature", "probability", "cwd")} == dict(
        feature=5.0, probability=2.4, cwd=58.0)
    tdkd = _cfg("distiller=tdkd")
    assert (tdkd["loss_weights"]["feature"], tdkd["loss_weights"]["probability"], tdkd["loss_weights"]["cwd"]) == (
        10.0, 4.7, 0.0)
    assert (default["adapter_init"], default["feature_scale"], default["feature_normalize"],
            default["distill_warmup"], default["train_adapters"]) == ("lstsq", "relative", "all_levels", 30, True)
    assert (default["probability_anchors"], default["probability_normalize"]) == ("positives", "positives")
    # another distiller after the default takes none of the default's own settings along
    features = _cfg("distiller=features")
    assert features["probability_anchors"] == "all" and features["loss_weights"]["probability"] == 0.0
    assert _cfg("distiller=relative")["probability_anchors"] == "all"
    assert _cfg("distiller=features", "probability_anchors=near_faces")["probability_anchors"] == "near_faces"
    paper = _cfg("loss_weights.feature=0.1", "distiller=paper")  # the name first, whatever its place
    assert paper["distiller"] == "paper" and paper["loss_weights"]["feature"] == 0.1
    assert paper["loss_weights"]["probability"] == 50.0 and paper["loss_weights"]["loc"] == 2.0
    assert (paper["adapter_init"], paper["feature_scale"], paper["feature_normalize"],
            paper["probability_normalize"], paper["distill_warmup"]) == ("random", "absolute", "per_level",
                                                                         "uncertain", 0)
    assert config.DISTILLERS["paper"]["loss_weights"] == dict(feature=1.0, probability=50.0)
    # a term weight only another distiller sets goes back to the mode's default with this one
    cwd_tdkd = _cfg("distiller=cwd_tdkd")
    assert {k: cwd_tdkd["loss_weights"][k] for k in ("feature", "probability", "cwd")} == dict(
        feature=5.0, probability=2.4, cwd=58.0)
    assert cwd_tdkd["probability_anchors"] == "positives" and cwd_tdkd["feature_scale"] == "relative"
    cfg = _cfg("distiller=cwd_tdkd")
    config.select_distiller(cfg, "paper")
    assert cfg["loss_weights"]["cwd"] == 0.0 and cfg["loss_weights"]["feature"] == 1.0
    assert _cfg("distiller=cwd_tdkd", "loss_weights.cwd=3")["loss_weights"]["cwd"] == 3.0
    with pytest.raises(KeyError, match="unknown distiller"):
        _cfg("distiller=best")
    with pytest.raises(KeyError, match="no such setting"):
        config.apply_overrides(config.training_config("student", "mobile0.25"), ["distiller=paper"])
    bad = _cfg("feature_scale=percent")
    with pytest.raises(TDKDError, match="feature_scale=percent"):
        build_distiller(bad, 8, 16)


def test_paper_distiller_keeps_the_paper_loss():
    """The pinned case of tests/test_pins_distiller.py, levels normalised separately, built
    from ``distiller=paper``: 3 x 1 / (2 x 3) on level 1 plus 3 x 1 / (2 x 1) on level 2."""
    distiller = build_distiller(_cfg("distiller=paper"), 3, 3)
    with torch.no_grad():
        for conv in list(distiller.cls_adapters) + list(distiller.reg_adapters):
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    # student 1 everywhere; the teacher's classification feature 2 at level 1 (1, 0) and level 2 (0, 0)
    features = [torch.ones(1, 3, rows, cols) for rows, cols, _ in PIN_SHAPES]
    cls = [f.clone() for f in features]
    cls[0][0, :, 1, 0] += 1.0
    cls[1][0, :, 0, 0] += 1.0
    student = dict(features=features, conf=torch.zeros(1, 12, 2))
    teacher = dict(cls_features=cls, reg_features=features, conf=torch.zeros(1, 12, 2))
    assert distiller(student, teacher, pin_match(), PIN_SHAPES)["feature"].item() == pytest.approx(2.0, abs=1e-5)
    # the default distiller on the same input: relative, pooled over levels. Errors 3 x 1 + 3 x 1;
    # teacher energy at the classification locations (tests/test_pins_distiller.py): level 1
    # (0, 0) 3 x 1, (1, 1) 3 x 1, (1, 0) 3 x 4; level 2 (0, 0) 3 x 4: 30 (the regression term is 0)
    relative = build_distiller(_cfg("distiller=relative", "feature_normalize=all_levels"), 3, 3)
    relative.load_state_dict(distiller.state_dict())
    value = relative(student, teacher, pin_match(), PIN_SHAPES)["feature"].item()
    assert value == pytest.approx(6 / 30, rel=1e-6)


def _trainer(tiny_dataset, folder, *overrides, resume=None):
    args = ["--training_dataset", str(tiny_dataset), "--save_folder", str(folder), *SMALL, "--mode", "distillation",
            "--teacher_network", "mobile0.75", "--teacher_weights", _teacher(folder / "teacher.pth")]
    args += ["--resume", resume] if resume else []
    return train.Trainer(train.parse_args(args + ["--set", *overrides]), train.init_distributed("cpu"))


def test_trainer_fits_the_adapters_before_the_first_step_and_not_on_resume(tiny_dataset, tmp_path, capsys):
    trainer = _trainer(tiny_dataset, tmp_path, "adapter_init=lstsq", "adapter_init_batches=2", "loss_weights.probability=0")
    assert "adapters lstsq (2 batches, ridge 0.001)" in trainer.describe()
    random = {k: v.clone() for k, v in trainer.distiller.state_dict().items()}
    trainer._init_adapters()
    fitted = {k: v.clone() for k, v in trainer.distiller.state_dict().items()}
    assert "adapters: lstsq init in" in capsys.readouterr().out
    assert all(not torch.equal(random[k], fitted[k]) for k in random)
    # the fit solves the ridge normal equations (G + lambda mean(diag G) I) W = C of its statistics
    # S^T [S | T] = [G | C], and lowers the least-squares error ||S W - T||^2 = tr(W^T G W) - 2 tr(W^T C)
    # + ||T||^2 below the random adapters'
    gram, cross = trainer._adapter_statistics()[0][1].split([64, 64], dim=1)
    weight = fitted["cls_adapters.1.weight"].view(64, 64).t().double()
    lhs = (gram + 1e-3 * gram.diagonal().mean() * torch.eye(64, dtype=torch.float64)) @ weight
    assert (lhs - cross).abs().max() <= 1e-4 * cross.abs().max()

    def error(w):
        return (w.T @ gram @ w).trace() - 2 * (w.T @ cross).trace()

    assert error(weight) < error(random["cls_adapters.1.weight"].view(64, 64).t().double())
    trainer.model.train()
    trainer.fit()
    resumed = _trainer(tiny_dataset, tmp_path, "adapter_init=lstsq", resume=str(tmp_path / "checkpoint_last.pth"))
    kept = {k: v.clone() for k, v in resumed.distiller.state_dict().items()}
    resumed._init_adapters()
    assert all(torch.equal(kept[k], v) for k, v in resumed.distiller.state_dict().items())


def test_the_paper_distiller_warns_when_its_terms_dwarf_the_detection(tiny_dataset, tmp_path, capsys):
    trainer = _trainer(tiny_dataset, tmp_path, "distiller=paper", "loss_weights.feature=1000")
    trainer.fit()
    out = capsys.readouterr()
    warnings = [line for line in (out.out + out.err).splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "loss_weights.feature" in warnings[0]


WORKER = """
import sys, torch
sys.path.insert(0, {repo!r})
import train
args = train.parse_args(sys.argv[2:])
ctx = train.init_distributed("cpu")
trainer = train.Trainer(args, ctx)
trainer._init_adapters()
torch.save(trainer.distiller.state_dict(), f"{{sys.argv[1]}}/adapters{{ctx.rank}}.pth")
del trainer
train.finish_distributed(ctx)
"""


def test_torchrun_processes_start_with_the_same_fitted_adapters(tiny_dataset, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(repo=str(REPO)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
               str(tmp_path), "--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL,
               "--batch_size", "4", "--mode", "distillation", "--teacher_network", "mobile0.75",
               "--teacher_weights", _teacher(tmp_path / "teacher.pth"), "--set", "adapter_init=lstsq"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")  # a crashing rank prints its stack
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)  # only a guard against a hang: minutes on a busy machine
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"adapters{r}.pth", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
