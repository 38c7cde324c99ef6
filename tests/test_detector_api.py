"""The Python API (detector.py), non-finite predictions, and the layering of utils/."""
import ast
import json
import os

import cv2
import numpy as np
import pytest
import torch

import detect
import test_widerface
from config import network_config
from data.synthetic import generate_synthetic_widerface
from backends import OnnxPredictor
from detector import DEFAULT_WEIGHTS, FaceDetector, Faces, load_detector
from models import build_model
from tests.conftest import REPO, shipped_file
from utils.box_utils import match_detections
from utils.visualize import draw_detections



@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two synthetic photos (seeded) on which the shipped student finds faces."""
    root = tmp_path_factory.mktemp("photos")
    generate_synthetic_widerface(root, num_train=0, num_val=2, image_size=(320, 400), workers=1)
    return sorted((root / "val" / "images").rglob("*.jpg"))


@pytest.fixture(scope="module")
def student():
    return FaceDetector.from_weights()


def test_the_default_detector_is_the_shipped_student_with_test_widerface_settings(student):
    assert DEFAULT_WEIGHTS == str(shipped_file("weights", "tdkd_student_distilled.pth"))
    reference = test_widerface.parse_args([])
    assert (student.confidence_threshold, student.top_k, student.nms_threshold, student.keep_top_k) == (
        reference.confidence_threshold, reference.top_k, reference.nms_threshold, reference.keep_top_k)
    assert student.cfg["name"] == "mobile0.25"
    assert isinstance(student.model, OnnxPredictor)  # the default backend on a CPU: the exported graph
    assert os.path.basename(student.model.path).startswith("tdkd_student_distilled-")


def test_the_default_backend_finds_the_faces_of_eager(student, face_photo):
    """The default backend's faces are eager's (the public code's): every face scoring 0.5 or
    more matched at IoU >= 0.99, scores within 1e-4, the same faces drawn by detect.py."""
    eager = FaceDetector.from_weights(backend="eager")
    faces, reference = student.detect(face_photo.image), eager.detect(face_photo.image)
    strong = reference[reference.scores >= 0.5]
    matched, differences = match_detections(np.c_[faces.boxes, faces.scores], np.c_[strong.boxes, strong.scores], 0.99)
    assert len(strong) >= 20 and matched.all() and differences.max() < 1e-4
    assert (faces.scores >= 0.6).sum() == (reference.scores >= 0.6).sum()


def test_rgb_and_bgr_give_the_same_faces_when_declared(student, photos):
    bgr = cv2.imread(str(photos[0]))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = student.detect(bgr)
    assert len(faces) > 10
    for same in (student.detect(rgb, color="rgb"), student.detect(bgr, color="bgr")):
        np.testing.assert_array_equal(same.boxes, faces.boxes)
        np.testing.assert_array_equal(same.scores, faces.scores)
        np.testing.assert_array_equal(same.landmarks, faces.landmarks)
    wrong = student.detect(rgb)  # RGB declared as BGR: other faces
    assert len(wrong) != len(faces) or not np.array_equal(wrong.scores, faces.scores)


def test_rgb_declared_as_bgr_loses_faces_on_a_photo(student, face_photo):
    bgr = face_photo.image
    rgb = bgr[:, :, ::-1]
    strong = lambda faces: int((faces.scores >= 0.6).sum())  # noqa: E731
    found, lost = {"crowd": (26, 21), "group": (26, 17)}[face_photo.name]  # measured
    assert strong(student.detect(bgr)) == strong(student.detect(rgb, color="rgb")) == found
    assert strong(student.detect(rgb)) == lost


def test_faces_hold_boxes_scores_and_five_landmarks(student, photos):
    image = cv2.imread(str(photos[1]))
    dets, points = student(image)
    faces = student.detect(image)
    assert faces.boxes.shape == (len(dets), 4) and faces.scores.shape == (len(dets),)
    assert faces.landmarks.shape == (len(dets), 5, 2)
    np.testing.assert_array_equal(faces.boxes, dets[:, :4])
    np.testing.assert_array_equal(faces.landmarks[:, 2], points[:, 4:6])  # the nose is the third point
    assert (np.diff(faces.scores) <= 0).all()
    strong = faces[faces.scores >= 0.5]
    assert isinstance(strong, Faces) and len(strong) == int((dets[:, 4] >= 0.5).sum())
    listed = json.loads(json.dumps(strong.to_list()))
    assert [f["score"] for f in listed] == [float(s) for s in strong.scores]
    assert all(len(f["box"]) == 4 and np.array(f["landmarks"]).shape == (5, 2) for f in listed)


def test_settings_and_bad_inputs(photos):
    image = cv2.imread(str(photos[0]))
    strict = FaceDetector.from_weights(DEFAULT_WEIGHTS, confidence_threshold=0.5)
    assert len(strict.detect(image)) and (strict.detect(image).scores > 0.5).all()
    with pytest.raises(ValueError, match="color must be one of"):
        strict.detect(image, color="hsv")
    with pytest.raises(ValueError, match=r"expected an H x W x 3 image, got shape \(20, 30\)"):
        strict.detect(np.zeros((20, 30), np.uint8))


# ---------------------------------------------------------------- non-finite predictions


def diverged_weights(path):
    """A detector whose box regressor is scaled by 1e30: box sizes exp(huge) = inf."""
    torch.manual_seed(0)
    model = build_model(network_config("mobile0.25"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("BboxHead"):
                parameter.mul_(1e30)
    torch.save(model.state_dict(), path)
    return path


def test_the_scaled_model_really_predicts_infinite_boxes(tmp_path, photos):
    model, cfg = load_detector(diverged_weights(tmp_path / "w.pth"))
    raw = FaceDetector(model, cfg, confidence_threshold=2.0)  # keeps nothing
    image = cv2.imread(str(photos[0]))
    with torch.no_grad():
        loc = model.predict(torch.from_numpy(np.float32(image).transpose(2, 0, 1))[None])[0]
    assert torch.isfinite(loc).all() and loc.abs().max() > 1e20  # finite offsets, exp() overflows
    assert len(raw.detect(image)) == 0


def test_non_finite_boxes_are_dropped_with_one_warning_counting_them(tmp_path, photos):
    detector = FaceDetector.from_weights(diverged_weights(tmp_path / "w.pth"))
    image = cv2.imread(str(photos[0]))
    with pytest.warns(UserWarning, match=r"^dropped \d+ non-finite boxes: the weights may have diverged") as caught:
        faces = detector.detect(image)
    assert len(caught) == 1
    dropped = int(str(caught[0].message).split()[1])
    assert dropped > 0 and detector.dropped_boxes == dropped
    assert len(faces) > 0 and np.isfinite(faces.boxes).all() and np.isfinite(faces.landmarks).all()
    draw_detections(image, *detector(image), vis_thres=0)  # huge finite boxes are drawn without error


def test_detect_and_test_widerface_finish_on_a_diverged_model(tmp_path, photos, capsys):
    weights = diverged_weights(tmp_path / "w.pth")
    with pytest.warns(UserWarning, match=rf"{weights}: dropped \d+ non-finite boxes in 2 of 2 images") as caught:
        counts = detect.run(detect.parse_args([str(photos[0].parent.parent), "--recursive", "-m", str(weights),
                                               "--cpu", "--save_folder", str(tmp_path / "det"), "--vis_thres", "0"]))
    assert len(caught) == 1 and len(counts) == 2 and all(n > 0 for n in counts.values())
    assert len(list((tmp_path / "det").rglob("*.jpg"))) == 2

    val = photos[0].parent.parent
    pred = tmp_path / "pred"
    with pytest.warns(UserWarning, match=rf"{weights}: dropped \d+ non-finite boxes in 2 of 2 images"):
        test_widerface.main(["-m", str(weights), "--cpu", "--origin_size", "--dataset_folder", str(val),
                             "--save_folder", str(pred)])
    files = sorted(pred.rglob("*.txt"))
    assert len(files) == 2
    for path in files:
        lines = path.read_text().splitlines()
        assert int(lines[1]) == len(lines) - 2 > 0
        assert all(np.isfinite([float(v) for v in line.split()]).all() for line in lines[2:])


def test_weights_holding_nan_are_refused_as_diverged(tmp_path, photos, capsys):
    state = build_model(network_config("mobile0.25")).state_dict()
    state["fpn.output1.0.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(SystemExit) as exit_info:
        detect.main([str(photos[0]), "-m", str(path), "--cpu", "--save_folder", str(tmp_path / "det")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {path}: 1 tensors hold nan or inf (e.g. fpn.output1.0.weight): "
                                       "these weights diverged; use an earlier checkpoint\n")


# ---------------------------------------------------------------- layering


def test_utils_imports_nothing_above_it():
    above = {"models", "layers", "data", "detector", "train", "detect", "test_widerface", "quickstart"}
    found = []
    for path in (REPO / "utils").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in above]
    assert found == []


def test_the_readme_example_runs(tmp_path, photos, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Python API"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
    (tmp_path / "photo.jpg").write_bytes(photos[1].read_bytes())  # one face above detect.py's 0.6, many below
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    faces = FaceDetector.from_weights().detect(cv2.imread("photo.jpg"))
    shown_by_detect_py = int((faces.scores >= detect.parse_args(["photo.jpg"]).vis_thres).sum())
    assert 0 < shown_by_detect_py == printed.count("]]\n") < len(faces)


def test_a_published_state_dict_is_built_as_the_network_its_shapes_fit(tmp_path):
    torch.manual_seed(0)
    state = build_model(network_config("mobile0.75")).state_dict()
    torch.save(state, tmp_path / "published.pth")  # no sidecar JSON
    model, cfg = load_detector(tmp_path / "published.pth")
    assert cfg["name"] == "mobile0.75" and cfg["activation"] == "relu"
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
