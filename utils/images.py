"""The one image reader of every tool (detect.py, test_widerface.py, the Python API, training),
and the writer of drawn images.

``read_image`` reads the file's bytes and checks them before decoding: the pixel count from
the header (JPEG, PNG, BMP, WebP) against ``config.MAX_IMAGE_PIXELS``, and whether the file
was cut short (a JPEG without its end-of-image marker after the image data, a PNG without its
IEND chunk, a BMP or WebP shorter than its header says). It then decodes with
``cv2.imdecode`` and attributes to the file what the decoder writes on stderr (libjpeg's
"Premature end of JPEG file", libpng's warnings), which otherwise appear without a file name.
Every failure is one ``TDKDError`` line naming the file.
"""
import os
import re
import struct
import sys
import tempfile
import threading
import warnings

import cv2
import numpy as np

import config

from .checkpoint import write_bytes_atomic
from .errors import TDKDError, located

# Decoder messages saying that the data ran out (libjpeg, libpng, OpenCV): a partly decoded image.
_RAN_OUT = ("premature end", "incomplete", "unexpected end")
# OpenCV's log prefix, e.g. "[ERROR:0@0.099] global loadsave.cpp:1412 imdecode_ imdecode_(''): ".
_OPENCV_PREFIX = re.compile(r"^\[\s*\w+:\d+@[\d.]+\]\s+global\s+\S+\s+\S+\s+(?:\S+\(''\):\s*)?")
# ... and where an OpenCV exception was raised: "OpenCV(5.1.0) /io/.../bitstrm.cpp:59: error: (-2:...) ".
_OPENCV_WHERE = re.compile(r"OpenCV\([^)]*\) \S+: error: \(-?\d+:[^)]*\) ")
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn markers (not DHT, JPG, DAC)
_STDERR = threading.Lock()  # file descriptor 2 is redirected while decoding: one decode at a time


def read_image(path, max_pixels=None):
    """A colour (BGR, uint8) image read from ``path``, or a ``TDKDError`` naming the file:
    missing, unreadable, empty, above ``max_pixels`` (default ``config.MAX_IMAGE_PIXELS``),
    cut short, or not an image. Decoder warnings that leave the image whole are re-issued as
    Python warnings naming the file."""
    path = os.fspath(path)
    limit = config.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    data = _read_bytes(path)
    size, cut = header_facts(data)
    if size is not None:
        check_pixels(path, *size, limit)
    image, messages = _decode(data)
    if cut or _ran_out(messages):
        reasons = ([cut] if cut else []) + messages
        raise TDKDError(located(path, f"truncated or corrupt image ({'; '.join(reasons)})"))
    if image is None:
        detail = f": {messages[0]}" if messages else ""
        raise TDKDError(located(path, f"cannot read image (not an image, or corrupt{detail})"))
    if size is None:
        check_pixels(path, image.shape[1], image.shape[0], limit)
    for message in messages:
        warnings.warn(located(path, f"decoder warning: {message}"), stacklevel=2)
    return image


def write_image(path, image, folder):
    """Encode ``image`` by the extension of ``path`` and write it atomically below ``folder``
    (a link planted at ``path`` is replaced, never followed; a linked subfolder leading out of
    ``folder`` is refused): a ``TDKDError`` naming ``path`` when it cannot be written."""
    real, root = os.path.realpath(os.path.dirname(path) or "."), os.path.realpath(folder)
    if real != root and not real.startswith(root + os.sep):
        raise TDKDError(located(path, f"its folder is a link leading out of {folder}; not written"))
    encoded, data = cv2.imencode(os.path.splitext(path)[1], image)
    if not encoded:
        raise TDKDError(located(path, "cannot encode the image"))
    write_bytes_atomic(data.tobytes(), path)


def check_pixels(path, width, height, limit):
    """A ``TDKDError`` when a ``width`` x ``height`` image exceeds ``limit`` pixels."""
    if width * height > limit:
        raise TDKDError(located(path, f"{width} x {height} = {width * height:,} pixels, above the limit of "
                                      f"{limit:,} (max_pixels; docs/DETECTION.md)"))


