"""How a command ends: one line on stderr and an exit code (2 for bad input, 130 for an interruption,
1 for an internal error), never a traceback."""

from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

from ..errors import UserError, shorten
from ..runs.distributed import env_world


def fail(message: str, code: int = 2) -> NoReturn:
    rank = env_world()[0]
    if rank == 0:  # under torchrun, rank 0 says it; the other ranks exit quietly
        print(f"dendsn: error: {message}", file=sys.stderr)
    elif code == 1:  # ... unless it is their own failure (rank 0 cannot know it)
        print(f"dendsn: error: rank {rank}: {message}", file=sys.stderr)
    else:  # the same refusal as rank 0's: let rank 0 end first and say it (torchrun
        time.sleep(5.0)  # stops every process as soon as one has ended)
    sys.exit(code)


def out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    import torch  # noqa: PLC0415  (only when a command has failed: `dendsn --help` does without torch)

    text = str(e)
    return (
        isinstance(e, getattr(torch, "OutOfMemoryError", ()))
        or "can't allocate memory" in text
        or "out of memory" in text.lower()
    )


def describe(e: BaseException, cfg: Any = None) -> tuple[str, int]:
    """The one line (and exit code) for an exception that ends a command: a user mistake (2), an
    interruption (130), memory (2, naming the keys that set the size), or an internal error (1)."""
    if isinstance(e, UserError):
        return str(e), 130 if str(e).startswith("interrupted") else 2
    if out_of_memory(e):
        sizes = ""
        if cfg is not None:
            data = cfg.get("dataset") or {}
            extra = [f"dataset.{k}={data[k]}" for k in ("n_train", "n_test", "val") if k in data]
            sizes = (
                f" (now T={cfg.get('T')}, batch_size={cfg.get('batch_size')}{', ' if extra else ''}{', '.join(extra)})"
            )
        return (
            f"out of memory: the run needs more memory than the device has; lower T, batch_size or the network "
            f"and dataset sizes{sizes}"
        ), 2
    first = (str(e).strip().splitlines() or [""])[0]
    return (
        f"internal error: {type(e).__name__}: {shorten(first, 300)} (rerun with DENDSN_DEBUG=1 for the traceback)"
    ), 1
