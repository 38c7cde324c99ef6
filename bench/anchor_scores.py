"""Where a detector's high scores land, anchor by anchor, and what the teacher says there.

    python bench/anchor_scores.py --data outputs/quickstart/data \\
        --networks outputs/quickstart/seed0/student_more/mobile0.25_Final.pth \\
        outputs/quickstart/seed0/tdkd/mobile0.25_Final.pth

On the first ``--images`` val images at their own size, for each network (and the teacher), the
anchors it scores above ``--threshold`` split by the IoU of their decoded box with the image's
nearest face (every annotated face, whatever its difficulty): *background* below
``--background_iou``, *face* at or above ``--face_iou``. For the background anchors of each
network, the teacher's face probability there: its median and the share below 0.1 (where a
probability term between 0.1 and 0.9, the paper's, cannot act). A distiller that should lower a
student's background scores needs a teacher that is confident there; this says whether it is.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402
from tqdm import tqdm  # noqa: E402

import config  # noqa: E402
from bench.probe import synthetic_set  # noqa: E402
from data.wider_face import parse_label_file  # noqa: E402
from detector import load_detector  # noqa: E402
from layers import prior_boxes  # noqa: E402
from utils.box_utils import decode  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import TDKDError, exit_on_error, located  # noqa: E402
from utils.inference import network_input  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--networks", nargs="+", required=True, help="weights of the detectors to look at")
    p.add_argument("--teacher", default=config.QUICKSTART["teacher_weights"], help="the teacher's weights")
    p.add_argument("--data", default="outputs/quickstart/data", help="synthetic set (val/label.txt inside)")
    p.add_argument("--images", type=int, default=150, help="first val images used")
    p.add_argument("--threshold", type=float, default=0.8, help="face probability counted as high")
    p.add_argument("--background_iou", type=float, default=0.3, help="below: the anchor's box is background")
    p.add_argument("--face_iou", type=float, default=0.5, help="at or above: the anchor's box is a face")
    return p.parse_args(argv)


def split_high_scores(scores, boxes, faces, threshold, background_iou, face_iou):
    """``(background [A] bool, face [A] bool)``: anchors scored above ``threshold`` whose box
    ``[A, 4]`` has IoU below ``background_iou`` with every face ``[F, 4]`` (all of them when
    there is no face), or at least ``face_iou`` with one."""
    best = box_iou(boxes, faces).max(dim=1).values if len(faces) else torch.zeros(len(boxes))
    high = scores > threshold
    return high & (best < background_iou), high & (best >= face_iou)


def teacher_summary(teacher_scores):
    """Median of the teacher's face probabilities and the share below 0.1 (nan when empty)."""
    if teacher_scores.size == 0:
        return float("nan"), float("nan")
    return float(np.median(teacher_scores)), float(np.mean(teacher_scores < 0.1))


def face_probabilities_and_boxes(model, cfg, image):
    """Face probability ``[A]`` and decoded boxes ``[A, 4]`` in pixels of one BGR image."""
    x = torch.from_numpy(network_input(image, 1, config.COMMON["rgb_mean"])).unsqueeze(0)
    height, width = x.shape[2:]
    loc, conf, _ = model.predict(x)
    boxes = decode(loc[0], prior_boxes(cfg, (height, width)), cfg["variance"])
    return conf[0, :, 1], boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype)


@torch.inference_mode()
def anchor_scores(paths, teacher_path, label_file, count, threshold, background_iou, face_iou):
    """Per network (and ``teacher``): counts of high-scoring background and face anchors, and
    the teacher's probabilities at the background ones."""
    image_paths, annotations = parse_label_file(label_file)
    networks = {path: load_detector(path) for path in paths}
    networks["teacher"] = load_detector(teacher_path)
    teacher_model, teacher_cfg = networks["teacher"]
    found = {name: dict(background=0, face=0, teacher=[]) for name in networks}
    for path, faces in tqdm(list(zip(image_paths, annotations))[:count], desc="anchor_scores"):
        image = cv2.imread(path)
        if image is None:
            raise TDKDError(located(path, "cannot read the image"))
        faces = torch.from_numpy(faces[:, :4])
        teacher_scores, _ = face_probabilities_and_boxes(teacher_model, teacher_cfg, image)
        for name, (model, cfg) in networks.items():
            scores, boxes = face_probabilities_and_boxes(model, cfg, image)
            background, face = split_high_scores(scores, boxes, faces, threshold, background_iou, face_iou)
            found[name]["background"] += int(background.sum())
            found[name]["face"] += int(face.sum())
            found[name]["teacher"].append(teacher_scores[background].numpy())
    return {name: dict(row, teacher=np.concatenate(row["teacher"])) for name, row in found.items()}


def markdown_table(found, args):
    lines = [f"first {args.images} val images, face probability above {args.threshold:g}; background: decoded box "
             f"IoU < {args.background_iou:g} with every face; face: IoU >= {args.face_iou:g}", "",
             "| network | background anchors | teacher's median there | teacher below 0.1 there | face anchors |",
             "|---|---|---|---|---|"]
    for name, row in found.items():
        median, low = teacher_summary(row["teacher"])
        lines.append(f"| {name} | {row['background']:,} | {median:.2f} | {100 * low:.0f} % | {row['face']:,} |")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    data = synthetic_set(args.data, splits=("val",))
    found = anchor_scores(args.networks, args.teacher, data / "val" / "label.txt", args.images, args.threshold,
                          args.background_iou, args.face_iou)
    print(markdown_table(found, args))


if __name__ == "__main__":
    main()
