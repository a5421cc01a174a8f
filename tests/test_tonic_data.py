"""Neuromorphic datasets through tonic (SHD, N-MNIST, DVS Gesture): tiny files written in each dataset's
real on-disk format, read by tonic's own dataset classes and binned by its ToFrame, then cached.

Binning (see `TonicEvents`): T equal bins from a recording's first event to its last,
w = (t_last - t_first) // T microseconds, bin t = [t_first + t w, t_first + (t + 1) w); the last event
falls past the final bin. The expected counts below are worked out by hand from that rule.
"""

import json
import os

import h5py
import numpy as np
import pytest
import torch
from conftest import one_error

from dendsn_cli.data import TonicEvents
from dendsn_cli.errors import UserError

CPU = torch.device("cpu")
US = 15625  # 1/64 s in microseconds: a time exactly representable in SHD's float16 seconds


# --------------------------------------------------------------------------- writers of the real formats


def write_shd(path, recordings):
    """An SHD file as the Zenke lab ships it: variable-length spikes/times (float16 seconds) and
    spikes/units (uint16) per recording, labels (uint16), extra/keys and extra/speaker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(recordings),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(recordings),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t_us, u, _) in enumerate(recordings):
            times[i] = np.asarray(t_us, dtype=np.float64) / 1e6
            units[i] = np.asarray(u)
        f.create_dataset("labels", data=np.array([label for _, _, label in recordings], dtype=np.uint16))
        f.create_dataset("extra/keys", data=[f"digit-{i}".encode() for i in range(20)])
        f.create_dataset("extra/speaker", data=np.zeros(len(recordings), dtype=np.uint16))


def nmnist_bytes(events):
    """N-MNIST's 40-bit ATIS events: byte 0 = x, byte 1 = y, then bit 39 = polarity and bits 38..16 +
    15..0 = the 23-bit timestamp in microseconds (big-endian)."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def write_nmnist(root, split, digit, name, events):
    folder = root / "NMNIST" / split / str(digit)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.bin").write_bytes(nmnist_bytes(events))


def write_dvs_gesture(root, split, user_lighting, label, events):
    """tonic's DVS Gesture layout: ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy, rows (x, y, p, t ms)."""
    folder = root / "DVSGesture" / f"ibmGesture{split}" / user_lighting
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{label}.npy", np.asarray(events, dtype=np.int64))


# --------------------------------------------------------------------------- SHD

# Recording A (label 3), T = 4: w = 8 US // 4 = 2 US, bins [0, 2), [2, 4), [4, 6), [6, 8) US;
# the event at 8 US is past the last bin.
SHD_A = ([0, US, 2 * US, 3 * US, 3 * US, 4 * US, 8 * US], [0, 1, 1, 5, 5, 699, 3], 3)
SHD_A_COUNTS = {(0, 0): 1, (0, 1): 1, (1, 1): 1, (1, 5): 2, (2, 699): 1}  # (frame, unit) -> events
# Recording B (label 7) starts late: bins are relative to its first spike. w = 4 US // 4 = US.
SHD_B = ([10 * US, 11 * US, 13 * US, 14 * US], [2, 2, 4, 9], 7)
SHD_B_COUNTS = {(0, 2): 1, (1, 2): 1, (3, 4): 1}
SHD_EMPTY = ([], [], 0)  # no spikes: all-zero frames


def dense(counts, T, n):
    x = torch.zeros(T, n)
    for (t, u), c in counts.items():
        x[t, u] = c
    return x


@pytest.fixture
def shd_root(tmp_path):
    root = tmp_path / "data"
    write_shd(root / "SHD" / "shd_train.h5", [SHD_A, SHD_B, SHD_EMPTY])
    write_shd(root / "SHD" / "shd_test.h5", [SHD_B, SHD_A])
    return root


