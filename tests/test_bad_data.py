"""Bad-input suite, data category: damaged MNIST files under `dataset.root`.

Each case damages one IDX file that torchvision would read from `<root>/MNIST/raw/` (raw or its `.gz`),
runs the real `dendsn train dataset=mnist ...`, and asserts: exit 2, exactly one `dendsn: error: ...`
line that names the damaged file and says what is wrong and what to do, no traceback, and every file
that was there before (the data and anything else in the directory) unchanged, with nothing added to
the data folder. Every error comes while loading, before training starts.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_error, snapshot
from test_data import write_fake_mnist, write_idx

from dendsn_cli.data import TorchvisionImages
from dendsn_cli.data import images as data  # the module that reads DEBIAN_FASHION_MNIST (patched below)
from dendsn_cli.errors import UserError

N_TRAIN, N_TEST = 40, 20
#: A tiny MLP run on the fake MNIST files: it would take a few seconds if the data were good.
SMALL = [
    "dataset=mnist",
    "dataset.val=10",
    "network.hidden=[8]",
    "T=2",
    "batch_size=20",
    "epochs=1",
    "progress=false",
    "hydra.run.dir=run",
]


@pytest.fixture
def raw(tmp_path) -> Path:
    """Good fake MNIST files in tmp_path/data/MNIST/raw (40 train, 20 test), plus a user file beside them."""
    write_fake_mnist(tmp_path / "data", n_train=N_TRAIN, n_test=N_TEST)
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    return tmp_path / "data" / "MNIST" / "raw"


def refused(dendsn_here, tmp_path, *fragments) -> str:
    """Run the tiny training on tmp_path/data; assert the one-line refusal naming ``fragments`` and that
    nothing the user had was changed or lost, and nothing was added to the data folder."""
    before, data_before = snapshot(tmp_path), snapshot(tmp_path / "data")
    p = dendsn_here("train", f"dataset.root={tmp_path / 'data'}", *SMALL)
    line = one_error(p, *fragments, code=2)
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before
    assert snapshot(tmp_path / "data") == data_before
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    return line


def _gzip_in_place(path: Path, data: bytes | None = None) -> Path:
    """Replace ``path`` by ``path.gz`` holding ``data`` (default: its own bytes), gzip-compressed."""
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes() if data is None else data))
    path.unlink()
    return gz


# --------------------------------------------------------------------------- truncated / damaged sizes


def test_truncated_images_file_names_it_and_its_sizes(dendsn_here, tmp_path, raw):
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    line = refused(
        dendsn_here,
        tmp_path,
        str(path),
        "is truncated",
        f"header says {N_TRAIN} images of 28x28 = {16 + N_TRAIN * 784} bytes, the file holds 1000",
        "delete it",
        "dataset.download=true",
    )
    assert "not found" not in line


def test_truncated_labels_file_names_it(dendsn_here, tmp_path, raw):
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[: 8 + 5])
    line = refused(
        dendsn_here,
        tmp_path,
        str(path),
        "is truncated",
        f"header says {N_TEST} labels = {8 + N_TEST} bytes, the file holds 13",
        "delete it",
    )
    assert "not found" not in line


def test_file_with_extra_bytes_is_damaged(dendsn_here, tmp_path, raw):
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + b"\0" * 7)
    refused(
        dendsn_here,
        tmp_path,
        str(path),
        "is damaged",
        f"header says {N_TEST} images of 28x28 = {16 + N_TEST * 784} bytes, the file holds {23 + N_TEST * 784}",
    )


def test_truncated_header_names_it(dendsn_here, tmp_path, raw):
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:10])
    refused(dendsn_here, tmp_path, str(path), "is truncated", "fewer than the 16-byte header")


def test_cut_gz_file_names_it(dendsn_here, tmp_path, raw):
    """Only the .gz is there (torchvision's download keeps it beside the raw file), cut short mid-stream."""
    gz = _gzip_in_place(raw / "train-images-idx3-ubyte")
    gz.write_bytes(gz.read_bytes()[:500])
    line = refused(dendsn_here, tmp_path, str(gz), "is truncated or is not gzip data", "delete it")
    assert "not found" not in line


def test_gz_of_a_truncated_idx_file_names_it_and_its_sizes(dendsn_here, tmp_path, raw):
    path = raw / "train-labels-idx1-ubyte"
    gz = _gzip_in_place(path, path.read_bytes()[:20])
    refused(
        dendsn_here,
        tmp_path,
        str(gz),
        "is truncated",
        f"header says {N_TRAIN} labels = {8 + N_TRAIN} bytes, its decompressed data holds 20",
    )


def test_empty_file_names_it(dendsn_here, tmp_path, raw):
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(b"")
    refused(dendsn_here, tmp_path, str(path), "is empty", "0 bytes", "delete it")


# --------------------------------------------------------------------------- wrong content


def test_label_count_disagreeing_with_image_count(dendsn_here, tmp_path, raw):
    """Used to train a whole epoch, then fail as an internal error."""
    images = raw / "train-images-idx3-ubyte"
    write_idx(images, np.zeros((N_TRAIN - 1, 28, 28), dtype=np.uint8), 2051)
    refused(
        dendsn_here,
        tmp_path,
        f"{raw / 'train-labels-idx1-ubyte'} holds {N_TRAIN} labels but {images} holds {N_TRAIN - 1} images",
        "restore matching copies of both files",
    )


def test_label_outside_the_classes(dendsn_here, tmp_path, raw):
    path = raw / "train-labels-idx1-ubyte"
    labels = np.frombuffer(path.read_bytes()[8:], dtype=np.uint8).copy()
    labels[3], labels[7] = 10, 255
    write_idx(path, labels, 2049)
    refused(
        dendsn_here,
        tmp_path,
        str(path),
        "holds label 10 at index 3, outside the class indices 0..9",
        "2 of its 40 labels are out of range",
        "delete it",
    )


def test_text_file_in_place_of_labels(dendsn_here, tmp_path, raw):
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_text("hello, these are not labels\n")
    refused(
        dendsn_here,
        tmp_path,
        str(path),
        "is not valid IDX labels data",
        "starts with the text 'hello, t'",
        "magic number 2049",
    )


def test_images_file_where_labels_are_expected(dendsn_here, tmp_path, raw):
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes((raw / "t10k-images-idx3-ubyte").read_bytes())
    refused(
        dendsn_here,
        tmp_path,
        str(path),
        "is not valid IDX labels data",
        "magic number 2051 marks an IDX images file",
        "swapped or misnamed",
    )


def test_gzipped_file_under_the_raw_name(dendsn_here, tmp_path, raw):
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    refused(dendsn_here, tmp_path, str(path), "is gzip-compressed", "t10k-images-idx3-ubyte.gz")


def test_test_images_of_another_size(dendsn_here, tmp_path, raw):
    path = raw / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros((N_TEST, 14, 14), dtype=np.uint8), 2051)
    refused(dendsn_here, tmp_path, str(path), "holds images of 14x14", "28x28")


