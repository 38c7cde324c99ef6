"""RetinaFace: backbone -> FPN -> SSH per level -> class / box / landmark heads."""
import functools

import torch
import torch.nn.functional as F
from torch import nn

import config
from utils.checkpoint import describe_weights

from .backbone import build_backbone
from .heads import make_heads
from .neck import FPN, SSH

NUM_ANCHORS = 2
NUM_LEVELS = 3


class RetinaFace(nn.Module):
    """RetinaFace detector.

    ``forward`` returns a dict: ``loc`` [B, A, 4], ``conf`` logits [B, A, 2], ``landms``
    [B, A, 10], ``features`` (per-level SSH outputs) and, for a teacher built with
    ``task_heads=True``, ``cls_features`` / ``reg_features`` (per-level task features).
    ``predict`` returns the deployable ``(loc, softmax scores, landms)``.
    """

    def __init__(self, cfg, task_heads=False, backbone_weights=None):
        super().__init__()
        channels = cfg["out_channel"]
        self.network = cfg.get("name")
        self.task_heads = task_heads
        self.body = build_backbone(cfg, backbone_weights)
        self.fpn = FPN(cfg["in_channels"], channels, cfg["activation"])
        self.ssh1 = SSH(channels, channels, cfg["activation"])
        self.ssh2 = SSH(channels, channels, cfg["activation"])
        self.ssh3 = SSH(channels, channels, cfg["activation"])
        self.ClassHead = make_heads(NUM_LEVELS, channels, NUM_ANCHORS, 2, task_heads)
        self.BboxHead = make_heads(NUM_LEVELS, channels, NUM_ANCHORS, 4, task_heads)
        self.LandmarkHead = make_heads(NUM_LEVELS, channels, NUM_ANCHORS, 10)

    def forward(self, images):
        maps = list(self.body(images).values())
        fpn = self.fpn(maps)
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        conf, cls_features = _run_heads(self.ClassHead, features)
        loc, reg_features = _run_heads(self.BboxHead, features)
        landms, _ = _run_heads(self.LandmarkHead, features)
        out = dict(loc=loc, conf=conf, landms=landms, features=features)
        if self.task_heads:
            out.update(cls_features=cls_features, reg_features=reg_features)
        return out

    def predict(self, images):
        out = self.forward(images)
        return out["loc"], F.softmax(out["conf"], dim=-1), out["landms"]

    @staticmethod
    def fitting_networks(state_dict):
        """Read by ``utils.checkpoint.check_keys`` to say which network refused weights are."""
        return fitting_networks(state_dict)


def _run_heads(heads, features):
    outputs = [head(feature) for head, feature in zip(heads, features)]
    return torch.cat([pred for pred, _ in outputs], dim=1), [feat for _, feat in outputs]


class DeployableRetinaFace(nn.Module):
    """Wraps a RetinaFace so that ``forward`` gives ``(loc, scores, landms)`` (export, tools)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.predict(images)


def build_model(cfg, task_heads=False, backbone_weights=None):
    """RetinaFace for the network settings ``cfg`` (see ``config.network_config``)."""
    return RetinaFace(cfg, task_heads=task_heads, backbone_weights=backbone_weights)


def fitting_networks(state_dict):
    """The names of ``config.NETWORKS`` whose detector (with or without task heads) has exactly
    the keys and shapes of ``state_dict``: which network a weights file is."""
    shapes = _shapes_of(state_dict)
    return [name for name in config.NETWORKS if any(_network_shapes(name, heads) == shapes for heads in (False, True))]


def weights_network(path, state_dict, network=None, activation=None, default=None):
    """``(network, activation)`` of the weights file ``path`` holding ``state_dict``: the
    arguments, else its sidecar JSON (``train.py`` writes one), else (network) the one its
    shapes fit, else ``default``; activation else ``config.DEFAULT_ACTIVATION``."""
    meta = describe_weights(path)
    network = network or meta.get("network")
    if not network:
        fitting = fitting_networks(state_dict)
        network = fitting[0] if fitting else default
    return network, activation or meta.get("activation") or config.DEFAULT_ACTIVATION


def _shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


@functools.lru_cache(maxsize=None)
def _network_shapes(name, task_heads):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return _shapes_of(build_model(config.network_config(name), task_heads=task_heads).state_dict())
