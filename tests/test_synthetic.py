"""The synthetic WIDER FACE generator: determinism, file formats, official .mat structure,
difficulty settings, and faces whose landmarks sit on the drawn features."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from data import synthetic
from data.synthetic import generate_synthetic_widerface, keep_list, main
from data.synthetic_faces import Face, draw_face
from tests.conftest import shipped_file
from utils.errors import TDKDError

SMALL = dict(num_train=10, num_val=10, image_size=(320, 560))
MAT_FILES = ["wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seed 0 twice (1 and 2 worker processes, a pool even for these few images) and seed 1 once."""
    base = tmp_path_factory.mktemp("synthetic")
    roots = {"a": base / "a", "b": base / "b", "other": base / "other"}
    generate_synthetic_widerface(roots["a"], seed=0, workers=1, **SMALL)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic, "POOL_MIN_IMAGES", 2)
        generate_synthetic_widerface(roots["b"], seed=0, workers=2, **SMALL)
    generate_synthetic_widerface(roots["other"], seed=1, workers=1, **SMALL)
    return roots


def all_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_labels(path):
    """label.txt -> {'event/name.jpg': float array (n, 20)}, checking 20 numbers per face line."""
    images, current = {}, None
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.startswith("# "):
            current = images.setdefault(line[2:], [])
        else:
            values = [float(v) for v in line.split()]
            assert len(values) == 20, f"{path}:{number}: {len(values)} numbers"
            current.append(values)
    return {name: np.array(faces).reshape(-1, 20) for name, faces in images.items()}


def test_same_seed_gives_identical_files_whatever_the_workers(runs):
    first, second = all_files(runs["a"]), all_files(runs["b"])
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    assert sum(name.endswith(".jpg") for name in first) == 20
    assert {"train/label.txt", "val/label.txt", "val/wider_val.txt"} <= first.keys()
    assert {f"val/ground_truth/{name}" for name in MAT_FILES} <= first.keys()


def test_other_seed_gives_other_data(runs):
    first, other = all_files(runs["a"]), all_files(runs["other"])
    assert first["train/label.txt"] != other["train/label.txt"]
    assert first["val/ground_truth/wider_face_val.mat"] != other["val/ground_truth/wider_face_val.mat"]
    shared_images = [name for name in first if name.endswith(".jpg") and name in other]
    assert all(first[name] != other[name] for name in shared_images)


@pytest.mark.parametrize("split", ["train", "val"])
def test_label_file_is_well_formed(runs, split):
    root = runs["a"] / split
    labels = read_labels(root / "label.txt")
    assert len(labels) == 10
    for name, faces in labels.items():
        image = cv2.imread(str(root / "images" / name))
        assert image is not None, name
        height, width = image.shape[:2]
        assert len(faces) >= 1
        x, y, w, h = faces[:, :4].T
        assert np.array_equal(faces[:, :4], np.round(faces[:, :4]))
        assert (w >= 1).all() and (h >= 1).all()
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= width).all() and (y + h <= height).all()
        marked = faces[:, 4] >= 0
        assert (faces[~marked, 4:] == -1).all()  # the 15 landmark numbers and blur, as the public file
        points = faces[marked][:, 4:19].reshape(-1, 5, 3)
        boxes = faces[marked][:, None, :4]
        assert (points[..., 0] >= boxes[..., 0] - 0.5).all()
        assert (points[..., 0] <= boxes[..., 0] + boxes[..., 2] + 0.5).all()
        assert (points[..., 1] >= boxes[..., 1] - 0.5).all()
        assert (points[..., 1] <= boxes[..., 1] + boxes[..., 3] + 0.5).all()
        assert np.isin(points[..., 2], [0.0, 1.0]).all()
        assert ((faces[marked, 19] >= 0) & (faces[marked, 19] <= 1)).all()
        # "left" is image-left for faces turned less than 35 degrees in the image plane.
        assert (points[:, 0, 0] < points[:, 1, 0]).all() and (points[:, 3, 0] < points[:, 4, 0]).all()


def test_faces_span_small_to_large_and_a_fifth_lack_landmarks(runs):
    images = [faces for split in ("train", "val")
              for faces in read_labels(runs["a"] / split / "label.txt").values()]
    faces = np.concatenate(images)
    heights, marked = faces[:, 3], faces[:, 4] >= 0
    assert (heights < 16).sum() >= 20 and (heights > 100).sum() >= 2
    assert 0.08 < (~marked).mean() < 0.35
    assert np.median(heights[~marked]) < np.median(heights[marked])
    assert max(len(f) for f in images) >= 20  # a crowd


