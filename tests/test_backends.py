"""Inference backends (backends.py) against eager PyTorch, the faster pre- and post-processing
against the public arithmetic, the --backend flags, and the API's errors for unreadable images."""
import contextlib
import importlib.util
import io
import multiprocessing
import sys

import cv2
import numpy as np
import pytest
import torch

import config
import detect
import export_onnx
import test_widerface
import train
from backends import (BACKENDS, CACHE_KEY, CalibrationImages, TorchPredictor, calibration_files, quantize_int8,
                      read_metadata)
from data.synthetic import generate_synthetic_widerface, render_image
from detector import FaceDetector, load_detector
from tests.test_widerface_test import public_pipeline
from utils.box_utils import match_detections
from utils.errors import TDKDError
from utils.inference import network_input, scale_for_test

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements.txt)")


# The shipped student trained on synthetic faces (many detections on the synthetic photo).
STUDENT = config.repo_path(config.QUICKSTART["student_weights"])


@pytest.fixture(scope="module")
def photo():
    """A synthetic val photo (seeded) with 21 faces."""
    image, _ = render_image(0, "val", 4, (320, 480))
    return image


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def eager():
    return FaceDetector.from_weights(STUDENT, backend="eager")


def calibration_folder(folder, count=3):
    """``count`` synthetic training images (320x400) as JPEG files below ``folder``."""
    for index in range(count):
        path = folder / ("sub" if index else "") / f"image_{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), render_image(0, "train", index, (320, 400))[0])
    return folder


def test_network_input_is_the_public_preprocessing_bit_for_bit(photo):
    """Plane-by-plane resizing equals the public resize of the interleaved float image, also at
    the WIDER test scale and for a strided view (an RGB image's channels reversed); at scale 1
    the one-pass conversion and subtraction equal the public steps for every uint8 value and for
    a float32 image with fractions."""
    test_scale = scale_for_test(*photo.shape[:2])
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    fractions = photo[:40, :60].astype(np.float32) + np.float32(0.37)
    for image, resize in ((photo, 1), (photo, 0.7), (photo, 2.3), (photo, test_scale), (photo[::3, :, ::-1], 1.9),
                          (photo[::3, :, ::-1], 1), (every_value, 1), (fractions, 1)):
        img = np.array(image, dtype=np.float32)
        if resize != 1:
            img = cv2.resize(img, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
        img -= (104, 117, 123)
        ours = network_input(image, resize, config.COMMON["rgb_mean"])
        assert ours.flags["C_CONTIGUOUS"] and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, img.transpose(2, 0, 1))


def test_eager_detections_equal_the_public_pipeline_with_decoding_after_thresholding(eager, photo):
    for resize in (1, 2.3):
        dets, points = eager(photo, resize)
        ref_dets, ref_points = public_pipeline(eager.model, eager.cfg, photo, resize)
        assert len(dets) > 50
        np.testing.assert_array_equal(dets, ref_dets)
        np.testing.assert_array_equal(points, ref_points)


def test_torch_backend_is_folded_and_within_1e_4_of_eager(eager, photo):
    detector = FaceDetector.from_weights(STUDENT, backend="torch")
    assert isinstance(detector.model, TorchPredictor)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.model.module.modules())
    dets, points = detector(photo)
    ref_dets, ref_points = eager(photo)
    assert len(dets) == len(ref_dets) > 50
    np.testing.assert_allclose(dets[:, 4], ref_dets[:, 4], atol=1e-4, rtol=0)
    np.testing.assert_allclose(dets[:, :4], ref_dets[:, :4], atol=1e-2, rtol=0)
    np.testing.assert_allclose(points, ref_points, atol=1e-2, rtol=0)


