"""WIDER FACE evaluator: hand-worked APs, bit-level agreement with a copy of the public
evaluator (the oracle below), the real ground truth, the Cython IoU and bad inputs."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from utils.errors import TDKDError

REPO = Path(__file__).resolve().parents[1]
EVALUATOR_DIR = REPO / "widerface_evaluate"
REAL_GT = REPO / "widerface_evaluate" / "ground_truth"  # shipped (README, model zoo)
SETTINGS = ("easy", "medium", "hard")


def _import_evaluation():
    """The evaluator module, building its C extensions first where they are missing."""
    try:
        return importlib.import_module("widerface_evaluate.evaluation")
    except ImportError:
        build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=EVALUATOR_DIR,
                               capture_output=True, text=True)
        if build.returncode != 0:
            pytest.skip(f"cannot build the evaluator's Cython extensions: {build.stderr[-500:]}",
                        allow_module_level=True)
        importlib.invalidate_caches()
        return importlib.import_module("widerface_evaluate.evaluation")


evaluation = _import_evaluation()
from widerface_evaluate.box_overlaps import bbox_overlaps  # noqa: E402


# ---------------------------------------------------------------- the oracle
# The public widerface_evaluate/evaluation.py (biubug6/Pytorch_Retinaface), copied function by
# function; changes: bbox_overlaps is a NumPy transcription of the Cython loop (same float64
# operations) and evaluation() returns the APs and PR curves instead of printing them, without
# NumPy's divide warnings.

def ref_bbox_overlaps(boxes, query_boxes):
    b, q = boxes[:, None, :], query_boxes[None, :, :]
    box_area = (q[..., 2] - q[..., 0] + 1) * (q[..., 3] - q[..., 1] + 1)
    iw = np.minimum(b[..., 2], q[..., 2]) - np.maximum(b[..., 0], q[..., 0]) + 1
    ih = np.minimum(b[..., 3], q[..., 3]) - np.maximum(b[..., 1], q[..., 1]) + 1
    ua = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1) + box_area - iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0), iw * ih / ua, 0.0)


def ref_get_gt_boxes(gt_dir):
    gt_mat = loadmat(os.path.join(gt_dir, 'wider_face_val.mat'))
    hard_mat = loadmat(os.path.join(gt_dir, 'wider_hard_val.mat'))
    medium_mat = loadmat(os.path.join(gt_dir, 'wider_medium_val.mat'))
    easy_mat = loadmat(os.path.join(gt_dir, 'wider_easy_val.mat'))
    facebox_list = gt_mat['face_bbx_list']
    event_list = gt_mat['event_list']
    file_list = gt_mat['file_list']
    hard_gt_list = hard_mat['gt_list']
    medium_gt_list = medium_mat['gt_list']
    easy_gt_list = easy_mat['gt_list']
    return facebox_list, event_list, file_list, hard_gt_list, medium_gt_list, easy_gt_list


def ref_read_pred_file(filepath):
    with open(filepath, 'r') as f:
        lines = f.readlines()
        img_file = lines[0].rstrip('\n\r')
        lines = lines[2:]
    boxes = []
    for line in lines:
        line = line.rstrip('\r\n').split(' ')
        if line[0] == '':
            continue
        boxes.append([float(line[0]), float(line[1]), float(line[2]), float(line[3]), float(line[4])])
    boxes = np.array(boxes)
    return img_file.split('/')[-1], boxes


def ref_get_preds(pred_dir):
    events = os.listdir(pred_dir)
    boxes = dict()
    for event in events:
        event_dir = os.path.join(pred_dir, event)
        event_images = os.listdir(event_dir)
        current_event = dict()
        for imgtxt in event_images:
            imgname, _boxes = ref_read_pred_file(os.path.join(event_dir, imgtxt))
            current_event[imgname.rstrip('.jpg')] = _boxes
        boxes[event] = current_event
    return boxes


def ref_norm_score(pred):
    max_score = 0
    min_score = 1
    for _, k in pred.items():
        for _, v in k.items():
            if len(v) == 0:
                continue
            _min = np.min(v[:, -1])
            _max = np.max(v[:, -1])
            max_score = max(_max, max_score)
            min_score = min(_min, min_score)
    diff = max_score - min_score
    for _, k in pred.items():
        for _, v in k.items():
            if len(v) == 0:
                continue
            v[:, -1] = (v[:, -1] - min_score) / diff


def ref_image_eval(pred, gt, ignore, iou_thresh):
    _pred = pred.copy()
    _gt = gt.copy()
    pred_recall = np.zeros(_pred.shape[0])
    recall_list = np.zeros(_gt.shape[0])
    proposal_list = np.ones(_pred.shape[0])
    _pred[:, 2] = _pred[:, 2] + _pred[:, 0]
    _pred[:, 3] = _pred[:, 3] + _pred[:, 1]
    _gt[:, 2] = _gt[:, 2] + _gt[:, 0]
    _gt[:, 3] = _gt[:, 3] + _gt[:, 1]
    overlaps = ref_bbox_overlaps(_pred[:, :4], _gt)
    for h in range(_pred.shape[0]):
        gt_overlap = overlaps[h]
        max_overlap, max_idx = gt_overlap.max(), gt_overlap.argmax()
        if max_overlap >= iou_thresh:
            if ignore[max_idx] == 0:
                recall_list[max_idx] = -1
                proposal_list[h] = -1
            elif recall_list[max_idx] == 0:
                recall_list[max_idx] = 1
        r_keep_index = np.where(recall_list == 1)[0]
        pred_recall[h] = len(r_keep_index)
    return pred_recall, proposal_list


def ref_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall):
    pr_info = np.zeros((thresh_num, 2)).astype('float')
    for t in range(thresh_num):
        thresh = 1 - (t + 1) / thresh_num
        r_index = np.where(pred_info[:, 4] >= thresh)[0]
        if len(r_index) == 0:
            pr_info[t, 0] = 0
            pr_info[t, 1] = 0
        else:
            r_index = r_index[-1]
            p_index = np.where(proposal_list[:r_index + 1] == 1)[0]
            pr_info[t, 0] = len(p_index)
            pr_info[t, 1] = pred_recall[r_index]
    return pr_info


def ref_dataset_pr_info(thresh_num, pr_curve, count_face):
    _pr_curve = np.zeros((thresh_num, 2))
    for i in range(thresh_num):
        _pr_curve[i, 0] = pr_curve[i, 1] / pr_curve[i, 0]
        _pr_curve[i, 1] = pr_curve[i, 1] / count_face
    return _pr_curve


def ref_voc_ap(rec, prec):
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.concatenate(([0.], prec, [0.]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


@np.errstate(divide="ignore", invalid="ignore")
def ref_evaluation(pred, gt_path, iou_thresh=0.5):
    pred = ref_get_preds(pred)
    ref_norm_score(pred)
    facebox_list, event_list, file_list, hard_gt_list, medium_gt_list, easy_gt_list = ref_get_gt_boxes(gt_path)
    event_num = len(event_list)
    thresh_num = 1000
    settings = ['easy', 'medium', 'hard']
    setting_gts = [easy_gt_list, medium_gt_list, hard_gt_list]
    aps, curves = {}, {}
    for setting_id in range(3):
        gt_list = setting_gts[setting_id]
        count_face = 0
        pr_curve = np.zeros((thresh_num, 2)).astype('float')
        for i in range(event_num):
            event_name = str(event_list[i][0][0])
            img_list = file_list[i][0]
            pred_list = pred[event_name]
            sub_gt_list = gt_list[i][0]
            gt_bbx_list = facebox_list[i][0]
            for j in range(len(img_list)):
                pred_info = pred_list[str(img_list[j][0][0])]
                gt_boxes = gt_bbx_list[j][0].astype('float')
                keep_index = sub_gt_list[j][0]
                count_face += len(keep_index)
                if len(gt_boxes) == 0 or len(pred_info) == 0:
                    continue
                ignore = np.zeros(gt_boxes.shape[0])
                if len(keep_index) != 0:
                    ignore[keep_index - 1] = 1
                pred_recall, proposal_list = ref_image_eval(pred_info, gt_boxes, ignore, iou_thresh)
                _img_pr_info = ref_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
                pr_curve += _img_pr_info
        pr_curve = ref_dataset_pr_info(thresh_num, pr_curve, count_face)
        propose = pr_curve[:, 0]
        recall = pr_curve[:, 1]
        aps[settings[setting_id]] = ref_voc_ap(recall, propose)
        curves[settings[setting_id]] = (propose, recall)
    return aps, curves


# ---------------------------------------------------------------- fixtures: files in the official layouts

def write_ground_truth(gt_dir, events):
    """The four .mat files for ``events = [(event, [(image, boxes (m, 4), {setting: 1-based keep})])]``."""
    def cells(items):
        array = np.empty((len(items), 1), dtype=object)
        for row, item in enumerate(items):
            array[row, 0] = item
        return array

    gt_dir.mkdir(parents=True, exist_ok=True)
    event_list = cells([name for name, _ in events])
    file_list = cells([cells([image for image, _, _ in images]) for _, images in events])
    savemat(gt_dir / "wider_face_val.mat", {
        "event_list": event_list, "file_list": file_list,
        "face_bbx_list": cells([cells([np.asarray(boxes, dtype=np.int32).reshape(-1, 4)
                                       for _, boxes, _ in images]) for _, images in events])})
    for setting in SETTINGS:
        gt_list = cells([cells([np.asarray(keep[setting], dtype=np.uint16).reshape(-1, 1)
                                for _, _, keep in images]) for _, images in events])
        savemat(gt_dir / f"wider_{setting}_val.mat",
                {"event_list": event_list, "file_list": file_list, "gt_list": gt_list})


def write_prediction(path, name, boxes, score_text=lambda score: str(np.float32(score))):
    """One file in the public writer's format: name, count, ``x y w h score `` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [name, str(len(boxes))]
    lines += [f"{int(x)} {int(y)} {int(w)} {int(h)} {score_text(score)} " for x, y, w, h, score in boxes]
    path.write_text("\n".join(lines) + "\n")


