"""Reading result folders: what a repscope command wrote (``result.json``, ``config.json``, PNGs).

A *result folder* holds the ``result.json`` and ``config.json`` that ``repscope.cli.common.finish``
writes. A folder without them whose subfolders are result folders (the output of ``repscope demo``)
stands for those subfolders, in name order. Anything else is a :class:`ReportError` naming the
folder, raised before any page is written.

Example:
    >>> folders = find_result_folders(["repscope-results/invert"])   # doctest: +SKIP
    >>> folders[0].command, folders[0].number("summary")              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RepscopeError

RESULT_FILE, CONFIG_FILE = "result.json", "config.json"

__all__ = ["ReportError", "ResultFolder", "find_result_folders", "load_folder", "command_line"]


class ReportError(RepscopeError):
    """A results folder is missing, unreadable, or not written by a repscope command."""


@dataclass
class ResultFolder:
    """One command's output folder: its parsed ``result.json`` / ``config.json`` and its PNG files."""

    path: Path
    result: dict[str, Any]
    config: dict[str, Any]
    pngs: list[Path] = field(default_factory=list)

    @property
    def command(self) -> str:
        """The subcommand that wrote the folder (``config.json`` ``command``), e.g. ``"invert"``."""
        run = self.result.get("run") if isinstance(self.result.get("run"), dict) else {}
        return str(self.config.get("command") or self.result.get("command") or run.get("command") or "unknown")

    @property
    def model(self) -> str:
        """The network(s): ``model``, or ``A vs B`` (similarity), or ``A:layer → B:layer`` (stitch)."""
        c, r = self.config, self.result
        value = c.get("model") or r.get("model") or r.get("models")
        if isinstance(value, list):
            return " vs ".join(map(str, value))
        if not value and c.get("source"):
            return f"{c.get('source')} → {c.get('target')}"
        return str(value or "—")

    @property
    def settings(self) -> dict[str, Any]:
        """The command's options: ``config.json``, or the ``run`` a result records when its config.json
        describes something else (``detect train`` writes the detector's configuration there)."""
        run = self.result.get("run")
        if "command" not in self.config and isinstance(run, dict) and "command" in run:
            return run
        return self.config

    def png(self, name: str) -> Path | None:
        """The PNG called ``name`` in the folder, or None."""
        path = self.path / name
        return path if path.is_file() else None


def _is_result_folder(path: Path) -> bool:
    return (path / RESULT_FILE).exists() or (path / CONFIG_FILE).exists()


def find_result_folders(paths: list[str | os.PathLike]) -> list[ResultFolder]:
    """Load every result folder named by ``paths`` (a folder of result folders expands to them).

    Raises:
        ReportError: a path is missing, holds no result, or a ``result.json`` / ``config.json`` is
            missing or corrupt. The message names the folder and the fix.
    """
    found: list[ResultFolder] = []
    for spec in paths:
        path = Path(spec)
        if not path.is_dir():
            raise ReportError(f"results folder '{path}' does not exist. Give folders written by a repscope command.")
        if _is_result_folder(path):
            found.append(load_folder(path))
            continue
        subfolders = sorted(p for p in path.iterdir() if p.is_dir() and _is_result_folder(p))
        if not subfolders:
            raise ReportError(f"'{path}' holds no {RESULT_FILE}: it is not a repscope results folder. "
                              "Give folders written by a repscope command (or re-run that command).")
        found.extend(load_folder(p) for p in subfolders)
    return found


def _read_json(path: Path, folder: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"'{folder}' has no {name} (an unfinished or interrupted run?). "
                          "Re-run its command (with --resume where offered), or leave the folder out.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"'{folder}': {name} is unreadable ({type(err).__name__}). "
                          "Re-run its command, or leave the folder out.") from None
    if not isinstance(data, dict):
        raise ReportError(f"'{folder}': {name} is not a JSON object. Re-run its command, or leave the folder out.")
    return data


def load_folder(path: str | os.PathLike) -> ResultFolder:
    """Read one result folder; raises :class:`ReportError` naming it if a file is missing or corrupt."""
    path = Path(path)
    result = _read_json(path / RESULT_FILE, path, RESULT_FILE)
    config = _read_json(path / CONFIG_FILE, path, CONFIG_FILE)
    pngs = sorted(p for p in path.glob("*.png") if not p.name.startswith(".") and ".last-good" not in p.name)
    return ResultFolder(path=path, result=result, config=config, pngs=pngs)


#: options never shown in a reconstructed command line (they do not change the result)
_HIDDEN = {"command", "run", "device_resolved", "versions", "time", "argv", "json", "debug"}


def command_line(folder: ResultFolder) -> tuple[str, bool]:
    """The command that made ``folder`` and whether it is exact.

    Exact when ``config.json`` holds ``argv`` (recorded by ``repscope`` since the report exists);
    otherwise rebuilt from the parser's options that differ from their defaults.
    """
    argv = folder.settings.get("argv")
    if isinstance(argv, list) and argv:
        return shlex.join(str(a) for a in argv), True
    return _rebuild(folder), False


def _rebuild(folder: ResultFolder) -> str:
    """``repscope COMMAND POSITIONAL --option value ...`` from config.json and the command's parser."""
    import argparse

    from ..cli import build_parser

    words = ["repscope", folder.command]
    sub = next((a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)), None)
    parser = sub.choices.get(folder.command) if sub is not None else None
    if parser is None:
        return shlex.join(words)
    for action in parser._actions:
        dest = action.dest
        if dest in _HIDDEN or dest == "help" or dest not in folder.settings:
            continue
        value = folder.settings[dest]
        if not action.option_strings:
            words += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif value != action.default and value not in (None, False):
            flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
            if value is True:
                words.append(flag)
            elif isinstance(action, argparse._AppendAction):
                for v in value:
                    words += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
            else:
                words += [flag] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return shlex.join(words)
