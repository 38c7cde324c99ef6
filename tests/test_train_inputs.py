"""train.py before training (train_inputs.py): networks read from the weights, every problem
reported at once with nothing written, the ways to a teacher, a teacher made from a detector
(models/teacher.py), and the command-line rules every tool shares (--device, --save_folder)."""
import shlex

import numpy as np
import pytest
import torch

import config
import detect
import test_widerface
import train
import train_inputs
from data.synthetic import generate_synthetic_widerface
from detector import load_detector
from models import build_model
from models.retinaface import fitting_networks
from models.teacher import calibrate_task_convs, teacher_from_detector
from tests.conftest import REPO, shipped_file
from utils.checkpoint import load_weights, read_state_dict
from utils.cli import default_device
from utils.errors import TDKDError
from utils.inference import preprocess

SMALL = ["--img_dim", "64", "--batch_size", "2", "--num_workers", "0", "--device", "cpu"]
STUDENT = str(shipped_file("weights", "tdkd_student_distilled.pth"))
SYNTHETIC_TEACHER = str(shipped_file("weights", "synthetic_teacher_mobile0.25-wide.pth"))


def _fails(argv, capsys):
    """``train.main(argv)`` must exit 2; returns its whole error message."""
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(a) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err[err.index("error: "):]


def _weights(path, network, task_heads=False, seed=0):
    torch.manual_seed(seed)
    torch.save(build_model(config.network_config(network), task_heads=task_heads).state_dict(), path)
    return str(path)


# ---------------------------------------------------------------- every problem at once


def test_every_problem_is_reported_at_once_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "run"
    message = _fails(["--mode", "distillation", "--training_dataset", tmp_path / "no" / "label.txt",
                      "--resume_net", tmp_path / "student.pth", "--val_dataset", tmp_path / "val",
                      "--set", "no_such=1", "--save_folder", folder, *SMALL], capsys)
    assert message.startswith("error: 5 problems (nothing was written):\n  - --mode distillation needs "
                              "--teacher_weights PATH")
    for problem in (f"  - {tmp_path / 'student.pth'}: checkpoint not found",
                    f"  - {tmp_path / 'no' / 'label.txt'}: label file not found",
                    f"  - {tmp_path / 'val'}: --val_dataset needs images/",
                    "  - --set: \"override 'no_such': no such setting"):
        assert problem in message
    assert not folder.exists()


def test_a_fresh_clone_gets_from_the_bare_command_to_a_running_distillation(tmp_path, capsys, monkeypatch):
    """`python train.py --mode distillation` prints the synthetic set's command and a
    distillation command; run as printed (on a smaller set, briefly), it trains."""
    monkeypatch.chdir(tmp_path)  # a working folder with no data, as a fresh clone has
    message = _fails(["--mode", "distillation"], capsys)
    assert "data/widerface/train/label.txt: label file not found" in message
    lines = [line.strip() for line in message.splitlines()]
    assert lines[lines.index("1. distil on the synthetic set from the shipped synthetic teacher and student "
                             "(CPU is enough):") + 1] == "python -m data.synthetic"
    command = next(line for line in lines if line.startswith("python train.py --mode distillation"))
    assert "--teacher_weights weights/synthetic_teacher_mobile0.25-wide.pth" in command
    assert "--resume_net weights/synthetic_student_mobile0.25.pth" in command
    assert "--training_dataset data/synthetic/train/label.txt" in command
    assert "python train.py --mode teacher --resume_net Resnet50_Final.pth" in lines
    assert "python train.py --mode teacher --network resnet50" in lines

    monkeypatch.chdir(REPO)  # the commands are run from the repository
    data = tmp_path / "synthetic"
    generate_synthetic_widerface(data, num_train=4, num_val=0, image_size=(96, 128), workers=1)
    argv = shlex.split(command)[2:]
    argv[argv.index("--training_dataset") + 1] = str(data / "train" / "label.txt")
    folder = tmp_path / "out"
    train.run(train.parse_args(argv + ["--save_folder", str(folder), *SMALL, "--max_iter", "1"]))
    assert ", teacher mobile0.25-wide (relu) from weights/synthetic_teacher" in capsys.readouterr().out  # its .json
    assert (folder / "mobile0.25_Final.pth").exists()


