"""`dendsn`: train, eval, simulate, list, torchrun (the commands are in `dendsn_cli.commands`).

    dendsn train [KEY=VALUE ...] [-m] [--help] [--cfg job]   Hydra app: one run, or a sweep with -m
    dendsn eval ckpt=PATH [KEY=VALUE ...]                     test accuracy and loss of a checkpoint
    dendsn simulate [KEY=VALUE ...] [-m] [--help]             drive a neuron with a stimulus: f-I curve
    dendsn list [GROUP]                                       config groups and their options
    dendsn torchrun [OPTIONS] train ...                       one training on several processes

This module parses the command name, runs the command, and ends every user mistake as one line on
stderr and a non-zero exit (2 for bad input, 130 for an interrupted run, 1 for an internal error), never
a traceback. It imports a command's module only when that command runs: `dendsn --help`, `--version`,
`list` and `train --help` do not import torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .commands import COMMANDS
from .commands.outcome import describe, fail
from .commands.usage import USAGE, version_line
from .errors import UserError
from .runs import sweep
from .runs.sweep import SweepInterrupted

sweep.register_resolvers()  # ${dendsn.job_dir:...} names sweep job dirs, also in launcher workers


def main(argv: list[str] | None = None) -> None:
    try:
        run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `dendsn --help | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def run(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] in ("--version", "-V", "version"):
        print(version_line())
        return
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        fail(f"unknown command {name!r}; use train, eval, simulate, list or torchrun (dendsn --help)")
    try:
        # the command's module, imported only now: each imports what it needs (train and eval: torch)
        importlib.import_module(f"{__package__}.commands.{COMMANDS[name]}").command(rest)
    except SweepInterrupted as e:
        fail(e.report(), 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        raise
    except Exception as e:
        if os.environ.get("DENDSN_DEBUG") and not isinstance(e, UserError):
            raise
        fail(*describe(e))


def __getattr__(name: str) -> Any:
    """``dendsn_cli.cli.SweepReport``, the name conf/train.yaml (and the .hydra/ record of every sweep) gives
    the sweep report of `dendsn train`: imported when Hydra looks it up."""
    if name == "SweepReport":
        from .commands.train import SweepReport  # noqa: PLC0415  (keeps `dendsn --help` light)

        return SweepReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
