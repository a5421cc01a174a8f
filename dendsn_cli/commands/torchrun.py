"""`dendsn torchrun [torchrun's options] train [overrides]`: torchrun's own launcher (torch.distributed.run)
starting `python -m dendsn_cli train ...` in every process, as `torchrun ... -m dendsn_cli train` does; but a
run that fails or is interrupted ends with rank 0's one line and its exit code, not torchrun's report."""

from __future__ import annotations

import logging
import os
import sys

from ..errors import UserError
from .outcome import fail
from .train import TORCHRUN_SWEEP


def command(args: list[str]) -> None:
    if "train" not in args:
        raise UserError(
            "dendsn torchrun needs the training to start: dendsn torchrun --nproc_per_node=N train "
            "[overrides] (torchrun's options before `train`)"
        )
    i = args.index("train")
    options, rest = args[:i], args[i + 1 :]
    if "-m" in rest or "--multirun" in rest:
        raise UserError(TORCHRUN_SWEEP)
    os.environ.setdefault("LOGLEVEL", "ERROR")  # torchrun's own warnings (its logger reads LOGLEVEL at import)
    from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: PLC0415  (after LOGLEVEL)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.run import main as torchrun_main  # noqa: PLC0415

    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would set 1 and say so: share the cores out
        per = next(
            (
                o.split("=", 1)[1]
                for o in options
                if o.startswith("--nproc_per_node=") or o.startswith("--nproc-per-node=")
            ),
            "1",
        )
        n = int(per) if per.isdigit() else 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(n, 1)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun_main([*options, "-m", "dendsn_cli", "train", *rest])
    except SignalException:  # Ctrl-C / SIGTERM to this launcher: the processes stop and save
        sys.exit(130)
    except ChildFailedError as e:
        failures = dict(e.failures)
        zero = failures.get(0)
        if zero is not None and zero.exitcode in (1, 2, 130):  # rank 0 said why in its line
            sys.exit(zero.exitcode)
        rank, f = min(failures.items()) if failures else (0, None)
        code = f.exitcode if f is not None else 1
        fail(
            f"process rank {rank} of the run failed (exit code {code}) and the others were stopped; "
            "run the same training in one process (dendsn train ...) to see its error",
            1 if code not in (2, 130) else code,
        )
