"""Training data: label parsing, errors, augmentation (against the public code) and loading."""
import random
import time
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data import TrainTransform, WiderFaceDetection, detection_collate, parse_label_file
from data.augment import mirror, pad_to_square, random_crop
from utils.errors import TDKDError

# x y w h, then (x, y, visibility) for left eye, right eye, nose, left and right mouth corner, blur.
FACE = "10 20 30 40 15 25 0.0 35 26 0.0 25 35 1.0 18 45 0.0 33 46 0.0 0.5"
FACE_ROW = [10, 20, 40, 60, 15, 25, 35, 26, 25, 35, 18, 45, 33, 46, 1]
NO_LANDMARKS = "5 6 7 8 " + " ".join(["-1.0"] * 15) + " 0.3"
NO_LANDMARKS_ROW = [5, 6, 12, 14] + [-1] * 10 + [-1]


def write_label(root, text, images_folder=True):
    root.mkdir(parents=True, exist_ok=True)
    if images_folder:
        (root / "images").mkdir(exist_ok=True)
    label = root / "label.txt"
    label.write_text(text)
    return label


def parse_quietly(label):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped faces expected
        return parse_label_file(label)


# ---------------------------------------------------------------- parsing


def test_parse_maps_fields_to_columns(tmp_path):
    label = write_label(tmp_path, f"# ev/a.jpg\n{FACE}\n{NO_LANDMARKS}\n# ev/b.jpg\n{FACE}\n")
    paths, annotations = parse_quietly(label)
    assert paths == [str(tmp_path / "images" / "ev" / "a.jpg"), str(tmp_path / "images" / "ev" / "b.jpg")]
    assert [a.dtype for a in annotations] == [np.float32, np.float32]
    np.testing.assert_array_equal(annotations[0], [FACE_ROW, NO_LANDMARKS_ROW])
    np.testing.assert_array_equal(annotations[1], [FACE_ROW])


def test_parse_box_only_lines(tmp_path):
    # A file of box-only lines (NumPy's fast path) and a file mixing both kinds (line-by-line).
    only_boxes = write_label(tmp_path / "boxes", "# a.jpg\n5 6 7 8\n1 2 3 4\n")
    _, (boxes,) = parse_quietly(only_boxes)
    np.testing.assert_array_equal(boxes, [NO_LANDMARKS_ROW, [1, 2, 4, 6] + [-1] * 11])

    mixed = write_label(tmp_path / "mixed", f"# a.jpg\n5 6 7 8\n{FACE}\n\n# b.jpg\n  {FACE}  \n")
    _, (first, second) = parse_quietly(mixed)
    np.testing.assert_array_equal(first, [NO_LANDMARKS_ROW, FACE_ROW])
    np.testing.assert_array_equal(second, [FACE_ROW])