def signature(value):
    """Nesting, shapes (lengths abstracted) and dtypes of what loadmat returns."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return ("cell", value.ndim, value.shape[1:], signature(value.flat[0]))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.kind, value.ndim, value.shape[1:] if value.dtype.kind != "U" else ())
    return type(value).__name__


def test_mat_structure_mirrors_the_official_ground_truth(runs):
    official_dir = shipped_file("widerface_evaluate", "ground_truth")
    ours_dir = runs["a"] / "val" / "ground_truth"
    for name in MAT_FILES:
        official = scipy.io.loadmat(official_dir / name)
        ours = scipy.io.loadmat(ours_dir / name)
        keys = sorted(k for k in official if not k.startswith("__"))
        assert sorted(k for k in ours if not k.startswith("__")) == keys
        for key in keys:
            assert signature(ours[key]) == signature(official[key]), (name, key)
            assert ours[key].shape[1] == 1


def test_keep_lists_are_nested_and_follow_the_size_rules(runs):
    gt = runs["a"] / "val" / "ground_truth"
    faces = scipy.io.loadmat(gt / "wider_face_val.mat")
    keeps = [scipy.io.loadmat(gt / f"wider_{s}_val.mat")["gt_list"] for s in ("easy", "medium", "hard")]
    counts = np.zeros(3, int)
    for i in range(len(faces["event_list"])):
        for j in range(len(faces["file_list"][i][0])):
            boxes = faces["face_bbx_list"][i][0][j][0]
            blur = faces["blur_label_list"][i][0][j][0][:, 0]
            occlusion = faces["occlusion_label_list"][i][0][j][0][:, 0]
            invalid = faces["invalid_label_list"][i][0][j][0][:, 0]
            easy, medium, hard = (set(k[i][0][j][0][:, 0].tolist()) for k in keeps)
            assert easy <= medium <= hard <= set(range(1, len(boxes) + 1))
            heights = boxes[:, 3]
            expected_hard = {k + 1 for k in range(len(boxes)) if heights[k] >= 8 and not invalid[k]}
            assert hard == expected_hard
            assert all(heights[k - 1] >= 25 for k in medium)
            assert all(heights[k - 1] >= 50 and blur[k - 1] < 2 and occlusion[k - 1] < 2 for k in easy)
            counts += [len(easy), len(medium), len(hard)]
    assert counts[0] > 0 and counts[0] < counts[1] < counts[2]


def test_keep_lists_use_the_official_integer_types():
    many = keep_list(np.arange(300) % 3 != 1)
    assert many.dtype == np.uint16 and many.shape == (200, 1)
    assert many[:3, 0].tolist() == [1, 3, 4] and many[-1, 0] == 300
    few = keep_list(np.array([False, True]))
    assert few.dtype == np.uint8 and few.tolist() == [[2]]
    assert keep_list(np.zeros(4, bool)).shape == (0, 1)


def test_val_list_images_and_mat_agree(runs):
    val = runs["a"] / "val"
    lines = (val / "wider_val.txt").read_text().splitlines()
    assert len(lines) == 10 and all(line.startswith("/") and line.endswith(".jpg") for line in lines)
    assert all((val / "images" / line[1:]).is_file() for line in lines)
    faces = scipy.io.loadmat(val / "ground_truth" / "wider_face_val.mat")
    in_mat = {}
    for i, event in enumerate(faces["event_list"][:, 0]):
        for j, name in enumerate(faces["file_list"][i][0][:, 0]):
            in_mat[f"/{event[0]}/{name[0]}.jpg"] = faces["face_bbx_list"][i][0][j][0]
    assert list(in_mat) == lines  # same images, same order
    events = [line.split("/")[1] for line in lines]
    assert events == sorted(events) and all(e.split("--")[0].isdigit() for e in events)
    labels = read_labels(val / "label.txt")
    for line, boxes in in_mat.items():
        assert boxes.dtype == np.int32
        assert np.array_equal(boxes, labels[line[1:]][:, :4])


def test_ground_truth_as_predictions_scores_ap_one(runs, tmp_path):
    """The keep-lists read the way the public evaluator reads them; the repo's evaluator agrees."""
    gt = runs["a"] / "val" / "ground_truth"
    faces = scipy.io.loadmat(gt / "wider_face_val.mat")
    hard = scipy.io.loadmat(gt / "wider_hard_val.mat")["gt_list"]
    for i in range(len(faces["event_list"])):
        event_name = str(faces["event_list"][i][0][0])
        img_list, sub_gt_list = faces["file_list"][i][0], hard[i][0]
        for j in range(len(img_list)):
            gt_boxes = faces["face_bbx_list"][i][0][j][0].astype("float")
            keep_index = sub_gt_list[j][0]
            ignore = np.zeros(gt_boxes.shape[0])
            if len(keep_index) != 0:
                ignore[keep_index - 1] = 1
            assert ignore.sum() == len(keep_index)  # distinct faces, all inside the image's list
            folder = tmp_path / event_name
            folder.mkdir(exist_ok=True)
            # Score 1 for every face and one far-off box scoring 0 (the public min-max
            # normalisation needs a spread of scores).
            rows = [f"{x} {y} {w} {h} 1.0" for x, y, w, h in gt_boxes.astype(int)] + ["0 0 1 1 0.0"]
            name = img_list[j][0][0]
            (folder / f"{name}.txt").write_text(f"{name}\n{len(rows)}\n" + "\n".join(rows) + "\n")
    evaluation = pytest.importorskip("widerface_evaluate.evaluation")
    result = evaluation.evaluate(str(tmp_path), str(gt))
    assert result.aps == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0})


