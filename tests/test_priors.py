"""Prior boxes: counts per level and coordinates worked out by hand."""
from itertools import product
from math import ceil

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


def public_prior_box(cfg, image_size):
    """The public ``PriorBox(cfg, image_size).forward()``, verbatim in substance: the oracle, and
    what the public test_widerface.py and detect.py run anew for every image."""
    feature_maps = [[ceil(image_size[0] / step), ceil(image_size[1] / step)] for step in cfg["steps"]]
    anchors = []
    for k, f in enumerate(feature_maps):
        min_sizes = cfg["min_sizes"][k]
        for i, j in product(range(f[0]), range(f[1])):
            for min_size in min_sizes:
                s_kx = min_size / image_size[1]
                s_ky = min_size / image_size[0]
                dense_cx = [x * cfg["steps"][k] / image_size[1] for x in [j + 0.5]]
                dense_cy = [y * cfg["steps"][k] / image_size[0] for y in [i + 0.5]]
                for cy, cx in product(dense_cy, dense_cx):
                    anchors += [cx, cy, s_kx, s_ky]
    output = torch.Tensor(anchors).view(-1, 4)
    if cfg["clip"]:
        output.clamp_(max=1, min=0)
    return output


@pytest.mark.parametrize("size", [(100, 130), (480, 640)])
def test_bitwise_equal_to_the_public_loop(size):
    assert torch.equal(prior_boxes(CFG, size), public_prior_box(CFG, size))
