"""bench/train_speed.py runs every case as train.py does (fitted adapters, warm-up, the first
step's teacher check, the finite-loss check), here for one tiny iteration each."""
import math

import torch

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


def test_random_student_features_are_alive(tmp_path):
    """With initial BatchNorm statistics a random student's SSH features are ~1e-5; adapters
    fitted to them are huge and the first distillation step at 320 x 16 diverged."""
    path = train_speed._random_weights(tmp_path, "mobile0.25", False)
    model = train_speed.build_model(train_speed.network_config("mobile0.25")).eval()
    model.load_state_dict(torch.load(path, weights_only=True))
    torch.manual_seed(1)
    with torch.no_grad():
        features = model(torch.randn(1, 3, 128, 128) * 50)["features"]
    assert all(feature.std() > 1e-2 for feature in features)
