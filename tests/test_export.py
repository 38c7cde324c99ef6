"""ONNX export checked against PyTorch (onnxruntime), and the FLOPs / parameter counts."""
import contextlib
import io

import numpy as np
import pytest
import torch

import config
import export_onnx
from bench import flops
from detector import load_detector
from layers import prior_boxes
from tests.conftest import shipped_file
from utils.checkpoint import read_state_dict
from utils.errors import TDKDError
from utils.inference import postprocess, preprocess

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements.txt)")



@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped student and its ONNX export (written by export_onnx.main)."""
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export_onnx.main(["-o", str(path)])
    model, cfg = load_detector(shipped_file("weights", "tdkd_student_distilled.pth"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, cfg, session, path, printed.getvalue()


def run_both(model, session, images):
    outputs = session.run(list(export_onnx.OUTPUTS), {export_onnx.INPUT: images.numpy()})
    with torch.no_grad():
        reference = model.predict(images)
    return [torch.from_numpy(o) for o in outputs], reference


def test_the_script_reports_opset_size_and_the_check(exported):
    _, _, session, path, out = exported
    assert f"{path}: opset 17, " in out and f"({path.stat().st_size} bytes)" in out
    assert "onnxruntime vs PyTorch on a random 480x640 input, largest difference: loc " in out
    assert out.splitlines()[-1] == "check passed: every output within 0.0001 of PyTorch"
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["loc", "scores", "landmarks"]
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]


def test_raw_outputs_match_pytorch_on_a_random_480x640_input_and_another_batch_and_size(exported):
    model, cfg, session, *_ = exported
    generator = torch.manual_seed(0)
    for shape in ((1, 3, 480, 640), (2, 3, 200, 328)):
        images = 60 * torch.randn(*shape, generator=generator)
        ours, reference = run_both(model, session, images)
        priors = len(prior_boxes(cfg, shape[2:]))
        for got, want, width in zip(ours, reference, (4, 2, 10)):
            assert got.shape == want.shape == (shape[0], priors, width)
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        torch.testing.assert_close(ours[1].sum(-1), torch.ones(shape[0], priors))  # softmaxed scores


def test_a_photo_gives_the_same_outputs_and_detections(exported, face_photo):
    model, cfg, session, *_ = exported
    image = face_photo.image
    img = preprocess(image, 1, config.COMMON["rgb_mean"])
    ours, reference = run_both(model, session, torch.from_numpy(img.transpose(2, 0, 1))[None])
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    priors = prior_boxes(cfg, img.shape[:2])
    detections = [postprocess(*(o[0] for o in outs), priors, cfg["variance"], img.shape[:2])
                  for outs in (ours, reference)]
    (dets, points, _), (ref_dets, ref_points, _) = detections
    assert len(dets) == len(ref_dets) and (ref_dets[:, 4] >= 0.5).sum() >= face_photo.min_faces
    np.testing.assert_allclose(dets, ref_dets, atol=1e-3, rtol=0)  # measured: 6e-5 pixels at most
    np.testing.assert_allclose(points, ref_points, atol=1e-3, rtol=0)


def test_the_check_fails_beyond_its_tolerance_and_gives_int8_no_float_verdict():
    assert export_onnx.check_verdict({"loc": 9e-5, "scores": 1e-7}, False, "m.onnx").startswith("check passed")
    with pytest.raises(TDKDError, match=r"^m.onnx: check FAILED: onnxruntime differs from PyTorch by 0.002, more "
                                        r"than the tolerance 0.0001$"):
        export_onnx.check_verdict({"loc": 2e-3, "scores": 1e-7}, False, "m.onnx")
    assert export_onnx.check_verdict({"loc": 2e-3}, True, "m.onnx").startswith("INT8: outputs differ from float")


# ---------------------------------------------------------------- FLOPs and parameters


def test_parameters_match_the_shipped_student_and_flops_scale_with_the_area():
    params, (vga, square) = flops.count("mobile0.25", False, [(640, 480), (640, 640)])
    shipped = read_state_dict(shipped_file("weights", "tdkd_student_distilled.pth"))
    trained = [k for k in shipped if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params == sum(shipped[k].numel() for k in trained) == 426_608
    assert square * 3 == vga * 4  # every feature map of 640x640 is 4/3 of 640x480's (strides divide 480)
    teacher_params, (teacher_vga,) = flops.count("mobile0.25", True, [(640, 480)])
    assert teacher_params > params and teacher_vga > vga


def test_the_first_convolution_is_counted_as_two_flops_per_multiply_add():
    # MobileNet0.25's stem alone: 3x3 conv, 3 -> 8 channels, stride 2, on 64x64 -> 32x32 outputs.
    counter = flops.FlopCounterMode(display=False)
    with counter, torch.no_grad():
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)(torch.zeros(1, 3, 64, 64))
    assert counter.get_total_flops() == 2 * (3 * 3 * 3) * 8 * 32 * 32


def test_the_table_has_a_row_per_network_and_head_layout(capsys):
    flops.main(["--sizes", "320x240"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| network | heads | parameters | GFLOPs 320x240 | GMACs 320x240 |"
    rows = [line.split(" | ")[:2] for line in lines[2:]]
    assert rows == [[f"| {n}", h] for n in config.NETWORKS for h in ("deployed", "task heads (teacher training)")]
