"""Datasets, loaded once and kept resident on the training device.

Two sources, each a Hydra `_target_` with a `load(device) -> (train, val, test, info)`. ``val`` is the
validation split that model selection (best checkpoint, early stopping) uses, never the test split;
it is None when ``val=0``:

`SyntheticSpikes` (the default, no download): a spike-timing classification task.
Each class c owns a template that gives every input channel n exactly one spike,
at a class-specific random time

    t*[c, n] ~ Uniform{0, ..., T-1}.

A sample of class c is that template, corrupted independently per spike / step:

    t[n]      = clip(t*[c, n] + j[n], 0, T-1),   j[n] ~ Uniform{-jitter, ..., jitter}
    keep[n]   ~ Bernoulli(1 - p_delete)
    x[t, n]   = keep[n] * [t == t[n]]  OR  Bernoulli(noise_rate)      # x: [T, N] in {0, 1}

Because every template has one spike per channel, the per-channel spike count
of a sample (keep[n] + noise) has the same distribution for every class: the
class is in *when* channels fire, not *how often*. A linear read-out of counts
stays at chance; a spiking network that detects coincidences does not.

`TorchvisionImages`: MNIST / Fashion-MNIST through torchvision, as float
images in [0, 1] of shape [N, 1, 28, 28]. Fashion-MNIST is taken from the
Debian package files in /usr/share/datasets/fashion-mnist/ when present.

Validation: the synthetic task draws its own ``val`` samples (after train and test, so those two are
the same with or without it); image datasets hold ``val`` samples (a count, or a fraction of the
training split) out of the training split, chosen by a permutation from ``seed``, before ``n_train``
keeps the first samples of the rest.

Every split is a `Split` (x, y on the device); `Split.batches` shuffles by
indexing with one random permutation per epoch, no DataLoader.
"""

from __future__ import annotations

import gzip
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from dendsn_cli.errors import UserError


