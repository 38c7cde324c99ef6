"""train.py end to end on CPU: every mode, adapters in the optimiser, torchrun with gloo."""
import os
import subprocess
import sys

import pytest
import torch

import train
from config import COMMON, network_config
from models import build_model
from models.teacher import batchnorm_statistics_from
from tests.conftest import REPO
from utils.errors import TDKDError
from detector import load_detector
from utils.distributed import init_distributed
from utils.logger import read_log

SMALL = ["--img_dim", "64", "--batch_size", "2", "--max_epoch", "1", "--num_workers", "0", "--device", "cpu"]


def _teacher(path, network="mobile0.75"):
    """A random teacher whose features are alive: BatchNorm statistics from random images like
    the tiny set's (pixels 0-59 minus the mean); with its initial ones train.py refuses it as a
    dead teacher."""
    torch.manual_seed(1)
    teacher = build_model(network_config(network), task_heads=True)
    mean = torch.tensor(COMMON["rgb_mean"]).view(1, 3, 1, 1)
    batchnorm_statistics_from(teacher, [torch.randint(0, 60, (2, 3, 64, 64)).float() - mean])
    torch.save(teacher.state_dict(), path)
    return str(path)


def test_a_dead_teacher_is_one_clear_error(tiny_dataset, tmp_path):
    """A random teacher with its initial BatchNorm statistics, folded, has features of RMS
    ~1e-5 to 1e-11: the relative term would divide by nearly nothing."""
    torch.manual_seed(1)
    dead = tmp_path / "dead.pth"
    torch.save(build_model(network_config("mobile0.75"), task_heads=True).state_dict(), dead)
    folder = tmp_path / "out"
    with pytest.raises(TDKDError, match=rf"^{dead}: the teacher's imitated features are essentially zero .*"
                                        r"feature cls: RMS .* against the student's .*--mode teacher"):
        train.run(_args(tiny_dataset, folder, "--mode", "distillation", "--teacher_network", "mobile0.75",
                        "--teacher_weights", str(dead)))
    assert not (folder / "mobile0.25_Final.pth").exists()


def _args(tiny_dataset, folder, *extra):
    return train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(folder), *SMALL, *extra])


