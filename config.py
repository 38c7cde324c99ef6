"""Every hyper-parameter of the project, per network and per training mode.

``NETWORKS`` describes the detectors (backbone, channels, activation, anchors);
``TRAINING`` the recipes of the paper and the public code. ``build_config`` merges
them for one run and applies command-line overrides, so scripts never hard-code values.
"""
import copy
import os

REPO = os.path.dirname(os.path.abspath(__file__))


def repo_path(relative):
    """A path of a file shipped with the repository, independent of the working folder."""
    return os.path.join(REPO, relative)


ANCHORS = dict(
    min_sizes=[[16, 32], [64, 128], [256, 512]],
    steps=[8, 16, 32],
    variance=[0.1, 0.2],
    clip=False,
)

# RetinaFace-MobileNet0.25: the student.
_MOBILE025 = dict(
    backbone="mobilenet",
    width_mult=0.25,
    return_layers={"stage1": 1, "stage2": 2, "stage3": 3},
    in_channels=[64, 128, 256],
    out_channel=64,
    backbone_weights="weights/mobilenetV1X0.25_pretrain.tar",
    **ANCHORS,
)

NETWORKS = {
    "mobile0.25": _MOBILE025,
    # RetinaFace-MobileNet0.75: the public TDKD code's teacher.
    "mobile0.75": dict(_MOBILE025, width_mult=0.75, in_channels=[192, 384, 768], backbone_weights=None),
    # The quickstart's teacher: the student's ImageNet-pretrained MobileNet0.25 with a twice
    # wider FPN / SSH (2.5x the parameters). Larger backbones do not train from scratch in
    # minutes on a CPU, and no other pretrained backbone is available offline.
    "mobile0.25-wide": dict(_MOBILE025, out_channel=128),
    # RetinaFace-ResNet50: the project's default teacher.
    "resnet50": dict(
        backbone="resnet50",
        return_layers={"layer2": 1, "layer3": 2, "layer4": 3},
        in_channels=[512, 1024, 2048],
        out_channel=256,
        backbone_weights="weights/resnet50-0676ba61.pth",
        **ANCHORS,
    ),
}

# Activation of backbone, FPN and SSH. The TDKD checkpoints use plain ReLU; the older
# RetinaFace checkpoints use LeakyReLU(0.1) (backbone, and FPN/SSH when C <= 64).
ACTIVATIONS = ("relu", "leaky")
DEFAULT_ACTIVATION = "relu"

# Images larger than this many pixels are refused before decoding (utils/images.py): a
# 20000 x 20000 PNG of 1.2 MB decodes to 1.2 GB and costs several GB in training or detection.
# WIDER FACE's images are 1024 pixels wide. Override: --max_pixels
# (detect.py, test_widerface.py), max_pixels= (the Python API), --set max_pixels=N (train.py).
MAX_IMAGE_PIXELS = 50_000_000
# The largest train.py --img_dim (the recipes use 640 and 840).
MAX_IMG_DIM = 4096

COMMON = dict(
    momentum=0.9,
    weight_decay=5e-4,
    gamma=0.1,
    rgb_mean=[104, 117, 123],
    overlap_threshold=0.35,
    negpos_ratio=7,
    # data loader processes: 4 as the public code, at most one per core this process may use
    # (more only wait for a core and make torch warn)
    num_workers=min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
    max_pixels=MAX_IMAGE_PIXELS,
    seed=0,
    save_interval=10,
    # train.py --val_dataset: evaluate every val_interval epochs (and after the last), at the
    # images' own size (the docs/METHOD.md §7 test scale costs ~10x more; test_widerface.py gives the
    # final numbers); the best Hard AP's weights are kept as <network>_best.pth.
    val_interval=5,
    val_origin_size=True,
    # Loss weights: total = sum(weight[name] * loss[name]).
    loss_weights=dict(loc=2.0, conf=1.0, landm=1.0),
)

