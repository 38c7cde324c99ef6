"""Task-decoupled knowledge distillation (docs/METHOD.md §5) and the ablation's other terms."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import TDKDError

# Distillation terms, each weighted by ``loss_weights[term]``; a zero weight turns it off:
# feature          task-decoupled feature imitation (docs/METHOD.md §5; tasks: ``feature_tasks``)
# feature_coupled  one adapter, positives + mined negatives, against the teacher's SSH output
# fitnet           one adapter, every location, against the teacher's SSH output
# probability      the paper's probability distillation (docs/METHOD.md §5)
# hinton           KL of temperature-softened class distributions, times T^2, mean over anchors
# pkd              PKD (Cao et al. 2022): one adapter, whole SSH maps, 1 - Pearson r per channel
# cwd              CWD (Shu et al. 2021): one adapter, whole SSH maps, KL of each channel's
#                  spatial softmax at ``cwd_temperature``, times T^2
TERMS = ("feature", "feature_coupled", "fitnet", "probability", "hinton", "pkd", "cwd")
FEATURE_TERMS = ("feature", "feature_coupled", "fitnet", "pkd", "cwd")
# Feature terms compared over whole maps, bounded by construction: no location mask, no normaliser.
WHOLE_MAP_TERMS = ("pkd", "cwd")
# PKD's standardisation: (x - mean) / sqrt(variance + PKD_EPS^2): the reference implementation's
# (x - mean) / (std + PKD_EPS) (mmrazor) but for channels with almost no variance, where its
# gradient is infinite (a constant channel, e.g. a dead teacher fitted by the adapters).
PKD_EPS = 1e-6
FEATURE_TASKS = ("cls", "reg")
DETECTION_TERMS = ("loc", "conf", "landm")
# How the adapters start: PyTorch's default (the paper), all zero, or the ridge fit of the
# starting student to the teacher on the first batches (``fit_adapters``).
ADAPTER_INITS = ("random", "zero", "lstsq")
# A feature term's unit: the paper's squared difference per selected location ("absolute"),
# the squared difference over the teacher's squared features at the same locations
# ("relative": a share of the teacher's feature energy, free of the teacher's scale), or the
# squared difference of PKD's standardised maps at those locations ("standardised": each
# channel of each image less its mean over the map, over its standard deviation there, before
# the locations are selected; free of both networks' scales).
FEATURE_SCALES = ("absolute", "relative", "standardised")
# The relative term's divisor is at least this share of the adapted student's energy at the
# same locations (``relative_divisor``): the term stays below 2 (1 + 1 / floor) = 22.
RELATIVE_FLOOR = 0.1
# A teacher's imitated features count as dead below this share of the student's RMS.
DEAD_TEACHER_RATIO = 1e-4
# Whether each level is normalised on its own and the levels summed (the paper), or the
# selected locations of all levels pooled (each location weighs the same on every level).
FEATURE_NORMALIZE = ("per_level", "all_levels")
# The probability term's divisor: the number of uncertain probabilities (the paper), or the
# number of positive anchors, as the detection's class loss, so that each uncertain anchor
# weighs the same however many there are.
PROBABILITY_NORMALIZE = ("uncertain", "positives")
# The anchors the probability term may use, from the ground truth: every anchor (the paper),
# the positive anchors, or the anchors near a face (positive, or IoU >= ``probability_min_iou``).
PROBABILITY_ANCHORS = ("all", "positives", "near_faces")
# How the probabilities are compared: squared differences of the class probabilities (the
# paper), or KL(teacher || student) of the class distributions softened by
# ``probability_temperature``, times T^2, per anchor.
PROBABILITY_FORMS = ("squared", "kl")


@dataclass(frozen=True)
class ProbabilitySettings:
    """The probability term's anchor selection, comparison and weighting beyond the paper's
    uncertainty range; the defaults are the paper's term.

    ``drop_contradicted``: leave out anchors where the teacher contradicts the ground truth
    (face probability above 0.5 on a background anchor, below 0.5 on a positive one).
    ``gap_gamma``: weight each anchor by |p_teacher - p_student|^gamma of the face probability
    (quality-focal style; 0: no weighting). ``one_sided``: no pull on an anchor whose student is
    already beyond the teacher in the ground truth's direction (so a correct, confident student
    is never pulled back toward 0.5); such anchors still count in the divisor.
    """

    anchors: str = "all"
    min_iou: float = 0.2
    drop_contradicted: bool = False
    form: str = "squared"
    temperature: float = 2.0
    gap_gamma: float = 0.0
    one_sided: bool = False


def _choice(cfg, key, choices):
    if cfg[key] not in choices:
        raise TDKDError(f"{key}={cfg[key]}: choose one of {list(choices)}")
    return cfg[key]


def build_distiller(cfg, student_channels, teacher_channels):
    """The distiller of a distillation recipe: the terms with a non-zero loss weight."""
    weights = cfg["loss_weights"]
    terms = tuple(term for term in TERMS if weights.get(term, 0))
    if not terms:
        raise TDKDError(f"distillation with every distillation weight zero ({', '.join(TERMS)}): "
                        "train with --mode student instead")
    tasks = tuple(cfg["feature_tasks"])
    if not tasks or set(tasks) - set(FEATURE_TASKS):
        raise TDKDError(f"feature_tasks={list(tasks)}: choose one or both of {list(FEATURE_TASKS)}")
    _choice(cfg, "adapter_init", ADAPTER_INITS)
    return TaskDecoupledDistiller(student_channels, teacher_channels, negpos_ratio=cfg["distill_negpos_ratio"],
                                  probability_range=cfg["probability_range"], terms=terms, feature_tasks=tasks,
                                  temperature=cfg["hinton_temperature"], train_adapters=cfg["train_adapters"],
                                  feature_scale=_choice(cfg, "feature_scale", FEATURE_SCALES),
                                  feature_normalize=_choice(cfg, "feature_normalize", FEATURE_NORMALIZE),
                                  relative_floor=cfg["relative_floor"],
                                  probability_normalize=_choice(cfg, "probability_normalize", PROBABILITY_NORMALIZE),
                                  probability=probability_settings(cfg),
                                  cwd_temperature=_positive(cfg, "cwd_temperature"))


def _positive(cfg, key):
    if not cfg[key] > 0:
        raise TDKDError(f"{key}={cfg[key]}: must be above 0")
    return cfg[key]


def probability_settings(cfg):
    """The ``ProbabilitySettings`` of the ``probability_*`` keys of ``cfg``, checked."""
    if not 0 <= cfg["probability_min_iou"] <= 1:
        raise TDKDError(f"probability_min_iou={cfg['probability_min_iou']}: must lie in [0, 1]")
    if cfg["probability_gap_gamma"] < 0:
        raise TDKDError(f"probability_gap_gamma={cfg['probability_gap_gamma']}: must be 0 or above")
    return ProbabilitySettings(anchors=_choice(cfg, "probability_anchors", PROBABILITY_ANCHORS),
                               min_iou=cfg["probability_min_iou"],
                               drop_contradicted=cfg["probability_drop_contradicted"],
                               form=_choice(cfg, "probability_form", PROBABILITY_FORMS),
                               temperature=_positive(cfg, "probability_temperature"),
                               gap_gamma=cfg["probability_gap_gamma"], one_sided=cfg["probability_one_sided"])


def describe_distiller(cfg):
    """One line of the distiller settings a run uses."""
    weights = cfg["loss_weights"]
    terms = ", ".join(f"{term} {weights[term]:g}" for term in TERMS if weights.get(term, 0))
    init = cfg["adapter_init"] + (f" ({cfg['adapter_init_batches']} batches, ridge {cfg['adapter_ridge']:g})"
                                  if cfg["adapter_init"] == "lstsq" else "")
    probability = f"{describe_probability(cfg)}; " if weights.get("probability", 0) else ""
    cwd = f"CWD temperature {cfg['cwd_temperature']:g}; " if weights.get("cwd", 0) else ""
    scale = cfg["feature_scale"] + (f" (floor {cfg['relative_floor']:g})" if cfg["feature_scale"] == "relative" else "")
    return (f"distiller {cfg['distiller']}: {terms}; features {scale}, {cfg['feature_normalize']}, "
            f"tasks {'+'.join(cfg['feature_tasks'])}, adapters {init}; {probability}{cwd}"
            f"warm-up {cfg['distill_warmup']} iterations")


def describe_probability(cfg):
    """The probability term's settings in words: the divisor, then what differs from the paper."""
    words = [f"probability / {cfg['probability_normalize']}"]
    if cfg["probability_anchors"] == "positives":
        words.append("positive anchors only")
    elif cfg["probability_anchors"] == "near_faces":
        words.append(f"anchors positive or with IoU >= {cfg['probability_min_iou']:g}")
    if cfg["probability_drop_contradicted"]:
        words.append("without anchors where the teacher contradicts the ground truth")
    if cfg["probability_form"] == "kl":
        words.append(f"KL at temperature {cfg['probability_temperature']:g}")
    if cfg["probability_gap_gamma"]:
        words.append(f"weighted by the gap^{cfg['probability_gap_gamma']:g}")
    if cfg["probability_one_sided"]:
        words.append("one-sided")
    return ", ".join(words)


