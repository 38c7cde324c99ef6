"""Assign ground-truth faces to priors (docs/METHOD.md §4), for a whole batch at once."""
import torch

from utils.box_utils import box_iou, encode, encode_landm, point_form

MIN_BEST_OVERLAP = 0.2


def match_priors(truths, labels, landms, priors, threshold, variances):
    """Match one image's faces (``truths`` [N, 4], ``labels`` [N], ``landms`` [N, 10]) to the
    priors; ``match_batch`` with a batch of one. Returns ``loc_t`` [A, 4], ``conf_t`` [A], ``landm_t`` [A, 10]."""
    present = torch.ones(1, truths.shape[0], dtype=torch.bool, device=truths.device)
    loc, conf, landm, _ = match_batch(truths[None], labels[None], landms[None], present, priors, threshold, variances)
    return loc[0], conf[0], landm[0]


def match_batch(truths, labels, landms, present, priors, threshold, variances):
    """Match every image's faces to the priors.

    ``truths`` [B, N, 4], ``labels`` [B, N], ``landms`` [B, N, 10] hold up to N faces per image,
    padded; ``present`` [B, N] marks the real ones. Per image: each prior takes its best face;
    then every face, in order, claims its own best prior (a later face overrides an earlier one
    on a shared prior) and, when that face's best IoU is >= 0.2, the prior's overlap is forced
    to 2. A prior is positive at overlap >= threshold. An image where no face reaches IoU 0.2
    with any prior is all background.

    Returns ``loc_t`` [B, A, 4], ``conf_t`` [B, A] (the face label 1 / -1, 0 for background) and
    ``landm_t`` [B, A, 10], the targets encoded against the priors, and ``overlap`` [B, A], each
    prior's best IoU with a face of its image (0 without faces; never the forced 2).
    """
    batch, faces = present.shape
    num_priors = priors.shape[0]
    if faces == 0:
        return _background(priors, batch)
    overlaps = priors.new_full((batch, faces, num_priors), -1.0)  # padding never wins a prior
    overlaps[present] = box_iou(truths[present], point_form(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(2)  # [B, N]
    valid = best_prior_overlap >= MIN_BEST_OVERLAP
    matched_image = valid.any(1)  # [B]
    best_truth_overlap, best_truth_idx = overlaps.max(1)  # [B, A]
    overlap = best_truth_overlap.clamp(min=0)  # a copy: padding's -1 becomes 0

    image_offsets = torch.arange(batch, device=priors.device)[:, None]
    flat_best_prior = best_prior_idx + image_offsets * num_priors  # [B, N], into the flattened [B * A]
    best_truth_overlap.view(-1).index_fill_(0, flat_best_prior[valid], 2)
    # Every face claims its best prior; on a shared prior the highest (latest) index wins.
    claimant = torch.full((batch * num_priors,), -1, dtype=torch.long, device=priors.device)
    order = torch.arange(faces, device=priors.device).expand(batch, faces)
    claimant.scatter_reduce_(0, flat_best_prior[present], order[present], reduce="amax")
    claimant = claimant.view(batch, num_priors)
    claimed = claimant >= 0
    best_truth_idx[claimed] = claimant[claimed]

    conf = labels.gather(1, best_truth_idx)
    conf[(best_truth_overlap < threshold) | ~matched_image[:, None]] = 0
    matched_face = (best_truth_idx + image_offsets * faces).view(-1)  # into the flattened [B * N]
    tiled = priors.repeat(batch, 1)
    loc = encode(truths.reshape(-1, 4)[matched_face], tiled, variances).view(batch, num_priors, 4)
    landm = encode_landm(landms.reshape(-1, 10)[matched_face], tiled, variances).view(batch, num_priors, 10)
    background = ~matched_image
    loc[background] = 0
    landm[background] = 0
    return loc, conf, landm, overlap


def _background(priors, batch):
    num_priors = priors.shape[0]
    return (priors.new_zeros(batch, num_priors, 4), priors.new_zeros(batch, num_priors),
            priors.new_zeros(batch, num_priors, 10), priors.new_zeros(batch, num_priors))