# ---------------------------------------------------------------- networks from the weights


def test_teacher_network_and_activation_come_from_its_json_else_from_its_shapes(tmp_path, tiny_dataset):
    args = train.parse_args(["--mode", "distillation", "--teacher_weights", SYNTHETIC_TEACHER,
                             "--training_dataset", str(tiny_dataset), *SMALL])
    plan = train_inputs.plan_run(args)
    assert (plan.teacher.network, plan.teacher.activation) == ("mobile0.25-wide", "relu")
    plain = _weights(tmp_path / "teacher.pth", "mobile0.75", task_heads=True)  # no .json
    args = train.parse_args(["--mode", "distillation", "--teacher_weights", plain,
                             "--training_dataset", str(tiny_dataset), *SMALL])
    assert train_inputs.plan_run(args).teacher.network == "mobile0.75"
    args.teacher_network = "resnet50"  # a flag wins over the file, and a wrong one is named
    with pytest.raises(TDKDError, match=r"teacher.pth: the file fits --teacher_network mobile0.75, not resnet50"):
        train_inputs.plan_run(args)


def test_the_trained_network_comes_from_resume_net(tiny_dataset):
    args = train.parse_args(["--mode", "teacher", "--resume_net", STUDENT, "--training_dataset", str(tiny_dataset),
                             *SMALL])
    plan = train_inputs.plan_run(args)
    assert (plan.network, plan.from_detector, plan.cfg["recipe"]) == ("mobile0.25", True, "from-detector")
    assert plan.save_folder == "outputs/train/teacher_mobile0.25"


def test_a_teacher_from_a_detector_never_asks_for_imagenet_weights(tiny_dataset, tmp_path):
    """The documented command names a detector that may be missing: the one problem is that file,
    not resnet50's ImageNet backbone, which a teacher made from a detector does not use."""
    args = train.parse_args(["--mode", "teacher", "--network", "resnet50", "--resume_net", str(tmp_path / "Resnet50_Final.pth"),
                             "--training_dataset", str(tiny_dataset), "--backbone_weights", str(tmp_path / "absent.pth"),
                             *SMALL])
    with pytest.raises(TDKDError) as error:
        train_inputs.plan_run(args)
    assert str(error.value).startswith(f"{tmp_path / 'Resnet50_Final.pth'}: ") and "absent.pth" not in str(error.value)
    assert "problems" not in str(error.value)


@pytest.mark.parametrize("network", sorted(config.NETWORKS))
def test_fitting_networks_names_the_network_of_a_state_dict(network):
    with torch.device("meta"):
        for heads in (False, True):
            state = build_model(config.network_config(network), task_heads=heads).state_dict()
            assert fitting_networks(state) == [network]


def test_a_wrong_network_names_the_one_the_file_fits(tmp_path, capsys):
    with pytest.raises(SystemExit):
        detect.main([str(REPO / "README.md"), "-m", STUDENT, "--network", "mobile0.75", "--cpu",
                     "--save_folder", str(tmp_path)])
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: {STUDENT}: the file fits --network mobile0.25, not mobile0.75 (its activation "
                           "is not stored in the file: --activation relu for TDKD's and this repository's weights, "
                           "leaky for Pytorch_Retinaface's): 138 keys with other shapes")
    with pytest.raises(TDKDError, match=r"the file fits --network mobile0.25-wide, not mobile0.25 \(activation "
                                        r"relu, from its .json\)"):
        load_weights(build_model(config.network_config("mobile0.25"), task_heads=True), SYNTHETIC_TEACHER)


def test_a_pytorch_retinaface_checkpoint_loads_with_its_prefix_and_without_batch_counters(tmp_path):
    """Pytorch_Retinaface saves ``module.``-prefixed keys; old PyTorch had no num_batches_tracked."""
    state = read_state_dict(STUDENT)
    public = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(public, tmp_path / "mobilenet0.25_Final.pth")
    model, cfg = load_detector(tmp_path / "mobilenet0.25_Final.pth", activation="leaky")
    assert cfg["activation"] == "leaky"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items() if "num_batches" not in k)


# ---------------------------------------------------------------- a teacher made from a detector


