"""Test-time post-processing on a stand-in network whose outputs are set by hand (docs/METHOD.md §2, §7).

The image is 32 rows x 48 columns: level 1 has 4 x 6 locations, prior ``(row i, col j, size a)``
is number ``(6 i + j) * 2 + a`` with centre ``((j + 0.5) * 8, (i + 0.5) * 8)`` pixels and side
16 (a = 0) or 32 (a = 1). A level-1 prior's box offsets are in units of 0.1 x side pixels.
"""
import math

import numpy as np
import pytest
import torch

import test_widerface
from config import network_config
from detector import FaceDetector
from utils.inference import format_widerface, scale_for_test

CFG = network_config("mobile0.25")
HEIGHT, WIDTH = 32, 48
SHRINK = math.log(0.25) / 0.2  # width/height offset that makes a prior 4 times smaller


def _index(i, j, a, cols=6):
    return (cols * i + j) * 2 + a


class StandIn:
    """``predict`` returns the arrays that ``fill(height, width)`` builds, recording its input."""

    def __init__(self, fill):
        self.fill, self.seen = fill, None

    def predict(self, images):
        self.seen = images
        height, width = images.shape[2:]
        count = sum(math.ceil(height / s) * math.ceil(width / s) * 2 for s in (8, 16, 32))
        loc, scores, landms = torch.zeros(count, 4), torch.zeros(count), torch.zeros(count, 10)
        self.fill(height, width, loc, scores, landms)
        return loc[None], torch.stack([1 - scores, scores], -1)[None], landms[None]


def _detect(fill, image=None, resize=1, **kwargs):
    model = StandIn(fill)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8) if image is None else image
    dets, landms = FaceDetector(model, CFG, **kwargs)(image, resize)
    return dets, landms, model


def test_boxes_and_landmarks_in_pixels_of_a_non_square_image():
    def fill(height, width, loc, scores, landms):
        k = _index(1, 2, 0)  # centre (20, 12), side 16
        loc[k] = torch.tensor([1.0, -1.0, 0.0, math.log(0.5) / 0.2])
        landms[k, :2] = torch.tensor([2.0, -3.0])
        scores[k] = 0.9

    dets, landms, _ = _detect(fill)
    # centre (20 + 1.6, 12 - 1.6), 16 wide, 8 high; landmark 0 at (20 + 3.2, 12 - 4.8)
    np.testing.assert_allclose(dets, [[13.6, 6.4, 29.6, 14.4, 0.9]], atol=1e-4)
    np.testing.assert_allclose(landms[0, :2], [23.2, 7.2], atol=1e-4)
    np.testing.assert_allclose(landms[0, 2:], [[20, 12] * 4][0], atol=1e-4)


def test_resized_input_maps_back_to_original_pixels():
    def fill(height, width, loc, scores, landms):
        assert (height, width) == (64, 96)
        scores[_index(2, 4, 1, cols=12)] = 0.9  # centre (36, 20), side 32 in the resized image

    dets, _, _ = _detect(fill, resize=2)
    np.testing.assert_allclose(dets[:, :4], [[10, 2, 26, 18]], atol=1e-4)


def test_input_is_bgr_chw_minus_the_mean():
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[1, 2] = (10, 20, 30)  # B, G, R
    _, _, model = _detect(lambda *a: None, image=image)
    assert model.seen.shape == (1, 3, HEIGHT, WIDTH)
    assert model.seen[0, :, 1, 2].tolist() == [10 - 104, 20 - 117, 30 - 123]
    assert model.seen[0, :, 0, 0].tolist() == [-104, -117, -123]


def _disjoint(scores_by_prior):
    """Small level-1 priors shrunk to 4 x 4 pixels (8 pixels apart: no overlap), given scores."""
    def fill(height, width, loc, scores, landms):
        loc[:, 2:] = SHRINK
        for k, s in scores_by_prior.items():
            scores[k] = float(s)
    return fill


def test_confidence_threshold_is_strict():
    chosen = {_index(0, 0, 0): np.float32(0.02), _index(0, 2, 0): 0.0201, _index(0, 4, 0): 0.5}
    dets, _, _ = _detect(_disjoint(chosen))
    assert dets[:, 4].tolist() == pytest.approx([0.5, 0.0201])


