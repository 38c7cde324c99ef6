"""The paper's ablation in miniature: distillation variants against the control, over seeds.

    python bench/ablation.py [--rows control tdkd cls ...] [--seeds 0 1 2] [--out outputs/quickstart]
    python bench/ablation.py --report      # the table of the finished runs only
    python bench/ablation.py --rows control tdkd paper --seeds 0 1 --schedule_scale 4   # 4x longer
    python bench/ablation.py --rows control tdkd --seeds 3 4 5 --data_seed 1   # another data set

Every row starts from the same student and distils from one shared teacher (the shipped
ones unless --student_weights / --teacher_weights), with the quickstart's distillation
schedule and its own seed. A row is a setting of the distiller:
``--set`` overrides in ``config.ABLATION['rows']``; the control trains the same epochs without
a teacher. Runs and evaluations are kept in --out and reused, so an interrupted study goes on
where it stopped; with the shipped teacher and student, the quickstart's control and TDKD runs
of a seed are these rows' runs of that seed. ``--schedule_scale K`` multiplies the schedule's
epochs and learning-rate milestones by K (runs in ``ablation/xK/``, table ``ablation/xK/table.md``).
Prints a Markdown table of mean ± std per row, with the number of seeds, and each row minus
the control per seed. The probe column (bench/probe.py, with config.PROBE; cached in each run's
folder) is the share of the teacher's task features, at faces on held-out val images, that a
linear map cannot predict from the row's student: lower means more of the teacher moved.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import config  # noqa: E402
from bench.probe import cached_task_share  # noqa: E402
from quickstart import (arm_command, ensure_data, is_finished, run_training, shipped_weights,  # noqa: E402
                        test_and_evaluate)
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402
from widerface_evaluate.evaluation import SETTINGS  # noqa: E402

ROWS = config.ABLATION["rows"]
# the quickstart's own runs of a seed: the same start, schedule, seed and teacher
QUICKSTART_RUNS = {"control": "student_more", "cwd_tdkd": "tdkd"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows, run in this order")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every row")
    p.add_argument("--out", default="outputs/quickstart", help="the quickstart's folder (data, runs)")
    p.add_argument("--teacher_weights", help="default: the shipped config.QUICKSTART['teacher_weights']")
    p.add_argument("--student_weights", help="default: the shipped config.QUICKSTART['student_weights']")
    p.add_argument("--report", action="store_true", help="train nothing: the table of the runs finished with the current settings, "
                   "teacher and student (nothing to probe and no table where none is)")
    p.add_argument("--schedule_scale", type=int, default=1, help="epochs and milestones times this")
    p.add_argument("--no_probe", action="store_true", help="leave the probe column empty (it takes ~1 min per new run)")
    p.add_argument("--data_seed", type=int, default=config.QUICKSTART["data"]["seed"],
                   help="seed of the synthetic train and val sets; another seed than the quickstart's makes "
                        "another set and keeps its runs in OUT/data_seedN/ (a held-out set to report on)")
    return p.parse_args(argv)


def study_folder(out, schedule_scale):
    return out / "ablation" / (f"x{schedule_scale}" if schedule_scale != 1 else "")


def run_folder(out, row, seed, shipped_teacher, shipped_student, schedule_scale=1):
    quickstart_run = schedule_scale == 1 and shipped_student and (row == "control" or shipped_teacher)
    if row in QUICKSTART_RUNS and quickstart_run:
        return out / f"seed{seed}" / QUICKSTART_RUNS[row]
    return study_folder(out, schedule_scale) / row / f"seed{seed}"


def row_command(out, row, seed, student, teacher, folder, schedule_scale=1):
    """``train.py``'s arguments of one row's run for ``seed`` in ``folder``."""
    return arm_command(out, seed, student, teacher, folder, ROWS[row][1], schedule_scale)


def markdown_table(results, seeds, probes=None, start_probe=None):
    """``results[row][seed] = {setting: AP}`` (and ``probes[row][seed]`` = the probe's share)
    -> the table and the per-seed differences to the control."""
    probes = probes or {}
    lines = ["| distillation | seeds | Easy | Medium | Hard | probe: unexplained % |", "|---|---|---|---|---|---|"]
    if start_probe is not None:
        lines.append(f"| starting student | | | | | {100 * start_probe:.1f} |")
    for row, by_seed in results.items():
        if by_seed:
            values = np.array([[100 * by_seed[s][k] for k in SETTINGS] for s in sorted(by_seed)])
            cells = " | ".join(f"{m:.2f} ± {d:.2f}" for m, d in zip(values.mean(0), values.std(0)))
            shares = 100 * np.array(list(probes.get(row, {}).values()))
            probe = f"{shares.mean():.1f} ± {shares.std():.1f}" if len(shares) else ""
            lines.append(f"| {ROWS[row][0]} | {len(by_seed)} | {cells} | {probe} |")
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
    if args.data_seed != config.QUICKSTART["data"]["seed"]:
        out = out / f"data_seed{args.data_seed}"
    teacher = shipped_weights("teacher", args.teacher_weights)
    student = shipped_weights("student", args.student_weights)
    if not args.report:
        ensure_data(out / "data", seed=args.data_seed)
    results, probes = {row: {} for row in args.rows}, {row: {} for row in args.rows}
    network = config.QUICKSTART["teacher_network"]
    for row in args.rows:
        for seed in args.seeds:
            folder = run_folder(out, row, seed, args.teacher_weights is None, args.student_weights is None,
                                args.schedule_scale)
            command = row_command(out, row, seed, student, teacher, folder, args.schedule_scale)
            if args.report and not is_finished(command):
                continue
            if not args.report:
                run_training(command)
            weights = folder / "mobile0.25_Final.pth"
            results[row][seed] = test_and_evaluate(weights, out / "data", folder, f"{row} seed {seed}")
            if not args.no_probe:
                probes[row][seed] = cached_task_share(weights, teacher, network, out / "data", folder)
    if args.report and not any(results.values()):
        print(f"no run of these rows and seeds is finished with the current settings in {out}; "
              "bench/ablation.py without --report trains them")
        return
    start_probe = None if args.no_probe else cached_task_share(student, teacher, network, out / "data",
                                                               out / "student_eval")
    table = markdown_table(results, args.seeds, probes, start_probe)
    study = study_folder(out, args.schedule_scale)
    study.mkdir(parents=True, exist_ok=True)
    (study / "table.md").write_text(table + "\n")
    print(f"\nsynthetic val, AP in %, student {student}, teacher {teacher}:\n\n{table}")


if __name__ == "__main__":
    main()