def test_shd_is_binned_by_tonic_into_hand_counted_frames(shd_root):
    train, val, test, info = TonicEvents("shd", str(shd_root), T=4, val=0).load(CPU)
    assert val is None and info.time_major and info.input_shape == (700,) and info.n_classes == 20
    assert train.x.shape == (3, 4, 700) and train.x.dtype == torch.float32
    assert torch.equal(train.x[0], dense(SHD_A_COUNTS, 4, 700))
    assert torch.equal(train.x[1], dense(SHD_B_COUNTS, 4, 700))
    assert not train.x[2].any()
    assert train.y.tolist() == [3, 7, 0] and test.y.tolist() == [7, 3]
    assert torch.equal(test.x[1], train.x[0])

    # 140 channels: channel c sums units 5c .. 5c+4; binary: a count > 0 is one spike
    pooled, _, _, info = TonicEvents("shd", str(shd_root), T=4, channels=140, binary=True, val=0).load(CPU)
    assert info.input_shape == (140,) and pooled.x.shape == (3, 4, 140)
    assert torch.equal(pooled.x[0], dense({(0, 0): 1, (1, 0): 1, (1, 1): 1, (2, 139): 1}, 4, 140))


def test_shd_cache_is_reused_rebuilt_when_the_source_changes_and_when_damaged(shd_root):
    ds = TonicEvents("shd", str(shd_root), T=4, val=0)
    first, _, _, _ = ds.load(CPU)
    cache = shd_root / "SHD" / "dendsn-frames" / "train-T4-c700.pt"
    assert cache.is_file() and ds.cache_path("train") == cache

    for h5 in ("shd_train.h5", "shd_test.h5"):  # the cache alone is enough
        os.rename(shd_root / "SHD" / h5, shd_root / h5)
    again, _, _, _ = TonicEvents("shd", str(shd_root), T=4, val=0).load(CPU)
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)
    with pytest.raises(UserError, match="T=5|not found"):  # another T is another cache: re-bin
        TonicEvents("shd", str(shd_root), T=5, val=0).load(CPU)

    cache.write_bytes(b"not a torch file")  # damaged, no source: one clear line
    with pytest.raises(UserError, match="damaged") as e:
        TonicEvents("shd", str(shd_root), T=4, val=0).load(CPU)
    assert "\n" not in str(e.value) and str(cache) in str(e.value)

    os.rename(shd_root / "shd_test.h5", shd_root / "SHD" / "shd_test.h5")
    write_shd(shd_root / "SHD" / "shd_train.h5", [SHD_B])  # damaged cache + new source: rebuilt
    rebuilt, _, _, _ = TonicEvents("shd", str(shd_root), T=4, val=0).load(CPU)
    assert rebuilt.y.tolist() == [7] and torch.equal(rebuilt.x[0], dense(SHD_B_COUNTS, 4, 700))
    write_shd(shd_root / "SHD" / "shd_train.h5", [SHD_A, SHD_A])  # the source changed: rebuilt
    assert TonicEvents("shd", str(shd_root), T=4, val=0).load(CPU)[0].y.tolist() == [3, 3]


def test_shd_validation_hold_out_and_limits(shd_root):
    write_shd(shd_root / "SHD" / "shd_train.h5", [SHD_A, SHD_B, SHD_EMPTY, SHD_B, SHD_A])
    train, val, test, _ = TonicEvents("shd", str(shd_root), T=4, val=2, n_train=2, n_test=1, seed=1).load(CPU)
    assert len(val) == 2 and len(train) == 2 and len(test) == 1
    again = TonicEvents("shd", str(shd_root), T=4, val=2, n_train=2, n_test=1, seed=1).load(CPU)
    assert torch.equal(again[1].x, val.x) and torch.equal(again[0].y, train.y)  # same seed, same split
    with pytest.raises(UserError, match="leaving none to train on"):
        TonicEvents("shd", str(shd_root), T=4, val=5).load(CPU)


