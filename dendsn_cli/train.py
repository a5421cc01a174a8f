"""`dendsn train`'s task: `train` runs the loop (`dendsn_cli.training.loop.fit`) under the process's stop
flag; `dendsn eval`'s `evaluate_checkpoint`. The training task lives in `dendsn_cli.training`:

    build.py      setup: device, seed, the parts built from the config, init_rate's calibration
    loop.py       fit(): setup, resume, per epoch train / evaluate / end-of-epoch callbacks, finish
    callbacks.py  the end-of-epoch effects, in order (TensorBoard, figures, checkpoints, metrics.json, ...)
    evaluate.py   evaluation of a split; a checkpoint's (`dendsn eval`)
    monitor.py    spike counts and the figures' records of an evaluation
    figures.py    the registry of TensorBoard figures (what each records, how it draws)
    tb.py         the TensorBoard logger, hparams

This module keeps the names other modules and users import from ``dendsn_cli.train``.
"""

from __future__ import annotations

import signal
from pathlib import Path

from omegaconf import DictConfig

from .runs import distributed as dist
from .training.build import (
    Parts,
    build,
    build_readout,
    calibrate,
    call_group,
    check_dendrites,
    instantiate_group,
    named_layer_parameters,
    seed_everything,
    select_device,
    spiking_layers,
    tune_cpu_allocator,
)
from .training.callbacks import Diverged, Interrupted, rate_warnings
from .training.evaluate import evaluate, evaluate_checkpoint
from .training.loop import fit, quietly, shown_path
from .training.monitor import Monitor, grad_norms
from .training.tb import HPARAM_SKIP, SYNC_EVERY, RankLogger, hparams_of

__all__ = [
    "train",
    "evaluate_checkpoint",
    "StopFlag",
    "STOP",
    "Parts",
    "build",
    "build_readout",
    "calibrate",
    "call_group",
    "check_dendrites",
    "instantiate_group",
    "named_layer_parameters",
    "seed_everything",
    "select_device",
    "spiking_layers",
    "tune_cpu_allocator",
    "Diverged",
    "Interrupted",
    "rate_warnings",
    "evaluate",
    "fit",
    "shown_path",
    "Monitor",
    "grad_norms",
    "HPARAM_SKIP",
    "SYNC_EVERY",
    "RankLogger",
    "hparams_of",
]


class StopFlag:
    """Ctrl-C / SIGTERM / SIGHUP ask the run to stop after the current batch; a second Ctrl-C forces it
    (KeyboardInterrupt). One flag per process (`STOP`): the CLI enters it before Hydra starts, so a
    signal while data loads or the model is built is remembered too, and `train` enters it again
    (re-entrant; handlers are installed once and restored when the outermost `with` ends)."""

    def __init__(self):
        self.requested = False
        self.immediate = False  # a sweep whose jobs run in other processes: the first Ctrl-C stops it at once
        self.saved = {}
        self.depth = 0

    def __enter__(self):
        if self.depth == 0:
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # SIGHUP: a closed terminal
                if sig is None:
                    continue
                try:
                    self.saved[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not the main thread (e.g. a launcher thread)
                    pass
        self.depth += 1
        return self

    def _handler(self, signum, frame):
        if self.immediate or (self.requested and signum == signal.SIGINT):
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            for sig, h in self.saved.items():
                signal.signal(sig, h)
            self.saved = {}


STOP = StopFlag()


def train(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None = None) -> dict:
    """Train per ``cfg``, writing checkpoints, TensorBoard events and metrics.json into ``run_dir``. Under
    torchrun the ranks after 0 train silently (rank 0 prints and writes)."""
    with STOP:
        if dist.is_main():
            return fit(cfg, run_dir, overrides, choices, STOP)
        return quietly(fit, cfg, run_dir, overrides, choices, STOP)
