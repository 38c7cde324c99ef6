"""Transfer probe: how much of the teacher's task features a student's SSH features can predict.

    python bench/probe.py --student weights/synthetic_student_mobile0.25.pth
    python bench/probe.py --student outputs/quickstart/seed0/student_more/mobile0.25_Final.pth \\
        --other outputs/quickstart/seed0/tdkd/mobile0.25_Final.pth

Per level, fits a ridge-regularised linear map (no bias, like the adapters) from the
student's SSH output to each teacher target: its classification task feature (``cls``), its
regression task feature (``reg``) and its SSH output (``ssh``), on the first training images,
and reports the unexplained share on the first val images (another set: fit and test share no
image): the squared error of the map's prediction over the teacher's feature energy, sum over
locations and channels, in %. Two location sets: every location (``all``) and the locations
with an anchor matched to a face (``faces``, the regression term's locations); the table says
how many test images hold face locations at each level (level 3 needs faces of ~180 px and
more: 11 of the quickstart's first 200 val images). Images run at their own size, one at a time.

The share is a relative squared error like the default distiller's feature term, so a run that
minimised that term is favoured by it. Beside it, linear CKA (centred kernel alignment, 1 =
the same features up to a rotation and a scale) between the student's SSH output and the
teacher's task features at the same locations: a similarity that no distiller here trains on.
With ``--other``, both students are probed on the same images and the pooled task share's
difference gets a paired bootstrap band over the test images (5th-95th percentile).
"""
import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import torch  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import config  # noqa: E402
from bench.ap_bootstrap import resample_counts  # noqa: E402
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
    p.add_argument("--other", help="a second student, probed on the same images and compared with --student")
    p.add_argument("--teacher", default=config.QUICKSTART["teacher_weights"], help="teacher weights (task heads)")
    p.add_argument("--teacher_network", default=config.QUICKSTART["teacher_network"], choices=sorted(config.NETWORKS))
    p.add_argument("--data", default="outputs/quickstart/data", help="folder with train/label.txt and val/label.txt")
    p.add_argument("--train_images", type=int, default=config.PROBE["train_images"],
                   help="first N training images to fit on")
    p.add_argument("--val_images", type=int, default=config.PROBE["val_images"], help="first N val images to test on")
    p.add_argument("--ridge", type=float, default=config.PROBE["ridge"],
                   help="lambda over the mean student feature energy")
    p.add_argument("--resamples", type=int, default=config.PROBE["resamples"], help="bootstrap resamples of the test images")
    return p.parse_args(argv)


class Statistics:
    """Sums over locations per (target, level, location set): ``S^T S``, ``S^T T``, ``|T|^2``,
    and for CKA the count, ``sum S``, ``sum T`` and ``T^T T``."""

    def __init__(self):
        self.sums = {}

    def add(self, key, student, teacher):
        s, t = student.double(), teacher.double()
        self.add_sums(key, (s.T @ s, s.T @ t, t.pow(2).sum(), len(s), s.sum(0), t.sum(0), t.T @ t))

    def add_sums(self, key, sums):
        old = self.sums.get(key)
        self.sums[key] = sums if old is None else tuple(a + b for a, b in zip(old, sums))


def residual(weights, sums):
    """|T - S W|^2 from the sums alone: |T|^2 - 2 tr(W^T S^T T) + tr(W^T S^T S W)."""
    gram, cross, energy = sums[:3]
    return (energy - 2 * (weights * cross).sum() + (weights * (gram @ weights)).sum()).item()


def linear_cka(sums):
    """Linear CKA of the centred S and T: |Sc^T Tc|^2 / (|Sc^T Sc| |Tc^T Tc|), Frobenius norms."""
    gram, cross, _, count, s_sum, t_sum, t_gram = sums
    if count < 2:
        return float("nan")
    centred = [m - torch.outer(a, b) / count for m, a, b in
               ((gram, s_sum, s_sum), (cross, s_sum, t_sum), (t_gram, t_sum, t_sum))]
    gram_norm, _, t_norm = [m.norm() for m in centred]
    return (centred[1].norm() ** 2 / (gram_norm * t_norm)).item() if gram_norm * t_norm > 0 else float("nan")


