"""Transfer probe: how much of the teacher's task features a student's SSH features can predict.

    python bench/probe.py --student weights/synthetic_student_mobile0.25.pth
    python bench/probe.py --student outputs/quickstart/seed0/tdkd/mobile0.25_Final.pth

Per level, fits a ridge-regularised linear map (no bias, like the adapters) from the
student's SSH output to each teacher target: its classification task feature (``cls``), its
regression task feature (``reg``) and its SSH output (``ssh``), on training images, and
reports the unexplained share on held-out val images: the squared error of the map's
prediction over the teacher's feature energy, sum over locations and channels, in %. Two
location sets: every location (``all``) and the locations with an anchor matched to a face
(``faces``, the regression term's locations). Images run at their own size, one at a time.
The least-squares statistics are summed image by image, so memory does not grow with them.
A distillation that moves the teacher's knowledge into the student lowers the share.
"""
import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import config  # noqa: E402
from data.wider_face import parse_label_file  # noqa: E402
from layers import MultiBoxLoss, level_shapes, prior_boxes  # noqa: E402
from layers.distiller import location_masks, ridge_solve  # noqa: E402
from models import build_model  # noqa: E402
from quickstart import sha256  # noqa: E402
from utils.checkpoint import load_weights, write_text_atomic  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import TDKDError, exit_on_error, located  # noqa: E402
from utils.inference import network_input  # noqa: E402

TARGETS = {"cls": "cls_features", "reg": "reg_features", "ssh": "features"}
LOCATIONS = ("all", "faces")
TASKS = ("cls", "reg")  # the task features: the summary share


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--student", default=config.QUICKSTART["student_weights"], help="student weights")
    p.add_argument("--teacher", default=config.QUICKSTART["teacher_weights"], help="teacher weights (task heads)")
    p.add_argument("--teacher_network", default=config.QUICKSTART["teacher_network"], choices=sorted(config.NETWORKS))
    p.add_argument("--data", default="outputs/quickstart/data", help="folder with train/label.txt and val/label.txt")
    p.add_argument("--train_images", type=int, default=config.PROBE["train_images"],
                   help="first N training images to fit on")
    p.add_argument("--val_images", type=int, default=config.PROBE["val_images"], help="first N val images to test on")
    p.add_argument("--ridge", type=float, default=config.PROBE["ridge"],
                   help="lambda over the mean student feature energy")
    return p.parse_args(argv)


class Statistics:
    """Sums of ``S^T S``, ``S^T T`` and ``|T|^2`` per (target, level, location set)."""

    def __init__(self):
        self.sums = {}

    def add(self, key, student, teacher):
        s, t = student.double(), teacher.double()
        gram, cross, energy = s.T @ s, s.T @ t, t.pow(2).sum()
        if key in self.sums:
            old = self.sums[key]
            gram, cross, energy = old[0] + gram, old[1] + cross, old[2] + energy
        self.sums[key] = (gram, cross, energy)


def unexplained(fit, test, ridge):
    """Share of ``test``'s teacher energy that the ridge map fitted on ``fit`` leaves, from
    the sums alone: |T - S W|^2 = |T|^2 - 2 tr(W^T S^T T) + tr(W^T S^T S W)."""
    weights = ridge_solve(fit[0], fit[1], ridge).double()
    gram, cross, energy = test
    residual = energy - 2 * (weights * cross).sum() + (weights * (gram @ weights)).sum()
    return (residual / energy).item() if energy > 0 else float("nan")


def synthetic_set(data, splits=("train", "val")):
    """``--data`` of the bench tools: a synthetic set with ``splits``' label files, as ``make
    quickstart`` or ``python -m data.synthetic --out DATA`` writes it; else one line saying so."""
    for split in splits:
        label = Path(data) / split / "label.txt"
        if not label.is_file():
            raise TDKDError(located(label, f"not found: --data names a synthetic set; make it with "
                                           f"python -m data.synthetic --out {data} (or make quickstart)"))
    return Path(data)


def load_model(path, network, task_heads):
    model = build_model(config.network_config(network), task_heads=task_heads)
    return load_weights(model, path).eval()