def test_onnxruntime_backend_matches_eager_and_is_cached(eager, photo, cache):
    detector = FaceDetector.from_weights(STUDENT, backend="onnxruntime", cache=cache)
    files = sorted(cache.glob("*.onnx"))
    assert len(files) == 1 and {k: v for k, v in read_metadata(files[0]).items() if k != CACHE_KEY} == {
        "network": "mobile0.25", "activation": "relu"}
    modified = files[0].stat().st_mtime_ns
    dets, _ = detector(photo)
    ref_dets, _ = eager(photo)
    matched, differences = match_detections(dets, ref_dets, 0.95)
    assert len(dets) == len(ref_dets) > 50 and matched.all() and differences.max() < 1e-4
    options = detector.model.session.get_session_options()  # PyTorch's threads, no spinning after a run
    assert options.intra_op_num_threads == torch.get_num_threads()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    FaceDetector.from_weights(STUDENT, backend="onnxruntime", cache=cache)  # the cached file is reused
    assert sorted(cache.glob("*.onnx")) == files and files[0].stat().st_mtime_ns == modified


def test_int8_round_trip_on_a_tiny_calibration_set(tmp_path, eager, photo, cache):
    folder = calibration_folder(tmp_path / "calibration")
    assert [p.name for p in calibration_files(folder, 2)] == ["image_0.jpg", "image_1.jpg"]
    output = tmp_path / "int8.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export_onnx.main(["-m", STUDENT, "-o", str(output), "--int8", "--calibration", str(folder)])
    assert f"{output}: INT8 opset 17" in printed.getvalue()
    assert read_metadata(output) == {"network": "mobile0.25", "activation": "relu", "int8": "1"}

    import onnx

    graph = onnx.load(str(output)).graph
    nodes = {node.output[0]: node for node in graph.node}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    float_weights = [c.name for c in convs if c.input[1] not in nodes]  # weight not from a DequantizeLinear
    # config.DEPLOYMENT's keep_float: the stem, the first depthwise conv, the FPN's two merge
    # convs and the 9 heads stay float
    heads = [f"/{head}.{level}/conv1x1/Conv" for head in ("ClassHead", "BboxHead", "LandmarkHead")
             for level in range(3)]
    merges = ["/fpn/merge1/merge1.0/Conv", "/fpn/merge2/merge2.0/Conv"]
    assert len(convs) == 56 and sorted(float_weights) == sorted(
        ["/body/stage1/stage1.0/stage1.0.0/Conv", "/body/stage1/stage1.1/stage1.1.0/Conv", *merges, *heads])
    adds = [node for node in graph.node if node.name in ("/fpn/Add", "/fpn/Add_1")]
    consumers = {node.op_type for add in adds for node in graph.node if add.output[0] in node.input}
    assert len(adds) == 2 and consumers == {"Conv"}  # the merges' sums reach their convs unquantised
    assert {node.op_type for node in graph.node if node.name in ("/Concat", "/Concat_1", "/Concat_2", "/Softmax")} == {
        "Concat", "Softmax"}
    assert [o.name for o in graph.output] == list(export_onnx.OUTPUTS)
    producers = {out: node for node in graph.node for out in node.output}
    assert all(producers[name].op_type in ("Concat", "Softmax") for name in export_onnx.OUTPUTS)  # float outputs
    assert all(nodes[c.input[1]].op_type == "DequantizeLinear" for c in convs if c.input[1] in nodes)

    for detector in (FaceDetector.from_weights(output), FaceDetector.from_weights(output, backend="onnxruntime-int8")):
        dets, _ = detector(photo)
        ref_dets, _ = eager(photo)
        strong = ref_dets[ref_dets[:, 4] >= 0.6]
        matched, differences = match_detections(dets, strong, 0.5)
        assert len(strong) > 10 and matched.mean() >= 0.9 and np.median(differences) < 0.05

    FaceDetector.from_weights(STUDENT, backend="onnxruntime-int8", calibration=folder, cache=cache)
    assert len(list(cache.glob("*-int8-*.onnx"))) == 1