# Named schedules ("recipes"); a mode picks one by default, ``--recipe NAME`` picks another.
RECIPES = {
    # The public TDKD train.py: --mode student from ImageNet, and --mode distillation.
    "tdkd": dict(batch_size=32, lr=0.02, max_epoch=80, milestones=[55, 68], img_dim=640),
    # Pytorch_Retinaface's RetinaFace-MobileNet0.25 (cfg_mnet).
    "retinaface": dict(batch_size=32, lr=1e-3, max_epoch=250, milestones=[190, 220], img_dim=640),
    # Pytorch_Retinaface's RetinaFace-ResNet50 (cfg_re50).
    "retinaface-resnet50": dict(batch_size=24, lr=1e-3, max_epoch=100, milestones=[70, 90], img_dim=840),
    # A teacher made from a trained detector (--mode teacher --resume_net DETECTOR, models/teacher.py):
    # it starts with the detector's outputs, so a tenth of the RetinaFace-ResNet50 epochs at the
    # RetinaFace recipes' learning rate, lowered 10x for the last two; at 640 px, the size the
    # teacher sees in distillation.
    "from-detector": dict(batch_size=32, lr=1e-3, max_epoch=10, milestones=[8], img_dim=640),
}

TRAINING = {
    "student": dict(recipe="tdkd"),
    # The public code's --mode teacher crashes, so no teacher recipe is published with TDKD;
    # teachers use the RetinaFace recipe of their size.
    "teacher": {
        "resnet50": dict(recipe="retinaface-resnet50"),
        "mobile0.75": dict(recipe="retinaface"),
        "mobile0.25": dict(recipe="retinaface"),
        "mobile0.25-wide": dict(recipe="retinaface"),
    },
    "distillation": dict(
        recipe="tdkd",
        # The named distiller settings (DISTILLERS below) this mode starts from; `--set
        # distiller=paper` gives the paper's exact terms and weights, `distiller=tdkd` TDKD's
        # three parts without the CWD term.
        distiller="cwd_tdkd",
        distill_negpos_ratio=3,
        probability_range=[0.1, 0.9],
        # Distillation terms (layers.distiller.TERMS): a zero weight turns a term off. The paper's
        # TDKD is feature + probability; the others are the ablation's baselines (bench/ablation.py).
        # The feature and probability weights come from the distiller.
        loss_weights=dict(loc=2.0, conf=1.0, landm=1.0, feature_coupled=0.0, fitnet=0.0, hinton=0.0, pkd=0.0,
                          cwd=0.0),
        feature_tasks=["cls", "reg"],  # task features imitated by the 'feature' term
        hinton_temperature=4.0,
        # CWD's temperature of the spatial softmax (the reference implementation's default, mmrazor).
        cwd_temperature=1.0,
        # The probability term beyond the paper (layers.distiller.ProbabilitySettings); these
        # defaults are the paper's term. anchors: all / positives / near_faces (positive or IoU >=
        # min_iou with a face); drop_contradicted: leave out anchors where the teacher's face
        # probability is on the other side of 0.5 than the ground truth; form: squared / kl (KL of
        # the class distributions at `temperature`, times T^2); gap_gamma: weight |p_t - p_s|^gamma;
        # one_sided: no pull on a student already beyond the teacher toward the ground truth.
        probability_anchors="all",
        probability_min_iou=0.2,
        probability_drop_contradicted=False,
        probability_form="squared",
        probability_temperature=2.0,
        probability_gap_gamma=0.0,
        probability_one_sided=False,
        # false: adapters frozen at their initialisation, as in the public code (docs/METHOD.md §9).
        train_adapters=True,
        # lstsq adapters: the ridge fit on this many training batches of the starting student
        # before the first step (not on --resume); ridge: lambda over the mean feature energy.
        adapter_init_batches=4,
        adapter_ridge=1e-3,
        # The relative feature term's divisor is at least this share of the adapted student's
        # energy at the same locations, which bounds the term by 2 (1 + 1 / floor) = 22 even
        # where the teacher's features vanish (layers.distiller.relative_divisor); a trained
        # teacher never reaches it (docs/DISTILLATION.md, the bounded relative term).
        relative_floor=0.1,
    ),
}

