"""Backbones returning the stride-8/16/32 maps, built offline (no downloads)."""
import os
import warnings

import torchvision
from torchvision.models._utils import IntermediateLayerGetter

from utils.checkpoint import load_weights

from .mobilenet import MobileNetV1


def build_backbone(cfg, weights=None):
    """MobileNetV1 or ResNet-50, with ImageNet weights from the local file ``weights`` if
    given, wrapped so that it returns the three maps named in ``cfg['return_layers']``."""
    if cfg["backbone"] == "mobilenet":
        net = MobileNetV1(cfg["width_mult"], cfg["activation"])
    elif cfg["backbone"] == "resnet50":
        net = torchvision.models.resnet50(weights=None)
    else:
        raise KeyError(f"unknown backbone '{cfg['backbone']}'")
    if weights:
        load_weights(net, weights)
    return IntermediateLayerGetter(net, return_layers=cfg["return_layers"])


def resolve_backbone_weights(cfg, path=None):
    """The ImageNet weights to start training from: ``path`` if given, else the network's
    default file when it exists, else None (from scratch, with a warning saying so)."""
    if path:
        return path
    default = cfg.get("backbone_weights")
    if default and os.path.isfile(default):
        return default
    warnings.warn(
        f"{cfg['name']}: no ImageNet weights found (looked for {default or 'none'}; "
        "pass --backbone_weights PATH); the backbone trains from scratch",
        stacklevel=2,
    )
    return None
