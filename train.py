r"""Train a RetinaFace teacher, a student alone, or a student distilled with TDKD.

    python train.py --mode student --training_dataset data/widerface/train/label.txt
    python train.py --mode teacher --network resnet50 --backbone_weights weights/resnet50-0676ba61.pth
    python train.py --mode teacher --resume_net Resnet50_Final.pth    # a teacher made from a detector
    python train.py --mode distillation --teacher_weights outputs/train/teacher_resnet50/resnet50_Final.pth
    torchrun --nproc_per_node=8 train.py --mode distillation ...

Every hyper-parameter comes from ``config.py`` and can be overridden here (``--set KEY=VALUE``
for the ones without a flag of their own). Every input is checked before anything is written,
and all problems found are reported together; `python train.py --mode distillation` alone
says how to get a teacher.
"""
import argparse
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import config
from data import TrainTransform, WiderFaceDetection, detection_collate
from backends import BACKENDS, build_predictor
from detector import FaceDetector
from layers import MultiBoxLoss, build_distiller, level_shapes, prior_boxes
from layers.distiller import (TERMS, add_statistics, dead_teacher_message, describe_distiller, dominance_warning,
                              warmup_factor)
from models import build_model
from models.fusion import frozen_inference_copy
from models.teacher import calibrate_task_convs, teacher_from_detector
from test_widerface import read_val_list, write_predictions
from train_inputs import build_run_config, plan_run, resume_command  # noqa: F401 - build_run_config for tools
from utils.checkpoint import load_state, save_atomic, writable_folder, write_text_atomic
from utils.cli import HelpFormatter, add_device_argument
from utils.distributed import all_ranks_agree, cleanup_distributed, finish_distributed, init_distributed
from utils.errors import TDKDError, exit_on_error, located
from utils.logger import CSVLogger, read_log
from utils.threads import add_threads_argument, set_threads

