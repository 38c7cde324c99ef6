"""The gradient budget of a distillation: how hard each term pulls on the student, and where.

    python bench/grad_budget.py --data outputs/quickstart/data             # the start of a run
    python bench/grad_budget.py --data outputs/quickstart/data --set distiller=paper
    python bench/grad_budget.py --data outputs/quickstart/data \
        --checkpoint outputs/quickstart/seed0/tdkd/checkpoint_last.pth     # the end of that run

Builds the distillation of ``train.py`` (the quickstart's schedule, the shipped synthetic
student and teacher unless told otherwise, ``--set`` overrides on top of the quickstart's),
initialises the adapters as the run would (or takes student and adapters from
``--checkpoint``), and on the first ``--batches`` training batches computes, per loss term and
per task and level of the feature terms, its weighted gradient on the student's parameters
(averaged over the batches), the norm and the cosine with the detection losses' gradient.
Prints a Markdown table (also written to ``--out``).
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import config  # noqa: E402
import train  # noqa: E402
from bench.probe import synthetic_set  # noqa: E402
from layers.distiller import DETECTION_TERMS, describe_distiller  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402

LEVEL_NAMES = ("level 1 (stride 8)", "level 2 (stride 16)", "level 3 (stride 32)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data", default="outputs/quickstart/data", help="synthetic set (train/label.txt inside)")
    p.add_argument("--student_weights", default=config.QUICKSTART["student_weights"])
    p.add_argument("--teacher_weights", default=config.QUICKSTART["teacher_weights"])
    p.add_argument("--checkpoint", help="checkpoint_last.pth of a distillation run: its student and adapters")
    p.add_argument("--batches", type=int, default=4, help="training batches to average the gradients over")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides on top of the quickstart's distillation settings")
    p.add_argument("--out", help="also write the table to this file")
    return p.parse_args(argv)


def build_trainer(args, folder):
    """``train.py``'s distillation of the quickstart, as ``args`` asks, saving into ``folder``."""
    quick = config.QUICKSTART
    argv = ["--mode", "distillation", "--training_dataset", str(Path(args.data) / "train" / "label.txt"),
            "--teacher_network", quick["teacher_network"], "--teacher_weights", args.teacher_weights,
            "--save_folder", folder, "--device", "cpu", "--num_workers", "0", "--seed", str(args.seed),
            "--img_dim", str(quick["common"]["img_dim"]), "--batch_size", str(quick["common"]["batch_size"]),
            "--lr", str(quick["distillation"]["lr"]),
            "--set", *quick["distillation"]["set"], *args.set]
    argv += ["--resume", args.checkpoint] if args.checkpoint else ["--resume_net", args.student_weights]
    return train.Trainer(train.parse_args(argv), train.init_distributed("cpu"))


def weighted_pieces(trainer, images, targets):
    """``{name: weighted loss}``: the detection losses together, each distillation term, and
    each feature term's tasks and levels."""
    images, targets = trainer._inputs(images, targets)
    outputs = trainer.model(images)
    teacher_outputs = trainer._teacher_outputs(images)
    losses, match = trainer.criterion(outputs, trainer.priors, targets)
    weights = trainer.cfg["loss_weights"]
    pieces = {"detection": sum(weights[name] * losses[name] for name in DETECTION_TERMS)}
    terms = trainer.distiller(outputs, teacher_outputs, match, trainer.shapes)
    pieces.update({name: weights[name] * value for name, value in terms.items()})
    parts = trainer.distiller.feature_parts(outputs, teacher_outputs, match, trainer.shapes)
    for (term, task, level), value in parts.items():
        pieces[f"{term} {task} {LEVEL_NAMES[level]}"] = weights[term] * value
    pieces["all distillation"] = sum(weights[name] * value for name, value in terms.items())
    return pieces


def gradient_budget(trainer, batches):
    """``{name: (mean weighted loss, mean gradient [P])}`` over ``batches`` training batches;
    the student in training mode, as in a step."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.model.train()
    trainer.sampler.set_epoch(trainer.start_epoch)
    trainer.dataset.set_epoch(trainer.start_epoch)
    totals, count = {}, 0
    for images, targets in trainer.loader:
        if count == batches:
            break
        pieces = weighted_pieces(trainer, images, targets)
        for name, value in pieces.items():
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
            loss, grad = totals.get(name, (0.0, 0.0))
            totals[name] = (loss + value.item(), grad + flat)
        count += 1
    return {name: (loss / count, grad / count) for name, (loss, grad) in totals.items()}


def markdown_table(budget):
    detection = budget["detection"][1]
    lines = ["| term (weighted) | loss | gradient norm | / detection | cosine with detection |",
             "|---|---|---|---|---|"]
    for name, (loss, grad) in budget.items():
        norm = grad.norm().item()
        cosine = torch.nn.functional.cosine_similarity(grad, detection, dim=0).item()
        lines.append(f"| {name} | {loss:.4g} | {norm:.3g} | {norm / max(detection.norm().item(), 1e-12):.2f} | "
                     f"{cosine:+.3f} |")
    return "\n".join(lines)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    synthetic_set(args.data, ["train"])
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(args, folder)
        trainer._init_adapters()
        budget = gradient_budget(trainer, args.batches)
    where = f"end of {args.checkpoint}" if args.checkpoint else f"start from {args.student_weights}"
    header = f"gradient budget, {where}, {args.batches} batches; {describe_distiller(trainer.cfg)}"
    table = markdown_table(budget)
    if args.out:
        Path(args.out).write_text(f"{header}\n\n{table}\n")
    print(f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
