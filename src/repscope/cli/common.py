"""What every subcommand shares: common options, model/device/seed set-up, the output folder, results."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from .. import io
from ..bounds import OPTIONS
from ..devices import resolve_device
from ..errors import OutputError, RepscopeError
from ..models import DEFAULT_MODEL, Model, load

RESULT_FILE, CONFIG_FILE = "result.json", "config.json"


class Once(argparse.Action):
    """An option that may be given once: a repeat is an error, not a silent override."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            raise RepscopeError(f"{option_string} given twice ({getattr(namespace, self.dest)}, {values}); "
                                f"'{parser.prog}' takes one: run it once per value.")
        setattr(namespace, self.dest, values)


def add_common_arguments(parser: argparse.ArgumentParser, *, model: bool = True, out: bool = True) -> None:
    """Add ``--model --weights --random-init --device --threads --seed --out --overwrite --json --quiet --debug``."""
    if model:
        parser.add_argument("--model", default=DEFAULT_MODEL,
                            help=f"model name (default {DEFAULT_MODEL}; see 'repscope models')")
        parser.add_argument("--weights", metavar="FILE", help="checkpoint (state dict) to load instead of the default")
        parser.add_argument("--random-init", action="store_true", help="use random weights on purpose")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--threads", type=int, metavar="N", default=None,
                        help="CPU threads (default: $REPSCOPE_THREADS, else $OMP_NUM_THREADS, else the idle cores)")
    parser.add_argument("--seed", type=OPTIONS["--seed"], default=0, help="random seed (default 0)")
    if out:
        parser.add_argument("--out", metavar="DIR", help="output folder (default ./repscope-results/COMMAND)")
        parser.add_argument("--overwrite", action="store_true",
                            help="write into an existing, non-empty --out, first removing the files a previous "
                                 "repscope run wrote there (result.json, config.json, its grid/plots and the files "
                                 "its result.json lists); nothing else in the folder is touched")
    parser.add_argument("--json", action="store_true", help="print the machine-readable result on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """``--resume``: continue an interrupted sweep in the same ``--out``, skipping finished items."""
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in the same --out, skipping finished items")


#: the options of :func:`add_executor_arguments`: where items run, not what they compute (``--resume``
#: may change them: a sweep started on one executor can be finished on another)
EXECUTION_OPTIONS = frozenset({"executor", "ray_address", "cpus_per_item", "gpus_per_item"})


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor local|ray [--ray-address ADDR] [--cpus-per-item N] [--gpus-per-item N]`` (see :func:`executor`)."""
    from ..bounds import finite_float
    from ..executors import EXECUTORS

    g = parser.add_argument_group("execution")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where the items run: in this process (default) or as Ray tasks (pip install -e '.[ray]')")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster (HOST:PORT of 'ray start --head', or auto); default: a local Ray")
    g.add_argument("--cpus-per-item", type=finite_float("--cpus-per-item", 0.0, 4096.0), default=1.0, metavar="N",
                   help="CPUs (and torch threads) per Ray task (default 1)")
    g.add_argument("--gpus-per-item", type=finite_float("--gpus-per-item", 0.0, 64.0), default=0.0, metavar="N",
                   help="GPUs per Ray task (default 0; the model runs on --device)")


def executor(args: argparse.Namespace):
    """The :class:`repscope.executors.Executor` the options of :func:`add_executor_arguments` describe."""
    from ..executors import get_executor

    name = args.executor
    if name == "local":
        given = [option for option, value, default in (("--ray-address", args.ray_address, None),
                                                      ("--cpus-per-item", args.cpus_per_item, 1.0),
                                                      ("--gpus-per-item", args.gpus_per_item, 0.0)) if value != default]
        if given:
            raise RepscopeError(f"{', '.join(given)}: only with --executor ray. Add --executor ray, or drop it.")
        return get_executor("local")
    return get_executor(name, address=args.ray_address, cpus_per_item=args.cpus_per_item,
                        gpus_per_item=args.gpus_per_item)


def device(args: argparse.Namespace) -> torch.device:
    """The resolved ``--device``."""
    return resolve_device(args.device)


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to show per-item progress: not ``--quiet``, and stderr is a terminal (a bar labelled with the item)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def sweep_settings(args: argparse.Namespace) -> dict:
    """The options that determine a sweep's results (what ``--resume`` must find unchanged), and under
    ``inputs`` the content hash (:func:`repscope.images.content_hash`) of each image ``args.image`` names:
    a photo replaced under the same name refuses ``--resume`` instead of mixing two images' results."""
    from ..images import content_hash, expand_specs, load_image
    from ..sweep import INPUTS

    ignored = {"run", "json", "quiet", "debug", "overwrite", "resume", "out", "device", "command", "threads"}
    settings = {k: v for k, v in vars(args).items() if k not in ignored and k not in EXECUTION_OPTIONS}
    if isinstance(getattr(args, "image", None), str):  # a file, a sample, or a folder of them
        settings[INPUTS] = {spec: content_hash(load_image(spec)) for spec in expand_specs(args.image)}
    return settings


