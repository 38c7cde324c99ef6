"""Every bad input gets one clear line naming the file, and nothing written is lost or mixed:
truncated images, files that are not weights, absent GPUs, arrays the network cannot take,
non-finite scores and labels, images above the pixel limit, unwritable outputs, planted links
and folders holding another run."""
import json
import os
import re
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
import torch

import backends
import config
import detect
import test_widerface
import train
from data.wider_face import WiderFaceDetection, parse_label_file
from detector import FaceDetector
from tests.test_reliability import SMALL, detector_weights, leftovers, main_fails, val_set
from utils.checkpoint import load_file, writable_folder, write_text_atomic
from utils.distributed import resolve_device
from utils.errors import TDKDError
from utils.images import read_image
from widerface_evaluate import evaluation

pytestmark = pytest.mark.filterwarnings("ignore:.*no ImageNet weights found")


def picture(height=48, width=64, seed=0):
    """A small BGR image with structure (so that JPEG has real entropy-coded data)."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))
    return cv2.GaussianBlur(image, (3, 3), 0)


def encoded(extension, image=None, *params):
    return cv2.imencode(extension, picture() if image is None else image, list(params))[1].tobytes()


def with_exif_thumbnail(jpeg):
    """``jpeg`` with a whole JPEG thumbnail (its own end-of-image marker) in an APP1 segment."""
    thumbnail = encoded(".jpg", picture(16, 16, seed=1))
    segment = b"Exif\x00\x00" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


def png_claiming(width, height):
    """A 1 x 1 PNG whose IHDR (CRC fixed) claims ``width`` x ``height``."""
    data = bytearray(encoded(".png", np.zeros((1, 1, 3), np.uint8)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---------------------------------------------------------------- truncated images


@pytest.mark.parametrize("extension, cut, reason", [
    (".jpg", lambda data: data[:len(data) // 2], "JPEG without its end-of-image marker"),
    (".jpg", lambda data: data[:-2], "JPEG without its end-of-image marker"),
    (".jpg", lambda data: with_exif_thumbnail(data)[:-300], "JPEG without its end-of-image marker"),
    (".jpg", lambda data: data[:100], "JPEG cut short before its image data"),
    (".png", lambda data: data[:-12], "PNG without its IEND chunk"),
    (".bmp", lambda data: data[:len(data) // 2], "BMP shorter than its header says"),
    (".webp", lambda data: data[:len(data) // 2], "WebP shorter than its header says"),
])
def test_a_truncated_image_is_named_as_truncated(tmp_path, extension, cut, reason):
    path = tmp_path / f"cut{extension}"
    path.write_bytes(cut(encoded(extension)))
    with pytest.raises(TDKDError) as error:
        read_image(path)
    assert str(error.value).startswith(f"{path}: truncated or corrupt image ({reason}")


@pytest.mark.parametrize("extension, data", [
    (".jpg", lambda: with_exif_thumbnail(encoded(".jpg"))),
    (".jpg", lambda: encoded(".jpg") + b"trailing bytes after the end-of-image marker"),
    (".png", lambda: encoded(".png")),
    (".bmp", lambda: encoded(".bmp")),
    (".webp", lambda: encoded(".webp")),
    (".webp", lambda: encoded(".webp", None, cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless (VP8L)
])
def test_whole_images_read_as_cv2_reads_them(tmp_path, extension, data):
    path = tmp_path / f"whole{extension}"
    path.write_bytes(data())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_a_decoder_warning_is_attributed_to_the_file_and_not_printed_bare(tmp_path, capfd):
    data = encoded(".jpg")
    path = tmp_path / "extra.jpg"
    path.write_bytes(data[:-2] + b"\x00" * 10 + data[-2:])  # junk before the end-of-image marker
    with pytest.warns(UserWarning) as caught:
        image = read_image(path)
    assert image.shape == (48, 64, 3)
    assert len(caught) == 1 and re.fullmatch(
        rf"{re.escape(str(path))}: decoder warning: Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9",
        str(caught[0].message))
    assert "Corrupt JPEG" not in capfd.readouterr().err
    os.write(2, b"stderr still works\n")
    assert capfd.readouterr().err == "stderr still works\n"


@pytest.fixture
def truncated_set(tmp_path):
    """A val folder of three images, b.jpg cut to its first half."""
    images = val_set(tmp_path / "val", names=("a", "b", "c"))
    cut = images / "0--Tiny" / "b.jpg"
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    return images, cut


def test_detect_lists_a_truncated_image_and_processes_the_others(tmp_path, truncated_set, capsys):
    images, cut = truncated_set
    line = main_fails(detect.main, [images / "0--Tiny", "--cpu", "--save_folder", tmp_path / "out"], capsys)
    assert line == "error: 1 of 3 images failed (listed above); the other 2 were processed"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "c.jpg"]
    main_fails(detect.main, [cut, "--cpu", "--save_folder", tmp_path / "one"], capsys)


def test_test_widerface_the_api_and_training_refuse_a_truncated_image(tmp_path, truncated_set, capsys):
    images, cut = truncated_set
    expected = f"{cut}: truncated or corrupt image (JPEG without its end-of-image marker)"
    argv = ["--cpu", "--origin_size", "--dataset_folder", images, "--save_folder", tmp_path / "pred"]
    assert main_fails(test_widerface.main, argv, capsys) == f"error: {expected}"
    with pytest.raises(TDKDError) as error:
        FaceDetector.from_weights().detect(cut)
    assert str(error.value) == expected
    label = images.parent / "label.txt"
    label.write_text("".join(f"# 0--Tiny/{n}.jpg\n1 2 10 10\n" for n in "abc"))
    with pytest.raises(TDKDError) as error:
        WiderFaceDetection(label)[1]
    assert str(error.value) == expected


# ---------------------------------------------------------------- the pixel limit


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(png_claiming(20000, 20000))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: pytest.fail("decoded a file above the limit"))
    with pytest.raises(TDKDError) as error:
        read_image(big)
    assert str(error.value) == (f"{big}: 20000 x 20000 = 400,000,000 pixels, above the limit of "
                                f"{config.MAX_IMAGE_PIXELS:,} (max_pixels; docs/DETECTION.md)")
    jpeg = bytearray(encoded(".jpg"))
    frame = jpeg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, frame + 5, 9000, 8000)  # height, width
    (tmp_path / "big.jpg").write_bytes(bytes(jpeg))
    with pytest.raises(TDKDError, match="8000 x 9000 = 72,000,000 pixels, above the limit"):
        read_image(tmp_path / "big.jpg")


def test_every_entry_point_applies_the_pixel_limit(tmp_path, capsys):
    images = val_set(tmp_path / "val", names=("a",))  # 64 x 48 = 3,072 pixels
    photo = images / "0--Tiny" / "a.jpg"
    over = "64 x 48 = 3,072 pixels, above the limit of 3,000"
    line = main_fails(detect.main, [photo, "--cpu", "--max_pixels", 3000, "--save_folder", tmp_path / "d"], capsys)
    assert line == f"error: {photo}: {over} (max_pixels; docs/DETECTION.md)"
    argv = ["--cpu", "--origin_size", "--dataset_folder", images, "--save_folder", tmp_path / "p", "--max_pixels", 3000]
    assert main_fails(test_widerface.main, argv, capsys).endswith(over + " (max_pixels; docs/DETECTION.md)")
    detector = FaceDetector.from_weights(max_pixels=3000)
    with pytest.raises(TDKDError, match=over):
        detector.detect(photo)
    with pytest.raises(ValueError, match=over):
        detector.detect(cv2.imread(str(photo)))
    label = images.parent / "label.txt"
    label.write_text("# 0--Tiny/a.jpg\n1 2 10 10\n")
    with pytest.raises(TDKDError, match=over):
        WiderFaceDetection(label, max_pixels=3000)[0]
    FaceDetector.from_weights().detect(photo)  # the default limit lets it through


@pytest.mark.parametrize("size", [0, 12000])
def test_train_img_dim_is_bounded(size, capsys):
    line = main_fails(train.main, ["--img_dim", size], capsys)
    assert line == (f"error: --img_dim {size}: expected 1 to {config.MAX_IMG_DIM} pixels (config.MAX_IMG_DIM; "
                    "the recipes use 640 or 840)")


def test_training_honours_max_pixels_from_set(tiny_dataset, tmp_path, capsys):
    argv = ["--training_dataset", tiny_dataset, "--save_folder", tmp_path / "run", *SMALL, "--max_epoch", "1",
            "--backbone_weights", "none", "--set", "max_pixels=100"]
    assert main_fails(train.main, argv, capsys).endswith("96 x 96 = 9,216 pixels, above the limit of 100 "
                                                         "(max_pixels; docs/DETECTION.md)")


# ---------------------------------------------------------------- weights that are not weights


@pytest.mark.parametrize("content, message", [
    (lambda: encoded(".jpg"), "a JPEG image, not a weights file"),
    (lambda: encoded(".png"), "a PNG image, not a weights file"),
    (lambda: b"network: mobile0.25\nlr: 0.02\n", "a text file, not a weights file"),
    (lambda: bytes(range(1, 256)) * 3, "not a PyTorch file (neither a zip archive nor a pickle)"),
    (lambda: b"", "empty file (0 bytes), not a weights file"),
])
def test_a_file_that_is_not_weights_says_what_it_is(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content())
    with pytest.raises(TDKDError) as error:
        load_file(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_truncated_checkpoint_is_named_as_cut_short(tmp_path, capsys):
    whole = detector_weights(tmp_path / "whole.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:20000])
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    line = main_fails(detect.main, [image, "-m", cut, "--cpu", "--save_folder", tmp_path / "det"], capsys)
    assert line == f"error: {cut}: a zip archive cut short or corrupt (an interrupted copy?)"
    assert set(load_file(whole)) == set(torch.load(whole, weights_only=True))


# ---------------------------------------------------------------- devices


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("name, message", [
    ("cuda", "device 'cuda': no CUDA GPU is available on this machine; run on the CPU with --device cpu"),
    ("cuda:3", "device 'cuda:3': no CUDA GPU is available on this machine; run on the CPU with --device cpu"),
    ("gpu", "device 'gpu': not a device here; use 'cpu', 'cuda' or 'cuda:N'"),
    ("mps", "device 'mps': not a device here; use 'cpu', 'cuda' or 'cuda:N'"),
])
def test_a_device_this_machine_lacks_is_one_line_everywhere(no_gpu, tmp_path, capsys, name, message):
    with pytest.raises(TDKDError) as error:
        FaceDetector.from_weights(device=name)
    assert str(error.value) == message
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    assert main_fails(detect.main, [image, "--device", name, "--save_folder", tmp_path / "d"], capsys) == \
        f"error: {message}"
    assert main_fails(test_widerface.main, ["--device", name], capsys) == f"error: {message}"
    assert not (tmp_path / "d").exists()


def test_a_missing_gpu_index_names_the_gpus_there_are(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(TDKDError, match=r"^device 'cuda:3': this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)$"):
        resolve_device("cuda:3")
    assert resolve_device("cpu") == torch.device("cpu")


# ---------------------------------------------------------------- arrays given to the API


@pytest.fixture(scope="module")
def student():
    return FaceDetector.from_weights()


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 0), np.uint8), r"the image is empty \(shape \(0, 0\)\)"),
    (np.zeros((0, 5, 3), np.uint8), r"the image is empty \(shape \(0, 5, 3\)\)"),
    (np.zeros((20, 30), np.uint8), r"got shape \(20, 30\) \(grey: convert it, e\.g\. cv2\.cvtColor"),
    (np.zeros((20, 30, 4), np.uint8), r"got shape \(20, 30, 4\) \(4 channels: drop the alpha channel"),
    (np.full((20, 30, 3), 0.5, np.float32), r"uint8 BGR values 0-255.*float32 image scaled 0-1: multiply it by 255"),
    (np.full((20, 30, 3), 300, np.uint16), r"got values from 300 to 300 \(dtype uint16\)"),
    (np.full((20, 30, 3), np.nan, np.float64), r"got nan or inf values"),
    (np.ones((20, 30, 3), bool), r"got dtype bool"),
])
def test_an_array_the_network_cannot_take_is_refused_in_one_line(student, array, message):
    with pytest.raises(ValueError, match=message):
        student.detect(array)


def test_color_is_case_insensitive_and_0_255_numbers_of_any_type_are_taken(student):
    image = picture(96, 128)
    expected = student.detect(image).to_list()
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    assert student.detect(rgb, color="RGB").to_list() == student.detect(rgb, color="rgb").to_list() == expected
    assert student.detect(image, color="BGR").to_list() == expected
    assert student.detect(image.astype(np.float64)).to_list() == expected
    assert student.detect(image.astype(np.int64)).to_list() == expected
    with pytest.raises(ValueError, match="color must be one of"):
        student.detect(image, color="hsv")


# ---------------------------------------------------------------- scores and labels


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_non_finite_score_is_named_with_its_line(tmp_path, value):
    event = tmp_path / "pred" / "0--Tiny"
    event.mkdir(parents=True)
    bad = event / "a.txt"
    bad.write_text(f"a\n2\n1 2 3 4 0.9 \n5 6 7 8 {value} \n")
    with pytest.raises(TDKDError) as error:
        evaluation.read_predictions(str(tmp_path / "pred"))
    assert str(error.value) == f"{bad}:4: not a finite number (inf or nan) in '5 6 7 8 {value}'"


def labels(tmp_path, text, encoding="utf-8"):
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "label.txt"
    path.write_text(text, encoding=encoding)
    return path


def test_a_label_beyond_float32_is_named_with_its_line(tmp_path):
    path = labels(tmp_path, "# a.jpg\n1 2 10 10\n# b.jpg\n1 2 1e39 10\n")
    with pytest.raises(TDKDError) as error:
        parse_label_file(path)
    assert str(error.value) == f"{path}:4: '1e39' is not a finite number in float32 (|x| < 3.4e38)"


def test_a_label_file_with_a_byte_order_mark_parses(tmp_path):
    text = "# a.jpg\n1 2 10 10\n"
    plain = parse_label_file(labels(tmp_path, text))
    marked = parse_label_file(labels(tmp_path, text, encoding="utf-8-sig"))
    assert (tmp_path / "label.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    assert marked[0] == plain[0] and np.array_equal(marked[1][0], plain[1][0])


# ---------------------------------------------------------------- outputs that cannot be written


def test_an_output_folder_under_a_file_is_one_line_everywhere(tmp_path, tiny_dataset, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    folder = blocker / "sub"
    expected = f"error: {folder}: cannot create the folder (Not a directory)"
    images = val_set(tmp_path / "val")
    assert main_fails(detect.main, [images / "0--Tiny", "--cpu", "--save_folder", folder], capsys) == expected
    argv = ["--cpu", "--origin_size", "--dataset_folder", images, "--save_folder", folder]
    assert main_fails(test_widerface.main, argv, capsys) == expected
    argv = ["--training_dataset", tiny_dataset, "--save_folder", folder, *SMALL, "--backbone_weights", "none"]
    assert main_fails(train.main, argv, capsys) == expected
    line = main_fails(detect.main, [images / "0--Tiny", "--cpu", "--save_folder", blocker], capsys)
    assert line == f"error: {blocker}: is a file, not a folder"
    assert blocker.read_text() == "a file, not a folder"


def test_an_unwritable_onnx_cache_says_how_to_choose_another(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    monkeypatch.setenv("TDKD_CACHE", str(blocker / "cache"))
    with pytest.raises(TDKDError) as error:
        FaceDetector.from_weights(backend="onnxruntime")
    assert str(error.value) == (f"{blocker / 'cache'}: cannot create the folder (Not a directory) "
                                "(the ONNX cache folder: set TDKD_CACHE to a writable folder)")
    assert backends.cache_folder() == blocker / "cache"


def test_a_read_only_folder_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    """Root writes anywhere, so the refusals of a read-only folder are simulated."""
    old = tmp_path / "detections.json"
    old.write_text("old")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(TDKDError) as error:
        write_text_atomic("new", old)
    assert str(error.value) == f"{old}: cannot write (Permission denied)"
    assert old.read_text() == "old" and leftovers(tmp_path) == []
    monkeypatch.setattr("tempfile.TemporaryFile", refused)
    with pytest.raises(TDKDError) as error:
        writable_folder(tmp_path)
    assert str(error.value) == f"{tmp_path}: cannot write in this folder (Permission denied)"


def test_detect_save_json_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    real_replace = os.replace

    def json_refused(source, destination):
        if str(destination).endswith(".json"):
            raise PermissionError(13, "Permission denied")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", json_refused)
    line = main_fails(detect.main, [image, "--cpu", "--save_json", "--save_folder", tmp_path / "d"], capsys)
    assert line == f"error: {tmp_path / 'd' / 'detections.json'}: cannot write (Permission denied)"


# ---------------------------------------------------------------- links and names leading out


def test_detect_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    image = val_set(tmp_path / "val") / "0--Tiny" / "a.jpg"
    outside = tmp_path / "outside.txt"
    outside.write_text("must stay")
    save = tmp_path / "det"
    save.mkdir()
    (save / "a.jpg").symlink_to(outside)
    detect.run(detect.parse_args([str(image), "--cpu", "--save_folder", str(save)]))
    assert outside.read_text() == "must stay"
    assert not (save / "a.jpg").is_symlink() and cv2.imread(str(save / "a.jpg")).shape == (48, 64, 3)


def test_detect_refuses_a_linked_subfolder_leading_out(tmp_path, capsys):
    images = val_set(tmp_path / "val")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save = tmp_path / "det"
    save.mkdir()
    (save / "0--Tiny").symlink_to(elsewhere)
    with pytest.raises(SystemExit):
        detect.main([str(images), "--recursive", "--cpu", "--save_folder", str(save)])
    err = capsys.readouterr().err.splitlines()
    assert f"skipped {save / '0--Tiny' / 'a.jpg'}: its folder is a link leading out of {save}; not written" in err
    assert err[-1] == "error: all 2 images failed (listed above)"
    assert list(elsewhere.iterdir()) == []


def test_test_widerface_refuses_names_leading_out_of_its_folders(tmp_path, capsys):
    images = val_set(tmp_path / "val")
    val_list = images.parent / "wider_val.txt"
    val_list.write_text("/0--Tiny/a.jpg\n\n/0--Tiny/../../../escaped.jpg\n")
    argv = ["--cpu", "--origin_size", "--dataset_folder", images, "--save_folder", tmp_path / "pred"]
    assert main_fails(test_widerface.main, argv, capsys) == (
        f"error: {val_list}:3: '/0--Tiny/../../../escaped.jpg' leads out of the dataset and save folders ('..'); "
        "expected /event/name.jpg")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "escaped.txt").exists()


# ---------------------------------------------------------------- folders holding another run


def test_detect_never_mixes_two_runs_in_one_json_folder(tmp_path, capsys):
    images = val_set(tmp_path / "val", names=("a", "b")) / "0--Tiny"
    save = tmp_path / "det"
    first = [images / "a.jpg", "--cpu", "--save_json", "--save_folder", save]
    detect.main([str(a) for a in first])
    detect.main([str(a) for a in first])  # the same run again replaces every file: allowed
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    second = [images / "b.jpg", "--cpu", "--save_json", "--save_folder", save]
    line = main_fails(detect.main, second, capsys)
    assert line == (f"error: {save}: holds 1 file of another run (e.g. a.jpg) that this run would not replace, so "
                    "detections.json would not describe the folder; choose another --save_folder, or add --overwrite")
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before
    no_json = [images / "b.jpg", "--cpu", "--save_folder", save]
    assert "holds 2 files of another run (e.g. a.jpg)" in main_fails(detect.main, no_json, capsys)
    detect.main([str(a) for a in second + ["--overwrite"]])
    assert f"{save}: --overwrite: keeps 1 file of another run (e.g. a.jpg) beside this run's" in \
        capsys.readouterr().err
    assert list(json.loads((save / "detections.json").read_text())["images"]) == ["b.jpg"]
    assert sorted(p.name for p in save.iterdir()) == ["a.jpg", "b.jpg", "detections.json"]


def test_drawn_images_alone_may_gather_in_one_folder(tmp_path):
    images = val_set(tmp_path / "val", names=("a", "b")) / "0--Tiny"
    save = tmp_path / "det"
    for name in ("a", "b"):
        detect.main([str(images / f"{name}.jpg"), "--cpu", "--save_folder", str(save)])
    assert sorted(p.name for p in save.iterdir()) == ["a.jpg", "b.jpg"]
