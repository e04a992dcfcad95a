"""Published numbers the report prints beside ours, each with its source (always labelled as such).

Taken from the papers of the talk; the images, networks and protocols differ from repscope's runs,
so a comparison is indicative only.
"""

from __future__ import annotations

#: Mahendran & Vedaldi, CVPR 2015, Table 1: mean normalised reconstruction error (%) of HOG inversion
#: on their images (decimals as recalled from the paper; approximate).
HOG_INVERSION = {
    "source": "Mahendran & Vedaldi, CVPR 2015, Table 1 (their images; mean normalised error)",
    "rows": [("HOGgles (Vondrick et al. 2013)", 66.20), ("HOG, M&V", 28.10),
             ("HOG with bilinear orientations (HOGb), M&V", 10.67), ("DSIFT, M&V", 10.89)],
}

#: which published row a repscope HOG model name compares with
HOG_MATCH = {"hog": "HOG, M&V", "hog:uoctti": "HOG, M&V", "hog:uoctti,bilinear=1": "HOG with bilinear orientations (HOGb), M&V"}

#: Lenc & Vedaldi, CVPR 2015: top-1 error of AlexNet with a learned stitch at conv1..conv5
#: (AlexNet alone: 0.43; an identity stitch: > 0.99).
STITCHING = {
    "source": "Lenc & Vedaldi, CVPR 2015 (AlexNet conv1–conv5, learned linear stitch, top-1 error; baseline 0.43)",
    "header": ["stitched from", "conv1", "conv2", "conv3", "conv4", "conv5"],
    "rows": [("ImageNet AlexNet (other seed) → AlexNet", 0.43, 0.46, 0.46, 0.46, 0.50),
             ("Places AlexNet → AlexNet", 0.43, 0.47, 0.50, 0.54, 0.65)],
}

#: detection numbers as printed in the talk (VOC 2007 test mAP, %), and WSDDN's CorLoc
DETECTION = {
    "source": "Girshick et al. 2014 (R-CNN); Bilen & Vedaldi, CVPR 2016 (WSDDN); VOC 2007 test",
    "rows": [("R-CNN (TorontoNet), mAP", 54.2), ("R-CNN + box regression, mAP", 58.5), ("R-CNN (VGG-VD), mAP", 62.1),
             ("WSDDN VGG-F, mAP", 34.5), ("WSDDN ensemble, mAP", 39.3), ("WSDDN ensemble, CorLoc (trainval)", 58.0)],
}

#: Kornblith et al. 2019 give no single number to compare with; their finding is stated in words.
CKA_FINDING = ("Kornblith et al. (ICML 2019): linear CKA finds corresponding layers of networks trained from "
               "different seeds (the diagonal of the heat-map); biased CKA is large even for independent inputs "
               "at small n, which the debiased estimator removes.")
