"""Seconds per training iteration of each mode, whole and by part.

    python bench/train_speed.py                       # CPU, batch 8, image 640, the four cases
    python bench/train_speed.py --img_dim 320 --batch_size 16 --cases student distill-wide teacher-wide
    python bench/train_speed.py --device cuda --batch_size 32 --iters 30 --amp

Parts, each the best over the timed iterations: student forward, teacher forward, MultiBoxLoss,
distillation losses, backward, optimiser step; then the whole ``Trainer._step`` (the parts in
one call), best and mean. Each case runs what train.py runs: adapters fitted before the first
step, the distillation warm-up, the first step's teacher check and the finite-loss check; the
random networks get BatchNorm statistics from random images, so that their features are alive.
``--clock cpu`` times CPU seconds of this process instead of wall-clock seconds: with
``OMP_NUM_THREADS=1`` the measure least disturbed by other jobs on a shared machine. Data comes
from a small synthetic WIDER-format set, loaded before timing: the table measures the model and the losses, not JPEG decoding
(``bench/data_speed.py`` measures that). On CUDA, peak memory of the whole step.
"""
import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import train  # noqa: E402
from config import COMMON, network_config  # noqa: E402
from data.synthetic import generate_synthetic_widerface  # noqa: E402
from models import build_model  # noqa: E402
from models.teacher import batchnorm_statistics_from  # noqa: E402
from tests.test_public_step import PublicStep  # noqa: E402
from utils.distributed import init_distributed, resolve_device  # noqa: E402
from utils.cli import HelpFormatter, add_device_argument  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402

CASES = {  # name: (mode, network, teacher)
    "student": ("student", "mobile0.25", None),
    "teacher": ("teacher", "resnet50", None),
    "distill-resnet50": ("distillation", "mobile0.25", "resnet50"),
    "distill-mobile0.75": ("distillation", "mobile0.25", "mobile0.75"),
    "teacher-wide": ("teacher", "mobile0.25-wide", None),
    "distill-wide": ("distillation", "mobile0.25", "mobile0.25-wide"),
    "public-distill-mobile0.75": ("public", "mobile0.25", "mobile0.75"),
}
DEFAULT_CASES = ["student", "teacher", "distill-resnet50", "distill-mobile0.75", "public-distill-mobile0.75"]
PARTS = ("student forward", "teacher forward", "MultiBoxLoss", "distillation", "backward", "optimiser")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_device_argument(p)
    p.add_argument("--batch_size", type=int, default=8, help="images per step")
    p.add_argument("--img_dim", type=int, default=640, help="training image size")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per case (after one warm-up)")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=DEFAULT_CASES, help="modes and networks to time")
    p.add_argument("--amp", action="store_true", help="mixed precision, as train.py --amp")
    p.add_argument("--compile", action="store_true", help="train.py --compile (two warm-up steps instead of one)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: CPU seconds of this process (CPU device; with one thread, robust to other jobs)")
    return p.parse_args(argv)


def build_trainer(root, name, args):
    """A ``train.Trainer`` of the case, on random weights (no ImageNet or trained file needed)."""
    mode, network, teacher = CASES[name]
    argv = ["--mode", mode, "--network", network, "--training_dataset", str(root / "train" / "label.txt"),
            "--save_folder", str(root / "out"), "--device", args.device, "--batch_size", str(args.batch_size),
            "--img_dim", str(args.img_dim), "--num_workers", "0", "--lr", "1e-4",  # keeps random weights finite
            "--resume_net", _random_weights(root, network, mode == "teacher")]
    if teacher:
        argv += ["--teacher_network", teacher, "--teacher_weights", _random_weights(root, teacher, True)]
    argv += [flag for flag in ("--amp", "--compile") if getattr(args, flag[2:])]
    return train.Trainer(train.parse_args(argv), init_distributed(args.device))


def _random_weights(root, network, task_heads):
    """Random weights of ``network`` with BatchNorm statistics from random pixels minus the mean:
    with its initial statistics a folded random network's features would be ~1e-5 to 1e-11, which
    train.py refuses as a dead teacher, and adapters fitted to such a student are so large that
    the first distillation step diverges."""
    path = root / f"{network}_{'task' if task_heads else 'plain'}.pth"
    if not path.exists():
        torch.manual_seed(0)
        model = build_model(network_config(network), task_heads=task_heads)
        mean = torch.tensor(COMMON["rgb_mean"]).view(1, 3, 1, 1)
        batchnorm_statistics_from(model, [torch.randint(0, 256, (2, 3, 128, 128)).float() - mean])
        torch.save(model.state_dict(), path)
    return str(path)