def test_unreadable_file_names_it(dendsn_here, tmp_path, raw):
    if os.geteuid() == 0:
        pytest.skip("running as root, which reads a file whatever its permissions")
    path = raw / "train-images-idx3-ubyte"
    before = snapshot(tmp_path)
    path.chmod(0)
    try:
        p = dendsn_here("train", f"dataset.root={tmp_path / 'data'}", *SMALL)
    finally:
        path.chmod(0o644)
    one_error(p, f"cannot read {path}", "chmod u+r", code=2)
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before


# --------------------------------------------------------------------------- good paths next to the checks


def test_good_gz_files_load_without_download(tmp_path):
    """Files there only as .gz are checked, decompressed beside them, and loaded with download=false."""
    arrays = write_fake_mnist(tmp_path, n_train=N_TRAIN, n_test=N_TEST)
    raw = tmp_path / "MNIST" / "raw"
    gzs = {name: _gzip_in_place(raw / name).read_bytes() for name in data.IDX_FILES}
    train, _, test, info = TorchvisionImages("mnist", root=str(tmp_path), val=0).load(torch.device("cpu"))
    assert train.y.tolist() == arrays["train"][1].tolist() and len(test) == N_TEST and info.n_classes == 10
    assert sorted(p.name for p in raw.iterdir()) == sorted([*data.IDX_FILES, *(f"{n}.gz" for n in data.IDX_FILES)])
    assert all((raw / f"{n}.gz").read_bytes() == b for n, b in gzs.items())  # the .gz files untouched


def test_damaged_debian_package_file_is_named(tmp_path, monkeypatch):
    """A cut /usr/share/datasets/fashion-mnist/*.gz is named, with the package to reinstall; nothing written."""
    source = tmp_path / "debian"
    source.mkdir()
    write_fake_mnist(tmp_path / "fake")
    for name in data.IDX_FILES:
        (source / f"{name}.gz").write_bytes(gzip.compress((tmp_path / "fake" / "MNIST" / "raw" / name).read_bytes()))
    cut = source / "t10k-images-idx3-ubyte.gz"
    cut.write_bytes(gzip.compress((tmp_path / "fake" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()[:99]))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", source)
    with pytest.raises(UserError) as err:
        TorchvisionImages("fashion_mnist", root=str(tmp_path / "root")).load(torch.device("cpu"))
    message = str(err.value)
    assert "\n" not in message and str(cut) in message and "is truncated" in message
    assert "dataset-fashion-mnist" in message
    assert not (tmp_path / "root" / "FashionMNIST" / "raw").exists() or not any(
        (tmp_path / "root" / "FashionMNIST" / "raw").iterdir()
    )


def test_idx_header_check_reports_sizes():
    with pytest.raises(UserError, match=r"header says 60000 images of 28x28 = 47040016 bytes, the file holds 100"):
        data.check_idx_header(Path("x-images"), "images", struct.pack(">4I", 2051, 60000, 28, 28), 100, "fix it")