def warmup_factor(iteration, warmup):
    """Factor of the distillation weights at (0-based) ``iteration``: a linear ramp
    1/warmup, 2/warmup, ... reaching 1 at iteration ``warmup - 1``; 1 without warm-up."""
    return 1.0 if warmup <= 0 else min(1.0, (iteration + 1) / warmup)


class TaskDecoupledDistiller(nn.Module):
    """Feature and probability distillation from a task-head teacher into a student.

    Holds the adaptation convs (1x1, no bias, C_student -> C_teacher, one per level) of the
    terms it computes as registered modules, so they are saved with the student and, with
    ``train_adapters``, optimised with it (frozen at their initialisation otherwise, as in
    the public code). ``terms`` (see ``TERMS``) are the losses ``forward`` returns; the
    default is the paper's ``{'feature', 'probability'}`` with the paper's normalisations.
    """

    def __init__(self, student_channels, teacher_channels, num_levels=3, negpos_ratio=3,
                 probability_range=(0.1, 0.9), terms=("feature", "probability"), feature_tasks=FEATURE_TASKS,
                 temperature=4.0, train_adapters=True, feature_scale="absolute", feature_normalize="per_level",
                 probability_normalize="uncertain", probability=ProbabilitySettings(), cwd_temperature=1.0,
                 relative_floor=RELATIVE_FLOOR):
        super().__init__()
        unknown = set(terms) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown distillation terms {sorted(unknown)}: choose from {list(TERMS)}")

        def adapters(needed):
            if not needed:
                return None
            return nn.ModuleList(
                nn.Conv2d(student_channels, teacher_channels, 1, bias=False) for _ in range(num_levels)
            ).requires_grad_(train_adapters)

        self.terms = tuple(terms)
        self.cls_adapters = adapters("feature" in terms and "cls" in feature_tasks)
        self.reg_adapters = adapters("feature" in terms and "reg" in feature_tasks)
        self.coupled_adapters = adapters("feature_coupled" in terms)
        self.fitnet_adapters = adapters("fitnet" in terms)
        self.pkd_adapters = adapters("pkd" in terms)
        self.cwd_adapters = adapters("cwd" in terms)
        self.negpos_ratio = negpos_ratio
        self.probability_range = tuple(probability_range)
        self.temperature = temperature
        self.feature_scale = feature_scale
        self.feature_normalize = feature_normalize
        self.relative_floor = relative_floor
        self.probability_normalize = probability_normalize
        self.probability = probability
        self.cwd_temperature = cwd_temperature

    def imitations(self, teacher, match, shapes):
        """``{term: [(task, adapters, teacher maps, location masks), ...]}`` of the feature
        terms: what each adapter maps the student's SSH output to, and where."""
        reg_mask = location_masks(match.positives, shapes)
        cls_mask = location_masks(match.positives | match.hard_negatives(self.negpos_ratio), shapes)
        everywhere = [torch.ones(match.positives.shape[0], rows, cols, dtype=torch.bool,
                                 device=match.positives.device) for rows, cols, _ in shapes]
        groups = {
            "feature": [("cls", self.cls_adapters, teacher.get("cls_features"), cls_mask),
                        ("reg", self.reg_adapters, teacher.get("reg_features"), reg_mask)],
            "feature_coupled": [("ssh", self.coupled_adapters, teacher.get("features"), cls_mask)],
            "fitnet": [("ssh", self.fitnet_adapters, teacher.get("features"), everywhere)],
            "pkd": [("ssh", self.pkd_adapters, teacher.get("features"), everywhere)],
            "cwd": [("ssh", self.cwd_adapters, teacher.get("features"), everywhere)],
        }
        return {term: [group for group in groups[term] if group[1] is not None]
                for term in FEATURE_TERMS if term in self.terms}

    def feature_parts(self, student, teacher, match, shapes):
        """``{(term, task, level): loss}``: each feature term split by task and level (the
        parts sum to the term; bench/grad_budget.py weighs them)."""
        parts = {}
        for term, groups in self.imitations(teacher, match, shapes).items():
            for task, adapters, targets, masks in groups:
                adapted = [adapters[level](feat) for level, feat in enumerate(student["features"])]
                if term in WHOLE_MAP_TERMS:
                    parts.update({(term, task, level): loss
                                  for level, loss in enumerate(self.whole_map_losses(term, adapted, targets))})
                    continue
                levels = level_feature_losses(adapted, targets, masks, self.feature_scale, self.feature_normalize,
                                              self.relative_floor)
                parts.update({(term, task, level): loss for level, loss in enumerate(levels)})
        return parts

    def whole_map_losses(self, term, adapted, targets):
        """One PKD or CWD loss per level."""
        if term == "pkd":
            return pearson_level_losses(adapted, targets)
        return channel_softmax_level_losses(adapted, targets, self.cwd_temperature)

    def forward(self, student, teacher, match, shapes):
        """``student`` / ``teacher``: model outputs; ``match``: the student's ``MatchResult``;
        ``shapes``: ``[(rows, cols, anchors)]`` per level (``layers.prior_box.level_shapes``)."""
        losses = {}
        for (term, _, _), loss in self.feature_parts(student, teacher, match, shapes).items():
            losses[term] = losses.get(term, 0.0) + loss
        if "probability" in self.terms:
            losses["probability"] = self.probability_term(student["conf"], teacher["conf"], match)
        if "hinton" in self.terms:
            losses["hinton"] = hinton_loss(student["conf"], teacher["conf"], self.temperature)
        return losses

    @torch.no_grad()
    def dead_teacher_features(self, student, teacher, match, shapes):
        """``[(term, task, teacher RMS, student RMS)]`` of the imitated teacher features whose
        RMS over the selected locations of all levels is below ``DEAD_TEACHER_RATIO`` x the
        student's SSH features there: nothing to imitate (an untrained teacher with folded
        BatchNorm has features of RMS 1e-5 to 1e-11)."""
        dead = []
        for term, groups in self.imitations(teacher, match, shapes).items():
            for task, _, targets, masks in groups:
                teacher_rms, student_rms = _rms(targets, masks), _rms(student["features"], masks)
                if student_rms > 0 and teacher_rms < DEAD_TEACHER_RATIO * student_rms:
                    dead.append((term, task, teacher_rms, student_rms))
        return dead

    def probability_term(self, student_logits, teacher_logits, match):
        """The probability term of class logits [B, A, 2] as ``self.probability`` says; with the
        default settings exactly the paper's ``probability_loss``."""
        student_prob, teacher_prob = F.softmax(student_logits, dim=-1), F.softmax(teacher_logits, dim=-1)
        divisor = match.positives.sum() if self.probability_normalize == "positives" else None
        keep = probability_anchor_mask(self.probability, teacher_prob, match)
        weight = probability_anchor_weight(self.probability, student_prob, teacher_prob, match.positives)
        if self.probability.form == "kl":
            return probability_kl_loss(student_logits, teacher_logits, self.probability.temperature,
                                       *self.probability_range, divisor=divisor, keep=keep, weight=weight)
        return probability_loss(student_prob, teacher_prob, *self.probability_range, divisor=divisor, keep=keep,
                                weight=weight)

    def adapter_groups(self):
        """Every adapter list of this distiller."""
        return [a for a in (self.cls_adapters, self.reg_adapters, self.coupled_adapters, self.fitnet_adapters,
                            self.pkd_adapters, self.cwd_adapters) if a is not None]

    @torch.no_grad()
    def init_adapters(self, mode, statistics=None, ridge=1e-3):
        """Set the adapters as ``mode`` (``ADAPTER_INITS``) says; ``lstsq`` solves the ridge
        problems of ``statistics`` (``adapter_statistics``, summed over batches and processes)."""
        if mode not in ADAPTER_INITS:
            raise ValueError(f"adapter_init={mode}: choose one of {list(ADAPTER_INITS)}")
        if mode == "random":
            return
        for index, adapters in enumerate(self.adapter_groups()):
            if mode == "zero":
                for conv in adapters:
                    conv.weight.zero_()
                continue
            for conv, stats in zip(adapters, statistics[index]):  # the levels the statistics saw
                channels = conv.weight.shape[1]
                solution = ridge_solve(stats[:, :channels], stats[:, channels:], ridge)
                conv.weight.copy_(solution.t().reshape(conv.weight.shape))

    @torch.no_grad()
    def adapter_statistics(self, student, teacher, match, shapes):
        """Per adapter list (``adapter_groups``) and level, ``S^T [S | T]`` in float64 over the
        locations the adapter is trained on (rows of S: student SSH vectors, of T: the
        teacher's): the sufficient statistics of its least-squares fit, summed over batches."""
        order = {id(adapters): index for index, adapters in enumerate(self.adapter_groups())}
        stats = [None] * len(order)
        for groups in self.imitations(teacher, match, shapes).values():
            for _, adapters, targets, masks in groups:
                stats[order[id(adapters)]] = [
                    _gram(feat, target, mask) for feat, target, mask in zip(student["features"], targets, masks)
                ]
        return stats


