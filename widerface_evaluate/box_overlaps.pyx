# cython: language_level=3, boundscheck=False, wraparound=False
"""Pairwise IoU of boxes in the WIDER FACE evaluator's pixel convention (width = x2 - x1 + 1).

The arithmetic, comparisons and loop order are those of the public ``box_overlaps.pyx`` so
the values agree bit for bit; only the deprecated ``np.float`` buffer types are gone.
"""
import numpy as np

cimport numpy as cnp

cnp.import_array()

ctypedef cnp.float64_t DTYPE_t


def bbox_overlaps(const DTYPE_t[:, :] boxes, const DTYPE_t[:, :] query_boxes):
    """IoU of every ``boxes`` row (N, >=4) with every ``query_boxes`` row (K, >=4), both x1 y1 x2 y2.

    Returns a float64 (N, K) array; pairs that do not intersect get 0.
    """
    cdef Py_ssize_t N = boxes.shape[0]
    cdef Py_ssize_t K = query_boxes.shape[0]
    overlaps_array = np.zeros((N, K), dtype=np.float64)
    cdef DTYPE_t[:, ::1] overlaps = overlaps_array
    cdef DTYPE_t iw, ih, box_area, ua
    cdef Py_ssize_t k, n
    for k in range(K):
        box_area = (
            (query_boxes[k, 2] - query_boxes[k, 0] + 1) *
            (query_boxes[k, 3] - query_boxes[k, 1] + 1)
        )
        for n in range(N):
            iw = (
                min(boxes[n, 2], query_boxes[k, 2]) -
                max(boxes[n, 0], query_boxes[k, 0]) + 1
            )
            if iw > 0:
                ih = (
                    min(boxes[n, 3], query_boxes[k, 3]) -
                    max(boxes[n, 1], query_boxes[k, 1]) + 1
                )
                if ih > 0:
                    ua = (
                        (boxes[n, 2] - boxes[n, 0] + 1) *
                        (boxes[n, 3] - boxes[n, 1] + 1) +
                        box_area - iw * ih
                    )
                    overlaps[n, k] = iw * ih / ua
    return overlaps_array
