"""What every dataset hands the runner: splits resident on the device (`Split`), what the network needs to
know about them (`DataInfo`), and the validation hold-out (`hold_out`)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterator

import torch

from dendsn_cli.config.checks import is_int, require
from dendsn_cli.errors import UserError


@dataclass
class Split:
    """One split resident on a device.

    x: [N, ...] float32 -- images [N, 1, 28, 28] in [0, 1], or time-major samples [N, T, C]
       (see `DataInfo.time_major`): spike trains in {0, 1}, or image rows in [0, 1] (sequential=rows),
       or event frames [N, T, C] / [N, T, P, H, W] of counts (`TonicEvents`).
    y: [N] int64 class labels.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x[B, ...], y[B]) over one epoch.

        shuffle: order by `torch.randperm(N, generator=generator)` (the global
        RNG of the data's device when no generator is given); otherwise in order.
        drop_last: skip the final batch when it is shorter than batch_size.
        """
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}; set a positive batch size")
        n = len(self)
        if shuffle:
            perm_device = generator.device if generator is not None else self.x.device
            order = torch.randperm(n, generator=generator, device=perm_device).to(self.x.device)
        else:
            order = None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx]


@dataclass
class DataInfo:
    """What the network needs to know about a dataset.

    input_shape: per-sample shape seen by the network per time step:
                 (C,) for spike trains, (1, 28, 28) for images, (P, H, W) for event-camera frames.
    time_major:  True when samples already carry a time axis (x is [N, T, C] or [N, T, P, H, W]).
    """

    input_shape: tuple[int, ...]
    n_classes: int
    time_major: bool
    name: str


def check_sizes(n_train, n_test, val, seed) -> None:
    """The keys every dataset of files shares: how many samples to keep, to hold out, and the seed."""
    for key, n in (("dataset.n_train", n_train), ("dataset.n_test", n_test)):
        require(n is None or (is_int(n) and n >= 1), key, n, "null (all) or an integer >= 1")
    val_count(val, 1)  # type / range check
    require(is_int(seed) and seed >= 0, "dataset.seed", seed, "an integer >= 0")


def val_count(val, n_total: int, key: str = "dataset.val") -> int:
    """A count (int >= 0) or a fraction in [0, 1) of ``n_total`` -> a number of samples."""
    if is_int(val) and val >= 0:
        return int(val)
    require(
        isinstance(val, numbers.Real) and not isinstance(val, bool) and 0.0 <= val < 1.0,
        key,
        val,
        "a number of samples (an integer >= 0) or a fraction of the training split in [0, 1); 0 = no validation split",
    )
    return int(round(val * n_total))


SEQUENTIAL = ("rows",)


def hold_out(n: int, val, seed: int) -> torch.Tensor | None:
    """The validation samples of a training split of ``n``: a bool mask [n] of ``val`` samples (a count or a
    fraction, `val_count`) chosen by a permutation from ``seed``, or None for val=0; UserError when none
    would be left to train on."""
    n_val = val_count(val, n)
    if n_val >= n:
        raise UserError(
            f"dataset.val={val!r} holds out {n_val} of the {n} training samples, "
            f"leaving none to train on; lower dataset.val"
        )
    if not n_val:
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(n, dtype=torch.bool)
    held[order[:n_val]] = True
    return held


def sequential_kind(value) -> str | None:
    """None (static images) or the kind of sequence of ``dataset.sequential``."""
    if value is None or value == "none":
        return None
    require(
        value in SEQUENTIAL, "dataset.sequential", value, "none (static images) or rows (one image row per time step)"
    )
    return value