def _recipe_default(key):
    """How the default of a recipe flag is chosen, for ``--help``."""
    schedules = ", ".join(f"{name} {recipe[key]}" for name, recipe in config.RECIPES.items())
    return f"the recipe's ({schedules})"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--mode", choices=sorted(config.TRAINING), default="student", help="what to train")
    p.add_argument("--network", choices=sorted(config.NETWORKS),
                   help="network to train; default: the --resume_net file's (its .json, else the network its "
                        "shapes fit), without one resnet50 in teacher mode, else mobile0.25")
    p.add_argument("--activation", choices=config.ACTIVATIONS,
                   help="activation of the trained network; default: the --resume_net file's .json, else relu "
                        "('leaky' for Pytorch_Retinaface's MobileNet0.25)")
    p.add_argument("--recipe", choices=sorted(config.RECIPES),
                   help="schedule (batch, lr, epochs, milestones, size); default: the mode's, config.TRAINING "
                        "(student and distillation: tdkd; teacher: retinaface, retinaface-resnet50 for resnet50, "
                        "from-detector when --resume_net is a detector without task heads)")
    p.add_argument("--teacher_network", choices=sorted(config.NETWORKS),
                   help="network of --teacher_weights; default: its .json, else the network its shapes fit, "
                        f"else {config.DEFAULT_TEACHER}")
    p.add_argument("--teacher_activation", choices=config.ACTIVATIONS,
                   help="activation of the teacher; default: its .json, else relu")
    p.add_argument("--teacher_weights",
                   help="trained teacher, with task heads (distillation mode; required: without it the error "
                        "lists three ways to get one)")
    p.add_argument("--training_dataset", default="./data/widerface/train/label.txt",
                   help="label.txt in the RetinaFace format, images/ beside it")
    p.add_argument("--backbone_weights",
                   help="ImageNet weights of the backbone (local file), or 'none' to train it from scratch; "
                        "default: the network's file in config.NETWORKS (weights/...), an error if it is missing")
    p.add_argument("--resume_net",
                   help="initial weights of the trained network (plain state dict); default in distillation "
                        f"mode: {config.DISTILLATION_START} (the published base student, as the public code's ./base.pth)")
    p.add_argument("--resume", help="full training checkpoint (checkpoint_last.pth) to continue from, where it "
                                    "stopped, with its settings (a flag given may change only what a resume can "
                                    "honour: docs/TRAINING.md)")
    p.add_argument("--save_folder",
                   help="where logs, checkpoints and weights go; default: outputs/train/<mode>_<network>")
    add_device_argument(p)
    add_threads_argument(p, training=True)
    p.add_argument("--ngpu", type=int, default=1,
                   help="the public code's DataParallel GPU count; here only 1 is accepted: use torchrun for more")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the trained network and the teacher (minutes of compiling first)")
    p.add_argument("--max_iter", type=int, help="stop after this many iterations (smoke tests, benchmarks)")
    p.add_argument("-b", "--batch_size", type=int,
                   help="global batch, split over the processes; default: " + _recipe_default("batch_size"))
    p.add_argument("--img_dim", type=int,
                   help=f"training image size, at most {config.MAX_IMG_DIM}; default: " + _recipe_default("img_dim"))
    p.add_argument("--lr", "--learning_rate", "--learning-rate", dest="lr", type=float,
                   help="initial learning rate; default: " + _recipe_default("lr"))
    p.add_argument("--max_epoch", type=int, help="default: " + _recipe_default("max_epoch"))
    p.add_argument("--milestones", type=int, nargs="+",
                   help="epochs where the lr is multiplied by gamma; default: " + _recipe_default("milestones"))
    p.add_argument("--num_workers", type=int, help="data loader processes; default: 4 as the public code, at most one per core "
                   f"(here: {config.COMMON['num_workers']})")
    p.add_argument("--momentum", type=float, help=f"default: {config.COMMON['momentum']}")
    p.add_argument("--weight_decay", type=float, help=f"default: {config.COMMON['weight_decay']}")
    p.add_argument("--gamma", type=float, help=f"lr factor at each milestone; default: {config.COMMON['gamma']}")
    p.add_argument("--seed", type=int, help=f"default: {config.COMMON['seed']}")
    p.add_argument("--save_interval", type=int,
                   help=f"write a resumable checkpoint every N epochs; default: {config.COMMON['save_interval']}")
    p.add_argument("--val_dataset", metavar="FOLDER",
                   help="validation set in WIDER layout (images/, wider_val.txt, ground_truth/): APs to "
                        "val_log.csv, best Hard AP kept as <network>_best.pth")
    p.add_argument("--val_backend", choices=BACKENDS, default="eager",
                   help="what runs the network for --val_dataset (see detect.py --backend); INT8 is "
                        "calibrated afresh at each validation, on synthetic training images")
    p.add_argument("--val_interval", type=int,
                   help=f"validate every N epochs and after the last; default: {config.COMMON['val_interval']}")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any other setting of config.py, e.g. loss_weights.probability=25")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the --resume command in messages
    if args.ngpu != 1:
        raise TDKDError(f"--ngpu {args.ngpu}: multi-GPU training runs through DistributedDataParallel; "
                        f"use 'torchrun --nproc_per_node={args.ngpu} train.py ...' instead")
    if args.img_dim is not None and not 0 < args.img_dim <= config.MAX_IMG_DIM:
        raise TDKDError(f"--img_dim {args.img_dim}: expected 1 to {config.MAX_IMG_DIM} pixels (config.MAX_IMG_DIM; "
                        "the recipes use 640 or 840)")
    return args