TIED_SCORES = np.array([-0.5, 0.0, 0.25, 0.3, 0.5, 0.75, 1.0, 1.5])


def random_dataset(rng, root, num_events=3, images_per_event=4, score_values=TIED_SCORES):
    """Random faces and keep-lists, and predictions with score ties, unsorted files, empty
    files, repeated detections, faces given twice (IoU ties), an image without faces, jittered
    boxes near the IoU threshold and scores outside [0, 1]."""
    events, predictions = [], root / "pred"
    for e in range(num_events):
        images = []
        for i in range(images_per_event):
            num_faces = 0 if e == i == 0 else int(rng.integers(1, 12))
            faces = np.concatenate([rng.integers(0, 300, (num_faces, 2)), rng.integers(2, 60, (num_faces, 2))], axis=1)
            if num_faces and rng.random() < 0.4:
                faces = np.concatenate([faces, faces[:1]])
            keep = {"hard": np.flatnonzero(rng.random(len(faces)) < 0.8) + 1}
            keep["medium"] = keep["hard"][rng.random(len(keep["hard"])) < 0.7]
            keep["easy"] = keep["medium"][rng.random(len(keep["medium"])) < 0.6]
            name = f"{e}_img_{i}"
            images.append((name, faces, keep))
            boxes = np.zeros((0, 4), dtype=np.int64)
            if rng.random() > 0.15:
                hits = faces[rng.integers(0, max(len(faces), 1), int(rng.integers(0, 2 * len(faces) + 1)))]
                num_misses = int(rng.integers(0, 8))
                misses = np.concatenate([rng.integers(0, 300, (num_misses, 2)), rng.integers(1, 60, (num_misses, 2))],
                                        axis=1)
                boxes = np.concatenate([hits + rng.integers(-4, 5, hits.shape), misses])
                boxes = boxes[rng.permutation(len(boxes))]
            scores = rng.choice(score_values, len(boxes))
            write_prediction(predictions / f"{e}--ev" / f"{name}.txt", name,
                             np.concatenate([boxes, scores[:, None]], axis=1))
        events.append((f"{e}--ev", images))
    write_ground_truth(root / "gt", events)
    return predictions, root / "gt"


