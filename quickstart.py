"""The whole TDKD study in miniature on a synthetic WIDER-format face set, on a CPU.

    make quickstart        # or: python quickstart.py [--out outputs/quickstart] [--seed 0]

Generates the data, trains the teacher, the student alone and the TDKD student with
``train.py``, tests each with ``test_widerface.py``, evaluates with the official protocol,
saves the PR curves and prints the Markdown table. Settings: ``config.QUICKSTART``.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import config
from data.synthetic import generate_synthetic_widerface
from utils.errors import TDKDError, exit_on_error
from widerface_evaluate.evaluation import SETTINGS, evaluate, save_pr_curves

REPO = Path(__file__).resolve().parent
CONTROL_ROW = "student, same extra epochs without teacher"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/quickstart", help="folder for data, weights and results")
    p.add_argument("--seed", type=int, default=0, help="training seed (the data keep config's seed)")
    p.add_argument("--teacher_weights", help="reuse a trained teacher instead of training one")
    p.add_argument("--backbone_weights", help="ImageNet MobileNet0.25 (mobilenetV1X0.25_pretrain.tar); "
                   "default: the first file found of config.QUICKSTART['backbone_weights']")
    return p.parse_args(argv)


def run_command(args, log):
    """Run a repository script, echoing the command; its output goes to ``log``."""
    command = [sys.executable, *map(str, args)]
    print("$ python " + " ".join(map(str, args)), flush=True)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"failed (exit {result.returncode}); see {log}:\n" + Path(log).read_text()[-2000:])


def ensure_data(root):
    settings = config.QUICKSTART["data"]
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


def train_model(mode, data, folder, seed, extra=(), schedule=None):
    """Train with ``train.py`` on the quickstart recipe of ``mode`` (its epochs, learning rate
    and milestones replaced by ``schedule`` if given); a finished run is reused."""
    if any(folder.glob("*_Final.pth")):
        print(f"reusing {folder}", flush=True)
        return
    recipe = {**config.QUICKSTART["common"], **config.QUICKSTART[mode], **(schedule or {})}
    args = ["train.py", "--mode", mode, "--training_dataset", data / "train" / "label.txt",
            "--save_folder", folder, "--device", "cpu", "--seed", seed, *extra]
    for key, value in recipe.items():
        args += [f"--{key}", *(value if isinstance(value, list) else [value])]
    run_command(args, Path(f"{folder}.train.log"))


def test_and_evaluate(weights, data, folder, label):
    pred = folder / "predictions"
    run_command(["test_widerface.py", "-m", weights, "--cpu", "--origin_size",
                 "--dataset_folder", f"{data / 'val' / 'images'}/", "--save_folder", f"{pred}/"],
                Path(f"{folder}.test.log"))
    result = evaluate(str(pred), str(data / "val" / "ground_truth"))
    save_pr_curves(result, folder / "pr_curves.png")
    print(f"{label}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in result.aps.items()), flush=True)
    return result.aps


def run_study(out, seed=0, teacher_weights=None, control=False, backbone_weights=None):
    """Train and evaluate the models; returns ``({row label: {setting: AP}}, teacher weights)``.

    ``control`` adds the student trained on for the distillation's epochs without a teacher,
    which separates what the teacher adds from what the extra epochs add.
    """
    out = Path(out)
    data = out / "data"
    backbone = ["--backbone_weights", find_backbone_weights(backbone_weights)]
    ensure_data(data)
    teacher_net = config.QUICKSTART["teacher_network"]
    runs = out / f"seed{seed}"
    results = {}
    if teacher_weights is None:
        train_model("teacher", data, runs / "teacher", seed, ["--network", teacher_net, *backbone])
        teacher_weights = runs / "teacher" / f"{teacher_net}_Final.pth"
        results[f"teacher ({teacher_net})"] = test_and_evaluate(teacher_weights, data, runs / "teacher", "teacher")
    train_model("student", data, runs / "student", seed, backbone)
    student = runs / "student" / "mobile0.25_Final.pth"
    results["student"] = test_and_evaluate(student, data, runs / "student", "student")
    if control:
        schedule = {key: config.QUICKSTART["distillation"][key] for key in ("max_epoch", "lr", "milestones")}
        train_model("student", data, runs / "student_more", seed, ["--resume_net", student], schedule)
        results[CONTROL_ROW] = test_and_evaluate(
            runs / "student_more" / "mobile0.25_Final.pth", data, runs / "student_more", "student, more epochs")
    train_model("distillation", data, runs / "tdkd", seed,
                ["--teacher_network", teacher_net, "--teacher_weights", teacher_weights, "--resume_net", student])
    results["student + TDKD"] = test_and_evaluate(runs / "tdkd" / "mobile0.25_Final.pth", data, runs / "tdkd", "student + TDKD")
    return results, Path(teacher_weights)


def markdown_table(results):
    lines = ["| model | Easy | Medium | Hard |", "|---|---|---|---|"]
    for label, aps in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * aps[s]:.2f}" for s in SETTINGS) + " |")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    results, _ = run_study(args.out, args.seed, args.teacher_weights,
                            backbone_weights=args.backbone_weights)
    table = markdown_table(results)
    (Path(args.out) / "results.md").write_text(table + "\n")
    print(f"\nWIDER-format synthetic val, AP in % ({time.perf_counter() - start:.0f} s):\n\n{table}")


if __name__ == "__main__":
    main()