@pytest.fixture(scope="module")
def detector_and_teacher():
    detector, cfg = load_detector(STUDENT)
    return detector, teacher_from_detector(detector, cfg).eval()


def _outputs(model, image):
    tensor = torch.from_numpy(preprocess(image, 1, config.COMMON["rgb_mean"]).transpose(2, 0, 1))[None]
    with torch.no_grad():
        return model(tensor)


def test_a_teacher_made_from_the_published_student_gives_its_outputs(detector_and_teacher, face_photo):
    detector, teacher = detector_and_teacher
    ours, reference = _outputs(teacher, face_photo.image), _outputs(detector, face_photo.image)
    for key in ("loc", "conf", "landms"):
        torch.testing.assert_close(ours[key], reference[key], atol=1e-5, rtol=0)
    assert teacher.task_heads and not detector.task_heads
    for cls, reg, ssh in zip(ours["cls_features"], ours["reg_features"], ours["features"]):
        torch.testing.assert_close(cls, ssh, atol=1e-5, rtol=0)
        torch.testing.assert_close(reg, ssh, atol=1e-5, rtol=0)


def test_calibrated_task_convs_stay_exact_in_eval_and_near_the_identity_in_training(face_photo):
    detector, cfg = load_detector(STUDENT)
    teacher = teacher_from_detector(detector, cfg)
    before = {k: v.clone() for k, v in teacher.state_dict().items() if "conv_dw_3x3" not in k}
    image = torch.from_numpy(preprocess(face_photo.image, 1, config.COMMON["rgb_mean"]).transpose(2, 0, 1))[None]
    batches = [image, image.flip(-1)]
    assert calibrate_task_convs(teacher, batches) == 2
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # only the task convs changed
    teacher.eval()
    ours, reference = _outputs(teacher, face_photo.image), _outputs(detector, face_photo.image)
    for key in ("loc", "conf", "landms"):
        torch.testing.assert_close(ours[key], reference[key], atol=1e-5, rtol=0)
    teacher.train(), detector.train()
    with torch.no_grad():  # batch statistics on both sides: the task convs see their calibration batch
        ours, reference = teacher(batches[0]), detector(batches[0])
    uncalibrated = teacher_from_detector(load_detector(STUDENT)[0], cfg).train()
    with torch.no_grad():
        plain = uncalibrated(batches[0])
    error = (ours["conf"] - reference["conf"]).abs().mean()
    assert error < 0.1 * (plain["conf"] - reference["conf"]).abs().mean()


def test_teacher_mode_from_a_detector_says_so_and_the_task_features_part_in_training(tiny_dataset, tmp_path, capsys):
    args = train.parse_args(["--mode", "teacher", "--resume_net", STUDENT, "--training_dataset", str(tiny_dataset),
                             "--save_folder", str(tmp_path), *SMALL, "--max_iter", "4", "--lr", "0.02",
                             "--set", "calibration_batches=2"])
    trainer = train.Trainer(args, train.init_distributed("cpu"))
    printed = capsys.readouterr().out
    assert printed.count(f"teacher made from the detector {STUDENT} (no task heads)") == 1
    assert "task convs: BatchNorm statistics of the SSH features of 4 training images" in printed
    image = torch.from_numpy(np.float32(np.random.default_rng(0).uniform(-100, 100, (3, 96, 96))))[None]
    trainer.model.eval()
    with torch.no_grad():
        start = trainer.model(image)
    for cls, reg in zip(start["cls_features"], start["reg_features"]):
        assert torch.equal(cls, reg)  # the same identity of the SSH features, computed alike
    trainer.fit()
    trainer.model.eval()
    with torch.no_grad():
        tuned = trainer.model(image)
    for cls, reg in zip(tuned["cls_features"], tuned["reg_features"]):
        assert not torch.allclose(cls, reg, atol=1e-5, rtol=0)  # each task's loss moved its own conv


