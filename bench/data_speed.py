"""Images per second of one data-loader worker: JPEG decode + docs/METHOD.md §6 augmentation + collate.

    python bench/data_speed.py                                # image 640, batch 32, two sets
    python bench/data_speed.py --img_dim 320 --batch_size 16  # the quickstart's sizes
    python bench/data_speed.py --images 512 --loader_workers 8 16   # also a DataLoader (GPU machines)

Sets: the synthetic WIDER-format set at its default sizes, and synthetic JPEGs with a 1024-pixel
long side (about WIDER FACE's 1024x700). Times are CPU seconds of this one process (OpenCV and
torch on one thread, as in a worker), best of ``--repeats`` passes, so they hold for one core
per worker on a shared machine. ``workers for R/s`` = worker processes that keep a training
step consuming R images per second fed (one core each). Reference: the public code's
``preproc`` takes 6.9 ms per 1024x624 image on the project's CPU (issue 10).
"""
import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from data import TrainTransform, WiderFaceDetection, detection_collate  # noqa: E402
from data.synthetic import generate_synthetic_widerface  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402

SETS = {"synthetic": None, "1024 px": (1024, 1024)}  # long-side range (None: the generator's default)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--img_dim", type=int, default=640, help="training image size")
    p.add_argument("--batch_size", type=int, default=32, help="images per collated batch")
    p.add_argument("--images", type=int, default=48, help="images per set")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds; the best is kept")
    p.add_argument("--rates", type=float, nargs="+", default=[34.0, 1000.0],
                   help="training speeds (images/s) to size the worker count for; defaults: the CPU "
                        "quickstart student step, the GPU goal of issue 10")
    p.add_argument("--loader_workers", type=int, nargs="*", default=[],
                   help="also time a DataLoader with these worker counts on the 1024-px set (wall clock)")
    return p.parse_args()


def best_cpu_seconds(function, repeats):
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def measure(dataset, args):
    """CPU ms per image: decode, decode + augmentation, collate."""
    indices = range(len(dataset))
    decode = best_cpu_seconds(lambda: [cv2.imread(dataset.image_paths[i]) for i in indices], args.repeats)
    loaded = best_cpu_seconds(lambda: [dataset[i] for i in indices], args.repeats)
    samples = [dataset[i] for i in indices]
    batches = [samples[i:i + args.batch_size] for i in range(0, len(samples), args.batch_size)]
    collate = best_cpu_seconds(lambda: [detection_collate(b) for b in batches], args.repeats)
    per_image = 1000 / len(dataset)
    return decode * per_image, (loaded - decode) * per_image, collate * per_image


def loader_rate(dataset, workers, args):
    """Wall-clock images/s of a DataLoader with ``workers`` processes (after their start-up)."""
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                        collate_fn=detection_collate, persistent_workers=workers > 0)
    for _ in loader:  # start the workers, warm the page cache
        pass
    start, count = time.perf_counter(), 0
    for _ in range(2):
        for images, _ in loader:
            count += len(images)
    return count / (time.perf_counter() - start)


@exit_on_error
def main():
    args = parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"image {args.img_dim}, batch {args.batch_size}, {args.images} images per set; "
              f"CPU ms per image, best of {args.repeats}")
        rates = " | ".join(f"workers for {rate:g}/s" for rate in args.rates)
        print(f"| set | mean size | decode | augmentation | collate | total | images/s per worker | {rates} |")
        print("|---" * (7 + len(args.rates)) + "|")
        datasets = {}
        for name, long_side in SETS.items():
            root = Path(tmp) / name.replace(" ", "_")
            extra = {"image_size": long_side} if long_side else {}
            generate_synthetic_widerface(root, num_train=args.images, num_val=1, seed=0, **extra)
            dataset = WiderFaceDetection(root / "train" / "label.txt", TrainTransform(args.img_dim))
            datasets[name] = dataset
            shapes = [cv2.imread(path).shape[:2] for path in dataset.image_paths]
            height, width = (sum(s[k] for s in shapes) / len(shapes) for k in (0, 1))
            decode, augment, collate = measure(dataset, args)
            total = decode + augment + collate
            needed = " | ".join(str(math.ceil(rate * total / 1000)) for rate in args.rates)
            print(f"| {name} | {width:.0f}x{height:.0f} | {decode:.2f} | {augment:.2f} | {collate:.2f} | "
                  f"{total:.2f} | {1000 / total:.0f} | {needed} |", flush=True)
        for workers in args.loader_workers:
            rate = loader_rate(datasets["1024 px"], workers, args)
            print(f"DataLoader, 1024-px set, {workers} workers: {rate:.0f} images/s (wall clock)", flush=True)


if __name__ == "__main__":
    main()
