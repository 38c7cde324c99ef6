"""Shared fixtures: shipped files, the ../shared folder (skipped where absent) and a tiny WIDER-style set."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_file(*parts):
    """A file of ../shared, or skip the test where it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


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


@pytest.fixture(autouse=True)
def _one_thread():
    """The suite's models and images are small: they gain nothing from threads, and lose much
    on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
