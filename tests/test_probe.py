"""bench/probe.py (transfer probe) and bench/grad_budget.py (gradient budget): values by hand
and on real models."""
import pytest
import torch

from bench import grad_budget, probe
from config import network_config
from models import build_model
from tests.conftest import write_tiny_widerface
from tests.test_train import _teacher


def _sums(s, t):
    s, t = torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    return s.T @ s, s.T @ t, t.pow(2).sum()


def test_unexplained_share_by_hand():
    fit = _sums([[1.0], [2.0]], [[2.0], [4.0]])  # t = 2 s: the map is 2
    # held out: s = 1, t = 3: residual (3 - 2)^2 = 1 of energy 9
    assert probe.unexplained(fit, _sums([[1.0]], [[3.0]]), 1e-12) == pytest.approx(1 / 9)
    assert probe.unexplained(fit, _sums([[1.0], [3.0]], [[2.0], [6.0]]), 1e-12) == pytest.approx(0.0, abs=1e-9)
    # a student that carries nothing: the map is zero, everything is unexplained
    assert probe.unexplained(_sums([[0.0]], [[1.0]]), _sums([[0.0]], [[5.0]]), 1e-3) == pytest.approx(1.0)


def test_statistics_sum_over_images():
    stats = probe.Statistics()
    stats.add("k", torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]]))
    stats.add("k", torch.tensor([[1.0]]), torch.tensor([[3.0]]))
    gram, cross, energy = stats.sums["k"]
    assert (gram.item(), cross.item(), energy.item()) == (6.0, 13.0, 29.0)


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
    shares = probe.probe(tmp_path / "student.pth", tmp_path / "teacher.pth", "mobile0.25", tiny_split, 3, 3, 1e-6)
    # the teacher's SSH output is the student's: the identity map explains it where there are
    # more locations than channels (level 3 of 96 px images has 27 for 64 channels)
    assert all(shares[("ssh", level, "all")] == pytest.approx(0.0, abs=1e-3) for level in range(2))
    # its task features are a random conv + ReLU of it: not linear, part stays unexplained
    assert 0.01 < shares[("tasks", None, "all")] < 1.0
    table = probe.markdown_table(shares)
    assert "| ssh | all | 0.0 | 0.0 |" in table and "task features (cls + reg, levels pooled)" in table


def test_probe_share_is_cached_per_weights_file(tiny_split, tmp_path, monkeypatch):
    calls = []

    def fake_probe(*args, **kwargs):
        calls.append(args)
        return {("tasks", None, "faces"): 0.5}
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
    total = budget["feature"][1] + budget["probability"][1]
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
