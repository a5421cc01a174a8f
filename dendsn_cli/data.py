"""Datasets, loaded once and kept resident on the training device.

Three sources, each a Hydra `_target_` with a `load(device) -> (train, val, test, info)`. ``val`` is the
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
Before torchvision reads them, the four IDX files (or, where one is absent, its
``.gz`` beside it, which is then decompressed) are checked: magic number, header
dims against the byte count, labels in 0..n_classes-1, as many labels as images;
a damaged file is a `UserError` that names it.

`TonicEvents`: the neuromorphic event datasets SHD, N-MNIST and DVS Gesture, read by tonic from its
folder layout (never downloaded), each recording binned into T frames by tonic's `ToFrame`, neighbouring
channels / pixels summed, and cached as a tensor on first use: float32 time-major samples [N, T, ...]
(see the class).

Validation: the synthetic task draws its own ``val`` samples (after train and test, so those two are
the same with or without it); image datasets hold ``val`` samples (a count, or a fraction of the
training split) out of the training split, chosen by a permutation from ``seed``, before ``n_train``
keeps the first samples of the rest; so do the event datasets.

Row-sequential images (``sequential=rows``, MNIST / Fashion-MNIST): each image becomes a sequence of
its rows, one row per time step,

    x[n, t, :] = image[n, row t, :]      x: [N, 28, 28] = [N, T, C], T = 28 rows of C = 28 pixels

kept as time-major samples (`DataInfo.time_major`, input shape (28,)), so the run's T must equal the
number of rows (a UserError otherwise). The values stay analog pixel intensities in [0, 1]: they
are input currents, for `encoder=direct` (the config refuses encoders that would read them as spikes).

Every split is a `Split` (x, y on the device); `Split.batches` shuffles by
indexing with one random permutation per epoch, no DataLoader.
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

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
                yield self.x[start:start + batch_size], self.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
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


SEQUENTIAL = ("rows",)


def hold_out(n: int, val, seed: int) -> torch.Tensor | None:
    """The validation samples of a training split of ``n``: a bool mask [n] of ``val`` samples (a count or a
    fraction, `_val_count`) chosen by a permutation from ``seed``, or None for val=0; UserError when none
    would be left to train on."""
    n_val = _val_count(val, n)
    if n_val >= n:
        raise UserError(f"dataset.val={val!r} holds out {n_val} of the {n} training samples, "
                        f"leaving none to train on; lower dataset.val")
    if not n_val:
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(n, dtype=torch.bool)
    held[order[:n_val]] = True
    return held


def _sequential(value) -> str | None:
    """None (static images) or the kind of sequence of ``dataset.sequential``."""
    if value is None or value == "none":
        return None
    _require(value in SEQUENTIAL, "dataset.sequential", value,
             "none (static images) or rows (one image row per time step)")
    return value


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
        sequential: str | None = None,
    ):
        if _sequential(sequential) is not None:
            raise UserError(f"dataset.sequential={sequential} applies to image datasets (dataset=mnist or "
                            "dataset=fashion_mnist): the synthetic task is a spike sequence already; drop the override")
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


#: IDX header of each kind of file: (magic number, number of dims). The magic is 0x0000 08 0d:
#: type 0x08 = unsigned byte, d dims, all big-endian.
_IDX_FORMAT = {"images": (2051, 3), "labels": (2049, 1)}

#: What to do about a damaged copy of a Debian package file.
_DEBIAN_FIX = ("reinstall the package that installed it "
               "(Debian: apt-get install --reinstall dataset-fashion-mnist)")


def _idx_kind(name: str) -> str:
    """'images' or 'labels', from an IDX file name such as 'train-labels-idx1-ubyte'."""
    return "labels" if "-labels-" in name else "images"


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def check_idx_header(shown: Path, kind: str, head: bytes, size: int, fix: str,
                     holds: str = "the file holds") -> tuple[int, ...]:
    """Check one IDX file of `kind` ('images' or 'labels') from its first 16 bytes and its size.

    shown: the file named in the message; head: its first (up to) 16 bytes; size: its byte count
    (decompressed, for a .gz); fix: what the user should do, ending the message; holds: how the
    message speaks of the content ("the file holds" / "its decompressed data holds").
    Returns the dims of the header: (n, rows, cols) for images, (n,) for labels.
    Raises a one-line UserError naming `shown` when the magic number, the header, or the byte count
    is wrong.
    """
    magic, ndim = _IDX_FORMAT[kind]
    if size == 0:
        raise UserError(f"{shown} is empty: {holds} 0 bytes, not IDX {kind} data; {fix}")
    if size < 4:
        raise UserError(f"{shown} is truncated: {holds} {size} bytes, fewer than the 4 of an IDX magic number; "
                        f"{fix}")
    got = int.from_bytes(head[:4], "big")
    if got != magic:
        what = f"{shown} is not valid IDX {kind} data"
        other = next((k for k, (m, _) in _IDX_FORMAT.items() if m == got and k != kind), None)
        expected = f"the IDX magic number {magic} ({_hex(magic.to_bytes(4, 'big'))})"
        if other is not None:
            raise UserError(f"{what}: its magic number {got} marks an IDX {other} file, {kind} files start with "
                            f"{magic}; the {other} and {kind} files are swapped or misnamed: put each file under "
                            f"its own name, or {fix}")
        if head[:2] == b"\x1f\x8b" and shown.suffix != ".gz":
            raise UserError(f"{what}: it is gzip-compressed (it starts with 1f 8b); decompress it (gunzip) or "
                            f"rename it to {shown.name}.gz, which is decompressed when loaded")
        text = head[:8]
        if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
            raise UserError(f"{what}: it starts with the text {text.decode('ascii')!r}, not {expected}; {fix}")
        raise UserError(f"{what}: its first 4 bytes are {_hex(head[:4])}, not {expected}; {fix}")
    header = 4 + 4 * ndim
    if size < header:
        raise UserError(f"{shown} is truncated: {holds} {size} bytes, fewer than the {header}-byte header of an "
                        f"IDX {kind} file; {fix}")
    dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected_size = header + math.prod(dims)
    says = (f"{dims[0]} images of {dims[1]}x{dims[2]}" if kind == "images" else f"{dims[0]} labels")
    says = f"its header says {says} = {expected_size} bytes"
    if size != expected_size:
        state = "truncated" if size < expected_size else "damaged"
        raise UserError(f"{shown} is {state}: {says}, {holds} {size}; {fix}")
    if math.prod(dims) == 0:
        raise UserError(f"{shown} holds no {kind}: {says}; {fix}")
    return dims


def check_labels(shown: Path, labels: bytes, n_classes: int, fix: str) -> None:
    """Every label (one byte each, after the header) must be a class index 0..n_classes-1."""
    values = np.frombuffer(labels, dtype=np.uint8)
    bad = np.flatnonzero(values >= n_classes)
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{shown} holds label {int(values[i])} at index {i}, outside the class indices "
                        f"0..{n_classes - 1} ({bad.size} of its {values.size} labels are out of range); {fix}")


def _cannot_read(path: Path, e: OSError) -> UserError:
    return UserError(f"cannot read {path} ({e.strerror or e}); make it readable (chmod u+r) or point dataset.root "
                     f"at a readable copy")


def read_idx_file(path: Path, n_classes: int, fix: str) -> tuple[int, ...]:
    """Check an uncompressed IDX file (see `check_idx_header`; labels also by `check_labels`).

    Reads only the header of an images file, all of a labels file. Returns the header dims.
    """
    kind = _idx_kind(path.name)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            dims = check_idx_header(path, kind, f.read(16), size, fix)
            if kind == "labels":
                f.seek(8)
                check_labels(path, f.read(), n_classes, fix)
    except OSError as e:
        raise _cannot_read(path, e) from e
    return dims


def read_idx_gz(gz: Path, n_classes: int, fix: str) -> tuple[tuple[int, ...], bytes]:
    """Decompress and check a gzipped IDX file (its kind from its name). Returns (dims, IDX bytes)."""
    kind = _idx_kind(gz.name)
    try:
        with gzip.open(gz, "rb") as f:
            data = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"{gz} is truncated or is not gzip data ({' '.join(str(e).split())}); {fix}") from e
    except OSError as e:
        raise _cannot_read(gz, e) from e
    dims = check_idx_header(gz, kind, data[:16], len(data), fix, holds="its decompressed data holds")
    if kind == "labels":
        check_labels(gz, data[8:], n_classes, fix)
    return dims, data


def _write_atomic(target: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `target`, then rename it: never a half-written `target`."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_debian_fashion_mnist(raw_folder: Path, source: Path = DEBIAN_FASHION_MNIST) -> bool:
    """Decompress the Debian Fashion-MNIST .gz files into torchvision's raw folder.

    Only files missing from `raw_folder` are written, each checked first (`read_idx_gz`: a damaged
    package file is a UserError naming it, and nothing is written), then to a temp file that is
    renamed, so an interrupted copy never leaves a truncated IDX file.
    Returns True when all four files are now in `raw_folder`, False when the
    Debian files are not installed (nothing is written then).
    """
    if not all((source / f"{name}.gz").is_file() for name in IDX_FILES):
        return False
    pending = {raw_folder / name: read_idx_gz(source / f"{name}.gz", 10, _DEBIAN_FIX)[1]
               for name in IDX_FILES if not (raw_folder / name).is_file()}
    raw_folder.mkdir(parents=True, exist_ok=True)
    for target, data in pending.items():
        _write_atomic(target, data)
    return True


def images_to_split(data: torch.Tensor, targets: torch.Tensor, n: int | None, device) -> Split:
    """uint8 images [N, 28, 28] -> float32 [n, 1, 28, 28] in [0, 1]; labels -> int64 [n]."""
    if n is not None:
        data, targets = data[:n], targets[:n]
    x = data.to(device=device, dtype=torch.float32).div_(255.0).unsqueeze(1)   # [n, 1, 28, 28]
    return Split(x, targets.to(device=device, dtype=torch.int64))


def rows_split(split: Split) -> Split:
    """Images [N, 1, H, W] -> row sequences [N, H, W] (time-major samples: step t is row t)."""
    return Split(split.x.squeeze(1), split.y)


class TorchvisionImages:
    """MNIST or Fashion-MNIST through torchvision; `dataset=mnist` / `dataset=fashion_mnist`.

    Reads torchvision's layout `<root>/MNIST/raw/` or `<root>/FashionMNIST/raw/`
    (uncompressed IDX files; a file that is only there as `<name>.gz` is decompressed beside it).
    `check_files` checks all four before torchvision reads them, so a damaged file is a one-line
    UserError that names it, not "not found" nor a failure after training. Each split is read once from the dataset's `.data`
    / `.targets` tensors; no per-sample transforms. `val` samples (a count or a
    fraction) are held out of the training split by a permutation drawn from
    `seed`; `n_train` / `n_test` then keep only the first n samples of a split
    (all of it when n is larger) for quick runs. `sequential='rows'` gives every image as the sequence
    of its rows (see the module docstring); ``T`` (the run's) must then be the number of rows.
    """

    def __init__(self, name: str, root: str, download: bool = False,
                 n_train: int | None = None, n_test: int | None = None, val: float = 5000, seed: int = 0,
                 sequential: str | None = None, T: int | None = None):
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
        self.sequential, self.T = _sequential(sequential), T

    @property
    def raw_folder(self) -> Path:
        return self.root / _TORCHVISION_CLASS[self.name] / "raw"

    def _dataset_class(self):
        import torchvision.datasets as tvd

        return getattr(tvd, _TORCHVISION_CLASS[self.name])

    def _missing_error(self, cause: Exception | None, missing: list[str] | None = None) -> UserError:
        if missing and len(missing) < len(IDX_FILES):
            where = (f"dataset '{self.name}' is incomplete in {str(self.raw_folder)!r}: {', '.join(missing)} "
                     f"missing (dataset.root={str(self.root)!r})")
        else:
            where = f"dataset '{self.name}' not found in {str(self.raw_folder)!r} (dataset.root={str(self.root)!r})"
        if self.download and cause is not None:
            return UserError(
                f"{where} and dataset.download=true failed ({' '.join(str(cause).split())}); connect to the "
                f"internet, point dataset.root at a copy, or use the embedded task dataset=synthetic")
        return UserError(
            f"{where} and dataset.download=false; set dataset.download=true (needs internet), "
            f"point dataset.root at a copy, or use the embedded task dataset=synthetic")

    def _fix(self, path: Path) -> str:
        """What to do about the damaged file `path` in the raw folder."""
        if self.name == "fashion_mnist" and path.suffix != ".gz" and all(
                (DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in IDX_FILES):
            return f"delete it and run again to restore it from {DEBIAN_FASHION_MNIST}"
        return "delete it, then put a good copy there or set dataset.download=true to download it again"

    def _legacy(self) -> bool:
        """torchvision reads `<root>/<Class>/processed/{training,test}.pt` instead of raw/ when both exist."""
        processed = self.raw_folder.parent / "processed"
        return all((processed / f).is_file() for f in ("training.pt", "test.pt"))

    def check_files(self, n_classes: int) -> tuple[list[str], dict[Path, bytes]]:
        """Check the four IDX files in the raw folder before torchvision reads them.

        Each file is checked on its own (`read_idx_file`); where it is absent but `<name>.gz` is
        beside it, that is decompressed in memory and checked (`read_idx_gz`). Then each labels file
        must hold as many labels as its images file has images, and test images the size of training
        images. Raises a one-line UserError naming the damaged file; writes nothing.
        Returns (names of the files that are absent with no .gz, {raw path: decompressed bytes} for
        the .gz copies that the caller writes once nothing else is wrong).
        """
        found: dict[str, tuple[Path, tuple[int, ...]]] = {}
        pending: dict[Path, bytes] = {}
        missing: list[str] = []
        for name in IDX_FILES:
            path, gz = self.raw_folder / name, self.raw_folder / f"{name}.gz"
            if path.is_file():
                found[name] = path, read_idx_file(path, n_classes, self._fix(path))
            elif os.path.lexists(path):
                raise UserError(f"{path} is not a regular file (a directory or a broken link) where the IDX file "
                                f"{name} belongs; {self._fix(path)}")
            elif gz.is_file():
                dims, pending[path] = read_idx_gz(gz, n_classes, self._fix(gz))
                found[name] = gz, dims
            else:
                missing.append(name)
        for prefix in ("train", "t10k"):
            images, labels = found.get(f"{prefix}-images-idx3-ubyte"), found.get(f"{prefix}-labels-idx1-ubyte")
            if images and labels and images[1][0] != labels[1][0]:
                raise UserError(
                    f"{labels[0]} holds {labels[1][0]} labels but {images[0]} holds {images[1][0]} images; each "
                    f"image needs one label: restore matching copies of both files (delete them, then put good "
                    f"copies there or set dataset.download=true to download them again)")
        train, test = found.get("train-images-idx3-ubyte"), found.get("t10k-images-idx3-ubyte")
        if train and test and train[1][1:] != test[1][1:]:
            raise UserError(
                f"{test[0]} holds images of {test[1][1]}x{test[1][2]} but {train[0]} holds images of "
                f"{train[1][1]}x{train[1][2]}; both splits need the same image size: restore a matching copy of "
                f"the wrong one ({self._fix(test[0])})")
        return missing, pending

    def _check_loaded(self, ds, train: bool, n_classes: int) -> None:
        """The tensors torchvision read from its legacy processed/*.pt files: as many labels as images,
        labels in 0..n_classes-1 (`check_files` guarantees this for raw files before they are read)."""
        source = self.raw_folder.parent / "processed" / ("training.pt" if train else "test.pt")
        data, targets = ds.data, ds.targets
        if len(data) != len(targets):
            raise UserError(f"{source} holds {len(targets)} labels for {len(data)} images; each image needs one "
                            f"label: {self._fix(source)}")
        if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n_classes):
            raise UserError(f"{source} holds labels outside 0..{n_classes - 1} (the {n_classes} classes): "
                            f"{self._fix(source)}")

    def _open(self, train: bool, download: bool):
        cls = self._dataset_class()
        try:
            return cls(str(self.root), train=train, download=download)
        except (RuntimeError, OSError) as e:   # "Dataset not found", URLError, HTTPError, permission
            raise self._missing_error(e) from e
        except (AssertionError, ValueError, TypeError, KeyError) as e:   # torchvision's IDX parser
            raise UserError(
                f"dataset '{self.name}' in {str(self.raw_folder)!r} is not valid IDX data ({type(e).__name__}); "
                f"delete that folder and set dataset.download=true, or use dataset=synthetic") from e

    def load(self, device: torch.device) -> tuple[Split, Split, DataInfo]:
        n_classes = len(self._dataset_class().classes)
        download = self.download
        if self.name == "fashion_mnist" and not all((self.raw_folder / f).is_file() for f in IDX_FILES):
            try:
                if install_debian_fashion_mnist(self.raw_folder, DEBIAN_FASHION_MNIST):
                    download = False   # the Debian files' md5 differs from torchvision's list: never check
            except OSError as e:
                raise UserError(
                    f"could not write Fashion-MNIST into {str(self.raw_folder)!r} ({e.strerror or e}); "
                    f"set dataset.root to a writable directory") from e
        legacy = self._legacy()
        if not legacy:
            missing, pending = self.check_files(n_classes)
            if missing and not download:
                raise self._missing_error(None, missing)
            for target, data in pending.items():
                try:
                    _write_atomic(target, data)
                except OSError as e:
                    raise UserError(
                        f"could not write the decompressed {target.name} into {str(target.parent)!r} "
                        f"({e.strerror or e}); decompress {target.name}.gz there yourself (gunzip -k) or set "
                        f"dataset.root to a writable copy") from e
        train_ds, test_ds = self._open(True, download), self._open(False, download)
        if legacy:                                  # raw files were checked before torchvision read them
            self._check_loaded(train_ds, True, n_classes)
            self._check_loaded(test_ds, False, n_classes)
        data, targets = train_ds.data, train_ds.targets
        held = hold_out(len(data), self.val, self.seed)
        val = None
        if held is not None:
            val = images_to_split(data[held], targets[held], None, device)
            data, targets = data[~held], targets[~held]                 # the rest, in the original order
        if self.sequential == "rows" and self.T is not None and self.T != data.shape[1]:
            raise UserError(f"T={self.T} but dataset.sequential=rows feeds one image row per time step and the "
                            f"images have {data.shape[1]} rows; set T={data.shape[1]} (or dataset.sequential=none)")
        train = images_to_split(data, targets, self.n_train, device)
        test = images_to_split(test_ds.data, test_ds.targets, self.n_test, device)
        if self.sequential == "rows":
            train, val, test = (None if sp is None else rows_split(sp) for sp in (train, val, test))
            info = DataInfo(input_shape=tuple(train.x.shape[2:]), n_classes=len(train_ds.classes),
                            time_major=True, name=self.name)
            return train, val, test, info
        info = DataInfo(input_shape=tuple(train.x.shape[1:]), n_classes=len(train_ds.classes),
                        time_major=False, name=self.name)
        return train, val, test, info


# --------------------------------------------------------------------------- neuromorphic events (tonic)


@dataclass(frozen=True)
class EventSource:
    """One tonic event dataset: where tonic keeps it under the root, and what it holds.

    tonic_class: the class in `tonic.datasets` (also the folder under ``dataset.root``).
    sensor:      tonic's sensor size (x, y, polarity); frames come out as [T, P, Y, X].
    splits:      {split: path of the split's files inside the folder, and the glob of its event files}.
    get:         how to get the files, for the one-line error when they are missing.
    """

    tonic_class: str
    sensor: tuple[int, int, int]
    n_classes: int
    splits: dict
    get: str


EVENT_SOURCES = {
    "shd": EventSource(
        "SHD", (700, 1, 1), 20,
        {"train": ("", "shd_train.h5"), "test": ("", "shd_test.h5")},
        "put shd_train.h5 and shd_test.h5 there (unzip shd_train.h5.zip and shd_test.h5.zip from "
        "https://zenkelab.org/datasets/)"),
    "nmnist": EventSource(
        "NMNIST", (34, 34, 2), 10,
        {"train": ("Train", "*/*.bin"), "test": ("Test", "*/*.bin")},
        "put the folders Train/ and Test/ there, each with one folder of .bin files per digit (unzip train.zip "
        "and test.zip of N-MNIST from https://www.garrickorchard.com/datasets/n-mnist)"),
    "dvs_gesture": EventSource(
        "DVSGesture", (128, 128, 2), 11,
        {"train": ("ibmGestureTrain", "*/*.npy"), "test": ("ibmGestureTest", "*/*.npy")},
        "put the folders ibmGestureTrain/ and ibmGestureTest/ there, with user<NN>_<lighting>/<label>.npy files "
        "(extract tonic's ibmGestureTrain.tar.gz https://figshare.com/ndownloader/files/38022171 and "
        "ibmGestureTest.tar.gz https://figshare.com/ndownloader/files/38020584)"),
}

#: The cache file's format tag; a file without it (or of another version) is rebuilt.
FRAMES_FORMAT = "dendsn-event-frames/1"


def _tonic_dataset(source: EventSource, root: Path, train: bool):
    """tonic's own dataset class, reading the extracted files as they are: its presence check (the
    downloaded archive, and e.g. >= 10000 .bin files for N-MNIST) is replaced by `TonicEvents`' own, and
    its download is never attempted (this class is only built once the files are there)."""
    import tonic.datasets

    def no_download(self):
        raise UserError(f"{source.tonic_class} files are missing in {self.location_on_system}: {source.get}")

    base = getattr(tonic.datasets, source.tonic_class)
    # Same class name: tonic reads from <root>/<class name>/.
    cls = type(source.tonic_class, (base,), {"_check_exists": lambda self: True, "download": no_download})
    return cls(str(root), train=train)


def pool_frames(frames: np.ndarray, source: EventSource, channels: int | None, size: int | None) -> np.ndarray:
    """tonic's frames [T, P, Y, X] -> the network's per-step input, summing neighbours.

    SHD (1 polarity, Y = 1, X = 700 units):  [T, channels], channel c = units c*k .. c*k+k-1, k = 700/channels
    cameras:                                  [T, P, size, size], each cell the sum of a (X/size) x (X/size) block
    """
    f = frames.astype(np.int32)
    T = f.shape[0]
    if source.sensor[1] == 1:                                          # a 1-D sensor (SHD's cochlea)
        n = source.sensor[0]
        return f.reshape(T, channels, n // channels).sum(-1)           # [T, channels]
    P, Y, X = f.shape[1:]
    return f.reshape(T, P, size, Y // size, size, X // size).sum((3, 5))   # [T, P, size, size]


class TonicEvents:
    """Neuromorphic event datasets read with tonic; `dataset=shd` / `dataset=nmnist` / `dataset=dvs_gesture`.

    SHD (Spiking Heidelberg Digits: 20 spoken digits as spikes of 700 cochlea channels), N-MNIST (MNIST
    digits seen by a moving ATIS camera, 2 x 34 x 34) and DVS Gesture (11 gestures, DVS camera 2 x 128 x 128)
    are read from tonic's folder layout `<root>/<SHD|NMNIST|DVSGesture>/` (see `EVENT_SOURCES`; never
    downloaded: missing files are a one-line UserError that says where to put what). Each recording's
    events are binned by tonic's `ToFrame(sensor_size, n_time_bins=T)`: T equal bins from its first event
    to its last,

        w = (t_last - t_first) // T                                     (whole microseconds)
        counts[t, p, y, x] = #{events (x, y, p) with t_first + t w <= time < t_first + (t + 1) w}

    (so the last event, at t_first + T w or later, falls past the final bin), then neighbours are summed
    (`pool_frames`): SHD's 700 units into ``channels`` groups, a camera's pixels into ``size`` x ``size``
    cells. x[n, t] is the count of step t, or min(count, 1) with ``binary``: float32 [N, T, ...], time-major
    (`DataInfo.time_major`), fed to the network as input spikes / currents by encoder=direct.

    Binning a whole split takes a while (N-MNIST: 70,000 files), so the counts of each split are cached on
    first use as `<root>/<folder>/dendsn-frames/<split>-T<T>-<shape>.pt`: keyed by everything that changes
    them (split, T, channels / size; ``binary`` and the sample limits apply after the cache), written
    atomically, and rebuilt when the source files change (their number, bytes or times) or the cache is
    damaged. The cache is used on its own when the source files have been removed.

    ``val`` samples (a count or a fraction) are held out of the training split by a permutation drawn from
    ``seed``, then ``n_train`` / ``n_test`` keep the first n samples of a split, as for the image datasets.
    """

    def __init__(self, name: str, root: str, T: int, channels: int | None = None, size: int | None = None,
                 binary: bool = False, n_train: int | None = None, n_test: int | None = None,
                 val: float = 0.1, seed: int = 0):
        _require(name in EVENT_SOURCES, "dataset.name", name, f"one of {sorted(EVENT_SOURCES)}")
        source = EVENT_SOURCES[name]
        _require(isinstance(root, (str, os.PathLike)) and str(root) != "", "dataset.root", root, "a directory path")
        _require(_is_int(T) and T >= 1, "T", T, "an integer >= 1 (the number of frames per recording)")
        n_units, side = source.sensor[0], source.sensor[0]
        if source.sensor[1] == 1:
            if size is not None:
                raise UserError(f"dataset.size={size!r} applies to camera datasets (dataset=nmnist, "
                                f"dataset=dvs_gesture); {name} has channels: use dataset.channels")
            channels = n_units if channels is None else channels
            _require(_is_int(channels) and channels >= 1 and n_units % channels == 0, "dataset.channels", channels,
                     f"a divisor of the {n_units} units (e.g. {n_units}, 140, 100, 70), each channel summing "
                     f"{n_units} / channels neighbouring units")
        else:
            if channels is not None:
                raise UserError(f"dataset.channels={channels!r} applies to dataset=shd; {name} frames are "
                                f"images: use dataset.size (the side of the frame, a divisor of {side})")
            size = side if size is None else size
            _require(_is_int(size) and size >= 1 and side % size == 0, "dataset.size", size,
                     f"a divisor of the sensor's {side} pixels (the side of the frame after summing "
                     f"{side} / size x {side} / size pixel blocks)")
        _require(isinstance(binary, bool), "dataset.binary", binary,
                 "true (spikes: a count > 0 is 1) or false (event counts)")
        _require(n_train is None or (_is_int(n_train) and n_train >= 1), "dataset.n_train", n_train,
                 "null (all) or an integer >= 1")
        _require(n_test is None or (_is_int(n_test) and n_test >= 1), "dataset.n_test", n_test,
                 "null (all) or an integer >= 1")
        _val_count(val, 1)                                   # type / range check
        _require(_is_int(seed) and seed >= 0, "dataset.seed", seed, "an integer >= 0")
        self.name, self.source, self.root = name, source, Path(root).expanduser()
        self.T, self.channels, self.size, self.binary = T, channels, size, binary
        self.n_train, self.n_test, self.val, self.seed = n_train, n_test, val, seed

    # ----------------------------------------------------------------- files

    @property
    def folder(self) -> Path:
        """tonic's folder of this dataset: <root>/<tonic class name>."""
        return self.root / self.source.tonic_class

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The per-step input: (channels,) for SHD, (P, size, size) for a camera."""
        if self.channels is not None:
            return (self.channels,)
        return (self.source.sensor[2], self.size, self.size)

    def cache_path(self, split: str) -> Path:
        shape = f"c{self.channels}" if self.channels is not None else f"{self.size}x{self.size}"
        return self.folder / "dendsn-frames" / f"{split}-T{self.T}-{shape}.pt"

    def source_files(self, split: str) -> list[Path]:
        sub, pattern = self.source.splits[split]
        return sorted(p for p in (self.folder / sub).glob(pattern) if p.is_file())

    @staticmethod
    def signature(files: list[Path]) -> list[int]:
        """[number of files, total bytes, newest mtime in ns]: a cache made from other files is rebuilt."""
        stats = [f.stat() for f in files]
        return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]

    def _missing_error(self, splits: list[str]) -> UserError:
        which = "" if len(splits) == len(self.source.splits) else f" (its {' and '.join(splits)} split)"
        return UserError(
            f"dataset '{self.name}'{which} not found in {str(self.folder)!r} (dataset.root={str(self.root)!r}); "
            f"{self.source.get}, point dataset.root at a copy, or use the embedded task dataset=synthetic")

    # ----------------------------------------------------------------- cache

    def _read_cache(self, path: Path, split: str) -> dict | None:
        """The cached counts of `split`, or None when the file is damaged or not one of ours."""
        try:
            got = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:                                   # truncated, not a zip / pickle, unreadable
            return None
        try:
            x, y = got["x"], got["y"]
            ok = (got["format"] == FRAMES_FORMAT and got["split"] == split and got["dataset"] == self.name
                  and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                  and x.dtype == torch.int16 and y.dtype == torch.int64
                  and tuple(x.shape[1:]) == (self.T, *self.frame_shape) and y.shape == (x.shape[0],)
                  and isinstance(got["source"], list))
        except (KeyError, TypeError, IndexError):
            return None
        return got if ok else None

    def _write_cache(self, path: Path, content: dict) -> None:
        """torch.save to a temp file beside `path`, then rename it; a read-only root only skips the cache."""
        import logging

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    torch.save(content, out)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            logging.getLogger("dendsn").warning("could not cache the %s frames in %s (%s); they are binned again "
                                                "on the next run", self.name, path, e.strerror or e)

    # ----------------------------------------------------------------- binning

    def _bin_split(self, split: str, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read every recording of `split` with tonic and bin it: (counts int16 [N, T, ...], labels int64 [N])."""
        from tonic.transforms import ToFrame
        from tqdm import tqdm

        sub, _ = self.source.splits[split]
        where = self.folder / sub if sub else files[0]
        try:
            ds = _tonic_dataset(self.source, self.root, train=(split == "train"))
            n = len(ds)
        except UserError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise UserError(f"{where} is not in {self.name}'s layout ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}); {self.source.get}") from e
        if ds.data:          # tonic lists DVS Gesture's files in the file system's order: sort them by path
            order = sorted(range(n), key=lambda i: ds.data[i])
            ds.data, ds.targets = [ds.data[i] for i in order], [ds.targets[i] for i in order]
        to_frame = ToFrame(sensor_size=self.source.sensor, n_time_bins=self.T)
        x = torch.zeros((n, self.T, *self.frame_shape), dtype=torch.int16)     # [N, T, ...]
        y = torch.zeros(n, dtype=torch.int64)
        empty = np.zeros((self.T, *self.source.sensor[::-1]), dtype=np.int16)   # [T, P, Y, X]
        for i in tqdm(range(n), desc=f"binning {self.name} {split} into T={self.T} frames (once: cached)",
                      unit="recording", disable=None, leave=False, mininterval=1.0):
            shown = ds.data[i] if ds.data else f"{where} (recording {i})"     # SHD: one file of all recordings
            try:
                events, label = ds[i]
                frames = to_frame(events) if len(events) else empty            # [T, P, Y, X] int16
                counts = pool_frames(frames, self.source, self.channels, self.size)
            except (OSError, ValueError, KeyError, IndexError, TypeError, AssertionError) as e:
                raise UserError(f"{shown} is not a valid {self.name} recording ({type(e).__name__}: "
                                f"{' '.join(str(e).split())[:200]}); replace it with a good copy") from e
            label = int(label)
            if not 0 <= label < self.source.n_classes:
                raise UserError(f"{shown} has label {label}, outside the class indices 0..{self.source.n_classes - 1}"
                                f" of {self.name}; replace it with a good copy")
            x[i] = torch.from_numpy(np.minimum(counts, np.iinfo(np.int16).max).astype(np.int16))
            y[i] = label
        return x, y

    def counts(self, split: str, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts int16 [N, T, ...], labels int64 [N]) of `split`, made from `files` (its `source_files`):
        from the cache, else binned and cached."""
        import logging

        path = self.cache_path(split)
        sig = self.signature(files) if files else None
        if path.is_file():
            got = self._read_cache(path, split)
            if got is not None and (sig is None or got["source"] == sig):
                return got["x"], got["y"]
            if sig is None:
                raise UserError(f"the cached frames {path} are damaged and the {self.name} files they were made from "
                                f"are not in {str(self.folder)!r}; delete that file, then {self.source.get}")
            logging.getLogger("dendsn").info("rebuilding %s: the cache is %s", path,
                                             "damaged" if got is None else "from other source files")
        if sig is None:
            raise self._missing_error([split])
        x, y = self._bin_split(split, files)
        self._write_cache(path, {"format": FRAMES_FORMAT, "dataset": self.name, "split": split, "T": self.T,
                                 "source": sig, "x": x, "y": y})
        return x, y

    def _split(self, x: torch.Tensor, y: torch.Tensor, n: int | None, device) -> Split:
        """int16 counts [N, T, ...] -> float32 on the device (clipped to 1 when binary); the first n samples."""
        if n is not None:
            x, y = x[:n], y[:n]
        x = x.to(device=device, dtype=torch.float32)
        if self.binary:
            x = x.clamp_(max=1.0)
        return Split(x, y.to(device))

    def load(self, device: torch.device) -> tuple[Split, Split | None, Split, DataInfo]:
        files = {split: self.source_files(split) for split in self.source.splits}
        missing = [split for split in files if not files[split] and not self.cache_path(split).is_file()]
        if missing:
            raise self._missing_error(missing)
        x, y = self.counts("train", files["train"])
        test_x, test_y = self.counts("test", files["test"])
        held = hold_out(len(x), self.val, self.seed)
        val = None
        if held is not None:
            val = self._split(x[held], y[held], None, device)
            x, y = x[~held], y[~held]                                   # the rest, in the original order
        train = self._split(x, y, self.n_train, device)                # x: [n_train, T, ...]
        test = self._split(test_x, test_y, self.n_test, device)
        info = DataInfo(input_shape=self.frame_shape, n_classes=self.source.n_classes, time_major=True,
                        name=self.name)
        return train, val, test, info