@pytest.mark.parametrize("mode,extra,network", [
    ("student", [], "mobile0.25"),
    ("teacher", ["--network", "resnet50", "--backbone_weights", "none"], "resnet50"),
    ("distillation", ["--teacher_network", "mobile0.75"], "mobile0.25"),
])
def test_each_mode_trains_two_iterations_and_writes_final_weights(tiny_dataset, tmp_path, mode, extra, network):
    if mode == "distillation":
        extra = extra + ["--teacher_weights", _teacher(tmp_path / "teacher.pth")]
    folder = tmp_path / "out"
    train.run(_args(tiny_dataset, folder, "--mode", mode, *extra))
    rows = read_log(folder / "train_log.csv")
    assert [r["iteration"] for r in rows] == [1, 2]
    distilled = {"feature", "probability", "cwd"} if mode == "distillation" else set()  # the default distiller's
    assert {"loc", "conf", "landm", "total"} | distilled <= set(rows[0])
    # weight 0: not computed nor logged
    assert not ({"hinton", "fitnet", "pkd", "cwd", "feature_coupled"} - distilled) & set(rows[0])
    assert all(r["lr"] == pytest.approx(1e-3 if mode == "teacher" else 0.02) for r in rows)
    final = folder / f"{network}_Final.pth"
    state = torch.load(final, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model, cfg = load_detector(final)
    assert cfg["name"] == network and model.task_heads == (mode == "teacher")
    assert (folder / "checkpoint_last.pth").exists() and (folder / f"{network}_epoch_1.pth").exists()


def test_amp_distills_in_bfloat16_with_a_channels_last_student(tiny_dataset, tmp_path):
    """CPU ``--amp``: bfloat16 autocast, the student channels-last; its losses stay close to
    float32's and its weights load into an ordinary (contiguous) model."""
    teacher = _teacher(tmp_path / "teacher.pth")
    logs = {}
    for amp in (False, True):
        folder = tmp_path / f"amp{amp}"
        folder.mkdir()
        trainer = train.Trainer(_args(tiny_dataset, folder, "--mode", "distillation", "--teacher_network", "mobile0.75",
                                      "--teacher_weights", teacher, "--seed", "0", *(["--amp"] if amp else [])),
                                init_distributed("cpu"))
        conv = trainer.model.body.stage1[0][0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == amp and conv.is_contiguous() != amp
        trainer.fit()
        logs[amp] = read_log(folder / "train_log.csv")
    for name in ("loc", "conf", "landm", "feature"):
        assert logs[True][0][name] == pytest.approx(logs[False][0][name], rel=0.05)
    model, _ = load_detector(tmp_path / "ampTrue" / "mobile0.25_Final.pth")
    assert all(p.is_contiguous() and torch.isfinite(p).all() for p in model.parameters())


def test_distillation_needs_teacher_weights(tiny_dataset, tmp_path):
    with pytest.raises(TDKDError, match="--teacher_weights"):
        train.run(_args(tiny_dataset, tmp_path, "--mode", "distillation"))


def test_adapters_are_optimised_and_the_teacher_is_frozen(tiny_dataset, tmp_path):
    args = _args(tiny_dataset, tmp_path, "--mode", "distillation", "--teacher_network", "mobile0.75",
                 "--teacher_weights", _teacher(tmp_path / "teacher.pth"))
    trainer = train.Trainer(args, train.init_distributed("cpu"))
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    adapters = list(trainer.distiller.parameters())
    assert len(adapters) == 9 and all(id(p) in optimised for p in adapters)  # cls, reg and CWD, 3 levels each
    assert not any(id(p) in optimised for p in trainer.teacher.parameters())
    before_adapters = [p.detach().clone() for p in adapters]
    before_teacher = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    images, targets = next(iter(trainer.loader))
    losses = trainer._step(images, targets)
    assert losses["feature"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before_adapters, adapters))
    assert all(torch.equal(v, trainer.teacher.state_dict()[k]) for k, v in before_teacher.items())
    assert not trainer.teacher.training


def test_overrides_reach_the_recipe(tiny_dataset, tmp_path):
    args = _args(tiny_dataset, tmp_path, "--mode", "student", "--lr", "0.5", "--set", "loss_weights.loc=3", "negpos_ratio=5")
    net_cfg, cfg = train.build_run_config(args)
    assert cfg["lr"] == 0.5 and cfg["loss_weights"]["loc"] == 3.0 and cfg["negpos_ratio"] == 5
    assert cfg["milestones"] == [55, 68] and net_cfg["name"] == "mobile0.25"
    teacher_cfg = train.build_run_config(train.parse_args(["--mode", "teacher"]))[1]
    assert (teacher_cfg["batch_size"], teacher_cfg["img_dim"], teacher_cfg["milestones"]) == (24, 840, [70, 90])
    with pytest.raises(TDKDError, match="no such setting"):
        train.build_run_config(_args(tiny_dataset, tmp_path, "--set", "no_such=1"))


def test_torchrun_two_processes_end_with_identical_weights(tiny_dataset, tmp_path):
    folder = tmp_path / "ddp"
    folder.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "ddp_worker.py"), str(folder),
               "--training_dataset", str(tiny_dataset), "--save_folder", str(folder), *SMALL,
               "--batch_size", "4", "--max_epoch", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)  # only a guard against a hang: minutes on a busy machine
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(folder / "rank0.pth", weights_only=True)
    rank1 = torch.load(folder / "rank1.pth", weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    torch.manual_seed(0)  # the trainer's seed: the same initial weights
    initial = dict(build_model(network_config("mobile0.25")).named_parameters())
    assert not torch.equal(rank0["ClassHead.0.conv1x1.weight"], initial["ClassHead.0.conv1x1.weight"])
    rows = read_log(folder / "train_log.csv")
    assert [r["iteration"] for r in rows] == [1, 2]  # 4 images, 2 per process: one step per epoch