class Trainer:
    """Owns the models, optimiser and data of one run; ``fit`` trains and writes weights."""

    def __init__(self, args, ctx, plan=None):
        self.args, self.ctx = args, ctx
        self.plan = plan or plan_run(args, ctx.world_size)
        self.net_cfg, self.cfg = self.plan.net_cfg, self.plan.cfg
        self.mode, self.save_folder = args.mode, self.plan.save_folder
        torch.manual_seed(self.cfg["seed"])
        self.teacher = self._build_teacher() if self.mode == "distillation" else None
        self.model = self._build_model().to(ctx.device)
        self.memory_format = torch.channels_last if args.amp else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.distiller = self._build_distiller()
        params = list(self.model.parameters()) + [p for p in self._distiller_parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=self.cfg["lr"], momentum=self.cfg["momentum"],
                                         weight_decay=self.cfg["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, self.cfg["milestones"], self.cfg["gamma"])
        self.start_epoch, self.iteration, self.saved_epochs = 0, 0, []
        self.epoch_batches = 0  # batches of the current epoch trained (a run resumed mid-epoch starts past 0)
        self.last_checkpoint = None  # (path, what it holds) of the checkpoint a resume would start from
        if args.resume:
            self._restore(self.plan.resume, args.resume)
        self.current_epoch = self.start_epoch
        self.dataset, self.sampler, self.loader = self._build_data()
        self.batches_per_epoch = len(self.loader)
        if self.plan.from_detector and not args.resume:
            self._calibrate_task_convs()
        self.criterion = MultiBoxLoss(self.cfg["overlap_threshold"], self.cfg["negpos_ratio"], self.net_cfg["variance"])
        size = (self.cfg["img_dim"], self.cfg["img_dim"])
        self.priors = prior_boxes(self.net_cfg, size).to(ctx.device)
        self.shapes = level_shapes(self.net_cfg, size)
        amp_dtype = torch.float16 if ctx.device.type == "cuda" else torch.bfloat16
        self.autocast = (lambda: torch.autocast(ctx.device.type, dtype=amp_dtype)) if args.amp else nullcontext
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.amp and ctx.device.type == "cuda")
        if args.compile:
            for module in (self.model, self.teacher):
                if module is not None:
                    module.compile()
        self.train_model = self._wrap(self.model)
        trainable = any(p.requires_grad for p in self._distiller_parameters())
        self.train_distiller = self._wrap(self.distiller) if trainable else self.distiller
        self.logger = CSVLogger(self._path("train_log.csv"), self.iteration if args.resume else None) if ctx.is_main else None
        self.validator = Validator(self, args.val_dataset) if args.val_dataset else None

    def _build_model(self):
        start, task_heads = self.plan.start, self.mode == "teacher"
        if start is None:
            return build_model(self.net_cfg, task_heads=task_heads, backbone_weights=self.plan.backbone_weights)
        if not self.plan.from_detector:
            return load_state(build_model(self.net_cfg, task_heads=task_heads), start.state, start.path)
        detector = load_state(build_model(self.net_cfg), start.state, start.path)
        if self.ctx.is_main:
            print(f"teacher made from the detector {start.path} (no task heads): its task convs start as identities, "
                  f"so its outputs equal the detector's; recipe '{self.cfg['recipe']}' fine-tunes it", flush=True)
        return teacher_from_detector(detector, self.net_cfg)

    @torch.no_grad()
    def _calibrate_task_convs(self):
        """The identity task convs of a teacher made from a detector take the statistics of
        their input on the first ``calibration_batches`` training batches (models/teacher.py)."""
        self.dataset.set_epoch(self.start_epoch)
        batches = (images.to(self.ctx.device) for images, _ in
                   itertools.islice(self.loader, self.cfg["calibration_batches"]))
        images = calibrate_task_convs(self.model, batches)
        if self.ctx.is_main:
            print(f"task convs: BatchNorm statistics of the SSH features of {images} training images", flush=True)

    def _build_teacher(self):
        teacher = self.plan.teacher
        self.teacher_cfg = config.network_config(teacher.network, teacher.activation)
        model = load_state(build_model(self.teacher_cfg, task_heads=True), teacher.state, teacher.path)
        return frozen_inference_copy(model.to(self.ctx.device))

    def _build_distiller(self):
        if self.teacher is None:
            return None
        distiller = build_distiller(self.cfg, self.net_cfg["out_channel"], self.teacher_cfg["out_channel"])
        return distiller.to(self.ctx.device)

    def _distiller_parameters(self):
        return list(self.distiller.parameters()) if self.distiller is not None else []

    def _init_adapters(self):
        """Set the adapters as ``adapter_init`` says before the first step, the same on every
        process; a resumed run keeps its checkpoint's."""
        if self.distiller is None or self.args.resume or self.cfg["adapter_init"] == "random":
            return
        start, mode = time.perf_counter(), self.cfg["adapter_init"]
        statistics = self._adapter_statistics() if mode == "lstsq" else None
        self.distiller.init_adapters(mode, statistics, self.cfg["adapter_ridge"])
        if self.ctx.distributed:
            for param in self.distiller.parameters():
                torch.distributed.broadcast(param.data, src=0)
        if self.ctx.is_main:
            print(f"adapters: {mode} init in {time.perf_counter() - start:.1f} s", flush=True)

    @torch.no_grad()
    def _adapter_statistics(self):
        """The adapters' least-squares statistics of the starting student (eval mode, so its
        batch-norm statistics stay as loaded) on the first ``adapter_init_batches`` training
        batches, summed over the processes."""
        self.model.eval()
        self.sampler.set_epoch(self.start_epoch)
        self.dataset.set_epoch(self.start_epoch)
        total = None
        for images, targets in itertools.islice(self.loader, self.cfg["adapter_init_batches"]):
            images, targets = self._inputs(images, targets)
            outputs = _to_float(self.model(images))
            _, match = self.criterion(outputs, self.priors, targets)
            teacher_outputs = _to_float(self._teacher_outputs(images))
            total = add_statistics(total, self.distiller.adapter_statistics(outputs, teacher_outputs, match, self.shapes))
        if self.ctx.distributed:
            for group in total:
                for stats in group:
                    torch.distributed.all_reduce(stats)
        return total

    def _build_data(self):
        dataset = WiderFaceDetection(self.args.training_dataset, TrainTransform(self.cfg["img_dim"], self.cfg["rgb_mean"]),
                                     seed=self.cfg["seed"], max_pixels=self.cfg["max_pixels"])
        sampler = ResumableSampler(dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                   shuffle=True, seed=self.cfg["seed"])
        loader = DataLoader(dataset, batch_size=self.cfg["batch_size"] // self.ctx.world_size, sampler=sampler,
                            num_workers=self.cfg["num_workers"], collate_fn=detection_collate,
                            pin_memory=self.ctx.device.type == "cuda", persistent_workers=self.cfg["num_workers"] > 0)
        return dataset, sampler, loader

    def _wrap(self, module):
        if not self.ctx.distributed:
            return module
        device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def _path(self, name):
        return os.path.join(self.save_folder, name)

    def _restore(self, state, path):
        """Continue the run of ``state`` (read and checked by ``plan_run``), read from ``path``."""
        load_state(self.model, state["model"], path)
        if self.distiller is not None:
            load_state(self.distiller, state.get("distiller", {}), path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise TDKDError(located(path, f"its optimiser state does not fit this run's parameters ({exc})")) from None
        self.start_epoch, self.iteration = state["epoch"], state["iteration"]
        self.epoch_batches = state.get("epoch_batches", 0)
        torch.set_rng_state(state["torch_rng"])
        self.last_checkpoint = (path, self._position(self.start_epoch, self.epoch_batches))

    @staticmethod
    def _position(epoch, batches):
        """Where a checkpoint stands, in words."""
        if batches:
            return f"epoch {epoch + 1}, after {batches} of its iterations"
        return f"after epoch {epoch}" if epoch else "before the first epoch"

    def _checkpoint(self, epoch):
        """The resumable state before epoch index ``epoch``, ``epoch_batches`` of its batches done."""
        state = dict(
            mode=self.mode, network=self.net_cfg["name"], activation=self.net_cfg["activation"],
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), epoch=epoch, epoch_batches=self.epoch_batches,
            iteration=self.iteration, torch_rng=torch.get_rng_state(), config=json.dumps(self.cfg),
        )
        if self.distiller is not None:
            state["distiller"] = self.distiller.state_dict()
        return state

    def fit(self):
        """Train from ``start_epoch`` to ``max_epoch``; returns the trained (unwrapped) model.
        Ctrl-C ends it with ``TrainingInterrupted``, which says what was saved."""
        try:
            with InterruptRequest() as self.interrupt:
                return self._fit()
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._interrupted() if self.ctx.is_main else "") from None

    def _fit(self):
        if self.ctx.is_main:
            print(self.describe(), flush=True)
        self._init_adapters()
        for epoch in range(self.start_epoch, self.cfg["max_epoch"]):
            self._train_epoch(epoch)
            ended = self.epoch_batches == self.batches_per_epoch
            if ended:
                self.scheduler.step()
                self.epoch_batches = 0
            finished = bool(self.args.max_iter) and self.iteration >= self.args.max_iter
            self._check_weights_finite(epoch + 1)
            if self.ctx.is_main:
                self._save_checkpoint(epoch + 1 if ended else epoch)
                if self.validator and self.validator.due(epoch + 1, finished):
                    self.validator.run(epoch)
            if finished:
                break
        if self.ctx.is_main:
            self._save_final()
            print(self.saved_files(), flush=True)
        return self.model

    def _interrupted(self):
        """One line on Ctrl-C: where training stood, the checkpoint to resume from and how."""
        where = f"interrupted in epoch {self.current_epoch + 1} at iteration {self.iteration + 1}"
        if self.last_checkpoint is None:
            return f"{where}: no checkpoint was written yet (the first comes at the end of epoch 1); nothing to resume"
        path, position = self.last_checkpoint
        return (f"{where}: last checkpoint {path} ({position}); resume with: "
                f"{resume_command(self.args, path, self.ctx.world_size)}")

    def describe(self):
        """The resolved run, one block: what trains, on what, with which settings, where to."""
        run = f"train.py --mode {self.mode}: {self.net_cfg['name']} ({self.net_cfg['activation']})"
        if self.teacher is not None:
            run += f", teacher {self.teacher_cfg['name']} ({self.teacher_cfg['activation']}) from {self.plan.teacher.path}"
        lines = [run + f", {self.ctx.world_size} process(es) on {self.ctx.device}" + (", amp" if self.args.amp else "")]
        lines += [f"  {key} = {json.dumps(value)}" for key, value in self.cfg.items()]
        if self.distiller is not None:
            lines.append("  " + describe_distiller(self.cfg))
        stop = f"; stops after iteration {self.args.max_iter} (--max_iter)" if self.args.max_iter else ""
        lines.append(f"  data: {self.args.training_dataset}, {len(self.dataset)} images, "
                     f"{len(self.loader)} iterations per epoch{stop}")
        if self.args.resume:
            lines.append(f"  resumed: {self.args.resume} ({self.last_checkpoint[1]}), iteration {self.iteration}")
        if self.validator:
            lines.append(f"  validation: {self.validator.folder}, {len(self.validator.names)} images, every "
                         f"{self.cfg['val_interval']} epochs")
        lines.append(f"  saving to: {os.path.abspath(self.save_folder)}")
        return "\n".join(lines)

    def saved_files(self):
        """Where this run's results are, one block (printed at the end)."""
        name = self.net_cfg["name"]
        files = [f"{name}_Final.pth (+ .json)", "checkpoint_last.pth (resume with --resume)"]
        if self.saved_epochs:
            files.append(f"{name}_epoch_<N>.pth for N = {', '.join(map(str, self.saved_epochs))}")
        files.append("train_log.csv")
        if self.validator:
            files += ["val_log.csv", f"{name}_best.pth (+ .json): " + self.validator.best_summary()]
        lines = [f"saved in {os.path.abspath(self.save_folder)}:"] + [f"  {f}" for f in files]
        lines.append(f"  curves: python -m utils.plot_log {self._path('train_log.csv')}")
        return "\n".join(lines)

    def _progress(self, epoch):
        """Description and last batch of an epoch (``batches_per_epoch``, or fewer under --max_iter)."""
        per_epoch, last_epoch, done = self.batches_per_epoch, self.cfg["max_epoch"], self.epoch_batches
        if not self.args.max_iter:
            return f"{self.mode} epoch {epoch + 1}/{last_epoch}", per_epoch
        left = max(1, self.args.max_iter - self.iteration)
        last_epoch = min(last_epoch, epoch + math.ceil((done + left) / per_epoch))
        return f"{self.mode} epoch {epoch + 1}/{last_epoch} (--max_iter {self.args.max_iter})", min(per_epoch, done + left)

    def _batches(self, epoch):
        """The epoch's batches from ``epoch_batches`` on: the same ones as an uninterrupted run
        (the order depends on the seed and epoch only); skipped ones are not loaded. The loader
        of a part-epoch draws no torch random number, so the RNG stays as the checkpoint left it."""
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        self.sampler.skip = self.epoch_batches * self.loader.batch_size
        if not self.sampler.skip:
            return iter(self.loader)
        with torch.random.fork_rng(devices=[]):
            return iter(self.loader)

    def _train_epoch(self, epoch):
        self.model.train()
        self.current_epoch = epoch
        desc, last = self._progress(epoch)
        batches = itertools.islice(self._batches(epoch), last - self.epoch_batches)
        bar = tqdm(batches, desc=desc, initial=self.epoch_batches, total=last, disable=not self.ctx.is_main,
                   dynamic_ncols=True)
        for images, targets in bar:
            self.interrupt.check()
            start = time.perf_counter()
            losses = self._step(images, targets)
            self.iteration += 1
            self.epoch_batches += 1
            if self.ctx.is_main:
                values = dict(zip(losses, torch.stack(list(losses.values())).tolist()))  # one device sync
                row = dict(epoch=epoch, iteration=self.iteration, lr=self.optimizer.param_groups[0]["lr"],
                           **values, seconds=time.perf_counter() - start)
                self.logger.log(row)
                bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
                if self.iteration == 1 and self.teacher is not None:
                    warning = dominance_warning(values, self.cfg["loss_weights"])
                    if warning:
                        tqdm.write(warning)

    def _step(self, images, targets):
        """One training iteration; bench/train_speed.py times the same calls one by one."""
        images, targets = self._inputs(images, targets)
        outputs = self._student_forward(images)
        teacher_outputs = self._teacher_forward(images) if self.teacher is not None else None
        losses, match = self.criterion(outputs, self.priors, targets)
        if self.teacher is not None:
            losses.update(self._distillation_losses(outputs, teacher_outputs, match))
        total = self._total_loss(losses)
        self._update(total)
        return {k: v.detach() for k, v in losses.items()}

    def _student_forward(self, images):
        """With ``--amp`` the student runs channels-last too (about 1.3x faster on a CPU): its
        numbers move by rounding either way, so the reference's layout no longer buys equality."""
        with self.autocast():
            return _to_float(self.train_model(images.contiguous(memory_format=self.memory_format)))

    def _teacher_forward(self, images):
        with self.autocast():
            return _to_float(self._teacher_outputs(images))

    def _distillation_losses(self, outputs, teacher_outputs, match):
        """The distiller's terms; on a fresh run's first step, first the check that the
        teacher's imitated features are not essentially zero (on every process)."""
        if self.iteration == 0:
            dead = self.distiller.dead_teacher_features(outputs, teacher_outputs, match, self.shapes)
            if not all_ranks_agree(self.ctx, not dead):
                raise TDKDError(f"{self.plan.teacher.path}: " + (dead_teacher_message(dead) if dead else
                                "the teacher's features are essentially zero on another process"))
        return self.train_distiller(outputs, teacher_outputs, match, self.shapes)

    def _total_loss(self, losses):
        """The weighted sum (distillation terms ramped up over the warm-up) in ``losses['total']``;
        a non-finite total stops the run on every process."""
        weights = self.cfg["loss_weights"]
        ramp = warmup_factor(self.iteration, self.cfg.get("distill_warmup", 0))
        total = sum(weights[name] * (ramp if name in TERMS else 1.0) * value for name, value in losses.items())
        losses["total"] = total
        if not all_ranks_agree(self.ctx, torch.isfinite(total).item()):
            terms = ", ".join(f"{k}={v.item():.6g}" for k, v in losses.items())
            raise TDKDError(f"non-finite loss at iteration {self.iteration + 1} ({terms}); training stopped, "
                            f"{self._last_good_checkpoint()}")
        return total

    def _update(self, total):
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _inputs(self, images, targets):
        """The batch on the device."""
        device = self.ctx.device
        return images.to(device, non_blocking=True), [t.to(device) for t in targets]

    @torch.no_grad()
    def _teacher_outputs(self, images):
        return self.teacher(images.contiguous(memory_format=torch.channels_last))

    def _last_good_checkpoint(self):
        return f"resume from {self.last_checkpoint[0]}" if self.last_checkpoint else "no checkpoint was written yet"

    def _check_weights_finite(self, epoch):
        """Every rank checks (the weights are the same on all), so all stop together."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TDKDError(f"weights became non-finite in epoch {epoch}; they were not saved, "
                            f"{self._last_good_checkpoint()}")

    def _save_checkpoint(self, epoch):
        """``checkpoint_last.pth`` before epoch index ``epoch`` (``epoch_batches`` of it done: a
        run stopped by --max_iter), after the epoch's snapshot ``<network>_epoch_<N>.pth`` when one
        is due, so that a kill between the two writes loses neither (resuming rewrites the same)."""
        state = self._checkpoint(epoch)
        if not self.epoch_batches and (epoch % self.cfg["save_interval"] == 0 or epoch == self.cfg["max_epoch"]):
            save_atomic(state, self._path(f"{self.net_cfg['name']}_epoch_{epoch}.pth"))
            self.saved_epochs.append(epoch)
        save_atomic(state, self._path("checkpoint_last.pth"))
        self.last_checkpoint = (self._path("checkpoint_last.pth"), self._position(epoch, self.epoch_batches))

    def _save_final(self):
        self.save_weights(f"{self.net_cfg['name']}_Final")

    def save_weights(self, stem, **extra):
        """``stem.json`` first, then ``stem.pth``: saved weights are always described."""
        meta = dict(network=self.net_cfg["name"], activation=self.net_cfg["activation"],
                    task_heads=self.mode == "teacher", mode=self.mode, **extra)
        write_text_atomic(json.dumps(meta, indent=2), self._path(f"{stem}.json"))
        save_atomic(self.model.state_dict(), self._path(f"{stem}.pth"))


class Validator:
    """A WIDER-layout val set evaluated during training (rank 0): the images written as
    ``test_widerface.py`` writes them (``val_predictions/``), evaluated by the fast evaluator,
    APs appended to ``val_log.csv``; the weights with the best Hard AP (the setting with every
    face, where a lightweight detector has most to gain) kept as ``<network>_best.pth``."""

    def __init__(self, trainer, folder):
        from widerface_evaluate.evaluation import load_ground_truth

        self.trainer, self.folder = trainer, folder
        self.images = os.path.join(folder, "images")
        if not os.path.isdir(self.images):
            raise TDKDError(located(folder, "--val_dataset needs images/, wider_val.txt and ground_truth/ "
                                            "(the WIDER FACE val layout); images/ not found"))
        self.names = read_val_list(os.path.join(folder, "wider_val.txt"))
        self.ground_truth = load_ground_truth(os.path.join(folder, "ground_truth"))
        self.predictions = trainer._path("val_predictions")
        self.logger = self.best = None
        if trainer.ctx.is_main:
            self.logger = CSVLogger(trainer._path("val_log.csv"), trainer.iteration if trainer.args.resume else None)
            rows = read_log(self.logger.path) if os.path.isfile(self.logger.path) else []
            self.best = max(rows, key=lambda r: r["hard"], default=None)

    def due(self, epoch, finished):
        return finished or epoch % self.trainer.cfg["val_interval"] == 0 or epoch == self.trainer.cfg["max_epoch"]

    def run(self, epoch):
        """Evaluate the model after epoch index ``epoch``; log it, keep it if best."""
        from widerface_evaluate.evaluation import SETTINGS, evaluate_predictions, read_predictions

        trainer, start = self.trainer, time.perf_counter()
        cfg = trainer.net_cfg
        network = build_predictor(trainer.args.val_backend, trainer.model.eval(), cfg, device=trainer.ctx.device)
        detector = FaceDetector(network, cfg, trainer.ctx.device)
        write_predictions(detector, self.images, self.names, self.predictions,
                          origin_size=trainer.cfg["val_origin_size"], progress=False, max_pixels=trainer.cfg["max_pixels"])
        aps = evaluate_predictions(read_predictions(self.predictions), self.ground_truth).aps
        row = dict(epoch=epoch, iteration=trainer.iteration, **aps, mean=sum(aps.values()) / len(aps),
                   seconds=time.perf_counter() - start)
        self.logger.log(row)
        improved = self.best is None or row["hard"] > self.best["hard"]
        if improved:
            self.best = row
            trainer.save_weights(f"{cfg['name']}_best", epoch=epoch + 1, **{f"{s}_ap": aps[s] for s in SETTINGS})
        tqdm.write(f"validation after epoch {epoch + 1}: " + ", ".join(f"{s} {aps[s]:.4f}" for s in SETTINGS)
                   + (" (best so far, saved)" if improved else f" (best: {self.best_summary()})"))

    def best_summary(self):
        if self.best is None:
            return "not validated yet"
        return f"epoch {int(self.best['epoch']) + 1}, hard AP {self.best['hard']:.4f}"


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start its epoch ``skip`` samples in (a run resumed
    mid-epoch), without loading the skipped ones."""
    skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self):
        return self.num_samples - self.skip


class InterruptRequest:
    """Ctrl-C during training takes effect between two iterations (``check``), where its
    KeyboardInterrupt cannot land in a data-loader worker's shutdown or a finaliser that would
    swallow it; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says what was saved and how to resume."""


def _to_float(outputs):
    return {k: ([t.float() for t in v] if isinstance(v, list) else v.float()) for k, v in outputs.items()}


def run(args):
    """Train as ``args`` says; returns the trained model (each rank its own copy)."""
    set_threads(args.threads, training=True)
    ctx = init_distributed(args.device)
    try:
        plan = plan_run(args, ctx.world_size)  # every input checked before anything is written
        if ctx.is_main:
            writable_folder(plan.save_folder)
        trainer = Trainer(args, ctx, plan)
        model = trainer.fit()
        del trainer  # its DistributedDataParallel wrappers hold the process group
        finish_distributed(ctx)
        return model
    finally:
        cleanup_distributed(ctx)


@exit_on_error
def main(argv=None):
    """Train; Ctrl-C ends with one line saying what was saved and exit status 130."""
    try:
        run(parse_args(argv))
    except KeyboardInterrupt as exc:
        message = str(exc) if isinstance(exc, TrainingInterrupted) else "interrupted before training started"
        if message:
            print(message, file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
