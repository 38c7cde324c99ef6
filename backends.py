"""The network behind ``detector.FaceDetector``: one object with ``predict(images)`` per backend.

    eager             the loaded RetinaFace as trained: detections identical to the public code
    torch             BatchNorm folded into the convs (``models/fusion.py``), channels-last on a
                      CPU (where it measured faster), ``torch.inference_mode``
    onnxruntime       the exported ONNX graph in ONNX Runtime: a ``.onnx`` file, or the weights
                      exported once into the cache folder
    onnxruntime-int8  that graph quantised to INT8 (weights per channel, activations calibrated
                      on a few hundred training images), also made once into the cache folder

Every backend takes the contiguous float32 ``[batch, 3, H, W]`` tensor of
``utils.inference.network_input`` and returns ``(loc, scores, landmarks)`` tensors, so
``utils.inference.postprocess`` is the one post-processing of all of them. The cache folder is
``$TDKD_CACHE``, else ``~/.cache/tdkd``; a cached file is named after the sha256 of the weights
and of everything else it depends on, so it is rebuilt whenever one of them changes.
"""
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

import config
from models import DeployableRetinaFace
from models.fusion import frozen_inference_copy
from utils.checkpoint import writable_folder, write_bytes_atomic
from utils.errors import TDKDError, located
from utils.inference import network_input

BACKENDS = ("eager", "torch", "onnxruntime", "onnxruntime-int8")
ONNX_BACKENDS = ("onnxruntime", "onnxruntime-int8")
OPSET = 17
INPUT = "image"
OUTPUTS = ("loc", "scores", "landmarks")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def cache_folder():
    """Where exported and quantised graphs are kept: ``$TDKD_CACHE``, else ``~/.cache/tdkd``."""
    if os.environ.get("TDKD_CACHE"):
        return Path(os.environ["TDKD_CACHE"])
    try:
        return Path.home() / ".cache" / "tdkd"
    except RuntimeError:  # no HOME and no home folder in the user database
        raise TDKDError(f"no home folder for the ONNX cache; {CACHE_HINT}") from None


CACHE_HINT = "set TDKD_CACHE to a writable folder"


def writable_cache(folder):
    """The cache ``folder`` made and writable, or one line saying why not and how to choose another."""
    try:
        return writable_folder(folder)
    except TDKDError as exc:
        raise TDKDError(f"{exc} (the ONNX cache folder: {CACHE_HINT})") from None


# ---------------------------------------------------------------- PyTorch


class TorchPredictor:
    """A RetinaFace for inference only: BatchNorm folded, no autograd, channels-last on a CPU.

    Outputs equal the eager model's up to float rounding (measured: scores within 1e-5).
    """

    def __init__(self, model, device="cpu"):
        channels_last = torch.device(device).type == "cpu"
        self.module = frozen_inference_copy(DeployableRetinaFace(model), channels_last=channels_last)

    def predict(self, images):
        with torch.inference_mode():
            return self.module(images)


# ---------------------------------------------------------------- ONNX export and ONNX Runtime


def export_onnx(model, path, opset=OPSET, metadata=None):
    """Write ``model`` (a RetinaFace) to ``path`` as ONNX with dynamic batch, height and width;
    ``metadata`` (str -> str, e.g. the network's name) goes into the file's properties."""
    import onnx

    dynamic = {INPUT: {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 1: "priors"} for name in OUTPUTS})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(DeployableRetinaFace(model).eval(), (torch.zeros(1, 3, 480, 640),), buffer,
                          dynamo=False, input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes=dynamic, opset_version=opset)
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {k: str(v) for k, v in (metadata or {}).items()})
    write_bytes_atomic(graph.SerializeToString(), path)


def read_metadata(path):
    """The properties ``export_onnx`` stored in an ONNX file (network, activation, int8)."""
    import onnx

    try:
        graph = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parsing failure is reported the same way
        raise TDKDError(located(path, f"cannot read the ONNX file ({type(exc).__name__}: {exc})")) from None
    return {prop.key: prop.value for prop in graph.metadata_props}


class OnnxPredictor:
    """An ONNX file in an ONNX Runtime session with PyTorch's thread count (one setting for
    every backend: ``torch.set_num_threads`` or ``OMP_NUM_THREADS``)."""

    def __init__(self, path, device="cpu", threads=None):
        import onnxruntime

        device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise TDKDError("--device cuda with an onnxruntime backend needs the onnxruntime-gpu package; "
                                "this onnxruntime runs on the CPU only")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Worker threads spin between the operators of a run but stop at its end: spinning on
        # after it took the cores from the post-processing, the next image's preprocessing and
        # any other session (docs/SPEED.md, "Threads of ONNX Runtime").
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3  # no warnings about unused initialisers or layout choices
        self.path = os.fspath(path)
        try:
            self.session = onnxruntime.InferenceSession(self.path, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise TDKDError(located(path, f"onnxruntime cannot load it ({str(exc).splitlines()[0]})")) from None

    def predict(self, images):
        outputs = self.session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(images.cpu().numpy())})
        return tuple(torch.from_numpy(output) for output in outputs)


# ---------------------------------------------------------------- INT8