@dataclass
class Split:
    """One split resident on a device.

    x: [N, ...] float32 -- images [N, 1, 28, 28] in [0, 1], or spike trains
       [N, T, C] in {0, 1} (time-major samples, see `DataInfo.time_major`).
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
                yield self.x[start:start + batch_size], self.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield self.x[idx], self.y[idx]


@dataclass
class DataInfo:
    """What the network needs to know about a dataset.

    input_shape: per-sample shape seen by the network per time step:
                 (C,) for spike trains, (1, 28, 28) for images.
    time_major:  True when samples already carry a time axis (x is [N, T, C]).
    """

    input_shape: tuple[int, ...]
    n_classes: int
    time_major: bool
    name: str


def _require(ok: bool, key: str, value, what: str) -> None:
    """Raise a one-line UserError for config key `key` unless `ok`."""
    if not ok:
        raise UserError(f"{key}={value!r} is invalid: it must be {what}; fix it in the config or on the command line")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _val_count(val, n_total: int, key: str = "dataset.val") -> int:
    """A count (int >= 0) or a fraction in [0, 1) of ``n_total`` -> a number of samples."""
    if _is_int(val) and val >= 0:
        return int(val)
    _require(isinstance(val, numbers.Real) and not isinstance(val, bool) and 0.0 <= val < 1.0, key, val,
             "a number of samples (an integer >= 0) or a fraction of the training split in [0, 1); 0 = no validation split")
    return int(round(val * n_total))


def _is_probability(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0


# --------------------------------------------------------------------------- synthetic spikes


def spike_templates(rng: np.random.Generator, n_classes: int, n_channels: int, T: int) -> np.ndarray:
    """t*[c, n]: the one spike time of channel n in the template of class c. [C, N] int64."""
    return rng.integers(0, T, size=(n_classes, n_channels))


def corrupt_templates(
    rng: np.random.Generator,
    templates: np.ndarray,   # [C, N] spike times
    labels: np.ndarray,      # [M] class of each sample
    T: int,
    jitter: int,
    p_delete: float,
    noise_rate: float,
) -> np.ndarray:
    """Draw noisy samples of the given classes' templates. Returns x: [M, T, N] float32 in {0, 1}.

    Jitter moves each spike by j ~ Uniform{-jitter..jitter} (clipped to [0, T-1]),
    deletion drops it with prob p_delete, noise adds Bernoulli(noise_rate) spikes
    per channel per step (OR-ed with the template spikes).
    """
    m, n = labels.shape[0], templates.shape[1]
    times = templates[labels]                                           # [M, N]
    times = np.clip(times + rng.integers(-jitter, jitter + 1, size=(m, n)), 0, T - 1)
    keep = rng.random((m, n)) >= p_delete                               # [M, N]
    x = np.zeros((m, T, n), dtype=np.float32)                           # [M, T, N]
    sample_idx, channel_idx = np.nonzero(keep)
    x[sample_idx, times[sample_idx, channel_idx], channel_idx] = 1.0
    noise = rng.random((m, T, n)) < noise_rate                          # [M, T, N]
    x[noise] = 1.0
    return x


def balanced_labels(rng: np.random.Generator, n_samples: int, n_classes: int) -> np.ndarray:
    """Labels 0..C-1 in equal shares (up to one), in random order. [M] int64."""
    return rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)


class SyntheticSpikes:
    """Spike-timing classification task (see module docstring); `dataset=synthetic`.

    Deterministic from `seed`: templates, then the train split, then the test
    split are drawn from one numpy Generator, so the same seed gives the same
    tensors bit for bit, and train / test share templates but not noise.
    """

    def __init__(
        self,
        n_classes: int = 10,
        n_channels: int = 100,
        T: int = 20,
        jitter: int = 1,
        p_delete: float = 0.2,
        noise_rate: float = 0.05,
        n_train: int = 4000,
        n_test: int = 1000,
        val: float = 1000,
        seed: int = 0,
    ):
        _require(_is_int(n_classes) and n_classes >= 2, "dataset.n_classes", n_classes, "an integer >= 2")
        _require(_is_int(n_channels) and n_channels >= 1, "dataset.n_channels", n_channels, "an integer >= 1")
        _require(_is_int(T) and T >= 1, "dataset.T", T, "an integer >= 1")
        _require(_is_int(jitter) and jitter >= 0, "dataset.jitter", jitter, "an integer >= 0 (time steps)")
        _require(_is_probability(p_delete), "dataset.p_delete", p_delete, "a probability in [0, 1]")
        _require(_is_probability(noise_rate), "dataset.noise_rate", noise_rate,
                 "a spike probability per channel per step, in [0, 1]")
        _require(_is_int(n_train) and n_train >= 1, "dataset.n_train", n_train, "an integer >= 1")
        _require(_is_int(n_test) and n_test >= 1, "dataset.n_test", n_test, "an integer >= 1")
        _require(_is_int(seed) and seed >= 0, "dataset.seed", seed, "an integer >= 0")
        self.n_classes, self.n_channels, self.T = n_classes, n_channels, T
        self.jitter, self.p_delete, self.noise_rate = jitter, float(p_delete), float(noise_rate)
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.n_val = _val_count(val, n_train)

    def _split(self, rng: np.random.Generator, templates: np.ndarray, n_samples: int, device) -> Split:
        y = balanced_labels(rng, n_samples, self.n_classes)
        x = corrupt_templates(rng, templates, y, self.T, self.jitter, self.p_delete, self.noise_rate)
        return Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))

    def load(self, device: torch.device) -> tuple[Split, Split | None, Split, DataInfo]:
        rng = np.random.default_rng(self.seed)
        templates = spike_templates(rng, self.n_classes, self.n_channels, self.T)
        train = self._split(rng, templates, self.n_train, device)   # x: [n_train, T, C]
        test = self._split(rng, templates, self.n_test, device)     # x: [n_test, T, C]
        val = self._split(rng, templates, self.n_val, device) if self.n_val else None   # drawn last
        info = DataInfo(input_shape=(self.n_channels,), n_classes=self.n_classes, time_major=True,
                        name="synthetic")
        return train, val, test, info


# --------------------------------------------------------------------------- torchvision images

#: Where the Debian package `fashion-mnist` installs the original gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def install_debian_fashion_mnist(raw_folder: Path, source: Path = DEBIAN_FASHION_MNIST) -> bool:
    """Decompress the Debian Fashion-MNIST .gz files into torchvision's raw folder.

    Only files missing from `raw_folder` are written, each to a temp file that is
    then renamed, so an interrupted copy never leaves a truncated IDX file.
    Returns True when all four files are now in `raw_folder`, False when the
    Debian files are not installed (nothing is written then).
    """
    if not all((source / f"{name}.gz").is_file() for name in IDX_FILES):
        return False
    raw_folder.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        target = raw_folder / name
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=raw_folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(source / f"{name}.gz", "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True


def images_to_split(data: torch.Tensor, targets: torch.Tensor, n: int | None, device) -> Split:
    """uint8 images [N, 28, 28] -> float32 [n, 1, 28, 28] in [0, 1]; labels -> int64 [n]."""
    if n is not None:
        data, targets = data[:n], targets[:n]
    x = data.to(device=device, dtype=torch.float32).div_(255.0).unsqueeze(1)   # [n, 1, 28, 28]
    return Split(x, targets.to(device=device, dtype=torch.int64))


class TorchvisionImages:
    """MNIST or Fashion-MNIST through torchvision; `dataset=mnist` / `dataset=fashion_mnist`.

    Reads torchvision's layout `<root>/MNIST/raw/` or `<root>/FashionMNIST/raw/`
    (uncompressed IDX files). Each split is read once from the dataset's `.data`
    / `.targets` tensors; no per-sample transforms. `val` samples (a count or a
    fraction) are held out of the training split by a permutation drawn from
    `seed`; `n_train` / `n_test` then keep only the first n samples of a split
    (all of it when n is larger) for quick runs.
    """

    def __init__(self, name: str, root: str, download: bool = False,
                 n_train: int | None = None, n_test: int | None = None, val: float = 5000, seed: int = 0):
        _require(name in _TORCHVISION_CLASS, "dataset.name", name, f"one of {sorted(_TORCHVISION_CLASS)}")
        _require(isinstance(root, (str, os.PathLike)) and str(root) != "", "dataset.root", root,
                 "a directory path")
        _require(n_train is None or (_is_int(n_train) and n_train >= 1), "dataset.n_train", n_train,
                 "null (all) or an integer >= 1")
        _require(n_test is None or (_is_int(n_test) and n_test >= 1), "dataset.n_test", n_test,
                 "null (all) or an integer >= 1")
        _val_count(val, 1)                                   # type / range check
        _require(_is_int(seed) and seed >= 0, "dataset.seed", seed, "an integer >= 0")
        self.name, self.root, self.download = name, Path(root).expanduser(), bool(download)
        self.n_train, self.n_test, self.val, self.seed = n_train, n_test, val, seed

    @property
    def raw_folder(self) -> Path:
        return self.root / _TORCHVISION_CLASS[self.name] / "raw"

    def _missing_error(self, cause: Exception | None) -> UserError:
        where = f"dataset '{self.name}' not found in {str(self.raw_folder)!r} (dataset.root={str(self.root)!r})"
        if self.download and cause is not None:
            return UserError(
                f"{where} and dataset.download=true failed ({' '.join(str(cause).split())}); connect to the "
                f"internet, point dataset.root at a copy, or use the embedded task dataset=synthetic")
        return UserError(
            f"{where} and dataset.download=false; set dataset.download=true (needs internet), "
            f"point dataset.root at a copy, or use the embedded task dataset=synthetic")

    def _open(self, train: bool, download: bool):
        import torchvision.datasets as tvd

        cls = getattr(tvd, _TORCHVISION_CLASS[self.name])
        try:
            return cls(str(self.root), train=train, download=download)
        except (RuntimeError, OSError) as e:   # "Dataset not found", URLError, HTTPError, permission
            raise self._missing_error(e) from e
        except (AssertionError, ValueError, TypeError, KeyError) as e:   # torchvision's IDX parser
            raise UserError(
                f"dataset '{self.name}' in {str(self.raw_folder)!r} is not valid IDX data ({type(e).__name__}); "
                f"delete that folder and set dataset.download=true, or use dataset=synthetic") from e

    def load(self, device: torch.device) -> tuple[Split, Split, DataInfo]:
        download = self.download
        if self.name == "fashion_mnist" and not all((self.raw_folder / f).is_file() for f in IDX_FILES):
            try:
                if install_debian_fashion_mnist(self.raw_folder):
                    download = False   # the Debian files' md5 differs from torchvision's list: never check
            except OSError as e:
                raise UserError(
                    f"could not write Fashion-MNIST into {str(self.raw_folder)!r} ({e.strerror or e}); "
                    f"set dataset.root to a writable directory") from e
        train_ds, test_ds = self._open(True, download), self._open(False, download)
        data, targets = train_ds.data, train_ds.targets
        n_val = _val_count(self.val, len(data))
        if n_val >= len(data):
            raise UserError(f"dataset.val={self.val!r} holds out {n_val} of the {len(data)} training samples, "
                            f"leaving none to train on; lower dataset.val")
        val = None
        if n_val:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
            held = torch.zeros(len(data), dtype=torch.bool)
            held[order[:n_val]] = True
            val = images_to_split(data[held], targets[held], None, device)
            data, targets = data[~held], targets[~held]                 # the rest, in the original order
        train = images_to_split(data, targets, self.n_train, device)
        test = images_to_split(test_ds.data, test_ds.targets, self.n_test, device)
        info = DataInfo(input_shape=tuple(train.x.shape[1:]), n_classes=len(train_ds.classes),
                        time_major=False, name=self.name)
        return train, val, test, info
