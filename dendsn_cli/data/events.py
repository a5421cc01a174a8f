"""`TonicEvents` (`dataset=shd` / `nmnist` / `dvs_gesture`): neuromorphic event datasets read by tonic from
its folder layout (never downloaded), binned into T frames and cached (see the class)."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dendsn_cli.config.checks import is_int, require
from dendsn_cli.errors import UserError

from .split import DataInfo, Split, check_sizes, hold_out


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
        "SHD",
        (700, 1, 1),
        20,
        {"train": ("", "shd_train.h5"), "test": ("", "shd_test.h5")},
        "put shd_train.h5 and shd_test.h5 there (unzip shd_train.h5.zip and shd_test.h5.zip from "
        "https://zenkelab.org/datasets/)",
    ),
    "nmnist": EventSource(
        "NMNIST",
        (34, 34, 2),
        10,
        {"train": ("Train", "*/*.bin"), "test": ("Test", "*/*.bin")},
        "put the folders Train/ and Test/ there, each with one folder of .bin files per digit (unzip train.zip "
        "and test.zip of N-MNIST from https://www.garrickorchard.com/datasets/n-mnist)",
    ),
    "dvs_gesture": EventSource(
        "DVSGesture",
        (128, 128, 2),
        11,
        {"train": ("ibmGestureTrain", "*/*.npy"), "test": ("ibmGestureTest", "*/*.npy")},
        "put the folders ibmGestureTrain/ and ibmGestureTest/ there, with user<NN>_<lighting>/<label>.npy files "
        "(extract tonic's ibmGestureTrain.tar.gz https://figshare.com/ndownloader/files/38022171 and "
        "ibmGestureTest.tar.gz https://figshare.com/ndownloader/files/38020584)",
    ),
}

#: The cache file's format tag; a file without it (or of another version) is rebuilt.
FRAMES_FORMAT = "dendsn-event-frames/1"


def _tonic_dataset(source: EventSource, root: Path, train: bool):
    """tonic's own dataset class, reading the extracted files as they are: its presence check (the
    downloaded archive, and e.g. >= 10000 .bin files for N-MNIST) is replaced by `TonicEvents`' own, and
    its download is never attempted (this class is only built once the files are there)."""
    import tonic.datasets  # noqa: PLC0415 (slow to import: only when event files are read)

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
    if source.sensor[1] == 1:  # a 1-D sensor (SHD's cochlea)
        n = source.sensor[0]
        return f.reshape(T, channels, n // channels).sum(-1)  # [T, channels]
    P, Y, X = f.shape[1:]
    return f.reshape(T, P, size, Y // size, size, X // size).sum((3, 5))  # [T, P, size, size]


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

    provides = "event_frames"  # time-major event counts [N, T, ...]

    def __init__(
        self,
        name: str,
        root: str,
        T: int,
        channels: int | None = None,
        size: int | None = None,
        binary: bool = False,
        n_train: int | None = None,
        n_test: int | None = None,
        val: float = 0.1,
        seed: int = 0,
    ):
        require(name in EVENT_SOURCES, "dataset.name", name, f"one of {sorted(EVENT_SOURCES)}")
        source = EVENT_SOURCES[name]
        require(isinstance(root, (str, os.PathLike)) and str(root) != "", "dataset.root", root, "a directory path")
        require(is_int(T) and T >= 1, "T", T, "an integer >= 1 (the number of frames per recording)")
        n_units, side = source.sensor[0], source.sensor[0]
        if source.sensor[1] == 1:
            if size is not None:
                raise UserError(
                    f"dataset.size={size!r} applies to camera datasets (dataset=nmnist, "
                    f"dataset=dvs_gesture); {name} has channels: use dataset.channels"
                )
            channels = n_units if channels is None else channels
            require(
                is_int(channels) and channels >= 1 and n_units % channels == 0,
                "dataset.channels",
                channels,
                f"a divisor of the {n_units} units (e.g. {n_units}, 140, 100, 70), each channel summing "
                f"{n_units} / channels neighbouring units",
            )
        else:
            if channels is not None:
                raise UserError(
                    f"dataset.channels={channels!r} applies to dataset=shd; {name} frames are "
                    f"images: use dataset.size (the side of the frame, a divisor of {side})"
                )
            size = side if size is None else size
            require(
                is_int(size) and size >= 1 and side % size == 0,
                "dataset.size",
                size,
                f"a divisor of the sensor's {side} pixels (the side of the frame after summing "
                f"{side} / size x {side} / size pixel blocks)",
            )
        require(
            isinstance(binary, bool),
            "dataset.binary",
            binary,
            "true (spikes: a count > 0 is 1) or false (event counts)",
        )
        check_sizes(n_train, n_test, val, seed)
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
            f"{self.source.get}, point dataset.root at a copy, or use the embedded task dataset=synthetic"
        )

    # ----------------------------------------------------------------- cache

    def _read_cache(self, path: Path, split: str) -> dict | None:
        """The cached counts of `split`, or None when the file is damaged or not one of ours."""
        try:
            got = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated, not a zip / pickle, unreadable
            return None
        try:
            x, y = got["x"], got["y"]
            ok = (
                got["format"] == FRAMES_FORMAT
                and got["split"] == split
                and got["dataset"] == self.name
                and isinstance(x, torch.Tensor)
                and isinstance(y, torch.Tensor)
                and x.dtype == torch.int16
                and y.dtype == torch.int64
                and tuple(x.shape[1:]) == (self.T, *self.frame_shape)
                and y.shape == (x.shape[0],)
                and isinstance(got["source"], list)
            )
        except (KeyError, TypeError, IndexError):
            return None
        return got if ok else None

    def _write_cache(self, path: Path, content: dict) -> None:
        """torch.save to a temp file beside `path`, then rename it; a read-only root only skips the cache."""
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
            logging.getLogger("dendsn").warning(
                "could not cache the %s frames in %s (%s); they are binned again on the next run",
                self.name,
                path,
                e.strerror or e,
            )

    # ----------------------------------------------------------------- binning

    def _bin_split(self, split: str, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read every recording of `split` with tonic and bin it: (counts int16 [N, T, ...], labels int64 [N])."""
        from tonic.transforms import ToFrame  # noqa: PLC0415 (slow to import: only when event files are read)

        sub, _ = self.source.splits[split]
        where = self.folder / sub if sub else files[0]
        try:
            ds = _tonic_dataset(self.source, self.root, train=(split == "train"))
            n = len(ds)
        except UserError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise UserError(
                f"{where} is not in {self.name}'s layout ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); {self.source.get}"
            ) from e
        if ds.data:  # tonic lists DVS Gesture's files in the file system's order: sort them by path
            order = sorted(range(n), key=lambda i: ds.data[i])
            ds.data, ds.targets = [ds.data[i] for i in order], [ds.targets[i] for i in order]
        to_frame = ToFrame(sensor_size=self.source.sensor, n_time_bins=self.T)
        x = torch.zeros((n, self.T, *self.frame_shape), dtype=torch.int16)  # [N, T, ...]
        y = torch.zeros(n, dtype=torch.int64)
        empty = np.zeros((self.T, *self.source.sensor[::-1]), dtype=np.int16)  # [T, P, Y, X]
        for i in tqdm(
            range(n),
            desc=f"binning {self.name} {split} into T={self.T} frames (once: cached)",
            unit="recording",
            disable=None,
            leave=False,
            mininterval=1.0,
        ):
            shown = ds.data[i] if ds.data else f"{where} (recording {i})"  # SHD: one file of all recordings
            try:
                events, label = ds[i]
                frames = to_frame(events) if len(events) else empty  # [T, P, Y, X] int16
                counts = pool_frames(frames, self.source, self.channels, self.size)
            except (OSError, ValueError, KeyError, IndexError, TypeError, AssertionError) as e:
                raise UserError(
                    f"{shown} is not a valid {self.name} recording ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:200]}); replace it with a good copy"
                ) from e
            label = int(label)
            if not 0 <= label < self.source.n_classes:
                raise UserError(
                    f"{shown} has label {label}, outside the class indices 0..{self.source.n_classes - 1}"
                    f" of {self.name}; replace it with a good copy"
                )
            x[i] = torch.from_numpy(np.minimum(counts, np.iinfo(np.int16).max).astype(np.int16))
            y[i] = label
        return x, y

    def counts(self, split: str, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts int16 [N, T, ...], labels int64 [N]) of `split`, made from `files` (its `source_files`):
        from the cache, else binned and cached."""
        path = self.cache_path(split)
        sig = self.signature(files) if files else None
        if path.is_file():
            got = self._read_cache(path, split)
            if got is not None and (sig is None or got["source"] == sig):
                return got["x"], got["y"]
            if sig is None:
                raise UserError(
                    f"the cached frames {path} are damaged and the {self.name} files they were made from "
                    f"are not in {str(self.folder)!r}; delete that file, then {self.source.get}"
                )
            logging.getLogger("dendsn").info(
                "rebuilding %s: the cache is %s", path, "damaged" if got is None else "from other source files"
            )
        if sig is None:
            raise self._missing_error([split])
        x, y = self._bin_split(split, files)
        self._write_cache(
            path,
            {"format": FRAMES_FORMAT, "dataset": self.name, "split": split, "T": self.T, "source": sig, "x": x, "y": y},
        )
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
            x, y = x[~held], y[~held]  # the rest, in the original order
        train = self._split(x, y, self.n_train, device)  # x: [n_train, T, ...]
        test = self._split(test_x, test_y, self.n_test, device)
        info = DataInfo(input_shape=self.frame_shape, n_classes=self.source.n_classes, time_major=True, name=self.name)
        return train, val, test, info
