"""A TDKD teacher made from a trained RetinaFace detector without task heads.

The teacher's class and box heads put a task conv (``conv_dw_3x3``: depthwise 3x3 + BN + ReLU,
pointwise 1x1 + BN + ReLU) before their 1x1 prediction conv. Starting from a detector, each
task conv is set to pass its input through unchanged: the depthwise kernel is a centred delta,
the pointwise conv the identity matrix, each BatchNorm the identity and each ReLU acts on the
SSH output, which is already post-ReLU. The teacher's outputs then equal the detector's, and
fine-tuning (``train.py --mode teacher --resume_net DETECTOR``) lets the classification and
regression features part from there.
"""
import torch
from torch import nn

from .retinaface import build_model


def teacher_from_detector(detector, cfg):
    """A teacher (``task_heads=True``) with ``detector``'s weights and identity task convs."""
    teacher = build_model(cfg, task_heads=True)
    missing, unexpected = teacher.load_state_dict(detector.state_dict(), strict=False)
    if unexpected or any(".conv_dw_3x3." not in key for key in missing):
        raise ValueError(f"not a detector of network {cfg['name']}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for head in task_heads(teacher):
        identity_task_conv(head.conv_dw_3x3)
    return teacher


def task_heads(model):
    """The heads that carry a task conv (class and box heads of every level)."""
    return [*model.ClassHead, *model.BboxHead]


@torch.no_grad()
def identity_task_conv(block, mean=None, var=None):
    """Make a ``conv_dw`` block (C -> C) the identity on non-negative inputs.

    The BatchNorms normalise with statistics (``mean``, ``var`` per channel; default 0 and 1)
    and scale back by the same amounts, so the block is the identity in eval mode, and in
    train mode too when a batch has about those statistics (``calibrate_task_convs``).
    """
    depthwise, norm1, _, pointwise, norm2, _ = block
    channels = depthwise.out_channels
    mean = torch.zeros(channels) if mean is None else mean
    var = torch.ones(channels) if var is None else var
    depthwise.weight.zero_()
    depthwise.weight[:, 0, 1, 1] = 1.0
    pointwise.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    for norm in (norm1, norm2):
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_(torch.sqrt(var + norm.eps))
        norm.bias.copy_(mean)
        norm.num_batches_tracked.zero_()


@torch.no_grad()
def calibrate_task_convs(teacher, batches):
    """Give each identity task conv the statistics of its input (the SSH features of its level)
    in training mode over ``batches`` of training images, so that it stays about the identity
    when training normalises with batch statistics (eval mode is exact whatever the statistics).
    The other layers' BatchNorm buffers are left as they were. Returns the number of images seen."""
    was_training = teacher.training
    buffers = {name: value.clone() for name, value in teacher.named_buffers()}
    teacher.train()
    moments, images = None, 0  # per level: sum, sum of squares (per channel) and count
    for batch in batches:
        flat = [f.transpose(0, 1).flatten(1).double() for f in teacher(batch)["features"]]  # C x (B*H*W)
        batch_moments = [(f.sum(1), (f * f).sum(1), f.shape[1]) for f in flat]
        moments = batch_moments if moments is None else [
            tuple(a + b for a, b in zip(total, part)) for total, part in zip(moments, batch_moments)]
        images += batch.shape[0]
    for name, value in teacher.named_buffers():
        value.copy_(buffers[name])
    for level, (total, squares, count) in enumerate(moments or []):
        mean = total / count
        var = (squares / count - mean * mean).clamp(min=0)
        for heads in (teacher.ClassHead, teacher.BboxHead):
            identity_task_conv(heads[level].conv_dw_3x3, mean.float(), var.float())
    teacher.train(was_training)
    return images


@torch.no_grad()
def batchnorm_statistics_from(model, batches):
    """Set every BatchNorm's running statistics to the average of its batch statistics over
    ``batches`` (training mode), then leave the model in eval mode. A randomly initialised
    network keeps features of RMS 1e-5 to 1e-11 through eval-mode BatchNorm with its initial
    statistics; after this they are of order one (random teachers in bench/ and tests/)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    for batch in batches:
        model(batch)
    return model.eval()
