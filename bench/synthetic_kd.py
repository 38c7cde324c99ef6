"""Student alone vs. student + TDKD on the synthetic set, repeated over seeds.

    python bench/synthetic_kd.py [--seeds 0 1 2] [--out outputs/quickstart]

Uses the quickstart's settings (``config.QUICKSTART``) and one teacher for every seed (the
quickstart's, when it exists in --out); prints mean ± std of the AP per subset. A control row,
the student trained on for the distillation's epochs without a teacher, shows how much of the
gain is the teacher's rather than the extra epochs'.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from quickstart import CONTROL_ROW, run_study  # noqa: E402
from widerface_evaluate.evaluation import SETTINGS  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="outputs/quickstart")
    args = p.parse_args()
    teacher = None
    rows = {"student": [], CONTROL_ROW: [], "student + TDKD": []}
    for seed in args.seeds:
        results, teacher = run_study(args.out, seed, teacher, control=True)
        for label in rows:
            rows[label].append([100 * results[label][s] for s in SETTINGS])
    print(f"\nsynthetic val, AP in %, mean ± std over seeds {args.seeds}:\n")
    print("| model | Easy | Medium | Hard |\n|---|---|---|---|")
    for label, values in rows.items():
        values = np.array(values)
        cells = " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(values.mean(0), values.std(0)))
        print(f"| {label} | {cells} |")
    for reference in ("student", CONTROL_ROW):
        gains = np.array(rows["student + TDKD"]) - np.array(rows[reference])
        print(f"\nTDKD minus '{reference}' per seed (easy, medium, hard): "
              + "; ".join(", ".join(f"{g:+.2f}" for g in row) for row in gains))


if __name__ == "__main__":
    main()
