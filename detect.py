"""Detect faces in an image or a folder; save each image with its boxes, scores and landmarks.

    python detect.py photo.jpg                          # shipped distilled student -> detections/photo.jpg
    python detect.py photos/ --recursive --save_json    # every image below photos/, + detections.json
    python detect.py photo.jpg -m weights/tdkd_student_base.pth --save_folder out/
    python detect.py photos/ --backend eager            # the public code's detections, bit for bit

Defaults are those of the public detect.py (Pytorch_Retinaface, as used by TDKD): keep scores
> 0.02, top 5000, NMS at IoU 0.4, keep 750, draw and count faces scoring >= 0.6, image at its
own size. test_widerface.py and the Python API (detector.py) use NMS 0.3 (docs/METHOD.md §7).

Photos are never overwritten: a --save_folder where an output would replace an input is
refused. Runs are never mixed: with --save_json, or where SAVE_FOLDER already holds a
detections.json, a folder holding files this run would not replace is refused unless
--overwrite is given. An image that cannot be read (missing, truncated, above --max_pixels)
is skipped; the skipped files are listed at the end and the exit status is then 2. An empty
folder is an error.
"""
import argparse
import json
import os
import sys

import config
from backends import add_backend_arguments
from detector import DEFAULT_WEIGHTS, FaceDetector, Faces
from utils.checkpoint import writable_folder, write_text_atomic
from utils.cli import HelpFormatter, add_device_argument
from utils.errors import TDKDError, exit_on_error, located
from utils.images import read_image, write_image
from utils.threads import add_threads_argument, set_threads
from utils.visualize import draw_detections

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
JSON_NAME = "detections.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("input", help="an image or a folder of images")
    p.add_argument("-m", "--trained_model", default=DEFAULT_WEIGHTS,
                   help=f"weights; default: this repository's {config.DEFAULT_DETECTOR} (the published "
                        "distilled TDKD student), wherever detect.py is run from")
    p.add_argument("--network", choices=sorted(config.NETWORKS),
                   help="default: from the weights' JSON, else the one their shapes fit, else mobile0.25")
    p.add_argument("--activation", choices=config.ACTIVATIONS, help="default: from the weights' JSON, else relu")
    p.add_argument("--cpu", action="store_true", help="same as --device cpu")
    add_device_argument(p)
    add_backend_arguments(p)
    add_threads_argument(p)
    p.add_argument("--save_folder", default="./detections/",
                   help="where the drawn images (same names, subfolders mirrored) and --save_json go")
    p.add_argument("-s", "--save_image", action=argparse.BooleanOptionalAction, default=True,
                   help="save the images with detections drawn (public spelling; --no-save_image with "
                        "--save_json writes the JSON only)")
    p.add_argument("--save_json", action="store_true",
                   help=f"write every image's faces (box, score, 5 landmarks) to SAVE_FOLDER/{JSON_NAME}")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a SAVE_FOLDER holding another run's outputs (refused without it when "
                        f"{JSON_NAME} is written or already there); that run's other files stay")
    p.add_argument("--recursive", action="store_true", help="also the images in subfolders of a folder input")
    p.add_argument("--max_pixels", type=int, default=config.MAX_IMAGE_PIXELS,
                   help="skip larger images, read from the file's header before decoding (config.MAX_IMAGE_PIXELS)")
    p.add_argument("--confidence_threshold", type=float, default=0.02, help="keep scores above this, as the public detect.py")
    p.add_argument("--top_k", type=int, default=5000, help="best candidates kept before NMS, as the public detect.py")
    p.add_argument("--nms_threshold", type=float, default=0.4,
                   help="NMS IoU: 0.4 as the public detect.py; test_widerface.py and the Python API (detector.py) "
                        "use 0.3, the WIDER FACE test protocol's, so their boxes can differ a little")
    p.add_argument("--keep_top_k", type=int, default=750, help="detections kept after NMS, as the public detect.py")
    p.add_argument("--vis_thres", type=float, default=0.6,
                   help="score needed to draw, count and list (--save_json) a face: 0.6 as the public detect.py; "
                        "test_widerface.py --save_image draws from 0.5, as the public test_widerface.py")
    return p.parse_args(argv)