# Named settings of the one distiller (layers.distiller), merged into the distillation
# settings; `--set distiller=NAME` selects one before the other --set overrides apply.
DISTILLERS = {
    # The paper and the public code, term by term: random adapters, squared differences in the
    # teacher's units, each level over its own selected locations, probabilities over the
    # uncertain ones, feature weight 1.0, probability weight 50.
    "paper": dict(loss_weights=dict(feature=1.0, probability=50.0), adapter_init="random",
                  feature_scale="absolute", feature_normalize="per_level", probability_normalize="uncertain",
                  distill_warmup=0),
    # docs/DISTILLATION.md: the feature term as a share of the teacher's feature energy with the
    # selected locations of all levels pooled, adapters fitted by ridge regression before the
    # first step, the probability term over the positive anchors, both weights ramped up over
    # the first 30 iterations. At the start from the shipped synthetic student
    # (bench/grad_budget.py) feature 10 pulls with 0.4x and probability 10 with 0.8x the
    # detection gradient; the paper's feature 1.0 with random adapters pulls with ~47x.
    # Measured (quickstart schedule, seeds 0-2, minus the control): -0.36 / +1.10 / +2.39 AP;
    # Hard and Medium gain on every seed, Easy does not (-0.09, -2.01, +1.02).
    "relative": dict(loss_weights=dict(feature=10.0, probability=10.0), adapter_init="lstsq",
                     feature_scale="relative", feature_normalize="all_levels", probability_normalize="positives",
                     distill_warmup=30),
}
# "relative" without the probability term: the task-decoupled features alone (the default
# before "tdkd"; quickstart schedule, seeds 0-2, minus the control: +0.76 / +0.84 / +1.66 AP).
DISTILLERS["features"] = dict(copy.deepcopy(DISTILLERS["relative"]), loss_weights=dict(feature=10.0, probability=0.0))
# All three of the paper's parts, the features of "features" and the probability term on the
# positive anchors only, at the weight whose starting gradient equals the feature term's
# (docs/DISTILLATION.md); the default before "cwd_tdkd". Chosen on the quickstart's data (data
# seed 0, training seeds 0-2): the only probability setting above the control on every subset
# for every seed; on held-out data it lost Easy on every seed.
DISTILLERS["tdkd"] = dict(copy.deepcopy(DISTILLERS["features"]), loss_weights=dict(feature=10.0, probability=4.7),
                          probability_anchors="positives")
# The default: the three parts of "tdkd" at about half its weights beside the field's CWD term
# (channel-wise spatial softmax of the whole SSH maps, Shu et al. 2021) at four times the weight
# whose starting gradient equals the feature term's (docs/DISTILLATION.md). Chosen on the
# quickstart's data (data seed 0, training seeds 0-2) as the setting whose smallest share of the
# teacher's lead recovered is largest: first the three terms scaled together (CWD 14.5, 29,
# 43.5), then CWD alone scaled beside the other two at 5 / 2.4 (CWD 29, 43.5, 58, 72.5, 87);
# CWD 58: +1.66 / +1.85 / +3.15 AP against the control, 40 / 36 / 37 % of the teacher's lead.
# On two other synthetic sets level with CWD 29 (the default before); on the 4x schedule CWD 29
# is better on Hard (docs/DISTILLATION.md, "The strength").
DISTILLERS["cwd_tdkd"] = dict(copy.deepcopy(DISTILLERS["tdkd"]),
                              loss_weights=dict(feature=5.0, probability=2.4, cwd=58.0))
# The public code as it runs: the paper's terms and weights with the adapters frozen at
# PyTorch's random initialisation (its adapters are never given to the optimiser).
DISTILLERS["public"] = dict(copy.deepcopy(DISTILLERS["paper"]), train_adapters=False)


