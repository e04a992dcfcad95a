"""Detection on representations: proposals, R-CNN, SPP and Fast R-CNN (the talk's applications).

Modules: :mod:`.proposals` (Selective Search, sliding-window grid), :mod:`.data` (synthetic scenes,
VOC folders), :mod:`.roi` (RoI / SPP / mean pooling at ``spatial_scale = 1 / stride``), :mod:`.rcnn`
(warped crops; the zero-training ImageNet path), :mod:`.heads` (Fast R-CNN head, R-CNN linear
scorers), :mod:`.train`, :mod:`.detector` (proposals → scores → NMS; save / load), :mod:`.metrics`
(VOC07 AP, mAP, CorLoc), :mod:`.boxes`, :mod:`.plots`. Imported on demand (``import
repscope.detection``), so ``import repscope`` does not load torchvision or OpenCV.

Example:
    >>> import repscope, repscope.detection as det                              # doctest: +SKIP
    >>> model = repscope.load("efficientnet_lite0")                             # doctest: +SKIP
    >>> train = det.synthetic("train", n=80)                                    # doctest: +SKIP
    >>> detector, losses = det.train_fast_rcnn(model, "blocks.6", train)        # doctest: +SKIP
    >>> det.evaluate_detector(detector, det.synthetic("test", n=40))["map"]     # doctest: +SKIP
"""

from .data import Dataset, Scene, load_data, load_voc, synthetic, write_voc
from .detector import Detector, DetectorConfig, evaluate_detector, imagenet_detector
from .metrics import Detections, corloc, evaluate
from .proposals import grid_proposals, propose, selective_search
from .roi import RoIPool, SpatialPyramidPool, roi_max_pool, roi_mean, spp_pool
from .train import train_detector, train_fast_rcnn, train_rcnn

__all__ = [
    "Dataset", "Detections", "Detector", "DetectorConfig", "RoIPool", "Scene", "SpatialPyramidPool", "corloc",
    "evaluate", "evaluate_detector", "grid_proposals", "imagenet_detector", "load_data", "load_voc", "propose",
    "roi_max_pool", "roi_mean", "selective_search", "spp_pool", "synthetic", "train_detector", "train_fast_rcnn",
    "train_rcnn", "write_voc",
]
