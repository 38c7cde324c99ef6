"""Drawing detections (boxes, scores, five landmarks) on an image."""
import cv2
import numpy as np

LANDMARK_COLOURS = [(0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0)]
# OpenCV takes int32 pixel positions: absurd (finite) predictions are clipped to this range.
DRAW_LIMIT = 1 << 20


def draw_detections(image, dets, landms, vis_thres=0.5):
    """A copy of the BGR ``image`` with every detection scoring at least ``vis_thres`` drawn;
    returns ``(image, number drawn)``. Detections must be finite (``postprocess`` drops the others)."""
    canvas = image.copy()
    count = 0
    for box, points in zip(dets, landms):
        if box[4] < vis_thres:
            continue
        count += 1
        x1, y1, x2, y2 = (int(v) for v in np.clip(box[:4], -DRAW_LIMIT, DRAW_LIMIT))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 0, 255), 2)
        cv2.putText(canvas, f"{box[4]:.4f}", (x1, y1 + 12), cv2.FONT_HERSHEY_DUPLEX, 0.5, (255, 255, 255))
        points = np.clip(points, -DRAW_LIMIT, DRAW_LIMIT)
        for k, colour in enumerate(LANDMARK_COLOURS):
            cv2.circle(canvas, (int(points[2 * k]), int(points[2 * k + 1])), 1, colour, 4)
    return canvas, count
