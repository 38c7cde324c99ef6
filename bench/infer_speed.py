"""End-to-end detection speed of every backend next to the public pipeline, and their accuracy.

    python bench/infer_speed.py                                  # speed: 640x480 and the WIDER test scale
    python bench/infer_speed.py --threads 1 --sizes 640x480      # one thread, one size
    python bench/infer_speed.py --accuracy                       # + detections vs eager, AP on synthetic val
    python bench/infer_speed.py --widerface 40                   # + test_widerface.py's loop at the test scale
    python bench/infer_speed.py --device cuda --backends eager torch --compile --half

Speed: one photo (``../shared/images/crowd.jpg`` where present, else a synthetic one, or
--image), resized to each --sizes entry ("test" is the WIDER FACE test scale of the photo:
short side 1600, long side at most 2150), run end to end (preprocess, forward, decode, NMS) by
each backend and by the public pipeline (the transcription of the public ``test_widerface.py``
held by ``tests/test_widerface_test.py``: float32 preprocessing, eager forward, the priors made
in Python for every image as its ``PriorBox`` does, decoding of every prior, the Python
``py_cpu_nms``). The rounds interleave the pipelines, so a load from
other jobs slows them alike and the ratios stay comparable. Times: best, median and p90 of the
rounds in ms, images/s from the median; preprocess / forward / postprocess are the medians of
each stage (for the public pipeline, its preprocess and postprocess together; the openvino
backends convert an image at its own size inside their forward).

--accuracy: each backend's detections against eager PyTorch's (share of eager's detections
matched one to one at IoU >= 0.95 and at IoU >= 0.5, largest and mean score difference), on
the photo at each size and on the synthetic val set (--val_images images of the quickstart's,
written to --data once); then AP (easy / medium / hard) of each backend on that set with --accuracy_weights
(the shipped synthetic student), at the images' own size as the quickstart evaluates it.

--widerface N: images/s of test_widerface.py's loop (read, test scale, detect, format) over the
first N synthetic val images, each backend and the public pipeline interleaved image by image;
with --origin_size at each image's own size, as the quickstart tests. Every val image has its
own size, which costs eager PyTorch on a CPU: it prepares its oneDNN convolutions anew for each.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import config  # noqa: E402
from backends import BACKENDS, TorchPredictor, installed_backends  # noqa: E402
from data.synthetic import generate_synthetic_widerface, render_image  # noqa: E402
from detector import DEFAULT_WEIGHTS, FaceDetector  # noqa: E402
from tests.test_widerface_test import public_pipeline  # noqa: E402
from utils.box_utils import match_detections  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.distributed import resolve_device  # noqa: E402
from utils.errors import TDKDError, exit_on_error, located  # noqa: E402
from utils.inference import format_widerface, scale_for_test  # noqa: E402

PUBLIC = "public pipeline"
CROWD = REPO.parent / "shared" / "images" / "crowd.jpg"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-m", "--weights", default=DEFAULT_WEIGHTS, help="weights timed (default: the shipped student)")
    p.add_argument("--image", help=f"photo to time (default: {CROWD} where present, else a synthetic one)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=installed_backends(),
                   help="backends to compare (default: those whose runtime is installed)")
    p.add_argument("--sizes", nargs="+", default=["640x480", "test"], help="WxH, or 'test' (the WIDER test scale)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count()], help="thread counts to time")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds at 640x480 and below (after one warm-up)")
    p.add_argument("--rounds_large", type=int, default=5, help="timed rounds at larger sizes")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: CPU seconds of this process (with one thread, least disturbed by other jobs)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (eager and torch backends)")
    p.add_argument("--compile", action="store_true", help="also torch.compile of the torch backend")
    p.add_argument("--half", action="store_true", help="also eager in half precision (CUDA)")
    p.add_argument("--calibration", metavar="FOLDER", help="INT8 calibration images (default: synthetic)")
    p.add_argument("--cache", help="folder of the exported ONNX files (default: ~/.cache/tdkd or $TDKD_CACHE)")
    p.add_argument("--accuracy", action="store_true", help="also the accuracy tables (see above)")
    p.add_argument("--accuracy_weights", default=config.repo_path(config.QUICKSTART["student_weights"]),
                   help="weights of the AP table (default: the shipped synthetic student)")
    p.add_argument("--widerface", type=int, default=0, metavar="N", help="also test_widerface.py's loop on N images")
    p.add_argument("--origin_size", action="store_true",
                   help="--widerface at each image's own size (the quickstart's evaluation), not the test scale")
    p.add_argument("--data", default="outputs/infer_speed/data", help="where the synthetic val set is written")
    p.add_argument("--val_images", type=int, default=config.QUICKSTART["data"]["num_val"], help="synthetic val images")
    args = p.parse_args(argv)
    if args.half and not args.device.startswith("cuda"):
        p.error("--half is for --device cuda (on a CPU, float16 convolutions lose most detections: 2 of 180 "
                "on a 160x120 photo)")
    return args


# ---------------------------------------------------------------- pipelines


class HalfPrecision:
    """An eager model run in float16 (CUDA), outputs back in float32."""

    def __init__(self, model):
        self.model = model.half()

    def predict(self, images):
        return tuple(t.float() for t in self.model.predict(images.half()))


class Compiled(TorchPredictor):
    """The torch backend with its folded module compiled by ``torch.compile``."""

    def __init__(self, predictor):
        self.module = torch.compile(predictor.module, dynamic=False)


class Public:
    """The public pipeline (``tests/test_widerface_test.py``), its forward timed apart."""

    def __init__(self, detector):
        self.model, self.cfg, self.clock = detector.model, detector.cfg, detector.clock
        self.forward = []

    def predict(self, images):
        start = self.clock()
        outputs = self.model.predict(images)
        self.forward.append(self.clock() - start)
        return outputs

    def __call__(self, image, resize=1):
        return public_pipeline(self, self.cfg, image, resize)


def build_pipelines(args, weights, device):
    """``{name: callable(image, resize) -> (dets, landmarks)}`` for the current thread count."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    pipelines = {}
    for backend in args.backends:
        detector = FaceDetector.from_weights(weights, device=device, backend=backend, calibration=args.calibration,
                                             cache=args.cache)
        detector.clock = clock
        pipelines[backend] = detector
        if backend == "torch" and args.compile:
            compiled = FaceDetector(Compiled(detector.model), detector.cfg, device)
            compiled.clock = clock
            pipelines["torch + compile"] = compiled
        if backend == "eager" and args.half:
            eager = FaceDetector.from_weights(weights, device=device, backend="eager")
            half = FaceDetector(HalfPrecision(eager.model), detector.cfg, device)
            half.clock = clock
            pipelines["eager float16"] = half
    reference = FaceDetector.from_weights(weights, device=device, backend="eager")  # the public forward
    reference.clock = clock
    pipelines[PUBLIC] = Public(reference)
    return pipelines


