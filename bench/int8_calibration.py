"""INT8 settings against the float graph: AP change on the synthetic val set, and faces on a photo.

    python bench/int8_calibration.py                                    # config.DEPLOYMENT, seeds 0 and 1
    python bench/int8_calibration.py --methods minmax entropy percentile --float_sets default fpn
    python bench/int8_calibration.py --images 100 300 1000 --seeds 0 1 2

For each calibration (method, number of synthetic training images, seed) the activation
ranges are computed once (ONNX Runtime's calibration cache) and serve every --float_sets
entry (which nodes stay float, ``FLOAT_SETS``). Each INT8 graph of --weights (default: the
shipped synthetic student, as in bench/infer_speed.py --accuracy) is tested on the
quickstart's synthetic val set at the images' own size, against the float ONNX graph (whose
APs equal eager PyTorch's to 1e-8); with --photo_weights (default: the shipped WIDER student)
the same setting is also made for those weights and its faces on the photo (the crowd photo of
../shared where present, else a generated one) are compared with the float graph's: the
count above detect.py's 0.6 and the share of the float faces found at IoU >= 0.5 / 0.9. One
thread throughout.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import config  # noqa: E402
from backends import CalibrationImages, OnnxPredictor, export_onnx, quantize_int8  # noqa: E402
from detector import DEFAULT_WEIGHTS, FaceDetector, load_detector  # noqa: E402
from infer_speed import load_photo, synthetic_val, val_aps, val_images  # noqa: E402
from utils.box_utils import match_detections  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402

STEM = ["/body/stage1/stage1.0/", "/body/stage1/stage1.1/stage1.1.0/"]
HEADS = ["/ClassHead", "/BboxHead", "/LandmarkHead", "/Concat", "/Softmax"]
FLOAT_SETS = {
    "stem": STEM,
    "heads": STEM + HEADS,
    "default": config.DEPLOYMENT["int8"]["keep_float"],
    "fpn-merges": STEM + HEADS + ["/fpn/Add", "/fpn/Resize", "/fpn/merge"],
    "fpn": STEM + HEADS + ["/fpn/"],
    "ssh-outputs": STEM + HEADS + ["/ssh1/Concat", "/ssh1/Relu", "/ssh2/Concat", "/ssh2/Relu", "/ssh3/Concat",
                                   "/ssh3/Relu"],
    "ssh": STEM + HEADS + ["/ssh"],
}


def parse_args(argv=None):
    int8 = config.DEPLOYMENT["int8"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-m", "--weights", default=config.repo_path(config.QUICKSTART["student_weights"]),
                   help="weights whose AP is measured (default: the shipped synthetic student)")
    p.add_argument("--photo_weights", default=DEFAULT_WEIGHTS,
                   help="weights whose faces on the photo are compared; 'none' to skip (default: the shipped student)")
    p.add_argument("--image", help="the photo (default: ../shared/images/crowd.jpg, else a synthetic one)")
    p.add_argument("--methods", nargs="+", choices=("minmax", "entropy", "percentile"), default=[int8["method"]])
    p.add_argument("--images", nargs="+", type=int, default=[config.DEPLOYMENT["calibration"]["images"]],
                   help="numbers of calibration images")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds of the calibration images")
    p.add_argument("--float_sets", nargs="+", choices=sorted(FLOAT_SETS), default=["default"],
                   help="which nodes stay float (FLOAT_SETS)")
    p.add_argument("--extra_options", type=json.loads, default=int8["extra_options"],
                   help="JSON passed to quantize_static's extra_options")
    p.add_argument("--data", default="outputs/infer_speed/data", help="where the synthetic val set is written")
    p.add_argument("--val_images", type=int, default=config.QUICKSTART["data"]["num_val"], help="synthetic val images")
    return p.parse_args(argv)


def float_graph(weights, folder):
    """``(path of the exported float ONNX file, cfg)``."""
    model, cfg = load_detector(weights)
    path = Path(folder) / f"{Path(weights).stem}.onnx"
    export_onnx(model, path, metadata={"network": cfg["name"], "activation": cfg["activation"]})
    return path, cfg


def detector(path, cfg):
    return FaceDetector(OnnxPredictor(path, threads=1), cfg, "cpu")


def photo_faces(path, cfg, photos):
    """Detections on each of ``photos``."""
    faces = detector(path, cfg)
    return [faces(photo, 1)[0] for photo in photos]


def photo_row(float_dets, int8_dets):
    """Per photo size: faces above 0.6 (INT8 / float); over all sizes: the share of the float
    faces above 0.6 found at IoU >= 0.5 and >= 0.9, and their largest score difference."""
    counts, loose, tight, differences = [], [], [], []
    for reference, dets in zip(float_dets, int8_dets):
        strong = reference[reference[:, 4] >= 0.6]
        counts.append(f"{int((dets[:, 4] >= 0.6).sum())} / {len(strong)}")
        loose.append(match_detections(dets, strong, 0.5)[0])
        hits, diffs = match_detections(dets, strong, 0.9)
        tight.append(hits)
        differences.append(diffs.max(initial=0))
    return (f"{', '.join(counts)} | {100 * np.concatenate(loose).mean():.0f} % | "
            f"{100 * np.concatenate(tight).mean():.0f} % | {max(differences):.3f}")


def quantized(float_path, folder, label, method, count, seed, float_set, extra_options):
    """The INT8 graph of one setting; the activation ranges are cached per calibration."""
    settings = {**config.DEPLOYMENT["int8"], "method": method, "keep_float": FLOAT_SETS[float_set],
                "extra_options": extra_options}
    ranges = Path(folder) / f"{label}-{method}-{count}-{seed}.json"
    output = Path(folder) / f"{label}-{method}-{count}-{seed}-{float_set}.onnx"
    quantize_int8(float_path, output, CalibrationImages(None, count, seed), settings=settings, ranges=ranges)
    return output


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    val, names = synthetic_val(args)
    images = val_images(val, names)
    photo, source = load_photo(args.image)
    photos = [photo, cv2.resize(photo, (640, 480), interpolation=cv2.INTER_AREA)]
    with_photo = args.photo_weights != "none"
    print(f"{os.path.basename(args.weights)} on {len(names)} synthetic val images"
          + (f"; {os.path.basename(args.photo_weights)} on {source} at {photo.shape[1]}x{photo.shape[0]} and 640x480"
             if with_photo else "") + f"; extra_options {args.extra_options}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        float_path, cfg = float_graph(args.weights, folder)
        reference = val_aps(detector(float_path, cfg), val, names, images)
        if with_photo:
            photo_path, photo_cfg = float_graph(args.photo_weights, folder)
            float_dets = photo_faces(photo_path, photo_cfg, photos)
        print("\n| method | images | seed | float nodes | easy | medium | hard | worst "
              + ("| photo: faces >= 0.6 (INT8 / float) | float faces found at IoU >= 0.5 | at IoU >= 0.9 "
                 "| largest score difference " if with_photo else "") + "| seconds |")
        print("|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if with_photo else "") + "---|")
        print("| float | - | - | - | " + " | ".join(f"{100 * v:.2f}" for v in reference.values()) + " | - |"
              + (" - | - | - | - |" if with_photo else "") + " - |", flush=True)
        for method in args.methods:
            for count in args.images:
                for seed in args.seeds:
                    for float_set in args.float_sets:
                        start = time.perf_counter()
                        setting = (method, count, seed, float_set, args.extra_options)
                        aps = val_aps(detector(quantized(float_path, folder, "val", *setting), cfg), val, names, images)
                        changes = [100 * (aps[s] - reference[s]) for s in reference]
                        row = (f"| {method} | {count} | {seed} | {float_set} | "
                               + " | ".join(f"{c:+.2f}" for c in changes) + f" | {min(changes):+.2f} |")
                        if with_photo:
                            dets = photo_faces(quantized(photo_path, folder, "photo", *setting), photo_cfg, photos)
                            row += f" {photo_row(float_dets, dets)} |"
                        print(row + f" {time.perf_counter() - start:.0f} |", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
