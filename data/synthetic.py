"""A seeded synthetic face set in exactly the WIDER FACE layout, for CPU-sized studies.

``generate_synthetic_widerface(root)`` writes::

    root/train/images/<event>/<name>.jpg    root/train/label.txt   (RetinaFace format, docs/METHOD.md §6)
    root/val/images/<event>/<name>.jpg      root/val/label.txt     (same format)
    root/val/wider_val.txt                  one '/<event>/<name>.jpg' per line: the leading
                                            slash of the public file, whose lines test scripts
                                            append to the images folder
    root/val/ground_truth/wider_{face,easy,medium,hard}_val.mat   (the official structure)
    root/synthetic.json                     how the set was made

so training, testing and the unchanged official evaluator run on it as on WIDER FACE.
Each image comes from its own generator seeded by (seed, split, index): the files are the
same byte for byte on every run, whatever the number of worker processes.

label.txt lines: ``x y w h`` then 5 x (x, y, visibility) landmarks (left eye, right eye,
nose, left and right mouth corner; visibility 0.0 when visible, 1.0 when covered) and a
blur amount in [0, 1]; faces without landmarks (about 20%, mostly small) carry 16 times
-1.0 there, as the public file. Difficulty follows WIDER: hard >= medium >= easy by size,
blur and occlusion; faces in no setting stay in ``face_bbx_list`` and are ignored.
"""
import argparse
import concurrent.futures
import dataclasses
import io
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.io

import config
from data.synthetic_faces import (SKIN_TONES, draw_body, draw_distractor, draw_face, draw_occluder,
                                  random_face)
from utils.cli import HelpFormatter
from utils.errors import TDKDError, exit_on_error, located

SPLITS = ("train", "val")
NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 500, 200, (320, 640)  # generate_synthetic_widerface's defaults
DEFAULT_OUT = "data/synthetic"  # the command line's; git-ignored
JPEG_QUALITY = 90
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: data.synthetic".ljust(116)

# Settings (box height in pixels): hard keeps every valid face from 8 px, medium from 25 px
# unless both heavily blurred and heavily occluded, easy from 50 px, at most moderately so.
HARD_MIN_HEIGHT, MEDIUM_MIN_HEIGHT, EASY_MIN_HEIGHT = 8, 25, 50
# Blur sigma of a face relative to its height, per level (none, normal, heavy); the labels
# are read back from the final relative blur (global defocus included) at 0.02 and 0.06.
BLUR_RANGES = ((0.0, 0.0), (0.025, 0.05), (0.07, 0.13))
# Visible fraction of a face's ellipse: below MIN_VISIBLE it is not in the image at all (no
# label); below VALID_VISIBLE it is labelled but invalid (ignored by every setting).
MIN_VISIBLE, VALID_VISIBLE = 0.15, 0.3


@dataclasses.dataclass(frozen=True)
class Scene:
    """How the faces of one event look: count, size range, layout, blur, occlusion, light."""

    word: str  # file-name word, like WIDER's 'marchingband'
    count: tuple  # faces per image, inclusive
    height: tuple  # face box heights in pixels, drawn log-uniformly
    rows: bool  # rows with perspective (small faces at the top) rather than scattered
    blur: tuple  # probabilities of no, normal and heavy blur
    occlusion: float  # chance that an object covers part of a face
    dark: float  # chance of a dark scene under coloured light