def select_distiller(cfg, name):
    """Merge the named distiller settings (``DISTILLERS``) into the run settings ``cfg``; a
    setting or term weight that another distiller sets and this one does not goes back to the
    mode's default, so ``distiller=features`` after the default "tdkd" is "features" whole and
    ``distiller=paper`` after "cwd_tdkd" has no CWD term."""
    if name not in DISTILLERS:
        raise KeyError(f"unknown distiller '{name}': choose one of {sorted(DISTILLERS)}")
    settings = copy.deepcopy(DISTILLERS[name])
    for key in set().union(*DISTILLERS.values()) - set(settings):
        cfg[key] = copy.deepcopy(TRAINING["distillation"][key])
    weights = settings.pop("loss_weights")
    for term in set().union(*(d["loss_weights"] for d in DISTILLERS.values())) - set(weights):
        cfg["loss_weights"][term] = TRAINING["distillation"]["loss_weights"][term]
    cfg["loss_weights"].update(weights)
    cfg.update(settings, distiller=name)
    return cfg

# --mode teacher --resume_net DETECTOR (a detector without task heads): the recipe above, and the
# number of training batches whose SSH feature statistics set the new task convs' BatchNorms,
# so that those convs pass features through unchanged in training mode too.
TEACHER_FROM_DETECTOR = dict(recipe="from-detector", calibration_batches=8)

DEFAULT_NETWORK = {"student": "mobile0.25", "teacher": "resnet50", "distillation": "mobile0.25"}
DEFAULT_TEACHER = "resnet50"

# Shipped weights (README, model zoo), relative to the repository.
STUDENT_BASE_WEIGHTS = "weights/tdkd_student_base.pth"
STUDENT_DISTILLED_WEIGHTS = "weights/tdkd_student_distilled.pth"
# The student a distillation starts from unless --resume_net says otherwise, as the public
# train.py starts from ./base.pth.
DISTILLATION_START = STUDENT_BASE_WEIGHTS
# What detect.py, test_widerface.py and the detector API load unless told otherwise.
DEFAULT_DETECTOR = STUDENT_DISTILLED_WEIGHTS


def network_config(name, activation=None):
    """The settings of one detector, with its activation resolved."""
    if name not in NETWORKS:
        raise KeyError(f"unknown network '{name}': choose one of {sorted(NETWORKS)}")
    activation = activation or DEFAULT_ACTIVATION
    if activation not in ACTIVATIONS:
        raise KeyError(f"unknown activation '{activation}': choose one of {list(ACTIVATIONS)}")
    cfg = copy.deepcopy(NETWORKS[name])
    cfg.update(name=name, activation=activation)
    return cfg


def training_config(mode, network, recipe=None, from_detector=False):
    """The settings of ``mode`` for ``network``: common settings, the schedule of ``recipe``
    (default: the mode's own, ``TRAINING``) and the mode's other settings; ``from_detector``:
    a teacher made from a detector (``TEACHER_FROM_DETECTOR``)."""
    if mode not in TRAINING:
        raise KeyError(f"unknown mode '{mode}': choose one of {sorted(TRAINING)}")
    settings = TRAINING[mode]
    if mode == "teacher":
        settings = TEACHER_FROM_DETECTOR if from_detector else settings.get(network, dict(recipe="retinaface"))
    settings = copy.deepcopy(settings)
    recipe = recipe or settings.pop("recipe")
    settings.pop("recipe", None)
    if recipe not in RECIPES:
        raise KeyError(f"unknown recipe '{recipe}': choose one of {sorted(RECIPES)}")
    cfg = copy.deepcopy(COMMON)
    cfg.update(copy.deepcopy(RECIPES[recipe]), recipe=recipe)
    cfg.update(settings)
    if "distiller" in cfg:
        select_distiller(cfg, cfg["distiller"])
    return cfg