def load_model(args: argparse.Namespace) -> Model:
    """The model named by ``--model`` (with ``--weights`` / ``--random-init``) on ``--device``.

    Random weights are drawn from torch's global generator seeded with ``--seed`` inside
    ``torch.random.fork_rng``, so the caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        return load(args.model, weights=args.weights, device=device(args), random_init=args.random_init)


#: what a repscope run may have written into its folder besides the files its result.json lists
#: (``--overwrite`` removes these, in a folder holding a result.json or config.json, and nothing else)
WRITTEN_NAMES = (RESULT_FILE, CONFIG_FILE, "grid.png", "loss.png", "equivariance.png", "stitch.png", "cka.png",
                 "pr.png", "boxes.json", "head.safetensors")
WRITTEN_PATTERNS = ("*.last-good.png", "*_detections.png")


def output_dir(args: argparse.Namespace, *, resume: bool | None = None) -> Path:
    """The ``--out`` folder, locked for this run (:func:`repscope.sweep.acquire_output_lock`: a second
    writer is refused naming the first one's pid; ``main()`` releases it, removing the lock file and
    the folder if the run wrote nothing); an existing non-empty folder is refused unless ``--overwrite``
    (which first removes the previous run's files, :func:`remove_previous_run`) or resuming."""
    from ..sweep import LOCK_FILE, acquire_output_lock, release_output_lock

    resume = getattr(args, "resume", False) if resume is None else resume
    out = Path(args.out) if args.out else Path("repscope-results") / args.command
    try:
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out '{out}' exists and is not a folder. Choose another --out.")
        ancestor = out
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to --out '{out}': '{ancestor}' is not a writable folder. "
                              "Choose a writable --out.")
        acquire_output_lock(out)
        try:
            if any(p.name != LOCK_FILE for p in out.iterdir()) and not (args.overwrite or resume):
                raise OutputError(f"output folder '{out}' is not empty. Pass --overwrite, or choose another --out.")
            if args.overwrite and not resume:
                remove_previous_run(out)
        except BaseException:
            release_output_lock(out)
            raise
    except OSError as err:  # e.g. a name too long for the file system
        raise io.output_error(out, err) from None
    return out


def remove_previous_run(out: Path) -> list[str]:
    """Delete what a previous repscope run wrote in ``out`` (:data:`WRITTEN_NAMES`, :data:`WRITTEN_PATTERNS`,
    the files its ``result.json`` items list, inside ``out``); a folder without its ``result.json`` or
    ``config.json`` is left alone. Returns the names removed."""
    from ..sweep import file_names

    if not ((out / RESULT_FILE).is_file() or (out / CONFIG_FILE).is_file()):
        return []
    names = set(WRITTEN_NAMES) | {p.name for pattern in WRITTEN_PATTERNS for p in out.glob(pattern)}
    try:
        items = json.loads((out / RESULT_FILE).read_text(encoding="utf-8")).get("items", {})
        names |= {n for item in items.values() if isinstance(item, dict) for n in file_names(item) if isinstance(n, str)}
    except (OSError, ValueError, AttributeError, RecursionError):
        pass  # an unreadable record lists nothing
    removed = []
    for name in sorted(names):  # plain names only: nothing outside the folder, nothing in its sub-folders
        path = out / name
        if name and Path(name).name == name and name not in (".", "..") and (path.is_symlink() or path.is_file()):
            path.unlink()
            removed.append(name)
    return removed


def config(args: argparse.Namespace) -> dict:
    """The resolved configuration of this run (every option, the resolved device, versions)."""
    import repscope
    settings = {k: v for k, v in vars(args).items() if k != "run" and not callable(v)}
    settings["device_resolved"] = str(device(args))
    settings["versions"] = {"repscope": repscope.__version__, "torch": torch.__version__}
    settings["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return settings


def finish(args: argparse.Namespace, result: object, out: Path | None, summary: list[str] | None = None) -> None:
    """Write ``result.json`` and ``config.json`` into ``out`` (if any); print the JSON or the summary."""
    if out is not None:
        io.write_json(out / RESULT_FILE, result)
        # the exact command line, shown by 'repscope report' (only when sys.argv is this command's)
        argv = ["repscope", *sys.argv[1:]] if sys.argv[1:2] == [args.command] else None
        io.write_json(out / CONFIG_FILE, dict(config(args), argv=argv))
    if args.json:
        print(json.dumps(result, indent=2, default=io._json_default))
    elif not args.quiet:
        for line in summary or []:
            print(line)
        if out is not None:
            print(f"results written to {out}/", file=sys.stderr)
