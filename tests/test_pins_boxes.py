"""Box coding, IoU, NMS and the heads' output layout pinned by hand-computed values (docs/METHOD.md §2-4, §7).

Every expected number below is worked out by hand from the formulas of docs/METHOD.md; none comes from the
project's own helpers.
"""
import math

import numpy as np
import pytest
import torch

from config import network_config
from models import build_model
from models.heads import Head
from utils.box_utils import box_iou, decode, decode_landm, encode, encode_landm, nms, point_form

VAR = (0.1, 0.2)  # unequal on purpose: a swap of the two variances changes every value
# One prior (cx, cy, w, h) with w != h, so that an x/y or w/h mix-up changes the numbers.
PRIOR = torch.tensor([[0.5, 0.5, 0.2, 0.4]])


def test_point_form_by_hand():
    assert point_form(torch.tensor([[0.5, 0.4, 0.2, 0.6]]))[0].tolist() == pytest.approx([0.4, 0.1, 0.6, 0.7])


def test_iou_is_continuous_without_the_plus_one():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 1.0, 2.0]])
    # inter 1, union 4 + 4 - 1; touching boxes share no area; inter 2 over union 4
    assert box_iou(a, b)[0].tolist() == pytest.approx([1 / 7, 0.0, 0.5])


def test_encode_by_hand():
    # centre (0.56, 0.58), width 0.4 = 2 x prior width, height 0.2 = prior height / 2
    box = torch.tensor([[0.36, 0.48, 0.76, 0.68]])
    expected = [0.06 / (0.1 * 0.2), 0.08 / (0.1 * 0.4), math.log(2) / 0.2, math.log(0.5) / 0.2]
    assert expected[:2] == pytest.approx([3.0, 2.0])
    assert encode(box, PRIOR, VAR)[0].tolist() == pytest.approx(expected, abs=1e-5)


def test_decode_by_hand():
    loc = torch.tensor([[1.0, -2.0, 0.5, -1.0]])
    cx, cy = 0.5 + 1.0 * 0.1 * 0.2, 0.5 - 2.0 * 0.1 * 0.4
    w, h = 0.2 * math.exp(0.5 * 0.2), 0.4 * math.exp(-1.0 * 0.2)
    expected = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    assert decode(loc, PRIOR, VAR)[0].tolist() == pytest.approx(expected, abs=1e-6)
    # the batched form used at test time ([B, A, 4] against [A, 4] priors)
    assert decode(loc[None], PRIOR, VAR)[0, 0].tolist() == pytest.approx(expected, abs=1e-6)


def test_decode_inverts_encode():
    gen = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=gen), 0.05 + 0.5 * torch.rand(50, 2, generator=gen)], 1)
    corners = torch.rand(50, 2, generator=gen)
    boxes = torch.cat([corners, corners + 0.05 + 0.4 * torch.rand(50, 2, generator=gen)], 1)
    torch.testing.assert_close(decode(encode(boxes, priors, VAR), priors, VAR), boxes, atol=1e-5, rtol=0)


# Five points (x, y) and their offsets from the prior centre over 0.1 x prior width / height.
POINTS = [(0.52, 0.46), (0.46, 0.54), (0.50, 0.50), (0.54, 0.58), (0.44, 0.42)]
OFFSETS = [(1, -1), (-2, 1), (0, 0), (2, 2), (-3, -2)]


def test_landmark_encoding_and_decoding_by_hand():
    points = torch.tensor([[v for p in POINTS for v in p]])
    offsets = [float(v) for o in OFFSETS for v in o]
    assert encode_landm(points, PRIOR, VAR)[0].tolist() == pytest.approx(offsets, abs=1e-5)
    decoded = decode_landm(torch.tensor([[offsets]]), PRIOR, VAR)
    assert decoded.shape == (1, 1, 10)
    assert decoded[0, 0].tolist() == pytest.approx([v for p in POINTS for v in p], abs=1e-6)


def test_nms_keeps_the_best_scored_box_first():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.3)
    assert keep.tolist() == [1, 2]


def test_nms_uses_the_plus_one_pixel_area():
    # Touching boxes: IoU 0 without +1; with +1 each is 2x2, they share a 1x2 column: 2 / 6.
    boxes = np.array([[0, 0, 1, 1], [1, 0, 2, 1]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.3).tolist() == [0]
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.34).tolist() == [0, 1]


@pytest.mark.parametrize("rows,kept", [(1, [0, 1]), (2, [0, 1]), (3, [0])])
def test_nms_threshold_side(rows, kept):
    """The public py_cpu_nms keeps a box when its IoU is <= the threshold, in float32."""
    # [0,0,9,9] has +1 area 100; [0,0,9,rows] inside it has area 10 (rows + 1): IoU 0.2 / 0.3 / 0.4.
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, rows]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.3).tolist() == kept


def test_head_output_is_nhwc_with_anchor_then_value():
    """pred[b, (row * cols + col) * anchors + anchor, value] = channel anchor * values + value."""
    head = Head(1, num_anchors=2, values_per_anchor=4)
    with torch.no_grad():
        head.conv1x1.weight.fill_(100.0)
        head.conv1x1.bias.copy_(torch.arange(8.0))
    rows, cols = 2, 3
    location = torch.arange(rows * cols, dtype=torch.float32).view(1, 1, rows, cols)  # row * cols + col
    pred, feature = head(location)
    assert feature is None and pred.shape == (1, rows * cols * 2, 4)
    for loc in range(rows * cols):
        for anchor in range(2):
            assert pred[0, loc * 2 + anchor].tolist() == [100 * loc + anchor * 4 + v for v in range(4)]


def test_model_concatenates_levels_in_order_1_2_3():
    torch.manual_seed(0)
    model = build_model(network_config("mobile0.25")).eval()
    with torch.no_grad():
        for level, head in enumerate(model.LandmarkHead):
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.fill_(level + 1.0)
        out = model(torch.zeros(1, 3, 64, 96))
    # 64x96: levels of 8x12, 4x6 and 2x3 locations, two anchors each
    counts = [8 * 12 * 2, 4 * 6 * 2, 2 * 3 * 2]
    marks = out["landms"][0, :, 0]
    assert marks.tolist() == [1.0] * counts[0] + [2.0] * counts[1] + [3.0] * counts[2]


def test_predict_applies_softmax_over_the_two_classes():
    torch.manual_seed(0)
    model = build_model(network_config("mobile0.25")).eval()
    with torch.no_grad():
        for head in model.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([0.0, math.log(3.0)] * 2))  # per anchor: background, face
        _, scores, _ = model.predict(torch.zeros(1, 3, 32, 32))
    assert scores.shape == (1, (16 + 4 + 1) * 2, 2)
    torch.testing.assert_close(scores, torch.tensor([0.25, 0.75]).expand_as(scores))
