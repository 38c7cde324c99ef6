"""A run's folder and checkpoints: another run's folder refused with the --resume command, flags a
resume cannot honour refused, --max_iter resumed where it stopped, Ctrl-C in one line, damaged
checkpoints and too-small settings refused before training, no epoch snapshot lost to a kill."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from tests.conftest import REPO, write_tiny_widerface
from tests.test_reliability import LOSS_COLUMNS, _rows_of, main_fails
from utils.checkpoint import load_training_checkpoint
from utils.logger import read_log

SMALL = ["--img_dim", "64", "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--seed", "0"]


def _argv(label, folder, *extra):
    return [str(a) for a in ("--training_dataset", label, "--save_folder", folder, *SMALL, *extra)]


def _weights_equal(a, b):
    """Whether two weights files, or two checkpoints' models, hold the same tensors."""
    a, b = (torch.load(p, weights_only=True) for p in (a, b))
    a, b = a.get("model", a), b.get("model", b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def sixteen(tmp_path):
    """16 images, batch 2: 8 iterations per epoch."""
    return write_tiny_widerface(tmp_path / "train16", num_images=16)


# ---------------------------------------------------------------- a folder holding another run


def test_a_folder_holding_another_run_is_refused_with_the_exact_resume_command(tiny_dataset, tmp_path, capsys):
    folder = tmp_path / "run"
    argv = _argv(tiny_dataset, folder, "--max_epoch", "2", "--max_iter", "2")  # 2 iterations per epoch
    train.main(argv)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = main_fails(train.main, argv, capsys)  # the same command again, as after a crash
    checkpoint = folder / "checkpoint_last.pth"
    command = f"python train.py {shlex.join(argv)} --resume {checkpoint}"
    assert line == (f"error: {folder}: holds another run (checkpoint_last.pth, mobile0.25_Final.pth), which this one would overwrite; continue it with: {command}; or, "
                    "to start a new run instead, give another --save_folder")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing touched
    resumed = shlex.split(command)[2:]
    resumed[resumed.index("--max_iter") + 1] = "4"
    train.main(resumed)  # the command given works (with a larger --max_iter, or none)
    assert [r["iteration"] for r in read_log(folder / "train_log.csv")] == [1, 2, 3, 4]


def test_a_folder_with_only_the_log_of_a_run_that_saved_nothing_is_reused(tiny_dataset, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train_log.csv").write_text("epoch,iteration\n0,1\n")
    train.main(_argv(tiny_dataset, folder, "--max_epoch", "1"))
    assert [r["iteration"] for r in read_log(folder / "train_log.csv")] == [1, 2]


# ---------------------------------------------------------------- settings of a resumed run


def test_resume_refuses_flags_it_cannot_honour_and_keeps_the_checkpoints_settings(tiny_dataset, tmp_path, capsys):
    folder = tmp_path / "run"
    train.main(_argv(tiny_dataset, folder, "--max_epoch", "1", "--lr", "0.05"))
    checkpoint = folder / "checkpoint_last.pth"
    line = main_fails(train.main, _argv(tiny_dataset, folder, "--max_epoch", "6", "--resume", checkpoint,
                                        "--lr", "0.5", "--milestones", "4"), capsys)
    assert line == (f"error: {checkpoint}: a resumed run keeps its optimiser, lr schedule and batches, so "
                    "--lr 0.5 (checkpoint: 0.05), --milestones 4 (checkpoint: 55 68) cannot change; leave them "
                    f"out, or start a new run from its weights: --resume_net {checkpoint} and another --save_folder")
    capsys.readouterr()
    train.main(_argv(tiny_dataset, folder, "--max_epoch", "2", "--resume", checkpoint))  # --max_epoch can change
    assert "\n  lr = 0.05\n" in capsys.readouterr().out  # printed as trained: the checkpoint's, not the recipe's
    assert [(r["epoch"], r["lr"]) for r in read_log(folder / "train_log.csv")] == [(0, 0.05)] * 2 + [(1, 0.05)] * 2


def test_resume_refuses_limits_already_reached(tiny_dataset, tmp_path, capsys):
    folder = tmp_path / "run"
    train.main(_argv(tiny_dataset, folder, "--max_epoch", "2"))
    capsys.readouterr()
    checkpoint = folder / "checkpoint_last.pth"
    with pytest.raises(SystemExit):
        train.main(_argv(tiny_dataset, folder, "--max_epoch", "1", "--max_iter", "4", "--resume", checkpoint))
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: 2 problems (nothing was written):",
        f"  - --max_epoch 1: the checkpoint {checkpoint} has finished 2 epochs already",
        f"  - --max_iter 4: the checkpoint {checkpoint} is at iteration 4 already; give a larger --max_iter, "
        "or leave it out to train to --max_epoch",
    ]


# ---------------------------------------------------------------- --max_iter, then --resume


def test_a_run_stopped_by_max_iter_mid_epoch_resumes_where_it_stopped(sixteen, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    train.main(_argv(sixteen, whole, "--max_epoch", "2", "--save_interval", "1"))
    train.main(_argv(sixteen, stopped, "--max_epoch", "2", "--save_interval", "1", "--max_iter", "11"))  # 3 iterations into epoch 2
    state = load_training_checkpoint(stopped / "checkpoint_last.pth")
    assert (state["epoch"], state["epoch_batches"], state["iteration"]) == (1, 3, 11)
    assert sorted(p.name for p in stopped.glob("*_epoch_*.pth")) == ["mobile0.25_epoch_1.pth"]  # no part-epoch snapshot

    train.main(_argv(sixteen, stopped, "--max_epoch", "2", "--save_interval", "1",
                     "--resume", stopped / "checkpoint_last.pth"))
    expected, got = read_log(whole / "train_log.csv"), read_log(stopped / "train_log.csv")
    assert [r["iteration"] for r in got] == list(range(1, 17))
    assert [[r[c] for c in LOSS_COLUMNS] for r in got] == [[r[c] for c in LOSS_COLUMNS] for r in expected]
    assert _weights_equal(whole / "mobile0.25_Final.pth", stopped / "mobile0.25_Final.pth")
    assert _weights_equal(whole / "mobile0.25_epoch_2.pth", stopped / "mobile0.25_epoch_2.pth")
    final = load_training_checkpoint(stopped / "checkpoint_last.pth")
    assert (final["epoch"], final["epoch_batches"], final["iteration"]) == (2, 0, 16)
    assert torch.equal(final["torch_rng"], load_training_checkpoint(whole / "checkpoint_last.pth")["torch_rng"])


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_says_in_one_line_what_was_saved_and_how_to_resume(sixteen, tmp_path):
    folder = tmp_path / "run"
    argv = _argv(sixteen, folder, "--max_epoch", "100")  # far longer than the test waits
    process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while _rows_of(folder / "train_log.csv", 1) < 1:  # the first log line of epoch 2: epoch 1's checkpoint is written
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=600)[1]
    assert process.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]
    checkpoint = folder / "checkpoint_last.pth"
    pattern = (r"interrupted in epoch (\d+) at iteration (\d+): last checkpoint " + re.escape(str(checkpoint))
               + r" \(after epoch (\d+)\); resume with: (.*)")
    match = re.fullmatch(pattern, last)
    assert match, last
    epoch, iteration, saved = map(int, match.groups()[:3])
    assert epoch >= 2 and 8 * (epoch - 1) < iteration <= 8 * epoch  # 8 iterations per epoch
    assert saved == load_training_checkpoint(checkpoint)["epoch"] >= 1  # what the line says is on disk
    assert match.group(4) == f"python train.py {shlex.join(argv)} --resume {checkpoint}"


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(tiny_dataset, tmp_path, monkeypatch,
                                                                             capsys):
    def interrupted(self, images, targets):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "_step", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        train.main(_argv(tiny_dataset, tmp_path / "run", "--max_epoch", "1"))
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted in epoch 1 at iteration 1: no checkpoint was written yet (the first comes at the end of "
        "epoch 1); nothing to resume")


