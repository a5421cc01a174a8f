"""Datasets: the synthetic spike-timing task, MNIST / Fashion-MNIST loading, batching."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dendsn_cli import data
from dendsn_cli.data import DataInfo, Split, SyntheticSpikes, TorchvisionImages
from dendsn_cli.errors import UserError

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- synthetic task


@pytest.fixture(scope="module")
def default_synthetic():
    return SyntheticSpikes().load(CPU)


def test_synthetic_shapes_and_values(default_synthetic):
    train, _, test, info = default_synthetic
    ds = SyntheticSpikes()
    assert info == DataInfo(input_shape=(ds.n_channels,), n_classes=ds.n_classes, time_major=True, name="synthetic")
    assert train.x.shape == (ds.n_train, ds.T, ds.n_channels) and train.x.dtype == torch.float32
    assert test.x.shape == (ds.n_test, ds.T, ds.n_channels)
    assert train.y.dtype == torch.int64 and len(train) == ds.n_train
    assert set(train.x.unique().tolist()) == {0.0, 1.0}
    # balanced classes
    assert torch.bincount(train.y, minlength=ds.n_classes).tolist() == [ds.n_train // ds.n_classes] * ds.n_classes


def test_synthetic_is_deterministic_from_seed():
    a_train, _, a_test, _ = SyntheticSpikes(n_train=50, n_test=20, seed=3).load(CPU)
    b_train, _, b_test, _ = SyntheticSpikes(n_train=50, n_test=20, seed=3).load(CPU)
    c_train, _, _, _ = SyntheticSpikes(n_train=50, n_test=20, seed=4).load(CPU)
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_train.y, b_train.y)
    assert torch.equal(a_test.x, b_test.x) and torch.equal(a_test.y, b_test.y)
    assert not torch.equal(a_train.x, c_train.x)


def test_noise_free_samples_are_their_class_template():
    """Without jitter/deletion/noise every channel spikes once, at the class's own time."""
    train, _, test, _ = SyntheticSpikes(
        n_classes=3, n_channels=8, T=5, jitter=0, p_delete=0.0, noise_rate=0.0, n_train=30, n_test=9
    ).load(CPU)
    assert torch.all(train.x.sum(1) == 1)  # one spike per channel
    for c in range(3):
        samples = torch.cat([train.x[train.y == c], test.x[test.y == c]])
        assert torch.all(samples == samples[0])  # train and test share templates


def test_jitter_deletion_noise_statistics():
    ds = SyntheticSpikes(
        n_classes=2, n_channels=50, T=30, jitter=2, p_delete=0.25, noise_rate=0.0, n_train=400, n_test=1
    )
    train, _, _, _ = ds.load(CPU)
    assert train.x.sum(1).max() == 1  # jitter never duplicates a spike
    kept = train.x.sum((1, 2)).mean() / ds.n_channels
    assert abs(kept - 0.75) < 0.02
    noisy, _, _, _ = SyntheticSpikes(n_channels=50, T=30, p_delete=1.0, noise_rate=0.1, n_train=400, n_test=1).load(CPU)
    assert abs(noisy.x.mean() - 0.1) < 0.005  # only noise left


def _fit_logistic_regression(f_train, y_train, f_test, y_test, n_classes, steps):
    """Full-batch multinomial logistic regression on standardised features; returns test accuracy."""
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    torch.manual_seed(0)
    readout = torch.nn.Linear(f_train.shape[1], n_classes)
    opt = torch.optim.Adam(readout.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(readout(f_train), y_train).backward()
        opt.step()
    with torch.no_grad():
        return (readout(f_test).argmax(1) == y_test).float().mean().item()


def test_spike_counts_do_not_reveal_the_class(default_synthetic):
    """A linear read-out of per-channel spike counts stays near chance (1/10).

    Measured 0.089-0.121 over seeds 0-5 (train accuracy ~0.20: it only fits noise).
    """
    train, _, test, info = default_synthetic
    acc = _fit_logistic_regression(train.x.sum(1), train.y, test.x.sum(1), test.y, info.n_classes, steps=300)
    assert acc < 0.2


def test_spike_timing_does_reveal_the_class(default_synthetic):
    """The same read-out on the whole raster [T * C] separates the classes: the class is in the timing."""
    train, _, test, info = default_synthetic
    acc = _fit_logistic_regression(
        train.x[:1000].flatten(1), train.y[:1000], test.x.flatten(1), test.y, info.n_classes, steps=50
    )
    assert acc > 0.9


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_classes", 1),
        ("n_channels", 0),
        ("T", 0),
        ("jitter", -1),
        ("p_delete", 1.5),
        ("noise_rate", -0.1),
        ("n_train", 0),
        ("n_test", 0),
        ("seed", -1),
        ("T", 2.5),
    ],
)
def test_synthetic_rejects_bad_config(key, value):
    with pytest.raises(UserError, match=rf"dataset\.{key}="):
        SyntheticSpikes(**{key: value})


# --------------------------------------------------------------------------- Split.batches