EVENTS = (
    ("Crowd", Scene("crowd", (20, 60), (6, 28), True, (0.5, 0.35, 0.15), 0.15, 0.1)),
    ("Street", Scene("walking", (2, 10), (10, 120), False, (0.5, 0.35, 0.15), 0.25, 0.1)),
    ("Parade", Scene("marchingband", (8, 30), (8, 60), True, (0.5, 0.35, 0.15), 0.2, 0.1)),
    ("Meeting", Scene("meeting", (2, 8), (24, 160), False, (0.6, 0.3, 0.1), 0.25, 0.05)),
    ("Portrait", Scene("portrait", (1, 3), (70, 300), False, (0.6, 0.3, 0.1), 0.2, 0.05)),
    ("Sports", Scene("players", (1, 10), (12, 200), False, (0.3, 0.4, 0.3), 0.3, 0.1)),
    ("Concert", Scene("audience", (10, 40), (7, 45), True, (0.4, 0.4, 0.2), 0.2, 0.7)),
    ("Classroom", Scene("students", (6, 20), (14, 70), True, (0.6, 0.3, 0.1), 0.25, 0.05)),
    ("Party", Scene("dancing", (3, 15), (12, 110), False, (0.4, 0.4, 0.2), 0.3, 0.5)),
    ("Group", Scene("photo", (5, 16), (20, 100), True, (0.6, 0.3, 0.1), 0.15, 0.05)),
    ("Market", Scene("shoppers", (3, 14), (10, 90), False, (0.5, 0.35, 0.15), 0.3, 0.1)),
    ("Selfie", Scene("selfie", (1, 4), (60, 280), False, (0.6, 0.3, 0.1), 0.2, 0.1)),
)


@dataclasses.dataclass
class ImageRecord:
    """Everything written about one image: where it is and its faces' labels."""

    event: str  # folder, e.g. '0--Crowd'
    stem: str  # file name without '.jpg'
    boxes: np.ndarray  # (n, 4) int x y w h
    landmarks: np.ndarray  # (n, 5, 2) pixels
    landmark_visibility: np.ndarray  # (n, 5) 0 visible, 1 covered
    has_landmarks: np.ndarray  # (n,) bool
    blur_amount: np.ndarray  # (n,) in [0, 1]
    attributes: dict  # WIDER label lists: name -> (n,) uint8

    def settings(self):
        """Boolean keep-masks (n,) of the easy, medium and hard settings."""
        return difficulty_settings(self.boxes[:, 3], self.attributes["blur"],
                                   self.attributes["occlusion"], self.attributes["invalid"])


def difficulty_settings(heights, blur, occlusion, invalid):
    """Keep-masks (easy, medium, hard), nested by construction as in WIDER FACE."""
    hard = (invalid == 0) & (heights >= HARD_MIN_HEIGHT)
    medium = hard & (heights >= MEDIUM_MIN_HEIGHT) & ((blur < 2) | (occlusion < 2))
    easy = medium & (heights >= EASY_MIN_HEIGHT) & (blur < 2) & (occlusion < 2)
    return easy, medium, hard


