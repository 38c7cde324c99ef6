"""Speed of the WIDER FACE evaluator on a full-size prediction set (~1M boxes, 3,226 files).

    python bench/evaluator.py [--gt widerface_evaluate/ground_truth] [--boxes_per_image 310]

The predictions are made up from the real val ground truth in a temporary folder, in the
public writer's format: jittered true faces plus random false positives, random scores. The
table gives the best of ``--repeats`` runs of reading the files and of evaluating them.
The whole ``widerface_evaluate/evaluation.py`` process (Python's start, imports, the .mat
files, parsing, evaluation) is timed on the full set too. A copy of the public evaluator (the
oracle of tests/test_evaluation.py) is then timed on the same set with only
``--reference_images`` images keeping their boxes (the others left empty, as the public tool
needs a file for every image; 3226 or more times it on the full set itself), next to this
evaluator on that set.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_evaluation import ref_evaluation  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402
from widerface_evaluate.evaluation import (SETTINGS, evaluate, evaluate_predictions,  # noqa: E402
                                           load_ground_truth, read_predictions)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gt", default=str(REPO / "widerface_evaluate" / "ground_truth"), help="official .mat files (shipped)")
    p.add_argument("--boxes_per_image", type=int, default=310, help="made-up predictions per image")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds; the best is kept")
    p.add_argument("--reference_images", type=int, default=300, help="0 skips timing the public copy")
    p.add_argument("--seed", type=int, default=0, help="seed of the made-up predictions")
    return p.parse_args()


def made_up_detections(faces, num_boxes, rng):
    """``num_boxes`` rows x y w h score: jittered faces (higher scores) then false positives."""
    hits = faces[rng.integers(0, len(faces), min(num_boxes // 2, 2 * len(faces)))]
    hits = hits + rng.normal(0, 0.1, hits.shape) * hits[:, [2, 3, 2, 3]]
    misses = np.concatenate([rng.uniform(0, 1000, (num_boxes - len(hits), 2)),
                             rng.uniform(5, 200, (num_boxes - len(hits), 2))], axis=1)
    scores = np.concatenate([rng.uniform(0.3, 1.0, len(hits)), rng.beta(1, 6, len(misses))])
    boxes = np.concatenate([np.concatenate([hits, misses]), scores[:, None]], axis=1)
    return boxes[np.argsort(-scores, kind="stable")]


def write_prediction(path, name, boxes):
    """The public writer: name, count, then ``x y w h score `` with integer box and float32 score."""
    lines = [name, str(len(boxes))]
    lines += [f"{int(x)} {int(y)} {int(w)} {int(h)} {str(np.float32(score))} "
              for x, y, w, h, score in boxes.tolist()]
    path.write_text("\n".join(lines) + "\n")


def write_prediction_set(root, ground_truth, boxes_per_image, rng, keep_boxes=None):
    """One folder per event, one file per image; images outside ``keep_boxes`` get no boxes."""
    total = 0
    for index, (event, name) in enumerate(zip(ground_truth.events, ground_truth.names)):
        (root / event).mkdir(parents=True, exist_ok=True)
        boxes = made_up_detections(ground_truth.boxes[index], boxes_per_image, rng)
        if keep_boxes is not None and index not in keep_boxes:
            boxes = boxes[:0]
        write_prediction(root / event / f"{name}.txt", name, boxes)
        total += len(boxes)
    return total


def best_time(function, repeats):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return min(times), value


@exit_on_error
def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    gt_seconds, ground_truth = best_time(lambda: load_ground_truth(args.gt), 1)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full"
        num_boxes = write_prediction_set(full, ground_truth, args.boxes_per_image, rng)
        parse_seconds, predictions = best_time(lambda: read_predictions(full), args.repeats)
        eval_seconds, result = best_time(lambda: evaluate_predictions(predictions, ground_truth), args.repeats)
        print(f"full set: {len(ground_truth.names)} files, {num_boxes} boxes (best of {args.repeats})")
        print(f"{'stage':<28}{'seconds':>9}")
        print(f"{'read ground truth (.mat)':<28}{gt_seconds:9.3f}")
        print(f"{'parse predictions':<28}{parse_seconds:9.3f}")
        print(f"{'evaluate':<28}{eval_seconds:9.3f}")
        print(f"{'parse + evaluate':<28}{parse_seconds + eval_seconds:9.3f}")
        process_seconds, _ = best_time(lambda: run_evaluator_process(full, args.gt), args.repeats)
        print(f"{'whole evaluation.py process':<28}{process_seconds:9.3f}")
        print("APs: " + ", ".join(f"{s} {result.aps[s]:.6f}" for s in SETTINGS))
        if args.reference_images:
            time_reference(Path(tmp) / "subset", ground_truth, process_seconds, args, rng)


def run_evaluator_process(pred_dir, gt_dir):
    """``python widerface_evaluate/evaluation.py -p pred_dir -g gt_dir`` as a user runs it."""
    subprocess.run([sys.executable, str(REPO / "widerface_evaluate" / "evaluation.py"), "-p", str(pred_dir),
                    "-g", str(gt_dir)], check=True, capture_output=True)


def time_reference(root, ground_truth, ours_process, args, rng):
    """The public algorithm against this evaluator on a set where few images have boxes (all
    of them with ``--reference_images`` at least the number of images)."""
    num_images = min(args.reference_images, len(ground_truth.names))
    chosen = set(rng.choice(len(ground_truth.names), num_images, replace=False).tolist())
    write_prediction_set(root, ground_truth, args.boxes_per_image, rng, keep_boxes=chosen)
    ours_seconds, ours = best_time(lambda: evaluate(root, args.gt), 1)
    reference_seconds, (reference_aps, _) = best_time(lambda: ref_evaluation(str(root), args.gt), 1)
    gap = max(abs(ours.aps[s] - reference_aps[s]) for s in SETTINGS)
    full_seconds = reference_seconds * len(ground_truth.names) / num_images
    print(f"\n{num_images} images with boxes, the others empty (whole runs, .mat files included)")
    print(f"{'public algorithm':<28}{reference_seconds:9.3f}")
    print(f"{'this evaluator':<28}{ours_seconds:9.3f}")
    how = "measured" if num_images == len(ground_truth.names) else "scaled by images"
    print(f"largest AP difference {gap:.1e}; public algorithm on the full set {full_seconds:.1f} s ({how}), "
          f"{full_seconds / ours_process:.1f}x this evaluator's whole process ({ours_process:.2f} s)")


if __name__ == "__main__":
    main()
