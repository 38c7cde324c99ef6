"""The Python API: a face detector from a weights file, in one import.

    from detector import FaceDetector

    detector = FaceDetector.from_weights(nms_threshold=0.4)  # the shipped distilled student, detect.py's NMS
    faces = detector.detect("photo.jpg")                      # a path, or a BGR array (cv2.imread); color="rgb"
    faces = faces[faces.scores >= 0.6]                        # the faces detect.py draws (its --vis_thres)
    for box, score, points in zip(faces.boxes, faces.scores, faces.landmarks):
        print(box, score, points)                             # x1 y1 x2 y2, probability, 5 x (x, y)

Defaults are those of ``test_widerface.py`` (docs/METHOD.md §7): confidence > 0.02, top 5000,
NMS at IoU 0.3, keep 750, at the image's own size (``resize=scale_for_test(h, w)`` gives the
WIDER FACE test scale). ``detect.py`` uses the public ``detect.py``'s NMS 0.4 instead.

``from_weights(..., backend=...)`` picks what runs the network (``backends.py``):
"onnxruntime" (default on a CPU: the weights exported once into the cache folder, the same
faces as "eager" with scores within 1e-5, about 2-3x faster), "eager" (detections identical to
the public code; the default on a GPU), "torch" (BatchNorm folded), "onnxruntime-int8", or
"openvino-bf16" / "openvino-mixed" / "openvino-int8" (the optional ``openvino`` package); a ``.onnx`` file runs in
ONNX Runtime or OpenVINO. Post-processing is the same for all.

This module sits above ``models/``, ``layers/`` and ``utils/``: it builds the network
(``models``), its priors (``layers``) and runs the one post-processing of
``utils.inference.postprocess``, which itself depends on nothing but ``utils``.
"""
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

import config
from backends import (BACKENDS, INT8_BACKENDS, ONNX_BACKENDS, build_predictor, default_backend, onnx_predictor,
                      read_metadata)
from layers import prior_boxes
from models import build_model
from models.retinaface import weights_network
from utils.checkpoint import load_state, read_state_dict, weights_kind
from utils.distributed import resolve_device
from utils.errors import TDKDError, located
from utils.images import check_pixels, read_image  # noqa: F401 - detector.read_image: the API's reader
from utils.inference import Timer, description_path, network_input, postprocess

# The published TDKD student (MobileNet0.25 distilled from its teacher), shipped in weights/.
DEFAULT_WEIGHTS = config.repo_path(config.DEFAULT_DETECTOR)
COLORS = ("bgr", "rgb")  # any case


def load_detector(path=DEFAULT_WEIGHTS, network=None, activation=None, device="cpu"):
    """Build the network the weights need and load them strictly: ``(model, network cfg)``.

    Network and activation come from the arguments, else from the sidecar JSON that
    ``train.py`` writes, else (network) the one the weights' shapes fit, else the published
    defaults (mobile0.25, ReLU). Teacher heads are read off the keys. Weights holding nan or
    inf (a diverged run) are refused.
    """
    state_dict = read_state_dict(path)
    try:
        cfg = config.network_config(*weights_network(path, state_dict, network, activation,
                                                     config.DEFAULT_NETWORK["student"]))
    except KeyError as exc:
        raise TDKDError(located(description_path(path), exc.args[0])) from None
    non_finite = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if non_finite:
        raise TDKDError(located(path, f"{len(non_finite)} tensors hold nan or inf (e.g. {non_finite[0]}): "
                                      "these weights diverged; use an earlier checkpoint"))
    task_heads = weights_kind(state_dict) == "teacher"
    model = load_state(build_model(cfg, task_heads=task_heads), state_dict, path)
    return model.to(device).eval(), cfg


def load_onnx(path, backend="onnxruntime", network=None, activation=None, device="cpu"):
    """An exported ``.onnx`` file in ONNX Runtime or OpenVINO (``backend``): ``(predictor,
    network cfg)``, the network
    from the arguments, else from the file's properties (``export_onnx.py`` writes them)."""
    if backend not in ONNX_BACKENDS:
        raise TDKDError(located(path, f"an ONNX file runs with one of the backends {ONNX_BACKENDS}, not {backend!r}"))
    if not os.path.isfile(path):
        raise TDKDError(located(path, "ONNX file not found"))
    meta = read_metadata(path)
    if backend in INT8_BACKENDS and meta.get("int8") != "1":
        raise TDKDError(located(path, "not an INT8 file: run it with backend 'onnxruntime', or quantise it "
                                      "with export_onnx.py --int8"))
    try:
        cfg = config.network_config(network or meta.get("network", "mobile0.25"), activation or meta.get("activation"))
    except KeyError as exc:
        raise TDKDError(located(path, exc.args[0])) from None
    return onnx_predictor(backend, path, device), cfg


