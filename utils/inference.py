"""Loading a trained detector and turning one image into detections (SPEC section 7).

The arithmetic follows the public ``test_widerface.py`` step by step (float32 decode,
``scores > threshold``, numpy ``argsort`` order, ``+1`` NMS) so detections are identical.
"""
import json
import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

import config
from layers import prior_boxes
from models import build_model

from .box_utils import decode, decode_landm, nms
from .checkpoint import load_state, read_state_dict
from .errors import TDKDError, located


def description_path(path):
    """``weights.pth`` -> ``weights.json``."""
    return os.path.splitext(os.fspath(path))[0] + ".json"


def describe_weights(path):
    """The sidecar ``<weights>.json`` written by ``train.py`` ({} for a published state dict)."""
    meta = description_path(path)
    if not os.path.isfile(meta):
        return {}
    try:
        with open(meta) as handle:
            described = json.load(handle)
    except (OSError, ValueError) as exc:
        raise TDKDError(located(meta, f"cannot read the weights' description ({exc})")) from None
    if not isinstance(described, dict):
        raise TDKDError(located(meta, "expected a JSON object such as {\"network\": \"mobile0.25\"}"))
    return described


def load_detector(path, network=None, activation=None, device="cpu"):
    """Build the network the weights need and load them strictly.

    Network and activation come from the flags, else from the sidecar JSON that ``train.py``
    writes, else the published defaults (mobile0.25, ReLU). Teacher heads are read off the keys.
    """
    meta = describe_weights(path)
    try:
        cfg = config.network_config(network or meta.get("network", "mobile0.25"),
                                    activation or meta.get("activation"))
    except KeyError as exc:
        raise TDKDError(located(description_path(path), exc.args[0])) from None
    state_dict = read_state_dict(path)
    task_heads = any(key.startswith("ClassHead.0.conv_dw_3x3") for key in state_dict)
    model = load_state(build_model(cfg, task_heads=task_heads), state_dict, path)
    return model.to(device).eval(), cfg


def scale_for_test(height, width, target_size=1600, max_size=2150, origin_size=False):
    """Scale factor of the WIDER FACE protocol: short side to 1600, long side at most 2150."""
    if origin_size:
        return 1
    resize = float(target_size) / float(min(height, width))
    if np.round(resize * max(height, width)) > max_size:
        resize = float(max_size) / float(max(height, width))
    return resize


@dataclass
class Timer:
    forward: list = field(default_factory=list)
    postprocess: list = field(default_factory=list)

    def summary(self):
        mean = lambda values: 1000 * float(np.mean(values)) if values else 0.0  # noqa: E731
        return f"forward {mean(self.forward):.1f} ms, post-processing {mean(self.postprocess):.1f} ms per image"


class FaceDetector:
    """Runs a loaded RetinaFace on BGR images and post-processes its outputs."""

    def __init__(self, model, cfg, device="cpu", confidence_threshold=0.02, top_k=5000,
                 nms_threshold=0.3, keep_top_k=750):
        self.model, self.cfg, self.device = model, cfg, torch.device(device)
        self.confidence_threshold = confidence_threshold
        self.top_k, self.nms_threshold, self.keep_top_k = top_k, nms_threshold, keep_top_k
        self.timer = Timer()

    @torch.no_grad()
    def __call__(self, image, resize=1):
        """Detections ``[N, 5]`` (x1, y1, x2, y2, score) and landmarks ``[N, 10]`` in pixels of
        the original image, best first."""
        start = time.perf_counter()
        img = np.float32(image)
        if resize != 1:
            img = cv2.resize(img, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
        height, width, _ = img.shape
        scale = torch.Tensor([width, height, width, height])
        img -= config.COMMON["rgb_mean"]
        tensor = torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0).to(self.device)
        loc, conf, landms = self.model.predict(tensor)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        forward_done = time.perf_counter()

        priors = prior_boxes(self.cfg, (height, width)).to(self.device)
        boxes = decode(loc.squeeze(0), priors, self.cfg["variance"])
        boxes = (boxes * scale.to(self.device) / resize).cpu().numpy()
        scores = conf.squeeze(0).cpu().numpy()[:, 1]
        points = decode_landm(landms.squeeze(0), priors, self.cfg["variance"])
        points = (points * torch.Tensor([width, height] * 5).to(self.device) / resize).cpu().numpy()

        inds = np.where(scores > self.confidence_threshold)[0]
        boxes, points, scores = boxes[inds], points[inds], scores[inds]
        order = scores.argsort()[::-1][: self.top_k]
        boxes, points, scores = boxes[order], points[order], scores[order]
        dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
        keep = nms(dets[:, :4], dets[:, 4], self.nms_threshold)
        dets, points = dets[keep][: self.keep_top_k], points[keep][: self.keep_top_k]
        self.timer.forward.append(forward_done - start)
        self.timer.postprocess.append(time.perf_counter() - forward_done)
        return dets, points


def format_widerface(name, dets):
    """The public tools' text format: name, count, then ``x y w h score `` per detection."""
    lines = [name, str(len(dets))]
    for box in dets:
        x, y = int(box[0]), int(box[1])
        w, h = int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
        lines.append(f"{x} {y} {w} {h} {box[4]} ")
    return "\n".join(lines) + "\n"
