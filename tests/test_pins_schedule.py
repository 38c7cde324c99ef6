"""The training schedule: the learning rate steps per epoch at the milestones; the total loss
is 2 loc + conf + landm (docs/METHOD.md §4)."""
import pytest

import train
from utils.logger import read_log


def test_lr_steps_per_epoch_at_the_milestone_and_total_is_weighted(tiny_dataset, tmp_path):
    # 4 images, batch 2: two iterations per epoch.
    args = train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path),
                             "--mode", "student", "--img_dim", "32", "--batch_size", "2", "--num_workers", "0",
                             "--device", "cpu", "--max_epoch", "2", "--milestones", "1", "--lr", "1e-3",
                             "--gamma", "0.1"])
    train.run(args)
    rows = read_log(tmp_path / "train_log.csv")
    assert [(r["epoch"], r["iteration"]) for r in rows] == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4], rel=1e-9)
    for r in rows:
        assert r["total"] == pytest.approx(2 * r["loc"] + r["conf"] + r["landm"], rel=1e-5)
