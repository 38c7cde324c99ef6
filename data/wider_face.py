"""WIDER FACE training set in the RetinaFace ``label.txt`` format (docs/METHOD.md §6).

Each face becomes one row ``[x1, y1, x2, y2, lx0, ly0, ..., lx4, ly4, label]`` with label 1
when it has landmarks and -1 when they are absent, as in the public ``WiderFaceDetection``.
Augmentation draws from a ``random.Random`` seeded by (seed, epoch, index), so a sample's
augmentation does not depend on the number of workers or on where training resumed.
"""
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

import config
from utils.errors import TDKDError, located
from utils.images import read_image

FIELD_COUNTS = (20, 4)  # box + 5 (x, y, visibility) landmarks + blur, or box only
LANDMARK_FIELDS = [4, 5, 7, 8, 10, 11, 13, 14, 16, 17]  # x, y of the five landmarks


def parse_label_file(label_path):
    """Read ``label.txt`` -> (image paths, one float32 ``(N, 15)`` annotation array per image).

    Faces with ``w <= 0`` or ``h <= 0`` and images left without a face are skipped, and
    counted in one warning. Anything unreadable raises ``TDKDError`` naming file and line.
    """
    path = Path(label_path)
    if not path.is_file():
        raise TDKDError(located(path, "label file not found"))
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()  # -sig: a BOM is not text
    names, first_faces, face_lines = _split_lines(lines, path)
    images_dir = path.parent / "images"
    if not images_dir.is_dir():
        raise TDKDError(located(path, f"images folder {images_dir} not found (expected beside the label file)"))

    fields = _read_fields(face_lines, lines, path)
    annotations = _annotations(fields)
    valid = (fields[:, 2] > 0) & (fields[:, 3] > 0)
    owner = np.repeat(np.arange(len(names)), np.diff(first_faces, append=len(face_lines)))
    faces_per_image = np.bincount(owner[valid], minlength=len(names))
    kept = np.flatnonzero(faces_per_image)
    per_image = np.split(annotations[valid], np.cumsum(faces_per_image[kept])[:-1])

    skipped_faces, skipped_images = int((~valid).sum()), len(names) - len(kept)
    if skipped_faces or skipped_images:
        warnings.warn(
            f"{path}: skipped {skipped_faces} faces with w<=0 or h<=0 "
            f"and {skipped_images} images without faces",
            stacklevel=2,
        )
    if kept.size == 0:
        raise TDKDError(located(path, "no image has a face with positive width and height"))
    prefix = os.path.join(images_dir, "")
    return [prefix + names[i] for i in kept], per_image


def _split_lines(lines, path):
    """Image names, index of each image's first face line, and the face lines themselves."""
    names, first_faces, face_lines = [], [], []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            name = line[1:].strip()
            if not name:
                raise TDKDError(located(path, "'#' line without an image path", number))
            names.append(name)
            first_faces.append(len(face_lines))
        elif not names:
            raise TDKDError(located(path, "face line before the first '# image path' line", number))
        else:
            face_lines.append(line)
    if not names:
        raise TDKDError(located(path, "empty label file (no '# image path' line)"))
    return names, np.asarray(first_faces, dtype=np.int64), face_lines


def _read_fields(face_lines, lines, path):
    """Face lines -> float64 ``(M, 20)``; box-only lines get -1 for every landmark field.

    NumPy's parser handles the usual file (one field count throughout) in C; anything else
    (mixed 20/4 lines, or an error to locate: bad count, text, nan, inf) goes through the
    line-by-line reader.
    """
    if not face_lines:
        return np.zeros((0, FIELD_COUNTS[0]))
    try:
        fields = np.loadtxt(face_lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        fields = None
    if fields is None or fields.shape[1] not in FIELD_COUNTS or not _fit_float32(fields).all():
        return _read_fields_checked(lines, path)
    return _pad_box_only(fields)


def _read_fields_checked(lines, path):
    """Line-by-line reader: every face line checked, the first bad one reported."""
    rows = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) not in FIELD_COUNTS:
            raise TDKDError(located(
                path, f"found {len(tokens)} fields, expected 20 (box, 5 landmarks with flags, blur) "
                f"or 4 (box only)", number))
        absent = [-1.0] * (FIELD_COUNTS[0] - len(tokens))
        rows.append([_number(token, path, number) for token in tokens] + absent)
    return np.array(rows)


def _number(token, path, line):
    try:
        value = float(token)
    except ValueError:
        raise TDKDError(located(path, f"'{token}' is not a number", line)) from None
    if not _fit_float32(value):
        raise TDKDError(located(path, f"'{token}' is not a finite number in float32 (|x| < 3.4e38)", line))
    return value


def _fit_float32(values):
    """Whether values are finite and stay finite as float32, the annotations' type."""
    values = np.asarray(values)
    return np.isfinite(values) & (np.abs(values) <= np.finfo(np.float32).max)


def _pad_box_only(fields):
    if fields.shape[1] == FIELD_COUNTS[0]:
        return fields
    absent = np.full((len(fields), FIELD_COUNTS[0] - fields.shape[1]), -1.0)
    return np.hstack((fields, absent))


def _annotations(fields):
    """``x y w h`` + landmark fields -> ``[x1, y1, x2, y2, 10 landmark coords, label]`` float32."""
    x, y, w, h = fields[:, :4].T
    label = np.where(fields[:, 4] < 0, -1.0, 1.0)
    rows = np.column_stack((x, y, x + w, y + h, fields[:, LANDMARK_FIELDS], label))
    return rows.astype(np.float32)


class WiderFaceDetection(Dataset):
    """WIDER FACE faces per image; ``transform(image, targets, rng)`` augments a sample.

    Call ``set_epoch`` before iterating each epoch. The epoch lives in shared memory, so
    persistent DataLoader workers see it too.
    """

    def __init__(self, label_path, transform=None, seed=0, max_pixels=config.MAX_IMAGE_PIXELS):
        self.image_paths, self.annotations = parse_label_file(label_path)
        _check_images_exist(self.image_paths, label_path)
        self.transform = transform
        self.seed = seed
        self.max_pixels = max_pixels
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self):
        return int(self._epoch)

    def set_epoch(self, epoch):
        self._epoch.fill_(epoch)

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        image = read_image(self.image_paths[index], self.max_pixels)
        annotation = self.annotations[index].copy()
        if self.transform is None:
            return image, annotation
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        return self.transform(image, annotation, rng)


def _check_images_exist(image_paths, label_path):
    """Fail before training, not hours into it, when listed images are absent (a few named)."""
    missing = [path for path in image_paths if not os.path.isfile(path)]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise TDKDError(located(label_path, f"{len(missing)} of {len(image_paths)} listed images not found: {shown}"))


def detection_collate(batch):
    """Transformed samples -> (images ``[B, 3, H, W]`` float, list of ``(N_i, 15)`` targets)."""
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(image)) for image, _ in batch]).float()
    targets = [torch.from_numpy(target).float() for _, target in batch]
    return images, targets
