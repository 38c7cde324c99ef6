from .augment import TrainTransform
from .wider_face import WiderFaceDetection, detection_collate, parse_label_file

__all__ = ["TrainTransform", "WiderFaceDetection", "detection_collate", "parse_label_file"]
