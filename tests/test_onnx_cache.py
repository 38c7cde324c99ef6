"""The ONNX cache of backends.py: made on first use with one line saying what it cost, verified
on every later use (checksum beside the file, key in its properties), rebuilt when a cached
file was replaced, bit-flipped or truncated, and keyed on the model code and the calibration
images' contents."""
import hashlib
import re
import shutil

import cv2
import numpy as np
import pytest

import backends
import config
from detector import DEFAULT_WEIGHTS, FaceDetector
from data.synthetic import render_image

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements.txt)")

STUDENT = config.repo_path(config.QUICKSTART["student_weights"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache holding the shipped synthetic student's export (``student``) and the distilled
    student's (``other``), each with its checksum file, and the first one's detections."""
    cache = tmp_path_factory.mktemp("cache")
    photo = render_image(0, "val", 4, (320, 480))[0]
    dets, _ = FaceDetector.from_weights(STUDENT, backend="onnxruntime", cache=cache)(photo)
    student = next(cache.glob("synthetic_student*.onnx"))
    FaceDetector.from_weights(DEFAULT_WEIGHTS, backend="onnxruntime", cache=cache)
    other = next(cache.glob("tdkd_student_distilled*.onnx"))
    return dict(cache=cache, student=student, other=other, photo=photo, dets=dets)


@pytest.fixture
def cache(built, tmp_path):
    """A fresh copy of the built cache."""
    return shutil.copytree(built["cache"], tmp_path / "cache")


def test_first_use_says_what_it_cost_once_and_stores_key_and_checksum(tmp_path, capfd):
    FaceDetector.from_weights(STUDENT, cache=tmp_path)  # the default backend on a CPU
    line = capfd.readouterr().err
    assert re.fullmatch(rf"exporting the model to ONNX for onnxruntime \(first use, \d+\.\d s; cached in "
                        rf"{re.escape(str(tmp_path))}\)\n", line), line
    path = next(tmp_path.glob("*.onnx"))
    key = backends.read_metadata(path)[backends.CACHE_KEY]
    assert re.fullmatch("[0-9a-f]{64}", key) and path.name == f"synthetic_student_mobile0.25-{key[:16]}.onnx"
    assert backends.checksum_path(path).read_text() == hashlib.sha256(path.read_bytes()).hexdigest() + "\n"
    FaceDetector.from_weights(STUDENT, cache=tmp_path)
    assert capfd.readouterr().err == ""


def _flip_a_bit(path, other):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _truncate(path, other):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _replace_by_other_export(path, other):
    shutil.copyfile(other, path)


def _replace_with_its_checksum(path, other):
    shutil.copyfile(other, path)
    shutil.copyfile(backends.checksum_path(other), backends.checksum_path(path))


def _drop_checksum(path, other):
    backends.checksum_path(path).unlink()


@pytest.mark.parametrize("damage, reason", [
    (_flip_a_bit, "its bytes do not match its checksum"),
    (_truncate, "its bytes do not match its checksum"),
    (_replace_by_other_export, "its bytes do not match its checksum"),
    (_replace_with_its_checksum, "it was made for other weights, code or settings"),
    (_drop_checksum, "no checksum file beside it"),
])
def test_a_damaged_cached_file_is_rebuilt_with_one_line(built, cache, damage, reason, capfd):
    path = cache / built["student"].name
    damage(path, cache / built["other"].name)
    detector = FaceDetector.from_weights(STUDENT, backend="onnxruntime", cache=cache)
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: cached ONNX file not used ({reason}")
    assert lines[0].endswith(" s)") and "exporting the model to ONNX for onnxruntime again" in lines[0]
    assert path.read_bytes() == built["student"].read_bytes()  # the export is deterministic
    dets, _ = detector(built["photo"])
    np.testing.assert_array_equal(dets, built["dets"])
    assert backends.cache_problem(path, backends.read_metadata(path)[backends.CACHE_KEY]) is None


def test_the_key_covers_the_model_code(tmp_path):
    models = shutil.copytree(config.repo_path("models"), tmp_path / "models")
    assert backends.graph_code_digest(models) == backends.graph_code_digest()
    heads = models / "heads.py"
    heads.write_text(heads.read_text() + "# an edit\n")
    assert backends.graph_code_digest(models) != backends.graph_code_digest()


def test_the_int8_key_covers_the_calibration_images_contents(tmp_path):
    for index in range(2):
        cv2.imwrite(str(tmp_path / f"image_{index}.png"), render_image(0, "train", index, (96, 128))[0])
    before = backends.calibration_digest(tmp_path)
    path = tmp_path / "image_1.png"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same name, same size, other contents
    path.write_bytes(bytes(data))
    assert backends.calibration_digest(tmp_path) != before
    assert backends.calibration_digest(None) != before


def test_the_default_backend_is_onnxruntime_on_a_cpu_where_installed(monkeypatch):
    assert backends.default_backend("cpu") == "onnxruntime" and backends.default_backend("cuda:0") == "eager"
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    assert backends.default_backend("cpu") == "eager"