# ---------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """(training set, folder) of a finished one-epoch run, shared by the damaged-checkpoint tests."""
    root = tmp_path_factory.mktemp("one_epoch")
    label = write_tiny_widerface(root / "train")
    train.main(_argv(label, root / "run", "--max_epoch", "1"))
    return label, root / "run"


DAMAGES = {
    "no torch_rng": (lambda s: s.pop("torch_rng"), "damaged training checkpoint: missing torch_rng; resume from "
                                                   "another one (e.g. an earlier <network>_epoch_<N>.pth)"),
    "no iteration": (lambda s: s.pop("iteration"), "damaged training checkpoint: missing iteration; "),
    "float rng": (lambda s: s.update(torch_rng=torch.zeros(3)),
                  "damaged training checkpoint: torch_rng: not a torch RNG state"),
    "negative epoch": (lambda s: s.update(epoch=-1), "damaged training checkpoint: epoch: -1 is not a count"),
    "NaN weights": (lambda s: next(iter(s["model"].values())).fill_(float("nan")),
                    "damaged training checkpoint: model: non-finite values (NaN or inf) in 1 tensors, "
                    "e.g. body.stage1.0.0.weight"),
    "extra parameter group": (lambda s: s["optimizer"]["param_groups"].append(dict(s["optimizer"]["param_groups"][0])),
                              "its optimiser state does not fit this run's parameters (loaded state dict has a "
                              "different number of parameter groups)"),
    "short parameter group": (lambda s: s["optimizer"]["param_groups"][0]["params"].pop(),
                              "its optimiser state does not fit this run's parameters (loaded state dict contains "
                              "a parameter group that doesn't match the size of optimizer's group)"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_it(one_epoch, tmp_path, capsys, damage):
    label, run = one_epoch
    change, message = DAMAGES[damage]
    state = load_training_checkpoint(run / "checkpoint_last.pth")
    change(state)
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    line = main_fails(train.main, _argv(label, tmp_path / "resumed", "--max_epoch", "2", "--resume", path), capsys)
    assert line.startswith(f"error: {path}: {message}"), line


# ---------------------------------------------------------------- settings too small


def test_settings_below_their_lower_bounds_are_refused_together_before_anything_is_written(tiny_dataset, tmp_path,
                                                                                          capsys):
    folder = tmp_path / "run"
    argv = _argv(tiny_dataset, folder, "--batch_size", "0", "--num_workers", "-1",
                 "--max_epoch", "0", "--max_iter", "0", "--lr", "-1")
    with pytest.raises(SystemExit):
        train.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: 5 problems (nothing was written):",
        "  - --batch_size 0: must be at least 1",
        "  - --num_workers -1: must be at least 0",
        "  - --max_epoch 0: must be at least 1",
        "  - --max_iter 0: must be at least 1",
        "  - --lr -1.0: must be above 0",
    ]
    assert not folder.exists()


# ---------------------------------------------------------------- a kill between two checkpoint writes


class Killed(BaseException):
    """Stands for a kill: nothing after it runs."""


def test_a_kill_between_the_epoch_snapshot_and_checkpoint_last_loses_no_snapshot(tiny_dataset, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    argv = _argv(tiny_dataset, folder, "--max_epoch", "2", "--save_interval", "1")
    real_save = train.save_atomic

    def killed_before_checkpoint_last_of_epoch_2(obj, path):
        if os.path.basename(path) == "checkpoint_last.pth" and obj["epoch"] == 2:
            raise Killed
        real_save(obj, path)

    monkeypatch.setattr(train, "save_atomic", killed_before_checkpoint_last_of_epoch_2)
    with pytest.raises(Killed):
        train.main(argv)
    monkeypatch.undo()
    snapshot = folder / "mobile0.25_epoch_2.pth"
    written_before_the_kill = load_training_checkpoint(snapshot)
    assert written_before_the_kill["epoch"] == 2
    assert load_training_checkpoint(folder / "checkpoint_last.pth")["epoch"] == 1
    train.main([*argv, "--resume", str(folder / "checkpoint_last.pth")])
    torch.save(written_before_the_kill, tmp_path / "before.pth")
    assert _weights_equal(tmp_path / "before.pth", snapshot)  # resuming rewrote the same snapshot
