"""What the false positives are that cost a run its precision: at each recall level of a
setting (default Easy), the predictions that count there, ranked by score down to where the
run's recall reaches that level, split by their IoU with their image's best face:

* mislocalised: 0.3 <= IoU < 0.5 (a face was found, the box is off);
* background: IoU < 0.3;
* duplicate: IoU >= 0.5 with a counted face another prediction recalled first.

    python bench/false_positives.py --gt outputs/quickstart/data/val/ground_truth \\
        --predictions outputs/quickstart/seed1/student_more/predictions outputs/quickstart/seed1/tdkd/predictions

A prediction matched to a face the setting does not count is no proposal and is not listed
(``widerface_evaluate/evaluation.py``). The last column is the median size (square root of the
area, pixels) of the face nearest to the non-duplicate false positives that touch one.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402
from widerface_evaluate.evaluation import SETTINGS, load_ground_truth, ranked_outcomes, read_predictions  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--predictions", nargs="+", required=True, help="prediction folders (test_widerface.py's output)")
    p.add_argument("--gt", required=True, help="folder of the wider_*_val.mat files")
    p.add_argument("--setting", choices=SETTINGS, default="easy")
    p.add_argument("--recall", type=float, nargs="+", default=[0.5, 0.8, 0.9], help="recall levels")
    return p.parse_args(argv)


def false_positives_at(outcomes, faces, recall):
    """Counts of the false positives ranked above the point where ``recall`` of ``faces``
    counted faces is reached (all predictions if it never is): dict with the score there."""
    scores, recalls, overlaps, sizes = outcomes
    reached = np.searchsorted(np.cumsum(recalls), recall * faces)
    cut = min(int(reached) + 1, len(scores))
    false = ~recalls[:cut]
    iou, size = overlaps[:cut][false], sizes[:cut][false]
    near = (iou > 0) & (iou < 0.5)
    return dict(score=float(scores[cut - 1]) if cut else float("nan"), false=int(false.sum()),
                mislocalised=int(((iou >= 0.3) & (iou < 0.5)).sum()), background=int((iou < 0.3).sum()),
                duplicate=int((iou >= 0.5).sum()), near_size=float(np.median(size[near])) if near.any() else float("nan"))


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    ground_truth = load_ground_truth(args.gt)
    faces = sum(len(indices) for indices in ground_truth.keep[args.setting])
    print(f"{args.setting}: {faces} counted faces\n")
    print("| predictions | recall | score there | false positives | mislocalised | background | duplicate | "
          "nearest face, px |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.predictions:
        outcomes = ranked_outcomes(read_predictions(folder), ground_truth, args.setting)
        for level in args.recall:
            c = false_positives_at(outcomes, faces, level)
            print(f"| {folder} | {level:.2f} | {c['score']:.3f} | {c['false']} | {c['mislocalised']} | "
                  f"{c['background']} | {c['duplicate']} | {c['near_size']:.0f} |")


if __name__ == "__main__":
    main()
