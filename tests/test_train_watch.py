"""Training you can watch: the resolved recipe and saved paths printed, the progress bar under
--max_iter, the loss curves plot, and validation during training with the best weights kept."""
import json
import re

import cv2
import pytest
import torch

import train
from data.synthetic import generate_synthetic_widerface
from detector import load_detector
from tests.test_reliability import one_error_line
from utils import plot_log
from utils.checkpoint import load_training_checkpoint
from utils.logger import read_log
from widerface_evaluate import evaluation

SMALL = ["--img_dim", "64", "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--backbone_weights", "none"]


def argv(tiny_dataset, folder, *extra):
    return ["--training_dataset", str(tiny_dataset), "--save_folder", str(folder), *SMALL, *extra]



@pytest.fixture(scope="module")
def val_dataset(tmp_path_factory):
    """Three synthetic val images in the WIDER layout, with their ground truth."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_widerface(root, num_train=0, num_val=3, image_size=(128, 160), workers=1)
    return root / "val"


def test_the_resolved_recipe_and_the_saved_paths_are_printed(tiny_dataset, tmp_path, capsys):
    args = train.parse_args(argv(tiny_dataset, tmp_path / "out", "--max_epoch", "1", "--lr", "0.005"))
    train.run(args)
    out = capsys.readouterr().out
    _, cfg = train.build_run_config(args)
    assert cfg["lr"] == 0.005
    assert out.startswith("train.py --mode student: mobile0.25 (relu), 1 process(es) on cpu\n")
    for key, value in cfg.items():
        assert f"\n  {key} = {json.dumps(value)}\n" in out, key
    assert f"\n  data: {tiny_dataset}, 4 images, 2 iterations per epoch\n" in out
    folder = (tmp_path / "out").resolve()
    assert f"\nsaved in {folder}:\n  mobile0.25_Final.pth (+ .json)\n" in out
    assert f"  curves: python -m utils.plot_log {tmp_path / 'out' / 'train_log.csv'}\n" in out
    assert (folder / "mobile0.25_Final.pth").exists() and (folder / "mobile0.25_Final.json").exists()


def test_the_progress_bar_counts_to_the_iteration_limit(tiny_dataset, tmp_path, capsys):
    train.run(train.parse_args(argv(tiny_dataset, tmp_path / "out", "--max_iter", "3")))  # 2 iterations per epoch
    bars = capsys.readouterr().err.replace("\r", "\n")
    finals = re.findall(r"(student epoch \d+/\d+ \(--max_iter 3\)): +100%\|[^|]*\| (\d+/\d+)", bars)
    assert sorted(set(finals)) == [("student epoch 1/2 (--max_iter 3)", "2/2"),
                                   ("student epoch 2/2 (--max_iter 3)", "1/1")]
    assert "/80" not in bars
    assert [r["iteration"] for r in read_log(tmp_path / "out" / "train_log.csv")] == [1, 2, 3]


def test_plot_log_saves_every_loss_term_and_the_lr(tiny_dataset, tmp_path, capsys):
    folder = tmp_path / "out"
    train.run(train.parse_args(argv(tiny_dataset, folder, "--max_epoch", "1")))
    capsys.readouterr()
    plot_log.main([str(folder / "train_log.csv")])
    assert capsys.readouterr().out == f"{folder / 'train_log.png'}\n"
    image = cv2.imread(str(folder / "train_log.png"))
    # lr, loc, conf, landm, total: 5 panels, 3 per row of 4.5 x 3.2 inches at 100 dpi.
    assert image.shape == (640, 1350, 3) and image.std() > 10
    assert set(read_log(folder / "train_log.csv")[0]) - set(plot_log.NOT_PLOTTED) == {"lr", "loc", "conf", "landm",
                                                                                      "total"}
    with pytest.raises(SystemExit):
        plot_log.main([str(tmp_path / "missing.csv")])
    assert one_error_line(capsys.readouterr().err) == f"error: {tmp_path / 'missing.csv'}: log not found"


def test_validation_logs_aps_and_writes_the_public_files(tiny_dataset, tmp_path, val_dataset, capsys):
    folder = tmp_path / "out"
    train.run(train.parse_args(argv(tiny_dataset, folder, "--max_epoch", "1", "--val_dataset", str(val_dataset))))
    rows = read_log(folder / "val_log.csv")
    assert len(rows) == 1 and rows[0]["epoch"] == 0 and rows[0]["iteration"] == 2
    assert all(0 <= rows[0][s] <= 1 for s in ("easy", "medium", "hard"))
    expected = evaluation.evaluate(str(folder / "val_predictions"), str(val_dataset / "ground_truth")).aps
    assert {s: rows[0][s] for s in expected} == pytest.approx(expected, abs=1e-12)
    assert len(list((folder / "val_predictions").rglob("*.txt"))) == 3
    meta = json.loads((folder / "mobile0.25_best.json").read_text())
    assert meta["epoch"] == 1 and meta["hard_ap"] == pytest.approx(rows[0]["hard"])
    load_detector(folder / "mobile0.25_best.pth")
    out = capsys.readouterr().out
    assert "validation after epoch 1: easy " in out and "  val_log.csv\n" in out


def test_the_best_hard_ap_is_kept_across_epochs_and_a_resume(tiny_dataset, tmp_path, val_dataset, monkeypatch):
    hard = iter([0.2, 0.5, 0.3, 0.4])
    real = evaluation.evaluate_predictions

    def scripted(predictions, ground_truth):
        result = real(predictions, ground_truth)
        result.aps["hard"] = next(hard)
        return result

    monkeypatch.setattr(evaluation, "evaluate_predictions", scripted)
    folder = tmp_path / "out"
    common = ["--val_dataset", str(val_dataset), "--val_interval", "1", "--save_interval", "1", "--batch_size", "4"]
    train.run(train.parse_args(argv(tiny_dataset, folder, "--max_epoch", "3", *common)))
    assert [r["hard"] for r in read_log(folder / "val_log.csv")] == [0.2, 0.5, 0.3]
    assert json.loads((folder / "mobile0.25_best.json").read_text())["epoch"] == 2
    best = torch.load(folder / "mobile0.25_best.pth", weights_only=True)
    epoch_2 = load_training_checkpoint(folder / "mobile0.25_epoch_2.pth")["model"]
    assert all(torch.equal(best[k], epoch_2[k]) for k in epoch_2)

    # Resumed from epoch 3: 0.4 is no better than epoch 2's 0.5, read back from val_log.csv.
    train.run(train.parse_args(argv(tiny_dataset, folder, "--max_epoch", "4", *common,
                                    "--resume", str(folder / "checkpoint_last.pth"))))
    assert [r["hard"] for r in read_log(folder / "val_log.csv")] == [0.2, 0.5, 0.3, 0.4]
    assert json.loads((folder / "mobile0.25_best.json").read_text())["epoch"] == 2


def test_a_val_dataset_without_the_wider_layout_fails_before_training(tiny_dataset, tmp_path, val_dataset, capsys):
    folder = tmp_path / "out"
    with pytest.raises(SystemExit):
        train.main(argv(tiny_dataset, folder, "--val_dataset", str(tmp_path)))
    assert one_error_line(capsys.readouterr().err) == (
        f"error: {tmp_path}: --val_dataset needs images/, wider_val.txt and ground_truth/ (the WIDER FACE val "
        "layout); images/ not found")
    assert not (folder / "checkpoint_last.pth").exists()