def test_int8_extra_options_reach_the_calibration(tmp_path, monkeypatch):
    """With min / max calibration, averaging the images' ranges (CalibMovingAverage) gives no
    wider and some narrower activation ranges than the widest over the images, in a second
    cached file."""
    import onnx
    from onnx import numpy_helper

    folder, cache = tmp_path / "calibration", tmp_path / "cache"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"image_{index}.jpg"), render_image(0, "train", index, (320, 400))[0])

    def activation_scales():
        path = max(cache.glob("*-int8-*.onnx"), key=lambda p: p.stat().st_mtime_ns)
        graph = onnx.load(str(path)).graph
        values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        return {node.input[0]: float(values[node.input[1]]) for node in graph.node
                if node.op_type == "QuantizeLinear" and node.input[1] in values}

    minmax = {**config.DEPLOYMENT["int8"], "method": "minmax"}
    monkeypatch.setitem(config.DEPLOYMENT, "int8", minmax)
    FaceDetector.from_weights(STUDENT, backend="onnxruntime-int8", calibration=folder, cache=cache)
    widest = activation_scales()
    int8 = {**minmax, "extra_options": {"CalibMovingAverage": True}}
    monkeypatch.setitem(config.DEPLOYMENT, "int8", int8)
    FaceDetector.from_weights(STUDENT, backend="onnxruntime-int8", calibration=folder, cache=cache)
    averaged = activation_scales()
    assert len(list(cache.glob("*-int8-*.onnx"))) == 2 and averaged.keys() == widest.keys() and len(widest) > 30
    assert all(averaged[name] <= widest[name] * (1 + 1e-6) for name in widest)
    assert sum(averaged[name] < 0.9 * widest[name] for name in widest) > 5


