"""The thread policy of every script (utils/threads.py): $OMP_NUM_THREADS, else the free cores."""
import argparse
import os

import cv2
import pytest
import torch

import detect
import export_onnx
import quickstart
import test_widerface
import train
from data.synthetic import render_image
from utils.threads import add_threads_argument, automatic_threads, set_threads, usable_cores


@pytest.mark.parametrize("cores, load, expected", [(2, 0.1, 2), (2, 0.6, 1), (2, 1.4, 1), (2, 9.0, 1),
                                                   (16, 3.4, 13), (1, 0.0, 1)])
def test_automatic_threads_are_the_cores_nobody_else_uses(cores, load, expected):
    assert automatic_threads(cores, load, environ={}) == expected


def test_omp_num_threads_wins_when_it_is_a_positive_integer():
    assert automatic_threads(2, 9.0, environ={"OMP_NUM_THREADS": "3"}) == 3
    for ignored in ("0", "two", ""):
        assert automatic_threads(4, 1.0, environ={"OMP_NUM_THREADS": ignored}) == 3


def test_usable_cores_is_this_process_affinity():
    assert 1 <= usable_cores() <= os.cpu_count()


def test_threads_flag_takes_positive_numbers_and_defaults_to_automatic(capsys):
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    assert parser.parse_args([]).threads is None and parser.parse_args(["--threads", "3"]).threads == 3
    for bad, message in (("0", "expected at least 1, got 0"), ("x", "expected a whole number, got 'x'")):
        with pytest.raises(SystemExit):
            parser.parse_args(["--threads", bad])
        assert message in capsys.readouterr().err


def test_every_script_has_the_flag():
    parsers = {detect: ["x.jpg"], test_widerface: [], train: [], export_onnx: ["-o", "x.onnx"], quickstart: []}
    for module, argv in parsers.items():
        assert module.parse_args([*argv, "--threads", "2"]).threads == 2, module.__name__


def test_set_threads_gives_pytorch_the_count(monkeypatch):
    assert set_threads(2) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert set_threads() == 3 and torch.get_num_threads() == 3


def test_detect_runs_with_the_threads_asked_for(tmp_path):
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), render_image(0, "val", 1, (96, 128))[0])
    detect.run(detect.parse_args([str(image), "--cpu", "--backend", "eager", "--threads", "2",
                                  "--save_folder", str(tmp_path / "out")]))
    assert torch.get_num_threads() == 2


def test_training_threads_do_not_follow_the_load(monkeypatch):
    """Another count sums floats in another order: a training run's default must not depend on
    what else the machine runs."""
    import utils.threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(utils.threads.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    torch.set_num_threads(2)
    assert set_threads(training=True) == 2  # PyTorch's count left as it is
    assert set_threads(3, training=True) == 3
    assert set_threads() == 1  # inference follows the load: every core is taken
