"""A frozen model for inference only: the distillation teacher, the ``torch`` backend."""
import torch
from torch.fx.experimental.optimization import fuse


def frozen_inference_copy(model, channels_last=True):
    """A copy of ``model`` in eval mode without gradients, every BatchNorm folded into the conv
    before it (``torch.fx``) and, with ``channels_last``, its weights in channels-last (NHWC)
    layout, which convolves faster on CPUs and on tensor cores (inputs in either layout work;
    channels-last ones skip a conversion). Outputs equal ``model``'s up to float rounding;
    ``model`` is switched to eval mode, its weights are left unchanged.
    """
    fused = fuse(model.eval(), inplace=False).eval().requires_grad_(False)
    return fused.to(memory_format=torch.channels_last) if channels_last else fused
