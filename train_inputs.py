"""What a ``train.py`` run reads, resolved and checked before anything is written.

``plan_run(args)`` resolves the networks (the flag, else the weights' ``.json``, else the
network whose shapes the weights have, else the mode's default), reads every input file
(starting weights, teacher, full checkpoint, ImageNet backbone, training and val sets) and
reports every problem it finds in one error: a run never stops on a second problem after the
first is fixed, and no ``--save_folder`` is made for a run that cannot start.
"""
import glob
import json
import os
import shlex
from dataclasses import dataclass

import torch

import config
from data.wider_face import WiderFaceDetection
from models import build_model
from models.backbone import backbone_network, resolve_backbone_weights
from models.retinaface import weights_network
from utils.checkpoint import (check_keys, describe_weights, load_training_checkpoint, read_state_dict,
                              weights_kind)
from utils.errors import TDKDError, located

RECIPE_FLAGS = ("batch_size", "img_dim", "lr", "max_epoch", "num_workers", "momentum",
                "weight_decay", "gamma", "milestones", "seed", "save_interval", "val_interval")
# Settings a resumed run takes from its checkpoint: the optimiser and the lr schedule continue
# from their saved states, and the batches (sampler and augmentation) follow the seed and batch.
RESUME_FIXED = ("lr", "momentum", "weight_decay", "milestones", "gamma", "batch_size", "seed")
# The lowest value of each setting: checked before anything is written.
# (--img_dim's range is checked with the flag, in train.parse_args.)
LOWER_BOUNDS = {"batch_size": 1, "num_workers": 0, "max_epoch": 1, "save_interval": 1, "val_interval": 1}
RUN_FILES = ("checkpoint_last.pth", "*_Final.pth", "*_epoch_*.pth", "*_best.pth")  # what a run saves
SYNTHETIC_FOLDER = "data/synthetic"  # python -m data.synthetic's default --out
WIDER_TRAIN = "./data/widerface/train/label.txt"  # train.py's default --training_dataset


@dataclass
class Weights:
    """A weights file read once: its path, state dict, kind (``weights_kind``) and the network
    and activation it is used with."""
    path: str
    state: dict
    kind: str
    network: str
    activation: str


@dataclass
class RunPlan:
    """The resolved inputs of a run (see the module docstring)."""
    network: str
    activation: str
    save_folder: str
    start: Weights = None  # the weights the trained network starts from (--resume_net or the default)
    teacher: Weights = None
    from_detector: bool = False  # --mode teacher from a detector without task heads (models/teacher.py)
    backbone_weights: str = None  # the ImageNet file a run without start weights begins from (None: scratch)
    net_cfg: dict = None  # config.network_config of the trained network
    cfg: dict = None  # the run's settings (build_run_config)
    resume: dict = None  # the --resume checkpoint, read and checked (load_training_checkpoint)


def build_run_config(args, plan=None):
    """Network settings and training recipe of the run (of ``plan``'s networks when given,
    else of the flags and the mode's defaults), with every override applied. A resumed run
    starts from the settings stored in its checkpoint, so only the flags given change them."""
    network = plan.network if plan else args.network or config.DEFAULT_NETWORK[args.mode]
    activation = plan.activation if plan else args.activation
    try:
        cfg = config.training_config(args.mode, network, args.recipe, from_detector=bool(plan and plan.from_detector))
    except KeyError as exc:
        raise TDKDError(exc.args[0]) from None
    if plan and plan.resume:
        cfg.update(json.loads(plan.resume["config"]))
    for name in RECIPE_FLAGS:
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    try:
        config.apply_overrides(cfg, args.set)
    except (KeyError, ValueError) as exc:
        raise TDKDError(f"--set: {exc}") from None
    try:
        return config.network_config(network, activation), cfg
    except KeyError as exc:
        raise TDKDError(exc.args[0]) from None


def default_save_folder(mode, network):
    """``outputs/train/<mode>_<network>``: a git-ignored folder holding no shipped file."""
    return os.path.join("outputs", "train", f"{mode}_{network}")


