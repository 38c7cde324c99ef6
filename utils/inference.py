"""Turning one image into detections (SPEC section 7), below ``models/`` and ``layers/``.

``preprocess`` and ``postprocess`` follow the public ``test_widerface.py`` step by step
(float32 decode, ``scores > threshold``, numpy ``argsort`` order, ``+1`` NMS) so detections
are identical; the network and its priors are the caller's (``detector.FaceDetector``, the
ONNX check of ``export_onnx.py``). Also the weights' sidecar JSON and the WIDER text format.
"""
import json
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .box_utils import decode, decode_landm, nms
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


def preprocess(image, resize, rgb_mean):
    """A BGR image as the network's float32 ``H x W x 3`` input: resized, mean subtracted."""
    img = np.float32(image)
    if resize != 1:
        img = cv2.resize(img, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
    img -= rgb_mean
    return img


def postprocess(loc, conf, landms, priors, variance, size, resize=1, confidence_threshold=0.02, top_k=5000,
                nms_threshold=0.3, keep_top_k=750):
    """Raw outputs of one image (``loc [A, 4]``, softmax ``conf [A, 2]``, ``landms [A, 10]``
    tensors; the priors of the network input, whose ``(height, width)`` is ``size``) ->
    ``(dets [N, 5], landmarks [N, 10], dropped)``.

    ``dets`` are x1, y1, x2, y2, score in pixels of the original image, best first.
    Candidates (score above the threshold, or not finite) with any non-finite number are
    dropped and counted in ``dropped``: a diverged network cannot crash the drawing or the
    integer conversion of the text format.
    """
    height, width = size
    scale = torch.Tensor([width, height, width, height])
    boxes = decode(loc, priors, variance)
    boxes = (boxes * scale.to(loc.device) / resize).cpu().numpy()
    scores = conf.cpu().numpy()[:, 1]
    points = decode_landm(landms, priors, variance)
    points = (points * torch.Tensor([width, height] * 5).to(loc.device) / resize).cpu().numpy()

    candidates = (scores > confidence_threshold) | ~np.isfinite(scores)
    finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1) & np.isfinite(points).all(axis=1)
    dropped = int(np.count_nonzero(candidates & ~finite))
    inds = np.where(candidates & finite)[0]
    boxes, points, scores = boxes[inds], points[inds], scores[inds]
    order = scores.argsort()[::-1][:top_k]
    boxes, points, scores = boxes[order], points[order], scores[order]
    dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
    keep = nms(dets[:, :4], dets[:, 4], nms_threshold)
    return dets[keep][:keep_top_k], points[keep][:keep_top_k], dropped


def format_widerface(name, dets):
    """The public tools' text format: name, count, then ``x y w h score `` per detection.

    The score is ``str()`` of the float32 (``0.99912345``), as the public ``test_widerface.py``
    writes it, so the same weights give byte-identical files.
    """
    lines = [name, str(len(dets))]
    for box in dets:
        x, y = int(box[0]), int(box[1])
        w, h = int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
        lines.append(f"{x} {y} {w} {h} {str(box[4])} ")  # str() of the float32, as the public script
    return "\n".join(lines) + "\n"
