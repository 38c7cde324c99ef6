"""bench/train_speed.py runs every case as train.py does (fitted adapters, warm-up, the first
step's teacher check, the finite-loss check), here for one tiny iteration each."""
import math

from bench import train_speed


def test_every_case_runs_one_tiny_iteration(capsys):
    cases = sorted(train_speed.CASES)
    train_speed.main(["--device", "cpu", "--cases", *cases, "--iters", "1", "--img_dim", "64", "--batch_size", "2"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| case")}
    assert sorted(rows) == cases
    for name, cells in rows.items():
        parts = dict(zip(train_speed.PARTS, cells))
        distills = "distill" in name
        assert (parts["teacher forward"].strip() != "-") == distills
        assert (parts["distillation"].strip() != "-") == distills
        step = float(cells[len(train_speed.PARTS)])
        assert math.isfinite(step) and step > 0
    assert out.count("adapters: lstsq init") == sum(name.startswith("distill") for name in cases)
