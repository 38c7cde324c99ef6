"""The network behind ``detector.FaceDetector``: one object with ``predict(images)`` per backend.

    eager             the loaded RetinaFace as trained: detections identical to the public code
    torch             BatchNorm folded into the convs (``models/fusion.py``), channels-last on a
                      CPU (where it measured faster), ``torch.inference_mode``
    onnxruntime       the exported ONNX graph in ONNX Runtime: a ``.onnx`` file, or the weights
                      exported once into the cache folder
    onnxruntime-int8  that graph quantised to INT8 (weights per channel, activations calibrated
                      on a few hundred training images), also made once into the cache folder
    openvino-bf16     the float graph in OpenVINO at bfloat16 (optional package ``openvino``):
                      on a CPU with AMX about twice as fast as onnxruntime, scores within ~1e-2
    openvino-mixed    the same with the backbone's first two stages in float32, where bfloat16
                      rounding cost Easy AP (``config.DEPLOYMENT['openvino_mixed_float32']``)
    openvino-int8     the INT8 graph of onnxruntime-int8 in OpenVINO (AMX / VNNI int8 kernels)

Every backend takes the contiguous float32 ``[batch, 3, H, W]`` tensor of
``utils.inference.network_input`` and returns ``(loc, scores, landmarks)`` tensors, so
``utils.inference.postprocess`` is the one post-processing of all of them. The cache folder is
``$TDKD_CACHE``, else ``~/.cache/tdkd``. A cached file is named after its key, the sha256 of
everything it depends on: the weights, the network's settings, the source of the code that
defines the graph (``models/`` and the export functions here), the export settings and
versions, and for INT8 the calibration images' contents. The full key is stored in the file's properties and the sha256
of the whole file in a ``.sha256`` file beside it; a file whose checksum or key does not match
(replaced, corrupted, truncated) is rebuilt, with one line on stderr saying so.
"""
import collections
import contextlib
import hashlib
import importlib.util
import inspect
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

import config
from models import DeployableRetinaFace
from models.fusion import frozen_inference_copy
from utils.checkpoint import writable_folder, write_bytes_atomic, write_text_atomic
from utils.errors import TDKDError, located
from utils.inference import network_input

BACKENDS = ("eager", "torch", "onnxruntime", "onnxruntime-int8", "openvino-bf16", "openvino-mixed", "openvino-int8")
ONNX_BACKENDS = ("onnxruntime", "onnxruntime-int8", "openvino-bf16", "openvino-mixed", "openvino-int8")
INT8_BACKENDS = ("onnxruntime-int8", "openvino-int8")  # both run the one cached INT8 file
# OpenVINO's inference precision of each of its backends: the INT8 graph keeps its float nodes
# in float32 (bfloat16 there was no faster, docs/SPEED.md)
OPENVINO_PRECISION = {"openvino-bf16": "bf16", "openvino-mixed": "bf16", "openvino-int8": "f32"}
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