def header_facts(data):
    """``((width, height) or None, why the file looks cut short or None)`` from the bytes of a
    JPEG, PNG, BMP or WebP file; ``(None, None)`` for other formats (the decoder judges them)."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_facts(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_facts(data)
    if data[:2] == b"BM":
        return _bmp_facts(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_facts(data)
    return None, None


def _jpeg_facts(data):
    """Walk the segments to the first scan (an embedded thumbnail is skipped with its segment),
    then look for the end-of-image marker: inside the entropy-coded data a 0xFF byte is never
    followed by 0xD9, so a file without one after the scan was cut short."""
    size, pos = None, 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return size, None  # not where a marker belongs: the decoder judges
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if marker in _JPEG_FRAMES and pos + 9 <= len(data):
            height, width = struct.unpack_from(">HH", data, pos + 5)
            size = (width, height)
        if marker == 0xDA:
            ended = data.find(b"\xff\xd9", pos + 2 + length) >= 0
            return size, None if ended else "JPEG without its end-of-image marker"
        pos += 2 + length
    return size, "JPEG cut short before its image data"


def _png_facts(data):
    """Size from IHDR; the chunks walked by their lengths must reach IEND."""
    if len(data) < 24:
        return None, "PNG cut short in its header"
    width, height = struct.unpack_from(">II", data, 16)
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IEND":
            return (width, height), None
        pos += 12 + length
    return (width, height), "PNG without its IEND chunk"


def _bmp_facts(data):
    """Size from the info header (16-bit fields in the old 12-byte one); the file must be as
    long as its header says."""
    if len(data) < 26:
        return None, "BMP cut short in its header"
    declared, header = struct.unpack_from("<I", data, 2)[0], struct.unpack_from("<I", data, 14)[0]
    width, height = struct.unpack_from("<hh" if header == 12 else "<ii", data, 18)
    cut = "BMP shorter than its header says" if declared > len(data) else None
    return (abs(width), abs(height)), cut


def _webp_facts(data):
    """Size from the first chunk (VP8, VP8L or VP8X); the file must be as long as its RIFF
    header says."""
    cut = "WebP shorter than its header says" if len(data) < struct.unpack_from("<I", data, 4)[0] + 8 else None
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return (width & 0x3FFF, height & 0x3FFF), cut
    if kind == b"VP8L" and len(data) >= 25:
        bits = struct.unpack_from("<I", data, 21)[0]
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1), cut
    if kind == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1), cut
    return None, cut


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise TDKDError(located(path, "no such file")) from None
    except OSError as exc:
        raise TDKDError(located(path, f"cannot read ({exc.strerror or exc})")) from None
    if not data:
        raise TDKDError(located(path, "empty file (0 bytes), not an image"))
    return data


def _decode(data):
    """``cv2.imdecode`` of ``data`` and the lines the decoder wrote on stderr meanwhile
    (file descriptor 2, where libjpeg and libpng write, captured in a temporary file)."""
    buffer = np.frombuffer(data, np.uint8)
    with _STDERR, tempfile.TemporaryFile() as captured:
        if sys.stderr is not None:
            sys.stderr.flush()  # what Python wrote before goes to the real stderr
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to capture
            return _imdecode(buffer)
        os.dup2(captured.fileno(), 2)
        try:
            image, errors = _imdecode(buffer)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode("utf-8", errors="replace").splitlines() + errors
    return image, [_OPENCV_WHERE.sub("", _OPENCV_PREFIX.sub("", line)).strip() for line in lines if line.strip()]


def _imdecode(buffer):
    try:
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR), []
    except cv2.error as exc:
        return None, [str(exc).strip().splitlines()[-1]]


def _ran_out(messages):
    """Whether the decoder's messages say that the data ran out."""
    return any(words in message.lower() for message in messages for words in _RAN_OUT)
