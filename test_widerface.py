r"""Run a trained detector over the WIDER FACE val list and write the official text files.

    python test_widerface.py -m weights/tdkd_student_distilled.pth --network mobile0.25 \
        --dataset_folder ./data/widerface/val/images/ --save_folder ./widerface_evaluate/widerface_txt/

Test scale per docs/METHOD.md §7 (short side 1600, long side at most 2150) unless --origin_size.
Output: ``save_folder/<event>/<name>.txt`` in the public tools' format. The default backend on a
CPU, onnxruntime, ran 2.6x (one thread) to 3.5x (two threads) as many images per second as
eager on a 2-core CPU, scores within 1e-5 and APs equal to 1e-8; ``--backend eager`` writes the
public code's files byte for byte (docs/SPEED.md).
"""
import argparse
import os

from tqdm import tqdm

import config
from utils.checkpoint import writable_folder, write_text_atomic
from utils.cli import HelpFormatter, add_device_argument
from utils.errors import TDKDError, exit_on_error, located
from backends import add_backend_arguments
from detector import FaceDetector
from utils.images import read_image, write_image
from utils.inference import format_widerface, scale_for_test
from utils.threads import add_threads_argument, set_threads
from utils.visualize import draw_detections


def str2bool(value):
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-m", "--trained_model", default=config.repo_path(config.DEFAULT_DETECTOR),
                   help=f"weights to test (default: {config.DEFAULT_DETECTOR} in the repository, the published TDKD student)")
    p.add_argument("--network", choices=sorted(config.NETWORKS),
                   help="network of the weights (default: from the weights' JSON, else the one their shapes "
                        "fit, else mobile0.25)")
    p.add_argument("--activation", choices=config.ACTIVATIONS,
                   help="'leaky' for the older RetinaFace checkpoints (default: from the weights' JSON, else relu)")
    p.add_argument("--origin_size", nargs="?", const=True, default=False, type=str2bool, metavar="True|False",
                   help="test each image at its own size (--origin_size, or --origin_size True); without it, "
                        "at the WIDER FACE test scale (short side 1600, long side at most 2150), about 3x slower "
                        "on small images such as the synthetic set's (default: False)")
    p.add_argument("--save_folder", default="./widerface_evaluate/widerface_txt/", help="where the text files go")
    p.add_argument("--cpu", action="store_true", help="same as --device cpu")
    add_device_argument(p)
    add_backend_arguments(p)
    add_threads_argument(p)
    p.add_argument("--dataset_folder", default="./data/widerface/val/images/", help="WIDER FACE val images")
    p.add_argument("--list", help="val list (default: the dataset folder with images/ replaced by wider_val.txt)")
    p.add_argument("--confidence_threshold", type=float, default=0.02, help="keep scores above this (docs/METHOD.md §7)")
    p.add_argument("--top_k", type=int, default=5000, help="best candidates kept before NMS")
    p.add_argument("--nms_threshold", type=float, default=0.3,
                   help="NMS IoU: 0.3 as the public test_widerface.py (the WIDER FACE test protocol); detect.py "
                        "uses 0.4, as the public detect.py")
    p.add_argument("--keep_top_k", type=int, default=750, help="detections kept after NMS")
    p.add_argument("-s", "--save_image", action="store_true", help="save images with detections drawn")
    p.add_argument("--vis_thres", type=float, default=0.5,
                   help="score needed to draw a face (--save_image): 0.5 as the public test_widerface.py; detect.py "
                        "draws from 0.6, as the public detect.py")
    p.add_argument("--vis_folder", default="./results/", help="where --save_image writes")
    p.add_argument("--max_pixels", type=int, default=config.MAX_IMAGE_PIXELS,
                   help="refuse larger images, read from the file's header before decoding (config.MAX_IMAGE_PIXELS)")
    return p.parse_args(argv)


def val_list_path(dataset_folder, explicit=None):
    """The public convention: ``.../val/images/`` -> ``.../val/wider_val.txt``."""
    if explicit:
        return explicit
    folder = dataset_folder.rstrip("/")
    if os.path.basename(folder) == "images":
        return os.path.join(os.path.dirname(folder), "wider_val.txt")
    return os.path.join(folder, "wider_val.txt")


def read_val_list(path):
    """The image names of a val list (``/event/name.jpg`` per line, relative to the dataset
    folder); a name leading out of it (``..``) is refused with its line."""
    if not os.path.isfile(path):
        raise TDKDError(located(path, "val list not found (give --list or --dataset_folder); WIDER FACE val goes "
                                      "there (docs/EVALUATION.md#wider-face-val), or test on the synthetic set: "
                                      "python -m data.synthetic, then --dataset_folder data/synthetic/val/images/ "
                                      "--origin_size"))
    names = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            name = line.strip()
            if name and os.path.normpath(name.lstrip("/")).split(os.sep)[0] == "..":
                raise TDKDError(located(path, f"{name!r} leads out of the dataset and save folders ('..'); "
                                              "expected /event/name.jpg", number))
            names += [name] if name else []
    if not names:
        raise TDKDError(located(path, "val list is empty"))
    return names


def write_predictions(detector, dataset_folder, names, save_folder, origin_size=False, vis_folder=None,
                      vis_thres=0.5, progress=True, max_pixels=None):
    """Detect faces in every listed image and write ``save_folder/<event>/<name>.txt``; with
    ``vis_folder``, also the drawn images. Each file is complete or absent (atomic writes)."""
    writable_folder(save_folder)
    for name in tqdm(names, desc="test_widerface", dynamic_ncols=True, disable=not progress):
        relative = name.lstrip("/")
        image = read_image(os.path.join(dataset_folder, relative), max_pixels)
        resize = scale_for_test(*image.shape[:2], origin_size=origin_size)
        dets, landms = detector(image, resize)
        stem = os.path.splitext(relative)[0]
        # Temporary files go to the save folder's top, which the evaluator does not read.
        write_text_atomic(format_widerface(os.path.basename(stem), dets),
                          os.path.join(save_folder, stem + ".txt"), tmp_folder=save_folder)
        if vis_folder:
            write_image(os.path.join(vis_folder, relative), draw_detections(image, dets, landms, vis_thres)[0],
                        vis_folder)


def run(args):
    device = "cpu" if args.cpu else args.device
    set_threads(args.threads)
    detector = FaceDetector.from_weights(
        args.trained_model, args.network, args.activation, device, args.backend, args.calibration,
        confidence_threshold=args.confidence_threshold, top_k=args.top_k, nms_threshold=args.nms_threshold,
        keep_top_k=args.keep_top_k)
    names = read_val_list(val_list_path(args.dataset_folder, args.list))
    write_predictions(detector, args.dataset_folder, names, args.save_folder, args.origin_size,
                      args.vis_folder if args.save_image else None, args.vis_thres, max_pixels=args.max_pixels)
    detector.warn_dropped(args.trained_model)
    print(f"{len(names)} images: {detector.timer.summary()}")


@exit_on_error
def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