def _rms(maps, masks):
    """Root mean square per channel of [B, C, H, W] maps over the [B, H, W] masks' locations
    (0 where none is selected)."""
    energy = sum((m.float().pow(2).sum(dim=1) * mask).sum().item() for m, mask in zip(maps, masks))
    values = sum(mask.sum().item() * m.shape[1] for m, mask in zip(maps, masks))
    return (energy / values) ** 0.5 if values else 0.0


def dead_teacher_message(dead):
    """One line for ``dead_teacher_features``' findings."""
    found = "; ".join(f"{term} {task}: RMS {t:.2g} against the student's {s:.2g}" for term, task, t, s in dead)
    return (f"the teacher's imitated features are essentially zero where the student imitates them ({found}): "
            f"an untrained or broken teacher cannot be distilled; train one with --mode teacher "
            f"(docs/TRAINING.md) or give the right --teacher_weights")


def _gram(student_map, teacher_map, mask):
    s = student_map.permute(0, 2, 3, 1)[mask].double()
    t = teacher_map.permute(0, 2, 3, 1)[mask].double()
    return s.T @ torch.cat([s, t], dim=1)


def add_statistics(total, stats):
    """Elementwise sum of two ``adapter_statistics`` results (``total`` may be None)."""
    if total is None:
        return stats
    return [[a + b for a, b in zip(group_a, group_b)] for group_a, group_b in zip(total, stats)]


