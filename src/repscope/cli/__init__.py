"""The ``repscope`` command: one entry point, one module per subcommand (see docs/ARCHITECTURE.md).

Errors a user can fix print one line (``repscope: error: ...``) and exit with status 2; a sweep
whose items ran but some failed (recorded under ``failed`` in result.json) exits with 3; Ctrl-C
exits with 130 after finished items have been kept. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from ..errors import OutputError, RepscopeError
from ..memory import retain_freed_memory
from ..sweep import ItemsFailed, release_output_lock
from ..threads import torch_threads

#: The subcommands, in the order ``repscope --help`` lists them; each is the module
#: ``repscope.cli.<name>`` holding that one command (``register(subparsers)`` adds the parser named
#: ``<name>``). A name without its module is an ImportError, never a silent skip.
SUBCOMMANDS = (
    "models", "layers", "check", "classify",
    "invert", "maximize", "caricature", "saliency", "hog",
    "equivariance", "stitch", "similarity", "detect",
    "report", "demo",
)


#: exit status of a sweep that ran to its end with some items recorded as failed (`--resume` retries them)
ITEMS_FAILED = 3

#: errno values of a failed write to stdout; every result *file* write turns them into an OutputError
_STDOUT_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"repscope: error: {message}. Run '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand registered."""
    import repscope
    parser = _OneLineParser(prog="repscope", description="What does a visual representation encode?")
    parser.add_argument("--version", action="version", version=f"repscope {repscope.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    retain_freed_memory()  # large CPU temporaries reuse pages (see repscope.memory)
    try:
        args = build_parser().parse_args(argv)
        with torch_threads(getattr(args, "threads", None)):  # the idle cores unless told (repscope.threads)
            args.run(args)
        _flush_stdout()  # a closed pipe or a full device shows here, not as a traceback at interpreter exit
    except BrokenPipeError:  # the reader went away (`repscope models | head -1`): exit quietly, as Unix tools do
        _discard_stdout()
        return 141  # 128 + SIGPIPE, the status a shell reports for such a tool
    except SystemExit as stop:  # --help, --version, or a one-line usage error
        return int(stop.code or 0)
    except ItemsFailed as err:  # the sweep ran to its end, but some items are recorded as failed
        if debug:
            raise
        print(f"repscope: error: {err}", file=sys.stderr)
        return ITEMS_FAILED
    except RepscopeError as err:
        if debug:
            raise
        print(f"repscope: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a print of the command failed (> /dev/full); files fail as OutputError (repscope.io)
        if debug or err.errno not in _STDOUT_ERRORS:
            raise
        _discard_stdout()
        print(f"repscope: error: cannot write to standard output: {err.strerror or err}. "
              "Redirect it to a writable file (or pass --quiet).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("repscope: interrupted; finished items are kept (use --resume where offered).", file=sys.stderr)
        return 130
    finally:
        release_output_lock()  # every --out this command locked (repscope.sweep.output_lock)
    return 0


def _flush_stdout() -> None:
    """Flush stdout; an OS error other than a closed pipe (``> /dev/full``: ENOSPC) is one RepscopeError line."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        _discard_stdout()
        raise OutputError(f"cannot write to standard output: {err.strerror or err}. "
                          "Redirect it to a writable file (or pass --quiet).") from None


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush of the closed pipe stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
