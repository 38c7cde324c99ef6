"""The public TDKD training iteration, transcribed (the oracle of bench/train_speed.py's
``public-distill-mobile0.75`` case), and the check that this repository's MultiBoxLoss and its
``public`` distiller compute the same losses from the same networks and batch.

The transcription keeps the public code's work, call for call: an unfused teacher in eval
mode called without ``no_grad`` (its parameters only set not to need gradients), matching
image by image in a Python loop, the loss's global-max log-sum-exp and mining, the feature
masks repeated over channels, adapters kept in a plain list (never optimised) and one
``.item()`` per logged loss. Two things differ from the public file, neither of them work: the
``.cuda()`` calls are left out (the public code runs only on CUDA), and the level splits
follow the real levels (the public code hard-codes 640x640's 12,800 / 16,000: the same split
at 640). The total weighs the terms as docs/METHOD.md §5 (1.0 feature, 50 probability).
"""
import torch
import torch.nn.functional as F
from torch import nn

import config
from layers import MultiBoxLoss, build_distiller
from layers.prior_box import level_shapes, prior_boxes
from models import build_model
from tests.test_matching_batch import _public_match

NEGPOS_RATIO, DISTILL_RATIO, THRESHOLD = 7, 3, 0.35


def public_log_sum_exp(x):
    """The public ``log_sum_exp``: one maximum over the whole batch."""
    x_max = x.data.max()
    return torch.log(torch.sum(torch.exp(x - x_max), 1, keepdim=True)) + x_max


def public_multibox_loss(loc_data, conf_data, landm_data, priors, targets):
    """The public MultiBoxLoss: ``(loss_l, loss_c, loss_landm, pos, distill_neg)``."""
    num, num_priors = loc_data.size(0), priors.size(0)
    loc_t, landm_t = torch.zeros(num, num_priors, 4), torch.zeros(num, num_priors, 10)
    conf_t = torch.zeros(num, num_priors, dtype=torch.long)
    for idx in range(num):
        loc_t[idx], conf_t[idx], landm_t[idx] = _public_match(targets[idx][:, :4], targets[idx][:, -1],
                                                              targets[idx][:, 4:14], priors, THRESHOLD)
    loc_t, conf_t, landm_t = loc_t.to(loc_data.device), conf_t.to(loc_data.device), landm_t.to(loc_data.device)
    pos1 = conf_t > 0
    n1 = max(pos1.long().sum().float(), 1)
    loss_landm = F.smooth_l1_loss(landm_data[pos1], landm_t[pos1], reduction="sum")
    pos = conf_t != 0
    conf_t[pos] = 1
    loss_l = F.smooth_l1_loss(loc_data[pos], loc_t[pos], reduction="sum")

    batch_conf = conf_data.view(-1, 2)
    loss_c = public_log_sum_exp(batch_conf) - batch_conf.gather(1, conf_t.view(-1, 1))
    loss_c[pos.view(-1, 1)] = 0
    loss_c = loss_c.view(num, -1)
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    neg = idx_rank < torch.clamp(NEGPOS_RATIO * num_pos, max=pos.size(1) - 1)
    distill_neg = idx_rank < torch.clamp(DISTILL_RATIO * num_pos, max=pos.size(1) - 1)
    selected = (pos + neg).gt(0)
    loss_c = F.cross_entropy(conf_data[selected].view(-1, 2), conf_t[selected], reduction="sum")
    n = max(num_pos.sum().float(), 1)
    return loss_l / n, loss_c / n, loss_landm / n1, pos, distill_neg