def list_images(path, recursive=False, skip=None):
    """``(folder, sorted relative paths)`` of the images to process; a file is its own list.

    ``skip`` is a folder left out of a recursive walk (the save folder when it lies inside).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.dirname(path), [os.path.basename(path)]
    if not os.path.isdir(path):
        raise TDKDError(located(path, "no such image or folder"))
    found = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = [d for d in subfolders if not _same_folder(os.path.join(folder, d), skip)]
        found += [os.path.relpath(os.path.join(folder, f), path) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not recursive:
            break
    if not found:
        hint = "" if recursive else "; --recursive looks in subfolders too"
        raise TDKDError(located(path, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder{hint}"))
    return path, sorted(found)


def _same_folder(a, b):
    return b is not None and os.path.realpath(a) == os.path.realpath(b)


def _file_id(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def refuse_overwriting(inputs, outputs):
    """A ``TDKDError`` if any output path is an input file (same path, link or hard link)."""
    real = {os.path.realpath(p) for p in inputs}
    ids = {_file_id(p) for p in inputs if os.path.exists(p)}
    for out in outputs:
        if os.path.realpath(out) in real or (os.path.exists(out) and _file_id(out) in ids):
            raise TDKDError(located(out, "would overwrite an input image; choose another --save_folder"))


def earlier_outputs(folder, outputs):
    """The files below ``folder`` that are not among ``outputs`` (temporary files aside)."""
    ours = {os.path.normpath(p) for p in outputs}
    found = []
    for parent, _, files in os.walk(folder):
        found += [path for path in (os.path.join(parent, f) for f in files if not f.startswith(".tmp_"))
                  if os.path.normpath(path) not in ours]
    return sorted(found)


def refuse_mixing(folder, outputs, save_json, overwrite):
    """A folder with a ``detections.json`` describes one run: refuse (a ``TDKDError``) to write
    or keep one beside files this run would not replace, unless ``overwrite`` (then say so)."""
    json_path = os.path.join(folder, JSON_NAME)
    if not (save_json or os.path.exists(json_path)):
        return
    others = earlier_outputs(folder, list(outputs) + ([json_path] if save_json else []))
    if not others:
        return
    files = f"{len(others)} file{'s' * (len(others) > 1)} of another run (e.g. {os.path.relpath(others[0], folder)})"
    if overwrite:
        print(f"{folder}: --overwrite: keeps {files} beside this run's", file=sys.stderr)
        return
    raise TDKDError(located(folder, f"holds {files} that this run would not replace, so {JSON_NAME} would not "
                                    "describe the folder; choose another --save_folder, or add --overwrite"))


def detect_image(detector, path, out, args):
    """Detect, draw and save one image: ``(faces drawn, its JSON record)``."""
    image = read_image(path, args.max_pixels)
    dets, landms = detector(image)
    canvas, count = draw_detections(image, dets, landms, args.vis_thres)
    if args.save_image:
        write_image(out, canvas, args.save_folder)
    faces = Faces.from_arrays(dets, landms)
    record = dict(height=image.shape[0], width=image.shape[1], faces=faces[faces.scores >= args.vis_thres].to_list())
    return count, record


def run(args):
    """Process every image; returns ``{input path: faces drawn}`` of the images saved."""
    if os.path.isdir(args.input) and _same_folder(args.input, args.save_folder):
        raise TDKDError(located(args.save_folder, "--save_folder is the input folder: the drawn images would "
                                                  "replace the photos; choose another folder"))
    root, names = list_images(args.input, args.recursive, skip=args.save_folder)
    inputs = [os.path.join(root, name) for name in names]
    drawn = [os.path.join(args.save_folder, name) for name in names]
    outputs = drawn if args.save_image else []
    json_path = os.path.join(args.save_folder, JSON_NAME)
    refuse_overwriting(inputs, outputs + ([json_path] if args.save_json else []))
    if os.path.isdir(args.save_folder):
        refuse_mixing(args.save_folder, outputs, args.save_json, args.overwrite)

    device = "cpu" if args.cpu else args.device
    set_threads(args.threads)
    detector = FaceDetector.from_weights(
        args.trained_model, args.network, args.activation, device, args.backend, args.calibration,
        confidence_threshold=args.confidence_threshold, top_k=args.top_k, nms_threshold=args.nms_threshold,
        keep_top_k=args.keep_top_k)
    if outputs or args.save_json:
        writable_folder(args.save_folder)
    counts, results, failed = {}, {}, []
    for name, path, out in zip(names, inputs, drawn):
        try:
            counts[path], results[name.replace(os.sep, "/")] = detect_image(detector, path, out, args)
        except TDKDError as exc:
            failed.append(str(exc))
            continue
        print(f"{path}: {counts[path]} faces (score >= {args.vis_thres})" + (f" -> {out}" if args.save_image else ""))
    if args.save_json:
        settings = {k: getattr(args, k) for k in ("confidence_threshold", "top_k", "nms_threshold", "keep_top_k",
                                                  "vis_thres")}
        report = dict(weights=str(args.trained_model), settings=settings, images=results, failed=failed)
        write_text_atomic(json.dumps(report, indent=1), json_path)
        print(f"{len(results)} images -> {json_path}")
    detector.warn_dropped(args.trained_model)
    if len(failed) == len(names) == 1:
        raise TDKDError(failed[0])
    if failed:
        print("\n".join(f"skipped {line}" for line in failed), file=sys.stderr)
        raise TDKDError(failure_summary(len(failed), len(names)))
    return counts


def failure_summary(failed, total):
    """The last line of a run where ``failed`` of ``total`` images could not be processed."""
    if failed == total:
        return f"all {total} images failed (listed above)"
    return f"{failed} of {total} images failed (listed above); the other {total - failed} were processed"


@exit_on_error
def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
