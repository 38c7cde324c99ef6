"""The batched matching gives, image by image, exactly the public per-image matching."""
import torch

from layers import MultiBoxLoss
from layers.matching import match_batch, match_priors
from layers.multibox_loss import pad_targets
from utils.box_utils import box_iou, encode, encode_landm, point_form

VAR = (0.1, 0.2)


def _public_match(truths, labels, landms, priors, threshold):
    """The public RetinaFace ``match``, loop and all (the test's oracle)."""
    if len(truths) == 0:
        return priors.new_zeros(len(priors), 4), priors.new_zeros(len(priors)), priors.new_zeros(len(priors), 10)
    overlaps = box_iou(truths, point_form(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    valid_gt_idx = best_prior_overlap[:, 0] >= 0.2
    best_prior_idx_filter = best_prior_idx[valid_gt_idx, :]
    if best_prior_idx_filter.shape[0] <= 0:
        return priors.new_zeros(len(priors), 4), priors.new_zeros(len(priors)), priors.new_zeros(len(priors), 10)
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx.squeeze_(0)
    best_truth_overlap.squeeze_(0)
    best_prior_idx.squeeze_(1)
    best_prior_idx_filter.squeeze_(1)
    best_truth_overlap.index_fill_(0, best_prior_idx_filter, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    return encode(truths[best_truth_idx], priors, VAR), conf, encode_landm(landms[best_truth_idx], priors, VAR)


def _priors(generator, count):
    centres = torch.rand(count, 2, generator=generator)
    sizes = torch.rand(count, 2, generator=generator) * 0.4 + 0.05
    return torch.cat((centres, sizes), 1)


def _faces(generator, priors, count):
    """Faces near priors, some exact duplicates (ties), some tiny (no IoU of 0.2 anywhere)."""
    picked = point_form(priors[torch.randint(len(priors), (count,), generator=generator)])
    boxes = picked + torch.randn(count, 4, generator=generator) * 0.03
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 0.01)
    if count > 2:
        boxes[1] = boxes[0]  # identical faces: a tie for every prior, and a shared best prior
        boxes[2, 2:] = boxes[2, :2] + 1e-3  # a tiny face: claims a prior without being forced to 2
    labels = torch.where(torch.rand(count, generator=generator) < 0.3, -1.0, 1.0)
    landms = torch.rand(count, 10, generator=generator)
    return torch.cat((boxes, landms, labels[:, None]), 1)


def _batch(seed):
    generator = torch.Generator().manual_seed(seed)
    priors = _priors(generator, 37)  # not a multiple of any vector width
    counts = [0, 1, 5, 12, 3, 0]
    targets = [_faces(generator, priors, n) for n in counts]
    tiny = targets[4].clone()
    tiny[:, 2:4] = tiny[:, 0:2] + 1e-4  # every face tiny: the whole image is background
    return priors, targets + [tiny]


def test_batched_matching_equals_the_public_per_image_matching_bit_for_bit():
    for seed in range(20):
        priors, targets = _batch(seed)
        padded, present = pad_targets(targets)
        batched = match_batch(padded[..., :4], padded[..., -1], padded[..., 4:14], present, priors, 0.35, VAR)
        for i, t in enumerate(targets):
            expected = _public_match(t[:, :4], t[:, -1], t[:, 4:14], priors, 0.35)
            single = match_priors(t[:, :4], t[:, -1], t[:, 4:14], priors, 0.35, VAR)
            for got, one, want in zip(batched, single, expected):
                assert torch.equal(got[i], want), (seed, i)
                assert torch.equal(one, want), (seed, i)


def test_test_inputs_exercise_ties_empty_and_background_images():
    priors, targets = _batch(0)
    padded, present = pad_targets(targets)
    loc, conf, _, _ = match_batch(padded[..., :4], padded[..., -1], padded[..., 4:14], present, priors, 0.35, VAR)
    assert present.sum(1).tolist() == [0, 1, 5, 12, 3, 0, 3]
    assert not conf[0].any() and not conf[5].any() and not conf[6].any() and not loc[6].any()
    assert conf[1:5].ne(0).any(1).all()
    overlaps = box_iou(targets[3][:, :4], point_form(priors))
    assert overlaps.max(1).indices[0] == overlaps.max(1).indices[1]  # faces 0 and 1 share their best prior


def test_loss_of_a_batch_is_the_loss_of_its_matches():
    priors, targets = _batch(3)
    generator = torch.Generator().manual_seed(1)
    outputs = dict(loc=torch.randn(len(targets), len(priors), 4, generator=generator),
                   conf=torch.randn(len(targets), len(priors), 2, generator=generator),
                   landms=torch.randn(len(targets), len(priors), 10, generator=generator))
    loss = MultiBoxLoss(0.35, 7, VAR)
    loc_t, conf_t, landm_t = loss.build_targets(priors, targets)
    expected = [_public_match(t[:, :4], t[:, -1], t[:, 4:14], priors, 0.35) for t in targets]
    assert torch.equal(loc_t, torch.stack([e[0] for e in expected]))
    assert torch.equal(conf_t, torch.stack([e[1] for e in expected]).long())
    assert torch.equal(landm_t, torch.stack([e[2] for e in expected]))
    losses, match = loss(outputs, priors, targets)
    assert match.num_positives.flatten().tolist() == (conf_t != 0).sum(1).tolist()
    assert all(torch.isfinite(v) for v in losses.values())