def checked_image(image, color="bgr", max_pixels=None):
    """An ``H x W x 3`` BGR array the network can take (uint8, or float / integer values in
    0-255), or one ``ValueError`` saying what is wrong: empty, grey or 4 channels, a float
    image scaled 0-1, values outside 0-255, non-finite values, or more than ``max_pixels``
    (default ``config.MAX_IMAGE_PIXELS``) pixels."""
    if image is None:
        raise ValueError("no image (None): cv2.imread returns None for a file it cannot read; "
                         "check the path, or pass the path itself to detect() for an error naming the file")
    if str(color).lower() not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, not {color!r}")
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"the image is empty (shape {image.shape})")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}{_channels_hint(image)}")
    try:
        check_pixels("image", image.shape[1], image.shape[0],
                     config.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)
    except TDKDError as exc:
        raise ValueError(str(exc)) from None
    image = _checked_values(image)
    return image[:, :, ::-1] if str(color).lower() == "rgb" else image


def _channels_hint(image):
    if image.ndim == 2 or image.ndim == 3 and image.shape[2] == 1:
        return " (grey: convert it, e.g. cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))"
    if image.ndim == 3 and image.shape[2] == 4:
        return " (4 channels: drop the alpha channel, image[:, :, :3])"
    return ""


def _checked_values(image):
    """uint8 as it is; other integer and float arrays with values in 0-255 as uint8 / float32."""
    if image.dtype == np.uint8:
        return image
    expected = "expected uint8 BGR values 0-255, as cv2.imread gives"
    floating = np.issubdtype(image.dtype, np.floating)
    if not (floating or np.issubdtype(image.dtype, np.integer)) or image.dtype == np.bool_:
        raise ValueError(f"{expected}; got dtype {image.dtype}")
    if floating and not np.isfinite(image).all():
        raise ValueError(f"{expected}; got nan or inf values")
    low, high = image.min(), image.max()
    if low < 0 or high > 255:
        raise ValueError(f"{expected}; got values from {low:g} to {high:g} (dtype {image.dtype})")
    if floating and high <= 1:
        raise ValueError(f"{expected}; got a {image.dtype} image scaled 0-1: multiply it by 255 "
                         "(e.g. (image * 255).round().astype(np.uint8))")
    return image.astype(np.float32 if floating else np.uint8, copy=False)


@dataclass
class Faces:
    """Detections of one image, best first, in pixels of that image."""
    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2
    scores: np.ndarray  # [N] face probability
    landmarks: np.ndarray  # [N, 5, 2] (x, y): left eye, right eye, nose, left and right mouth corner

    @classmethod
    def from_arrays(cls, dets, points):
        """From the ``[N, 5]`` detections and ``[N, 10]`` landmarks of ``FaceDetector.__call__``."""
        return cls(dets[:, :4], dets[:, 4], points.reshape(-1, 5, 2))

    def __len__(self):
        return len(self.scores)

    def __getitem__(self, index):
        """``faces[faces.scores >= 0.5]``: a subset, as ``Faces``."""
        return Faces(self.boxes[index], self.scores[index], self.landmarks[index])

    def to_list(self):
        """JSON-ready: ``[{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5]}]``."""
        return [dict(box=[float(v) for v in box], score=float(score), landmarks=points.tolist())
                for box, score, points in zip(self.boxes, self.scores, self.landmarks.astype(float))]


