"""Prior (anchor) boxes of RetinaFace, vectorised, with their per-level layout (docs/METHOD.md §3)."""
import math
from functools import lru_cache

import numpy as np
import torch


def feature_map_sizes(image_size, steps):
    """``[(rows, cols)]`` per level: ceil(side / stride), as the network produces them."""
    height, width = image_size
    return [(math.ceil(height / step), math.ceil(width / step)) for step in steps]


@lru_cache(maxsize=16)
def _priors(image_size, min_sizes, steps, clip):
    height, width = image_size
    levels = []
    for (rows, cols), sizes, step in zip(feature_map_sizes(image_size, steps), min_sizes, steps):
        i, j, s = np.meshgrid(np.arange(rows), np.arange(cols), np.asarray(sizes, float), indexing="ij")
        # float64 with the public code's operation order, then float32: bit-identical priors.
        cx = (j + 0.5) * step / width
        cy = (i + 0.5) * step / height
        levels.append(np.stack([cx, cy, s / width, s / height], axis=-1).reshape(-1, 4))
    priors = torch.from_numpy(np.concatenate(levels).astype(np.float32))
    if clip:
        priors.clamp_(min=0, max=1)
    return priors


def prior_boxes(cfg, image_size):
    """Priors ``[A, 4]`` (cx, cy, w, h, relative to the image) for an image of ``(H, W)``.

    Order: level, row, column, then the level's anchor sizes. Cached per image size.
    """
    key = (tuple(image_size), tuple(map(tuple, cfg["min_sizes"])), tuple(cfg["steps"]), bool(cfg["clip"]))
    return _priors(*key).clone()


def level_shapes(cfg, image_size):
    """``[(rows, cols, anchors_per_location)]`` per level, matching ``prior_boxes``' order."""
    sizes = feature_map_sizes(image_size, cfg["steps"])
    return [(rows, cols, len(m)) for (rows, cols), m in zip(sizes, cfg["min_sizes"])]


def level_counts(cfg, image_size):
    """Number of priors per level (12,800 / 3,200 / 800 at 640x640)."""
    return [rows * cols * anchors for rows, cols, anchors in level_shapes(cfg, image_size)]