def test_histogram_calibration_takes_images_of_many_sizes_and_its_ranges_are_reused(tmp_path):
    """Percentile calibration over images of three sizes (ONNX Runtime stacks the activations
    it holds, so they go one at a time) clips ranges that min / max keeps whole (on three tiny
    images, few: 99.999 % of their values is nearly all); a ranges file
    written once is read back without a calibration."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    from backends import export_onnx

    model, cfg = load_detector(STUDENT)
    float_path = tmp_path / "float.onnx"
    export_onnx(model, float_path, metadata={"network": cfg["name"], "activation": cfg["activation"]})
    folder = tmp_path / "calibration"
    folder.mkdir()
    for index, size in enumerate(((96, 128), (120, 80), (64, 64))):
        cv2.imwrite(str(folder / f"image_{index}.jpg"), cv2.resize(render_image(0, "train", index, (320, 400))[0],
                                                                  size[::-1]))
    images = CalibrationImages(folder)
    assert len(images) == 3 and images[1].shape == (1, 3, 120, 80)
    ranges = {}
    for method in ("minmax", "percentile"):
        settings = {**config.DEPLOYMENT["int8"], "method": method}
        ranges[method] = tmp_path / f"{method}.json"
        quantize_int8(float_path, tmp_path / f"{method}.onnx", images, settings=settings, ranges=ranges[method])
    highest = {method: {name: float(np.max(data.range_value[1])) for name, data in load_tensors_data(path).data.items()}
               for method, path in ranges.items()}
    assert highest["minmax"].keys() == highest["percentile"].keys() and len(highest["minmax"]) > 30
    assert all(highest["percentile"][k] <= highest["minmax"][k] * (1 + 1e-6) for k in highest["minmax"])
    assert any(highest["percentile"][k] < 0.99 * highest["minmax"][k] for k in highest["minmax"])

    class NoImages:
        def __len__(self):
            return 3

        def __getitem__(self, index):
            raise AssertionError("calibrated again")

    minmax = {**config.DEPLOYMENT["int8"], "method": "minmax"}
    quantize_int8(float_path, tmp_path / "again.onnx", NoImages(), settings=minmax, ranges=ranges["minmax"])
    assert read_metadata(tmp_path / "again.onnx")["int8"] == "1"


def test_openvino_backends_need_the_package_and_a_cpu(monkeypatch, cache):
    from backends import OpenVinoPredictor

    with pytest.raises(TDKDError, match="the openvino backends run on the CPU only"):
        OpenVinoPredictor("model.onnx", "bf16", device="cuda")
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    for backend in ("openvino-bf16", "openvino-mixed"):
        with pytest.raises(TDKDError, match="need the openvino package.*pip install openvino"):
            FaceDetector.from_weights(STUDENT, backend=backend, cache=cache)


def _openvino_detections(cache, calibration):
    """The openvino backends' detections on the photo, with onnxruntime-int8's, and the precision
    of each conv: run in a fresh process, since a process that has loaded openvino crashes when
    it later forks (the DataLoader workers of other tests)."""
    import openvino

    from backends import OpenVinoPredictor

    photo = render_image(0, "val", 4, (320, 480))[0]
    bf16 = FaceDetector.from_weights(STUDENT, backend="openvino-bf16", cache=cache)
    threads = bf16.model.compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads()
    runtimes = [FaceDetector.from_weights(STUDENT, backend=backend, calibration=calibration, cache=cache)
                for backend in ("onnxruntime-int8", "openvino-int8")]
    same_file = runtimes[0].model.path == runtimes[1].model.path  # one cached INT8 file
    mixed = FaceDetector.from_weights(STUDENT, backend="openvino-mixed", cache=cache)
    precisions = {backend: _conv_precisions(detector.model.compiled) for backend, detector
                  in (("openvino-bf16", bf16), ("openvino-mixed", mixed))}
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    try:
        OpenVinoPredictor(bf16.model.path, "bf16", float32_layers=["/no/such/layer/"])
        error = None
    except TDKDError as exc:
        error = str(exc)
    return (threads, same_file, bf16(photo)[0], [runtime(photo)[0] for runtime in runtimes], mixed(photo)[0],
            precisions, has_bf16, error)


def _conv_precisions(compiled):
    """``{conv name: the precision OpenVINO runs it in}`` of a compiled model."""
    ops = compiled.get_runtime_model().get_ordered_ops()
    return {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str) for op in ops
            if op.get_rt_info()["layerType"].astype(str) == "Convolution"}


def _openvino_inputs_and_sizes(cache):
    """openvino-mixed's raw outputs for the photo through each input and compiled model, the
    shapes it keeps a fixed-size model for, and the precision of each conv in one of them."""
    config.DEPLOYMENT["openvino_fixed_sizes"] = 1
    photo = render_image(0, "val", 4, (320, 480))[0]
    mixed = FaceDetector.from_weights(STUDENT, backend="openvino-mixed", cache=cache).model
    tensor = torch.from_numpy(network_input(photo, 1, config.COMMON["rgb_mean"]))[None]
    outputs = [mixed.predict(tensor), mixed.predict_image(photo), mixed.predict(tensor), mixed.predict_image(photo)]
    kept_after_one_size = list(mixed.fixed)
    fixed_precisions = _conv_precisions(mixed.request_for("image", (1, *photo.shape)).get_compiled_model())
    other = np.ascontiguousarray(photo[:200, :300])
    mixed.predict_image(other)
    first_sight = list(mixed.fixed)
    mixed.predict_image(other)
    return outputs, kept_after_one_size, first_sight, list(mixed.fixed), fixed_precisions, other.shape


def test_openvino_takes_the_image_itself_and_fixes_repeated_sizes(cache):
    """An image at its own size goes to OpenVINO as uint8 (conversion and mean inside), and a
    size seen twice gets a model compiled for it: the raw outputs of all four ways are equal,
    the fixed-size model keeps openvino-mixed's float32 layers, and only the last
    ``openvino_fixed_sizes`` sizes keep theirs."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the optional openvino package is not installed (pip install openvino)")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outputs, kept, first_sight, last, precisions, other = pool.apply(_openvino_inputs_and_sizes, (cache,))
    for way in outputs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outputs[0], way))
    photo_keys = [("tensor", (1, 3, 272, 356)), ("image", (1, 272, 356, 3))]
    assert kept == photo_keys[1:]  # the limit of 1 dropped the tensor's fixed model
    assert first_sight == photo_keys[1:] and last == [("image", (1, *other))]
    assert len(precisions) == 56 and {precisions[name] for name in precisions
                                      if name.startswith(("/body/stage1/", "/body/stage2/"))} == {"f32"}