def _split(n=10):
    return Split(x=torch.arange(n, dtype=torch.float32).view(n, 1), y=torch.arange(n))


def test_batches_in_order_and_last_batch():
    split = _split(10)
    batches = list(split.batches(4, shuffle=False))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b[1].tolist() for b in split.batches(4, shuffle=False, drop_last=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(torch.equal(x[:, 0].long(), y) for x, y in batches)  # x and y stay paired


def test_shuffled_epoch_covers_every_sample_once():
    split = _split(10)
    ys = torch.cat([y for _, y in split.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(ys.tolist()) == list(range(10)) and ys.tolist() != list(range(10))
    dropped = [y for _, y in split.batches(3, shuffle=True, drop_last=True)]
    assert [len(y) for y in dropped] == [3, 3, 3] and len(set(torch.cat(dropped).tolist())) == 9


def test_shuffle_follows_the_generator():
    split = _split(50)

    def order(seed):
        return torch.cat([y for _, y in split.batches(8, True, torch.Generator().manual_seed(seed))]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    g = torch.Generator().manual_seed(1)
    first = torch.cat([y for _, y in split.batches(8, True, g)]).tolist()
    second = torch.cat([y for _, y in split.batches(8, True, g)]).tolist()
    assert first == order(1) and second != first  # the generator advances per epoch


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """IDX file: big-endian magic (2051 images, 2049 labels), big-endian dims, uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_fake_mnist(root: Path, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
        arrays[prefix] = (images, labels)
    return arrays


def test_mnist_loads_idx_files(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    train, _, test, info = TorchvisionImages("mnist", root=str(tmp_path), val=0).load(CPU)
    assert info == DataInfo(input_shape=(1, 28, 28), n_classes=10, time_major=False, name="mnist")
    assert train.x.shape == (20, 1, 28, 28) and test.x.shape == (10, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    images, labels = arrays["train"]
    assert torch.allclose(train.x[:, 0], torch.from_numpy(images).float() / 255)
    assert train.y.tolist() == labels.tolist()
    assert test.y.tolist() == arrays["t10k"][1].tolist()
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0


def test_mnist_subsampling_keeps_the_first_samples(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    train, _, test, _ = TorchvisionImages("mnist", root=str(tmp_path), n_train=5, n_test=100, val=0).load(CPU)
    assert len(train) == 5 and len(test) == 10  # n larger than the split: all of it
    assert train.y.tolist() == arrays["train"][1][:5].tolist()


def test_missing_dataset_is_one_user_error(tmp_path):
    with pytest.raises(UserError) as err:
        TorchvisionImages("mnist", root=str(tmp_path / "nowhere")).load(CPU)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere") in message
    assert "dataset.download=true" in message and "dataset=synthetic" in message


def test_failed_download_is_one_user_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror: <urlopen error>")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(UserError, match="dataset.download=true failed") as err:
        TorchvisionImages("mnist", root=str(tmp_path), download=True).load(CPU)
    assert "\n" not in str(err.value) and "dataset=synthetic" in str(err.value)


def test_corrupt_idx_file_is_a_user_error(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x00\x00garbage")
    with pytest.raises(UserError, match="not valid IDX"):
        TorchvisionImages("mnist", root=str(tmp_path)).load(CPU)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(name="cifar10", root="r"), "dataset.name"),
        (dict(name="mnist", root=""), "dataset.root"),
        (dict(name="mnist", root="r", n_train=0), "dataset.n_train"),
        (dict(name="mnist", root="r", n_test=-3), "dataset.n_test"),
    ],
)
def test_images_reject_bad_config(kwargs, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        TorchvisionImages(**kwargs)


needs_debian_fashion = pytest.mark.skipif(
    not all((data.DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in data.IDX_FILES),
    reason="Debian package fashion-mnist not installed",
)


@needs_debian_fashion
def test_fashion_mnist_from_debian_files(tmp_path):
    train, val, test, info = TorchvisionImages(
        "fashion_mnist", root=str(tmp_path), download=True, n_train=100, n_test=50
    ).load(CPU)
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.IDX_FILES)  # no temp files left
    assert info == DataInfo(input_shape=(1, 28, 28), n_classes=10, time_major=False, name="fashion_mnist")
    assert train.x.shape == (100, 1, 28, 28) and test.x.shape == (50, 1, 28, 28)
    assert val.x.shape == (5000, 1, 28, 28)  # held out of the 60,000 by default
    with gzip.open(data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    assert test.y.tolist() == labels[:50].tolist()
    assert train.x.max() == 1.0 and train.x.min() == 0.0
    # a second load reuses the decompressed files
    mtime = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    TorchvisionImages("fashion_mnist", root=str(tmp_path), n_train=1, n_test=1).load(CPU)
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == mtime


def test_install_debian_fashion_mnist_needs_all_files(tmp_path):
    assert data.install_debian_fashion_mnist(tmp_path / "raw", source=tmp_path / "empty") is False
    assert not (tmp_path / "raw").exists()
