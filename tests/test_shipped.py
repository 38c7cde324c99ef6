"""What a fresh clone ships and the defaults that rely on it (issue 8): the files and their
sha256, the README's model zoo, the recipe table of docs/TRAINING.md, default weights and ground truth, recipes,
errors that say what a file is, public flag spellings, byte-compatible prediction files."""
import hashlib
import re

import numpy as np
import pytest
import torch

import config
import test_widerface
import train
from detector import load_detector
from models import build_model
from models.backbone import resolve_backbone_weights
from tests.conftest import REPO, SHARED, shipped_file
from utils.checkpoint import load_weights
from utils.errors import TDKDError
from utils.inference import format_widerface
from widerface_evaluate import evaluation

SHIPPED = {
    "weights/mobilenetV1X0.25_pretrain.tar": "1a73859ca67b1d1753f5e01af050d660880dc6a97b4b346905356d65f3ee8755",
    "weights/tdkd_student_base.pth": "8da1cbccf54d4cf6b0cbb3b29f66ded3703400d16613f7a71b61f8d22388960e",
    "weights/tdkd_student_distilled.pth": "23baa9c40e5214a6345fb7f7598df9bd0479ca091a02c028c3ed474a7180813a",
    "widerface_evaluate/ground_truth/wider_face_val.mat": "1dfe6a9853950f9dde256b5e8bb75d8f272e6bc02a15ae1968f5a9b883f458cb",
    "widerface_evaluate/ground_truth/wider_easy_val.mat": "c2fb672d16f75653eb89fb8bc437a7d060896a71cd7a65c1a5a3e4479024099c",
    "widerface_evaluate/ground_truth/wider_medium_val.mat": "4a031970bc132cef5cfacd05068aabcf4fe15d4a31a1e9f4f00eb134fdf449c1",
    "widerface_evaluate/ground_truth/wider_hard_val.mat": "bb1af19dc5bc4dd9517dd8ae8096326c68175f2c3411763bdd4f23fa98638b78",
}
README = (REPO / "README.md").read_text()
SMALL = ["--img_dim", "64", "--batch_size", "2", "--max_epoch", "1", "--num_workers", "0", "--device", "cpu"]


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The published originals, where a copy of them lies beside the clone (the project's ../shared).
ORIGINALS = {"weights/": SHARED / "weights", "widerface_evaluate/ground_truth/": SHARED / "widerface" / "ground_truth"}


def _original(relative):
    folder = next(path for prefix, path in ORIGINALS.items() if relative.startswith(prefix))
    return folder / relative.rsplit("/", 1)[1]


@pytest.mark.parametrize("relative,digest", sorted(SHIPPED.items()))
def test_every_shipped_file_has_its_published_sha256(relative, digest):
    """The pinned digest is the published file's: checked against the original where it lies
    beside the clone; a fresh clone checks its file against the pin alone."""
    assert _sha256(shipped_file(*relative.split("/"))) == digest
    if _original(relative).is_file():
        assert _sha256(_original(relative)) == digest


@pytest.mark.parametrize("relative,digest", sorted(SHIPPED.items()))
def test_model_zoo_row_names_the_file_and_its_sha256(relative, digest):
    rows = [line for line in README.splitlines() if line.startswith(f"| `{relative}` |")]
    assert len(rows) == 1 and f"`{digest}`" in rows[0]


def test_model_zoo_parameter_counts_are_the_files():
    def count(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        return sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    for relative in ("weights/tdkd_student_base.pth", "weights/tdkd_student_distilled.pth",
                     "weights/mobilenetV1X0.25_pretrain.tar"):
        row = next(line for line in README.splitlines() if line.startswith(f"| `{relative}` |"))
        assert f"| {count(REPO / relative):,}" in row


def test_training_doc_recipe_table_matches_config():
    rows = {}
    for line in (REPO / "docs" / "TRAINING.md").read_text().splitlines():
        match = re.match(r"\| `([\w-]+)` \| (\d+) \| ([\d.e-]+) \| (\d+) \| ([\d, ]+) \| (\d+) \|", line)
        if match and match.group(1) in config.RECIPES:
            name, batch, lr, epochs, milestones, size = match.groups()
            rows[name] = dict(batch_size=int(batch), lr=float(lr), max_epoch=int(epochs),
                              milestones=[int(m) for m in milestones.split(",")], img_dim=int(size))
    assert rows == config.RECIPES


def test_student_defaults_to_the_public_tdkd_recipe_and_retinaface_stays_available():
    student = train.build_run_config(train.parse_args([]))[1]
    assert (student["lr"], student["max_epoch"], student["milestones"], student["recipe"]) == (0.02, 80, [55, 68], "tdkd")
    retina = train.build_run_config(train.parse_args(["--recipe", "retinaface"]))[1]
    assert (retina["lr"], retina["max_epoch"], retina["milestones"]) == (1e-3, 250, [190, 220])
    teacher = train.build_run_config(train.parse_args(["--mode", "teacher"]))[1]
    assert (teacher["batch_size"], teacher["img_dim"], teacher["recipe"]) == (24, 840, "retinaface-resnet50")
    with pytest.raises(SystemExit):
        train.parse_args(["--recipe", "nonsense"])


def test_public_flag_spellings():
    args = train.parse_args(["-b", "6", "--learning-rate", "0.5", "--ngpu", "1"])
    assert (args.batch_size, args.lr) == (6, 0.5)
    with pytest.raises(TDKDError, match=r"torchrun --nproc_per_node=4"):
        train.parse_args(["--ngpu", "4"])


@pytest.mark.parametrize("script,expected", [
    (train, ["(default: student)", "tdkd 0.02, retinaface 0.001", "(default: 1)"]),
    (test_widerface, ["(default: 0.3)", "(default: 750)", config.DEFAULT_DETECTOR]),
])
def test_help_shows_defaults(script, expected, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in expected:
        assert fragment in text


def test_test_widerface_defaults_to_the_shipped_distilled_student(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default does not depend on the working folder
    args = test_widerface.parse_args([])
    assert open(args.trained_model, "rb").read() == shipped_file("weights", "tdkd_student_distilled.pth").read_bytes()


def test_evaluator_finds_the_shipped_ground_truth_from_anywhere(tmp_path, monkeypatch, capsys):
    pred = tmp_path / "pred" / "0--Parade"
    pred.mkdir(parents=True)
    (pred / "0_Parade_marchingband_1_465.txt").write_text("0_Parade_marchingband_1_465\n1\n10 10 20 20 0.9 \n")
    monkeypatch.chdir(tmp_path)
    evaluation.main(["-p", str(tmp_path / "pred")])
    captured = capsys.readouterr()
    assert "Easy   Val AP: 0.0" in captured.out  # the one box matches no face
    assert "3225 of 3226 ground-truth images have no prediction file" in captured.out + captured.err


def test_distillation_starts_from_the_published_base_student(tiny_dataset, tmp_path):
    teacher = tmp_path / "teacher.pth"
    torch.save(build_model(config.network_config("mobile0.75"), task_heads=True).state_dict(), teacher)
    args = train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL,
                             "--mode", "distillation", "--teacher_network", "mobile0.75", "--teacher_weights", str(teacher)])
    trainer = train.Trainer(args, train.init_distributed("cpu"))
    base = torch.load(shipped_file("weights", "tdkd_student_base.pth"), map_location="cpu", weights_only=True)
    assert all(torch.equal(base[k], v) for k, v in trainer.model.state_dict().items())


def test_distillation_without_the_base_student_is_a_clear_error(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DISTILLATION_START", "weights/missing_base.pth")
    teacher = tmp_path / "teacher.pth"
    torch.save(build_model(config.network_config("mobile0.75"), task_heads=True).state_dict(), teacher)
    args = train.parse_args(["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL,
                             "--mode", "distillation", "--teacher_network", "mobile0.75", "--teacher_weights", str(teacher)])
    with pytest.raises(TDKDError, match=r"missing_base.pth: the published base student.*--resume_net"):
        train.Trainer(args, train.init_distributed("cpu"))


def test_missing_imagenet_weights_are_an_error_unless_asked_for(monkeypatch):
    cfg = config.network_config("mobile0.25")
    assert resolve_backbone_weights(cfg) == str(shipped_file("weights", "mobilenetV1X0.25_pretrain.tar"))
    cfg["backbone_weights"] = "weights/not_here.tar"
    with pytest.raises(TDKDError, match=r"not_here.tar: ImageNet weights .*--backbone_weights none"):
        resolve_backbone_weights(cfg)
    assert resolve_backbone_weights(cfg, "none") is None
    with pytest.warns(UserWarning, match="no ImageNet weights are known"):
        assert resolve_backbone_weights(config.network_config("mobile0.75")) is None


def test_training_without_imagenet_weights_needs_the_explicit_flag(tiny_dataset, tmp_path):
    common = ["--training_dataset", str(tiny_dataset), "--save_folder", str(tmp_path), *SMALL, "--mode", "teacher",
              "--network", "resnet50"]
    with pytest.raises(TDKDError, match=r"resnet50-0676ba61.pth: ImageNet weights of resnet50"):
        train.Trainer(train.parse_args(common), train.init_distributed("cpu"))


@pytest.mark.parametrize("weights,teacher,message", [
    ("mobilenetV1X0.25_pretrain.tar", False, r"this file is an ImageNet backbone .* as --backbone_weights"),
    ("tdkd_student_base.pth", True, r"this file is a RetinaFace detector without task heads .* a RetinaFace teacher "
                                    r"with task heads .* is needed here; .*--resume_net"),
])
def test_a_file_of_another_kind_is_named_for_what_it_is(weights, teacher, message):
    model = build_model(config.network_config("mobile0.25"), task_heads=teacher)
    with pytest.raises(TDKDError, match=message):
        load_weights(model, shipped_file("weights", weights))


def test_a_teacher_where_a_student_is_needed(tmp_path):
    path = tmp_path / "teacher.pth"
    torch.save(build_model(config.network_config("mobile0.25"), task_heads=True).state_dict(), path)
    with pytest.raises(TDKDError, match=r"teacher.pth: this file is a RetinaFace teacher .* as --teacher_weights"):
        load_weights(build_model(config.network_config("mobile0.25")), path)


def test_detector_refuses_an_imagenet_backbone_with_one_line():
    with pytest.raises(TDKDError) as error:
        load_detector(shipped_file("weights", "mobilenetV1X0.25_pretrain.tar"))
    assert "ImageNet backbone" in str(error.value) and "\n" not in str(error.value)


def test_scores_are_written_as_the_public_script_writes_them():
    dets = np.array([[10.7, 20.2, 30.9, 60.1, 0.99912345], [1, 2, 3, 4, 0.5]], dtype=np.float32)
    text = format_widerface("img", dets)
    # public test_widerface.py: str(int(x)) ... + " " + str(box[4]) + " \n" on a float32 row
    public = "img\n2\n" + "".join(f"{int(b[0])} {int(b[1])} {int(b[2]) - int(b[0])} {int(b[3]) - int(b[1])} "
                                   + str(b[4]) + " \n" for b in dets)
    assert text == public
    assert text.splitlines()[2] == "10 20 20 40 0.99912345 "