def assert_same_as_oracle(result, pred_dir, gt_dir):
    aps, curves = ref_evaluation(str(pred_dir), str(gt_dir))
    for setting in SETTINGS:
        assert result.aps[setting] == pytest.approx(aps[setting], abs=1e-9, nan_ok=True)
        np.testing.assert_array_equal(result.curves[setting].precision, curves[setting][0])
        np.testing.assert_array_equal(result.curves[setting].recall, curves[setting][1])
    return aps


# ---------------------------------------------------------------- (1) APs worked out by hand

HAND_FACES = {
    "A": [[0, 0, 10, 10], [100, 100, 10, 10], [200, 200, 10, 10]],   # F1 F2 F3
    "B": [[0, 0, 20, 20], [100, 0, 20, 20]],                         # G1 H1
}
HAND_KEEP = {
    "A": {"easy": [1], "medium": [1, 2], "hard": [1, 2, 3]},         # F2 ignored in easy, F3 only in hard
    "B": {"easy": [1, 2], "medium": [1], "hard": [1, 2]},            # H1 ignored in medium
}
HAND_PREDICTIONS = {
    "A": [[0, 0, 10, 10, 1.0],      # F1
          [100, 100, 10, 10, 0.8],  # F2
          [300, 300, 10, 10, 0.6]],  # false positive
    "B": [[300, 0, 20, 20, 0.8],    # false positive, score tied with A's F2
          [0, 0, 20, 20, 0.6],      # G1, tied with A's false positive
          [100, 0, 20, 20, 0.0],    # H1
          [1, 0, 20, 20, 0.4]],     # G1 again: counted at 0.4 and with it H1 (file order)
}
# Easy (faces F1 G1 H1, F2 ignored): (precision, recall) = (1, 1/3), (1/2, 1/3), (1/2, 2/3), (1/2, 1)
#   -> AP = 1/3 * 1 + 1/3 * 1/2 + 1/3 * 1/2 = 2/3.
# Medium (F1 F2 G1; H1 ignored): (1, 1/3), (2/3, 2/3), (3/5, 1), (1/2, 1) -> AP = (1 + 2/3 + 3/5) / 3.
# Hard (F1 F2 F3 G1 H1): (1, 1/5), (2/3, 2/5), (3/5, 3/5), (4/7, 4/5) -> AP = (1 + 2/3 + 3/5 + 4/7) / 5.
HAND_APS = {"easy": 2 / 3, "medium": (1 + 2 / 3 + 3 / 5) / 3, "hard": (1 + 2 / 3 + 3 / 5 + 4 / 7) / 5}