def calibration_images(folder=None, count=None, seed=None):
    """``count`` network inputs ``[1, 3, H, W]`` (float32 numpy) for INT8 calibration, each at
    its own size: the images of ``folder`` (searched recursively, sorted by name), else the
    synthetic training images of ``data.synthetic`` (the quickstart's train set, drawn in memory)."""
    settings = config.DEPLOYMENT["calibration"]
    count = count or settings["images"]
    mean = config.COMMON["rgb_mean"]
    if folder is None:
        from data.synthetic import render_image

        seed = settings["seed"] if seed is None else seed
        for index in range(count):
            image, _ = render_image(seed, "train", index, tuple(settings["synthetic_size"]))
            yield network_input(image, 1, mean)[None]
        return
    for path in calibration_files(folder, count):
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        if image is None:
            raise TDKDError(located(path, "cannot read image (missing or corrupt)"))
        yield network_input(image, 1, mean)[None]


def calibration_files(folder, count):
    """The first ``count`` images below ``folder`` by sorted relative path."""
    if not os.path.isdir(folder):
        raise TDKDError(located(folder, "calibration folder not found"))
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise TDKDError(located(folder, f"no images ({', '.join(IMAGE_EXTENSIONS)}) below this folder"))
    return files[:count]


def quantize_int8(onnx_path, output, images):
    """Static INT8 quantisation of an exported float graph with ONNX Runtime's tools: shape
    inference and graph optimisation (``quant_pre_process``), then ``quantize_static`` in the
    QDQ format with the settings of ``config.DEPLOYMENT['int8']``, activation ranges from
    ``images`` (network inputs) by min / max. (The histogram calibrators, percentile and
    entropy, keep every activation of every image: over 20 GB for 300 images at 640x480.)"""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(images)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {INPUT: image}

    settings = config.DEPLOYMENT["int8"]
    metadata = read_metadata(onnx_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = os.path.join(tmp, "prepared.onnx"), os.path.join(tmp, "int8.onnx")
        quant_pre_process(os.fspath(onnx_path), prepared, skip_symbolic_shape=True)
        quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=settings["op_types"], extra_options=settings["extra_options"],
                        nodes_to_exclude=_float_nodes(prepared, settings["keep_float"]))
        graph = onnx.load(quantized)
        onnx.helper.set_model_props(graph, {**metadata, "int8": "1"})
        write_bytes_atomic(graph.SerializeToString(), output)


def _float_nodes(path, prefixes):
    """Names of the nodes of the ONNX file ``path`` that start with one of ``prefixes``."""
    import onnx

    return [node.name for node in onnx.load(path).graph.node if node.name.startswith(tuple(prefixes))]


# ---------------------------------------------------------------- the cache and the one entry point


def _digest(*parts):
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return hasher.hexdigest()[:16]


def onnx_for_weights(model, cfg, weights, int8=False, calibration=None, cache=None):
    """The cached ONNX file of ``weights`` (float, or INT8 with ``int8``), made on first use.

    ``calibration``: a folder of images for INT8 (default: synthetic training images).
    """
    import onnxruntime

    cache = Path(cache) if cache else cache_folder()
    meta = {"network": cfg["name"], "activation": cfg["activation"]}
    weights_hash = _digest(Path(weights).read_bytes())
    key = [weights_hash, meta, OPSET, torch.__version__]
    float_path = cache / f"{Path(weights).stem}-{_digest(*key)}.onnx"
    if not float_path.exists():
        writable_cache(cache)
        export_onnx(model, float_path, metadata=meta)
    if not int8:
        return float_path
    files = ([str(p.relative_to(calibration)) + f":{p.stat().st_size}"
              for p in calibration_files(calibration, config.DEPLOYMENT["calibration"]["images"])]
             if calibration else "synthetic")
    key += [onnxruntime.__version__, config.DEPLOYMENT, files]
    int8_path = cache / f"{Path(weights).stem}-int8-{_digest(*key)}.onnx"
    if not int8_path.exists():
        writable_cache(cache)
        quantize_int8(float_path, int8_path, calibration_images(calibration))
    return int8_path


def build_predictor(backend, model, cfg, weights=None, device="cpu", calibration=None, cache=None):
    """The ``predict`` object of ``backend`` for a loaded ``model``. The ONNX files of the
    weights file ``weights`` are cached; without one (a model in training) they are made
    afresh in a temporary folder."""
    if backend == "eager":
        return model
    if backend == "torch":
        return TorchPredictor(model, device)
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    int8 = backend == "onnxruntime-int8"
    if weights is not None:
        return OnnxPredictor(onnx_for_weights(model, cfg, weights, int8, calibration, cache), device)
    with tempfile.TemporaryDirectory() as tmp:  # a session keeps the graph in memory
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model, path, metadata={"network": cfg["name"], "activation": cfg["activation"]})
        if int8:
            quantize_int8(path, os.path.join(tmp, "int8.onnx"), calibration_images(calibration))
            path = os.path.join(tmp, "int8.onnx")
        return OnnxPredictor(path, device)


def add_backend_arguments(parser):
    """``--backend`` and ``--calibration`` of the scripts that run a detector."""
    parser.add_argument("--backend", choices=BACKENDS,
                        help="what runs the network: eager (PyTorch as trained, detections identical to the "
                             "public code), torch (BatchNorm folded), onnxruntime, onnxruntime-int8 (exported "
                             "once into ~/.cache/tdkd or $TDKD_CACHE); default: eager, or onnxruntime for a "
                             ".onnx file (export_onnx.py)")
    parser.add_argument("--calibration", metavar="FOLDER",
                        help="--backend onnxruntime-int8: calibrate on the images below FOLDER (default: "
                             "synthetic training images)")