def test_parse_skips_empty_faces_and_faceless_images_with_one_warning(tmp_path):
    text = (f"# a.jpg\n{FACE}\n0 0 0 5\n"     # one face of width 0
            "# b.jpg\n1 1 4 -2\n"            # only a face of height < 0 -> image dropped
            "# c.jpg\n"                      # no faces at all -> dropped
            f"# d.jpg\n{NO_LANDMARKS}\n")
    label = write_label(tmp_path, text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths, annotations = parse_label_file(label)
    assert [str(w.message) for w in caught] == [
        f"{label}: skipped 2 faces with w<=0 or h<=0 and 2 images without faces"]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["a.jpg", "d.jpg"]
    np.testing.assert_array_equal(annotations[0], [FACE_ROW])
    np.testing.assert_array_equal(annotations[1], [NO_LANDMARKS_ROW])


def test_parse_without_any_valid_face_fails(tmp_path):
    label = write_label(tmp_path, "# a.jpg\n0 0 0 0\n")
    with pytest.warns(UserWarning, match="skipped 1 faces"), pytest.raises(TDKDError, match="no image has a face"):
        parse_label_file(label)


@pytest.mark.parametrize("text, line, message", [
    ("# a.jpg\n1 2 3\n", 2, "found 3 fields, expected 20"),
    (f"# a.jpg\n{FACE}\n{FACE}\n\n# b.jpg\n{FACE} 7\n", 6, "found 21 fields, expected 20"),
    (f"# a.jpg\n{FACE}\n{FACE}\n# b.jpg\n{FACE.replace('35 1.0', '3S 1.0')}\n", 5, "'3S' is not a number"),
    ("# a.jpg\n1 2 x 4\n", 2, "'x' is not a number"),
    ("\n1 2 3 4\n# a.jpg\n", 2, "face line before the first '# image path' line"),
    ("# a.jpg\n1 2 3 4\n#\n", 3, "'#' line without an image path"),
])
def test_parse_errors_name_file_and_line(tmp_path, text, line, message):
    label = write_label(tmp_path, text)
    with pytest.raises(TDKDError) as error:
        parse_label_file(label)
    assert str(error.value).startswith(f"{label}:{line}: ")
    assert message in str(error.value)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_parse_empty_file(tmp_path, text):
    label = write_label(tmp_path, text)
    with pytest.raises(TDKDError, match="empty label file") as error:
        parse_label_file(label)
    assert str(error.value).startswith(f"{label}: ")


def test_parse_missing_file_and_images_folder(tmp_path):
    missing = tmp_path / "nowhere" / "label.txt"
    with pytest.raises(TDKDError, match="label file not found") as error:
        parse_label_file(missing)
    assert str(error.value).startswith(f"{missing}: ")

    label = write_label(tmp_path, f"# a.jpg\n{FACE}\n", images_folder=False)
    with pytest.raises(TDKDError) as error:
        parse_label_file(label)
    assert str(error.value) == (f"{label}: images folder {tmp_path / 'images'} not found "
                                "(expected beside the label file)")


def test_parse_speed_on_a_wider_sized_file(tmp_path):
    rng = random.Random(0)
    lines, faces = [], 0
    for image in range(12880):
        lines.append(f"# {image % 61}--Event/{image}.jpg")
        for _ in range(rng.randint(6, 18)):
            x, y, w, h = rng.randint(0, 900), rng.randint(0, 900), rng.randint(1, 200), rng.randint(1, 200)
            marks = " ".join(f"{rng.uniform(0, 1000):.3f} {rng.uniform(0, 1000):.3f} 0.0" for _ in range(5))
            lines.append(f"{x} {y} {w} {h} {marks} 0.82")
            faces += 1
    label = write_label(tmp_path, "\n".join(lines) + "\n")
    start = time.process_time()  # this process's CPU time: wall time grows with the machine's load
    paths, annotations = parse_quietly(label)
    seconds = time.process_time() - start
    print(f"\nparsed {len(lines)} lines ({len(paths)} images, {faces} faces) in {seconds:.3f} s of CPU")
    assert len(paths) == 12880 and sum(map(len, annotations)) == faces
    assert seconds < 5


# ---------------------------------------------------------------- augmentation: reference


def _public_preproc(image, targets, img_dim, rgb_mean, rng):
    """The public ``data_augment.preproc`` transcribed with ``random`` -> ``rng`` (reference)."""
    def matrix_iof(a, b):
        lt = np.maximum(a[:, np.newaxis, :2], b[:, :2])
        rb = np.minimum(a[:, np.newaxis, 2:], b[:, 2:])
        area_i = np.prod(rb - lt, axis=2) * (lt < rb).all(axis=2)
        area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
        return area_i / np.maximum(area_a[:, np.newaxis], 1)

    def _crop(image, boxes, labels, landm):
        height, width, _ = image.shape
        for _ in range(250):
            scale = 1.0 if rng.uniform(0, 1) <= 0.2 else rng.uniform(0.3, 1.0)
            w = h = int(scale * min(width, height))
            l = 0 if width == w else rng.randrange(width - w)
            t = 0 if height == h else rng.randrange(height - h)
            roi = np.array((l, t, l + w, t + h))
            if not (matrix_iof(boxes, roi[np.newaxis]) >= 1).any():
                continue
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            mask_a = np.logical_and(roi[:2] < centers, centers < roi[2:]).all(axis=1)
            boxes_t, labels_t = boxes[mask_a].copy(), labels[mask_a].copy()
            landms_t = landm[mask_a].copy().reshape([-1, 5, 2])
            if boxes_t.shape[0] == 0:
                continue
            image_t = image[roi[1]:roi[3], roi[0]:roi[2]]
            boxes_t[:, :2] = np.maximum(boxes_t[:, :2], roi[:2])
            boxes_t[:, :2] -= roi[:2]
            boxes_t[:, 2:] = np.minimum(boxes_t[:, 2:], roi[2:])
            boxes_t[:, 2:] -= roi[:2]
            landms_t[:, :, :2] = landms_t[:, :, :2] - roi[:2]
            landms_t[:, :, :2] = np.maximum(landms_t[:, :, :2], np.array([0, 0]))
            landms_t[:, :, :2] = np.minimum(landms_t[:, :, :2], roi[2:] - roi[:2])
            landms_t = landms_t.reshape([-1, 10])
            b_w_t = (boxes_t[:, 2] - boxes_t[:, 0] + 1) / w * img_dim
            b_h_t = (boxes_t[:, 3] - boxes_t[:, 1] + 1) / h * img_dim
            mask_b = np.minimum(b_w_t, b_h_t) > 0.0
            boxes_t, labels_t, landms_t = boxes_t[mask_b], labels_t[mask_b], landms_t[mask_b]
            if boxes_t.shape[0] == 0:
                continue
            return image_t, boxes_t, labels_t, landms_t, False
        return image, boxes, labels, landm, True

    def _convert(image, alpha=1, beta=0):
        tmp = image.astype(float) * alpha + beta
        tmp[tmp < 0] = 0
        tmp[tmp > 255] = 255
        image[:] = tmp

    def _hsv_steps(image):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        if rng.randrange(2):
            _convert(image[:, :, 1], alpha=rng.uniform(0.5, 1.5))
        if rng.randrange(2):
            tmp = image[:, :, 0].astype(int) + rng.randint(-18, 18)
            tmp %= 180
            image[:, :, 0] = tmp
        return cv2.cvtColor(image, cv2.COLOR_HSV2BGR)

    def _distort(image):
        image = image.copy()
        if rng.randrange(2):
            if rng.randrange(2):
                _convert(image, beta=rng.uniform(-32, 32))
            if rng.randrange(2):
                _convert(image, alpha=rng.uniform(0.5, 1.5))
            image = _hsv_steps(image)
        else:
            if rng.randrange(2):
                _convert(image, beta=rng.uniform(-32, 32))
            image = _hsv_steps(image)
            if rng.randrange(2):
                _convert(image, alpha=rng.uniform(0.5, 1.5))
        return image

    def _mirror(image, boxes, landms):
        _, width, _ = image.shape
        if rng.randrange(2):
            image = image[:, ::-1]
            boxes = boxes.copy()
            boxes[:, 0::2] = width - boxes[:, 2::-2]
            landms = landms.copy().reshape([-1, 5, 2])
            landms[:, :, 0] = width - landms[:, :, 0]
            landms[:, [0, 1]] = landms[:, [1, 0]]
            landms[:, [3, 4]] = landms[:, [4, 3]]
            landms = landms.reshape([-1, 10])
        return image, boxes, landms

    def _pad_to_square(image, pad_image_flag):
        if not pad_image_flag:
            return image
        height, width, _ = image.shape
        long_side = max(width, height)
        image_t = np.empty((long_side, long_side, 3), dtype=image.dtype)
        image_t[:, :] = rgb_mean
        image_t[0:height, 0:width] = image
        return image_t

    def _resize_subtract_mean(image):
        interp = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
                  cv2.INTER_LANCZOS4][rng.randrange(5)]
        image = cv2.resize(image, (img_dim, img_dim), interpolation=interp).astype(np.float32)
        image -= rgb_mean
        return image.transpose(2, 0, 1)

    boxes, labels, landm = targets[:, :4].copy(), targets[:, -1].copy(), targets[:, 4:-1].copy()
    image_t, boxes_t, labels_t, landm_t, pad_image_flag = _crop(image, boxes, labels, landm)
    image_t = _distort(image_t)
    image_t = _pad_to_square(image_t, pad_image_flag)
    image_t, boxes_t, landm_t = _mirror(image_t, boxes_t, landm_t)
    height, width, _ = image_t.shape
    image_t = _resize_subtract_mean(image_t)
    boxes_t[:, 0::2] /= width
    boxes_t[:, 1::2] /= height
    landm_t[:, 0::2] /= width
    landm_t[:, 1::2] /= height
    return image_t, np.hstack((boxes_t, landm_t, labels_t[:, None])).astype(np.float32)


