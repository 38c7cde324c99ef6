"""Training augmentation of RetinaFace (docs/METHOD.md §6): the public ``data_augment.py``.

Every random draw comes from the ``rng`` argument (a ``random.Random``), in the public code's
order, so one seed gives one augmentation whatever process runs it. Boxes and landmarks are
in pixels until ``TrainTransform`` normalises them by the final image size. The landmark
coordinates of label -1 faces (no landmarks) are transformed too but carry no meaning.
"""
import cv2
import numpy as np

CROP_ATTEMPTS = 250
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4)
MIRRORED_LANDMARKS = [1, 0, 2, 4, 3]  # eyes swap, nose stays, mouth corners swap


def matrix_iof(boxes, rois):
    """Intersection over each box's own area, ``[len(boxes), len(rois)]`` (no +1 convention)."""
    top_left = np.maximum(boxes[:, None, :2], rois[:, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], rois[:, 2:])
    intersection = np.prod(bottom_right - top_left, axis=2) * (top_left < bottom_right).all(axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return intersection / np.maximum(area[:, None], 1)


def random_crop(image, boxes, labels, landms, img_dim, rng):
    """Square crop of 0.3-1.0 of the short side keeping the faces whose centre it contains.

    An attempt counts only if the crop holds at least one whole face. Returns
    ``(image, boxes, labels, landms, cropped)``; after 250 failed attempts the inputs come
    back unchanged with ``cropped=False``.
    """
    height, width, _ = image.shape
    short_side = min(width, height)
    for _ in range(CROP_ATTEMPTS):
        scale = 1.0 if rng.uniform(0, 1) <= 0.2 else rng.uniform(0.3, 1.0)
        side = int(scale * short_side)
        left = 0 if width == side else rng.randrange(width - side)
        top = 0 if height == side else rng.randrange(height - side)
        roi = np.array((left, top, left + side, top + side))
        if not (matrix_iof(boxes, roi[np.newaxis]) >= 1).any():
            continue

        centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.logical_and(roi[:2] < centers, centers < roi[2:]).all(axis=1)
        if not inside.any():
            continue
        boxes_t = boxes[inside].copy()
        boxes_t[:, :2] = np.maximum(boxes_t[:, :2], roi[:2]) - roi[:2]
        boxes_t[:, 2:] = np.minimum(boxes_t[:, 2:], roi[2:]) - roi[:2]
        points = landms[inside].reshape(-1, 5, 2) - roi[:2]
        points = np.minimum(np.maximum(points, 0), roi[2:] - roi[:2])

        # The public code's guard against degenerate boxes (pixel-inclusive size at training scale).
        widths = (boxes_t[:, 2] - boxes_t[:, 0] + 1) / side * img_dim
        heights = (boxes_t[:, 3] - boxes_t[:, 1] + 1) / side * img_dim
        visible = np.minimum(widths, heights) > 0.0
        if not visible.any():
            continue
        image_t = image[roi[1]:roi[3], roi[0]:roi[2]]
        return image_t, boxes_t[visible], labels[inside][visible], points.reshape(-1, 10)[visible], True
    return image, boxes, labels, landms, False


def distort(image, rng):
    """Photometric distortion: brightness, contrast (before or after the HSV step), saturation, hue.

    Every step maps each uint8 value on its own, so it runs as a lookup table computed with the
    public code's arithmetic (float64, clipped, truncated to uint8): the same pixels, faster.
    """
    contrast_first = rng.randrange(2)
    before = after = saturation = hue = None
    if rng.randrange(2):
        before = _blend_table(beta=rng.uniform(-32, 32))
    if contrast_first and rng.randrange(2):
        contrast = _blend_table(alpha=rng.uniform(0.5, 1.5))
        before = contrast if before is None else contrast[before]
    if rng.randrange(2):
        saturation = _blend_table(alpha=rng.uniform(0.5, 1.5))
    if rng.randrange(2):
        hue = ((VALUES.astype(int) + rng.randint(-18, 18)) % 180).astype(np.uint8)
    if not contrast_first and rng.randrange(2):
        after = _blend_table(alpha=rng.uniform(0.5, 1.5))
    hsv = cv2.cvtColor(_lookup(image, before), cv2.COLOR_BGR2HSV)
    if saturation is not None or hue is not None:
        per_channel = [VALUES if table is None else table for table in (hue, saturation, None)]
        hsv = cv2.LUT(hsv, np.stack(per_channel, axis=1)[None])
    return _lookup(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), after)