# ---------------------------------------------------------------- speed


def load_photo(path):
    if path is None and CROWD.exists():
        path = CROWD
    if path is None:
        image, _ = render_image(0, "val", 0, (1024, 1024))
        return image, "a synthetic photo (data.synthetic, val image 0, long side 1024)"
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TDKDError(located(path, "cannot read image (missing or corrupt)"))
    return image, os.path.relpath(path, REPO) if Path(path).is_absolute() else str(path)


def sized(image, size):
    """``(image, resize, label)``: the photo resized to WxH (not timed), or at the test scale."""
    if size == "test":
        resize = scale_for_test(*image.shape[:2])
        height, width = (round(side * resize) for side in image.shape[:2])
        return image, resize, f"{width}x{height} (test scale)"
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise TDKDError(f"--sizes {size}: expected WxH such as 640x480, or test") from None
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), 1, size


def time_pipelines(pipelines, image, resize, rounds, sync, clock):
    """Per pipeline: end-to-end seconds of each round and the median stage seconds."""
    for pipeline in pipelines.values():  # warm-up, and the timers start empty
        pipeline(image, resize)
        _reset(pipeline)
    totals = {name: [] for name in pipelines}
    counts = {}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            sync()
            start = clock()
            dets, _ = pipeline(image, resize)
            sync()
            totals[name].append(clock() - start)
            counts[name] = len(dets)
    return {name: dict(total=np.array(totals[name]), count=counts[name], stages=_stages(pipeline, totals[name]))
            for name, pipeline in pipelines.items()}


