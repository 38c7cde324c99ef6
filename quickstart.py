"""The whole TDKD study in miniature on a synthetic WIDER-format face set, on a CPU.

    make quickstart          # or: python quickstart.py [--out outputs/quickstart] [--seed 0]
    make synthetic-weights   # or: python quickstart.py --make_weights: retrain the shipped teacher and student

Generates the data, evaluates the shipped teacher and student (``config.QUICKSTART``'s
``teacher_weights`` and ``student_weights``, both trained by this script's --make_weights),
trains from that student the control (the student trained on for the distillation's epochs
without a teacher) and the TDKD student with ``train.py``, tests each with
``test_widerface.py``, evaluates with the official protocol, saves the PR curves and prints
the Markdown table. Settings: ``config.QUICKSTART``.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import config
from data.synthetic import generate_synthetic_widerface
from utils.checkpoint import write_bytes_atomic, write_text_atomic
from utils.cli import HelpFormatter
from utils.errors import TDKDError, exit_on_error
from utils.threads import add_threads_argument
from widerface_evaluate.evaluation import SETTINGS, evaluate, save_pr_curves

REPO = Path(__file__).resolve().parent
CONTROL_ROW = "student, same extra epochs without teacher"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out", default="outputs/quickstart", help="folder for data, weights and results")
    p.add_argument("--seed", type=int, default=0, help="training seed of the control and the TDKD student "
                   "(the data, teacher and student keep config's seeds)")
    teacher = p.add_mutually_exclusive_group()
    teacher.add_argument("--teacher_weights", help="teacher to distil from (default: the shipped "
                         "config.QUICKSTART['teacher_weights'])")
    teacher.add_argument("--train_teacher", action="store_true",
                         help="train the teacher from scratch (config.QUICKSTART['teacher']) and distil from it")
    teacher.add_argument("--make_weights", action="store_true",
                         help="only train teacher and student from scratch, evaluate them and install them "
                         "as the shipped ones (what `make synthetic-weights` runs)")
    student = p.add_mutually_exclusive_group()
    student.add_argument("--student_weights", help="student to start the control and TDKD from (default: the "
                         "shipped config.QUICKSTART['student_weights'])")
    student.add_argument("--train_student", action="store_true",
                         help="train the student from ImageNet (config.QUICKSTART['student']) and start from it")
    p.add_argument("--backbone_weights", help="ImageNet MobileNet0.25 (mobilenetV1X0.25_pretrain.tar) for "
                   "training from scratch; default: the first file found of config.QUICKSTART['backbone_weights']")
    add_threads_argument(p)
    args = p.parse_args(argv)
    if args.make_weights and (args.student_weights or args.train_student):
        p.error("--make_weights trains the student itself")
    return args


def run_command(args, log):
    """Run a repository script, echoing the command; its output goes to ``log``."""
    command = [sys.executable, *map(str, args)]
    print("$ python " + " ".join(map(str, args)), flush=True)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"failed (exit {result.returncode}); see {log}:\n" + Path(log).read_text()[-2000:])


def ensure_data(root, **sizes):
    """Generate the quickstart's synthetic set in ``root`` (``sizes`` override its image counts)
    unless it is there already."""
    settings = {**config.QUICKSTART["data"], **sizes}
    marker = root / "synthetic.json"
    if marker.exists():
        made = json.loads(marker.read_text())
        if (made.get("seed"), made.get("image_size"), made.get("train", {}).get("images"),
                made.get("val", {}).get("images")) == (settings["seed"], list(settings["image_size"]),
                                                       settings["num_train"], settings["num_val"]):
            return
    summary = generate_synthetic_widerface(root, settings["num_train"], settings["num_val"],
                                           settings["seed"], tuple(settings["image_size"]))
    print(f"synthetic data: {summary['train']['images']} train / {summary['val']['images']} val images "
          f"in {summary['seconds']:.1f} s", flush=True)


def find_backbone_weights(path=None):
    """``path`` (relative to the working folder), else the first existing file of
    ``config.QUICKSTART['backbone_weights']`` (relative to the repository)."""
    candidates = [Path(path).resolve()] if path else [REPO / c for c in config.QUICKSTART["backbone_weights"]]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TDKDError("the quickstart needs the ImageNet MobileNet0.25 backbone (mobilenetV1X0.25_pretrain.tar); "
                    f"looked for {', '.join(map(str, candidates))} (put it there or pass --backbone_weights PATH)")


def run_signature(args):
    """What a training run is: its command, the sha256 of every weights file it reads, and the
    settings ``train.py`` resolves for it from config.py (so that a changed default in config.py
    makes a finished run stale, though its command is the same)."""
    weights = [arg for arg in args if isinstance(arg, Path) and arg.suffix in (".pth", ".tar")]
    return dict(command=[str(arg) for arg in args], inputs={str(path): sha256(path) for path in weights},
                settings=resolved_settings(args))


def resolved_settings(args):
    """The trained network's settings, the teacher's (distillation) and the training recipe that
    ``train.py`` resolves from config.py for the flags of ``args`` (network: ``--network``, else
    the mode's default)."""
    from train import build_run_config, parse_args

    flags = parse_args([str(arg) for arg in args[1:]])
    network, recipe = build_run_config(flags)
    settings = dict(network=network, recipe=recipe)
    if flags.mode == "distillation":
        settings["teacher"] = config.network_config(flags.teacher_network or config.DEFAULT_TEACHER,
                                                    flags.teacher_activation)
    return json.loads(json.dumps(settings))


def training_command(mode, data, folder, seed, extra=(), schedule=None):
    """``train.py``'s arguments for the quickstart recipe of ``mode`` (its epochs, learning rate
    and milestones replaced by ``schedule`` if given)."""
    recipe = {**config.QUICKSTART["common"], **config.QUICKSTART[mode], **(schedule or {}), "seed": seed}
    args = ["train.py", "--mode", mode, "--training_dataset", data / "train" / "label.txt",
            "--save_folder", folder, "--device", "cpu", *extra]
    for key, value in recipe.items():
        args += [f"--{key}", *(value if isinstance(value, list) else [value])]
    return args


def is_finished(args):
    """Whether the run of ``args`` finished with this command, these input weights and these
    settings (``run.json``)."""
    folder = Path(args[args.index("--save_folder") + 1])
    record = folder / "run.json"
    return any(folder.glob("*_Final.pth")) and record.exists() and json.loads(record.read_text()) == run_signature(args)


def run_training(args):
    """Run ``train.py`` with ``args``, unless that run finished with this command, these input
    weights and these settings: a changed teacher, or a changed default in config.py, trains again
    (from the start, in place of the earlier run)."""
    from train_inputs import run_files

    folder = Path(args[args.index("--save_folder") + 1])
    if is_finished(args):
        print(f"reusing {folder}", flush=True)
        return
    for stale in run_files(str(folder)):  # an unfinished or outdated run of this folder: train.py refuses to mix
        Path(stale).unlink()
    run_command(args, Path(f"{folder}.train.log"))
    write_text_atomic(json.dumps(run_signature(args), indent=2) + "\n", folder / "run.json")


def train_model(mode, data, folder, seed, extra=(), schedule=None):
    """Train (or reuse) the quickstart recipe of ``mode`` (see ``training_command``)."""
    run_training(training_command(mode, data, folder, seed, extra, schedule))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_and_evaluate(weights, data, folder, label):
    """AP per setting of ``weights`` on the val set (PR curves in ``folder``), tested with the
    backend ``config.QUICKSTART['eval_backend']``; the result of the same weights file and
    backend is reused from ``folder/aps.json``."""
    backend = config.QUICKSTART["eval_backend"]
    cache, record = folder / "aps.json", dict(sha256=sha256(weights), backend=backend)
    stored = json.loads(cache.read_text()) if cache.exists() else {}
    if {k: stored.get(k) for k in record} == record:
        aps = stored["aps"]
        print(f"{label}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in aps.items()) + " (reused)", flush=True)
        return aps
    pred = folder / "predictions"
    run_command(["test_widerface.py", "-m", weights, "--cpu", "--origin_size", "--backend", backend,
                 "--dataset_folder", f"{data / 'val' / 'images'}/", "--save_folder", f"{pred}/"],
                Path(f"{folder}.test.log"))
    result = evaluate(str(pred), str(data / "val" / "ground_truth"))
    save_pr_curves(result, folder / "pr_curves.png")
    print(f"{label}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in result.aps.items()), flush=True)
    write_text_atomic(json.dumps(dict(weights=str(weights), **record, aps=result.aps), indent=2) + "\n", cache)
    return result.aps


def train_teacher(out, backbone_weights=None):
    """Train the quickstart's teacher from scratch on its own, larger synthetic train set in
    ``out/teacher``; returns its weights."""
    teacher_data = out / "teacher_data"
    ensure_data(teacher_data, **config.QUICKSTART["teacher_data"])
    network = config.QUICKSTART["teacher_network"]
    train_model("teacher", teacher_data, out / "teacher", config.QUICKSTART["teacher"]["seed"],
                ["--network", network, "--backbone_weights", find_backbone_weights(backbone_weights)])
    return out / "teacher" / f"{network}_Final.pth"


def train_student(out, backbone_weights=None):
    """Train the quickstart's student from ImageNet in ``out/student``; returns its weights."""
    ensure_data(out / "data")
    train_model("student", out / "data", out / "student", config.QUICKSTART["student"]["seed"],
                ["--backbone_weights", find_backbone_weights(backbone_weights)])
    return out / "student" / "mobile0.25_Final.pth"


def shipped_weights(role, path=None):
    """``path``, else the shipped ``config.QUICKSTART[role + '_weights']``; one error if missing."""
    weights = Path(path) if path else REPO / config.QUICKSTART[f"{role}_weights"]
    if not weights.is_file():
        raise TDKDError(f"{weights}: no such {role} (the shipped one comes with the repository; "
                        "`make synthetic-weights` trains it)")
    return weights


def install(weights, role):
    """Copy a trained teacher or student and its description over the shipped ones."""
    target = REPO / config.QUICKSTART[f"{role}_weights"]
    for source, destination in ((Path(weights), target), (Path(weights).with_suffix(".json"), target.with_suffix(".json"))):
        write_bytes_atomic(source.read_bytes(), destination)
    print(f"installed {weights} as {target} (sha256 {sha256(target)})", flush=True)


def evaluate_start(out, teacher, student):
    """The teacher's and the student's rows."""
    data = out / "data"
    ensure_data(data)
    teacher_row = f"teacher ({config.QUICKSTART['teacher_network']})"
    return {teacher_row: test_and_evaluate(teacher, data, out / "teacher_eval", "teacher"),
            "student": test_and_evaluate(student, data, out / "student_eval", "student")}


def arm_command(out, seed, student, teacher, folder, overrides=None, schedule_scale=1):
    """``train.py``'s arguments of a run from ``student`` on the distillation's schedule (its
    epochs and milestones times ``schedule_scale``) in ``folder``: the control (no teacher) when
    ``overrides`` is None, else distillation from ``teacher`` with ``overrides`` as its ``--set``."""
    recipe = config.QUICKSTART["distillation"]
    schedule = {"max_epoch": recipe["max_epoch"] * schedule_scale, "lr": recipe["lr"],
                "milestones": [m * schedule_scale for m in recipe["milestones"]]}
    if overrides is None:
        return training_command("student", out / "data", folder, seed, ["--resume_net", student], schedule)
    schedule["set"] = overrides
    return training_command("distillation", out / "data", folder, seed,
                            ["--teacher_network", config.QUICKSTART["teacher_network"], "--teacher_weights", teacher,
                             "--resume_net", student], schedule)


def train_arms(out, seed, teacher, student):
    """Train and evaluate the control (the student trained on for the distillation's epochs
    without a teacher: what the extra epochs alone add) and the TDKD student."""
    results, runs = {}, out / f"seed{seed}"
    arms = ((CONTROL_ROW, "control", runs / "student_more", None),
            ("student + TDKD", "student + TDKD", runs / "tdkd", config.QUICKSTART["distillation"]["set"]))
    for row, label, folder, overrides in arms:
        run_training(arm_command(out, seed, student, teacher, folder, overrides))
        results[row] = test_and_evaluate(folder / "mobile0.25_Final.pth", out / "data", folder, label)
    return results


def markdown_table(results):
    lines = ["| model | Easy | Medium | Hard |", "|---|---|---|---|"]
    for label, aps in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * aps[s]:.2f}" for s in SETTINGS) + " |")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    if args.threads:  # the threads of every train.py and test_widerface.py run (utils/threads.py)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    start, out = time.perf_counter(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = args.train_teacher or args.make_weights
    teacher = train_teacher(out, args.backbone_weights) if scratch else shipped_weights("teacher", args.teacher_weights)
    scratch = args.train_student or args.make_weights
    student = train_student(out, args.backbone_weights) if scratch else shipped_weights("student", args.student_weights)
    results = evaluate_start(out, teacher, student)
    if args.make_weights:
        install(teacher, "teacher")
        install(student, "student")
    else:
        results.update(train_arms(out, args.seed, teacher, student))
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n")
    print(f"\nWIDER-format synthetic val, AP in % ({time.perf_counter() - start:.0f} s):\n\n{table}")


if __name__ == "__main__":
    main()