class OpenVinoPredictor:
    """An ONNX file compiled by OpenVINO for the CPU at ``precision`` ("bf16" or "f32"; a CPU
    without bfloat16 instructions runs "bf16" in float32), with PyTorch's thread count; the
    layers whose names start with one of ``float32_layers`` run in float32 whatever the precision.

    The first image of a size runs the model compiled for every size; from the second image of
    that size on, a copy compiled for it alone (about 0.1 s once), which ran faster (640x480, one
    thread: 5.5 against 6.6 ms); the last ``config.DEPLOYMENT['openvino_fixed_sizes']`` sizes
    keep theirs. Inputs are handed to OpenVINO without a copy (0.8 ms at 640x480)."""

    def __init__(self, path, precision, device="cpu", float32_layers=()):
        if torch.device(device).type != "cpu":
            raise TDKDError("the openvino backends run on the CPU only: use --device cpu, or --backend eager on a GPU")
        try:
            import openvino
        except ImportError:
            raise TDKDError("the openvino backends need the openvino package, which requirements.txt leaves out: "
                            "pip install openvino (docs/SPEED.md, lower precision on the CPU)") from None
        self.path = os.fspath(path)
        self.settings = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
                         "INFERENCE_PRECISION_HINT": precision}
        self.core = openvino.Core()
        try:
            network = self.core.read_model(self.path)
        except Exception as exc:  # noqa: BLE001 - openvino raises its own exception types
            raise TDKDError(located(path, f"openvino cannot load it ({str(exc).splitlines()[0]})")) from None
        if float32_layers:
            network = keep_float32(self.core, network, float32_layers, path)
        self.networks = {"tensor": network, "image": with_image_input(network)}
        self.compiled = self.core.compile_model(network, "CPU", self.settings)  # float32 input of any size
        self.any_size = {"tensor": self.compiled.create_infer_request()}
        self.sizes_seen = set()
        self.fixed = collections.OrderedDict()  # (input kind, shape) -> infer request, least recently used first

    def predict(self, images):
        """Outputs for the float32 ``[batch, 3, H, W]`` input of ``network_input``, as every backend."""
        return self._infer("tensor", np.ascontiguousarray(images.cpu().numpy()))

    def predict_image(self, image):
        """Outputs for a uint8 BGR ``H x W x 3`` image at its own size: OpenVINO converts it to
        float32 and subtracts the mean itself, the same float32 input as ``network_input(image, 1,
        rgb_mean)`` (tested), 1.1 ms sooner at 640x480 (no input array to write and copy)."""
        return self._infer("image", np.ascontiguousarray(image)[None])

    def _infer(self, kind, array):
        results = self.request_for(kind, array.shape).infer({INPUT: array}, share_inputs=True, share_outputs=True)
        # the request reuses its output buffers at the next call: copy them out
        return tuple(torch.from_numpy(np.array(results[name])) for name in OUTPUTS)

    def request_for(self, kind, shape):
        """The infer request that runs an input of ``kind`` ("tensor" or "image") and ``shape``
        (see the class docstring); its ``get_compiled_model()`` is the model compiled for that
        shape or for every one."""
        key = (kind, shape)
        if key in self.fixed:
            self.fixed.move_to_end(key)
            return self.fixed[key]
        limit = config.DEPLOYMENT["openvino_fixed_sizes"]
        if key not in self.sizes_seen or not limit:
            self.sizes_seen.add(key)
            if kind not in self.any_size:
                self.any_size[kind] = self.core.compile_model(self.networks[kind], "CPU", self.settings) \
                    .create_infer_request()
            return self.any_size[kind]
        network = self.networks[kind].clone()
        network.reshape({INPUT: list(shape)})
        self.fixed[key] = self.core.compile_model(network, "CPU", self.settings).create_infer_request()
        if len(self.fixed) > limit:
            self.fixed.popitem(last=False)
        return self.fixed[key]


def with_image_input(network):
    """``network`` (an OpenVINO model) taking a uint8 BGR ``[1, H, W, 3]`` image: its conversion
    to float32 and the subtraction of ``config.COMMON['rgb_mean']`` done by OpenVINO's
    preprocessing, as ``network_input`` does them at the image's own size."""
    from openvino import Layout, Type
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(network.clone())
    steps.input(INPUT).tensor().set_element_type(Type.u8).set_layout(Layout("NHWC"))
    steps.input(INPUT).model().set_layout(Layout("NCHW"))
    steps.input(INPUT).preprocess().convert_element_type(Type.f32).mean([float(m) for m in config.COMMON["rgb_mean"]])
    return steps.build()


