"""bench/probe.py (transfer probe) and bench/grad_budget.py (gradient budget): values by hand
and on real models."""
import math

import numpy as np
import pytest
import torch

from bench import grad_budget, probe
from config import network_config
from layers.distiller import ridge_solve
from models import build_model
from tests.conftest import write_tiny_widerface
from tests.test_train import _teacher


def _sums(s, t):
    s, t = torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    return s.T @ s, s.T @ t, t.pow(2).sum()


def _unexplained(fit, test, ridge):
    """The share of ``test``'s teacher energy the ridge map fitted on ``fit`` leaves."""
    return probe.residual(ridge_solve(fit[0], fit[1], ridge).double(), test) / test[2].item()


def test_unexplained_share_by_hand():
    fit = _sums([[1.0], [2.0]], [[2.0], [4.0]])  # t = 2 s: the map is 2
    # held out: s = 1, t = 3: residual (3 - 2)^2 = 1 of energy 9
    assert _unexplained(fit, _sums([[1.0]], [[3.0]]), 1e-12) == pytest.approx(1 / 9)
    assert _unexplained(fit, _sums([[1.0], [3.0]], [[2.0], [6.0]]), 1e-12) == pytest.approx(0.0, abs=1e-9)
    # a student that carries nothing: the map is zero, everything is unexplained
    assert _unexplained(_sums([[0.0]], [[1.0]]), _sums([[0.0]], [[5.0]]), 1e-3) == pytest.approx(1.0)


def test_statistics_sum_over_images():
    stats = probe.Statistics()
    stats.add("k", torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]]))
    stats.add("k", torch.tensor([[1.0]]), torch.tensor([[3.0]]))
    gram, cross, energy, count, s_sum, t_sum, t_gram = stats.sums["k"]
    assert (gram.item(), cross.item(), energy.item(), count) == (6.0, 13.0, 29.0, 3)
    assert (s_sum.item(), t_sum.item(), t_gram.item()) == (4.0, 9.0, 29.0)


def _stats(s, t):
    stats = probe.Statistics()
    stats.add("k", torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64))
    return stats.sums["k"]


