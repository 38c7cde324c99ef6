"""RetinaFace construction, published checkpoints and output shapes."""
import pytest
import torch

from config import network_config
from layers import level_counts
from models import build_model
from tests.conftest import shipped_file
from utils.checkpoint import load_weights
from utils.errors import TDKDError


def _student():
    return build_model(network_config("mobile0.25")).eval()


@pytest.mark.parametrize("name", ["tdkd_student_base.pth", "tdkd_student_distilled.pth"])
def test_published_checkpoints_load_strictly(name):
    path = shipped_file("weights", name)
    model = load_weights(_student(), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)
    assert torch.equal(model.state_dict()["ClassHead.2.conv1x1.weight"], state["ClassHead.2.conv1x1.weight"])


def test_imagenet_backbone_loads_from_module_prefixed_tar():
    path = shipped_file("weights", "mobilenetV1X0.25_pretrain.tar")
    model = build_model(network_config("mobile0.25"), backbone_weights=str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.body.stage2[3][3].weight, state["module.stage2.3.3.weight"])


@pytest.mark.parametrize("height,width", [(640, 640), (352, 480), (300, 500)])
def test_output_shapes_follow_the_priors(height, width):
    model = _student()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, height, width))
    anchors = sum(level_counts(network_config("mobile0.25"), (height, width)))
    assert out["loc"].shape == (2, anchors, 4)
    assert out["conf"].shape == (2, anchors, 2)
    assert out["landms"].shape == (2, anchors, 10)
    assert [tuple(f.shape[-2:]) for f in out["features"]] == [
        (-(-height // s), -(-width // s)) for s in (8, 16, 32)
    ]
    assert "cls_features" not in out
    loc, scores, landms = model.predict(torch.zeros(1, 3, height, width))
    assert torch.allclose(scores.sum(-1), torch.ones(1, anchors))


def test_published_student_finds_no_face_in_a_flat_image():
    model = load_weights(_student(), shipped_file("weights", "tdkd_student_base.pth"))
    with torch.no_grad():
        _, scores, _ = model.predict(torch.zeros(1, 3, 320, 320))
    assert scores[0, :, 1].max() < 0.5


@pytest.mark.parametrize("name,channels", [("mobile0.75", 64), ("resnet50", 256)])
def test_teacher_heads_return_task_features(name, channels):
    teacher = build_model(network_config(name), task_heads=True).eval()
    assert "ClassHead.0.conv_dw_3x3.0.weight" in teacher.state_dict()
    assert "BboxHead.2.conv_dw_3x3.4.running_var" in teacher.state_dict()
    with torch.no_grad():
        out = teacher(torch.zeros(1, 3, 96, 128))
    for key in ("cls_features", "reg_features"):
        assert [tuple(f.shape) for f in out[key]] == [(1, channels, 12, 16), (1, channels, 6, 8), (1, channels, 3, 4)]


def test_activation_is_a_model_setting():
    relu = build_model(network_config("mobile0.25", "relu"))
    leaky = build_model(network_config("mobile0.25", "leaky"))
    assert isinstance(relu.body.stage1[0][2], torch.nn.ReLU)
    assert isinstance(leaky.body.stage1[0][2], torch.nn.LeakyReLU) and leaky.body.stage1[0][2].negative_slope == 0.1
    assert isinstance(leaky.fpn.merge1[2], torch.nn.LeakyReLU)
    assert set(relu.state_dict()) == set(leaky.state_dict())


def test_mobile075_widths_triple_the_student():
    body = build_model(network_config("mobile0.75")).body
    assert body.stage1[0][0].weight.shape == (24, 3, 3, 3)
    assert body.stage3[1][3].weight.shape == (768, 768, 1, 1)


def test_wrong_network_checkpoint_is_refused_with_keys(tmp_path):
    teacher = build_model(network_config("mobile0.75"), task_heads=True)
    path = tmp_path / "teacher.pth"
    torch.save(teacher.state_dict(), path)
    with pytest.raises(TDKDError) as err:
        load_weights(_student(), path)
    message = str(err.value)
    assert str(path) in message and "unexpected keys" in message and "ClassHead.0.conv_dw_3x3" in message
    assert "other shapes" in message
