"""The paper's ablation in miniature: distillation variants against the control, over seeds.

    python bench/ablation.py [--rows control tdkd cls ...] [--seeds 0 1 2] [--out outputs/quickstart]
    python bench/ablation.py --report      # the table of the finished runs only

Every row starts from the same student (the quickstart's, of ``config.ABLATION['student_seed']``),
runs the quickstart's distillation schedule with its own seed and distils from one shared
teacher (the shipped one unless --teacher_weights). A row is a setting of the distiller:
``--set`` overrides in ``config.ABLATION['rows']``; the control trains the same epochs without
a teacher. Runs and evaluations are kept in --out and reused, so an interrupted study goes on
where it stopped (the quickstart's seed-0 control and TDKD runs are the rows' seed-0 runs).
Prints a Markdown table of mean ± std per row, with the number of seeds, and each row minus
the control per seed.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import config  # noqa: E402
from quickstart import REPO, ensure_data, find_backbone_weights, test_and_evaluate, train_model  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import TDKDError, exit_on_error  # noqa: E402
from widerface_evaluate.evaluation import SETTINGS  # noqa: E402

ROWS = config.ABLATION["rows"]
# the quickstart's own runs of its student seed: the same start, schedule, seed and teacher
QUICKSTART_RUNS = {"control": "student_more", "tdkd": "tdkd"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows, run in this order")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every row")
    p.add_argument("--out", default="outputs/quickstart", help="the quickstart's folder (data, student, runs)")
    p.add_argument("--teacher_weights", help="default: the shipped config.QUICKSTART['teacher_weights']")
    p.add_argument("--backbone_weights", help="ImageNet MobileNet0.25 for the student (quickstart.py's default)")
    p.add_argument("--report", action="store_true", help="train nothing: the table of the finished runs")
    return p.parse_args(argv)


def run_folder(out, row, seed, shared_teacher):
    if seed == config.ABLATION["student_seed"] and row in QUICKSTART_RUNS and (row == "control" or shared_teacher):
        return out / f"seed{seed}" / QUICKSTART_RUNS[row]
    return out / "ablation" / row / f"seed{seed}"


def run_row(out, row, seed, student, teacher, shared_teacher):
    """Train (or reuse) one row's run for ``seed``; returns its final weights."""
    data, folder = out / "data", run_folder(out, row, seed, shared_teacher)
    schedule = {key: config.QUICKSTART["distillation"][key] for key in ("max_epoch", "lr", "milestones")}
    overrides = ROWS[row][1]
    if overrides is None:
        train_model("student", data, folder, seed, ["--resume_net", student], schedule)
    else:
        schedule["set"] = config.QUICKSTART["distillation"]["set"] + overrides
        train_model("distillation", data, folder, seed,
                    ["--teacher_network", config.QUICKSTART["teacher_network"], "--teacher_weights", teacher,
                     "--resume_net", student], schedule)
    return folder / "mobile0.25_Final.pth"


def markdown_table(results, seeds):
    """``results[row][seed] = {setting: AP}`` -> the table and the per-seed differences to the control."""
    lines = ["| distillation | seeds | Easy | Medium | Hard |", "|---|---|---|---|---|"]
    for row, by_seed in results.items():
        if by_seed:
            values = np.array([[100 * by_seed[s][k] for k in SETTINGS] for s in sorted(by_seed)])
            cells = " | ".join(f"{m:.2f} ± {d:.2f}" for m, d in zip(values.mean(0), values.std(0)))
            lines.append(f"| {ROWS[row][0]} | {len(by_seed)} | {cells} |")
    control = results.get("control", {})
    lines += ["", "Row minus control, per seed (easy / medium / hard):", ""]
    for row, by_seed in results.items():
        common = [s for s in seeds if s in by_seed and s in control]
        if row != "control" and common:
            gains = "; ".join(f"seed {s}: " + " / ".join(f"{100 * (by_seed[s][k] - control[s][k]):+.2f}" for k in SETTINGS)
                              for s in common)
            lines.append(f"* {ROWS[row][0]}: {gains}")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    teacher = Path(args.teacher_weights) if args.teacher_weights else REPO / config.QUICKSTART["teacher_weights"]
    if not teacher.is_file():
        raise TDKDError(f"{teacher}: no such teacher (`make teacher` trains the shipped one)")
    shared_teacher = args.teacher_weights is None
    student_seed = config.ABLATION["student_seed"]
    student = out / f"seed{student_seed}" / "student" / "mobile0.25_Final.pth"
    if not args.report:
        ensure_data(out / "data")
        train_model("student", out / "data", student.parent, student_seed,
                    ["--backbone_weights", find_backbone_weights(args.backbone_weights)])
    results = {row: {} for row in args.rows}
    for row in args.rows:
        for seed in args.seeds:
            weights = run_folder(out, row, seed, shared_teacher) / "mobile0.25_Final.pth"
            if args.report and not weights.is_file():
                continue
            if not args.report:
                weights = run_row(out, row, seed, student, teacher, shared_teacher)
            results[row][seed] = test_and_evaluate(weights, out / "data", weights.parent, f"{row} seed {seed}")
    table = markdown_table(results, args.seeds)
    (out / "ablation").mkdir(parents=True, exist_ok=True)
    (out / "ablation" / "table.md").write_text(table + "\n")
    print(f"\nsynthetic val, AP in %, one student start (seed {student_seed}), teacher {teacher}:\n\n{table}")


if __name__ == "__main__":
    main()