@pytest.fixture
def hand_set(tmp_path):
    write_ground_truth(tmp_path / "gt", [("0--Hand", [
        (f"0_Hand_{image}", np.array(HAND_FACES[image]), HAND_KEEP[image]) for image in ("A", "B")])])
    for image, boxes in HAND_PREDICTIONS.items():
        write_prediction(tmp_path / "pred" / "0--Hand" / f"0_Hand_{image}.txt", f"0_Hand_{image}", boxes)
    return tmp_path / "pred", tmp_path / "gt"


def test_hand_worked_aps(hand_set):
    result = evaluation.evaluate(*hand_set)
    for setting in SETTINGS:
        assert result.aps[setting] == pytest.approx(HAND_APS[setting], abs=1e-12)
    easy = result.curves["easy"]
    assert easy.precision.shape == easy.recall.shape == (1000,)
    assert easy.precision[0] == 1.0 and easy.recall[0] == pytest.approx(1 / 3)
    assert easy.precision[-1] == 0.5 and easy.recall[-1] == 1.0
    assert_same_as_oracle(result, *hand_set)


def test_false_positives_by_kind_on_the_hand_set(hand_set):
    """Easy ranking: A's F1 1.0 (recall), B's background 0.8, A's background 0.6, B's G1 0.6
    (recall), B's G1 again 0.4 (duplicate), B's H1 0.0 (recall); A's F2 is an ignored face."""
    sys.path.insert(0, str(REPO))
    from bench.false_positives import false_positives_at

    pred_dir, gt_dir = hand_set
    ground_truth = evaluation.load_ground_truth(gt_dir)
    outcomes = evaluation.ranked_outcomes(evaluation.read_predictions(pred_dir), ground_truth, "easy")
    scores, recalls, overlaps, sizes = outcomes
    assert scores.tolist() == [1.0, 0.8, 0.6, 0.6, 0.4, 0.0]
    assert recalls.tolist() == [True, False, False, True, False, True]
    assert overlaps[[1, 2]].tolist() == [0, 0] and overlaps[4] == pytest.approx(420 / 462)  # +1 pixels: 20 x 21 shared of 21 x 21 each
    assert sizes[[0, 3]].tolist() == [10, 20]
    assert false_positives_at(outcomes, 3, 1 / 3) == dict(score=1.0, false=0, mislocalised=0, background=0,
                                                          duplicate=0, near_size=pytest.approx(np.nan, nan_ok=True))
    at_two_thirds = false_positives_at(outcomes, 3, 2 / 3)
    assert (at_two_thirds["score"], at_two_thirds["false"], at_two_thirds["background"]) == (0.6, 2, 2)
    at_all = false_positives_at(outcomes, 3, 1.0)
    assert (at_all["score"], at_all["false"], at_all["background"], at_all["duplicate"]) == (0.0, 3, 2, 1)


@pytest.mark.parametrize("cwd, script", [(REPO, "widerface_evaluate/evaluation.py"),
                                         (EVALUATOR_DIR, "evaluation.py")])
