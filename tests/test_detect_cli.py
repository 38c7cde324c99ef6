"""detect.py never loses a photo: defaults, refused save folders, whole folders, JSON output."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

import config
import detect
from data.synthetic import generate_synthetic_widerface
from detector import FaceDetector
from tests.test_reliability import one_error_line



@pytest.fixture(scope="module")
def photo_bytes(tmp_path_factory):
    """Two synthetic photos with faces, as encoded JPEG bytes."""
    root = tmp_path_factory.mktemp("photos")
    generate_synthetic_widerface(root, num_train=0, num_val=2, image_size=(200, 240), workers=1)
    return [p.read_bytes() for p in sorted((root / "val" / "images").rglob("*.jpg"))]


def put(folder, names, photo_bytes):
    """Write the photos under ``folder`` as ``names`` (relative paths; cycling through the photos)."""
    paths = []
    for k, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo_bytes[k % len(photo_bytes)])
        paths.append(path)
    return paths


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fails(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect.main([str(a) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    return one_error_line(err), err


def test_no_flags_uses_the_shipped_student_from_any_working_folder(tmp_path, photo_bytes, monkeypatch, capsys):
    put(tmp_path, ["photo.jpg"], photo_bytes)
    monkeypatch.chdir(tmp_path)
    args = detect.parse_args(["photo.jpg"])
    assert args.trained_model == config.repo_path("weights/tdkd_student_distilled.pth")
    assert (args.save_image, args.nms_threshold, args.vis_thres) == (True, 0.4, 0.6)
    counts = detect.run(args)
    assert list(counts) == ["photo.jpg"]
    assert cv2.imread(str(tmp_path / "detections" / "photo.jpg")).shape == cv2.imread("photo.jpg").shape
    assert "photo.jpg: " in capsys.readouterr().out


def test_help_shows_every_default_and_where_it_comes_from(capsys):
    with pytest.raises(SystemExit):
        detect.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("-s, --save_image, --no-save_image", "weights/tdkd_student_distilled.pth",
                     "as the public detect.py (default: 0.02)", "as the public detect.py (default: 5000)",
                     "NMS IoU: 0.4 as the public detect.py; test_widerface.py and the Python API (detector.py) use "
                     "0.3, the WIDER FACE test protocol's, so their boxes can differ a little (default: 0.4)",
                     "as the public detect.py (default: 750)",
                     "0.6 as the public detect.py; test_widerface.py --save_image draws from 0.5, as the public "
                     "test_widerface.py (default: 0.6)", "cuda where a GPU is available, else cpu",
                     "(default: ./detections/)", "(default: True)"):
        assert expected in text, expected


def test_a_save_folder_that_is_the_input_folder_is_refused(tmp_path, photo_bytes, capsys):
    put(tmp_path / "in", ["a.jpg", "b.jpg"], photo_bytes)
    before = digests(tmp_path / "in")
    for spelling in (tmp_path / "in", f"{tmp_path}/in/./", tmp_path / "link"):
        if spelling == tmp_path / "link":
            os.symlink(tmp_path / "in", spelling)
        line, _ = fails([tmp_path / "in", "--save_folder", spelling, "--cpu"], capsys)
        assert line == (f"error: {spelling}: --save_folder is the input folder: the drawn images would replace "
                        "the photos; choose another folder")
    assert digests(tmp_path / "in") == before


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path, photo_bytes, capsys):
    photo, = put(tmp_path / "in", ["a.jpg"], photo_bytes)
    before = digests(tmp_path / "in")
    line, _ = fails([photo, "--save_folder", tmp_path / "in", "--cpu"], capsys)
    assert line == f"error: {tmp_path / 'in' / 'a.jpg'}: would overwrite an input image; choose another --save_folder"
    (tmp_path / "out").mkdir()
    os.link(photo, tmp_path / "out" / "a.jpg")  # the same file under another folder
    line, _ = fails([tmp_path / "in", "--save_folder", tmp_path / "out", "--cpu"], capsys)
    assert line == f"error: {tmp_path / 'out' / 'a.jpg'}: would overwrite an input image; choose another --save_folder"
    assert digests(tmp_path / "in") == before


def test_every_readable_image_is_processed_and_the_unreadable_ones_listed(tmp_path, photo_bytes, capsys):
    paths = put(tmp_path / "in", ["a.jpg", "b.png", "c.jpg", "d.jpeg"], photo_bytes)
    paths[1].write_bytes(b"not a PNG")
    paths[3].write_bytes(b"")
    (tmp_path / "in" / "notes.txt").write_text("not an image, not listed")
    line, err = fails([tmp_path / "in", "--save_folder", tmp_path / "out", "--cpu"], capsys)
    assert line == "error: 2 of 4 images failed (listed above); the other 2 were processed"
    assert f"skipped {paths[1]}: cannot read image (not an image, or corrupt)" in err.splitlines()
    assert f"skipped {paths[3]}: empty file (0 bytes), not an image" in err.splitlines()
    assert sorted(digests(tmp_path / "out")) == ["a.jpg", "c.jpg"]


def test_an_empty_folder_is_an_error(tmp_path, photo_bytes, capsys):
    (tmp_path / "empty").mkdir()
    line, _ = fails([tmp_path / "empty", "--cpu"], capsys)
    assert line == (f"error: {tmp_path / 'empty'}: no images (.jpg, .jpeg, .png, .bmp, .webp) in this folder; "
                    "--recursive looks in subfolders too")
    put(tmp_path / "nested", ["sub/a.jpg"], photo_bytes)
    line, _ = fails([tmp_path / "nested", "--cpu", "--save_folder", tmp_path / "out"], capsys)
    assert line.endswith("in this folder; --recursive looks in subfolders too")


def test_recursive_mirrors_subfolders_and_skips_its_own_output(tmp_path, photo_bytes):
    root = tmp_path / "photos"
    put(root, ["a.jpg", "x/b.jpg", "x/y/c.png"], photo_bytes)
    argv = [str(root), "--recursive", "--save_folder", str(root / "drawn"), "--cpu"]
    for _ in range(2):  # the second run must not pick up the first run's drawings
        counts = detect.run(detect.parse_args(argv))
        assert sorted(counts) == [str(root / "a.jpg"), str(root / "x" / "b.jpg"), str(root / "x" / "y" / "c.png")]
    assert sorted(digests(root / "drawn")) == ["a.jpg", "x/b.jpg", "x/y/c.png"]
    flat = detect.run(detect.parse_args([str(root), "--save_folder", str(tmp_path / "flat"), "--cpu"]))
    assert list(flat) == [str(root / "a.jpg")]


def test_save_json_lists_each_images_faces(tmp_path, photo_bytes):
    paths = put(tmp_path / "in", ["a.jpg", "sub/b.jpg"], photo_bytes)
    out = tmp_path / "out"
    counts = detect.run(detect.parse_args([str(tmp_path / "in"), "--recursive", "--save_json", "--no-save_image",
                                           "--vis_thres", "0.3", "--save_folder", str(out), "--cpu"]))
    assert sorted(p.name for p in out.iterdir()) == ["detections.json"]  # no drawn images
    report = json.loads((out / "detections.json").read_text())
    assert report["settings"] == dict(confidence_threshold=0.02, top_k=5000, nms_threshold=0.4, keep_top_k=750,
                                      vis_thres=0.3)
    assert sorted(report["images"]) == ["a.jpg", "sub/b.jpg"] and report["failed"] == []
    detector = FaceDetector.from_weights(nms_threshold=0.4)
    for name, path in zip(["a.jpg", "sub/b.jpg"], paths):
        image = cv2.imread(str(path))
        entry = report["images"][name]
        assert (entry["height"], entry["width"]) == image.shape[:2]
        faces = detector.detect(image)
        expected = faces[faces.scores >= 0.3].to_list()
        assert entry["faces"] == expected and len(expected) == counts[str(path)]
        assert all(len(f["box"]) == 4 and np.array(f["landmarks"]).shape == (5, 2) for f in expected)
    assert sum(len(e["faces"]) for e in report["images"].values()) > 0
