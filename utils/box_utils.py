"""Box and landmark encoding, decoding, IoU and NMS (SSD / RetinaFace conventions).

The arithmetic keeps the public code's operation order so that decoded boxes are bit-identical.
"""
import numpy as np
import torch
import torchvision


def point_form(priors):
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    return torch.cat((priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2), 1)


def box_iou(boxes_a, boxes_b):
    """IoU of corner-form boxes, continuous convention (no +1), as used for matching."""
    return torchvision.ops.box_iou(boxes_a, boxes_b)


def encode(matched, priors, variances):
    """Corner-form ground truth -> SSD offsets relative to the priors."""
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    g_cxcy /= variances[0] * priors[:, 2:]
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    g_wh = torch.log(g_wh) / variances[1]
    return torch.cat([g_cxcy, g_wh], 1)


def encode_landm(matched, priors, variances):
    """Five (x, y) landmarks -> offsets from the prior centre over variance[0] * prior size."""
    points = matched.reshape(matched.shape[0], 5, 2)
    offsets = (points - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])
    return offsets.reshape(matched.shape[0], 10)


def decode(loc, priors, variances):
    """SSD offsets -> corner-form boxes (relative to the image)."""
    boxes = torch.cat(
        (
            priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:],
            priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1]),
        ),
        -1,
    )
    boxes[..., :2] -= boxes[..., 2:] / 2
    boxes[..., 2:] += boxes[..., :2]
    return boxes


def decode_landm(pre, priors, variances):
    """Landmark offsets -> five (x, y) points (relative to the image)."""
    points = pre.reshape(*pre.shape[:-1], 5, 2)
    decoded = priors[..., None, :2] + points * variances[0] * priors[..., None, 2:]
    return decoded.reshape(*pre.shape)


def nms(boxes, scores, threshold):
    """Greedy NMS with the ``+1`` pixel area convention of the public ``py_cpu_nms``.

    Candidates are visited in the order ``np.argsort(scores)[::-1]`` (as the public code does,
    ties included); torchvision's NMS then runs on that fixed order. Returns kept indices (numpy).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    order = np.asarray(scores).argsort()[::-1]
    if order.size == 0:
        return order
    ordered = torch.from_numpy(boxes[order].copy())
    ordered[:, 2:] += 1  # pixel-inclusive: width = x2 - x1 + 1
    rank = torch.arange(order.size, 0, -1, dtype=torch.float32)
    # The public code compares float32 IoUs with a float32 threshold: IoU == threshold is kept.
    keep = torchvision.ops.nms(ordered, rank, float(np.float32(threshold)))
    return order[keep.numpy()]


def match_detections(dets, reference, iou_threshold=0.95):
    """Greedy one-to-one matching of two detection sets ``[N, 5]`` (x1, y1, x2, y2, score),
    best reference first: ``(matched [M] bool per reference detection, |score difference|
    of each matched pair)``. Compares backends' outputs (``bench/infer_speed.py``)."""
    dets, reference = torch.as_tensor(np.asarray(dets)), torch.as_tensor(np.asarray(reference))
    matched = np.zeros(len(reference), bool)
    differences = []
    if len(dets) == 0 or len(reference) == 0:
        return matched, np.zeros(0, np.float32)
    iou = box_iou(reference[:, :4], dets[:, :4]).numpy()
    taken = np.zeros(len(dets), bool)
    for r in np.argsort(-reference[:, 4].numpy(), kind="stable"):
        candidates = np.flatnonzero((iou[r] >= iou_threshold) & ~taken)
        if candidates.size:
            best = candidates[np.argmax(iou[r, candidates])]
            taken[best], matched[r] = True, True
            differences.append(abs(float(dets[best, 4]) - float(reference[r, 4])))
    return matched, np.asarray(differences, np.float32)