def test_command_line_prints_the_public_lines(hand_set, tmp_path, cwd, script):
    pred_dir, gt_dir = hand_set
    curves = tmp_path / "plots" / "pr.png"
    run = subprocess.run([sys.executable, script, "-p", str(pred_dir), "-g", str(gt_dir), "--curves", str(curves)],
                         cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = evaluation.evaluate(pred_dir, gt_dir)
    assert run.stdout.splitlines() == [
        "==================== Results ====================",
        f"Easy   Val AP: {result.aps['easy']}",
        f"Medium Val AP: {result.aps['medium']}",
        f"Hard   Val AP: {result.aps['hard']}",
        "=================================================",
    ]
    assert float(run.stdout.splitlines()[1].split()[-1]) == pytest.approx(2 / 3, abs=1e-12)
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_thresholds_are_the_public_expression():
    assert evaluation.THRESHOLDS.tolist() == [1 - (t + 1) / 1000 for t in range(1000)]


# ---------------------------------------------------------------- (2) agreement with the oracle

@pytest.mark.parametrize("seed", range(8))
def test_random_sets_equal_the_oracle(tmp_path, seed):
    pred_dir, gt_dir = random_dataset(np.random.default_rng(seed), tmp_path)
    assert_same_as_oracle(evaluation.evaluate(pred_dir, gt_dir), pred_dir, gt_dir)


def test_voc_ap_equals_the_public_loop_with_nan_precisions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        recall = np.sort(rng.random(40))
        precision = rng.random(40)
        precision[rng.random(40) < 0.3] = np.nan
        expected = ref_voc_ap(recall, precision.copy())
        assert evaluation.voc_ap(recall, precision) == pytest.approx(expected, abs=0, nan_ok=True)


@pytest.mark.parametrize("seed", range(3))
def test_counts_per_image_sum_to_the_whole_set_and_weights_duplicate_images(tmp_path, seed):
    """Every image once gives ``evaluate``'s APs exactly; an image weighted 2 gives the APs of a
    set that holds it twice (the bootstrap's resample); weight 0 drops it."""
    pred_dir, gt_dir = random_dataset(np.random.default_rng(seed), tmp_path)
    ground_truth = evaluation.load_ground_truth(gt_dir)
    predictions = evaluation.read_predictions(pred_dir)
    counts = evaluation.counts_per_image(predictions, ground_truth)
    assert evaluation.ap_from_counts(counts) == evaluation.evaluate_predictions(predictions, ground_truth).aps

    weights = np.array([2, 0] + [1] * (len(ground_truth.names) - 2))
    picked = np.repeat(np.arange(len(weights)), weights)
    resampled = evaluation.GroundTruth([ground_truth.events[i] for i in picked], [ground_truth.names[i] for i in picked],
                                       [ground_truth.boxes[i] for i in picked],
                                       {s: [ground_truth.keep[s][i] for i in picked] for s in SETTINGS})
    expected = evaluation.evaluate_predictions(predictions, resampled).aps
    got = evaluation.ap_from_counts(counts, weights)
    for setting in SETTINGS:
        assert got[setting] == pytest.approx(expected[setting], abs=1e-12, nan_ok=True)


def test_bootstrap_of_a_run_against_itself_is_zero_and_against_a_better_run_positive(tmp_path):
    sys.path.insert(0, str(REPO))
    from bench import ap_bootstrap

    pred_dir, gt_dir = random_dataset(np.random.default_rng(5), tmp_path)
    ground_truth = evaluation.load_ground_truth(gt_dir)
    counts = evaluation.counts_per_image(evaluation.read_predictions(pred_dir), ground_truth)
    # the better run: the ground-truth faces themselves, scores spread over (0.5, 1]
    better = tmp_path / "perfect"
    for event, name, faces in zip(ground_truth.events, ground_truth.names, ground_truth.boxes):
        scores = 1 - 0.5 * np.random.default_rng(len(faces)).random((len(faces), 1))
        write_prediction(better / event / f"{name}.txt", name, np.concatenate([faces, scores], 1))
    perfect = evaluation.counts_per_image(evaluation.read_predictions(better), ground_truth)
    observed, resampled, pair_draws = ap_bootstrap.bootstrap_differences([counts, counts], [counts, perfect], 200, 0)
    for setting in SETTINGS:
        assert observed[setting][0] == 0 and np.all(resampled[setting][:, 0] == 0)
        assert observed[setting][1] > 0 and resampled[setting].shape == (200, 2)
    assert pair_draws.shape == (200, 2) and set(np.unique(pair_draws)) == {0, 1}
    table = ap_bootstrap.report(observed, resampled, pair_draws, ["same", "perfect"])
    assert "| same | easy | +0.00 | +0.00 to +0.00 | 0 % |" in table
    # seeds resampled too: some resamples draw the "same" pair twice, so the mean's band reaches 0
    assert "| mean (seeds and images resampled) | hard | " in table
    mean_row = next(line for line in table.splitlines() if line.startswith("| mean (seeds and images resampled) | hard"))
    assert mean_row.split("|")[4].strip().startswith("+0.00 to ")


def test_mean_of_drawn_pairs_averages_the_pairs_each_resample_draws():
    from bench.ap_bootstrap import mean_of_drawn_pairs

    resampled = np.array([[1.0, 3.0, 8.0], [2.0, 4.0, 6.0]])
    draws = np.array([[0, 0, 2], [1, 1, 1]])
    assert mean_of_drawn_pairs(resampled, draws).tolist() == [(1 + 1 + 8) / 3, 4.0]


def test_bootstrap_pairs_are_named_by_their_folders_less_the_shared_root():
    from bench.ap_bootstrap import pair_names

    q = "outputs/quickstart"
    assert pair_names([f"{q}/seed0/student_more/predictions", f"{q}/seed1/student_more/predictions"],
                      [f"{q}/seed0/tdkd/predictions", f"{q}/seed1/tdkd/predictions"]) == \
        (q, ["seed0/student_more/predictions vs seed0/tdkd/predictions",
             "seed1/student_more/predictions vs seed1/tdkd/predictions"])
    assert pair_names(["work/predictions"], ["outputs/predictions"]) == \
        ("", ["work/predictions vs outputs/predictions"])
    assert pair_names(["a/p"], ["a/p"]) == ("a", ["p vs p"])


@pytest.mark.parametrize("score_values", [np.array([2.0, 3.0, 3.0, 4.5]), np.array([-3.0, -2.5, -1.0])])
def test_scores_outside_zero_one_use_the_seeded_range(tmp_path, score_values):
    """All scores above 1 (or below 0): the public range keeps its seed 1 (or 0) as an end."""
    pred_dir, gt_dir = random_dataset(np.random.default_rng(2), tmp_path, score_values=score_values)
    result = evaluation.evaluate(pred_dir, gt_dir)
    assert_same_as_oracle(result, pred_dir, gt_dir)
    assert np.isfinite(result.aps["hard"])


def test_iou_thresholds_equal_the_oracle(tmp_path):
    pred_dir, gt_dir = random_dataset(np.random.default_rng(11), tmp_path)
    for iou in (0.3, 0.7):
        aps, _ = ref_evaluation(str(pred_dir), str(gt_dir), iou)
        result = evaluation.evaluate(pred_dir, gt_dir, iou_thresh=iou)
        assert [result.aps[s] for s in SETTINGS] == pytest.approx([aps[s] for s in SETTINGS], abs=1e-9)


def test_files_outside_the_ground_truth_still_set_the_score_range(tmp_path):
    """A top-scoring file of an unknown image stretches the range and leaves 0/0 precisions."""
    pred_dir, gt_dir = random_dataset(np.random.default_rng(3), tmp_path)
    write_prediction(pred_dir / "99--Extra" / "x.txt", "99_extra_1", [[0, 0, 5, 5, 40.0]])
    write_prediction(pred_dir / "0--ev" / "renamed.txt", "not_in_gt", [[0, 0, 5, 5, -9.0]])
    result = evaluation.evaluate(pred_dir, gt_dir)
    assert np.isnan(result.curves["hard"].precision[0])
    assert_same_as_oracle(result, pred_dir, gt_dir)


def test_all_scores_equal_gives_the_public_nan(tmp_path):
    pred_dir, gt_dir = random_dataset(np.random.default_rng(5), tmp_path)
    for path in pred_dir.rglob("*.txt"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:2] + [" ".join(line.split()[:4] + ["0.5"]) for line in lines[2:]]) + "\n")
    aps = assert_same_as_oracle(evaluation.evaluate(pred_dir, gt_dir), pred_dir, gt_dir)
    assert np.isnan(evaluation.evaluate(pred_dir, gt_dir).curves["easy"].precision).all()
    assert not np.isnan(aps["easy"])


