"""The distiller's ablation settings: coupled / FitNet / Hinton terms, task subsets, frozen adapters."""
import copy
import math

import pytest
import torch

import config
import train
from layers import MatchResult, build_distiller
from layers.distiller import TaskDecoupledDistiller, hinton_loss
from tests.test_train import SMALL, _teacher
from utils.errors import TDKDError

SHAPES = [(2, 2, 2), (1, 1, 2)]  # 8 + 2 anchors
# one positive at anchor 0; the 3 hardest negatives at anchors 4, 6, 8: classification
# locations are level 1 (0, 0), (1, 0), (1, 1) and level 2's only location
RANK = [9, 3, 5, 6, 0, 7, 1, 8, 2, 4]


def _match():
    positives = torch.zeros(1, 10, dtype=torch.bool)
    positives[0, 0] = True
    return MatchResult(positives, torch.tensor([RANK]), positives.long().sum(1, keepdim=True))


def _identity(distiller, channels=8):
    with torch.no_grad():
        for conv in distiller.parameters():
            conv.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return distiller


def _outputs():
    """Student SSH maps equal to the teacher's except +1 at level 1 (0, 1), which no location
    set selects, and at (1, 1), which the classification set selects."""
    features = [torch.randn(1, 8, rows, cols) for rows, cols, _ in SHAPES]
    shifted = [f.clone() for f in features]
    shifted[0][0, :, 0, 1] += 1
    shifted[0][0, :, 1, 1] += 1
    conf = torch.zeros(1, 10, 2)
    student = dict(features=shifted, conf=conf)
    teacher = dict(features=features, cls_features=features, reg_features=[f + 1 for f in shifted], conf=conf)
    return student, teacher


def _cfg(**weights):
    """The features-only distiller (no probability term) with ``weights`` set."""
    cfg = config.apply_overrides(config.training_config("distillation", "mobile0.25"), ["distiller=features"])
    cfg["loss_weights"].update(weights)
    return cfg


def test_hinton_loss_by_hand():
    student = torch.zeros(1, 2, 2)
    teacher = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]]])  # softmax (0.75, 0.25); second anchor equal
    # T = 1: 0.75 ln(0.75 / 0.5) + 0.25 ln(0.25 / 0.5) = 0.130812, averaged over 2 anchors
    assert hinton_loss(student, teacher, 1.0).item() == pytest.approx(0.130812 / 2, abs=1e-5)
    # T = 2: softmax(ln3 / 2, 0) = (0.633975, 0.366025); KL 0.036341, times T^2 = 4
    assert hinton_loss(student, teacher, 2.0).item() == pytest.approx(0.145363 / 2, abs=1e-5)
    assert hinton_loss(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_coupled_uses_the_classification_locations_and_fitnet_every_location():
    student, teacher = _outputs()
    distiller = _identity(TaskDecoupledDistiller(8, 8, terms=("feature_coupled", "fitnet")))
    losses = distiller(student, teacher, _match(), SHAPES)
    assert set(losses) == {"feature_coupled", "fitnet"}
    # coupled: 1 of the 3 selected level-1 locations differs by 1 in 8 channels: 8 / (2 x 3)
    assert losses["feature_coupled"].item() == pytest.approx(8 / 6, abs=1e-5)
    # FitNet: 2 of the 4 level-1 locations differ: 16 / (2 x 4); level 2 equal
    assert losses["fitnet"].item() == pytest.approx(2.0, abs=1e-5)


def test_feature_tasks_select_the_adapters_and_their_term():
    student, teacher = _outputs()
    teacher["cls_features"] = student["features"]  # classification features equal, regression +1
    cls_only = _identity(TaskDecoupledDistiller(8, 8, terms=("feature",), feature_tasks=("cls",)))
    reg_only = _identity(TaskDecoupledDistiller(8, 8, terms=("feature",), feature_tasks=("reg",)))
    assert [n for n, _ in cls_only.named_parameters()] == [f"cls_adapters.{i}.weight" for i in range(3)]
    assert cls_only(student, teacher, _match(), SHAPES)["feature"].item() == 0.0
    # the positive's location on level 1 only, 8 channels, / (2 x 1)
    assert reg_only(student, teacher, _match(), SHAPES)["feature"].item() == pytest.approx(4.0, abs=1e-5)


def test_build_distiller_computes_only_the_weighted_terms():
    default = build_distiller(_cfg(), 8, 16)
    assert default.terms == ("feature",) and len(list(default.parameters())) == 6  # probability weight 0
    tdkd = build_distiller(_cfg(probability=3.0), 8, 16)
    assert tdkd.terms == ("feature", "probability") and len(list(tdkd.parameters())) == 6
    hinton = build_distiller(_cfg(feature=0.0, probability=0.0, hinton=1.0), 8, 16)
    assert hinton.terms == ("hinton",) and not list(hinton.parameters())
    coupled = build_distiller(_cfg(feature=0.0, feature_coupled=0.1, probability=1.0), 8, 16)
    assert coupled.terms == ("feature_coupled", "probability") and len(list(coupled.parameters())) == 3
    with pytest.raises(TDKDError, match="every distillation weight zero"):
        build_distiller(_cfg(feature=0.0, probability=0.0), 8, 16)
    bad = _cfg()
    bad["feature_tasks"] = ["cls", "box"]
    with pytest.raises(TDKDError, match="feature_tasks"):
        build_distiller(bad, 8, 16)


def test_overrides_turn_terms_on_from_the_command_line():
    cfg = config.apply_overrides(_cfg(), ["loss_weights.hinton=2", "feature_tasks=reg", "train_adapters=false",
                                          "hinton_temperature=3"])
    distiller = build_distiller(cfg, 8, 16)
    assert distiller.terms == ("feature", "hinton") and distiller.temperature == 3.0
    assert distiller.cls_adapters is None and not any(p.requires_grad for p in distiller.parameters())
    assert config.TRAINING["distillation"]["train_adapters"] is True  # the default is the paper's


def test_frozen_adapters_stay_at_their_random_initialisation(tiny_dataset, tmp_path):
    args = train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL,
                             "--mode", "distillation", "--teacher_network", "mobile0.75",
                             "--teacher_weights", _teacher(tmp_path / "teacher.pth"),
                             "--set", "train_adapters=false", "loss_weights.hinton=1", "loss_weights.fitnet=0.5",
                             "loss_weights.probability=1"])
    trainer = train.Trainer(args, train.init_distributed("cpu"))
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    adapters = list(trainer.distiller.parameters())
    # the default's feature (cls and reg) and CWD adapters and FitNet's: 3 levels each
    assert len(adapters) == 12 and not any(id(p) in optimised for p in adapters)
    before = copy.deepcopy(trainer.distiller.state_dict())
    student_before = trainer.model.ssh1.conv3X3[0].weight.detach().clone()
    losses = trainer._step(*next(iter(trainer.loader)))
    assert {"feature", "probability", "fitnet", "hinton"} <= set(losses) and losses["fitnet"] > 0
    assert all(torch.equal(v, trainer.distiller.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(student_before, trainer.model.ssh1.conv3X3[0].weight)