def keep_float32(core, model, prefixes, path):
    """``model`` (an OpenVINO model read from ``path``) with the layers whose names start with
    one of ``prefixes`` marked to run in float32 under a lower inference precision: OpenVINO's
    ``precise`` runtime attribute (``ov::disable_fp16_compression`` in C++, which the Python API
    lacks), written into the model's IR and read back."""
    import openvino

    names = "|".join(re.escape(prefix) for prefix in prefixes)
    layer = re.compile(rf'(<layer [^>]*\bname="(?:{names})[^"]*"[^>]*>)')
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        openvino.save_model(model, xml, compress_to_fp16=False)
        text, marked = layer.subn(r'\1<rt_info><attribute name="precise" version="0" /></rt_info>', xml.read_text())
        if not marked:
            raise TDKDError(located(path, f"no layer to keep in float32: none is named {' or '.join(prefixes)}..."))
        weights = np.fromfile(xml.with_suffix(".bin"), np.uint8)
    return core.read_model(text.encode(), openvino.Tensor(weights))


def onnx_predictor(backend, path, device="cpu"):
    """The runtime of the ONNX backend ``backend`` on the file ``path``."""
    if backend in OPENVINO_PRECISION:
        float32_layers = config.DEPLOYMENT["openvino_mixed_float32"] if backend == "openvino-mixed" else ()
        return OpenVinoPredictor(path, OPENVINO_PRECISION[backend], device, float32_layers)
    return OnnxPredictor(path, device)


# ---------------------------------------------------------------- INT8


class CalibrationImages:
    """``count`` network inputs ``[1, 3, H, W]`` (float32 numpy) for INT8 calibration, each at
    its own size and made when indexed (a few hundred would not fit in memory at once): the
    images of ``folder`` (searched recursively, sorted by name), else the synthetic training
    images of ``data.synthetic`` (the quickstart's train set with seed ``seed``)."""

    def __init__(self, folder=None, count=None, seed=None):
        settings = config.DEPLOYMENT["calibration"]
        count = count or settings["images"]
        self.seed = settings["seed"] if seed is None else seed
        self.size = tuple(settings["synthetic_size"])
        self.files = None if folder is None else calibration_files(folder, count)
        self.count = count if folder is None else len(self.files)

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        if self.files is None:
            from data.synthetic import render_image

            image, _ = render_image(self.seed, "train", index, self.size)
        else:
            image = cv2.imread(os.fspath(self.files[index]), cv2.IMREAD_COLOR)
            if image is None:
                raise TDKDError(located(self.files[index], "cannot read image (missing or corrupt)"))
        return network_input(image, 1, config.COMMON["rgb_mean"])[None]


def calibration_files(folder, count):
    """The first ``count`` images below ``folder`` by sorted relative path."""
    if not os.path.isdir(folder):
        raise TDKDError(located(folder, "calibration folder not found; for WIDER FACE's train images see "
                                        "docs/TRAINING.md#data; without a folder, synthetic images calibrate"))
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise TDKDError(located(folder, f"no images ({', '.join(IMAGE_EXTENSIONS)}) below this folder"))
    return files[:count]


