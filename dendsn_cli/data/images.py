"""`TorchvisionImages` (`dataset=mnist` / `dataset=fashion_mnist`): MNIST / Fashion-MNIST through torchvision,
and the checks of their IDX files before torchvision reads them (a damaged file is a one-line UserError that
names it). Fashion-MNIST is taken from the Debian package files when present."""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from dendsn_cli.config.checks import require
from dendsn_cli.errors import UserError

from .split import DataInfo, Split, check_sizes, hold_out, sequential_kind

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
_DEBIAN_FIX = "reinstall the package that installed it (Debian: apt-get install --reinstall dataset-fashion-mnist)"


def _idx_kind(name: str) -> str:
    """'images' or 'labels', from an IDX file name such as 'train-labels-idx1-ubyte'."""
    return "labels" if "-labels-" in name else "images"


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def check_idx_header(
    shown: Path, kind: str, head: bytes, size: int, fix: str, holds: str = "the file holds"
) -> tuple[int, ...]:
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
        raise UserError(f"{shown} is truncated: {holds} {size} bytes, fewer than the 4 of an IDX magic number; {fix}")
    got = int.from_bytes(head[:4], "big")
    if got != magic:
        what = f"{shown} is not valid IDX {kind} data"
        other = next((k for k, (m, _) in _IDX_FORMAT.items() if m == got and k != kind), None)
        expected = f"the IDX magic number {magic} ({_hex(magic.to_bytes(4, 'big'))})"
        if other is not None:
            raise UserError(
                f"{what}: its magic number {got} marks an IDX {other} file, {kind} files start with "
                f"{magic}; the {other} and {kind} files are swapped or misnamed: put each file under "
                f"its own name, or {fix}"
            )
        if head[:2] == b"\x1f\x8b" and shown.suffix != ".gz":
            raise UserError(
                f"{what}: it is gzip-compressed (it starts with 1f 8b); decompress it (gunzip) or "
                f"rename it to {shown.name}.gz, which is decompressed when loaded"
            )
        text = head[:8]
        if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
            raise UserError(f"{what}: it starts with the text {text.decode('ascii')!r}, not {expected}; {fix}")
        raise UserError(f"{what}: its first 4 bytes are {_hex(head[:4])}, not {expected}; {fix}")
    header = 4 + 4 * ndim
    if size < header:
        raise UserError(
            f"{shown} is truncated: {holds} {size} bytes, fewer than the {header}-byte header of an "
            f"IDX {kind} file; {fix}"
        )
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header + math.prod(dims)
    says = f"{dims[0]} images of {dims[1]}x{dims[2]}" if kind == "images" else f"{dims[0]} labels"
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
        raise UserError(
            f"{shown} holds label {int(values[i])} at index {i}, outside the class indices "
            f"0..{n_classes - 1} ({bad.size} of its {values.size} labels are out of range); {fix}"
        )


def _cannot_read(path: Path, e: OSError) -> UserError:
    return UserError(
        f"cannot read {path} ({e.strerror or e}); make it readable (chmod u+r) or point dataset.root at a readable copy"
    )


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
    pending = {
        raw_folder / name: read_idx_gz(source / f"{name}.gz", 10, _DEBIAN_FIX)[1]
        for name in IDX_FILES
        if not (raw_folder / name).is_file()
    }
    raw_folder.mkdir(parents=True, exist_ok=True)
    for target, data in pending.items():
        _write_atomic(target, data)
    return True


