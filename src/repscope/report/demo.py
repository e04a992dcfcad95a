"""``repscope demo``: the talk's storyline as runs of repscope's own commands, then one report.

Each stage is one command line (``invert``, ``maximize``, ``saliency``, ...) run in this process into
``DIR/NN-name``; its folder is what a user running that command would get, and the report shows the
command. ``DIR/demo.json`` records every finished stage with its measured time, so ``resume=True``
finishes an interrupted demo without recomputing finished stages. Commands that other parts of
repscope may add (``stitch``, ``similarity``, ``detect``) get a stage only when they are installed.

Example:
    >>> from repscope.report.demo import run_demo          # doctest: +SKIP
    >>> run_demo("repscope-demo", quick=True)               # doctest: +SKIP
    PosixPath('repscope-demo/report.html')
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import io
from ..errors import OutputError, RepscopeError
from .build import DEMO_FILE, build_report

__all__ = ["Stage", "stages", "run_demo"]


@dataclass(frozen=True)
class Stage:
    """One command of the demo: ``name`` (its folder ``NN-name``), the argv after ``repscope`` (the word
    ``{stage:NAME}`` stands for stage NAME's folder), and its expected cost in seconds on a 2-core CPU
    (weights the overall time estimate)."""

    name: str
    argv: tuple[str, ...]
    cost: float


def _preimage_stages(q: bool) -> list[Stage]:
    it = ("--iters", "30" if q else "150")
    deep = ["blocks.0", "blocks.2", "blocks.4", "blocks.6"] if q else [f"blocks.{k}" for k in range(7)]
    layers = [w for layer in deep for w in ("--layer", layer)]
    out = [
        Stage("invert", ("invert", "sample:chelsea", *layers, *it), 12 if q else 75),
        Stage("prior-none", ("invert", "sample:chelsea", "--layer", "blocks.2", "--tv-weight", "0", *it), 3 if q else 9),
        Stage("prior-tv1", ("invert", "sample:chelsea", "--layer", "blocks.2", "--beta", "1", *it), 3 if q else 9),
    ]
    for layer, chans in ([("blocks.4", ["3", "17"])] if q else
                         [("blocks.2", ["0", "5", "9"]), ("blocks.4", ["3", "17", "5"])]):
        out.append(Stage(f"maximize-{layer}", ("maximize", "--layer", layer,
                                               *[w for c in chans for w in ("--unit", c)], *it), 9 if q else 25))
    for model, classes in (("efficientnet_lite0", ["130"] if q else ["130", "967"]),  # flamingo, espresso
                           ("efficientnet_lite1", ["130"]), ("efficientnet_lite2", ["130"])):
        units = [w for c in classes for w in ("--unit", c)]
        out.append(Stage(f"maximize-logits-{model[-5:]}", ("maximize", "--model", model, "--layer", "logits",
                                                           *units, *it), 12 if q else 35))
    car = ["--layer", "blocks.2"] + ([] if q else ["--layer", "blocks.4"])
    out.append(Stage("caricature", ("caricature", "sample:coffee", *car, *it), 3 if q else 15))
    return out


def _other_stages(q: bool) -> list[Stage]:
    it = ("--iters", "30" if q else "150")
    photos = ["chelsea", "coffee"] if q else ["chelsea", "astronaut", "coffee"]
    out = [Stage(f"saliency-{p}", ("saliency", f"sample:{p}"), 6) for p in photos]
    if not q:
        out.append(Stage("saliency-blocks.5", ("saliency", "sample:chelsea", "--layer", "blocks.5"), 8))
    vgg = "torchvision:vgg11" if q else "torchvision:vgg16"
    out.append(Stage(f"saliency-{vgg.split(':')[1]}-random", ("saliency", "sample:chelsea", "--model", vgg,
                                                              "--random-init", "--top-k", "4" if q else "8"), 25 if q else 40))
    hogs = ["hog", "hog:uoctti,bilinear=1"] + ([] if q else ["hog:dalal-triggs,block=2"])
    out += [Stage(f"hog-{k}", ("invert", "sample:chelsea", "--model", name, *it), 2 if q else 8)
            for k, name in enumerate(hogs)]
    fit = ("--fit-crops", "24", "--test", "12") if q else ()
    layers = () if not q else ("--layer", "conv_stem", "--layer", "blocks.0", "--layer", "blocks.2", "--layer", "blocks.4")
    out.append(Stage("equivariance-vflip", ("equivariance", "--transform", "vflip", *fit, *layers), 8 if q else 60))
    out.append(Stage("equivariance-hog-rot90", ("equivariance", "--transform", "rot90", "--model",
                                                "hog:dalal-triggs,orientations=8,cell=8", "--margin", "1", *fit), 3 if q else 10))
    return out


def optional_stages(q: bool) -> list[Stage]:
    """Stages for commands that exist only when their module is installed (see :func:`available_commands`)."""
    have = available_commands()
    out = []
    if "stitch" in have:
        pair = (("--from", "efficientnet_lite0:blocks.3", "--to", "efficientnet_lite1:blocks.3") if q else
                ("--from", "efficientnet_lite0", "--to", "efficientnet_lite1", "--layers", "matched"))
        crops = ("--fit-crops", "24", "--test-crops", "12", "--steps", "20")
        out.append(Stage("stitch", ("stitch", *pair, "--fit", "both", *crops), 9 if q else 50))
    if "similarity" in have:
        out.append(Stage("similarity", ("similarity", "--model", "efficientnet_lite0", "--model", "efficientnet_lite1",
                                        "--crops", "16" if q else "64"), 8 if q else 30))
    if "detect" in have:
        out.append(Stage("detect", ("detect", "sample:astronaut", "sample:coffee", "--imagenet",
                                    *(("--proposals", "50") if q else ())), 10 if q else 30))
        small = ("--images", "4") if q else ("--images", "8")
        out.append(Stage("detect-train", ("detect", "train", "--method", "fast-rcnn", "--data", "synthetic", "--iters",
                                          "20" if q else "60", "--proposals", "40", *small), 10 if q else 25))
        out.append(Stage("detect-eval", ("detect", "eval", "--head", "{stage:detect-train}", "--data", "synthetic",
                                         "--images", "2" if q else "6"), 6 if q else 15))
    return out


def available_commands() -> set[str]:
    """The subcommands the installed ``repscope`` command line has."""
    import argparse

    from ..cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def stages(quick: bool = False) -> list[Stage]:
    """The demo's stages in the talk's order."""
    return _preimage_stages(quick) + _other_stages(quick) + optional_stages(quick)


class _DropSummaryLines:
    """stderr for a stage on a terminal: the stage's progress bars pass, its 'results written to' line does not."""

    def __init__(self, stream):
        self.stream, self._dropping = stream, False

    def write(self, text: str) -> int:
        if text.startswith("results written to"):
            self._dropping = True
        elif not (self._dropping and text == "\n"):
            self._dropping = False
            self.stream.write(text)
        else:
            self._dropping = False
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def run_command(argv: list[str], *, show_bars: bool) -> None:
    """Run ``repscope ARGV`` in this process (errors propagate); ``sys.argv`` is set so that the command
    records its exact command line in ``config.json``. Its summary lines are not printed."""
    from ..cli import build_parser

    args = build_parser().parse_args(argv)
    saved = sys.argv
    sys.argv = ["repscope", *argv]
    try:
        with contextlib.redirect_stdout(_io.StringIO()), \
                contextlib.redirect_stderr(_DropSummaryLines(sys.stderr) if show_bars else _io.StringIO()):
            args.run(args)
    finally:
        sys.argv = saved


def _load_state(out: Path, quick: bool, resume: bool, overwrite: bool) -> dict:
    """The demo record in ``out`` to continue (resume), or a fresh one (refusing a non-empty ``out``)."""
    state_file = out / DEMO_FILE
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out '{out}' exists and is not a folder. Choose another --out.")
    fresh = {"quick": quick, "stages": [], "complete": False}
    if resume and state_file.is_file():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise OutputError(f"cannot resume: '{state_file}' is unreadable. Remove it, or use a new --out.") from None
        if state.get("quick") != quick:
            flag = "with" if state.get("quick") else "without"
            raise OutputError(f"cannot resume: the demo in '{out}' was started {flag} --quick. "
                              f"Run it {flag} --quick, or use a new --out.")
        return state
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise OutputError(f"output folder '{out}' is not empty. Pass --resume to finish an interrupted demo, "
                          "--overwrite to redo it, or choose another --out.")
    return fresh


def run_demo(out: str | os.PathLike = "repscope-demo", *, quick: bool = False, resume: bool = False,
             overwrite: bool = False, quiet: bool = False, device: str = "auto") -> Path:
    """Run every stage (skipping those ``demo.json`` records as finished when resuming), then write
    ``out/report.html``; returns its path. Progress shows only on a terminal and when not ``quiet``."""
    from tqdm.auto import tqdm

    out = Path(out)
    state = _load_state(out, quick, resume, overwrite)
    plan = stages(quick)
    folders = {s.name: f"{k:02d}-{s.name}" for k, s in enumerate(plan, 1)}
    planned = {s.name: [_resolve(w, out, folders) for w in s.argv] + ["--out", str(out / folders[s.name])]
               + (["--device", device] if device != "auto" else []) for s in plan}
    # a stage is finished when its folder is complete and it ran exactly the planned command
    done = {s["name"] for s in state["stages"] if (out / s["folder"] / "config.json").is_file()
            and _core(s.get("command", [])) == planned.get(s["name"])}
    state["stages"] = [s for s in state["stages"] if s["name"] in done]
    show = not quiet and sys.stderr.isatty()
    start = time.perf_counter() - sum(s["seconds"] for s in state["stages"])
    bar = tqdm(total=sum(s.cost for s in plan), disable=not show, position=0, leave=False, dynamic_ncols=True,
               bar_format="demo {desc} |{bar}| {elapsed} elapsed, about {remaining} left")
    bar.update(sum(s.cost for s in plan if s.name in done))
    for k, stage in enumerate(plan, 1):
        folder = folders[stage.name]
        bar.set_description_str(f"stage {k}/{len(plan)}: {stage.name}")
        if stage.name in done:
            continue
        argv = planned[stage.name] + ([] if show else ["--quiet"])
        if (out / folder).is_dir() and any((out / folder).iterdir()):
            argv.append("--overwrite")
        began, cpu = time.perf_counter(), time.process_time()
        try:
            run_command(argv, show_bars=show)
        except RepscopeError as err:
            raise RepscopeError(f"demo stage {k} ({stage.name}): {err} Then run 'repscope demo --resume' with the "
                                "same --out to finish.") from None
        state["stages"].append({"name": stage.name, "folder": folder, "seconds": round(time.perf_counter() - began, 2),
                                "cpu_seconds": round(time.process_time() - cpu, 2), "command": ["repscope", *argv]})
        state["total_seconds"] = round(time.perf_counter() - start, 2)
        io.write_json(out / DEMO_FILE, state)
        bar.update(stage.cost)
    bar.close()
    state.update(complete=True, total_seconds=round(time.perf_counter() - start, 2),
                 machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {_threads()}")
    io.write_json(out / DEMO_FILE, state)
    title = "repscope demo: what a visual representation encodes" + (" (quick)" if quick else "")
    path = build_report([out], out / "report.html", title=title)
    if show:
        minutes, seconds = divmod(state["total_seconds"], 60)
        print(f"demo: {len(plan)} stages in {int(minutes)} min {seconds:.0f} s", file=sys.stderr)
    return path


def _core(command: list[str]) -> list[str]:
    """A recorded stage command without ``repscope`` and the options that do not change results."""
    return [w for w in command[1:] if w not in ("--quiet", "--overwrite")]


def _resolve(word: str, out: Path, folders: dict[str, str]) -> str:
    """``{stage:NAME}`` -> the folder of stage NAME (a later stage reading an earlier one's output)."""
    if word.startswith("{stage:") and word.endswith("}"):
        return str(out / folders[word[7:-1]])
    return word


def _threads() -> int:
    import torch
    return torch.get_num_threads()