def ridge_solve(gram, cross, ridge):
    """``W`` minimising ||S W - T||^2 + lambda ||W||^2 from ``gram = S^T S`` and ``cross = S^T T``,
    with lambda = ``ridge`` x the mean diagonal of ``gram`` (scale-free); a zero map when no
    location was seen."""
    gram, cross = gram.double(), cross.double()
    scale = gram.diagonal().mean()
    if scale <= 0:
        return torch.zeros_like(cross).float()
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * scale * eye, cross).float()


def dominance_warning(losses, weights, ratio=10.0):
    """One warning line when the weighted distillation terms of ``losses`` (floats) exceed
    the weighted detection losses more than ``ratio`` times, naming the largest term's
    weight; None otherwise."""
    detection = sum(weights[name] * losses[name] for name in DETECTION_TERMS if name in losses)
    distillation = {name: weights[name] * losses[name] for name in TERMS if name in losses}
    if not distillation or sum(distillation.values()) <= ratio * detection:
        return None
    largest = max(distillation, key=distillation.get)
    terms = ", ".join(f"{name} {value:.3g}" for name, value in distillation.items())
    return (f"warning: the weighted distillation terms ({terms}) are {sum(distillation.values()) / max(detection, 1e-12):.0f}x "
            f"the detection losses ({detection:.3g}) at the first step: look at loss_weights.{largest} "
            f"(--set loss_weights.{largest}=...)")


