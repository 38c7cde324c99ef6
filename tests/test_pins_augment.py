"""Training augmentation pinned by hand (docs/METHOD.md §6): crop size range, centre rule, 250 attempts,
mirror with the landmark swap, normalisation, mean subtraction."""
import numpy as np

from data import TrainTransform
from data.augment import random_crop


class ScriptedRng:
    """``uniform(a, b)`` -> a + frac (b - a); ``randrange(n)`` -> the next scripted value (or
    ``default``), capped at n - 1; ``randint(a, b)`` -> the middle. frac 0.5 makes the photometric
    distortion neutral (brightness +0, contrast and saturation x1, hue +0)."""

    def __init__(self, frac=0.5, randranges=(), default=1):
        self.frac, self.queue, self.default = frac, list(randranges), default

    def uniform(self, low, high):
        return low + self.frac * (high - low)

    def randrange(self, stop):
        return min(self.queue.pop(0) if self.queue else self.default, stop - 1)

    def randint(self, low, high):
        return (low + high) // 2


def _ramp(height, width):
    """Grey image whose value is the column index (grey survives the HSV round trip exactly)."""
    return np.tile(np.arange(width, dtype=np.uint8)[None, :, None], (height, 1, 3))


# x1 y1 x2 y2, landmarks (left eye, right eye, nose, left mouth, right mouth), label
FACE = [10, 20, 40, 60, 15, 25, 35, 26, 25, 35, 18, 45, 33, 46, 1]
OUTSIDE = [150, 20, 190, 60] + [-1] * 10 + [-1]  # centre x 170: right of the crop
TINY = [50, 50, 52, 52] + [-1] * 10 + [-1]  # 2 x 2 pixels: kept


def test_transform_by_hand_crop_mirror_swap_normalise_mean():
    # frac 0.5: 0.5 > 0.2, so scale = 0.3 + 0.5 x 0.7 = 0.65 of the short side 100: side
    # int(64.99999...) = 64; left = top = 1: crop x, y in [1, 65). Every randrange(2) is 1: mirrored.
    targets = np.array([FACE, OUTSIDE, TINY], np.float32)
    image, out = TrainTransform(64)(_ramp(100, 200), targets, ScriptedRng())
    # crop: face -> [9, 19, 39, 59], points - (1, 1); mirror in a 64-wide image: x -> 64 - x,
    # x1/x2 exchanged, eyes and mouth corners exchanged
    face = [64 - 39, 19, 64 - 9, 59,
            64 - 34, 25, 64 - 14, 24, 64 - 24, 34, 64 - 32, 45, 64 - 17, 44]
    np.testing.assert_allclose(out[0, :14], np.array(face) / 64, atol=1e-6)
    np.testing.assert_allclose(out[1, :4], np.array([64 - 51, 49, 64 - 49, 51]) / 64, atol=1e-6)
    assert out[:, 14].tolist() == [1, -1]
    # pixel (row, col k) of the output comes from column 1 + (63 - k) of the ramp, minus the BGR mean
    expected = (64 - np.arange(64, dtype=np.float32))[None, None, :] - np.array([104, 117, 123], np.float32)[:, None, None]
    np.testing.assert_array_equal(image, np.broadcast_to(expected, (3, 64, 64)))


def test_crop_drops_a_face_whose_centre_is_on_the_crop_border():
    # uniform 0.1 <= 0.2: full short side (100), left 50: crop x in [50, 150)
    boxes = np.array([[60, 10, 90, 40], [40, 50, 60, 80], [140, 50, 160, 80]], np.float64)  # centres x 75, 50, 150
    _, kept, labels, _, cropped = random_crop(_ramp(100, 200), boxes, np.array([1.0, 2.0, 3.0]),
                                              np.zeros((3, 10)), 640, ScriptedRng(frac=0.1, default=50))
    assert cropped and labels.tolist() == [1.0]
    np.testing.assert_array_equal(kept, [[10, 10, 40, 40]])


def test_crop_tries_250_times():
    boxes = np.array([[10.0, 20.0, 40.0, 60.0]])
    # side 65 (frac 0.5); 249 attempts at left 134 (no face inside), then left 1
    script = [134, 0] * 249 + [1, 1]
    result = random_crop(_ramp(100, 200), boxes, np.ones(1), np.zeros((1, 10)), 640, ScriptedRng(randranges=script))
    assert result[4] is True
    np.testing.assert_array_equal(result[1], [[9, 19, 39, 59]])
    script = [134, 0] * 250 + [1, 1]
    result = random_crop(_ramp(100, 200), boxes, np.ones(1), np.zeros((1, 10)), 640, ScriptedRng(randranges=script))
    assert result[4] is False and result[1] is boxes
