"""Conv + BN (+ activation) blocks shared by the backbone, FPN, SSH and teacher heads.

The block layouts fix the state-dict names (``0`` conv, ``1`` BN, ``3``/``4`` pointwise in a
depthwise block), so the published checkpoints load unchanged.
"""
from torch import nn


def make_activation(slope):
    """ReLU for slope 0, else LeakyReLU(slope)."""
    return nn.ReLU(inplace=True) if slope == 0 else nn.LeakyReLU(negative_slope=slope, inplace=True)


def conv_bn(inp, oup, stride=1, slope=0.0):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), make_activation(slope)
    )


def conv_bn_no_act(inp, oup, stride=1):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn_1x1(inp, oup, stride=1, slope=0.0):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, 0, bias=False), nn.BatchNorm2d(oup), make_activation(slope)
    )


def conv_dw(inp, oup, stride=1, slope=0.0):
    """Depthwise 3x3 + BN + act, then pointwise 1x1 + BN + act."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        make_activation(slope),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        make_activation(slope),
    )


def neck_slope(activation, out_channels):
    """LeakyReLU slope of FPN and SSH: 0.1 for the 'leaky' models when C <= 64, else ReLU."""
    return 0.1 if activation == "leaky" and out_channels <= 64 else 0.0


def backbone_slope(activation):
    """LeakyReLU slope of the MobileNet backbone."""
    return 0.1 if activation == "leaky" else 0.0