def time_parts(trainer, images, targets, timer):
    """One step taken apart: the calls of ``Trainer._step``, seconds per part."""
    times, clock = {}, timer()
    images, targets = trainer._inputs(images, targets)
    outputs = trainer._student_forward(images)
    times["student forward"] = clock.lap()
    if trainer.teacher is not None:
        teacher_outputs = trainer._teacher_forward(images)
        times["teacher forward"] = clock.lap()
    losses, match = trainer.criterion(outputs, trainer.priors, targets)
    times["MultiBoxLoss"] = clock.lap()
    if trainer.teacher is not None:
        losses.update(trainer._distillation_losses(outputs, teacher_outputs, match))
        times["distillation"] = clock.lap()
    total = trainer._total_loss(losses)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(total).backward()
    times["backward"] = clock.lap()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    times["optimiser"] = clock.lap()
    trainer.iteration += 1
    return times


class Timer:
    """Seconds between laps on ``clock`` (``time.perf_counter`` or ``time.process_time``), after ``sync``."""

    def __init__(self, sync, clock):
        self.sync, self.clock = sync, clock
        self.sync()
        self.last = self.clock()

    def lap(self):
        self.sync()
        now = self.clock()
        seconds, self.last = now - self.last, now
        return seconds


def time_case(root, name, args):
    """Best seconds per part, best and mean seconds per whole step, peak memory (CUDA, GiB)."""
    if CASES[name][0] == "public":
        return time_public_case(root, name, args)
    trainer = build_trainer(root, name, args)
    trainer._init_adapters()  # what Trainer.fit does before the first step (lstsq fit by default)
    trainer.model.train()
    sync = torch.cuda.synchronize if trainer.ctx.device.type == "cuda" else (lambda: None)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def timer():
        return Timer(sync, clock)

    distinct = [b for _, b in zip(range(min(args.iters, 4)), _cycle(trainer.loader))]
    batches = [distinct[i % len(distinct)] for i in range(args.iters)]
    for _ in range(2 if args.compile else 1):  # warm-up (and the first step's teacher check)
        trainer._step(*batches[0])
        trainer.iteration += 1
    parts = [time_parts(trainer, *batch, timer) for batch in batches]
    if trainer.ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = []
    for batch in batches:
        step_timer = timer()
        trainer._step(*batch)
        steps.append(step_timer.lap())
        trainer.iteration += 1
    best_parts = {part: min(p[part] for p in parts) for part in parts[0]}
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if trainer.ctx.device.type == "cuda" else None
    return best_parts, min(steps), sum(steps) / len(steps), memory


def time_public_case(root, name, args):
    """``time_case`` of the public iteration: the student and teacher of the matching
    ``distill-*`` case (same random weights files), its data and priors."""
    _, network, teacher_network = CASES[name]
    trainer = build_trainer(root, name.removeprefix("public-"), args)
    device = trainer.ctx.device
    student = _loaded(network, _random_weights(root, network, False), False).to(device)
    teacher = _loaded(teacher_network, _random_weights(root, teacher_network, True), True).to(device)
    step = PublicStep(student, teacher, trainer.priors, lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    distinct = [b for _, b in zip(range(min(args.iters, 4)), _cycle(trainer.loader))]
    batches = [distinct[i % len(distinct)] for i in range(args.iters)]
    batches = [(images.to(device), [t.to(device) for t in targets]) for images, targets in batches]
    step.step(*batches[0])  # warm-up
    parts = []
    for images, targets in batches:
        times, timer = {}, Timer(sync, clock)
        step.step(images, targets, lambda part: times.__setitem__(part, timer.lap()))
        parts.append(times)
    steps = []
    for images, targets in batches:
        timer = Timer(sync, clock)
        step.step(images, targets)
        steps.append(timer.lap())
    best_parts = {part: min(p[part] for p in parts) for part in parts[0]}
    return best_parts, min(steps), sum(steps) / len(steps), None


def _loaded(network, path, task_heads):
    model = build_model(network_config(network), task_heads=task_heads)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def _cycle(loader):
    while True:
        yield from loader


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    resolve_device(args.device)  # before the data is made
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_synthetic_widerface(root, num_train=max(4 * args.batch_size, 16), num_val=1, seed=0)
        print(f"device {args.device}, batch {args.batch_size}, image {args.img_dim}, amp {args.amp}, "
              f"compile {args.compile}, {torch.get_num_threads()} threads; {args.clock} seconds, "
              f"best of {args.iters} iterations")
        memory_column = " peak GiB |" if args.device.startswith("cuda") else ""
        print("| case | " + " | ".join(PARTS) + " | step (best) | step (mean) | images / s |" + memory_column)
        print("|---" * (len(PARTS) + 4 + bool(memory_column)) + "|")
        for name in args.cases:
            parts, best, mean, memory = time_case(root, name, args)
            cells = [f"{parts[p]:.3f}" if p in parts else "-" for p in PARTS]
            memory_cell = f" {memory:.2f} |" if memory is not None else ""
            print(f"| {name} | " + " | ".join(cells) + f" | {best:.3f} | {mean:.3f} | {args.batch_size / best:.1f} |"
                  + memory_cell, flush=True)


if __name__ == "__main__":
    main()
