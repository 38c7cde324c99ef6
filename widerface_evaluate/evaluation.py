"""WIDER FACE validation AP (easy, medium, hard): the public evaluator's numbers, ~70x faster.

    python widerface_evaluate/evaluation.py -p PRED_DIR -g GT_DIR [--curves pr.png]

PRED_DIR holds one folder per event with one text file per image, as ``test_widerface.py``
writes them: line 1 the image name, line 2 the number of boxes, then ``x y w h score`` lines.
GT_DIR holds the official ``wider_{face,easy,medium,hard}_val.mat``.

The numbers are those of the public ``evaluation.py`` (biubug6/Pytorch_Retinaface, from
wondervictor/WiderFace-Evaluation) to the last bit, quirks included: scores are min-max
normalised over every file read, with the range seeded at [0, 1]; files are keyed by the name
on their first line; each prediction is matched in file order to its best face at IoU >= 0.5
(pixel ``+1`` convention, first face on ties); a match to a face outside the setting marks
the prediction ignored; an image counts its predictions up to the last one (in file order)
that scores at least the threshold; 1000 thresholds; AP by the VOC all-points rule.

Where this tool differs, the public one stops with an exception:

* a ground-truth image without a prediction file, or a whole event folder missing, counts as
  an image with no detections, and one warning line on stderr gives the count and the first
  few names (the public tool raises ``KeyError``);
* a bad prediction line or ground-truth file raises ``TDKDError`` naming the file and line;
* entries of PRED_DIR that are not folders, and folders inside an event folder, are skipped.

The per-prediction loop of the public code is vectorised: a prediction's best face does not
depend on the others, a face is recalled by the first prediction that matches it, and the
last prediction an image counts at a threshold is found by one ``searchsorted`` for all
1000 thresholds. The IoU is the public Cython ``bbox_overlaps``, once per image for all
three settings; the box lines are read by a small C reader (``parse_boxes.pyx``). A full val
set of 1M boxes takes under a second to read and evaluate, the public tool about a minute.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import TDKDError, exit_on_error, located  # noqa: E402

HERE = Path(__file__).resolve().parent

try:
    from widerface_evaluate.box_overlaps import bbox_overlaps  # noqa: E402
    from widerface_evaluate.parse_boxes import parse_box_lines  # noqa: E402
except ImportError as error:
    raise ImportError("the evaluator's C extensions are not built; run "
                      "`cd widerface_evaluate && python setup.py build_ext --inplace`") from error

SETTINGS = ("easy", "medium", "hard")
THRESH_NUM = 1000
# The public thresholds 1 - (t + 1) / 1000, t = 0..999, in the same float arithmetic.
THRESHOLDS = 1 - np.arange(1, THRESH_NUM + 1) / THRESH_NUM
MISSING_SHOWN = 5


@dataclass
class GroundTruth:
    """The val images in the official order: event, name, faces (m, 4) ``x y w h`` and, per
    setting, the 0-based indices of the faces that count."""
    events: list
    names: list
    boxes: list
    keep: dict


@dataclass
class PRCurve:
    """Precision and recall at the 1000 thresholds (precision is nan where nothing is proposed)."""
    precision: np.ndarray
    recall: np.ndarray


@dataclass
class EvaluationResult:
    """AP per setting (float), PR curve per setting, and the ground-truth images (``event/name``)
    that had no prediction file."""
    aps: dict
    curves: dict
    missing_images: list


# ---------------------------------------------------------------- predictions

def read_predictions(pred_dir):
    """``{event folder: {image name: (n, 5) float64 x y w h score}}`` of every file in ``pred_dir``.

    Files are keyed like the public tool, by ``image_name.rstrip('.jpg')`` (which strips any
    trailing '.', 'j', 'p', 'g'); a later file with the same key replaces an earlier one.
    """
    if not os.path.isdir(pred_dir):
        raise TDKDError(located(pred_dir, "prediction folder not found; test_widerface.py writes it: python "
                                          f"test_widerface.py --save_folder {pred_dir} on WIDER FACE val or the "
                                          "synthetic set (docs/EVALUATION.md)"))
    predictions = {}
    for event in os.scandir(pred_dir):
        if not event.is_dir():
            continue
        images = predictions[event.name] = {}
        for entry in os.scandir(event.path):
            if entry.is_file():
                image_name, boxes = read_prediction_file(entry.path)
                images[image_name.rstrip(".jpg")] = boxes
    return predictions


def read_prediction_file(path):
    """(image name: line 1 after its last ``/``, (n, 5) float64 boxes) of one prediction file.

    The C reader takes the usual files; anything it does not vouch for, or that holds a value
    that is not finite, is read line by line the public way, which also locates bad lines.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise TDKDError(located(path, f"cannot read prediction file ({error.strerror})")) from None
    parts = raw.split(b"\n", 2)
    if len(parts) >= 2 and all(part.isascii() and b"\r" not in part for part in parts[:2]):
        boxes = parse_box_lines(parts[2] if len(parts) == 3 else b"")
        if boxes is not None and np.isfinite(boxes).all():
            _check_count(path, parts[1].decode())
            return parts[0].decode().split("/")[-1], boxes
    return _read_prediction_file_exactly(path)


