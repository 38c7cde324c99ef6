"""Shared fixtures: shipped files, a tiny WIDER-style set, and photos with faces: a generated
group photo in every clone, plus the crowd photo of ../shared (a WIDER image, never committed)
where it is present, so that nothing skips on a fresh clone."""
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CROWD = SHARED / "images" / "crowd.jpg"


def shipped_file(*parts):
    """A file the repository ships (weights, ground truth); it must exist in every clone."""
    path = REPO.joinpath(*parts)
    assert path.exists(), f"{path} is shipped with the repository but missing"
    return path


def write_tiny_widerface(root, num_images=4, size=96, seed=0):
    """A few images with bright square 'faces' and a label.txt in the RetinaFace format."""
    rng = np.random.default_rng(seed)
    images = root / "images" / "0--Tiny"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for n in range(num_images):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        lines.append(f"# 0--Tiny/tiny_{n}.jpg")
        for k in range(2):
            w = int(rng.integers(20, 40))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - w))
            image[y:y + w, x:x + w] = (200, 180, 160)
            if k == 0:
                pts = [(x + 0.3 * w, y + 0.35 * w), (x + 0.7 * w, y + 0.35 * w), (x + 0.5 * w, y + 0.55 * w),
                       (x + 0.35 * w, y + 0.75 * w), (x + 0.65 * w, y + 0.75 * w)]
                marks = " ".join(f"{px:.1f} {py:.1f} 0.0" for px, py in pts)
            else:
                marks = " ".join(["-1.0"] * 15)
            lines.append(f"{x} {y} {w} {w} {marks} 0.9")
        cv2.imwrite(str(images / f"tiny_{n}.jpg"), image)
    label = root / "label.txt"
    label.write_text("\n".join(lines) + "\n")
    return label


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_tiny_widerface(tmp_path / "train")


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory):
    """The default backend exports weights into the ONNX cache on first use: the suite (and the
    scripts it runs) uses a cache of its own, never the user's ~/.cache/tdkd."""
    previous = os.environ.get("TDKD_CACHE")
    os.environ["TDKD_CACHE"] = str(tmp_path_factory.mktemp("onnx_cache"))
    yield
    if previous is None:
        del os.environ["TDKD_CACHE"]
    else:
        os.environ["TDKD_CACHE"] = previous


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """The suite's models and images are small: they gain nothing from threads, and lose much
    on a busy 2-core machine. (The scripts' automatic thread count follows OMP_NUM_THREADS.)"""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Photo:
    """A photo with faces and what the shipped distilled student finds on it."""
    name: str
    image: np.ndarray  # BGR
    min_faces: int  # faces the student scores above 0.5, at least
    boxes: np.ndarray = None  # ground truth x1, y1, x2, y2 (generated photos only)


def group_photo(seed=0, rows=4, cols=8, face_height=70):
    """A generated group photo: ``rows x cols`` synthetic faces (data/synthetic_faces.py) with
    shoulders, on a cluttered background; returns (BGR image, ground-truth boxes x1 y1 x2 y2).
    The shipped distilled student scores 30 of the 32 faces of seed 0 above 0.5."""
    from data.synthetic import draw_background
    from data.synthetic_faces import draw_body, draw_face, random_face

    rng = np.random.default_rng(seed)
    cell_w, cell_h, margin = int(1.2 * face_height), int(1.9 * face_height), 20
    height, width = rows * cell_h + 2 * margin, cols * cell_w + 2 * margin
    image = draw_background(rng, height, width)
    owner = np.zeros((height, width), np.uint16)
    boxes = []
    for row in range(rows):
        for col in range(cols):
            cx = margin + (col + 0.5) * cell_w + rng.uniform(-5, 5)
            cy = margin + (row + 0.35) * cell_h + rng.uniform(-5, 5)
            face = random_face(rng, cx, cy, face_height * rng.uniform(0.8, 1.1))
            draw_body(image, owner, face, rng.uniform(0, 255, 3))
            draw_face(image, owner, face, len(boxes) + 1)
            x, y, w, h = face.box()
            boxes.append((x, y, x + w, y + h))
    return image, np.array(boxes, np.float32)


def _photo(name):
    if name == "crowd":
        return Photo("crowd", cv2.imread(str(CROWD)), min_faces=20)
    image, boxes = group_photo()
    return Photo("group", image, min_faces=28, boxes=boxes)


# The generated photo always; the crowd photo (a WIDER image, never committed) as an extra.
PHOTOS = ["group"] + (["crowd"] if CROWD.is_file() else [])


@pytest.fixture(scope="session", params=PHOTOS)
def face_photo(request):
    return _photo(request.param)
