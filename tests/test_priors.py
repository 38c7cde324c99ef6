"""Prior boxes: counts per level and coordinates worked out by hand."""
import pytest
import torch

from config import network_config
from layers import level_counts, level_shapes, prior_boxes

CFG = network_config("mobile0.25")


def test_counts_at_640():
    assert level_counts(CFG, (640, 640)) == [12800, 3200, 800]
    assert prior_boxes(CFG, (640, 640)).shape == (16800, 4)


def test_first_priors_by_hand():
    priors = prior_boxes(CFG, (640, 640))
    expected = torch.tensor([
        [4 / 640, 4 / 640, 16 / 640, 16 / 640],     # level 1, row 0, col 0, size 16
        [4 / 640, 4 / 640, 32 / 640, 32 / 640],     # same location, size 32
        [12 / 640, 4 / 640, 16 / 640, 16 / 640],    # col 1
    ])
    assert torch.equal(priors[:3], expected)
    # row 1 starts after 80 columns x 2 sizes
    assert torch.equal(priors[160], torch.tensor([4 / 640, 12 / 640, 16 / 640, 16 / 640]))
    # level 2 and 3 start with stride 16 / 32 centres and sizes 64 / 256
    assert torch.equal(priors[12800], torch.tensor([8 / 640, 8 / 640, 64 / 640, 64 / 640]))
    assert torch.equal(priors[16000 + 1], torch.tensor([16 / 640, 16 / 640, 512 / 640, 512 / 640]))


def test_non_square_image_uses_width_for_x():
    height, width = 352, 480
    priors = prior_boxes(CFG, (height, width))
    assert level_shapes(CFG, (height, width)) == [(44, 60, 2), (22, 30, 2), (11, 15, 2)]
    assert priors.shape[0] == 44 * 60 * 2 + 22 * 30 * 2 + 11 * 15 * 2
    assert priors[2].tolist() == pytest.approx([12 / width, 4 / height, 16 / width, 16 / height])


def test_bitwise_equal_to_the_public_loop():
    from itertools import product
    from math import ceil

    height, width = 100, 130
    anchors = []
    for k, step in enumerate(CFG["steps"]):
        for i, j in product(range(ceil(height / step)), range(ceil(width / step))):
            for size in CFG["min_sizes"][k]:
                anchors += [(j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height]
    assert torch.equal(prior_boxes(CFG, (height, width)), torch.tensor(anchors).view(-1, 4))
