"""``repscope caricature IMAGE --layer L [--iters N]``: exaggerate what a layer sees in an image.

Writes one PNG per layer, ``grid.png`` (original + caricatures labelled with their gain),
``loss.png`` and ``result.json`` (per layer: ``gain`` = <Φ(x0),Φ(x*)>/‖Φ(x0)‖², iterations,
seconds, every hyperparameter); see :func:`repscope.preimage.invert_layers` (``method="caricature"``).
"""

from __future__ import annotations

import argparse

from .preimage_common import register_per_layer, run_per_layer


def register(subparsers) -> None:
    register_per_layer(subparsers, "caricature", "exaggerate the patterns a layer detects in an image", run)


def run(args: argparse.Namespace) -> dict:
    return run_per_layer(args, "caricature")