def apply_overrides(cfg, overrides):
    """Set ``key=value`` strings (``loss_weights.feature=2``) in ``cfg``, typed like the defaults;
    ``distiller=NAME`` first, whatever its place (``select_distiller``)."""
    for item in sorted(overrides or [], key=lambda item: not item.startswith("distiller=")):
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        if key == "distiller" and key in cfg:
            select_distiller(cfg, raw)
            continue
        target, parts = cfg, key.split(".")
        for part in parts[:-1]:
            target = target[part]
        leaf = parts[-1]
        if leaf not in target:
            raise KeyError(f"override '{key}': no such setting (known: {sorted(target)})")
        target[leaf] = _parse_like(raw, target[leaf])
    return cfg


def _parse_like(raw, default):
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, (list, tuple)):
        items = [s for s in raw.strip("[]()").split(",") if s.strip()]
        kind = type(default[0]) if default else float
        if kind is list:
            raise ValueError("nested lists cannot be overridden from the command line")
        return [kind(s) for s in items]
    if default is None:
        return raw
    return type(default)(raw)


# `make quickstart`: the whole study in miniature on the synthetic WIDER-format set, sized to
# finish within 10 minutes on a 2-core CPU (8.5 measured from a fresh clone). Measured there:
# mobile0.75 and mobile0.25 trained from scratch stay at a constant classifier (conf loss 3.0)
# for the first 240 iterations, so teacher and student start from the ImageNet MobileNet0.25 (the first file found of
# ``backbone_weights``) and the teacher gets a wider neck ("mobile0.25-wide"). The distillation
# uses the default distiller (DISTILLERS, docs/DISTILLATION.md).
QUICKSTART = dict(
    data=dict(num_train=480, num_val=400, image_size=[320, 480], seed=0),
    backbone_weights=["weights/mobilenetV1X0.25_pretrain.tar"],
    teacher_network="mobile0.25-wide",
    # The shipped teacher and student (each with its .json), made by `make synthetic-weights`
    # (= quickstart.py --make_weights) with the ``teacher`` and ``student`` recipes below;
    # tests/test_quickstart.py pins both. The quickstart starts the control and TDKD from this
    # student instead of training it (~4 of the 10 minutes it may take).
    teacher_weights="weights/synthetic_teacher_mobile0.25-wide.pth",
    student_weights="weights/synthetic_student_mobile0.25.pth",
    # The teacher's own train set: the same generator and seed with 3x the images (its first
    # 480 are the student's train set byte for byte); no val images (it is evaluated on the
    # quickstart's). Measured (AP easy / medium / hard): 16 epochs on the 1,440 images (1,440
    # iterations, ~21 min here) gave 96.58 / 95.25 / 82.12, above the 3-seed control's
    # 92.97 / 90.37 / 73.90 by more than 2 on each; 3 epochs on them gave 91.95 / 87.01 / 67.36
    # and 12 epochs on the 480 images 91.45 / 89.77 / 72.62, both no better than the control.
    teacher_data=dict(num_train=1440, num_val=0),
    common=dict(img_dim=320, batch_size=16, num_workers=2, save_interval=1000),
    teacher=dict(max_epoch=16, lr=1e-2, milestones=[12, 15], seed=0),
    student=dict(max_epoch=12, lr=1e-2, milestones=[9], seed=0),
    distillation=dict(max_epoch=8, lr=1e-2, milestones=[6], set=["distiller=cwd_tdkd"]),
    # What runs the network when the val set is tested (backends.py). The 400 val images all
    # have different sizes, and eager PyTorch on a CPU prepares its oneDNN convolutions anew for
    # every new size: measured 34 ms per image against 12 ms at one repeated size (student, one
    # thread). ONNX Runtime has no such cost (~10 ms per image) and gave the eager APs to 1e-8
    # (seed-1 TDKD student: Easy and Medium equal to the last digit, Hard 2e-8 apart).
    eval_backend="onnxruntime",
)

