"""HOG as a differentiable representation: Dalal–Triggs (= scikit-image) and UoCTTI (= VLFeat).

The talk uses HOG as the shallow representation to invert (Mahendran & Vedaldi, CVPR 2015,
compare with HOGgles, Vondrick et al. 2013) and as the textbook equivariant representation
(rotating the image permutes orientation bins). Here HOG is an ``nn.Module`` on images in [0, 1]
with a ``stride`` and ``receptive_field``, so the pre-image, backprop and equivariance engines use
it exactly like a CNN layer.

* :func:`hog` / :class:`HOG` — the operator pair; variants ``"uoctti"`` (default; 31 channels per
  8×8 cell: 18 directed + 9 undirected orientations + 4 texture energies, VLFeat ``vl_hog``) and
  ``"dalal-triggs"`` (block descriptors equal to ``skimage.feature.hog(..., feature_vector=False)``).
* :func:`hog_from_name` / :func:`parse_hog_name` — ``"hog:dalal-triggs,orientations=8,cell=8"``.
* :func:`render_glyphs` — the usual oriented-stroke picture of a HOG map.
* Formulas: :mod:`repscope.hog.dalal_triggs`, :mod:`repscope.hog.uoctti`.
* ``compiled=True`` fuses the per-pixel passes with ``torch.compile`` (large batches; the first
  call per input shape compiles for seconds to tens of seconds).

Differentiability: values are exact (no ε is added to gradients); the derivative of ``|g|`` and
of ``atan2`` at ``g = 0`` is taken as 0, hard orientation/channel choices are piecewise constant,
block norms use the references' ε (scikit-image 1e-5, VLFeat 1e-4).

Example:
    >>> import torch
    >>> from repscope.hog import HOG, render_glyphs
    >>> phi = HOG()                                   # UoCTTI, cell 8
    >>> x = torch.rand(1, 3, 128, 128, requires_grad=True)
    >>> f = phi(x); f.shape, phi.stride, phi.receptive_field
    (torch.Size([1, 31, 16, 16]), 8, 34)
    >>> f.square().sum().backward()                   # differentiable
    >>> render_glyphs(f[0]).shape
    torch.Size([3, 256, 256])
"""

from .api import HOG, VARIANTS, hog, hog_from_name, hog_kwargs, parse_hog_name
from .dalal_triggs import dalal_triggs_hog, to_skimage_layout
from .glyphs import render_glyphs
from .uoctti import uoctti_histograms, uoctti_hog

__all__ = [
    "HOG",
    "VARIANTS",
    "dalal_triggs_hog",
    "hog",
    "hog_from_name",
    "hog_kwargs",
    "parse_hog_name",
    "render_glyphs",
    "to_skimage_layout",
    "uoctti_histograms",
    "uoctti_hog",
]