VALUES = np.arange(256, dtype=np.uint8)


def _blend_table(alpha=1.0, beta=0.0):
    """Lookup table of ``clip(value * alpha + beta, 0, 255)`` truncated to uint8."""
    return np.clip(VALUES.astype(float) * alpha + beta, 0, 255).astype(np.uint8)


def _lookup(image, table):
    return image if table is None else cv2.LUT(image, table)


def mirror(image, boxes, landms, rng):
    """Flip horizontally with probability 1/2: x -> width - x, left/right landmarks swap."""
    if not rng.randrange(2):
        return image, boxes, landms
    width = image.shape[1]
    boxes = np.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), axis=1)
    points = landms.reshape(-1, 5, 2)[:, MIRRORED_LANDMARKS].copy()
    points[:, :, 0] = width - points[:, :, 0]
    return cv2.flip(image, 1), boxes, points.reshape(-1, 10)


def pad_to_square(image, rgb_mean):
    """Pad right/bottom to a square of the long side, filled with the mean colour."""
    height, width, _ = image.shape
    long_side = max(width, height)
    square = np.empty((long_side, long_side, 3), dtype=image.dtype)
    square[:, :] = rgb_mean
    square[:height, :width] = image
    return square


def resize_subtract_mean(image, size, rgb_mean, rng):
    """Resize to ``size x size`` with a random interpolation, subtract the mean, HWC -> CHW."""
    interpolation = INTERPOLATIONS[rng.randrange(len(INTERPOLATIONS))]
    image = cv2.resize(image, (size, size), interpolation=interpolation)
    out = np.empty((3, size, size), dtype=np.float32)
    for channel, (plane, mean) in enumerate(zip(cv2.split(image), rgb_mean)):
        # computed in float64, rounded to float32, as the public ``image.astype(float32) -= rgb_mean``
        np.subtract(plane, float(mean), out=out[channel], dtype=np.float64, casting="same_kind")
    return out


class TrainTransform:
    """RetinaFace training augmentation: crop, distort, pad, mirror, resize, normalise.

    ``__call__(image, targets, rng)`` takes a BGR uint8 image and ``(N, 15)`` pixel targets
    (``x1 y1 x2 y2``, 10 landmark coordinates, label) and returns the ``3 x img_dim x img_dim``
    float32 image minus the mean and float32 targets relative to the image.
    """

    def __init__(self, img_dim, rgb_mean=(104, 117, 123)):
        self.img_dim = img_dim
        self.rgb_mean = tuple(rgb_mean)

    def __call__(self, image, targets, rng):
        assert len(targets) > 0, "TrainTransform needs an image with at least one face"
        targets = np.asarray(targets, dtype=np.float64)  # the public code's arithmetic precision
        boxes, landms, labels = targets[:, :4], targets[:, 4:14], targets[:, 14]
        image, boxes, labels, landms, cropped = random_crop(image, boxes, labels, landms, self.img_dim, rng)
        image = distort(image, rng)
        if not cropped:
            image = pad_to_square(image, self.rgb_mean)
        image, boxes, landms = mirror(image, boxes, landms, rng)
        height, width, _ = image.shape
        image = resize_subtract_mean(image, self.img_dim, self.rgb_mean, rng)
        boxes = boxes / np.array([width, height] * 2)
        landms = landms / np.array([width, height] * 5)
        return image, np.hstack((boxes, landms, labels[:, None])).astype(np.float32)