def test_landmarks_and_box_sit_on_the_drawn_face():
    skin = (120.0, 170.0, 220.0)
    face = Face(cx=100, cy=100, a=45, b=60, roll=0.3, yaw=0.25, skin=skin, hair=(30, 30, 30),
                iris=(140, 110, 60), bald=True, long_hair=False, beard=False,
                mouth_open=False, smile=0.5, shade=(0.0, 0.0))
    image = np.full((200, 200, 3), 128, np.uint8)
    owner = np.zeros((200, 200), np.uint16)
    area = draw_face(image, owner, face, 7)
    assert area == np.count_nonzero(owner == 7)
    assert area == pytest.approx(math.pi * face.half_width * face.b, rel=0.03)
    ys, xs = np.nonzero(owner == 7)
    x, y, w, h = face.box()
    assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
    assert abs(xs.max() + 1 - (x + w)) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1

    def around(point):
        px, py = int(round(point[0])), int(round(point[1]))
        return image[py - 1:py + 2, px - 1:px + 2].reshape(-1, 3).astype(float)

    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks()
    assert (image[int(round(left_eye[1])), int(round(left_eye[0]))] < 40).all()  # pupil
    assert (image[int(round(right_eye[1])), int(round(right_eye[0]))] < 40).all()
    assert around(nose).sum(axis=1).mean() < 0.9 * sum(skin)  # nose line and nostrils
    lips = 0.55 * np.array(skin) + 0.35 * np.array([70, 60, 180])
    for corner in (mouth_left, mouth_right):
        pixels = around(corner)
        assert (np.linalg.norm(pixels - lips, axis=1) < np.linalg.norm(pixels - skin, axis=1)).any()
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]


def test_regenerating_replaces_an_earlier_set(tmp_path):
    generate_synthetic_widerface(tmp_path, num_train=2, num_val=1, image_size=(64, 96), workers=1)
    summary = generate_synthetic_widerface(tmp_path, num_train=1, num_val=1, image_size=(64, 96), workers=1)
    assert len(list((tmp_path / "train" / "images").rglob("*.jpg"))) == 1
    assert summary["train"]["images"] == 1 and summary["val"]["hard"] <= summary["val"]["faces"]


def test_smallest_images_still_hold_a_face(tmp_path):
    generate_synthetic_widerface(tmp_path, num_train=12, num_val=0, image_size=(32, 32), workers=1)
    labels = read_labels(tmp_path / "train" / "label.txt")
    assert len(labels) == 12 and all(len(faces) >= 1 for faces in labels.values())


@pytest.mark.parametrize("request_args", [dict(num_val=-1), dict(image_size=(31, 64)),
                                          dict(image_size=(64, 32)), dict(workers=-2)])
def test_bad_requests_name_the_folder(tmp_path, request_args):
    with pytest.raises(TDKDError, match=f"^{tmp_path}: bad request: "):
        generate_synthetic_widerface(tmp_path, **dict(dict(num_train=1, num_val=1), **request_args))
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(TDKDError, match=f"^{tmp_path}: already holds train/ or val/"):
        generate_synthetic_widerface(tmp_path, num_train=1, num_val=1)
    assert list(tmp_path.iterdir()) == [tmp_path / "train"]


def test_refuses_a_file_as_root(tmp_path):
    target = tmp_path / "not_a_folder"
    target.write_text("x")
    with pytest.raises(TDKDError, match=f"^{target}: is a file"):
        generate_synthetic_widerface(target, num_train=1, num_val=1)


def test_cli_summary_and_errors(tmp_path, capsys):
    main(["--out", str(tmp_path / "set"), "--num_train", "2", "--num_val", "2", "--seed", "3",
          "--image_size", "64", "96", "--workers", "1"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"synthetic WIDER FACE in {tmp_path / 'set'}: train 2 images")
    assert "easy" in line and "hard" in line and line.endswith(" s") and "\n" not in line
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "bad"), "--num_train", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {tmp_path / 'bad'}: bad request: num_train=-1")


def test_cli_defaults_make_the_quickstart_set_in_data_synthetic(capsys):
    import config
    from data.synthetic import parse_args

    args = parse_args([])
    quick = config.QUICKSTART["data"]
    assert (args.out, args.num_train, args.num_val, args.seed, args.image_size) == (
        "data/synthetic", quick["num_train"], quick["num_val"], quick["seed"], quick["image_size"])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: data/synthetic)", "(default: 480)", "(default: 400)", "(default: [320, 480])",
                  "--training_dataset data/synthetic/train/label.txt", "-g data/synthetic/val/ground_truth/"):
        assert shown in text
