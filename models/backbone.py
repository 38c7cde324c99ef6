"""Backbones returning the stride-8/16/32 maps, built offline (no downloads)."""
import os
import warnings

import torchvision
from torchvision.models._utils import IntermediateLayerGetter

import config
from utils.checkpoint import load_weights
from utils.errors import TDKDError

from .mobilenet import MobileNetV1


def build_backbone(cfg, weights=None):
    """MobileNetV1 or ResNet-50, with ImageNet weights from the local file ``weights`` if
    given, wrapped so that it returns the three maps named in ``cfg['return_layers']``."""
    net = backbone_network(cfg)
    if weights:
        load_weights(net, weights)
    return IntermediateLayerGetter(net, return_layers=cfg["return_layers"])


def backbone_network(cfg):
    """The whole ImageNet network of ``cfg``'s backbone (classifier included), as its weights
    files hold it."""
    if cfg["backbone"] == "mobilenet":
        return MobileNetV1(cfg["width_mult"], cfg["activation"])
    if cfg["backbone"] == "resnet50":
        return torchvision.models.resnet50(weights=None)
    raise KeyError(f"unknown backbone '{cfg['backbone']}'")


def resolve_backbone_weights(cfg, path=None):
    """The ImageNet weights to start training from.

    ``path`` if given (``'none'``: from scratch, on request); else the network's file of
    ``config.NETWORKS`` (relative to the repository), and an error where it is missing; a
    network with no known ImageNet file trains from scratch with a warning.
    """
    if path:
        return None if path.lower() == "none" else path
    default = cfg.get("backbone_weights")
    if default is None:
        warnings.warn(f"{cfg['name']}: no ImageNet weights are known for this backbone; it trains from scratch",
                      stacklevel=2)
        return None
    located_default = config.repo_path(default)
    if not os.path.isfile(located_default):
        raise TDKDError(f"{located_default}: ImageNet weights of {cfg['name']}'s backbone not found; pass "
                        "--backbone_weights PATH, or --backbone_weights none to train it from scratch")
    return located_default
