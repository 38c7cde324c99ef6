"""MobileNetV1 with a width multiplier, laid out as RetinaFace's ``body.stage1..3``."""
from torch import nn

from .layers import backbone_slope, conv_bn, conv_dw

# (output channels at width 0.25, stride) of every depthwise block, per stage.
_STAGES = (
    ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)),
    ((128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1)),
    ((256, 2), (256, 1)),
)
_STEM = 8


class MobileNetV1(nn.Module):
    """MobileNetV1; width 0.25 has channels 8..256, width 0.75 three times as many."""

    def __init__(self, width_mult=0.25, activation="relu", num_classes=1000):
        super().__init__()
        scale = width_mult / 0.25
        slope = backbone_slope(activation)
        channels = int(_STEM * scale)
        stages = []
        for i, blocks in enumerate(_STAGES):
            layers = [conv_bn(3, channels, 2, slope)] if i == 0 else []
            for width, stride in blocks:
                out = int(width * scale)
                layers.append(conv_dw(channels, out, stride, slope))
                channels = out
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.avg(x).flatten(1))