# bench/ablation.py: the paper's analysis in miniature. Every row starts from the quickstart's
# student, runs the quickstart's distillation schedule with one shared teacher and its own
# ``--set`` overrides; a row without overrides (None) is the control: the same epochs without a
# teacher. The "cwd_tdkd" row is the quickstart's own distillation (the default distiller);
# most other rows build on the features-only distiller ("features", the default before "tdkd"), as
# when it was measured. The coupled term's weight 25 gives it the decoupled term's starting
# gradient norm on the student (bench/grad_budget.py at weight 10 each: decoupled 1.64, coupled
# 0.65, FitNet 1.56; detection 4.22), FitNet's 10 about the same. Hinton's KD (T = 4) takes
# weight 10, untuned: its KL is averaged over all ~4,200 anchors of a 320 px image while the
# hard cross-entropy is summed over ~8 mined anchors per positive and divided by the positives.
# PKD, CWD and the probability-term variants take the weight whose starting gradient norm equals
# the feature term's (1.64; one measurement, bench/grad_budget.py's trainer and batches,
# docs/DISTILLATION.md): at weight 1 PKD 0.408, CWD 0.113, the probability term over the
# positives' divisor 0.346, positive anchors only 0.348, near faces 0.361, without contradicted
# anchors 0.254, KL at T = 2 0.912, gap^2 weighted 0.0621, one-sided 0.238.
_F = ["distiller=features"]
_NO_FEATURE = ["loss_weights.feature=0"]
_NO_PROBABILITY = ["loss_weights.probability=0"]


def _cwd_tdkd(cwd, feature=5, probability=2.4):
    """The default distiller's ``--set`` with its three weights given."""
    return ["distiller=cwd_tdkd", f"loss_weights.cwd={cwd}", f"loss_weights.feature={feature}",
            f"loss_weights.probability={probability}"]


