"""The distillation teacher's fused, channels-last copy computes what the teacher computes."""
import torch

from config import network_config
from models import build_model
from models.fusion import frozen_inference_copy


def _teacher_with_trained_statistics():
    torch.manual_seed(0)
    teacher = build_model(network_config("mobile0.75"), task_heads=True)
    with torch.no_grad():
        for module in teacher.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, as after training
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return teacher.eval()


def _tensors(value):
    return value if isinstance(value, list) else [value]


def test_fused_copy_gives_the_same_outputs_and_leaves_the_teacher_alone():
    teacher = _teacher_with_trained_statistics()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fused = frozen_inference_copy(teacher)
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = teacher(images)
        got = fused(images.contiguous(memory_format=torch.channels_last))
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        for want, have in zip(_tensors(value), _tensors(got[key])):
            assert want.shape == have.shape
            torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)
    assert before.keys() == teacher.state_dict().keys()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())