def location_masks(anchor_mask, shapes):
    """Split an anchor mask [B, A] by level and reduce it to locations [B, rows, cols]:
    a location is selected when any of its anchors is."""
    counts = [rows * cols * anchors for rows, cols, anchors in shapes]
    if sum(counts) != anchor_mask.shape[1]:
        raise ValueError(f"levels hold {sum(counts)} priors but the mask has {anchor_mask.shape[1]}")
    chunks = torch.split(anchor_mask, counts, dim=1)
    return [
        chunk.reshape(chunk.shape[0], rows, cols, anchors).any(dim=-1)
        for chunk, (rows, cols, anchors) in zip(chunks, shapes)
    ]


def level_feature_losses(student_maps, teacher_maps, masks, scale="absolute", normalize="per_level",
                         floor=RELATIVE_FLOOR):
    """One feature term per level (lists of [B, C, H, W] maps and [B, H, W] masks); the term
    is their sum, computed in float32 whatever the maps' precision.

    ``absolute``: squared difference over max(1, 2 x selected locations); ``relative``: over
    the teacher's squared features there, or ``floor`` x the (adapted) student's where that is
    larger (``relative_divisor``); ``standardised``: of the standardised maps
    (``standardised_channels``) over max(1, 2 x channels x selected locations), so a level
    whose standardised maps agree costs 0 and opposite ones 2 per location and channel on
    average. ``per_level``: each level divided by its own divisor (the paper with
    ``absolute``); ``all_levels``: each level divided by the divisor of all levels.
    """
    errors, teacher_energy, student_energy = [], [], []
    for student, teacher, mask in zip(student_maps, teacher_maps, masks):
        student, teacher, mask = student.float(), teacher.float(), mask.float()
        if scale == "standardised":
            student = standardised_channels(student).view_as(student)
            teacher = standardised_channels(teacher).view_as(teacher)
        errors.append(((student - teacher).pow(2).sum(dim=1) * mask).sum())
        if scale == "relative":
            teacher_energy.append((teacher.pow(2).sum(dim=1) * mask).sum().detach())
            student_energy.append((student.pow(2).sum(dim=1) * mask).sum().detach())
    if scale == "relative":
        divisors = [relative_divisor(t, s, floor) for t, s in zip(teacher_energy, student_energy)]
        pooled = relative_divisor(sum(teacher_energy), sum(student_energy), floor)
    else:
        channels = [teacher.shape[1] if scale == "standardised" else 1 for teacher in teacher_maps]
        divisors = [torch.clamp(2 * c * mask.sum(), min=1) for c, mask in zip(channels, masks)]
        pooled = torch.clamp(2 * sum(c * mask.sum() for c, mask in zip(channels, masks)), min=1)
    if normalize == "all_levels":
        divisors = [pooled] * len(errors)
    return [error / divisor for error, divisor in zip(errors, divisors)]