class FaceDetector:
    """A loaded RetinaFace and its post-processing (see the module's docstring)."""

    clock = staticmethod(time.perf_counter)  # of ``timer``; bench/infer_speed.py --clock cpu: process time

    def __init__(self, model, cfg, device="cpu", confidence_threshold=0.02, top_k=5000,
                 nms_threshold=0.3, keep_top_k=750, max_pixels=None):
        self.model, self.cfg, self.device = model, cfg, torch.device(device)
        self.max_pixels = config.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        self.confidence_threshold = confidence_threshold
        self.top_k, self.nms_threshold, self.keep_top_k = top_k, nms_threshold, keep_top_k
        self.timer = Timer()
        self.dropped_boxes, self.dropped_images, self.images = 0, 0, 0

    @classmethod
    def from_weights(cls, weights=DEFAULT_WEIGHTS, network=None, activation=None, device="cpu", backend=None,
                     calibration=None, cache=None, **settings):
        """A detector for a weights file (network from its JSON) run by ``backend`` (see the
        module's docstring); ``settings`` are the thresholds and ``max_pixels``. ``device``:
        "cpu", "cuda" or "cuda:N" (a ``TDKDError`` where that GPU is absent). A ``.onnx`` file (network from its
        properties) runs in ONNX Runtime as it is (backend default: ``backends.default_backend``,
        "onnxruntime" on a CPU, and always for a ``.onnx`` file). ``calibration``: a folder of images for
        "onnxruntime-int8" (default: synthetic training images); ``cache``: the folder for the
        exported files (default: ``backends.cache_folder()``)."""
        if backend not in (None, *BACKENDS):
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        device = resolve_device(device)
        if os.fspath(weights).endswith(".onnx"):
            return cls(*load_onnx(weights, backend or "onnxruntime", network, activation, device), device, **settings)
        backend = backend or default_backend(device)
        model, cfg = load_detector(weights, network, activation, device)
        return cls(build_predictor(backend, model, cfg, weights, device, calibration, cache), cfg, device, **settings)

    def detect(self, image, color="bgr", resize=1):
        """Faces in an image file (a path) or an ``H x W x 3`` image (numpy or anything
        ``np.asarray`` takes, e.g. PIL).

        ``color`` says how an array's channels are ordered: "bgr" (``cv2.imread``) or "rgb"
        (PIL, matplotlib), in any case; the network was trained on BGR. Values are 0-255 (a float
        image scaled 0-1 is refused, see ``checked_image``). Warns when non-finite boxes are dropped.
        """
        if isinstance(image, (str, os.PathLike)):
            image, color = read_image(image, self.max_pixels), "bgr"
        image = checked_image(image, color, self.max_pixels)
        dropped = self.dropped_boxes
        dets, points = self(image, resize)
        if self.dropped_boxes > dropped:
            warnings.warn(f"dropped {self.dropped_boxes - dropped} non-finite boxes: the weights may have diverged",
                          stacklevel=2)
        return Faces.from_arrays(dets, points)

    @torch.inference_mode()
    def __call__(self, image, resize=1):
        """Detections ``[N, 5]`` (x1, y1, x2, y2, score) and landmarks ``[N, 10]`` of a BGR image,
        in pixels of the original image, best first (the arrays ``test_widerface.py`` writes)."""
        start = self.clock()
        image = np.asarray(image)
        if resize == 1 and image.dtype == np.uint8 and hasattr(self.model, "predict_image"):
            size, prepared = image.shape[:2], start  # the openvino backends convert the image themselves
            loc, conf, landms = self.model.predict_image(image)
        else:
            img = network_input(image, resize, config.COMMON["rgb_mean"])
            size, tensor = img.shape[1:], torch.from_numpy(img).unsqueeze(0).to(self.device)
            prepared = self.clock()
            loc, conf, landms = self.model.predict(tensor)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        forward_done = self.clock()
        priors = prior_boxes(self.cfg, size).to(loc.device)
        dets, points, dropped = postprocess(
            loc.squeeze(0), conf.squeeze(0), landms.squeeze(0), priors, self.cfg["variance"], size, resize,
            self.confidence_threshold, self.top_k, self.nms_threshold, self.keep_top_k)
        self.timer.preprocess.append(prepared - start)
        self.timer.forward.append(forward_done - prepared)
        self.timer.postprocess.append(self.clock() - forward_done)
        self.images += 1
        self.dropped_boxes += dropped
        self.dropped_images += dropped > 0
        return dets, points

    def warn_dropped(self, weights):
        """One warning for a whole run if non-finite boxes were dropped (none otherwise)."""
        if self.dropped_boxes:
            warnings.warn(f"{weights}: dropped {self.dropped_boxes} non-finite boxes in {self.dropped_images} "
                          f"of {self.images} images: the weights may have diverged", stacklevel=2)