def images_to_split(data: torch.Tensor, targets: torch.Tensor, n: int | None, device) -> Split:
    """uint8 images [N, 28, 28] -> float32 [n, 1, 28, 28] in [0, 1]; labels -> int64 [n]."""
    if n is not None:
        data, targets = data[:n], targets[:n]
    x = data.to(device=device, dtype=torch.float32).div_(255.0).unsqueeze(1)  # [n, 1, 28, 28]
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
    of its rows (see the package docstring); ``T`` (the run's) must then be the number of rows.
    """

    provides = "images"  # static [N, 1, 28, 28]; with sequential=rows the config reads "sequences"

    def __init__(
        self,
        name: str,
        root: str,
        download: bool = False,
        n_train: int | None = None,
        n_test: int | None = None,
        val: float = 5000,
        seed: int = 0,
        sequential: str | None = None,
        T: int | None = None,
    ):
        require(name in _TORCHVISION_CLASS, "dataset.name", name, f"one of {sorted(_TORCHVISION_CLASS)}")
        require(isinstance(root, (str, os.PathLike)) and str(root) != "", "dataset.root", root, "a directory path")
        check_sizes(n_train, n_test, val, seed)
        self.name, self.root, self.download = name, Path(root).expanduser(), bool(download)
        self.n_train, self.n_test, self.val, self.seed = n_train, n_test, val, seed
        self.sequential, self.T = sequential_kind(sequential), T

    @property
    def raw_folder(self) -> Path:
        return self.root / _TORCHVISION_CLASS[self.name] / "raw"

    def _dataset_class(self):
        import torchvision.datasets as tvd  # noqa: PLC0415 (slow to import: only when an image dataset is loaded)

        return getattr(tvd, _TORCHVISION_CLASS[self.name])

    def _missing_error(self, cause: Exception | None, missing: list[str] | None = None) -> UserError:
        if missing and len(missing) < len(IDX_FILES):
            where = (
                f"dataset '{self.name}' is incomplete in {str(self.raw_folder)!r}: {', '.join(missing)} "
                f"missing (dataset.root={str(self.root)!r})"
            )
        else:
            where = f"dataset '{self.name}' not found in {str(self.raw_folder)!r} (dataset.root={str(self.root)!r})"
        if self.download and cause is not None:
            return UserError(
                f"{where} and dataset.download=true failed ({' '.join(str(cause).split())}); connect to the "
                f"internet, point dataset.root at a copy, or use the embedded task dataset=synthetic"
            )
        return UserError(
            f"{where} and dataset.download=false; set dataset.download=true (needs internet), "
            f"point dataset.root at a copy, or use the embedded task dataset=synthetic"
        )

    def _fix(self, path: Path) -> str:
        """What to do about the damaged file `path` in the raw folder."""
        if (
            self.name == "fashion_mnist"
            and path.suffix != ".gz"
            and all((DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in IDX_FILES)
        ):
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
                raise UserError(
                    f"{path} is not a regular file (a directory or a broken link) where the IDX file "
                    f"{name} belongs; {self._fix(path)}"
                )
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
                    f"copies there or set dataset.download=true to download them again)"
                )
        train, test = found.get("train-images-idx3-ubyte"), found.get("t10k-images-idx3-ubyte")
        if train and test and train[1][1:] != test[1][1:]:
            raise UserError(
                f"{test[0]} holds images of {test[1][1]}x{test[1][2]} but {train[0]} holds images of "
                f"{train[1][1]}x{train[1][2]}; both splits need the same image size: restore a matching copy of "
                f"the wrong one ({self._fix(test[0])})"
            )
        return missing, pending

    def _check_loaded(self, ds, train: bool, n_classes: int) -> None:
        """The tensors torchvision read from its legacy processed/*.pt files: as many labels as images,
        labels in 0..n_classes-1 (`check_files` guarantees this for raw files before they are read)."""
        source = self.raw_folder.parent / "processed" / ("training.pt" if train else "test.pt")
        data, targets = ds.data, ds.targets
        if len(data) != len(targets):
            raise UserError(
                f"{source} holds {len(targets)} labels for {len(data)} images; each image needs one "
                f"label: {self._fix(source)}"
            )
        if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n_classes):
            raise UserError(
                f"{source} holds labels outside 0..{n_classes - 1} (the {n_classes} classes): {self._fix(source)}"
            )

    def _open(self, train: bool, download: bool):
        cls = self._dataset_class()
        try:
            return cls(str(self.root), train=train, download=download)
        except (RuntimeError, OSError) as e:  # "Dataset not found", URLError, HTTPError, permission
            raise self._missing_error(e) from e
        except (AssertionError, ValueError, TypeError, KeyError) as e:  # torchvision's IDX parser
            raise UserError(
                f"dataset '{self.name}' in {str(self.raw_folder)!r} is not valid IDX data ({type(e).__name__}); "
                f"delete that folder and set dataset.download=true, or use dataset=synthetic"
            ) from e

    def load(self, device: torch.device) -> tuple[Split, Split, DataInfo]:
        n_classes = len(self._dataset_class().classes)
        download = self.download
        if self.name == "fashion_mnist" and not all((self.raw_folder / f).is_file() for f in IDX_FILES):
            try:
                if install_debian_fashion_mnist(self.raw_folder, DEBIAN_FASHION_MNIST):
                    download = False  # the Debian files' md5 differs from torchvision's list: never check
            except OSError as e:
                raise UserError(
                    f"could not write Fashion-MNIST into {str(self.raw_folder)!r} ({e.strerror or e}); "
                    f"set dataset.root to a writable directory"
                ) from e
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
                        f"dataset.root to a writable copy"
                    ) from e
        train_ds, test_ds = self._open(True, download), self._open(False, download)
        if legacy:  # raw files were checked before torchvision read them
            self._check_loaded(train_ds, True, n_classes)
            self._check_loaded(test_ds, False, n_classes)
        data, targets = train_ds.data, train_ds.targets
        held = hold_out(len(data), self.val, self.seed)
        val = None
        if held is not None:
            val = images_to_split(data[held], targets[held], None, device)
            data, targets = data[~held], targets[~held]  # the rest, in the original order
        if self.sequential == "rows" and self.T is not None and self.T != data.shape[1]:
            raise UserError(
                f"T={self.T} but dataset.sequential=rows feeds one image row per time step and the "
                f"images have {data.shape[1]} rows; set T={data.shape[1]} (or dataset.sequential=none)"
            )
        train = images_to_split(data, targets, self.n_train, device)
        test = images_to_split(test_ds.data, test_ds.targets, self.n_test, device)
        if self.sequential == "rows":
            train, val, test = (None if sp is None else rows_split(sp) for sp in (train, val, test))
            info = DataInfo(
                input_shape=tuple(train.x.shape[2:]), n_classes=len(train_ds.classes), time_major=True, name=self.name
            )
            return train, val, test, info
        info = DataInfo(
            input_shape=tuple(train.x.shape[1:]), n_classes=len(train_ds.classes), time_major=False, name=self.name
        )
        return train, val, test, info
