"""Detect faces in one image or a folder and save the images with boxes, scores and landmarks.

    python detect.py -m weights/tdkd_student_distilled.pth photo.jpg --save_folder detections/
"""
import argparse
import os

import cv2
import torch

import config
from utils.errors import TDKDError, exit_on_error, located
from utils.inference import FaceDetector, load_detector
from utils.visualize import draw_detections

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="an image or a folder of images")
    p.add_argument("-m", "--trained_model", default="./weights/mobile0.25_Final.pth")
    p.add_argument("--network", choices=sorted(config.NETWORKS), help="default: from the weights' JSON, else mobile0.25")
    p.add_argument("--activation", choices=config.ACTIVATIONS)
    p.add_argument("--cpu", action="store_true", help="same as --device cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--save_folder", default="./detections/")
    p.add_argument("--confidence_threshold", type=float, default=0.02)
    p.add_argument("--top_k", type=int, default=5000)
    p.add_argument("--nms_threshold", type=float, default=0.4)
    p.add_argument("--keep_top_k", type=int, default=750)
    p.add_argument("--vis_thres", type=float, default=0.6, help="score needed to draw and count a face")
    return p.parse_args(argv)


def list_images(path):
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        return [os.path.join(path, f) for f in files]
    if os.path.isfile(path):
        return [path]
    raise TDKDError(located(path, "no such image or folder"))


def run(args):
    device = "cpu" if args.cpu else args.device
    model, cfg = load_detector(args.trained_model, args.network, args.activation, device)
    detector = FaceDetector(model, cfg, device, args.confidence_threshold, args.top_k,
                            args.nms_threshold, args.keep_top_k)
    os.makedirs(args.save_folder, exist_ok=True)
    counts = {}
    for path in list_images(args.input):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise TDKDError(located(path, "cannot read image (missing or corrupt)"))
        dets, landms = detector(image)
        canvas, count = draw_detections(image, dets, landms, args.vis_thres)
        out = os.path.join(args.save_folder, os.path.basename(path))
        cv2.imwrite(out, canvas)
        counts[path] = count
        print(f"{path}: {count} faces (score >= {args.vis_thres}) -> {out}")
    return counts


@exit_on_error
def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