def render_image(seed, split, index, long_side_range):
    """Draw image ``index`` of ``split``: returns (BGR uint8 image, ImageRecord)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    event_id = int(rng.integers(len(EVENTS)))
    name, scene = EVENTS[event_id]
    long_side = int(rng.integers(long_side_range[0], long_side_range[1] + 1))
    short_side = int(round(long_side * rng.uniform(0.6, 1.0)))
    height, width = (long_side, short_side) if rng.random() < 0.25 else (short_side, long_side)

    image = draw_background(rng, height, width)
    owner = np.zeros((height, width), np.uint16)
    placed = layout(rng, scene, height, width)
    drawn, areas = [], []
    back_to_front = sorted(placed, key=lambda item: (item[0].cy if scene.rows else 0, item[0].b))
    for face, is_distractor in back_to_front:  # so nearer people and things hide farther ones
        if is_distractor:
            draw_distractor(image, owner, rng, face.cx, face.cy, 2 * face.b)
            continue
        if rng.random() < 0.8:
            draw_body(image, owner, face, rng.uniform(0, 255, 3))
        drawn.append(face)
        areas.append(draw_face(image, owner, face, len(drawn)))
    for face in drawn[:-1]:  # the front face gets no occluder, so every image keeps a face
        if rng.random() < scene.occlusion:
            draw_occluder(image, owner, rng, face)
    image, dark, global_sigma = finish(rng, image, scene)
    record = annotate(rng, drawn, owner, np.array(areas), global_sigma, dark)
    return image, ImageRecord(f"{event_id}--{name}", f"{event_id}_{name}_{scene.word}_{index}", **record)


def draw_background(rng, height, width):
    """Clutter: a smooth two-colour gradient with blotches, then lines, boxes, circles and
    polygons (some skin-coloured) and a few striped or checkered patches."""
    small = (max(2, height // 32), max(2, width // 32))
    ramp = np.linspace(0, 1, small[0])[:, None, None] * rng.uniform(-1, 1) \
        + np.linspace(0, 1, small[1])[None, :, None] * rng.uniform(-1, 1)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    low, high = rng.uniform(0, 255, (2, 3))
    base = low + ramp * (high - low) + rng.normal(0, 25, small + (3,))
    image = cv2.resize(np.clip(base, 0, 255).astype(np.uint8), (width, height),
                       interpolation=cv2.INTER_LINEAR)
    size = max(height, width)
    for _ in range(int(rng.integers(8, 40))):
        colour = _clutter_colour(rng)
        kind = rng.integers(4)
        p, q = rng.integers(0, width, 2), rng.integers(0, height, 2)
        if kind == 0:
            cv2.rectangle(image, (int(p[0]), int(q[0])), (int(p[1]), int(q[1])), colour,
                          -1 if rng.random() < 0.6 else int(rng.integers(1, 4)))
        elif kind == 1:
            cv2.line(image, (int(p[0]), int(q[0])), (int(p[1]), int(q[1])), colour,
                     int(rng.integers(1, 6)), cv2.LINE_AA)
        elif kind == 2:
            cv2.circle(image, (int(p[0]), int(q[0])), int(rng.integers(3, size // 8)), colour,
                       -1 if rng.random() < 0.5 else 2, cv2.LINE_AA)
        else:
            corners = np.stack([rng.integers(0, width, 5), rng.integers(0, height, 5)], 1)
            cv2.fillPoly(image, [corners.astype(np.int32)], colour, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        _draw_pattern(rng, image)
    grain = rng.uniform(0, 30) * rng.standard_normal((height // 4 + 1, width // 4 + 1), dtype=np.float32)
    grain = cv2.resize(grain, (width, height)).astype(np.int16)  # texture a few pixels wide
    return cv2.add(image, cv2.merge([grain, grain, grain]), dtype=cv2.CV_8U)


def _clutter_colour(rng):
    if rng.random() < 0.2:  # skin-coloured surfaces (wood, sand, walls) blunt the colour cue
        tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 12, 3)
        return tuple(float(v) for v in np.clip(tone, 0, 255))
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def _draw_pattern(rng, image):
    """Stripes or a checkerboard over a random rectangle."""
    height, width = image.shape[:2]
    x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
    x1, y1 = int(rng.integers(x0 + 8, width + 1)), int(rng.integers(y0 + 8, height + 1))
    roi = image[y0:y1, x0:x1]
    step, colour = int(rng.integers(3, 16)), _clutter_colour(rng)
    if rng.random() < 0.5:
        slant = int(rng.integers(-1, 2)) * (y1 - y0)
        for x in range(-abs(slant), x1 - x0 + abs(slant), step):
            cv2.line(roi, (x, 0), (x + slant, y1 - y0), colour, max(1, step // 3), cv2.LINE_AA)
    else:
        rows, columns = np.arange(y1 - y0) // step, np.arange(x1 - x0) // step
        roi[(rows[:, None] + columns[None, :]) % 2 == 1] = colour


def layout(rng, scene, height, width):
    """(face, is_distractor) pairs placed so no two overlap much; sizes follow the scene.

    A distractor slot is a face-sized place; ``draw_distractor`` decides what goes there.
    """
    low, high = scene.height
    high = min(high, 0.7 * min(height, width))
    low = min(low, high)
    num_faces = int(rng.integers(scene.count[0], scene.count[1] + 1))
    num_distractors = int(rng.integers(2, 4 + num_faces // 2))
    placed, boxes = [], np.zeros((0, 4))
    for slot in range(num_faces + num_distractors):
        for _ in range(20):
            depth = rng.uniform(0.05, 0.95)
            size = low * (high / low) ** np.clip(depth + rng.normal(0, 0.1) if scene.rows
                                                 else rng.random(), 0, 1)
            face = random_face(rng, 0.0, 0.0, size)
            x, y, w, h = face.box()
            if w + 4 > width or h + 4 > height:
                continue
            face.cx = rng.uniform(-x + 2, width - x - w - 2)
            face.cy = np.clip(depth * height, -y + 2, height - y - h - 2) if scene.rows \
                else rng.uniform(-y + 2, height - y - h - 2)
            box = np.array(face.box(), np.float64)
            corners = np.concatenate([box[:2], box[:2] + box[2:]])
            if _max_cover(corners, boxes) < 0.3:
                level = np.searchsorted(np.cumsum(scene.blur), rng.random())
                face.blur_sigma = size * rng.uniform(*BLUR_RANGES[min(level, 2)])
                placed.append((face, slot >= num_faces))
                boxes = np.vstack([boxes, corners])
                break
    return placed


def _max_cover(box, others):
    """Largest fraction of the smaller box covered, between ``box`` and each of ``others``."""
    if len(others) == 0:
        return 0.0
    width = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    height = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.maximum(width, 0) * np.maximum(height, 0)
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return float(np.max(inter / np.minimum((box[2] - box[0]) * (box[3] - box[1]), areas)))


def finish(rng, image, scene):
    """Scene lighting (gradient, darkness, tint), sensor noise and camera defocus."""
    height, width = image.shape[:2]
    dark = rng.random() < scene.dark
    tint = rng.uniform(0.3, 0.55) * rng.uniform(0.6, 1.0, 3) if dark else rng.uniform(0.9, 1.1, 3)
    corners = 1 + rng.uniform(-0.35, 0.35, (2, 2, 1))  # a lighting gradient between corners
    gain = cv2.resize((corners * tint).astype(np.float32), (width, height))
    image = cv2.multiply(image, gain, dtype=cv2.CV_8U)
    if rng.random() < 0.15:  # haze: everything fades towards one light grey
        haze = rng.uniform(0.15, 0.45)
        veil = np.full_like(image, int(rng.integers(150, 256)))
        image = cv2.addWeighted(image, 1 - haze, veil, haze, 0)
    cv2.setRNGSeed(int(rng.integers(2 ** 31)))
    noise = cv2.randn(np.empty((height, width), np.int16), 0, rng.uniform(1, 12 if dark else 6))
    image = cv2.add(image, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
    sigma = rng.uniform(0.4, 1.4) if rng.random() < 0.35 else 0.0
    if sigma:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image, dark, sigma


def annotate(rng, faces, owner, areas, global_sigma, dark):
    """ImageRecord fields of the drawn faces: boxes, landmarks, WIDER attributes.

    Occlusion is the share of a face's ellipse that ``owner`` no longer gives it; faces
    hidden almost entirely are dropped.
    """
    visible = np.bincount(owner.ravel(), minlength=len(faces) + 1)[1:] / np.maximum(areas, 1)
    shown = np.flatnonzero(visible >= MIN_VISIBLE)
    faces, visible, n = [faces[i] for i in shown], visible[shown], len(shown)
    boxes = np.array([f.box() for f in faces], np.int64).reshape(n, 4)
    landmarks = np.array([f.landmarks() for f in faces]).reshape(n, 5, 2)
    occluded = np.clip(1 - visible, 0, 1)
    points = np.round(landmarks).astype(int)
    points[..., 0] = np.clip(points[..., 0], 0, owner.shape[1] - 1)
    points[..., 1] = np.clip(points[..., 1], 0, owner.shape[0] - 1)
    covered = owner[points[..., 1], points[..., 0]] != shown[:, None] + 1
    covered |= np.array([f.hidden_landmarks() for f in faces], bool).reshape(n, 5)
    heights = boxes[:, 3].astype(np.float64)
    relative_blur = np.hypot([f.blur_sigma for f in faces], global_sigma) / heights
    no_landmark_chance = np.interp(heights, [8, 16, 32, 64], [0.5, 0.25, 0.06, 0.02])
    attributes = dict(
        blur=np.digitize(relative_blur, [0.02, 0.06]),
        expression=np.array([f.mouth_open for f in faces]),
        illumination=np.full(n, dark),
        invalid=visible < VALID_VISIBLE,
        occlusion=np.digitize(occluded, [0.05, 0.35]),
        pose=np.array([abs(f.yaw) > 0.6 or abs(f.roll) > 0.45 for f in faces]),
    )
    return dict(
        boxes=boxes, landmarks=landmarks,
        landmark_visibility=covered.astype(np.float64),
        has_landmarks=rng.random(n) >= no_landmark_chance,
        blur_amount=np.clip(relative_blur / 0.15, 0, 1),
        attributes={k: np.asarray(v, np.uint8).reshape(n) for k, v in attributes.items()},
    )


def label_lines(record):
    """The record's block of label.txt: '# event/name.jpg', then one 20-number line per face."""
    lines = [f"# {record.event}/{record.stem}.jpg"]
    for i, (x, y, w, h) in enumerate(record.boxes):
        if record.has_landmarks[i]:
            points = [f"{px:.3f} {py:.3f} {v:.1f}" for (px, py), v
                      in zip(record.landmarks[i], record.landmark_visibility[i])]
            tail = " ".join(points) + f" {record.blur_amount[i]:.2f}"
        else:
            tail = " ".join(["-1.0"] * 16)
        lines.append(f"{x} {y} {w} {h} {tail}")
    return lines