def test_linear_cka_by_hand():
    s = [[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [3.0, -2.0]]
    rotated_scaled = [[3 * (a * 0.6 - b * 0.8), 3 * (a * 0.8 + b * 0.6)] for a, b in s]
    assert probe.linear_cka(_stats(s, rotated_scaled)) == pytest.approx(1.0)
    # a shift does not count (centred); one channel against a column of itself:
    # S = [1, 2, 3] centred [-1, 0, 1]; T = [2, 0, 1] centred [1, -1, 0]:
    # (S^T T)^2 / (|S|^2 |T|^2) = (-1)^2 / (2 * 2) = 0.25
    assert probe.linear_cka(_stats([[1.0], [2.0], [3.0]], [[12.0], [10.0], [11.0]])) == pytest.approx(0.25)
    assert math.isnan(probe.linear_cka(_stats([[1.0]], [[2.0]])))  # one location: nothing to centre


def test_shares_pool_residuals_and_energies_over_images_and_keys():
    keys = [("cls", 0, "faces"), ("reg", 0, "faces"), ("cls", 2, "faces"), ("ssh", 0, "faces")]
    result = probe.ProbeResult(
        residual={keys[0]: np.array([1.0, 3.0]), keys[1]: np.array([0.0, 2.0]), keys[2]: np.array([4.0, 0.0]),
                  keys[3]: np.array([9.0, 9.0])},
        energy={keys[0]: np.array([4.0, 6.0]), keys[1]: np.array([2.0, 8.0]), keys[2]: np.array([5.0, 0.0]),
                keys[3]: np.array([9.0, 9.0])},
        cka={}, images_with_faces=[2, 0, 1])
    shares = result.shares()
    assert shares[keys[0]] == pytest.approx(4 / 10) and shares[keys[2]] == pytest.approx(4 / 5)
    assert shares[("tasks", 0, "faces")] == pytest.approx((4 + 2) / (10 + 10))
    assert shares[("tasks", None, "faces")] == pytest.approx((4 + 2 + 4) / (10 + 10 + 5))  # ssh left out
    assert math.isnan(shares[("tasks", 1, "faces")])
    # image 0 drawn twice, image 1 never
    assert result.shares(np.array([2, 0]))[("tasks", None, "faces")] == pytest.approx(2 * 5 / (2 * 11))
    same = probe.paired_difference(result, result, ("tasks", None, "faces"), 50)
    assert same == (0.0, 0.0, 0.0)
    better = probe.ProbeResult({k: v / 2 for k, v in result.residual.items()}, result.energy, {}, [2, 0, 1])
    observed, low, high = probe.paired_difference(result, better, ("tasks", None, "faces"), 50)
    assert observed == pytest.approx(-100 * 5 / 25) and low <= observed <= high < 0


@pytest.fixture
def tiny_split(tmp_path):
    for split in ("train", "val"):
        write_tiny_widerface(tmp_path / split, num_images=3, seed=len(split))
    return tmp_path


def test_a_teacher_built_on_the_student_is_fully_explained_at_its_ssh_output(tiny_split, tmp_path):
    torch.manual_seed(0)
    student = build_model(network_config("mobile0.25")).eval()
    torch.save(student.state_dict(), tmp_path / "student.pth")
    teacher = build_model(network_config("mobile0.25"), task_heads=True)
    teacher.load_state_dict(student.state_dict(), strict=False)  # same SSH; task convs random
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    result = probe.probe(tmp_path / "student.pth", tmp_path / "teacher.pth", "mobile0.25", tiny_split, 3, 3, 1e-6)
    shares = result.shares()
    # the teacher's SSH output is the student's: the identity map explains it where there are
    # more locations than channels (level 3 of 96 px images has 27 for 64 channels)
    assert all(shares[("ssh", level, "all")] == pytest.approx(0.0, abs=1e-3) for level in range(2))
    # its task features are a random conv + ReLU of it: not linear, part stays unexplained
    assert 0.01 < shares[("tasks", None, "all")] < 1.0
    assert result.cka[("ssh", 0, "all")] == pytest.approx(1.0)  # the same features
    assert 0 < result.cka[("cls", 0, "all")] < 1
    assert len(result.residual[("cls", 0, "all")]) == 3  # one residual per test image
    table = probe.markdown_table(result)
    assert "| ssh | all | 0.0 | 0.0 |" in table and "task features (cls + reg, levels pooled)" in table
    assert "test images with face locations at levels 1 / 2 / 3: " in table


def test_probe_share_is_cached_per_weights_file(tiny_split, tmp_path, monkeypatch):
    calls = []

    def fake_probe(*args, **kwargs):
        calls.append(args)
        return probe.ProbeResult({("cls", 0, "faces"): np.array([1.0])}, {("cls", 0, "faces"): np.array([2.0])}, {}, [1, 0, 0])
    monkeypatch.setattr(probe, "probe", fake_probe)
    student, teacher = tmp_path / "s.pth", tmp_path / "t.pth"
    student.write_bytes(b"s")
    teacher.write_bytes(b"t")
    assert probe.cached_task_share(student, teacher, "mobile0.25", tiny_split, tmp_path / "run") == 0.5
    assert probe.cached_task_share(student, teacher, "mobile0.25", tiny_split, tmp_path / "run") == 0.5
    assert len(calls) == 1
    student.write_bytes(b"another student")
    probe.cached_task_share(student, teacher, "mobile0.25", tiny_split, tmp_path / "run")
    assert len(calls) == 2


def test_gradient_budget_table_by_hand():
    detection = torch.tensor([3.0, 4.0])
    budget = {"detection": (8.0, detection), "feature": (1.0, torch.tensor([-6.0, -8.0])),
              "probability": (0.5, torch.tensor([4.0, -3.0]))}
    table = grad_budget.markdown_table(budget)
    assert "| detection | 8 | 5 | 1.00 | +1.000 |" in table
    assert "| feature | 1 | 10 | 2.00 | -1.000 |" in table
    assert "| probability | 0.5 | 5 | 1.00 | +0.000 |" in table


def test_gradient_budget_parts_add_up_to_their_terms(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    torch.save(build_model(network_config("mobile0.25")).state_dict(), tmp_path / "student.pth")
    args = grad_budget.parse_args(["--data", str(tiny_dataset.parent.parent), "--batches", "1",
                                   "--student_weights", str(tmp_path / "student.pth"),
                                   "--teacher_weights", _teacher(tmp_path / "teacher.pth", "mobile0.25-wide"),
                                   "--set", "adapter_init=lstsq", "adapter_init_batches=1",
                                   "loss_weights.probability=10"])
    trainer = grad_budget.build_trainer(args, str(tmp_path / "run"))
    trainer._init_adapters()
    budget = grad_budget.gradient_budget(trainer, 1)
    parts = [grad for name, (_, grad) in budget.items() if name.startswith("feature ")]
    assert len(parts) == 6
    feature = budget["feature"][1]
    assert (sum(parts) - feature).norm() < 1e-3 * feature.norm()  # float32 sums through the network
    assert sum(part.norm() > 0 for part in parts) >= 2
    total = budget["feature"][1] + budget["probability"][1] + budget["cwd"][1]  # the default's three terms
    assert (total - budget["all distillation"][1]).norm() < 1e-3 * total.norm()
    assert budget["detection"][1].norm() > 0 and budget["feature"][1].norm() > 0


@pytest.mark.parametrize("tool", [probe, grad_budget])
def test_a_missing_synthetic_set_is_named_with_the_command_that_makes_it(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--data", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'data' / 'train' / 'label.txt'}: not found: --data names a "
                                       f"synthetic set; make it with python -m data.synthetic --out {tmp_path / 'data'} "
                                       "(or make quickstart)\n")
