"""Export a trained detector to ONNX and check it against PyTorch with onnxruntime.

    python export_onnx.py -m weights/tdkd_student_distilled.pth -o tdkd_student.onnx

Input ``image``: float32 ``[batch, 3, height, width]``, a BGR image minus the mean
(104, 117, 123), as ``utils.inference.preprocess`` makes it; batch, height and width are
dynamic. Outputs per prior (``layers.prior_boxes`` order): ``loc [batch, priors, 4]``
offsets, ``scores [batch, priors, 2]`` softmax (background, face), ``landmarks
[batch, priors, 10]`` offsets; ``utils.inference.postprocess`` turns them into faces.

Uses the TorchScript-based exporter of ``torch.onnx`` (``dynamo=False``): it needs only
the ``onnx`` package, where the newer exporter also needs ``onnxscript`` and takes ~6x longer.
"""
import argparse
import io
import os
import warnings

import numpy as np
import torch

import config
from detector import DEFAULT_WEIGHTS, load_detector
from models import DeployableRetinaFace
from utils.checkpoint import write_bytes_atomic
from utils.cli import HelpFormatter
from utils.errors import TDKDError, exit_on_error, located

OPSET = 17
INPUT = "image"
OUTPUTS = ("loc", "scores", "landmarks")


def export(model, path, opset=OPSET):
    """Write ``model`` (a RetinaFace) to ``path`` as ONNX with dynamic batch, height and width."""
    dynamic = {INPUT: {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 1: "priors"} for name in OUTPUTS})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(DeployableRetinaFace(model).eval(), (torch.zeros(1, 3, 480, 640),), buffer,
                          dynamo=False, input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes=dynamic, opset_version=opset)
    write_bytes_atomic(buffer.getvalue(), path)


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
    p.add_argument("--network", choices=sorted(config.NETWORKS), help="default: from the weights' JSON, else mobile0.25")
    p.add_argument("--activation", choices=config.ACTIVATIONS, help="default: from the weights' JSON, else relu")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset version")
    return p.parse_args(argv)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    model, _ = load_detector(args.trained_model, args.network, args.activation)
    try:
        export(model, args.output, args.opset)
    except OSError as exc:
        raise TDKDError(located(args.output, f"cannot write ({exc.strerror or exc})")) from None
    size = os.path.getsize(args.output)
    print(f"{args.output}: opset {args.opset}, {size / 2**20:.2f} MiB ({size} bytes); input {INPUT} "
          f"[batch, 3, height, width], outputs {', '.join(OUTPUTS)} [batch, priors, 4 | 2 | 10]")
    try:
        differences = compare(model, args.output, 50 * torch.randn(1, 3, 480, 640, generator=torch.manual_seed(0)))
    except ImportError:
        print("onnxruntime is not installed: the export was not checked against PyTorch")
        return
    print("onnxruntime vs PyTorch on a random 480x640 input, largest difference: "
          + ", ".join(f"{k} {v:.2g}" for k, v in differences.items()))


if __name__ == "__main__":
    main()