class PublicTDKD(nn.Module):
    """The public ``TDKD`` module: adapters in a plain list, ``FeatLoss`` and ``ProbLoss``."""

    def __init__(self, channels=64, levels=3):
        super().__init__()
        self.adpt_loc_list = [nn.Conv2d(channels, channels, 1, bias=False) for _ in range(levels)]
        self.adpt_cls_list = [nn.Conv2d(channels, channels, 1, bias=False) for _ in range(levels)]

    def forward(self, student, teacher, pos, neg):
        counts = [f.shape[2] * f.shape[3] * 2 for f in teacher["cls_features"]]
        num = pos.shape[0]
        loc_list = [p.view(num, -1, 2).sum(dim=2) > 0 for p in torch.split(pos, counts, 1)]
        cls_list = [c.view(num, -1, 2).sum(dim=2) > 0
                    for c in torch.split((neg.long() + pos.long()) > 0, counts, 1)]
        stu_loc = [adapt(f) for adapt, f in zip(self.adpt_loc_list, student["features"])]
        stu_cls = [adapt(f) for adapt, f in zip(self.adpt_cls_list, student["features"])]
        feat_loss = self.feat_loss(stu_loc, stu_cls, teacher["reg_features"], teacher["cls_features"],
                                   loc_list, cls_list)
        return feat_loss, self.prob_loss(F.softmax(student["conf"], dim=-1), F.softmax(teacher["conf"], dim=-1))

    @staticmethod
    def feat_loss(stu_loc, stu_cls, tea_loc, tea_cls, loc_masks, cls_masks):
        cls_loss = loc_loss = 0
        for i in range(len(stu_cls)):
            b, c, h, w = tea_cls[i].shape
            mask_cls = cls_masks[i].view(b, -1).unsqueeze(2).repeat(1, 1, c).permute(0, 2, 1)
            mask_loc = loc_masks[i].view(b, -1).unsqueeze(2).repeat(1, 1, c).permute(0, 2, 1)
            n_cls = max(1, mask_cls.sum() * 2 // c) * 1.0
            n_loc = max(1, mask_loc.sum() * 2 // c) * 1.0
            cls_loss += (torch.pow(stu_cls[i].reshape(b, c, -1) - tea_cls[i].reshape(b, c, -1), 2)
                         * mask_cls.float()).sum() / n_cls
            loc_loss += (torch.pow(stu_loc[i].reshape(b, c, -1) - tea_loc[i].reshape(b, c, -1), 2)
                         * mask_loc.float()).sum() / n_loc
        return cls_loss + loc_loss

    @staticmethod
    def prob_loss(p_s, p_t):
        mask = (p_t > 0.1) * (p_t < 0.9)
        n = max(1, mask.sum()) * 1.0
        return (p_t[mask].view(-1) - p_s[mask].view(-1)).pow(2).sum() / n


class PublicStep:
    """One public training iteration: ``step(images, targets, lap)`` calls ``lap(part)`` after
    each part (bench/train_speed.py's PARTS) and returns the five logged loss values."""

    def __init__(self, student, teacher, priors, lr=1e-3):
        self.student, self.teacher, self.priors = student.train(), teacher.eval(), priors
        for param in teacher.parameters():
            param.requires_grad = False
        self.tdkd = PublicTDKD()
        self.optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)

    def step(self, images, targets, lap=lambda part: None):
        out = self.student(images)
        lap("student forward")
        teacher_out = self.teacher(images)
        lap("teacher forward")
        self.optimizer.zero_grad()
        loss_l, loss_c, loss_landm, pos, neg = public_multibox_loss(out["loc"], out["conf"], out["landms"],
                                                                    self.priors, targets)
        lap("MultiBoxLoss")
        feat_loss, prob_loss = self.tdkd(out, teacher_out, pos, neg)
        lap("distillation")
        loss = 2.0 * loss_l + loss_c + loss_landm + 1.0 * feat_loss + 50 * prob_loss
        loss.backward()
        lap("backward")
        self.optimizer.step()
        lap("optimiser")
        return [loss_l.item(), loss_c.item(), loss_landm.item(), feat_loss.item(), prob_loss.item() * 50]


def _networks_and_batch(size=96, batch=2):
    torch.manual_seed(0)
    student = build_model(config.network_config("mobile0.25"))
    teacher = build_model(config.network_config("mobile0.75"), task_heads=True).eval()
    images = torch.randn(batch, 3, size, size) * 50
    targets = [torch.tensor([[0.1, 0.1, 0.5, 0.55] + [0.3] * 10 + [1.0],
                             [0.55, 0.5, 0.9, 0.95] + [-1.0] * 10 + [-1.0]]),
               torch.tensor([[0.2, 0.3, 0.45, 0.6] + [0.35] * 10 + [1.0]])]
    return student, teacher, images, targets, prior_boxes(config.network_config("mobile0.25"), (size, size))


def test_multibox_loss_equals_the_public_loss():
    student, _, images, targets, priors = _networks_and_batch()
    out = student(images)
    losses, match = MultiBoxLoss()(out, priors, targets)
    loss_l, loss_c, loss_landm, pos, distill_neg = public_multibox_loss(out["loc"], out["conf"], out["landms"],
                                                                        priors, targets)
    assert pos.sum() > 0 and torch.equal(match.positives, pos)
    assert torch.equal(match.hard_negatives(DISTILL_RATIO), distill_neg)
    for ours, public in ((losses["loc"], loss_l), (losses["conf"], loss_c), (losses["landm"], loss_landm)):
        assert torch.allclose(ours, public, rtol=1e-5), (ours, public)


def test_public_distiller_equals_the_public_tdkd_with_the_same_adapters():
    student, teacher, images, targets, priors = _networks_and_batch()
    out, teacher_out = student(images), teacher(images)
    _, match = MultiBoxLoss()(out, priors, targets)
    cfg = config.apply_overrides(config.training_config("distillation", "mobile0.25"), ["distiller=public"])
    distiller = build_distiller(cfg, 64, 64)
    public = PublicTDKD()
    for ours, theirs in ((distiller.cls_adapters, public.adpt_cls_list), (distiller.reg_adapters, public.adpt_loc_list)):
        for ours_level, theirs_level in zip(ours, theirs):
            theirs_level.weight.data.copy_(ours_level.weight.data)
    losses = distiller(out, teacher_out, match, level_shapes(config.network_config("mobile0.25"), (96, 96)))
    feat_loss, prob_loss = public(out, teacher_out, match.positives, match.hard_negatives(DISTILL_RATIO))
    assert feat_loss > 0 and prob_loss > 0
    assert torch.allclose(losses["feature"], feat_loss, rtol=1e-5)
    assert torch.allclose(losses["probability"], prob_loss, rtol=1e-5)


def test_public_step_trains_the_student_and_never_the_adapters():
    student, teacher, images, targets, priors = _networks_and_batch()
    step = PublicStep(student, teacher, priors, lr=1e-2)
    adapters = [a.weight.clone() for a in step.tdkd.adpt_cls_list]
    before = student.ClassHead[0].conv1x1.weight.clone()
    parts = []
    logged = step.step(images, targets, parts.append)
    assert parts == ["student forward", "teacher forward", "MultiBoxLoss", "distillation", "backward", "optimiser"]
    assert len(logged) == 5 and all(torch.isfinite(torch.tensor(logged)))
    assert not torch.equal(before, student.ClassHead[0].conv1x1.weight)
    assert all(torch.equal(a, b.weight) for a, b in zip(adapters, step.tdkd.adpt_cls_list))
    assert not any(p.requires_grad for p in teacher.parameters())