def _read_prediction_file_exactly(path):
    """The public reader (universal newlines, ``split(' ')``, ``float``) with located errors."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError as error:
        raise TDKDError(located(path, f"not UTF-8 text (byte {error.start})")) from None
    if not lines:
        raise TDKDError(located(path, "empty file; expected the image name on line 1", 1))
    if len(lines) == 1:
        raise TDKDError(located(path, "missing the box count", 2))
    _check_count(path, lines[1])
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.rstrip("\r\n").split(" ")
        if fields[0] == "":
            continue
        if len(fields) < 5:
            raise TDKDError(located(path, f"expected 'x y w h score', got {line.strip()!r}", number))
        try:
            rows.append([float(field) for field in fields[:5]])
        except ValueError:
            raise TDKDError(located(path, f"not a number in {line.strip()!r}", number)) from None
        if not np.isfinite(rows[-1]).all():
            raise TDKDError(located(path, f"not a finite number (inf or nan) in {line.strip()!r}", number))
    return lines[0].rstrip("\n\r").split("/")[-1], np.array(rows, dtype=np.float64).reshape(-1, 5)


def _check_count(path, line):
    try:
        int(line)
    except ValueError:
        raise TDKDError(located(path, f"expected the number of boxes, got {line.strip()!r}", 2)) from None


# ---------------------------------------------------------------- ground truth

def load_ground_truth(gt_dir):
    """The official val ground truth: ``wider_face_val.mat`` and the three keep-lists."""
    path = os.path.join(gt_dir, "wider_face_val.mat")
    faces = _load_mat(path, ("face_bbx_list", "event_list", "file_list"))
    events, names, boxes = [], [], []
    try:
        for i in range(len(faces["event_list"])):
            event = str(faces["event_list"][i][0][0])
            image_list, box_list = faces["file_list"][i][0], faces["face_bbx_list"][i][0]
            for j in range(len(image_list)):
                events.append(event)
                names.append(str(image_list[j][0][0]))
                boxes.append(_face_boxes(box_list[j][0]))
    except (IndexError, TypeError, ValueError) as error:
        raise TDKDError(located(path, f"not the official WIDER FACE layout ({error})")) from None
    keep = {setting: _keep_lists(os.path.join(gt_dir, f"wider_{setting}_val.mat"), boxes)
            for setting in SETTINGS}
    return GroundTruth(events, names, boxes, keep)


def _load_mat(path, keys):
    if not os.path.isfile(path):
        raise TDKDError(located(path, "ground-truth file not found"))
    try:
        content = loadmat(path)
    except Exception as error:  # scipy raises several types for a corrupt file
        raise TDKDError(located(path, f"cannot read as a MATLAB file ({error})")) from None
    for key in keys:
        if key not in content:
            raise TDKDError(located(path, f"missing {key!r}; not an official WIDER FACE ground-truth file"))
    return content


def _face_boxes(array):
    boxes = np.asarray(array, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"face boxes of shape {boxes.shape}, expected (n, 4)")
    return boxes


def _keep_lists(path, boxes):
    """Per image, the 0-based indices of the faces a setting counts (1-based in the file)."""
    gt_list = _load_mat(path, ("gt_list",))["gt_list"]
    keep = []
    try:
        for i in range(len(gt_list)):
            for indices in gt_list[i][0][:, 0]:
                keep.append(np.asarray(indices, dtype=np.int64).reshape(-1) - 1)
    except (IndexError, TypeError, ValueError) as error:
        raise TDKDError(located(path, f"not the official WIDER FACE layout ({error})")) from None
    if len(keep) != len(boxes):
        raise TDKDError(located(path, f"{len(keep)} images, wider_face_val.mat has {len(boxes)}"))
    for image, (indices, faces) in enumerate(zip(keep, boxes)):
        if len(indices) and not (0 <= indices.min() and indices.max() < len(faces)):
            raise TDKDError(located(path, f"image {image + 1}: face index outside 1..{len(faces)}"))
    return keep


# ---------------------------------------------------------------- evaluation

def evaluate(pred_dir, gt_dir, iou_thresh=0.5):
    """Easy / medium / hard AP and PR curves of the predictions in ``pred_dir``."""
    ground_truth = load_ground_truth(gt_dir)
    return evaluate_predictions(read_predictions(pred_dir), ground_truth, iou_thresh)


def evaluate_predictions(predictions, ground_truth, iou_thresh=0.5):
    """``evaluate`` on predictions already read (``read_predictions``) and ground truth loaded."""
    matches = _match_predictions(predictions, ground_truth, iou_thresh)
    aps, curves = {}, {}
    for setting in SETTINGS:
        proposing, recalling = _counted_predictions(matches, setting)
        proposed = _count_per_threshold(matches.entry[proposing])
        recalled = _count_per_threshold(matches.entry[recalling])
        curves[setting] = _curve(recalled, proposed, sum(len(indices) for indices in ground_truth.keep[setting]))
        aps[setting] = float(voc_ap(curves[setting].recall, curves[setting].precision))
    return EvaluationResult(aps, curves, matches.missing)


def counts_per_image(predictions, ground_truth, iou_thresh=0.5):
    """Each val image's part of the PR curves: per setting, ``(proposed, recalled, faces)`` with
    ``proposed`` and ``recalled`` (images, thresholds) counts at each threshold and ``faces``
    (images,) the faces the setting counts. Summed over the images (``ap_from_counts``, any
    weights) they give ``evaluate_predictions``'s curves: what a bootstrap over images resamples.
    Scores keep the normalisation of the whole set."""
    matches = _match_predictions(predictions, ground_truth, iou_thresh)
    image_of = np.repeat(np.array([index for index, _ in matches.evaluated], dtype=np.int64), matches.pred_counts)
    counts = {}
    for setting in SETTINGS:
        per_image = []
        for chosen in _counted_predictions(matches, setting):
            table = np.zeros((len(ground_truth.names), THRESH_NUM + 1), dtype=np.int64)
            np.add.at(table, (image_of[chosen], matches.entry[chosen]), 1)
            per_image.append(np.cumsum(table[:, :THRESH_NUM], axis=1))
        faces = np.array([len(indices) for indices in ground_truth.keep[setting]], dtype=np.int64)
        counts[setting] = (per_image[0], per_image[1], faces)
    return counts


def ap_from_counts(counts, weights=None):
    """AP per setting of ``counts_per_image``'s counts with each image taken ``weights[i]``
    times (default once each: the AP of the whole set)."""
    aps = {}
    for setting, (proposed, recalled, faces) in counts.items():
        w = np.ones(len(faces), dtype=np.int64) if weights is None else np.asarray(weights)
        curve = _curve(w @ recalled, w @ proposed, w @ faces)
        aps[setting] = float(voc_ap(curve.recall, curve.precision))
    return aps


def ranked_outcomes(predictions, ground_truth, setting, iou_thresh=0.5):
    """Every prediction that counts as a proposal in ``setting``, best score first, as
    ``(score, recall, best_iou, face_size)`` arrays: its normalised score, whether it recalls a
    counted face (else it is a false positive), its IoU with its image's best face and that
    face's size (square root of its area in pixels). As in ``evaluate``, images without faces
    are left out. Read along the ranking, these are the PR curve's steps."""
    matches = _match_predictions(predictions, ground_truth, iou_thresh)
    proposing, recalling = _counted_predictions(matches, setting)
    order = np.argsort(-matches.scores[proposing], kind="stable")
    faces = matches.faces[matches.best_face[proposing]]
    return (matches.scores[proposing][order], recalling[proposing][order], matches.best_overlap[proposing][order],
            np.sqrt(faces[:, 2] * faces[:, 3])[order])


