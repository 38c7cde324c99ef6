"""Turning one image into detections (docs/METHOD.md §7), below ``models/`` and ``layers/``.

``preprocess`` and ``postprocess`` follow the public ``test_widerface.py`` step by step
(float32 decode, ``scores > threshold``, numpy ``argsort`` order, ``+1`` NMS) so detections
are identical; the network and its priors are the caller's (``detector.FaceDetector``, the
ONNX check of ``export_onnx.py``). Also the WIDER text format; the weights' sidecar JSON is
read by ``utils.checkpoint`` (re-exported here).
"""
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .box_utils import decode, decode_landm, nms
from .checkpoint import describe_weights, description_path  # noqa: F401 - the tools' import path


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
    """Seconds per image of each stage of ``detector.FaceDetector``."""
    preprocess: list = field(default_factory=list)
    forward: list = field(default_factory=list)
    postprocess: list = field(default_factory=list)

    def summary(self):
        mean = lambda values: 1000 * float(np.mean(values)) if values else 0.0  # noqa: E731
        return (f"preprocessing {mean(self.preprocess):.1f} ms, forward {mean(self.forward):.1f} ms, "
                f"post-processing {mean(self.postprocess):.1f} ms per image")


def network_input(image, resize, rgb_mean):
    """A BGR ``H x W x 3`` image as the network's contiguous float32 ``3 x H x W`` input:
    converted to float32, resized (bilinear, in float32), mean subtracted.

    The public steps (``np.float32``, ``cv2.resize``, ``img -= rgb_mean``) done plane by plane:
    the small image is split into its channels first, each is resized straight into its plane of
    the output and the mean is subtracted in place (at the image's own size, converted and
    subtracted in one pass). Bilinear resizing treats channels apart, so the values are
    bit-identical to the public order (tested), and no pass reads the large interleaved image
    with a stride (2.5x faster at the WIDER test scale).
    """
    planes = cv2.split(np.asarray(image))
    if resize != 1:
        first = cv2.resize(np.float32(planes[0]), None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
        chw = np.empty((3, *first.shape), np.float32)
        chw[0] = first
        for channel in (1, 2):
            cv2.resize(np.float32(planes[channel]), None, chw[channel], fx=resize, fy=resize,
                       interpolation=cv2.INTER_LINEAR)
        chw -= np.float32(rgb_mean)[:, None, None]
        return chw
    chw = np.empty((3, *planes[0].shape), np.float32)
    for channel in range(3):  # converted and mean subtracted in one pass
        cv2.subtract(planes[channel], float(np.float32(rgb_mean[channel])), chw[channel], dtype=cv2.CV_32F)
    return chw


def preprocess(image, resize, rgb_mean):
    """``network_input`` seen as ``H x W x 3`` (the public ``test_widerface.py``'s layout)."""
    return network_input(image, resize, rgb_mean).transpose(1, 2, 0)


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
    scores = conf[:, 1].cpu().numpy()
    # Only the candidates are decoded: decoding is per prior, so their boxes and points are
    # bit-identical to those of the public code, which decodes all priors and selects after.
    candidates = np.flatnonzero((scores > confidence_threshold) | ~np.isfinite(scores))
    index = torch.from_numpy(candidates).to(loc.device)
    kept_priors = priors[index]
    boxes = decode(loc[index], kept_priors, variance)
    boxes = (boxes * torch.Tensor([width, height, width, height]).to(loc.device) / resize).cpu().numpy()
    points = decode_landm(landms[index], kept_priors, variance)
    points = (points * torch.Tensor([width, height] * 5).to(loc.device) / resize).cpu().numpy()
    scores = scores[candidates]

    finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1) & np.isfinite(points).all(axis=1)
    dropped = int(np.count_nonzero(~finite))
    if dropped:
        boxes, points, scores = boxes[finite], points[finite], scores[finite]
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