def make_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def face_row(x1, y1, x2, y2, label=1):
    """A target row with plausible landmarks (or -1 ones for label -1)."""
    w, h = x2 - x1, y2 - y1
    if label < 0:
        return [x1, y1, x2, y2] + [-1] * 10 + [-1]
    fractions = [(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75)]
    points = [v for fx, fy in fractions for v in (x1 + fx * w, y1 + fy * h)]
    return [x1, y1, x2, y2] + points + [1]


TARGETS = np.array([face_row(10, 12, 50, 60), face_row(100, 20, 116, 40, -1),
                    face_row(150, 70, 200, 118), face_row(0, 100, 24, 120)], dtype=np.float32)


class FixedRng:
    """Stands in for ``random.Random``: every draw returns the given value."""

    def __init__(self, uniform=0.0, randrange=0):
        self._uniform, self._randrange = uniform, randrange

    def uniform(self, low, high):
        return self._uniform

    def randrange(self, stop):
        return self._randrange


# ---------------------------------------------------------------- augmentation


def test_transform_equals_the_public_preproc():
    image = make_image(120, 210)
    transform = TrainTransform(64)
    dropped = 0
    for seed in range(40):
        ours = transform(image, TARGETS.copy(), random.Random(seed))
        public = _public_preproc(image, TARGETS.astype(np.float64), 64, (104, 117, 123), random.Random(seed))
        np.testing.assert_array_equal(ours[0], public[0])
        np.testing.assert_array_equal(ours[1], public[1])
        dropped += len(ours[1]) < len(TARGETS)
    assert dropped > 5  # the seeds exercised crops that drop faces


