from .distiller import TaskDecoupledDistiller, build_distiller
from .matching import match_priors
from .multibox_loss import MatchResult, MultiBoxLoss
from .prior_box import level_counts, level_shapes, prior_boxes

__all__ = ["TaskDecoupledDistiller", "build_distiller", "match_priors", "MatchResult", "MultiBoxLoss",
           "level_counts", "level_shapes", "prior_boxes"]