def test_unusual_but_valid_lines_read_like_the_public_reader(tmp_path):
    texts = {
        "crlf": "a\r\n2\r\n1 2 3 4 0.5 \r\n5 6 7 8 0.25\r\n",
        "spacing": "b\n3\n\n 9 9 9 9 0.9\n1 2 3 4 0.5 extra  fields\n1 2 3 4 0.5  \n",
        "numbers": "c\n4\n-0 +1 1e2 .5 3.5e-06\n1_0 2. 0003 4 0.1\n1 2 3 4 12345678901234567890\n",
        "no final newline": "d.jpg\n1\n1 2 3 4 0.5",
        "no boxes": "some/dir/e\n0\n",
    }
    for name, text in texts.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(text.encode())
        image, boxes = evaluation.read_prediction_file(str(path))
        ref_image, ref_boxes = ref_read_pred_file(str(path))
        assert image == ref_image, name
        np.testing.assert_array_equal(boxes, ref_boxes.reshape(-1, 5), err_msg=name)
    assert boxes.shape == (0, 5)


# ---------------------------------------------------------------- (3) the real ground truth

@pytest.fixture(scope="module")
def real_gt():
    return evaluation.load_ground_truth(REAL_GT)


def test_real_ground_truth_counts(real_gt):
    assert len(real_gt.names) == 3226
    assert len(set(real_gt.events)) == 61
    assert sum(len(boxes) for boxes in real_gt.boxes) == 39708
    assert {s: sum(len(k) for k in real_gt.keep[s]) for s in SETTINGS} == {"easy": 7211, "medium": 13319,
                                                                           "hard": 31958}
    assert (real_gt.events[0], real_gt.names[0]) == ("0--Parade", "0_Parade_marchingband_1_465")