@dataclass
class _Matches:
    evaluated: list
    missing: list
    pred_counts: np.ndarray
    entry: np.ndarray
    matched: np.ndarray
    first_match: np.ndarray
    best_face: np.ndarray
    face_starts: np.ndarray
    face_total: int
    keep: dict
    scores: np.ndarray
    best_overlap: np.ndarray
    faces: np.ndarray


def _match_predictions(predictions, ground_truth, iou_thresh):
    """Every prediction's best face, whether it matches, whether it is that face's first match,
    and the first threshold from which its image counts it."""
    min_score, score_span = _score_range(predictions)
    evaluated, missing = _pair_images(predictions, ground_truth)
    preds = _stack([boxes for _, boxes in evaluated], np.zeros((0, 5)))
    faces = _stack([ground_truth.boxes[index] for index, _ in evaluated], np.zeros((0, 4)))
    pred_counts = np.array([len(boxes) for _, boxes in evaluated], dtype=np.int64)
    face_counts = np.array([len(ground_truth.boxes[index]) for index, _ in evaluated], dtype=np.int64)

    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (preds[:, 4] - min_score) / score_span
    best_face, best_overlap = _best_faces(preds[:, :4], faces, pred_counts, face_counts)
    matched = best_overlap >= iou_thresh
    return _Matches(evaluated, missing, pred_counts, _first_threshold_counted(scores, pred_counts), matched,
                    _first_matches(best_face, matched), best_face, np.cumsum(face_counts) - face_counts,
                    len(faces), ground_truth.keep, scores, best_overlap, faces)