def plan_run(args, world_size=1):
    """Resolve and check every input of ``args``; one ``TDKDError`` lists all problems."""
    problems = []

    def attempt(check, *inputs):
        try:
            return check(*inputs)
        except TDKDError as exc:
            problems.append(str(exc))
            return None

    teacher = attempt(read_teacher, args) if args.mode == "distillation" else None
    resume = attempt(load_training_checkpoint, args.resume) if args.resume else None
    start = attempt(read_start, args)
    network = args.network or (resume["network"] if resume else None) or (start.network if start else None) \
        or config.DEFAULT_NETWORK[args.mode]
    activation = args.activation or (resume.get("activation") if resume else None) \
        or (start.activation if start else None) or config.DEFAULT_ACTIVATION
    if start:
        start.network, start.activation = network, activation
        task_heads = args.mode == "teacher" and start.kind != "student"
        attempt(check_fit, start, task_heads)
    backbone = None
    if start is None and not args.resume and not args.resume_net:  # a --resume_net that fails is reported above
        backbone = attempt(check_backbone, network, activation, args.backbone_weights)
    if resume:
        attempt(check_resume, args.resume, resume, args.mode, network, activation)
    attempt(check_training_set, args.training_dataset)
    if args.val_dataset:
        attempt(check_val_set, args.val_dataset)
    save_folder = args.save_folder or default_save_folder(args.mode, network)
    if os.path.exists(save_folder) and not os.path.isdir(save_folder):
        problems.append(located(save_folder, "--save_folder is a file, not a folder"))
    attempt(check_save_folder, args, save_folder, world_size)
    from_detector = args.mode == "teacher" and start is not None and start.kind == "student"
    plan = RunPlan(network, activation, save_folder, start, teacher, from_detector, backbone, resume=resume)
    configured = attempt(build_run_config, args, plan)
    if configured:
        plan.net_cfg, plan.cfg = configured
        problems += settings_problems(plan.cfg, args)
        if resume:
            problems += resume_problems(plan.cfg, args, resume)
        if plan.cfg["batch_size"] % world_size:
            problems.append(f"--batch_size {plan.cfg['batch_size']} is not divisible by {world_size} processes")
    if len(problems) == 1:
        raise TDKDError(problems[0])
    if problems:
        raise TDKDError(f"{len(problems)} problems (nothing was written):\n"
                        + "\n".join("  - " + p.replace("\n", "\n    ") for p in problems))
    return plan


def settings_problems(cfg, args):
    """Settings below their lowest sensible value (a flag or ``--set``), one line each."""
    problems = [f"--{key} {cfg[key]}: must be at least {minimum}" for key, minimum in LOWER_BOUNDS.items()
                if cfg[key] < minimum]
    if args.max_iter is not None and args.max_iter < 1:
        problems.append(f"--max_iter {args.max_iter}: must be at least 1")
    problems += [f"--{key} {cfg[key]}: must be above 0" for key in ("lr", "gamma") if not cfg[key] > 0]
    problems += [f"--{key} {cfg[key]}: must not be negative" for key in ("momentum", "weight_decay") if cfg[key] < 0]
    return problems


def resume_problems(cfg, args, state):
    """Settings a resumed run cannot honour: changes to ``RESUME_FIXED`` (the optimiser, the lr
    schedule and the batches continue from the checkpoint) and limits already reached."""
    stored = json.loads(state["config"])
    changed = [f"--{key} {_flag_value(cfg[key])} (checkpoint: {_flag_value(stored[key])})"
               for key in RESUME_FIXED if key in stored and cfg[key] != stored[key]]
    if args.recipe and args.recipe != stored.get("recipe"):
        changed.append(f"--recipe {args.recipe} (checkpoint: {stored.get('recipe')})")
    problems = []
    if changed:
        problems.append(located(args.resume, f"a resumed run keeps its optimiser, lr schedule and batches, so "
                                f"{', '.join(changed)} cannot change; leave them out, or start a new run from "
                                f"its weights: --resume_net {args.resume} and another --save_folder"))
    if cfg["max_epoch"] < state["epoch"]:
        problems.append(f"--max_epoch {cfg['max_epoch']}: the checkpoint {args.resume} has finished {state['epoch']} "
                        "epochs already")
    if args.max_iter is not None and args.max_iter <= state["iteration"]:
        problems.append(f"--max_iter {args.max_iter}: the checkpoint {args.resume} is at iteration "
                        f"{state['iteration']} already; give a larger --max_iter, or leave it out to train to "
                        "--max_epoch")
    return problems