def test_bad_parameters_are_one_line_errors(tmp_path):
    for kwargs, fragment in [
        (dict(name="shd", channels=3), "dataset.channels=3"),
        (dict(name="shd", size=32), "dataset.size=32 applies to camera datasets"),
        (dict(name="nmnist", channels=70), "dataset.channels=70 applies to dataset=shd"),
        (dict(name="dvs_gesture", size=48), "dataset.size=48"),
        (dict(name="shd", T=0), "T=0"),
        (dict(name="ncars"), "dataset.name='ncars'"),
    ]:
        kwargs = {"T": 4, **kwargs}
        with pytest.raises(UserError, match=fragment):
            TonicEvents(root=str(tmp_path), **kwargs)


def test_a_damaged_recording_is_named(shd_root, tmp_path):
    write_shd(shd_root / "SHD" / "shd_train.h5", [SHD_A, ([0, US, 2 * US], [1, 700, 2], 1)])  # unit 700 of 0..699
    with pytest.raises(UserError, match=r"shd_train.h5 \(recording 1\) is not a valid shd recording"):
        TonicEvents("shd", str(shd_root), T=2, val=0).load(CPU)
    write_shd(shd_root / "SHD" / "shd_train.h5", [(SHD_A[0], SHD_A[1], 25)])  # 20 classes
    with pytest.raises(UserError, match="label 25"):
        TonicEvents("shd", str(shd_root), T=2, val=0).load(CPU)


# --------------------------------------------------------------------------- N-MNIST


def test_nmnist_bin_files_are_binned_into_polarity_frames(tmp_path):
    root = tmp_path / "data"
    # (x, y, p, t us); T = 2: w = 1000 // 2 = 500, bins [100, 600), [600, 1100); t = 1100 is past them
    write_nmnist(
        root, "Train", 4, "00001", [(0, 0, 1, 100), (33, 2, 0, 300), (33, 2, 0, 599), (5, 6, 1, 600), (7, 7, 1, 1100)]
    )
    write_nmnist(root, "Train", 9, "00002", [(1, 1, 0, 0), (2, 2, 1, 2**16 + 5)])  # a timestamp past 16 bits
    write_nmnist(root, "Test", 0, "00003", [(3, 3, 1, 0), (4, 4, 0, 10), (5, 5, 1, 20)])
    train, _, test, info = TonicEvents("nmnist", str(root), T=2, val=0).load(CPU)
    assert info.input_shape == (2, 34, 34) and info.n_classes == 10
    assert train.x.shape == (2, 2, 2, 34, 34) and train.y.tolist() == [4, 9] and test.y.tolist() == [0]
    x = train.x[0]  # [T, P, Y, X]
    assert x[0, 1, 0, 0] == 1 and x[0, 0, 2, 33] == 2 and x[1, 1, 6, 5] == 1 and x.sum() == 4
    assert train.x[1, 0, 0, 1, 1] == 1 and train.x[1].sum() == 1  # its second event is the last one
    assert test.x[0, 0, 1, 3, 3] == 1 and test.x[0, 1, 0, 4, 4] == 1 and test.x[0].sum() == 2

    half, _, _, info = TonicEvents("nmnist", str(root), T=2, size=17, val=0).load(CPU)  # 2x2 blocks summed
    assert info.input_shape == (2, 17, 17) and half.x[0, 0, 0, 1, 16] == 2 and half.x[0, 1, 1, 3, 2] == 1


# --------------------------------------------------------------------------- DVS Gesture