def quantize_int8(onnx_path, output, images, metadata=None, settings=None, ranges=None):
    """Static INT8 quantisation of an exported float graph with ONNX Runtime's tools: shape
    inference and graph optimisation (``quant_pre_process``), then ``quantize_static`` in the
    QDQ format with ``settings`` (default ``config.DEPLOYMENT['int8']``), activation ranges from
    ``images`` (network inputs, fed one at a time) by the calibration method of
    ``settings['method']`` (minmax, entropy or percentile); ``metadata`` is added to the float
    file's properties. ``ranges``: a JSON file of ONNX Runtime's
    calibration cache, read if it exists (no calibration) and written otherwise, so that one
    calibration serves several choices of float nodes (``bench/int8_calibration.py``)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = settings or config.DEPLOYMENT["int8"]
    metadata = {**read_metadata(onnx_path), "int8": "1", **(metadata or {})}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = os.path.join(tmp, "prepared.onnx"), os.path.join(tmp, "int8.onnx")
        quant_pre_process(os.fspath(onnx_path), prepared, skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantize_static(prepared, quantized, _OneAtATime(images), quant_format=QuantFormat.QDQ,
                            per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=settings["op_types"], calibrate_method=methods[settings["method"]],
                            extra_options={"CalibStridedMinMax": 1, **settings["extra_options"]},
                            nodes_to_exclude=_float_nodes(prepared, settings["keep_float"]),
                            calibration_cache_path=ranges)
        graph = onnx.load(quantized)
        onnx.helper.set_model_props(graph, metadata)
        write_bytes_atomic(graph.SerializeToString(), output)


class _OneAtATime:
    """ONNX Runtime's calibration data reader over ``images`` (a sized sequence), one image per
    ``set_range`` (``CalibStridedMinMax`` 1): the calibrator holds one image's activations at a
    time, and the histogram calibrators, which stack a range's activations, accept images of
    different sizes."""

    def __init__(self, images):
        self.images = images
        self.set_range(0, len(images))

    def __len__(self):
        return len(self.images)

    def set_range(self, start_index, end_index):
        self.indices = iter(range(start_index, min(end_index, len(self.images))))

    def get_next(self):
        index = next(self.indices, None)
        return None if index is None else {INPUT: self.images[index]}


def _float_nodes(path, prefixes):
    """Names of the nodes of the ONNX file ``path`` that start with one of ``prefixes``."""
    import onnx

    return [node.name for node in onnx.load(path).graph.node if node.name.startswith(tuple(prefixes))]


# ---------------------------------------------------------------- the cache and the one entry point


CACHE_KEY = "tdkd_cache_key"  # the property of a cached ONNX file that holds its key


def _digest(*parts):
    """sha256 (hex) of ``parts``: bytes as they are, anything else as sorted JSON."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return hasher.hexdigest()


def graph_code_digest(models=None):
    """sha256 of the code that defines the exported graphs: the source files below ``models``
    (default: this repository's ``models/``) and this module's export and quantisation
    functions. A change to it makes every cached file stale; other edits here do not."""
    models = Path(models) if models else Path(__file__).resolve().parent / "models"
    files = sorted(models.rglob("*.py"))
    functions = [inspect.getsource(f).encode() for f in (export_onnx, quantize_int8, _float_nodes)]
    return _digest(*(part for p in files for part in (str(p.relative_to(models)).encode(), p.read_bytes())),
                   *functions)


def calibration_digest(calibration):
    """What INT8 calibration reads: the contents of the images of ``calibration`` (a folder),
    or the synthetic set's settings."""
    settings = config.DEPLOYMENT["calibration"]
    if not calibration:
        return ["synthetic", settings]
    return [[str(p.relative_to(calibration)), _digest(p.read_bytes())]
            for p in calibration_files(calibration, settings["images"])]


def checksum_path(path):
    """The file beside a cached ONNX file that holds the sha256 of its bytes."""
    return Path(f"{path}.sha256")