def test_real_ground_truth_subset_equals_the_oracle(real_gt, tmp_path):
    rng = np.random.default_rng(0)
    chosen = set(rng.choice(len(real_gt.names), 40, replace=False).tolist())
    for index, (event, name) in enumerate(zip(real_gt.events, real_gt.names)):
        boxes = []
        if index in chosen:
            faces = real_gt.boxes[index]
            hits = faces[rng.integers(0, len(faces), min(len(faces), 60))]
            hits = hits + rng.integers(-3, 4, hits.shape)
            misses = np.concatenate([rng.integers(0, 1000, (20, 2)), rng.integers(5, 100, (20, 2))], axis=1)
            boxes = np.concatenate([hits, misses])
            boxes = np.concatenate([boxes, rng.random((len(boxes), 1))], axis=1)[rng.permutation(len(boxes))]
        write_prediction(tmp_path / event / f"{name}.txt", name, boxes)
    result = evaluation.evaluate(tmp_path, REAL_GT)
    assert result.missing_images == []
    assert_same_as_oracle(result, tmp_path, REAL_GT)
    assert 0 < result.aps["easy"] < 1


# ---------------------------------------------------------------- (4) the Cython IoU

def test_bbox_overlaps_by_hand():
    boxes = np.array([[0, 0, 9, 9], [100, 100, 110, 110]], dtype=np.float64)
    queries = np.array([[5, 5, 14, 14], [9, 9, 18, 18], [0, 0, 9, 9]], dtype=np.float64)
    expected = [[25 / 175, 1 / 199, 1.0], [0.0, 0.0, 0.0]]
    assert bbox_overlaps(boxes, queries).tolist() == expected
    assert bbox_overlaps(boxes[:0], queries).shape == (0, 3)


def test_bbox_overlaps_equals_the_public_loop():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 50, (40, 4)).round(1)
    queries = rng.uniform(0, 50, (30, 4)).round(1)
    boxes[:, 2:] += boxes[:, :2]
    queries[:, 2:] += queries[:, :2]
    expected = np.zeros((40, 30))
    for k in range(30):
        box_area = (queries[k, 2] - queries[k, 0] + 1) * (queries[k, 3] - queries[k, 1] + 1)
        for n in range(40):
            iw = min(boxes[n, 2], queries[k, 2]) - max(boxes[n, 0], queries[k, 0]) + 1
            if iw > 0:
                ih = min(boxes[n, 3], queries[k, 3]) - max(boxes[n, 1], queries[k, 1]) + 1
                if ih > 0:
                    ua = (boxes[n, 2] - boxes[n, 0] + 1) * (boxes[n, 3] - boxes[n, 1] + 1) + box_area - iw * ih
                    expected[n, k] = iw * ih / ua
    assert (expected > 0).sum() > 100
    np.testing.assert_array_equal(bbox_overlaps(boxes, queries), expected)
    np.testing.assert_array_equal(bbox_overlaps(boxes[::2], queries[:, :4]), expected[::2])