@dataclass
class ProbeResult:
    """Per test image and key: the map's ``residual`` and the teacher's ``energy``; ``cka`` per
    key over all test images; ``images_with_faces[level]``: test images with face locations."""
    residual: dict
    energy: dict
    cka: dict
    images_with_faces: list

    def shares(self, image_weights=None):
        """``{key: unexplained share}`` plus the task features pooled per level,
        ``("tasks", level, where)``, and over the levels, ``("tasks", None, where)``; images
        counted ``image_weights`` times (a bootstrap draw) or once."""
        total = {key: (np.dot(image_weights, r) if image_weights is not None else r.sum(),
                       np.dot(image_weights, self.energy[key]) if image_weights is not None else self.energy[key].sum())
                 for key, r in self.residual.items()}
        shares = {key: r / e if e > 0 else float("nan") for key, (r, e) in total.items()}
        for where in LOCATIONS:
            for level in (*range(3), None):
                keys = [k for k in total if k[0] in TASKS and k[2] == where and level in (None, k[1])]
                energy = sum(total[k][1] for k in keys)
                shares[("tasks", level, where)] = sum(total[k][0] for k in keys) / energy if energy > 0 else float("nan")
        return shares


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
def image_statistics(student, teacher, label_file, count, net_cfg, desc):
    """One ``Statistics`` per image of the first ``count`` of ``label_file``, at its own size."""
    paths, annotations = parse_label_file(label_file)
    if len(paths) < count:
        raise TDKDError(located(label_file, f"{len(paths)} images, the probe asks for {count}"))
    criterion = MultiBoxLoss(config.COMMON["overlap_threshold"], variance=net_cfg["variance"])
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
        stats = Statistics()
        for level, feature in enumerate(s_out["features"]):
            s = feature[0].permute(1, 2, 0)
            for name, key in TARGETS.items():
                t = t_out[key][level][0].permute(1, 2, 0)
                stats.add((name, level, "all"), s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]))
                mask = faces[level][0]
                stats.add((name, level, "faces"), s[mask], t[mask])
        yield stats


def probe(student_path, teacher_path, teacher_network, data, train_images=200, val_images=200, ridge=1e-3):
    """``ProbeResult`` of the maps fitted on the first ``train_images`` training images, tested
    image by image on the first ``val_images`` val images."""
    net_cfg = config.network_config("mobile0.25")
    student = load_model(student_path, "mobile0.25", False)
    teacher = load_model(teacher_path, teacher_network, True)
    data = Path(data)
    fit = Statistics()
    for stats in image_statistics(student, teacher, data / "train" / "label.txt", train_images, net_cfg,
                                  "probe: fit on train images"):
        for key, sums in stats.sums.items():
            fit.add_sums(key, sums)
    maps = {key: ridge_solve(sums[0], sums[1], ridge).double() for key, sums in fit.sums.items()}
    residuals, energies, test = {key: [] for key in maps}, {key: [] for key in maps}, Statistics()
    images_with_faces = [0, 0, 0]
    for stats in image_statistics(student, teacher, data / "val" / "label.txt", val_images, net_cfg,
                                  "probe: test on val images"):
        for key, sums in stats.sums.items():
            residuals[key].append(residual(maps[key], sums))
            energies[key].append(sums[2].item())
            test.add_sums(key, sums)
        for level in range(3):
            images_with_faces[level] += stats.sums[("ssh", level, "faces")][3] > 0
    cka = {key: linear_cka(sums) for key, sums in test.sums.items()}
    return ProbeResult({k: np.array(v) for k, v in residuals.items()}, {k: np.array(v) for k, v in energies.items()},
                       cka, images_with_faces)


