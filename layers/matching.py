"""Assign ground-truth faces to priors (SPEC section 4)."""
import torch

from utils.box_utils import box_iou, encode, encode_landm, point_form

MIN_BEST_OVERLAP = 0.2


def match_priors(truths, labels, landms, priors, threshold, variances):
    """Match one image's faces to the priors.

    Each prior takes its best face; then every face, in order, claims its own best prior
    (a later face overrides an earlier one on a shared prior) and, when that face's best IoU
    is >= 0.2, the prior's overlap is forced to 2. A prior is positive at overlap >= threshold.
    An image where no face reaches IoU 0.2 with any prior is all background.

    Returns ``loc_t`` [A, 4], ``conf_t`` [A] (the face label 1 / -1, 0 for background) and
    ``landm_t`` [A, 10], the targets encoded against the priors.
    """
    num_priors = priors.shape[0]
    if truths.shape[0] == 0:
        return _background(priors)
    overlaps = box_iou(truths, point_form(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1)
    valid = best_prior_overlap >= MIN_BEST_OVERLAP
    if not valid.any():
        return _background(priors)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    best_truth_overlap.index_fill_(0, best_prior_idx[valid], 2)
    # Every face claims its best prior; on a shared prior the highest (latest) index wins.
    claimant = torch.full((num_priors,), -1, dtype=torch.long, device=priors.device)
    order = torch.arange(truths.shape[0], device=priors.device)
    claimant.scatter_reduce_(0, best_prior_idx, order, reduce="amax")
    claimed = claimant >= 0
    best_truth_idx[claimed] = claimant[claimed]

    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    loc = encode(truths[best_truth_idx], priors, variances)
    landm = encode_landm(landms[best_truth_idx], priors, variances)
    return loc, conf, landm


def _background(priors):
    num_priors = priors.shape[0]
    return priors.new_zeros(num_priors, 4), priors.new_zeros(num_priors), priors.new_zeros(num_priors, 10)
