"""``repscope invert IMAGE --layer L [--layer L2 ...] [--iters N]``: reconstruct an image from a layer.

Writes one PNG per layer, ``grid.png`` (original + one pre-image per layer, labelled with the
error), ``loss.png`` and ``result.json`` (per layer: ``error``, iterations, seconds, every
hyperparameter); see :func:`repscope.preimage.invert_layers`.
"""

from __future__ import annotations

import argparse

from .preimage_common import register_per_layer, run_per_layer


def register(subparsers) -> None:
    register_per_layer(subparsers, "invert", "reconstruct an image from a layer's representation", run)


def run(args: argparse.Namespace) -> dict:
    return run_per_layer(args, "invert")