def _counted_predictions(matches, setting):
    """Masks of the predictions that count as proposals and as recalls in ``setting``."""
    keep = matches.keep[setting]
    kept_faces = np.zeros(matches.face_total, dtype=bool)
    kept_faces[_stack([keep[index] + start for (index, _), start in zip(matches.evaluated, matches.face_starts)],
                      np.zeros(0, dtype=np.int64))] = True
    kept = kept_faces[matches.best_face]
    # a match to an ignored face is no proposal; a counted face's first match recalls it
    return ~(matches.matched & ~kept), matches.first_match & kept


def _curve(recalled, proposed, faces):
    with np.errstate(divide="ignore", invalid="ignore"):
        return PRCurve(precision=recalled / proposed, recall=recalled / faces)


def _pair_images(predictions, ground_truth):
    """(index, boxes) of the images with both faces and predictions, and the images without a
    prediction file, which count as no detections (one warning line)."""
    evaluated, missing = [], []
    for index, (event, name) in enumerate(zip(ground_truth.events, ground_truth.names)):
        boxes = predictions.get(event, {}).get(name)
        if boxes is None:
            missing.append(f"{event}/{name}")
        elif len(boxes) and len(ground_truth.boxes[index]):
            evaluated.append((index, boxes))
    if missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
        print(f"warning: {len(missing)} of {len(ground_truth.names)} ground-truth images have no prediction "
              f"file and count as having no detections: {shown}", file=sys.stderr)
    return evaluated, missing


def _stack(parts, empty):
    return np.concatenate(parts) if parts else empty


def _score_range(predictions):
    """The public ``norm_score`` range: min and max over every file read, seeded with 1 and 0."""
    max_score, min_score = 0, 1
    for images in predictions.values():
        for boxes in images.values():
            if len(boxes) == 0:
                continue
            max_score = max(np.max(boxes[:, -1]), max_score)
            min_score = min(np.min(boxes[:, -1]), min_score)
    return min_score, max_score - min_score