def test_transform_pads_when_no_crop_fits_as_the_public_preproc():
    image = make_image(120, 210)
    # Both faces stick out of the image, so no crop can hold one whole.
    targets = np.array([face_row(-10, 10, 50, 50), face_row(190, 70, 220, 130, -1)], dtype=np.float32)
    for seed in range(5):
        ours = TrainTransform(64)(image, targets.copy(), random.Random(seed))
        public = _public_preproc(image, targets.astype(np.float64), 64, (104, 117, 123), random.Random(seed))
        np.testing.assert_array_equal(ours[0], public[0])
        np.testing.assert_array_equal(ours[1], public[1])
        assert (ours[0][:, 40:] == 0).all()  # rows below 120 / 210 * 64 = 36.6 are the padding mean
        np.testing.assert_allclose(ours[1][:, [1, 3]], [[10 / 210, 50 / 210], [70 / 210, 130 / 210]])


def test_transform_shapes_determinism_and_range():
    image, transform = make_image(120, 210), TrainTransform(64)
    first = transform(image, TARGETS.copy(), random.Random("a"))
    again = transform(image, TARGETS.copy(), random.Random("a"))
    other = transform(image, TARGETS.copy(), random.Random("b"))
    assert first[0].shape == (3, 64, 64) and first[0].dtype == np.float32 and first[0].flags.c_contiguous
    assert first[1].dtype == np.float32 and first[1].shape[1] == 15 and 1 <= len(first[1]) <= 4
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])

    for seed in range(30):
        _, targets = transform(image, TARGETS.copy(), random.Random(seed))
        with_landmarks = targets[:, 14] == 1
        assert set(targets[:, 14]) <= {1, -1}
        assert (targets[:, :4] >= 0).all() and (targets[:, :4] <= 1).all()
        assert (targets[:, 2:4] > targets[:, :2]).all()
        assert (targets[with_landmarks, 4:14] >= 0).all() and (targets[with_landmarks, 4:14] <= 1).all()