def paired_difference(base, other, key, resamples, seed=0):
    """(observed, 5th, 95th percentile) of ``other``'s share minus ``base``'s at ``key``, in
    points of %, over ``resamples`` draws of the test images shared by both results."""
    images = len(next(iter(base.residual.values())))
    rng = np.random.default_rng(seed)
    observed = 100 * (other.shares()[key] - base.shares()[key])
    draws = []
    for _ in range(resamples):
        weights = resample_counts(rng, images)
        draws.append(100 * (other.shares(weights)[key] - base.shares(weights)[key]))
    low, high = np.percentile(draws, [5, 95])
    return observed, low, high


def cached_task_share(student_path, teacher_path, teacher_network, data, folder):
    """The pooled task-feature share at faces (``probe`` with config.PROBE's settings) of
    ``student_path``, reused from ``folder/probe.json`` while the weights files and settings
    are unchanged."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    cache = Path(folder) / "probe.json"
    settings = {k: v for k, v in config.PROBE.items() if k != "resamples"}
    key = dict(student=sha256(student_path), teacher=sha256(teacher_path), settings=settings)
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["share"]
    share = probe(student_path, teacher_path, teacher_network, data, **settings).shares()[("tasks", None, "faces")]
    write_text_atomic(json.dumps(dict(key=key, share=share), indent=2) + "\n", cache)
    return share


def _percent(share):
    return "–" if math.isnan(share) else f"{100 * share:.1f}"  # no such location in the val images


def markdown_table(result):
    shares = result.shares()
    lines = ["| teacher target | locations | level 1 | level 2 | level 3 | CKA level 1 | CKA level 2 | CKA level 3 |",
             "|---|---|---|---|---|---|---|---|"]
    for name in TARGETS:
        for where in LOCATIONS:
            cells = " | ".join(_percent(shares[(name, level, where)]) for level in range(3))
            cka = " | ".join("–" if math.isnan(c) else f"{c:.3f}" for c in (result.cka[(name, level, where)] for level in range(3)))
            lines.append(f"| {name} | {where} | {cells} | {cka} |")
    pooled = ", ".join(f"{where} {_percent(shares[('tasks', None, where)])} %" for where in LOCATIONS)
    counts = " / ".join(str(n) for n in result.images_with_faces)
    return (("\n".join(lines) + f"\n\ntask features (cls + reg, levels pooled): {pooled}; "
             f"test images with face locations at levels 1 / 2 / 3: {counts}"))


def comparison_table(base, other, resamples):
    """The paired differences ``other`` minus ``base`` of the task share at faces, per level and pooled."""
    lines = ["| task features at faces | base % | other % | other minus base | 5th - 95th percentile |",
             "|---|---|---|---|---|"]
    for level in (*range(3), None):
        key = ("tasks", level, "faces")
        observed, low, high = paired_difference(base, other, key, resamples)
        name = "levels pooled" if level is None else f"level {level + 1}"
        lines.append(f"| {name} | {_percent(base.shares()[key])} | {_percent(other.shares()[key])} | "
                     f"{observed:+.2f} | {low:+.2f} to {high:+.2f} |")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    synthetic_set(args.data)
    students = [args.student] + ([args.other] if args.other else [])
    results = [probe(path, args.teacher, args.teacher_network, args.data, args.train_images, args.val_images, args.ridge)
               for path in students]
    for path, result in zip(students, results):
        print(f"\nunexplained share of the teacher's features on {args.val_images} held-out val images, %, "
              f"and linear CKA, student {path}:\n\n{markdown_table(result)}")
    if args.other:
        print(f"\n{args.other} (other) against {args.student} (base), {args.resamples} paired resamples of the "
              f"test images:\n\n{comparison_table(*results, args.resamples)}")


if __name__ == "__main__":
    main()
