"""test_widerface.py and detect.py with the published weights on photos with faces (a generated
group photo, and the crowd photo of ../shared where present: tests/conftest.py)."""
import numpy as np
import pytest
import torch

import detect
import test_widerface
from tests.conftest import shipped_file
from tests.test_priors import public_prior_box
from utils.box_utils import decode, decode_landm
from detector import FaceDetector, load_detector
from utils.inference import scale_for_test
from torchvision.ops import box_iou

import cv2


def public_py_cpu_nms(dets, thresh):
    """The public code's NMS, verbatim in substance: the oracle."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        inds = np.where(ovr <= thresh)[0]
        order = order[inds + 1]
    return keep


def public_pipeline(model, cfg, image, resize):
    """The public test_widerface.py after reading the image, step by step, its per-image
    ``PriorBox`` included."""
    img = np.float32(image)
    if resize != 1:
        img = cv2.resize(img, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
    h, w, _ = img.shape
    scale = torch.Tensor([w, h, w, h])
    img -= (104, 117, 123)
    with torch.no_grad():
        loc, conf, landms = model.predict(torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0))
    priors = public_prior_box(cfg, (h, w))
    boxes = (decode(loc.squeeze(0), priors, cfg["variance"]) * scale / resize).numpy()
    scores = conf.squeeze(0).numpy()[:, 1]
    landms = (decode_landm(landms.squeeze(0), priors, cfg["variance"]) * torch.Tensor([w, h] * 5) / resize).numpy()
    inds = np.where(scores > 0.02)[0]
    boxes, landms, scores = boxes[inds], landms[inds], scores[inds]
    order = scores.argsort()[::-1][:5000]
    boxes, landms, scores = boxes[order], landms[order], scores[order]
    dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
    keep = public_py_cpu_nms(dets, 0.3)
    return dets[keep, :][:750], landms[keep][:750]


@pytest.fixture(scope="module")
def crowd(face_photo):
    return face_photo.image


@pytest.mark.parametrize("weights", ["tdkd_student_base.pth", "tdkd_student_distilled.pth"])
def test_detections_equal_the_public_pipeline(face_photo, weights):
    crowd = face_photo.image
    model, cfg = load_detector(shipped_file("weights", weights))
    detector = FaceDetector(model, cfg)
    for resize in (1, scale_for_test(*crowd.shape[:2])):
        dets, landms = detector(crowd, resize)
        ref_dets, ref_landms = public_pipeline(model, cfg, crowd, resize)
        np.testing.assert_array_equal(dets, ref_dets)
        np.testing.assert_array_equal(landms, ref_landms)
        assert (dets[:, 4] > 0.5).sum() >= 20 and len(dets) > (dets[:, 4] > 0.5).sum()  # NMS had work to do
        if face_photo.boxes is not None:  # every confident box is one of the generated faces
            overlap = box_iou(torch.from_numpy(dets[dets[:, 4] > 0.5, :4]), torch.from_numpy(face_photo.boxes))
            assert (overlap.max(dim=1).values >= 0.5).all()
        height, width = crowd.shape[:2]
        strong = dets[dets[:, 4] > 0.5]
        centres = (strong[:, :2] + strong[:, 2:4]) / 2  # faces cut by the border stick out a little
        assert (centres >= 0).all() and (centres[:, 0] < width).all() and (centres[:, 1] < height).all()
        assert (strong[:, 2] > strong[:, 0]).all() and (strong[:, 3] > strong[:, 1]).all()


def test_scale_follows_the_protocol():
    assert scale_for_test(624, 1024) == pytest.approx(2150 / 1024)  # long side capped
    assert scale_for_test(1000, 1200) == pytest.approx(1.6)  # short side to 1600
    assert scale_for_test(624, 1024, origin_size=True) == 1


def _val_set(tmp_path, crowd):
    images = tmp_path / "val" / "images" / "0--Crowd"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "0_Crowd_photo_1.jpg"), crowd)
    (tmp_path / "val" / "wider_val.txt").write_text("/0--Crowd/0_Crowd_photo_1.jpg\n")
    return str(tmp_path / "val" / "images") + "/"


@pytest.mark.parametrize("origin", [["--origin_size"], ["--origin_size", "True"], []])
def test_test_widerface_writes_the_public_format(tmp_path, crowd, origin):
    folder = _val_set(tmp_path, crowd)
    out = tmp_path / "pred"
    test_widerface.main(["-m", str(shipped_file("weights", "tdkd_student_distilled.pth")), "--cpu",
                         "--dataset_folder", folder, "--save_folder", str(out) + "/", *origin])
    lines = (out / "0--Crowd" / "0_Crowd_photo_1.txt").read_text().split("\n")
    assert lines[0] == "0_Crowd_photo_1"
    count = int(lines[1])
    assert 20 <= count <= 750 and lines[2 + count] == ""
    first = lines[2].split(" ")
    assert len(first) == 6 and first[5] == "" and all(v.lstrip("-").isdigit() for v in first[:4])
    assert float(first[4]) > 0.9
    assert sum(float(line.split(" ")[4]) > 0.5 for line in lines[2:2 + count]) >= 20


def test_origin_size_flag_parsing():
    assert test_widerface.parse_args(["--origin_size"]).origin_size is True
    assert test_widerface.parse_args(["--origin_size", "False"]).origin_size is False
    assert test_widerface.parse_args([]).origin_size is False
    args = test_widerface.parse_args(["-m", "w.pth", "-s", "--vis_thres", "0.7", "--cpu"])
    assert (args.trained_model, args.save_image, args.vis_thres, args.cpu) == ("w.pth", True, 0.7, True)
    assert test_widerface.val_list_path("./data/widerface/val/images/") == "./data/widerface/val/wider_val.txt"


def test_missing_image_is_named(tmp_path, crowd):
    folder = _val_set(tmp_path, crowd)
    (tmp_path / "val" / "wider_val.txt").write_text("/0--Crowd/missing.jpg\n")
    with pytest.raises(SystemExit):
        test_widerface.main(["-m", str(shipped_file("weights", "tdkd_student_base.pth")), "--cpu",
                             "--dataset_folder", folder, "--save_folder", str(tmp_path / "p")])


def test_detect_counts_and_saves(tmp_path, crowd):
    image = tmp_path / "crowd.jpg"
    cv2.imwrite(str(image), crowd)
    counts = detect.run(detect.parse_args([str(image), "-m", str(shipped_file("weights", "tdkd_student_distilled.pth")),
                                           "--cpu", "--save_folder", str(tmp_path / "out"), "--vis_thres", "0.5"]))
    assert counts[str(image)] >= 20
    drawn = cv2.imread(str(tmp_path / "out" / "crowd.jpg"))
    assert drawn.shape == crowd.shape and np.abs(drawn.astype(int) - crowd.astype(int)).sum() > 0