# 15 of the 24 small level-1 priors, scores not in index order
CANDIDATES = {_index(i, j, 0): 0.3 + 0.04 * ((7 * (6 * i + j)) % 15) for i in range(4) for j in range(6)
              if 6 * i + j < 15}


def test_top_k_and_keep_top_k():
    best = sorted(CANDIDATES.values(), reverse=True)
    dets, _, _ = _detect(_disjoint(CANDIDATES))
    assert dets[:, 4].tolist() == pytest.approx(best)  # defaults: nothing dropped, best first
    dets, _, _ = _detect(_disjoint(CANDIDATES), top_k=10)
    assert dets[:, 4].tolist() == pytest.approx(best[:10])
    dets, _, _ = _detect(_disjoint(CANDIDATES), top_k=10, keep_top_k=4)
    assert dets[:, 4].tolist() == pytest.approx(best[:4])


def test_default_keep_top_k_is_750():
    def fill(height, width, loc, scores, landms):
        loc[:, 2:] = SHRINK
        scores[0:2 * 30 * 30:2] = torch.linspace(0.9, 0.5, 30 * 30)  # 900 disjoint small priors

    model = StandIn(fill)
    dets, landms = FaceDetector(model, CFG)(np.zeros((240, 240, 3), np.uint8))
    assert dets.shape == (750, 5) and landms.shape == (750, 10)


def test_top_k_applies_before_nms():
    def fill(height, width, loc, scores, landms):
        # 10 copies of the same box (the large priors, moved onto one place), then 5 disjoint
        # lower-scored small boxes elsewhere
        for n in range(10):
            k = _index(n // 6, n % 6, 1)
            loc[k, 0] = -(n % 6) * 8 / (0.1 * 32)  # shift to column 0's centre
            loc[k, 1] = -(n // 6) * 8 / (0.1 * 32)  # and row 0's
            scores[k] = 0.9 - 0.01 * n
        for n in range(5):
            k = _index(3, n, 0)
            loc[k, 2:] = SHRINK
            scores[k] = 0.5 - 0.01 * n

    dets, _, _ = _detect(fill, top_k=10)
    assert dets[:, 4].tolist() == pytest.approx([0.9])
    dets, _, _ = _detect(fill)
    assert dets[:, 4].tolist() == pytest.approx([0.9, 0.5, 0.49, 0.48, 0.47, 0.46])


@pytest.mark.parametrize("side,count", [(31, 2), (29, 1)])
def test_default_nms_threshold_is_0_3(side, count):
    # small prior (17 x 17 pixels with +1) inside the large one shrunk to side x side at the
    # same centre: IoU (17 / 32)^2 = 0.282 is kept, (17 / 30)^2 = 0.321 is suppressed
    def fill(height, width, loc, scores, landms):
        scores[_index(1, 1, 0)] = 0.9
        loc[_index(1, 1, 1), 2:] = math.log(side / 32) / 0.2
        scores[_index(1, 1, 1)] = 0.8

    dets, _, _ = _detect(fill)
    assert len(dets) == count


def test_test_widerface_defaults_are_the_protocol():
    args = test_widerface.parse_args([])
    assert (args.confidence_threshold, args.top_k, args.nms_threshold, args.keep_top_k) == (0.02, 5000, 0.3, 750)


def test_format_truncates_toward_zero_and_takes_width_from_truncated_corners():
    dets = np.array([[1.7, 2.2, 10.2, 20.5, 0.875], [-1.7, -0.4, 3.9, 5.0, 0.5]], np.float32)
    lines = format_widerface("img_1", dets).split("\n")
    assert lines[:2] == ["img_1", "2"] and lines[4:] == [""]
    rows = [line.split() for line in lines[2:4]]
    # int(10.2) - int(1.7) = 9 (not int(8.5) = 8); int(-1.7) = -1 (not floor -2)
    assert [[int(v) for v in row[:4]] for row in rows] == [[1, 2, 9, 18], [-1, 0, 4, 5]]
    assert [float(row[4]) for row in rows] == pytest.approx([0.875, 0.5])


def test_scale_rounds_the_long_side_before_capping():
    assert scale_for_test(1000, 1344) == pytest.approx(1.6)  # 2150.4 rounds to 2150: not capped
    assert scale_for_test(1000, 1345) == pytest.approx(2150 / 1345)  # 2152 is capped
    assert scale_for_test(1344, 1000) == pytest.approx(1.6)
