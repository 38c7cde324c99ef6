"""Seconds per training iteration of each mode (forward, losses, backward, step).

    python bench/train_speed.py                       # CPU, batch 8, image 640
    python bench/train_speed.py --device cuda --batch_size 32 --iters 30 --amp

Data comes from a small synthetic WIDER-format set; batches are loaded before timing, so the
table measures the model and the losses, not JPEG decoding.
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
from config import network_config  # noqa: E402
from data.synthetic import generate_synthetic_widerface  # noqa: E402
from models import build_model  # noqa: E402
from utils.distributed import init_distributed  # noqa: E402

CASES = [
    ("student", "mobile0.25", None),
    ("teacher", "resnet50", None),
    ("distillation", "mobile0.25", "resnet50"),
    ("distillation", "mobile0.25", "mobile0.75"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--img_dim", type=int, default=640)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per case (after one warm-up)")
    p.add_argument("--amp", action="store_true")
    return p.parse_args()


def time_case(root, mode, network, teacher, args):
    argv = ["--mode", mode, "--network", network, "--training_dataset", str(root / "train" / "label.txt"),
            "--save_folder", str(root / "out"), "--device", args.device, "--batch_size", str(args.batch_size),
            "--img_dim", str(args.img_dim), "--num_workers", "0"]
    if teacher:
        path = root / f"{teacher}_teacher.pth"
        if not path.exists():
            torch.save(build_model(network_config(teacher), task_heads=True).state_dict(), path)
        argv += ["--teacher_network", teacher, "--teacher_weights", str(path)]
    if args.amp:
        argv.append("--amp")
    trainer = train.Trainer(train.parse_args(argv), init_distributed(args.device))
    trainer.model.train()
    batches = [b for _, b in zip(range(args.iters + 1), _cycle(trainer.loader))]
    trainer._step(*batches[0])
    synchronize(args.device)
    start = time.perf_counter()
    for images, targets in batches[1:]:
        trainer._step(images, targets)
    synchronize(args.device)
    return (time.perf_counter() - start) / args.iters


def _cycle(loader):
    while True:
        yield from loader


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    args = parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_synthetic_widerface(root, num_train=max(2 * args.batch_size, 16), num_val=1, seed=0)
        print(f"device {args.device}, batch {args.batch_size}, image {args.img_dim}, amp {args.amp}, "
              f"{torch.get_num_threads()} threads")
        print("| mode | network | teacher | s / iteration | images / s |")
        print("|---|---|---|---|---|")
        for mode, network, teacher in CASES:
            seconds = time_case(root, mode, network, teacher, args)
            print(f"| {mode} | {network} | {teacher or '-'} | {seconds:.3f} | {args.batch_size / seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