def _reset(pipeline):
    if isinstance(pipeline, Public):
        pipeline.forward = []
    else:
        pipeline.timer = type(pipeline.timer)()


def _stages(pipeline, totals):
    """Median (preprocess, forward, postprocess) seconds; the public pipeline's first and last
    stages together in the last place."""
    if isinstance(pipeline, Public):
        forward = np.median(pipeline.forward)
        return None, forward, np.median(totals) - forward
    timer = pipeline.timer
    return np.median(timer.preprocess), np.median(timer.forward), np.median(timer.postprocess)


def speed_table(results, label, threads):
    base = np.median(results[PUBLIC]["total"])
    lines = [f"\n{label}, {threads} thread{'s' if threads > 1 else ''}:\n",
             "| pipeline | best ms | median ms | p90 ms | images/s | x public (median) | preprocess ms | forward ms "
             "| postprocess ms | detections |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        total, (pre, forward, post) = 1000 * result["total"], result["stages"]
        stages = ("-" if pre is None else f"{1000 * pre:.1f}", f"{1000 * forward:.1f}",
                  f"{1000 * post:.1f}" + (" (with preprocess)" if pre is None else ""))
        lines.append(f"| {name} | {total.min():.1f} | {np.median(total):.1f} | {np.percentile(total, 90):.1f} | "
                     f"{1000 / np.median(total):.1f} | {base / np.median(result['total']):.2f} | "
                     f"{' | '.join(stages)} | {result['count']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- accuracy


def agreement(pipelines, images):
    """Per backend: share of eager's detections matched at IoU >= 0.95 and >= 0.5, their count,
    largest and mean score difference (pairs at IoU >= 0.95)."""
    rows = {}
    for name, pipeline in pipelines.items():
        if name in (PUBLIC, "eager"):
            continue
        matched, loosely, differences, total = 0, 0, [], 0
        for image, resize in images:
            reference, _ = pipelines["eager"](image, resize)
            dets, _ = pipeline(image, resize)
            hits, diffs = match_detections(dets, reference, 0.95)
            matched, total = matched + hits.sum(), total + len(reference)
            loosely += match_detections(dets, reference, 0.5)[0].sum()
            differences.append(diffs)
        differences = np.concatenate(differences)
        rows[name] = (matched / max(total, 1), loosely / max(total, 1), total, float(differences.max(initial=0)),
                      float(differences.mean()) if differences.size else 0.0)
    return rows


def agreement_table(rows, label):
    lines = [f"\n{label}: detections against eager PyTorch\n",
             "| backend | matched at IoU >= 0.95 | at IoU >= 0.5 | eager detections | largest score difference "
             "| mean score difference |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {100 * share:.2f} % | {100 * loose:.2f} % | {total} | {largest:.2g} | {mean:.2g} |"
              for name, (share, loose, total, largest, mean) in rows.items()]
    return "\n".join(lines)


def synthetic_val(args):
    root = Path(args.data)
    marker = root / "synthetic.json"
    if not marker.exists():
        settings = config.QUICKSTART["data"]
        generate_synthetic_widerface(root, 0, args.val_images, settings["seed"], tuple(settings["image_size"]))
    names = (root / "val" / "wider_val.txt").read_text().split()
    return root / "val", names


def val_images(val, names):
    return [cv2.imread(str(val / "images" / name.lstrip("/")), cv2.IMREAD_COLOR) for name in names]


def val_aps(pipeline, val, names, images):
    """AP per setting of ``pipeline`` on the synthetic val set, at the images' own size."""
    from widerface_evaluate.evaluation import evaluate

    with tempfile.TemporaryDirectory() as folder:
        for relative, image in zip(names, images):
            dets, _ = pipeline(image, 1)
            stem = os.path.splitext(relative.lstrip("/"))[0]
            out = Path(folder) / f"{stem}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(format_widerface(os.path.basename(stem), dets))
        return evaluate(folder, str(val / "ground_truth")).aps


def ap_table(pipelines, val, names, images):
    """AP per setting of each backend on the synthetic val set, at the images' own size."""
    from widerface_evaluate.evaluation import SETTINGS

    rows = {name: val_aps(pipeline, val, names, images) for name, pipeline in pipelines.items() if name != PUBLIC}
    eager = rows.get("eager")
    lines = ["\nAP on the synthetic val set (" + f"{len(names)} images, own size), change against eager in brackets\n",
             "| backend | " + " | ".join(SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    for name, aps in rows.items():
        change = eager is not None and name != "eager"
        cells = [f"{100 * aps[s]:.2f}" + (f" ({100 * (aps[s] - eager[s]):+.2f})" if change else "") for s in SETTINGS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def widerface_loop(pipelines, val, names, clock, threads, origin_size=False):
    """images/s of test_widerface.py's loop per pipeline, interleaved image by image."""
    seconds = {name: 0.0 for name in pipelines}
    for relative in names:
        for name, pipeline in pipelines.items():
            start = clock()
            image = cv2.imread(str(val / "images" / relative.lstrip("/")), cv2.IMREAD_COLOR)
            dets, _ = pipeline(image, scale_for_test(*image.shape[:2], origin_size=origin_size))
            format_widerface(relative, dets)
            seconds[name] += clock() - start
    base = len(names) / seconds[PUBLIC]
    eager = len(names) / seconds["eager"] if "eager" in seconds else None
    scale = "each image's own size" if origin_size else "the test scale"
    lines = [f"\ntest_widerface.py's loop at {scale}, {len(names)} synthetic val images, "
             f"{threads} thread{'s' * (threads > 1)}\n",
             "| pipeline | images/s | x public | x eager |", "|---|---|---|---|"]
    for name, total in seconds.items():
        rate = len(names) / total
        lines.append(f"| {name} | {rate:.2f} | {rate / base:.2f} | " + (f"{rate / eager:.2f} |" if eager else "- |"))
    return "\n".join(lines)


# ---------------------------------------------------------------- main


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    photo, source = load_photo(args.image)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.path.relpath(args.weights, REPO) if os.path.isabs(args.weights) else args.weights} on {source}; "
          f"device {device}, {os.cpu_count()} CPUs, load average {load:.2f} at the start; clock: {args.clock}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        pipelines = build_pipelines(args, args.weights, device)
        for size in args.sizes:
            image, resize, label = sized(photo, size)
            rounds = args.rounds if image.shape[0] * image.shape[1] * resize ** 2 <= 640 * 480 else args.rounds_large
            results = time_pipelines(pipelines, image, resize, rounds, sync, clock)
            print(speed_table(results, f"{label}, {rounds} rounds", threads), flush=True)
    torch.set_num_threads(args.threads[0])
    if args.accuracy or args.widerface:
        val, names = synthetic_val(args)
    if args.accuracy:
        pipelines = build_pipelines(args, args.weights, device)
        print(agreement_table(agreement(pipelines, [sized(photo, size)[:2] for size in args.sizes]),
                              f"{source} at {', '.join(args.sizes)}, {os.path.basename(args.weights)}"))
        student = build_pipelines(args, args.accuracy_weights, device)
        images = val_images(val, names)
        print(agreement_table(agreement(student, [(image, 1) for image in images]),
                              f"synthetic val set ({len(images)} images), {os.path.basename(args.accuracy_weights)}"))
        print(ap_table(student, val, names, images), flush=True)
    if args.widerface:
        pipelines = build_pipelines(args, args.weights, device)
        print(widerface_loop(pipelines, val, names[:args.widerface], clock, args.threads[0], args.origin_size))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