def _cells(items):
    """A MATLAB cell column (n, 1) of the given items."""
    cells = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cells[i, 0] = item
    return cells


def keep_list(mask):
    """1-based indices (k, 1) of the kept faces, uint8 or uint16 as in the official files."""
    indices = np.flatnonzero(mask) + 1
    dtype = np.uint8 if indices.size == 0 or indices.max() <= 255 else np.uint16
    return indices.astype(dtype).reshape(-1, 1)


def write_ground_truth(folder, records):
    """The four official .mat files for ``records`` (already in event order)."""
    events = list(dict.fromkeys(r.event for r in records))
    by_event = [[r for r in records if r.event == event] for event in events]

    def per_image(value):
        return _cells([_cells([value(r) for r in group]) for group in by_event])

    common = dict(
        event_list=_cells(events),
        file_list=per_image(lambda r: r.stem),
        face_bbx_list=per_image(lambda r: r.boxes.astype(np.int32)),
    )
    for name in ("blur", "expression", "illumination", "invalid", "occlusion", "pose"):
        common[f"{name}_label_list"] = per_image(lambda r, n=name: r.attributes[n].reshape(-1, 1))
    folder.mkdir(parents=True, exist_ok=True)
    _save_mat(folder / "wider_face_val.mat", common)
    for level, setting in enumerate(("easy", "medium", "hard")):
        gt_list = per_image(lambda r: keep_list(r.settings()[level]))
        _save_mat(folder / f"wider_{setting}_val.mat", dict(common, gt_list=gt_list))