def relative_divisor(teacher_energy, student_energy, floor=RELATIVE_FLOOR):
    """The relative term's divisor: the teacher's energy at the selected locations, at least
    ``floor`` x the student's there (and above 0: nothing selected gives 0, not 0 / 0).

    Since ||s - t||^2 <= 2 ||s||^2 + 2 ||t||^2, the term is then at most 2 (1 + 1 / floor)
    whatever the teacher's scale: a teacher whose features vanish where the student imitates
    them cannot blow it up. A trained teacher's energy exceeds ``floor`` x the fitted student's,
    so the floor leaves the plain ratio unchanged there (docs/METHOD.md §9).
    """
    return torch.clamp(torch.maximum(teacher_energy, floor * student_energy), min=torch.finfo(torch.float32).tiny)


def feature_loss(student_maps, teacher_maps, masks, scale="absolute", normalize="per_level", floor=RELATIVE_FLOOR):
    """The feature term over the levels (``level_feature_losses`` summed)."""
    return sum(level_feature_losses(student_maps, teacher_maps, masks, scale, normalize, floor))


def uncertain_elements(teacher_prob, low, high):
    """The elements where the teacher's probability lies strictly between ``low`` and ``high``."""
    return (teacher_prob > low) & (teacher_prob < high)


def probability_loss(student_prob, teacher_prob, low=0.1, high=0.9, divisor=None, keep=None, weight=None):
    """Sum of squared differences of class probabilities over the elements where the
    teacher's probability lies strictly between ``low`` and ``high``, over their count (the
    paper) or over ``divisor`` (e.g. the number of positive anchors); at least 1.

    ``keep`` [B, A]: only these anchors are selected (and counted); ``weight`` [B, A]: each
    anchor's squared differences times its weight (the count is unchanged)."""
    mask = uncertain_elements(teacher_prob, low, high)
    if keep is not None:
        mask = mask & keep[..., None]
    diff = (student_prob - teacher_prob).pow(2)
    if weight is not None:
        diff = diff * weight[..., None]
    return (diff * mask).sum() / torch.clamp(mask.sum() if divisor is None else divisor, min=1)