def test_transform_keeps_the_only_face():
    image, transform = make_image(90, 160), TrainTransform(48)
    targets = np.array([face_row(70, 30, 100, 66)], dtype=np.float32)
    for seed in range(20):
        _, out = transform(image, targets.copy(), random.Random(seed))
        assert out.shape == (1, 15) and out[0, 14] == 1
        assert (out[0, :4] >= 0).all() and (out[0, :4] <= 1).all() and (out[0, 2:4] > out[0, :2]).all()


def test_transform_rejects_faceless_targets():
    with pytest.raises(AssertionError, match="at least one face"):
        TrainTransform(32)(make_image(20, 20), np.zeros((0, 15), np.float32), random.Random(0))


def test_mirror_reflects_boxes_and_swaps_landmarks():
    image = np.tile(np.arange(20, dtype=np.uint8)[None, :, None], (10, 1, 3))  # pixel value = x
    boxes = np.array([[2.0, 3.0, 6.0, 8.0]])
    # left eye, right eye, nose, left mouth corner, right mouth corner
    landms = np.array([[3.0, 4.0, 5.0, 4.0, 4.0, 5.0, 3.0, 7.0, 5.0, 7.0]])
    flipped, flipped_boxes, flipped_landms = mirror(image, boxes, landms, FixedRng(randrange=1))
    np.testing.assert_array_equal(flipped[0, :, 0], np.arange(19, -1, -1))
    np.testing.assert_array_equal(flipped_boxes, [[14, 3, 18, 8]])
    np.testing.assert_array_equal(flipped_landms, [[15, 4, 17, 4, 16, 5, 15, 7, 17, 7]])

    same = mirror(image, boxes, landms, FixedRng(randrange=0))
    assert same[0] is image and same[1] is boxes and same[2] is landms


def test_crop_keeps_faces_whose_centre_is_inside():
    image = make_image(100, 200)
    boxes = np.array([[60, 10, 90, 40],      # inside the crop
                      [140, 10, 170, 40],    # centre (155, 25) right of the crop
                      [40, 50, 70, 80]],     # centre (55, 65) inside, box sticks out left
                     dtype=np.float64)
    labels = np.array([1.0, 1.0, -1.0])
    landms = np.tile(np.array([[45.0, 55.0]]), (3, 5))
    # uniform -> 0.1 <= 0.2: scale 1.0, side 100; randrange -> 50: crop x 50..150, y 0..100.
    crop, crop_boxes, crop_labels, crop_landms, cropped = random_crop(
        image, boxes, labels, landms, 640, FixedRng(uniform=0.1, randrange=50))
    assert cropped
    np.testing.assert_array_equal(crop, image[0:100, 50:150])
    np.testing.assert_array_equal(crop_boxes, [[10, 10, 40, 40], [0, 50, 20, 80]])
    np.testing.assert_array_equal(crop_labels, [1, -1])
    np.testing.assert_array_equal(crop_landms, np.tile([[0.0, 55.0]], (2, 5)))  # x clipped at the edge


