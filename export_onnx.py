"""Export a trained detector to ONNX (float, or INT8 with --int8) and check it with onnxruntime.

    python export_onnx.py -o tdkd_student.onnx                  # the shipped distilled student
    python export_onnx.py -o tdkd_student_int8.onnx --int8      # INT8, calibrated on synthetic images
    python export_onnx.py -m weights/tdkd_student_distilled.pth -o student_int8.onnx --int8 \\
        --calibration data/widerface/train/images/

Input ``image``: float32 ``[batch, 3, height, width]``, a BGR image minus the mean
(104, 117, 123), as ``utils.inference.network_input`` makes it; batch, height and width are
dynamic. Outputs per prior (``layers.prior_boxes`` order): ``loc [batch, priors, 4]``
offsets, ``scores [batch, priors, 2]`` softmax (background, face), ``landmarks
[batch, priors, 10]`` offsets; ``utils.inference.postprocess`` turns them into faces. The
file's properties name the network and activation, so ``FaceDetector.from_weights(path)``
and ``detect.py -m path`` run it as it is.

--int8: ONNX Runtime's static quantisation (QDQ, per-channel int8 weights, uint8
activations), the activation ranges calibrated on the first ``config.DEPLOYMENT`` images
(300) of --calibration, else on synthetic training images (docs/DEPLOYMENT.md).

Uses the TorchScript-based exporter of ``torch.onnx`` (``dynamo=False``): it needs only
the ``onnx`` package, where the newer exporter also needs ``onnxscript`` and takes ~6x longer.
"""
import argparse
import os
import tempfile

import numpy as np
import torch

import config
from backends import INPUT, OPSET, OUTPUTS, CalibrationImages, export_onnx, quantize_int8
from detector import DEFAULT_WEIGHTS, load_detector
from utils.checkpoint import cannot_write
from utils.cli import HelpFormatter
from utils.errors import TDKDError, exit_on_error, located
from utils.threads import add_threads_argument, set_threads

export = export_onnx  # the name other tools import
# Largest absolute difference of any raw output between onnxruntime and PyTorch that a float
# export may show on the check's input (float32 rounding; tests/test_export.py uses the same).
CHECK_TOLERANCE = 1e-4


def compare(model, path, images):
    """Largest absolute difference per output between onnxruntime and PyTorch on ``images``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    ours = session.run(list(OUTPUTS), {INPUT: images.numpy()})
    with torch.no_grad():
        reference = model.predict(images)
    return {name: float(np.abs(a - b.numpy()).max()) for name, a, b in zip(OUTPUTS, ours, reference)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-m", "--trained_model", default=DEFAULT_WEIGHTS,
                   help="weights to export; default: the shipped distilled TDKD student")
    p.add_argument("--network", choices=sorted(config.NETWORKS),
                   help="default: from the weights' JSON, else the one their shapes fit, else mobile0.25")
    p.add_argument("--activation", choices=config.ACTIVATIONS, help="default: from the weights' JSON, else relu")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset version")
    p.add_argument("--int8", action="store_true", help="quantise to INT8 (static, calibrated; needs onnxruntime)")
    p.add_argument("--calibration", metavar="FOLDER",
                   help="--int8: calibrate on the images below FOLDER (e.g. WIDER FACE train images); "
                        "default: synthetic training images")
    add_threads_argument(p)
    args = p.parse_args(argv)
    if args.calibration and not args.int8:
        p.error("--calibration is for --int8")
    return args


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    model, cfg = load_detector(args.trained_model, args.network, args.activation)
    metadata = {"network": cfg["name"], "activation": cfg["activation"]}
    try:
        if args.int8:
            with tempfile.TemporaryDirectory() as tmp:
                float_path = os.path.join(tmp, "float.onnx")
                export(model, float_path, args.opset, metadata)
                quantize_int8(float_path, args.output, CalibrationImages(args.calibration))
        else:
            export(model, args.output, args.opset, metadata)
    except OSError as exc:
        raise cannot_write(args.output, exc) from None
    size = os.path.getsize(args.output)
    kind = "INT8 " if args.int8 else ""
    print(f"{args.output}: {kind}opset {args.opset}, {size / 2**20:.2f} MiB ({size} bytes); input {INPUT} "
          f"[batch, 3, height, width], outputs {', '.join(OUTPUTS)} [batch, priors, 4 | 2 | 10]")
    try:
        differences = compare(model, args.output, 50 * torch.randn(1, 3, 480, 640, generator=torch.manual_seed(0)))
    except ImportError:
        print("onnxruntime is not installed: the export was not checked against PyTorch")
        return
    print("onnxruntime vs PyTorch on a random 480x640 input, largest difference: "
          + ", ".join(f"{k} {v:.2g}" for k, v in differences.items()))
    print(check_verdict(differences, args.int8, args.output))


def check_verdict(differences, int8, path):
    """One line: the float export passes when every output is within ``CHECK_TOLERANCE`` of
    PyTorch (a ``TDKDError`` otherwise); INT8 outputs differ by design, so no verdict there."""
    worst = max(differences.values())
    if int8:
        return (f"INT8: outputs differ from float by design (largest {worst:.2g}); the float tolerance "
                f"{CHECK_TOLERANCE:g} does not apply (accuracy: docs/DEPLOYMENT.md)")
    if worst > CHECK_TOLERANCE:
        raise TDKDError(located(path, f"check FAILED: onnxruntime differs from PyTorch by {worst:.2g}, more than "
                                      f"the tolerance {CHECK_TOLERANCE:g}"))
    return f"check passed: every output within {CHECK_TOLERANCE:g} of PyTorch"


if __name__ == "__main__":
    main()
