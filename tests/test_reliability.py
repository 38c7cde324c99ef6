"""Untrusted checkpoints, interrupted training and bad inputs (docs/RELIABILITY.md).

Every bad input goes through a real entry point (``main`` of a script, or the script as a
subprocess) and must end in one line ``error: <file>[:<line>]: ...`` with exit code 2 and no
traceback; the few skipped inputs must warn with a count and let the program finish.
"""
import ast
import csv
import itertools
import os
import pickle
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from scipy.io import savemat

import detect
import test_widerface
import train
from config import network_config
from layers import MultiBoxLoss
from models import build_model
from tests.conftest import REPO, write_tiny_widerface
from utils.checkpoint import load_training_checkpoint, load_weights, save_atomic, write_text_atomic
from utils.errors import TDKDError
from utils.logger import read_log
from widerface_evaluate import evaluation

SMALL = ["--img_dim", "64", "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--seed", "0"]
LOSS_COLUMNS = ("epoch", "iteration", "lr", "loc", "conf", "landm", "total")
FAST_ENV = dict(os.environ, OMP_NUM_THREADS="1")
pytestmark = [pytest.mark.filterwarnings("ignore:.*no ImageNet weights found"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol")]


# ---------------------------------------------------------------- helpers



def one_error_line(stderr):
    """The error line of a failed run: exactly one, starting 'error:', last, no traceback.

    Progress bars and warnings written before it are allowed; nothing may follow it but its
    own indented continuation lines (an error listing several problems, or commands to run).
    """
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1 and all(line.startswith("  ") for line in lines[errors[0] + 1:]), stderr
    return lines[errors[0]]


def main_fails(script_main, argv, capsys):
    """Run ``script_main(argv)`` in process; it must exit 2 with one error line, returned."""
    with pytest.raises(SystemExit) as exit_info:
        script_main([str(a) for a in argv])
    assert exit_info.value.code == 2
    return one_error_line(capsys.readouterr().err)


def run_script(script, *argv, timeout=900):  # only a guard against a hang
    return subprocess.run([sys.executable, str(REPO / script), *map(str, argv)], cwd=REPO, env=FAST_ENV,
                          capture_output=True, text=True, timeout=timeout)


def detector_weights(path, network="mobile0.25", task_heads=False, drop=0):
    """A freshly initialised detector's state dict (minus its last ``drop`` keys) saved to ``path``."""
    torch.manual_seed(0)
    state = build_model(network_config(network), task_heads=task_heads).state_dict()
    state = dict(list(state.items())[:len(state) - drop])
    torch.save(state, path)
    return path


def val_set(root, names=("a", "b")):
    """A WIDER-style val folder: images/0--Tiny/<name>.jpg and wider_val.txt."""
    images = root / "images" / "0--Tiny"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        cv2.imwrite(str(images / f"{name}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (root / "wider_val.txt").write_text("".join(f"/0--Tiny/{name}.jpg\n" for name in names))
    return root / "images"


def leftovers(folder):
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith(".tmp_") or p.suffix == ".tmp")


# ---------------------------------------------------------------- untrusted checkpoints


class CreatesFile:
    """Unpickling this would run ``open(marker, 'w')``: code execution from a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def write_malicious(folder, with_torch_save=True):
    """Real weights plus an object whose unpickling would create ``marker``: (path, marker)."""
    marker = folder / "created_by_unpickling"
    path = folder / "weights" / "mobile0.25_Final.pth"
    path.parent.mkdir()
    payload = {"state_dict": build_model(network_config("mobile0.25")).state_dict(), "meta": CreatesFile(str(marker))}
    if with_torch_save:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path, marker


@pytest.fixture(params=["torch.save", "pickle"])
def malicious(request, tmp_path):
    return write_malicious(tmp_path, with_torch_save=request.param == "torch.save")


def test_the_malicious_checkpoint_really_runs_code_when_unpickled_unsafely(malicious):
    path, marker = malicious
    if path.read_bytes().startswith(b"PK"):  # torch.save's zip format
        torch.load(path, weights_only=False)  # what the repository must never do
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def _loaders(path, tmp_path, tiny):
    train_args = ["--training_dataset", tiny, "--save_folder", tmp_path / "out", *SMALL, "--max_epoch", "1"]
    val = val_set(tmp_path / "val")
    image = val / "0--Tiny" / "a.jpg"
    return {
        "load_weights": lambda: load_weights(build_model(network_config("mobile0.25")), path),
        "load_training_checkpoint": lambda: load_training_checkpoint(path),
        "test_widerface -m": ["test_widerface", "-m", path, "--cpu", "--origin_size", "--dataset_folder", val,
                              "--save_folder", tmp_path / "pred"],
        "detect -m": ["detect", image, "-m", path, "--cpu", "--save_folder", tmp_path / "det"],
        "train --resume_net": ["train", *train_args, "--resume_net", path],
        "train --teacher_weights": ["train", *train_args, "--mode", "distillation", "--teacher_network", "mobile0.75",
                                    "--teacher_weights", path],
        "train --resume": ["train", *train_args, "--resume", path],
        "train --backbone_weights": ["train", *train_args, "--backbone_weights", path],
    }


def test_every_loader_refuses_a_checkpoint_that_would_run_code(malicious, tmp_path, tiny_dataset, capsys):
    path, marker = malicious
    scripts = {"train": train.main, "test_widerface": test_widerface.main, "detect": detect.main}
    for name, loader in _loaders(path, tmp_path, tiny_dataset).items():
        if callable(loader):
            with pytest.raises(TDKDError) as error:
                loader()
            message = str(error.value)
        else:
            message = main_fails(scripts[loader[0]], loader[1:], capsys)
        assert str(path) in message and "pickled Python objects" in message and "weights_only" in message, name
        assert not marker.exists(), name


def test_a_real_process_refuses_the_malicious_checkpoint_in_one_line(tmp_path):
    path, marker = write_malicious(tmp_path)
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    result = run_script("detect.py", image, "-m", path, "--cpu", "--save_folder", tmp_path / "det")
    assert result.returncode == 2 and not marker.exists()
    assert one_error_line(result.stderr) == (f"error: {path}: cannot load checkpoint: refused: it holds pickled "
                                             "Python objects, not only tensors (weights_only=True)")


def test_every_torch_load_in_the_repository_is_weights_only():
    calls = []
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in ("tests", ".venv", "build") or "build" in relative.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.load", "torch.serialization.load"):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((f"{relative}:{node.lineno}", safe))
    assert calls, "no torch.load found: the scan is broken"
    assert all(safe for _, safe in calls), calls


# ---------------------------------------------------------------- kill and resume


def _train_command(label, folder, *extra):
    return [sys.executable, str(REPO / "train.py"), "--mode", "student", "--training_dataset", str(label),
            "--save_folder", str(folder), *SMALL, "--max_epoch", "3", "--save_interval", "1", *extra]


def _rows_of(log, epoch):
    if not log.exists():
        return 0
    with open(log, newline="") as handle:
        return sum(1 for row in csv.reader(handle) if row and row[0] == str(epoch))


def _kill_mid_epoch(command, log, epoch, rows_first=2, timeout=900):
    """Start ``command``; SIGKILL it once the log shows ``rows_first`` rows of ``epoch``."""
    process = subprocess.Popen(command, cwd=REPO, env=FAST_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while _rows_of(log, epoch) < rows_first:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "training too slow to reach the kill point"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return _rows_of(log, epoch)


def test_training_killed_mid_epoch_resumes_with_the_same_losses(tmp_path):
    # 16 images, batch 2: 8 iterations per epoch, killed during the second epoch (index 1).
    label = write_tiny_widerface(tmp_path / "train", num_images=16, size=96)
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    reference = subprocess.run(_train_command(label, whole), cwd=REPO, env=FAST_ENV, capture_output=True,
                               text=True, timeout=900)
    assert reference.returncode == 0, reference.stderr[-2000:]

    rows_at_kill = _kill_mid_epoch(_train_command(label, killed), killed / "train_log.csv", epoch=1)
    assert 2 <= rows_at_kill < 8, "the kill must land inside epoch 2"
    assert load_training_checkpoint(killed / "checkpoint_last.pth")["epoch"] == 1
    assert not (killed / "mobile0.25_epoch_2.pth").exists()

    resumed = subprocess.run(_train_command(label, killed, "--resume", killed / "checkpoint_last.pth"),
                             cwd=REPO, env=FAST_ENV, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected, got = read_log(whole / "train_log.csv"), read_log(killed / "train_log.csv")
    assert [r["iteration"] for r in got] == list(range(1, 25))
    assert [[r[c] for c in LOSS_COLUMNS] for r in got] == [[r[c] for c in LOSS_COLUMNS] for r in expected]
    final_whole = torch.load(whole / "mobile0.25_Final.pth", weights_only=True)
    final_resumed = torch.load(killed / "mobile0.25_Final.pth", weights_only=True)
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)
    assert leftovers(whole) == [] and leftovers(killed) == []


def test_resume_refuses_a_checkpoint_of_another_mode_or_network(tiny_dataset, tmp_path):
    folder = tmp_path / "student"
    train.run(train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(folder), *SMALL,
                                "--max_epoch", "1"]))
    checkpoint = folder / "checkpoint_last.pth"
    for extra in (["--mode", "teacher", "--network", "mobile0.25"], ["--network", "mobile0.75"]):
        args = train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path / "other"),
                                 *SMALL, "--max_epoch", "2", "--resume", str(checkpoint), *extra])
        with pytest.raises(TDKDError) as error:
            train.run(args)
        assert str(error.value).startswith(f"{checkpoint}: checkpoint of --mode student --network mobile0.25, not of")
    plain = detector_weights(tmp_path / "plain.pth")
    with pytest.raises(TDKDError, match="not a training checkpoint of train.py .*use --resume_net"):
        train.run(train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path / "p"),
                                    *SMALL, "--resume", str(plain)]))


# ---------------------------------------------------------------- non-finite loss


def _train_argv(tiny_dataset, folder, *extra):
    return ["--training_dataset", tiny_dataset, "--save_folder", folder, *SMALL, *extra]


def test_non_finite_loss_stops_naming_iteration_and_terms_and_keeps_the_last_checkpoint(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    original = MultiBoxLoss.forward
    calls = itertools.count(1)

    def poisoned_from_iteration_3(self, *args):
        losses, match = original(self, *args)
        if next(calls) >= 3:
            losses["conf"] = losses["conf"] * float("nan")
        return losses, match

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned_from_iteration_3)
    folder = tmp_path / "out"
    line = main_fails(train.main, _train_argv(tiny_dataset, folder, "--max_epoch", "3"), capsys)
    # 4 images, batch 2: iteration 3 is the first of epoch 2, so epoch 1's checkpoint is the last good one.
    assert line.startswith("error: non-finite loss at iteration 3 (loc=")
    for term in ("loc=", "conf=nan", "landm=", "total=nan"):
        assert term in line
    assert line.endswith(f"training stopped, resume from {folder / 'checkpoint_last.pth'}")
    state = load_training_checkpoint(folder / "checkpoint_last.pth")
    assert state["epoch"] == 1 and state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (folder / "mobile0.25_Final.pth").exists()
    assert [r["iteration"] for r in read_log(folder / "train_log.csv")] == [1, 2]


def test_an_absurd_learning_rate_stops_at_the_first_non_finite_loss(tiny_dataset, tmp_path, capsys):
    line = main_fails(train.main, _train_argv(tiny_dataset, tmp_path, "--max_epoch", "3", "--lr", "1e30"), capsys)
    # The first step blows the weights up; iteration 2 is still in epoch 1, before any checkpoint.
    assert line.startswith("error: non-finite loss at iteration 2 (loc=") and "total=" in line
    assert line.endswith("training stopped, no checkpoint was written yet")


def test_weights_that_turn_non_finite_are_not_saved(tiny_dataset, tmp_path, monkeypatch, capsys):
    original = train.Trainer._train_epoch

    def poison_in_epoch_2(self, epoch):
        finished = original(self, epoch)
        if epoch == 1:
            next(self.model.parameters()).data.fill_(float("inf"))
        return finished

    monkeypatch.setattr(train.Trainer, "_train_epoch", poison_in_epoch_2)
    folder = tmp_path / "out"
    line = main_fails(train.main, _train_argv(tiny_dataset, folder, "--max_epoch", "3"), capsys)
    assert line == (f"error: weights became non-finite in epoch 2; they were not saved, "
                    f"resume from {folder / 'checkpoint_last.pth'}")
    assert load_training_checkpoint(folder / "checkpoint_last.pth")["epoch"] == 1


# ---------------------------------------------------------------- bad training data


GOOD = "10 10 30 30 " + " ".join(["-1.0"] * 15) + " 0.5"


@pytest.mark.parametrize("text, where, message", [
    (f"# 0--Tiny/tiny_0.jpg\n{GOOD}\n10 10 30\n", ":3: ", "found 3 fields, expected 20"),
    (f"# 0--Tiny/tiny_0.jpg\n{GOOD}\n# 0--Tiny/tiny_1.jpg\n10 x 30 30\n", ":4: ", "'x' is not a number"),
    ("# 0--Tiny/tiny_0.jpg\n10 10 nan 30\n", ":2: ", "'nan' is not a finite number"),
    ("", ": ", "empty label file"),
    (f"# 0--Tiny/tiny_0.jpg\n{GOOD}\n# 0--Tiny/gone.jpg\n{GOOD}\n", ": ", "1 of 2 listed images not found"),
])
def test_bad_label_file_fails_before_training_naming_file_and_line(tiny_dataset, tmp_path, capsys, text, where,
                                                                     message):
    tiny_dataset.write_text(text)
    line = main_fails(train.main, _train_argv(tiny_dataset, tmp_path / "out", "--max_epoch", "1"), capsys)
    assert line.startswith(f"error: {tiny_dataset}{where}") and message in line
    assert not (tmp_path / "out" / "checkpoint_last.pth").exists()


def test_missing_images_folder_is_named(tiny_dataset, tmp_path, capsys):
    (tiny_dataset.parent / "images").rename(tiny_dataset.parent / "pictures")
    line = main_fails(train.main, _train_argv(tiny_dataset, tmp_path / "out", "--max_epoch", "1"), capsys)
    assert line == (f"error: {tiny_dataset}: images folder {tiny_dataset.parent / 'images'} not found "
                    "(expected beside the label file)")


def test_boxes_without_area_are_skipped_with_a_count_and_training_runs(tiny_dataset, tmp_path):
    lines = tiny_dataset.read_text().splitlines()
    zero_width, negative_height = "10 10 0 20" + " -1.0" * 16, "10 10 20 -4" + " -1.0" * 16
    lines[1:1] = [zero_width, negative_height]  # two degenerate faces in the first image
    lines += ["# 0--Tiny/tiny_0.jpg", zero_width]  # and an image left without a face
    tiny_dataset.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "out"
    with pytest.warns(UserWarning, match=f"{tiny_dataset}: skipped 3 faces with w<=0 or h<=0 and 1 images"):
        train.run(train.parse_args(_train_argv(str(tiny_dataset), str(folder), "--max_epoch", "1")))
    assert [r["iteration"] for r in read_log(folder / "train_log.csv")] == [1, 2]  # 4 images kept
    assert (folder / "mobile0.25_Final.pth").exists()


def test_corrupt_image_during_training_is_named_in_one_line_even_from_a_worker(tiny_dataset, tmp_path):
    corrupt = tiny_dataset.parent / "images" / "0--Tiny" / "tiny_2.jpg"
    corrupt.write_bytes(b"\xff\xd8 these bytes are not a JPEG")
    result = run_script("train.py", *_train_argv(tiny_dataset, tmp_path / "out", "--max_epoch", "1",
                                                 "--num_workers", "1"))
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: {corrupt}: cannot read image (not an image, or corrupt)"


def test_distillation_without_teacher_weights(tiny_dataset, tmp_path, capsys):
    line = main_fails(train.main, _train_argv(tiny_dataset, tmp_path / "out", "--mode", "distillation"), capsys)
    assert line.startswith("error: --mode distillation needs --teacher_weights PATH")
    assert not (tmp_path / "out").exists()
    missing = tmp_path / "no_teacher.pth"
    line = main_fails(train.main, _train_argv(tiny_dataset, tmp_path, "--mode", "distillation",
                                              "--teacher_network", "mobile0.75", "--teacher_weights", missing), capsys)
    assert line == f"error: {missing}: checkpoint not found"


# ---------------------------------------------------------------- bad checkpoints and inference inputs


def test_teacher_weights_given_to_the_student_list_a_few_keys(tmp_path, capsys):
    teacher = detector_weights(tmp_path / "resnet50_Final.pth", network="resnet50", task_heads=True)
    val = val_set(tmp_path / "val")
    line = main_fails(test_widerface.main, ["-m", teacher, "--network", "mobile0.25", "--cpu", "--origin_size",
                                            "--dataset_folder", val, "--save_folder", tmp_path / "pred"], capsys)
    assert line.startswith(f"error: {teacher}: the file fits --network resnet50, not mobile0.25 (its activation ")
    assert "missing keys (e.g. body.stage1.0.0.weight, " in line and "unexpected keys (e.g. body.conv1.weight, " in line
    assert not (tmp_path / "pred").exists()


def test_checkpoint_with_missing_keys_lists_them(tmp_path, capsys):
    partial = detector_weights(tmp_path / "partial.pth", drop=4)
    keys = list(build_model(network_config("mobile0.25")).state_dict())[-4:]
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    line = main_fails(detect.main, [image, "-m", partial, "--cpu", "--save_folder", tmp_path / "det"], capsys)
    assert line == f"error: {partial}: weights do not fit this model: 4 missing keys (e.g. {', '.join(keys[:3])})"


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04 truncated zip", "a zip archive cut short or corrupt"),
    (None, "holds no model weights"),
])
def test_unreadable_or_empty_checkpoint(tmp_path, capsys, content, message):
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save([torch.zeros(3)], path)
    else:
        path.write_bytes(content)
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    line = main_fails(detect.main, [image, "-m", path, "--cpu", "--save_folder", tmp_path / "det"], capsys)
    assert line.startswith(f"error: {path}: {message}")


def test_corrupt_weights_description_is_named(tmp_path, capsys):
    weights = detector_weights(tmp_path / "mobile0.25_Final.pth")
    description = tmp_path / "mobile0.25_Final.json"
    description.write_text('{"network": "mobile0.25", "activ')  # cut short
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    argv = [image, "-m", weights, "--cpu", "--save_folder", tmp_path / "det"]
    assert main_fails(detect.main, argv, capsys).startswith(f"error: {description}: cannot read the weights'")
    description.write_text('{"network": "mobile9"}')
    assert main_fails(detect.main, argv, capsys).startswith(f"error: {description}: unknown network 'mobile9'")


def test_corrupt_image_in_test_widerface_keeps_the_finished_results_complete(tmp_path):
    weights = detector_weights(tmp_path / "w.pth")
    val = val_set(tmp_path / "val", names=("a", "b", "c"))
    corrupt = val / "0--Tiny" / "b.jpg"
    corrupt.write_bytes(b"not a JPEG")
    pred = tmp_path / "pred"
    result = run_script("test_widerface.py", "-m", weights, "--cpu", "--origin_size", "--dataset_folder", val,
                        "--save_folder", pred)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: {corrupt}: cannot read image (not an image, or corrupt)"
    assert sorted(p.name for p in pred.rglob("*") if p.is_file()) == ["a.txt"]
    lines = (pred / "0--Tiny" / "a.txt").read_text().splitlines()
    assert lines[0] == "a" and len(lines) == 2 + int(lines[1])


def test_corrupt_image_in_detect_is_listed_at_the_end_and_the_others_are_saved(tmp_path, capsys):
    weights = detector_weights(tmp_path / "w.pth")
    folder = val_set(tmp_path / "val", names=("a", "b", "c")) / "0--Tiny"
    corrupt = folder / "b.jpg"
    corrupt.write_bytes(b"not a JPEG")
    with pytest.raises(SystemExit) as exit_info:
        detect.main([str(folder), "-m", str(weights), "--cpu", "--save_folder", str(tmp_path / "det")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert one_error_line(err) == "error: 1 of 3 images failed (listed above); the other 2 were processed"
    assert f"skipped {corrupt}: cannot read image (not an image, or corrupt)" in err.splitlines()
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["a.jpg", "c.jpg"]


# ---------------------------------------------------------------- evaluation inputs


def test_ground_truth_missing_or_malformed(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    face_mat = gt / "wider_face_val.mat"
    with pytest.raises(TDKDError) as error:
        evaluation.load_ground_truth(str(gt))
    assert str(error.value) == f"{face_mat}: ground-truth file not found"

    savemat(face_mat, {"event_list": np.zeros((1, 1))})
    with pytest.raises(TDKDError) as error:
        evaluation.load_ground_truth(str(gt))
    assert str(error.value).startswith(f"{face_mat}: missing 'face_bbx_list'")

    face_mat.write_bytes(b"MATLAB 5.0 MAT-file, but cut here")
    with pytest.raises(TDKDError) as error:
        evaluation.load_ground_truth(str(gt))
    assert str(error.value).startswith(f"{face_mat}: cannot read as a MATLAB file")


def test_prediction_file_with_a_bad_line_is_named_with_its_line(tmp_path, capsys):
    event = tmp_path / "pred" / "0--Tiny"
    event.mkdir(parents=True)
    bad = event / "a.txt"
    bad.write_text("a\n2\n1 2 3 4 0.9 \n5 6 seven 8 0.5 \n")
    with pytest.raises(TDKDError) as error:
        evaluation.read_predictions(str(tmp_path / "pred"))
    assert str(error.value) == f"{bad}:4: not a number in '5 6 seven 8 0.5'"
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["-p", str(tmp_path / "pred"), "-g", str(tmp_path / "no_gt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "no_gt" / "wider_face_val.mat") in err and "Traceback" not in err


# ---------------------------------------------------------------- nothing half-written


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    train.run(train.parse_args(_train_argv(str(tiny_dataset), str(folder), "--max_epoch", "1")))
    checkpoint = folder / "checkpoint_last.pth"
    before = checkpoint.read_bytes()
    real_save = torch.save

    def disk_full(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(1000)  # some bytes made it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    resume = train.parse_args(_train_argv(str(tiny_dataset), str(folder), "--max_epoch", "2",
                                          "--resume", str(checkpoint)))
    snapshot = folder / "mobile0.25_epoch_2.pth"  # the first write of epoch 2 (then checkpoint_last.pth)
    with pytest.raises(TDKDError, match=f"^{snapshot}: cannot write \\(No space left on device\\)$"):
        train.run(resume)
    assert checkpoint.read_bytes() == before
    assert load_training_checkpoint(checkpoint)["epoch"] == 1
    assert leftovers(folder) == [] and not snapshot.exists()


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    save_atomic({"a": torch.ones(2)}, path)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()  # readable by others like any file

    def interrupted(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", lambda obj, handle: interrupted(handle))
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert leftovers(tmp_path) == []


def test_test_widerface_temporary_files_are_invisible_to_the_evaluator(tmp_path):
    pred = tmp_path / "pred"
    result = pred / "0--Tiny" / "a.txt"
    write_text_atomic("a\n1\n1 2 3 4 0.9 \n", result, tmp_folder=pred)
    # A run killed between writing and renaming leaves its temporary file at the top.
    (pred / ".tmp_killed").write_text("b\n3\n1 2")
    predictions = evaluation.read_predictions(str(pred))
    assert list(predictions) == ["0--Tiny"] and list(predictions["0--Tiny"]) == ["a"]
    np.testing.assert_array_equal(predictions["0--Tiny"]["a"], [[1, 2, 3, 4, 0.9]])


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