def test_crop_gives_up_when_no_face_can_be_whole():
    image = make_image(100, 100)
    boxes = np.array([[-10.0, 10.0, 50.0, 50.0]])  # partly outside the image: never wholly in a crop
    result = random_crop(image, boxes, np.ones(1), np.zeros((1, 10)), 640, random.Random(0))
    assert result[4] is False and result[0] is image and result[1] is boxes


def test_pad_to_square_fills_the_mean():
    image = make_image(2, 4)
    square = pad_to_square(image, (104, 117, 123))
    assert square.shape == (4, 4, 3) and square.dtype == np.uint8
    np.testing.assert_array_equal(square[:2], image)
    assert (square[2:] == [104, 117, 123]).all()
    tall = pad_to_square(make_image(4, 2), (1, 2, 3))
    assert (tall[:, 2:] == [1, 2, 3]).all() and tall.shape == (4, 4, 3)


# ---------------------------------------------------------------- dataset and loader


@pytest.fixture
def tiny_set(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images" / "ev").mkdir(parents=True)
    lines = []
    for n in range(6):
        cv2.imwrite(str(tmp_path / "images" / "ev" / f"{n}.png"), make_image(60 + 4 * n, 80, seed=n))
        lines.append(f"# ev/{n}.png")
        for _ in range(1 + n % 3):
            x, y, w = (int(v) for v in rng.integers(0, 40, 3))
            lines.append(f"{x} {y} {w + 8} {w + 8} " + " ".join(["-1.0"] * 15) + " 0.1")
    return write_label(tmp_path, "\n".join(lines) + "\n")


def batches(loader):
    return [(images.clone(), [t.clone() for t in targets]) for images, targets in loader]


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (images_a, targets_a), (images_b, targets_b) in zip(first, second):
        assert torch.equal(images_a, images_b)
        assert len(targets_a) == len(targets_b) and all(map(torch.equal, targets_a, targets_b))


def test_dataset_without_transform_returns_pixels_and_copies(tiny_set):
    dataset = WiderFaceDetection(tiny_set)
    image, annotation = dataset[4]
    assert len(dataset) == 6 and image.shape == (76, 80, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, make_image(76, 80, seed=4))  # PNG is lossless
    annotation[:] = 0
    assert dataset[4][1].any()


def test_loader_batches_do_not_depend_on_workers(tiny_set):
    dataset = WiderFaceDetection(tiny_set, TrainTransform(32), seed=3)

    def load(num_workers, **kwargs):
        return DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=detection_collate, **kwargs)

    serial = batches(load(0))
    images, targets = serial[0]
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert [t.shape[1] for t in targets] == [15] * 4 and all(t.dtype == torch.float32 for t in targets)
    assert_same_batches(serial, batches(load(2)))

    # set_epoch changes the augmentation, and reaches persistent workers.
    persistent = load(2, persistent_workers=True)
    assert_same_batches(serial, batches(persistent))
    dataset.set_epoch(1)
    epoch_one = batches(load(0))
    assert not torch.equal(epoch_one[0][0], serial[0][0])
    assert_same_batches(epoch_one, batches(persistent))


def test_unreadable_image_names_the_image(tiny_set):
    dataset = WiderFaceDetection(tiny_set, TrainTransform(32))
    corrupt = dataset.image_paths[1]
    with open(corrupt, "wb") as handle:
        handle.write(b"not an image at all")
    with pytest.raises(TDKDError) as error:
        dataset[1]
    assert str(error.value) == f"{corrupt}: cannot read image (not an image, or corrupt)"
    missing = dataset.image_paths[2]
    (tiny_set.parent / "images" / "ev" / "2.png").unlink()
    with pytest.raises(TDKDError, match="no such file") as error:
        dataset[2]
    assert str(error.value).startswith(f"{missing}: ")