@torch.no_grad()
def collect(student, teacher, label_file, count, net_cfg, desc):
    """Statistics of the first ``count`` images of ``label_file``, each at its own size."""
    paths, annotations = parse_label_file(label_file)
    if len(paths) < count:
        raise TDKDError(located(label_file, f"{len(paths)} images, the probe asks for {count}"))
    criterion = MultiBoxLoss(config.COMMON["overlap_threshold"], variance=net_cfg["variance"])
    stats = Statistics()
    for path, boxes in tqdm(list(zip(paths, annotations))[:count], desc=desc, dynamic_ncols=True):
        image = cv2.imread(path)
        if image is None:
            raise TDKDError(located(path, "cannot read image"))
        height, width = image.shape[:2]
        tensor = torch.from_numpy(network_input(image, 1, config.COMMON["rgb_mean"]))[None]
        s_out, t_out = student(tensor), teacher(tensor)
        target = torch.from_numpy(boxes.copy())
        target[:, 0:14:2] /= width
        target[:, 1:14:2] /= height
        shapes = level_shapes(net_cfg, (height, width))
        _, conf, _ = criterion.build_targets(prior_boxes(net_cfg, (height, width)), [target])
        faces = location_masks(conf != 0, shapes)  # -1: a face without landmarks
        for level, feature in enumerate(s_out["features"]):
            s = feature[0].permute(1, 2, 0)
            for name, key in TARGETS.items():
                t = t_out[key][level][0].permute(1, 2, 0)
                stats.add((name, level, "all"), s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]))
                mask = faces[level][0]
                stats.add((name, level, "faces"), s[mask], t[mask])
    return stats


def probe(student_path, teacher_path, teacher_network, data, train_images=100, val_images=100, ridge=1e-3):
    """``{(target, level, locations): unexplained share}`` plus the pooled task-feature share
    per location set, ``{("tasks", None, locations): share}``."""
    net_cfg = config.network_config("mobile0.25")
    student = load_model(student_path, "mobile0.25", False)
    teacher = load_model(teacher_path, teacher_network, True)
    data = Path(data)
    fit = collect(student, teacher, data / "train" / "label.txt", train_images, net_cfg, "probe: train images")
    test = collect(student, teacher, data / "val" / "label.txt", val_images, net_cfg, "probe: val images")
    shares = {key: unexplained(fit.sums[key], test.sums[key], ridge) for key in fit.sums}
    for where in LOCATIONS:
        keys = [key for key in fit.sums if key[0] in TASKS and key[2] == where and test.sums[key][2] > 0]
        energy = sum(test.sums[key][2].item() for key in keys)
        shares[("tasks", None, where)] = sum(shares[key] * test.sums[key][2].item() for key in keys) / energy
    return shares


def cached_task_share(student_path, teacher_path, teacher_network, data, folder):
    """The pooled task-feature share at faces (``probe`` with config.PROBE's settings) of
    ``student_path``, reused from ``folder/probe.json`` while the weights files and settings
    are unchanged."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    cache = Path(folder) / "probe.json"
    key = dict(student=sha256(student_path), teacher=sha256(teacher_path), settings=config.PROBE)
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["share"]
    shares = probe(student_path, teacher_path, teacher_network, data, **config.PROBE)
    share = shares[("tasks", None, "faces")]
    write_text_atomic(json.dumps(dict(key=key, share=share), indent=2) + "\n", cache)
    return share


def _percent(share):
    return "–" if math.isnan(share) else f"{100 * share:.1f}"  # no such location in the val images


def markdown_table(shares):
    lines = ["| teacher target | locations | level 1 | level 2 | level 3 |", "|---|---|---|---|---|"]
    for name in TARGETS:
        for where in LOCATIONS:
            cells = " | ".join(_percent(shares[(name, level, where)]) for level in range(3))
            lines.append(f"| {name} | {where} | {cells} |")
    pooled = ", ".join(f"{where} {100 * shares[('tasks', None, where)]:.1f} %" for where in LOCATIONS)
    return "\n".join(lines) + f"\n\ntask features (cls + reg, levels pooled): {pooled}"


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    synthetic_set(args.data)
    shares = probe(args.student, args.teacher, args.teacher_network, args.data, args.train_images,
                   args.val_images, args.ridge)
    print(f"\nunexplained share of the teacher's features on {args.val_images} held-out val images, %, "
          f"student {args.student}:\n\n{markdown_table(shares)}")


if __name__ == "__main__":
    main()