def cache_problem(path, key):
    """Why the cached file ``path`` cannot be used for ``key`` (None when it can): its bytes
    must match the checksum written beside it, and its stored key ``key``."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        return "no checksum file beside it"
    if _digest(path.read_bytes()) != sidecar.read_text().strip():
        return "its bytes do not match its checksum (corrupted, truncated or replaced)"
    try:
        stored = read_metadata(path).get(CACHE_KEY)
    except TDKDError:
        return "it cannot be parsed"
    if stored != key:
        return "it was made for other weights, code or settings"
    return None


def cached_onnx(path, key, make, what):
    """``path``, made by ``make(path, {CACHE_KEY: key})`` unless it holds ``key`` and matches
    its checksum. Making it prints one line on stderr: ``what`` (the work done) and its cost
    on first use, and why the cached file was not used when it was there."""
    problem = cache_problem(path, key) if path.exists() else None
    if path.exists() and problem is None:
        return path
    writable_cache(path.parent)
    start = time.perf_counter()
    make(path, {CACHE_KEY: key})
    write_text_atomic(_digest(path.read_bytes()) + "\n", checksum_path(path))
    seconds = time.perf_counter() - start
    print(f"{path}: cached ONNX file not used ({problem}); {what} again ({seconds:.1f} s)" if problem else
          f"{what} (first use, {seconds:.1f} s; cached in {path.parent})", file=sys.stderr, flush=True)
    return path


def onnx_for_weights(model, cfg, weights, int8=False, calibration=None, cache=None):
    """The cached ONNX file of ``weights`` (float, or INT8 with ``int8``), made on first use and
    verified on every later one (see the module's docstring).

    ``calibration``: a folder of images for INT8 (default: synthetic training images).
    """
    import onnxruntime

    cache = Path(cache) if cache else cache_folder()
    meta = {"network": cfg["name"], "activation": cfg["activation"]}
    key = [_digest(Path(weights).read_bytes()), cfg, OPSET, torch.__version__, graph_code_digest()]
    float_key = _digest(*key)
    float_path = cached_onnx(cache / f"{Path(weights).stem}-{float_key[:16]}.onnx", float_key,
                             lambda path, props: export_onnx(model, path, metadata={**meta, **props}),
                             "exporting the model to ONNX for onnxruntime")
    if not int8:
        return float_path
    int8_key = _digest(*key, onnxruntime.__version__, config.DEPLOYMENT, calibration_digest(calibration))
    return cached_onnx(cache / f"{Path(weights).stem}-int8-{int8_key[:16]}.onnx", int8_key,
                       lambda path, props: quantize_int8(float_path, path, CalibrationImages(calibration), props),
                       "quantising the ONNX model to INT8 for the int8 backends")


def installed_backends():
    """The backends whose runtime is installed (onnxruntime is in requirements.txt, openvino not)."""
    missing = {name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is None}
    return [backend for backend in BACKENDS if backend.split("-")[0] not in missing]


def default_backend(device="cpu"):
    """The fastest backend whose detections match eager's (every face at IoU >= 0.99, scores
    within 1e-4; docs/SPEED.md): onnxruntime on a CPU where it is installed. On a GPU eager,
    as this ONNX Runtime runs on the CPU only."""
    on_cpu = torch.device(device).type == "cpu"
    return "onnxruntime" if on_cpu and importlib.util.find_spec("onnxruntime") else "eager"


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
    int8 = backend in INT8_BACKENDS
    if weights is not None:
        return onnx_predictor(backend, onnx_for_weights(model, cfg, weights, int8, calibration, cache), device)
    with tempfile.TemporaryDirectory() as tmp:  # a session keeps the graph in memory
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model, path, metadata={"network": cfg["name"], "activation": cfg["activation"]})
        if int8:
            quantize_int8(path, os.path.join(tmp, "int8.onnx"), CalibrationImages(calibration))
            path = os.path.join(tmp, "int8.onnx")
        return onnx_predictor(backend, path, device)


def add_backend_arguments(parser):
    """``--backend`` and ``--calibration`` of the scripts that run a detector."""
    parser.add_argument("--backend", choices=BACKENDS,
                        help="what runs the network: eager (PyTorch as trained, detections identical to the "
                             "public code), torch (BatchNorm folded), onnxruntime (the same faces, scores within "
                             "1e-5), onnxruntime-int8 (exported once into ~/.cache/tdkd or $TDKD_CACHE), "
                             "openvino-bf16, openvino-mixed and openvino-int8 (need `pip install openvino`; fastest "
                             "on CPUs with AMX); default: "
                             "onnxruntime on a CPU, eager on a GPU")
    parser.add_argument("--calibration", metavar="FOLDER",
                        help="--backend onnxruntime-int8 or openvino-int8: calibrate on the images below FOLDER "
                             "(default: synthetic training images)")