def _save_mat(path, contents):
    """savemat with a fixed header text (scipy writes the time there), so reruns match bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, contents, do_compression=True, oned_as="column")
    data = buffer.getvalue()
    path.write_bytes(MAT_HEADER + data[len(MAT_HEADER):])


def _render_and_save(task):
    seed, split, index, long_side_range, images_dir = task
    image, record = render_image(seed, split, index, long_side_range)
    path = Path(images_dir) / record.event / f"{record.stem}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    path.write_bytes(data.tobytes())
    return record


# Fewer images are drawn in this process: each spawned worker imports its script again, which
# costs seconds, more than drawing a few dozen images.
POOL_MIN_IMAGES = 64


def _render_split(root, split, count, seed, long_side_range, workers):
    tasks = [(seed, split, i, long_side_range, str(root / split / "images")) for i in range(count)]
    if workers > 1 and count >= POOL_MIN_IMAGES:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            records = list(pool.map(_render_and_save, tasks, chunksize=max(1, count // (4 * workers))))
    else:
        records = [_render_and_save(task) for task in tasks]
    event_order = sorted({r.event for r in records})
    return sorted(records, key=lambda r: event_order.index(r.event))  # stable: index order inside


def _prepare(root):
    """Make ``root`` ready: an earlier synthetic set there is replaced, anything else refused."""
    if root.exists() and not root.is_dir():
        raise TDKDError(located(root, "is a file; the data set needs a folder"))
    manifest = root / "synthetic.json"
    existing = [root / split for split in SPLITS if (root / split).exists()]
    if existing and not manifest.exists():
        raise TDKDError(located(root, "already holds train/ or val/ that this generator did not "
                                      "write; choose an empty folder"))
    for folder in existing:
        shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)


def generate_synthetic_widerface(root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0,
                                 image_size=IMAGE_SIZE, workers=None):
    """Write a synthetic WIDER FACE set under ``root``; returns its paths, counts and seconds.

    ``image_size`` is the (min, max) range of the long image side in pixels; ``workers``
    processes draw the images (default: every core), with the same result for any number.
    """
    start = time.perf_counter()
    root = Path(root)
    if num_train < 0 or num_val < 0 or not 32 <= image_size[0] <= image_size[1] or (workers or 1) < 1:
        raise TDKDError(located(root, f"bad request: num_train={num_train}, num_val={num_val}, "
                                      f"image_size={tuple(image_size)}, workers={workers} (need counts "
                                      ">= 0, 32 <= min <= max and workers >= 1)"))
    _prepare(root)
    workers = workers or os.cpu_count() or 1
    counts = {}
    for split, count in zip(SPLITS, (num_train, num_val)):
        records = _render_split(root, split, count, seed, tuple(image_size), workers)
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = [line for record in records for line in label_lines(record)]
        (root / split / "label.txt").write_text("".join(line + "\n" for line in lines))
        counts[split] = _counts(records)
    val = root / "val"
    (val / "wider_val.txt").write_text("".join(f"/{r.event}/{r.stem}.jpg\n" for r in records))
    write_ground_truth(val / "ground_truth", records)
    manifest = dict(generator="data.synthetic", seed=seed, image_size=list(image_size), **counts)
    (root / "synthetic.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dict(
        root=str(root), train_label=str(root / "train" / "label.txt"),
        train_images=str(root / "train" / "images"), val_label=str(val / "label.txt"),
        val_images=str(val / "images"), val_list=str(val / "wider_val.txt"),
        ground_truth=str(val / "ground_truth"), **counts, seconds=time.perf_counter() - start)


def _counts(records):
    """Images, faces and faces per setting of one split."""
    per_setting = np.zeros(3, np.int64)
    for record in records:
        per_setting += np.stack(record.settings()).sum(axis=1)
    return dict(images=len(records), faces=int(sum(len(r.boxes) for r in records)),
                **{name: int(n) for name, n in zip(("easy", "medium", "hard"), per_setting)})


def parse_args(argv=None):
    quick = config.QUICKSTART["data"]
    parser = argparse.ArgumentParser(
        description="Write a seeded synthetic face set in the WIDER FACE layout. The defaults make the\n"
                    "quickstart's set; the shipped synthetic student was trained on its train split.\n\n"
                    "    python -m data.synthetic     # -> data/synthetic/{train,val}/, synthetic.json\n"
                    "    python train.py --training_dataset data/synthetic/train/label.txt ...\n"
                    "    python test_widerface.py -m WEIGHTS --dataset_folder data/synthetic/val/images/ \\\n"
                    "        --origin_size --save_folder outputs/synthetic_predictions/\n"
                    "    python widerface_evaluate/evaluation.py -p outputs/synthetic_predictions/ \\\n"
                    "        -g data/synthetic/val/ground_truth/",
        formatter_class=HelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help="root folder (gets train/, val/ and synthetic.json)")
    parser.add_argument("--num_train", type=int, default=quick["num_train"], help="training images")
    parser.add_argument("--num_val", type=int, default=quick["num_val"], help="validation images")
    parser.add_argument("--seed", type=int, default=quick["seed"], help="the same seed gives the same files")
    parser.add_argument("--image_size", type=int, nargs=2, default=quick["image_size"], metavar=("MIN", "MAX"),
                        help="range of the long image side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="processes; default: every core")
    return parser.parse_args(argv)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    summary = generate_synthetic_widerface(args.out, args.num_train, args.num_val, args.seed,
                                           tuple(args.image_size), args.workers)
    train, val = summary["train"], summary["val"]
    print(f"synthetic WIDER FACE in {summary['root']}: "
          f"train {train['images']} images {train['faces']} faces, "
          f"val {val['images']} images {val['faces']} faces "
          f"(easy {val['easy']}, medium {val['medium']}, "
          f"hard {val['hard']}, ignored {val['faces'] - val['hard']}), {summary['seconds']:.1f} s")


if __name__ == "__main__":
    main()
