"""Per-level 1x1 prediction heads; the teacher's class/box heads add a task-specific conv.

Every head returns ``(prediction [B, H*W*A, k], task_feature or None)``: the task feature is the
output of the teacher's ``conv_dw_3x3``, which TDKD distils into the student.
"""
from torch import nn

from .layers import conv_dw


class Head(nn.Module):
    def __init__(self, in_channels, num_anchors, values_per_anchor, task_conv=False):
        super().__init__()
        self.values_per_anchor = values_per_anchor
        if task_conv:
            self.conv_dw_3x3 = conv_dw(in_channels, in_channels)
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * values_per_anchor, kernel_size=1)

    def forward(self, x):
        feature = self.conv_dw_3x3(x) if hasattr(self, "conv_dw_3x3") else None
        out = self.conv1x1(x if feature is None else feature)
        out = out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, self.values_per_anchor)
        return out, feature


def make_heads(num_levels, in_channels, num_anchors, values_per_anchor, task_conv=False):
    return nn.ModuleList(
        Head(in_channels, num_anchors, values_per_anchor, task_conv) for _ in range(num_levels)
    )