def probability_kl_loss(student_logits, teacher_logits, temperature, low=0.1, high=0.9, divisor=None, keep=None,
                        weight=None):
    """KL(teacher || student) of the class distributions softened by ``temperature``, times
    temperature squared, summed over the anchors with an uncertain probability (as
    ``probability_loss`` selects them, at temperature 1) and ``keep``, each times ``weight``;
    over the number of those anchors or over ``divisor``; at least 1."""
    mask = uncertain_elements(F.softmax(teacher_logits, dim=-1), low, high).any(dim=-1)
    if keep is not None:
        mask = mask & keep
    kl = softened_kl(student_logits, teacher_logits, temperature) * temperature ** 2
    if weight is not None:
        kl = kl * weight
    return (kl * mask).sum() / torch.clamp(mask.sum() if divisor is None else divisor, min=1)


def probability_anchor_mask(settings, teacher_prob, match):
    """[B, A] the anchors the probability term may use by ``settings`` (``ProbabilitySettings``)
    and the ground truth of ``match``; None: every anchor."""
    keep = None
    if settings.anchors == "positives":
        keep = match.positives
    elif settings.anchors == "near_faces":
        if match.overlaps is None:
            raise ValueError("probability_anchors=near_faces needs the match's overlaps")
        keep = match.positives | (match.overlaps >= settings.min_iou)
    if settings.drop_contradicted:
        face = teacher_prob[..., 1]
        agrees = torch.where(match.positives, face >= 0.5, face <= 0.5)
        keep = agrees if keep is None else keep & agrees
    return keep


def probability_anchor_weight(settings, student_prob, teacher_prob, positives):
    """[B, A] each anchor's weight in the probability term by ``settings`` (no gradient): the
    teacher-student gap of the face probability to the power ``gap_gamma``, and 0 where
    ``one_sided`` and the student is beyond the teacher toward the ground truth; None: all 1."""
    student_face, teacher_face = student_prob[..., 1].detach(), teacher_prob[..., 1].detach()
    weight = None
    if settings.gap_gamma:
        weight = (teacher_face - student_face).abs().pow(settings.gap_gamma)
    if settings.one_sided:
        toward_truth = torch.where(positives, teacher_face > student_face, teacher_face < student_face)
        weight = toward_truth.to(student_face.dtype) if weight is None else weight * toward_truth
    return weight


def softened_kl(student_logits, teacher_logits, temperature):
    """KL(teacher || student) of the distributions over the last dimension softened by
    ``temperature``, one value per leading index."""
    teacher_log = F.log_softmax(teacher_logits / temperature, dim=-1)
    student_log = F.log_softmax(student_logits / temperature, dim=-1)
    return (teacher_log.exp() * (teacher_log - student_log)).sum(dim=-1)


def hinton_loss(student_logits, teacher_logits, temperature):
    """Hinton et al.'s KD: KL(teacher || student) of the class distributions softened by
    ``temperature``, times temperature squared, averaged over anchors."""
    return softened_kl(student_logits, teacher_logits, temperature).mean() * temperature ** 2


def standardised_channels(maps):
    """[B, C, H, W] -> [B, C, H x W]: each channel of each image less its mean over the
    locations, over its standard deviation there (population, ``PKD_EPS`` squared added to the
    variance); at least float32, where ``PKD_EPS`` squared is not 0."""
    flat = maps.flatten(2).to(torch.promote_types(maps.dtype, torch.float32))
    centred = flat - flat.mean(dim=-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + PKD_EPS ** 2)


def pearson_level_losses(student_maps, teacher_maps):
    """PKD, one loss per level: the mean squared difference of the standardised maps over 2,
    i.e. 1 - Pearson r of each channel of each image over its locations, averaged over
    channels and images; between 0 and 2 whatever the features' scale."""
    return [(standardised_channels(student) - standardised_channels(teacher)).pow(2).mean() / 2
            for student, teacher in zip(student_maps, teacher_maps)]


def channel_softmax_level_losses(student_maps, teacher_maps, temperature):
    """CWD, one loss per level: KL(teacher || student) of each channel's softmax over the
    locations at ``temperature``, times temperature squared, averaged over channels and images."""
    return [softened_kl(student.flatten(2), teacher.flatten(2), temperature).mean() * temperature ** 2
            for student, teacher in zip(student_maps, teacher_maps)]
