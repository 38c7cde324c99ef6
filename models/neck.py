"""FPN and SSH context modules of RetinaFace (docs/METHOD.md §2)."""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_bn, conv_bn_1x1, conv_bn_no_act, neck_slope


class FPN(nn.Module):
    """Lateral 1x1 per level, nearest top-down upsampling with addition, 3x3 merges."""

    def __init__(self, in_channels_list, out_channels, activation):
        super().__init__()
        slope = neck_slope(activation, out_channels)
        self.output1 = conv_bn_1x1(in_channels_list[0], out_channels, slope=slope)
        self.output2 = conv_bn_1x1(in_channels_list[1], out_channels, slope=slope)
        self.output3 = conv_bn_1x1(in_channels_list[2], out_channels, slope=slope)
        self.merge1 = conv_bn(out_channels, out_channels, slope=slope)
        self.merge2 = conv_bn(out_channels, out_channels, slope=slope)

    def forward(self, features):
        c1, c2, c3 = features
        output1 = self.output1(c1)
        output2 = self.output2(c2)
        output3 = self.output3(c3)
        output2 = self.merge2(output2 + F.interpolate(output3, size=output2.shape[-2:], mode="nearest"))
        output1 = self.merge1(output1 + F.interpolate(output2, size=output1.shape[-2:], mode="nearest"))
        return [output1, output2, output3]


class SSH(nn.Module):
    """3x3, 5x5 and 7x7 context branches (stacked 3x3s) concatenated, then ReLU."""

    def __init__(self, in_channel, out_channel, activation):
        super().__init__()
        if out_channel % 4 != 0:
            raise ValueError(f"SSH needs channels divisible by 4, got {out_channel}")
        slope = neck_slope(activation, out_channel)
        self.conv3X3 = conv_bn_no_act(in_channel, out_channel // 2)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, slope=slope)
        self.conv5X5_2 = conv_bn_no_act(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, slope=slope)
        self.conv7x7_3 = conv_bn_no_act(out_channel // 4, out_channel // 4)

    def forward(self, x):
        branch3 = self.conv3X3(x)
        context = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(context)
        branch7 = self.conv7x7_3(self.conv7X7_2(context))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))
