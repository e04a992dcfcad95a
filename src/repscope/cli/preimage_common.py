"""What the pre-image commands (``invert``, ``caricature``, ``maximize``) share: their options, the
configuration they describe, and the per-layer command."""

from __future__ import annotations

import argparse
import math

from ..bounds import OPTIONS
from ..errors import RepscopeError
from . import common


def add_preimage_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the pre-image energy and optimiser (see ``repscope.preimage.PreimageConfig``)."""
    g = parser.add_argument_group("pre-image")
    g.add_argument("--iters", type=OPTIONS["--iters"], default=200, help="iterations (default 200)")
    g.add_argument("--optimizer", choices=["momentum", "adam"], default="momentum",
                   help="momentum: the papers' momentum AdaGrad (default); adam")
    g.add_argument("--lr", type=OPTIONS["--lr"], default=None, help="learning rate (default: the paper's rule)")
    g.add_argument("--beta", type=OPTIONS["--beta"], default=2.0, help="TV exponent: 2 smooth (default), 1 spiky")
    g.add_argument("--tv-weight", type=OPTIONS["--tv-weight"], default=None, help="lambda_TV (default (6.5/sigma)^beta)")
    g.add_argument("--alpha-weight", type=OPTIONS["--alpha-weight"], default=0.0, help="lambda_alpha (default 0; paper: sigma^-6 = 3.8e-12)")
    g.add_argument("--data-weight", type=OPTIONS["--data-weight"], default=None, help="weight C of the data term (default: by stride)")
    g.add_argument("--jitter", type=OPTIONS["--jitter"], default=None, help="max translation in pixels (default stride/4)")
    g.add_argument("--bound", type=OPTIONS["--bound"], default=None, help="radius B of the pixel colour ball, 0-255 units (paper: 160)")
    g.add_argument("--pyramid", type=OPTIONS["--pyramid"], default=None,
                   help="coarse levels of the canvas (default: by image size, 5 at 224; 0: pixels, as in the paper)")


def preimage_config(args: argparse.Namespace):
    """The :class:`PreimageConfig` the options describe."""
    from ..preimage import PreimageConfig

    for option in ("iters", "lr", "beta", "tv_weight", "alpha_weight", "data_weight", "jitter", "bound", "pyramid"):
        value = getattr(args, option)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise RepscopeError(f"--{option.replace('_', '-')} must be a finite number >= 0, got {value}.")
    if args.iters < 1:
        raise RepscopeError(f"--iters must be at least 1, got {args.iters}. Use e.g. --iters 200.")
    return PreimageConfig(
        iters=args.iters, optimizer=args.optimizer, lr=args.lr, beta=args.beta, lambda_tv=args.tv_weight,
        lambda_alpha=args.alpha_weight, data_weight=args.data_weight, jitter=args.jitter, bound=args.bound,
        pyramid=args.pyramid,
    )


#: the ``--help`` text after the options: what an image is, and runnable examples
IMAGE_HELP = ("IMAGE is a file (PNG, JPEG, ...) or sample:NAME, a photo shipped with scikit-image "
              "(sample:chelsea, sample:astronaut, sample:coffee, ...).")


def examples(*lines: str, image: bool = True) -> str:
    """An epilog for ``--help``: examples (one command per line) and, for a command on an image, :data:`IMAGE_HELP`."""
    return "examples:\n" + "".join(f"  {line}\n" for line in lines) + ("\n" + IMAGE_HELP if image else "")


def default_out_help(parser: argparse.ArgumentParser, text: str) -> None:
    """Say what this command's default ``--out`` is (the common option's help names a generic one)."""
    for action in parser._actions:
        if action.dest == "out":
            action.help = f"output folder (default {text})"


def register_per_layer(subparsers, command: str, helptext: str, run) -> None:
    """The parser of a per-layer pre-image command on one image (``invert``, ``caricature``)."""
    epilog = examples(f"repscope {command} sample:chelsea --layer blocks.3",
                      f"repscope {command} photo.jpg --layer blocks.0 --layer blocks.3 --iters 400 --out strip",
                      f"repscope {command} sample:chelsea --model hog --iters 300")
    parser = subparsers.add_parser(command, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                                   epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", metavar="IMAGE", help="one image file or sample:NAME (not a folder)")
    parser.add_argument("--layer", action="append",
                        help="layer name (repeat for several; see 'repscope layers MODEL'; default for HOG: logits)")
    add_preimage_arguments(parser)
    common.add_common_arguments(parser)
    common.add_resume_argument(parser)
    common.add_executor_arguments(parser)
    default_out_help(parser, f"repscope-results/{command}-IMAGE-LAYERS, named after the run")
    parser.set_defaults(run=run)


def check_one_image(spec: str) -> None:
    """A folder is refused in one line naming a file in it (the per-layer commands take one image)."""
    from pathlib import Path

    from ..images import load_images

    if Path(spec).is_dir():
        _, names = load_images([spec])
        example = f" (e.g. {names[0]})" if names else ""
        raise RepscopeError(f"'{spec}' is a folder of {len(names)} images; this command takes one image: "
                            f"name a file{example}, and run it once per image.")


def check_distinct(option: str, values: list | None) -> None:
    """A value given twice to a repeatable option is refused in one line."""
    seen = set()
    for value in values or []:
        if value in seen:
            raise RepscopeError(f"{option} {value} given twice; give each {option} once.")
        seen.add(value)


def run_name(command: str, image: str, parts: list[str]) -> str:
    """The default output folder of a run: ``repscope-results/invert-chelsea-blocks.3`` (file-name safe)."""
    from pathlib import Path

    from ..preimage.sweeps import safe_name

    stem = image.split(":", 1)[1] if image.startswith("sample:") else Path(image).stem
    return str(Path("repscope-results") / safe_name("-".join([command, stem, *parts])))


def run_per_layer(args: argparse.Namespace, method: str) -> dict:
    """``repscope.preimage.invert_layers`` with ``method`` for each ``--layer``; prints one line per layer."""
    from ..images import load_images
    from ..preimage.sweeps import PER_LAYER, invert_layers, pick_layers

    check_distinct("--layer", args.layer)
    check_one_image(args.image)
    model = common.load_model(args)
    layers = pick_layers(model, args.layer)
    config = preimage_config(args)
    x, names = load_images([args.image], size=model.preprocessing.input_size)
    if args.out is None:
        args.out = run_name(method, args.image, layers)
    out = common.output_dir(args)
    result = invert_layers(model, x.to(common.device(args)), layers, out, method=method, config=config,
                           seed=args.seed, image=names[0], resume=args.resume, settings=common.sweep_settings(args),
                           executor=common.executor(args), progress=not args.quiet)
    metric = PER_LAYER[method][1]
    common.finish(args, result, out, [f"{i['layer']}: {metric} {i[metric]:.3f} ({i['seconds']:.1f} s)"
                                      for i in result["items"].values()])
    return result