def _best_faces(pred_boxes, faces, pred_counts, face_counts):
    """Per prediction, the index (into ``faces``) of its image's best face, and that IoU."""
    pred_corners, face_corners = _xywh_to_corners(pred_boxes), _xywh_to_corners(faces)
    best_face = np.empty(len(pred_boxes), dtype=np.int64)
    best_overlap = np.empty(len(pred_boxes))
    pred_start = face_start = 0
    for pred_count, face_count in zip(pred_counts.tolist(), face_counts.tolist()):
        rows = slice(pred_start, pred_start + pred_count)
        overlaps = bbox_overlaps(pred_corners[rows], face_corners[face_start:face_start + face_count])
        nearest = overlaps.argmax(axis=1)
        best_face[rows] = nearest + face_start
        best_overlap[rows] = overlaps[np.arange(pred_count), nearest]
        pred_start += pred_count
        face_start += face_count
    return best_face, best_overlap


def _xywh_to_corners(boxes):
    """``x y w h`` -> ``x1 y1 x2 y2`` with ``x2 = x + w``, the public (off-by-one) conversion."""
    corners = np.array(boxes, dtype=np.float64)
    corners[:, 2:] += corners[:, :2]
    return corners


def _first_matches(best_face, matched):
    """True for the first matched prediction of each face: the one that recalls it."""
    matched_rows = np.flatnonzero(matched)
    _, first = np.unique(best_face[matched_rows], return_index=True)
    first_match = np.zeros(len(best_face), dtype=bool)
    first_match[matched_rows[first]] = True
    return first_match


def _first_threshold_counted(scores, counts):
    """Per prediction, the first threshold index from which its image counts it.

    At threshold ``t`` an image counts its predictions up to the last one (in file order)
    scoring >= ``THRESHOLDS[t]``, i.e. those whose suffix maximum score reaches it. As the
    thresholds fall with ``t``, that is the suffix minimum, within the image, of the number
    of thresholds above each score; an image offset keeps the running minimum inside images.
    """
    above = np.searchsorted(-THRESHOLDS, -scores, side="left")
    offset = (THRESH_NUM + 1) * np.repeat(np.arange(len(counts)), counts)
    return np.minimum.accumulate((above + offset)[::-1])[::-1] - offset


def _count_per_threshold(entry):
    """How many of the given predictions are counted at each of the 1000 thresholds."""
    return np.cumsum(np.bincount(entry, minlength=THRESH_NUM + 1)[:THRESH_NUM])


def voc_ap(rec, prec):
    """VOC all-points AP, the public code's arithmetic (so nan precisions behave the same): its
    right-to-left loop ``mpre[i - 1] = max(mpre[i - 1], mpre[i])`` is a reversed running maximum,
    and ``np.maximum`` propagates nan either way round."""
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.maximum.accumulate(np.concatenate(([0.], prec, [0.]))[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


# ---------------------------------------------------------------- reporting

def format_results(result):
    """The public tool's five result lines."""
    return "\n".join([
        "==================== Results ====================",
        "Easy   Val AP: {}".format(result.aps["easy"]),
        "Medium Val AP: {}".format(result.aps["medium"]),
        "Hard   Val AP: {}".format(result.aps["hard"]),
        "=================================================",
    ])


def save_pr_curves(result, path_png):
    """Plot the three precision-recall curves, labelled with their AP, to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for setting in SETTINGS:
        curve = result.curves[setting]
        axes.plot(curve.recall, curve.precision, label=f"{setting} (AP {result.aps[setting]:.4f})")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="WIDER FACE val")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    Path(path_png).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path_png, dpi=120)


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description="WIDER FACE val AP (easy / medium / hard).",
                                     formatter_class=HelpFormatter)
    parser.add_argument("-p", "--pred", default=str(HERE / "widerface_txt"),
                        help="folder of prediction text files (test_widerface.py --save_folder)")
    parser.add_argument("-g", "--gt", default=str(HERE / "ground_truth"),
                        help="folder of the official .mat files (shipped with the repository)")
    parser.add_argument("--curves", metavar="PATH.png", help="also save the precision-recall curves")
    args = parser.parse_args(argv)
    result = evaluate(args.pred, args.gt)
    print(format_results(result))
    if args.curves:
        save_pr_curves(result, args.curves)


if __name__ == "__main__":
    main()