def test_openvino_backends_find_the_faces_of_the_float_and_int8_graphs(tmp_path, eager, photo, cache):
    """bf16 and mixed keep every face eager scores >= 0.6 (IoU >= 0.9, scores within 0.05);
    mixed runs the backbone's first two stages in float32 and the rest as bf16 does; the INT8
    backend runs onnxruntime-int8's cached file and finds its faces."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the optional openvino package is not installed (pip install openvino)")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        threads, same_file, dets, (int8_dets, openvino_dets), mixed_dets, precisions, has_bf16, error = pool.apply(
            _openvino_detections, (cache, calibration_folder(tmp_path / "calibration")))
    assert threads and same_file
    ref_dets, _ = eager(photo)
    strong = ref_dets[ref_dets[:, 4] >= 0.6]
    for found in (dets, mixed_dets):
        matched, differences = match_detections(found, strong, 0.9)
        assert len(strong) > 10 and matched.all() and differences.max() < 0.05
    low = "bf16" if has_bf16 else "f32"
    bf16, mixed = precisions["openvino-bf16"], precisions["openvino-mixed"]
    in_float32 = {name for name in mixed if name.startswith(("/body/stage1/", "/body/stage2/"))}
    assert len(mixed) == len(bf16) == 56 and len(in_float32) == 23
    assert {mixed[name] for name in in_float32} == {"f32"} and set(bf16.values()) == {low}
    assert {precision for name, precision in mixed.items() if name not in in_float32} == {low}
    assert error.endswith(".onnx: no layer to keep in float32: none is named /no/such/layer/...")
    strong = int8_dets[int8_dets[:, 4] >= 0.6]
    matched, differences = match_detections(openvino_dets, strong, 0.9)
    assert len(strong) > 10 and matched.all() and differences.max() < 0.05


def test_onnx_files_and_backends_are_checked(tmp_path):
    float_file = tmp_path / "float.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        export_onnx.main(["-m", STUDENT, "-o", str(float_file)])
    with pytest.raises(TDKDError, match="an ONNX file runs with one of the backends .*, not 'torch'"):
        FaceDetector.from_weights(float_file, backend="torch")
    with pytest.raises(TDKDError, match="not an INT8 file"):
        FaceDetector.from_weights(float_file, backend="onnxruntime-int8")
    with pytest.raises(ValueError, match="backend must be one of"):
        FaceDetector.from_weights(backend="tensorrt")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(TDKDError, match=f"{broken}: cannot read the ONNX file"):
        FaceDetector.from_weights(broken, backend="onnxruntime")


def test_unreadable_inputs_give_one_clear_error(tmp_path, eager):
    with pytest.raises(TDKDError, match=f"^{tmp_path / 'missing.jpg'}: no such file$"):
        eager.detect(str(tmp_path / "missing.jpg"))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(TDKDError, match=rf"^{tmp_path / 'notes.jpg'}: cannot read image \(not an image, or corrupt\)$"):
        eager.detect(tmp_path / "notes.jpg")
    with pytest.raises(ValueError, match=r"^no image \(None\): cv2.imread returns None for a file it cannot read"):
        eager.detect(cv2.imread(str(tmp_path / "notes.jpg")))


def test_a_path_gives_the_faces_of_the_read_image(tmp_path, eager, photo):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo)
    from_path, from_array = eager.detect(str(path)), eager.detect(photo)
    np.testing.assert_array_equal(from_path.scores, from_array.scores)
    np.testing.assert_array_equal(from_path.boxes, from_array.boxes)


def test_the_module_docstring_example_runs(tmp_path, photo, monkeypatch, capsys):
    import detector as module

    doc = module.__doc__
    code = "\n".join(line[4:] for line in doc[:doc.index("\nDefaults")].splitlines()[2:])
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "detector.py", "exec"), {})
    faces = FaceDetector.from_weights(nms_threshold=0.4).detect(cv2.imread("photo.jpg"))
    assert capsys.readouterr().out.count("]]\n") == int((faces.scores >= 0.6).sum()) > 0


def test_backend_flags(tmp_path, photo, monkeypatch, capsys):
    monkeypatch.setenv("TDKD_CACHE", str(tmp_path / "cache"))
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo)
    counts = {backend: detect.run(detect.parse_args([str(tmp_path / "photo.jpg"), "-m", STUDENT, "--cpu", "--backend",
                                                    backend, "--save_folder", str(tmp_path / backend)]))
              for backend in ("eager", "torch", "onnxruntime")}
    assert len({tuple(c.values()) for c in counts.values()}) == 1 and list(counts["eager"].values())[0] > 5
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1

    val = tmp_path / "val" / "images" / "0--Synthetic"
    val.mkdir(parents=True)
    cv2.imwrite(str(val / "one.jpg"), photo)
    (tmp_path / "val" / "wider_val.txt").write_text("/0--Synthetic/one.jpg\n")
    written = {}
    for backend in ("eager", "onnxruntime"):
        test_widerface.main(["-m", STUDENT, "--cpu", "--origin_size", "--backend", backend, "--dataset_folder",
                             f"{tmp_path / 'val' / 'images'}/", "--save_folder", str(tmp_path / f"txt_{backend}")])
        written[backend] = (tmp_path / f"txt_{backend}" / "0--Synthetic" / "one.txt").read_text().splitlines()
    assert len(written["eager"]) == len(written["onnxruntime"]) > 50
    assert "preprocessing" in capsys.readouterr().out

    for flags, error in ((["--backend", "tvm"], "invalid choice: 'tvm'"),):
        with pytest.raises(SystemExit):
            detect.parse_args(["x.jpg", *flags])
        assert error in capsys.readouterr().err
    assert train.parse_args(["--training_dataset", "x", "--val_backend", "onnxruntime"]).val_backend == "onnxruntime"
    assert set(BACKENDS) == {"eager", "torch", "onnxruntime", "onnxruntime-int8", "openvino-bf16", "openvino-mixed",
                             "openvino-int8"}


def test_a_model_in_training_gets_an_onnx_session_without_a_file(photo):
    from backends import OnnxPredictor, build_predictor

    model, cfg = load_detector(STUDENT)
    predictor = build_predictor("onnxruntime", model, cfg)
    assert isinstance(predictor, OnnxPredictor)
    dets, _ = FaceDetector(predictor, cfg)(photo)
    ref_dets, _ = FaceDetector(model, cfg)(photo)
    assert len(dets) == len(ref_dets) and match_detections(dets, ref_dets)[0].all()


def test_validation_during_training_runs_in_onnxruntime(tiny_dataset, tmp_path):
    from tests.test_train_watch import argv
    from utils.logger import read_log

    generate_synthetic_widerface(tmp_path / "synthetic", num_train=0, num_val=2, image_size=(128, 160), workers=1)
    rows, counts = {}, {}
    for backend in ("eager", "onnxruntime"):
        folder = tmp_path / backend
        train.run(train.parse_args(argv(tiny_dataset, folder, "--max_epoch", "1", "--val_dataset",
                                        str(tmp_path / "synthetic" / "val"), "--val_backend", backend)))
        rows[backend] = read_log(folder / "val_log.csv")[0]
        counts[backend] = [int(p.read_text().splitlines()[1]) for p in sorted((folder / "val_predictions").rglob("*.txt"))]
    assert len(counts["eager"]) == 2 and sum(counts["eager"]) > 0 and counts["eager"] == counts["onnxruntime"]
    for setting in ("easy", "medium", "hard"):
        assert rows["onnxruntime"][setting] == pytest.approx(rows["eager"][setting], abs=1e-3)


def test_the_speed_benchmark_times_the_public_pipeline_on_eager():
    """bench/infer_speed.py's public pipeline runs the eager model, whatever the API's default."""
    from bench import infer_speed

    pipelines = infer_speed.build_pipelines(infer_speed.parse_args(["--backends", "torch", "-m", STUDENT]),
                                            STUDENT, "cpu")
    assert sorted(pipelines) == [infer_speed.PUBLIC, "torch"]
    assert isinstance(pipelines[infer_speed.PUBLIC].model, torch.nn.Module)