def _flag_value(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def check_save_folder(args, folder, world_size):
    """A folder that holds another run's checkpoint or weights is refused, with the command
    that continues that run: training into it would mix or overwrite the two runs."""
    found = run_files(folder)
    if not found:
        return
    checkpoint = os.path.join(folder, "checkpoint_last.pth")
    if args.resume and os.path.isfile(args.resume) and os.path.samefile(os.path.dirname(os.path.abspath(args.resume)),
                                                                          folder):
        return
    names = ", ".join(os.path.basename(p) for p in found[:4]) + (", ..." if len(found) > 4 else "")
    fresh = "to start a new run instead, give another --save_folder"
    if os.path.isfile(checkpoint):
        how = f"continue it with: {resume_command(args, checkpoint, world_size)}; or, {fresh}"
    else:
        how = fresh
    raise TDKDError(located(folder, f"holds another run ({names}), which this one would overwrite; {how}"))


def run_files(folder):
    """The checkpoints and weights of a run in ``folder`` (sorted; [] when there is none)."""
    return sorted({path for pattern in RUN_FILES for path in glob.glob(os.path.join(glob.escape(folder), pattern))})


def resume_command(args, checkpoint, world_size=1):
    """The command line of this run with ``--resume checkpoint`` (replacing any ``--resume``)."""
    argv, kept = list(args.argv), []
    while argv:
        arg = argv.pop(0)
        if arg == "--resume" and argv:
            argv.pop(0)
        elif not arg.startswith("--resume="):
            kept.append(arg)
    launcher = "python" if world_size == 1 else f"torchrun --nproc_per_node={world_size}"
    return f"{launcher} {shlex.join(['train.py', *kept, '--resume', os.fspath(checkpoint)])}"


def read_weights(path, network=None, activation=None, default_network=None):
    """Read ``path`` once; network and activation from the flags, else its ``.json``, else
    (network) the one its shapes fit, else the defaults."""
    state = read_state_dict(path)
    network, activation = weights_network(path, state, network, activation, default_network)
    return Weights(os.fspath(path), state, weights_kind(state), network, activation)


def read_start(args):
    """The weights the trained network starts from: ``--resume_net``, or in distillation mode
    the published base student (as the public code's ./base.pth); None when it starts from
    ImageNet or a full checkpoint (``--resume``)."""
    path = args.resume_net
    if path is None and args.mode == "distillation" and not args.resume:
        path = config.repo_path(config.DISTILLATION_START)
        if not os.path.isfile(path):
            raise TDKDError(f"{path}: the published base student, where --mode distillation starts by "
                            "default, is missing; pass --resume_net PATH (a student trained with --mode student)")
    if path is None:
        return None
    return read_weights(path, args.network, args.activation)


def check_fit(weights, task_heads):
    """The file's keys and shapes against the network it is used with (no memory used)."""
    cfg = network_cfg(weights.network, weights.activation, weights.path)
    with torch.device("meta"):
        model = build_model(cfg, task_heads=task_heads)
    check_keys(model, weights.state, weights.path)


def network_cfg(network, activation, path):
    try:
        return config.network_config(network, activation)
    except KeyError as exc:
        raise TDKDError(located(path, exc.args[0])) from None


def check_backbone(network, activation, path):
    """The ImageNet weights a run without start weights begins from (None: from scratch):
    present, and of this backbone."""
    cfg = config.network_config(network, activation)
    path = resolve_backbone_weights(cfg, path)
    if path is None:
        return None
    with torch.device("meta"):
        net = backbone_network(cfg)
    check_keys(net, read_state_dict(path), path)
    return path


def check_resume(path, state, mode, network, activation):
    """The checkpoint continues a run of this mode, network and activation."""
    if (state["mode"], state["network"]) != (mode, network):
        raise TDKDError(located(path, f"checkpoint of --mode {state['mode']} --network {state['network']}, "
                                      f"not of --mode {mode} --network {network}"))
    if state.get("activation", activation) != activation:
        raise TDKDError(located(path, f"checkpoint of --activation {state['activation']}, not {activation}"))


def read_teacher(args):
    """The distillation teacher: a RetinaFace with task heads, of the network of its ``.json``
    (or of its shapes) unless ``--teacher_network`` says otherwise."""
    if not args.teacher_weights:
        raise TDKDError(no_teacher_message())
    teacher = read_weights(args.teacher_weights, args.teacher_network, args.teacher_activation,
                           config.DEFAULT_TEACHER)
    if teacher.kind == "student":
        raise TDKDError(located(teacher.path, detector_as_teacher_message(teacher, args)))
    try:
        check_fit(teacher, task_heads=True)
    except TDKDError as exc:  # name the teacher's flags in the hint
        raise TDKDError(str(exc).replace("fits --network", "fits --teacher_network")
                        .replace("--activation", "--teacher_activation")) from None
    return teacher


def check_training_set(label_path):
    """Parse the label file and find every image it lists (``WiderFaceDetection`` does both)."""
    try:
        WiderFaceDetection(label_path)
    except TDKDError as exc:
        if os.path.isfile(label_path):
            raise
        synthetic = f"{SYNTHETIC_FOLDER}/train/label.txt"
        if os.path.normpath(label_path) == os.path.normpath(synthetic):
            raise TDKDError(f"{exc}; make the synthetic set first: python -m data.synthetic") from None
        raise TDKDError(f"{exc}; WIDER FACE goes there (train/images/ and the RetinaFace label.txt), or use the "
                        f"synthetic set: python -m data.synthetic, then --training_dataset {synthetic}") from None


def check_val_set(folder):
    """What ``train.Validator`` reads: images/, wider_val.txt and ground_truth/."""
    from test_widerface import read_val_list
    from widerface_evaluate.evaluation import load_ground_truth

    if not os.path.isdir(os.path.join(folder, "images")):
        raise TDKDError(located(folder, "--val_dataset needs images/, wider_val.txt and ground_truth/ "
                                        "(the WIDER FACE val layout); images/ not found"))
    read_val_list(os.path.join(folder, "wider_val.txt"))
    load_ground_truth(os.path.join(folder, "ground_truth"))


def command(*args):
    return "python " + " ".join(shlex.quote(str(a)) for a in args)


def synthetic_distillation_command():
    """The quickstart's distillation (config.QUICKSTART) from the shipped synthetic teacher and
    student, on the set ``python -m data.synthetic`` writes."""
    quick = config.QUICKSTART
    schedule = {**quick["common"], **quick["distillation"]}
    args = ["train.py", "--mode", "distillation", "--teacher_weights", quick["teacher_weights"],
            "--resume_net", quick["student_weights"], "--training_dataset", f"{SYNTHETIC_FOLDER}/train/label.txt"]
    for key in ("img_dim", "batch_size", "max_epoch", "lr", "milestones", "set"):
        if key in schedule:
            value = schedule[key]
            args += [f"--{key}", *(value if isinstance(value, list) else [value])]
    return command(*args)


def no_teacher_message():
    backbone = config.NETWORKS[config.DEFAULT_TEACHER]["backbone_weights"]
    return "\n".join([
        "--mode distillation needs --teacher_weights PATH, a RetinaFace teacher with task heads. Three ways to get one:",
        "  1. distil on the synthetic set from the shipped synthetic teacher and student (CPU is enough):",
        "       python -m data.synthetic",
        "       " + synthetic_distillation_command(),
        "  2. make a teacher from a trained RetinaFace detector without task heads (e.g. Pytorch_Retinaface's "
        "Resnet50_Final.pth), on WIDER FACE:",
        "       " + command("train.py", "--mode", "teacher", "--resume_net", "Resnet50_Final.pth"),
        f"  3. train a teacher from ImageNet weights ({backbone}; 100 epochs at 840 px, GPUs):",
        "       " + command("train.py", "--mode", "teacher", "--network", config.DEFAULT_TEACHER),
    ])


def detector_as_teacher_message(teacher, args):
    """The exact commands that make a teacher of this detector and distil from it."""
    make = ["train.py", "--mode", "teacher", "--network", teacher.network]
    if args.teacher_activation or describe_weights(teacher.path).get("activation"):
        make += ["--activation", teacher.activation]
    make += ["--resume_net", teacher.path]
    if args.training_dataset != WIDER_TRAIN:
        make += ["--training_dataset", args.training_dataset]
    made = os.path.join(default_save_folder("teacher", teacher.network), f"{teacher.network}_Final.pth")
    leaky = "" if teacher.network == "resnet50" or "--activation" in make else \
        " (add --activation leaky for Pytorch_Retinaface's weights)"
    return ("a RetinaFace detector without task heads, not a teacher: make a teacher from it first (its task "
            f"convs start as identities, then the '{config.TEACHER_FROM_DETECTOR['recipe']}' recipe fine-tunes it): "
            f"{command(*make)}{leaky}, then pass --teacher_weights {made}")