def test_distilling_from_a_detector_stops_with_the_command_that_makes_it_a_teacher(tiny_dataset, tmp_path, capsys):
    message = _fails(["--mode", "distillation", "--teacher_weights", STUDENT, "--training_dataset", tiny_dataset,
                      "--save_folder", tmp_path / "out", *SMALL], capsys)
    assert message.startswith(f"error: {STUDENT}: a RetinaFace detector without task heads, not a teacher: make a "
                              f"teacher from it first")
    made = "outputs/train/teacher_mobile0.25/mobile0.25_Final.pth"
    command = (f"python train.py --mode teacher --network mobile0.25 --resume_net {STUDENT} --training_dataset "
               f"{tiny_dataset}")
    assert command in message and message.rstrip().endswith(f"then pass --teacher_weights {made}")
    assert not (tmp_path / "out").exists()
    plan = train_inputs.plan_run(train.parse_args(shlex.split(command)[2:] + SMALL))
    assert plan.from_detector and plan.save_folder == "outputs/train/teacher_mobile0.25"


# ---------------------------------------------------------------- rules every tool shares


def _bench_parse(monkeypatch):
    import sys

    from bench import train_speed
    monkeypatch.setattr(sys, "argv", ["train_speed.py"])
    return train_speed.parse_args()


@pytest.mark.parametrize("cuda", [False, True])
def test_every_tool_defaults_to_cuda_where_available_else_cpu(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    expected = "cuda" if cuda else "cpu"
    assert default_device() == expected
    parsed = [train.parse_args([]), test_widerface.parse_args([]), detect.parse_args(["photo.jpg"]),
              _bench_parse(monkeypatch)]
    assert [args.device for args in parsed] == [expected] * 4


def test_training_writes_to_a_git_ignored_folder_by_default_as_do_the_other_tools(tiny_dataset):
    for mode, network in (("student", "mobile0.25"), ("teacher", "resnet50")):
        args = train.parse_args(["--mode", mode, "--training_dataset", str(tiny_dataset), *SMALL,
                                 "--backbone_weights", "none"])
        assert train_inputs.plan_run(args).save_folder == f"outputs/train/{mode}_{network}"
    ignored = (REPO / ".gitignore").read_text().splitlines()
    defaults = {"outputs/": "train.py, quickstart.py", "detections/": detect.parse_args(["x"]).save_folder,
                "/*.onnx": "export_onnx.py -o NAME.onnx", "results/": test_widerface.parse_args([]).vis_folder,
                "data/synthetic/": "python -m data.synthetic", "widerface_evaluate/widerface_txt/":
                test_widerface.parse_args([]).save_folder}
    assert [pattern for pattern in defaults if pattern not in ignored] == []


def test_the_summary_lists_only_the_checkpoints_written(tiny_dataset, tmp_path, capsys):
    train.run(train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL,
                                "--max_iter", "1", "--max_epoch", "250", "--resume_net", STUDENT]))
    summary = capsys.readouterr().out
    summary = summary[summary.index("saved in"):]
    assert "_epoch_" not in summary and not list(tmp_path.glob("*_epoch_*.pth"))
    assert "mobile0.25_Final.pth (+ .json)" in summary and "checkpoint_last.pth" in summary


@pytest.mark.parametrize("failed,total,line", [
    (1, 3, "1 of 3 images failed (listed above); the other 2 were processed"),
    (2, 2, "all 2 images failed (listed above)"),
])
def test_detect_failure_summary(failed, total, line):
    assert detect.failure_summary(failed, total) == line


def test_detect_with_one_unreadable_image_names_it_alone(tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a JPEG")
    with pytest.raises(SystemExit):
        detect.main([str(bad), "--cpu", "--backend", "eager", "--save_folder", str(tmp_path / "out")])  # no export line
    assert capsys.readouterr().err.strip() == f"error: {bad}: cannot read image (not an image, or corrupt)"


def test_a_missing_training_set_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TDKDError, match=r"^data/synthetic/train/label.txt: label file not found; make the synthetic "
                                        r"set first: python -m data.synthetic$"):
        train_inputs.check_training_set("data/synthetic/train/label.txt")
    with pytest.raises(TDKDError, match=r"^wider/label.txt: label file not found; WIDER FACE goes there .* or use "
                                        r"the synthetic set: python -m data.synthetic, then --training_dataset "
                                        r"data/synthetic/train/label.txt$"):
        train_inputs.check_training_set("wider/label.txt")
