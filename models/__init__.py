from .retinaface import DeployableRetinaFace, RetinaFace, build_model

__all__ = ["RetinaFace", "DeployableRetinaFace", "build_model"]