# ---------------------------------------------------------------- (5) bad inputs

@pytest.mark.parametrize("text, line, words", [
    ("img\n2\n1 2 3 4 0.5\n1 2 three 4 0.5\n", 4, "not a number"),
    ("img\n1\n1 2 3 4\n", 3, "expected 'x y w h score'"),
    ("img\n1\r\n1 2 3\r\n", 3, "expected 'x y w h score'"),
    ("img\n1  2 3 4 0.5\n", 2, "expected the number of boxes"),
    ("img\nmany\n1 2 3 4 0.5\n", 2, "expected the number of boxes"),
    ("img\n", 2, "expected the number of boxes"),
    ("img", 2, "missing the box count"),
    ("", 1, "empty file"),
])
def test_bad_prediction_line_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "0--ev" / "img.txt"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(TDKDError) as error:
        evaluation.read_predictions(tmp_path)
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert words in str(error.value)


def test_bad_ground_truth_names_the_file(hand_set, tmp_path):
    pred_dir, gt_dir = hand_set
    (gt_dir / "wider_medium_val.mat").unlink()
    with pytest.raises(TDKDError, match=r"wider_medium_val\.mat: ground-truth file not found"):
        evaluation.evaluate(pred_dir, gt_dir)
    savemat(gt_dir / "wider_medium_val.mat", {"event_list": np.zeros(1)})
    with pytest.raises(TDKDError, match=r"wider_medium_val\.mat: missing 'gt_list'"):
        evaluation.evaluate(pred_dir, gt_dir)
    (gt_dir / "wider_face_val.mat").write_bytes(b"not a mat file")
    with pytest.raises(TDKDError, match=r"wider_face_val\.mat: cannot read"):
        evaluation.evaluate(pred_dir, gt_dir)


def test_keep_index_outside_the_faces_is_rejected(hand_set):
    pred_dir, gt_dir = hand_set
    keep = {**HAND_KEEP["A"], "easy": [4]}
    write_ground_truth(gt_dir, [("0--Hand", [("0_Hand_A", np.array(HAND_FACES["A"]), keep),
                                             ("0_Hand_B", np.array(HAND_FACES["B"]), HAND_KEEP["B"])])])
    with pytest.raises(TDKDError, match=r"wider_easy_val\.mat: image 1: face index outside 1\.\.3"):
        evaluation.evaluate(pred_dir, gt_dir)


def test_command_line_reports_bad_input_in_one_line(hand_set):
    pred_dir, gt_dir = hand_set
    bad = pred_dir / "0--Hand" / "0_Hand_A.txt"
    bad.write_text("0_Hand_A\n1\n1 2 3 x 0.5\n")
    run = subprocess.run([sys.executable, "widerface_evaluate/evaluation.py", "-p", str(pred_dir), "-g", str(gt_dir)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr == f"error: {bad}:3: not a number in '1 2 3 x 0.5'\n"
    assert run.stdout == ""


# ---------------------------------------------------------------- (6) missing prediction files

def test_missing_files_count_as_no_detections_with_one_warning(tmp_path, capsys):
    pred_dir, gt_dir = random_dataset(np.random.default_rng(7), tmp_path, num_events=3)
    for path in (pred_dir / "1--ev").iterdir():
        path.unlink()
    (pred_dir / "1--ev").rmdir()
    (pred_dir / "2--ev" / "2_img_3.txt").unlink()
    result = evaluation.evaluate(pred_dir, gt_dir)
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1
    assert warning[0].startswith("warning: 5 of 12 ground-truth images have no prediction file")
    assert "1--ev/1_img_0, 1--ev/1_img_1, 1--ev/1_img_2, 1--ev/1_img_3, 2--ev/2_img_3" in warning[0]
    assert result.missing_images == ["1--ev/1_img_0", "1--ev/1_img_1", "1--ev/1_img_2", "1--ev/1_img_3",
                                     "2--ev/2_img_3"]
    for event, name in [("1--ev", f"1_img_{i}") for i in range(4)] + [("2--ev", "2_img_3")]:
        write_prediction(pred_dir / event / f"{name}.txt", name, [])
    assert_same_as_oracle(result, pred_dir, gt_dir)


def test_evaluator_import_does_not_load_torch():
    """The evaluator needs numpy and scipy only: importing PyTorch would cost it about a second."""
    code = "import sys, widerface_evaluate.evaluation; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "False\n"