ABLATION = dict(
    rows=dict(
        control=("control: same epochs, no teacher", None),
        cwd_tdkd=("TDKD + CWD, default distiller (CWD 58 + the tdkd parts at about half: feature 5, probability 2.4)",
                  ["distiller=cwd_tdkd"]),
        # other CWD weights, the feature and probability weights as in the default
        cwd29_tdkd_half=("CWD 29 + tdkd at about half (feature 5, probability 2.4), the default before",
                         _cwd_tdkd(cwd=29)),
        cwd43_tdkd_half=("CWD 43.5 + tdkd at about half (feature 5, probability 2.4)", _cwd_tdkd(cwd=43.5)),
        cwd72_tdkd_half=("CWD 72.5 + tdkd at about half (feature 5, probability 2.4)", _cwd_tdkd(cwd=72.5)),
        cwd87_tdkd_half=("CWD 87 + tdkd at about half (feature 5, probability 2.4)", _cwd_tdkd(cwd=87)),
        # all three weights scaled together from CWD 29 / feature 5 / probability 2.4
        cwd14_tdkd_quarter=("CWD 14.5 + tdkd at about a quarter (feature 2.5, probability 1.2), the first cwd_tdkd",
                            _cwd_tdkd(cwd=14.5, feature=2.5, probability=1.2)),
        cwd43_tdkd_x3_4=("CWD 43.5 + tdkd at about three quarters (feature 7.5, probability 3.6)",
                         _cwd_tdkd(cwd=43.5, feature=7.5, probability=3.6)),
        tdkd=("TDKD's three parts, the default before cwd_tdkd (relative task-decoupled features + probability on "
              "positive anchors)", ["distiller=tdkd"]),
        features=("task-decoupled features only (the default before tdkd)", _F),
        probability_3=("features + probability term, weight 3", _F + ["loss_weights.probability=3"]),
        relative=("features + probability term, weight 10", _F + ["distiller=relative"]),
        paper=("TDKD, the paper's terms and weights", _F + ["distiller=paper"]),
        paper_f01=("TDKD, the paper's terms, feature weight 0.1", _F + ["distiller=paper", "loss_weights.feature=0.1"]),
        coupled=("coupled features at the decoupled start gradient",
                 _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.feature_coupled=25"]),
        probability=("probability only, weight 10, over the positive anchors",
                     _F + _NO_FEATURE + ["loss_weights.probability=10"]),
        probability_uncertain=("probability only, weight 10, over the uncertain anchors (the paper's divisor)",
                               _F + _NO_FEATURE + ["loss_weights.probability=10", "probability_normalize=uncertain"]),
        cls=("classification features only", _F + _NO_PROBABILITY + ["feature_tasks=cls"]),
        reg=("regression features only", _F + _NO_PROBABILITY + ["feature_tasks=reg"]),
        # the features-only distiller with one of its settings set back to the paper's
        random_adapters=("features, random adapters", _F + ["adapter_init=random"]),
        per_level=("features, normalised per level", _F + ["feature_normalize=per_level"]),
        no_warmup=("features, no warm-up", _F + ["distill_warmup=0"]),
        hinton=("Hinton KD on class logits", _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.hinton=10"]),
        fitnet=("FitNet (whole SSH maps)", _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.fitnet=10"]),
        pkd=("PKD (whole SSH maps, 1 - Pearson r) at the decoupled start gradient",
             _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.pkd=4"]),
        cwd=("CWD (whole SSH maps, channel-wise spatial softmax, T = 1) at the decoupled start gradient",
             _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.cwd=14.5"]),
        cwd_x2=("CWD alone at twice its matched weight (29)", _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.cwd=29"]),
        cwd_x4=("CWD alone at four times its matched weight (58, the default's CWD weight)",
                _F + _NO_PROBABILITY + _NO_FEATURE + ["loss_weights.cwd=58"]),
        public=("the public code: the paper's terms and weights, frozen random adapters", _F + ["distiller=public"]),
        # the features + a probability term at the feature term's start gradient
        prob_matched=("features + probability term at matched weight (4.7)", _F + ["loss_weights.probability=4.7"]),
        prob_positives=("features + probability on positive anchors only (4.7; the tdkd settings)",
                        _F + ["loss_weights.probability=4.7", "probability_anchors=positives"]),
        prob_near_faces=("features + probability on anchors near faces, IoU >= 0.2 (4.5)",
                         _F + ["loss_weights.probability=4.5", "probability_anchors=near_faces"]),
        prob_consistent=("features + probability without anchors the teacher gets wrong (6.4)",
                         _F + ["loss_weights.probability=6.4", "probability_drop_contradicted=true"]),
        prob_kl=("features + probability as KL at T = 2 (1.8)",
                 _F + ["loss_weights.probability=1.8", "probability_form=kl"]),
        prob_gap=("features + probability weighted by the gap^2 (26)",
                  _F + ["loss_weights.probability=26", "probability_gap_gamma=2"]),
        prob_one_sided=("features + one-sided probability (6.9)",
                        _F + ["loss_weights.probability=6.9", "probability_one_sided=true"]),
        # the default tdkd with the CWD term added: at full strength each, and at half the
        # feature and CWD weights (the same start gradient as either alone)
        tdkd_cwd=("tdkd + CWD (14.5)", ["distiller=tdkd", "loss_weights.cwd=14.5"]),
        tdkd_cwd_half=("tdkd at feature weight 5 + CWD (7.25)",
                       ["distiller=tdkd", "loss_weights.feature=5", "loss_weights.cwd=7.25"]),
        # the default tdkd with PKD's standardised maps at the task-decoupled locations, at the
        # start gradient of the relative term (0.466 at weight 1, bench/grad_budget.py)
        tdkd_standardised=("tdkd with standardised features (3.5)",
                           ["distiller=tdkd", "feature_scale=standardised", "loss_weights.feature=3.5"]),
    ),
)

# bench/probe.py: the transfer probe's ridge maps, fitted on the first ``train_images`` of the
# quickstart's train set and tested on the first ``val_images`` val images (200 each: both hold
# images with level-3 faces, 8 and 11 on the quickstart's set); ``resamples`` of the test images
# for the paired band of two students.
PROBE = dict(train_images=200, val_images=200, ridge=1e-3, resamples=1000)

# Inference backends (backends.py, docs/DEPLOYMENT.md). INT8: ONNX Runtime's static QDQ
# quantisation, uint8 activations and int8 weights; ranges of the activations calibrated by
# ``int8['method']`` (minmax, entropy or percentile) over ``calibration['images']`` training
# images (synthetic ones of ``synthetic_size``, the quickstart's long-side range, unless a
# folder is given). Percentile (ONNX Runtime's default 99.999 %, symmetric, 2,048 bins) is the
# only method measured within 0.5 AP of float on every subset for both calibration seeds
# (bench/int8_calibration.py; AP change against float on the synthetic val set, shipped
# synthetic student, 300 images, seeds 0 / 1: percentile -0.31 / -0.41 / -0.42 and -0.31 /
# -0.32 / -0.39; min / max -0.03 / -0.49 / -0.30 and -0.13 / -0.72 / -0.33), and the shipped
# WIDER student's faces above 0.6 on the crowd photo are the float graph's 26 for both seeds
# (min / max: 27 with seed 0; percentile with a third seed: -0.16 / -0.15 / -0.40 and 27). It clips the few largest activations that min / max keeps.
# ``keep_float``: prefixes of ONNX
# node names left in float: the stem conv (3 -> 8 channels) and the first depthwise conv, both
# at half the input resolution, where ONNX Runtime's INT8 kernels were slower than its float
# ones (measured in one run, 640x480, one thread, best of 25: whole forward 10.2 ms with both
# in float, 12.5 ms with only the stem in float; the float graph 17.9 ms); and the heads with
# the outputs' concatenation and softmax, so that scores and offsets are not rounded to 8 bits
# (with min / max, seed 0: -0.03 / -0.49 / -0.30 with them in float, -0.48 / -0.66 / -0.40
# without; about 2 ms slower end to end); and the FPN's two merges (upsample, add, 3x3 conv):
# on an Intel Xeon with AMX the percentile calibration with seed 0 and only the stem and the
# heads in float cost -0.58 Easy (on the AMD EPYC above -0.31); with the merges in float too
# -0.44 / -0.34 / -0.35, and with seeds 1 and 2 -0.34 / -0.28 / -0.32 and -0.04 / -0.10 / -0.35
# (AMD, seeds 0 / 1: -0.43 / -0.25 / -0.28 and -0.31 / -0.30 / -0.42): within 0.5 on both
# CPUs and every seed tried, for a forward about 2 ms (19 %) longer (docs/DEPLOYMENT.md, INT8).
# Per-channel weights: scores closer to float than per-tensor ones (largest difference on the
# crowd photo 0.08 against 0.15).
# ``extra_options`` go to ``quantize_static`` as they are (e.g. ``{"CalibPercentile": 99.99}``).
DEPLOYMENT = dict(
    calibration=dict(images=300, seed=0, synthetic_size=[320, 480]),
    int8=dict(method="percentile", per_channel=True, reduce_range=False, op_types=None, extra_options={},
              keep_float=["/body/stage1/stage1.0/", "/body/stage1/stage1.1/stage1.1.0/",
                          "/fpn/Add", "/fpn/Resize", "/fpn/merge",
                          "/ClassHead", "/BboxHead", "/LandmarkHead", "/Concat", "/Softmax"]),
    # layers of the exported graph that the openvino-mixed backend keeps in float32: with the
    # backbone's first two stages in float32 the AP change against the float graph on the
    # synthetic val set was +0.03 / +0.05 / -0.02, with all in bfloat16 -0.24 / -0.06 / -0.06,
    # with the first stage only -0.11 / +0.03 / +0.04 (docs/SPEED.md)
    openvino_mixed_float32=["/body/stage1/", "/body/stage2/"],
    # input sizes for which the openvino backends keep a model compiled for that size alone
    # (made at the second image of a size, about 0.1 s; the least recently used is dropped):
    # its forward at 640x480, one thread, took 5.5 ms against 6.6 ms for the model compiled for
    # every size (docs/SPEED.md); 0 runs every image on the latter
    openvino_fixed_sizes=4,
)