def test_dvs_gesture_npy_files_are_binned_and_pooled(tmp_path):
    root = tmp_path / "data"
    # (x, y, p, t ms); T = 3: w = 3000 us // 3 = 1000 us, bins [0, 1), [1, 2), [2, 3) ms
    write_dvs_gesture(
        root,
        "Train",
        "user01_fluorescent",
        10,
        [(0, 0, 1, 0), (3, 3, 1, 0), (127, 64, 0, 1), (126, 65, 0, 2), (9, 9, 1, 3)],
    )
    write_dvs_gesture(root, "Train", "user02_led", 2, [(5, 5, 0, 0), (6, 6, 0, 30)])
    write_dvs_gesture(root, "Test", "user24_natural", 0, [(0, 0, 0, 0), (1, 1, 1, 3)])
    train, _, test, info = TonicEvents("dvs_gesture", str(root), T=3, size=32, val=0).load(CPU)
    assert info.input_shape == (2, 32, 32) and info.n_classes == 11
    assert train.x.shape == (2, 3, 2, 32, 32) and train.y.tolist() == [10, 2] and test.y.tolist() == [0]
    x = train.x[0]  # [T, P, 32, 32], 4x4 blocks
    assert x[0, 1, 0, 0] == 2 and x[1, 0, 16, 31] == 1 and x[2, 0, 16, 31] == 1 and x.sum() == 4


# --------------------------------------------------------------------------- the real CLI


def test_missing_files_are_one_line_error(dendsn_here, tmp_path):
    """Never a download: the line names the folder, what to put there and where to get it."""
    root = tmp_path / "nowhere"
    p = dendsn_here("train", "dataset=shd", f"dataset.root={root}", "progress=false")
    line = one_error(
        p,
        f"dataset 'shd' not found in {str(root / 'SHD')!r}",
        "put shd_train.h5 and shd_test.h5 there",
        "https://zenkelab.org/datasets/",
        "dataset=synthetic",
    )
    assert not root.exists()  # nothing was downloaded or created
    for name, folder, what in [
        ("nmnist", "NMNIST", "put the folders Train/ and Test/ there"),
        ("dvs_gesture", "DVSGesture", "ibmGestureTrain/ and ibmGestureTest/"),
    ]:
        with pytest.raises(UserError) as e:
            TonicEvents(name, str(root), T=4).load(CPU)
        assert str(e.value).startswith(f"dataset '{name}' not found in {str(root / folder)!r}") and what in str(e.value)
        assert "\n" not in str(e.value) and str(e.value).endswith(line.split("; ")[-1].split(", ", 1)[-1])
    write_shd(root / "SHD" / "shd_train.h5", [SHD_A])  # one split there, the other not
    with pytest.raises(UserError, match=r"dataset 'shd' \(its test split\) not found"):
        TonicEvents("shd", str(root), T=4).load(CPU)


def test_shd_trains_end_to_end(dendsn_here, tmp_path):
    """`dendsn train dataset=shd` on a tiny SHD file: binned, cached, trained, evaluated."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)

    def recording(label):  # 30 spikes in a label-specific band of units, over half a second
        t = np.sort(rng.integers(0, 32, 30)) * US
        return t, label * 35 + rng.integers(0, 35, 30), label

    write_shd(root / "SHD" / "shd_train.h5", [recording(i % 20) for i in range(24)])
    write_shd(root / "SHD" / "shd_test.h5", [recording(i % 20) for i in range(8)])
    run = tmp_path / "run"
    p = dendsn_here(
        "train",
        "dataset=shd",
        f"dataset.root={root}",
        "T=6",
        "dataset.channels=70",
        "dataset.val=4",
        "network.hidden=[16]",
        "epochs=1",
        "batch_size=8",
        "progress=false",
        "logger.rasters=false",
        f"hydra.run.dir={run}",
    )
    assert p.returncode == 0, p.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    assert "20 train / 4 val / 8 test" in p.stdout + p.stderr
    assert (root / "SHD" / "dendsn-frames" / "train-T6-c70.pt").is_file()


def test_event_frames_take_only_the_direct_encoder(dendsn_here, tmp_path):
    """Refused before any file is read: poisson would pass event counts through as if they were spikes."""
    p = dendsn_here("train", "dataset=nmnist", "encoder=poisson", f"dataset.root={tmp_path / 'nowhere'}")
    one_error(p, "encoder=poisson does not apply to dataset=nmnist", "use encoder=direct")
