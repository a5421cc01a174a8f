"""dendsn_cli.figures: real matplotlib figures, rendered with Agg and read back (no mocks)."""

import math

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from dendsn_cli import figures as F


def _rendered(fig):
    img = F.figure_to_array(fig)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    h, w, _ = img.shape
    assert w >= 600 and h >= 200, img.shape
    assert w <= 1100, img.shape  # fits a TensorBoard card without heavy downscaling
    assert img.min() < 100  # something dark (text, marks) was drawn
    return img


def _marks(ax):
    """The raster's spike marks in one panel: sorted (t, n) pairs read back from the segments."""
    cols = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(cols) == 1
    segs = cols[0].get_segments()
    pts = []
    for s in segs:
        s = np.asarray(s)
        assert s[0, 0] == s[1, 0]  # vertical mark
        assert s[1, 1] - s[0, 1] == pytest.approx(0.8)
        pts.append((int(round(s[0, 0])), int(round(s[:, 1].mean()))))
    return sorted(pts)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# --------------------------------------------------------------------------- raster


def test_raster_marks_are_the_spikes():
    g = torch.Generator().manual_seed(0)
    T, S, N = 10, 3, 40
    spikes = (torch.rand(T, S, N, generator=g) < 0.15).float()
    fig = F.raster(spikes, title="hidden.0", sample_labels=[3, 1, 4])
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == S
    for i, ax in enumerate(axes):
        want = sorted(map(tuple, torch.nonzero(spikes[:, i]).tolist()))
        assert _marks(ax) == want
        assert ax.get_title() == f"sample {i} (label {[3, 1, 4][i]})"
        assert ax.get_xlabel() == "time step"
        assert ax.get_xlim() == (-0.5, T - 0.5)
        ticks = ax.get_xticks()
        assert np.all(ticks == np.round(ticks))  # integer time steps
    assert axes[0].get_ylabel() == "neuron"
    sup = fig._suptitle.get_text()
    assert "hidden.0" in sup and f"{spikes.double().mean().item():.3f}" in sup
    _rendered(fig)


def test_raster_truncates_to_128_neurons_and_says_so():
    T, S, N = 6, 2, 1000
    spikes = np.zeros((T, S, N))
    spikes[2, 0, 5] = 1
    spikes[3, 1, 127] = 1
    spikes[4, 1, 500] = 1  # beyond the shown neurons: not drawn, but counted in the rate
    fig = F.raster(spikes, sample_labels=["a", "b"])
    a, b = fig.axes
    assert _marks(a) == [(2, 5)]
    assert _marks(b) == [(3, 127)]
    assert a.get_ylabel() == "neuron (first 128 of 1000)"
    assert a.get_ylim() == (-0.5, 127.5)
    assert a.get_title() == "a" and b.get_title() == "b"
    assert f"{3 / (T * S * N):.3f}" in fig._suptitle.get_text()
    _rendered(fig)


@pytest.mark.parametrize("shape", [(5, 3, 20), (1, 1, 1), (7, 1, 1), (1, 2, 30)])
def test_raster_all_zero_shows_empty_axes_with_a_note(shape):
    fig = F.raster(torch.zeros(shape))
    assert len(fig.axes) == shape[1]
    for ax in fig.axes:
        assert _marks(ax) == []
    assert _texts(fig).count("no spikes") == shape[1]
    _rendered(fig)


def test_raster_T1_N1_single_spike_and_2d_input():
    fig = F.raster(torch.ones(1, 1, 1), title="x")
    (ax,) = fig.axes
    assert _marks(ax) == [(0, 0)]
    assert list(ax.get_xticks()) == [0]
    _rendered(fig)
    s = np.zeros((4, 9))  # [T, N]: one sample
    s[1, 8] = s[3, 0] = 1
    fig = F.raster(s)
    assert len(fig.axes) == 1 and _marks(fig.axes[0]) == [(1, 8), (3, 0)]
    _rendered(fig)


# --------------------------------------------------------------------------- traces


def _threshold_lines(ax, thr):
    return [
        l for l in ax.get_lines() if l.get_linestyle() == "--" and np.allclose(np.asarray(l.get_ydata(), float), thr)
    ]


def test_traces_threshold_spikes_and_compartments():
    g = torch.Generator().manual_seed(1)
    T, n, K = 20, 4, 3
    v = torch.cumsum(torch.randn(T, n, generator=g) * 0.3, 0)
    spikes = (v > 0.5).float()
    v_dend = torch.randn(T, n, K, generator=g)
    fig = F.traces(
        v,
        spikes,
        0.5,
        v_dend,
        title="hidden.0",
        neuron_ids=[7, 11, 2, 40],
        compartment_names=["apical", "basal", "oblique"],
    )
    axes = fig.axes
    assert len(axes) == 2 * n
    left, right = axes[0::2], axes[1::2]
    for r, (a, b) in enumerate(zip(left, right)):
        assert a.get_title().startswith(f"neuron {[7, 11, 2, 40][r]} ")
        assert a.get_ylabel() == "v"
        assert len(_threshold_lines(a, 0.5)) == 1
        soma = [l for l in a.get_lines() if l.get_label() == "v"]
        assert len(soma) == 1 and np.allclose(soma[0].get_ydata(), v[:, r].numpy())
        ts = torch.nonzero(spikes[:, r]).flatten().tolist()
        marks = [c for c in a.collections if c.get_label() == "spike"]
        if ts:
            (c,) = marks
            assert sorted(int(s[0, 0]) for s in c.get_segments()) == ts
        else:
            assert marks == []
        assert f"{len(ts)} spike" in a.get_title()
        lines = b.get_lines()
        assert len(lines) == K
        assert [l.get_label() for l in lines] == ["apical", "basal", "oblique"]
        for j, l in enumerate(lines):
            assert np.allclose(l.get_ydata(), v_dend[:, r, j].numpy())
    assert [t.get_text() for t in right[0].get_legend().get_texts()] == ["apical", "basal", "oblique"]
    assert left[-1].get_xlabel() == "time step"
    assert fig._suptitle.get_text() == "hidden.0"
    _rendered(fig)


def test_traces_without_dendrites_default_names_and_nonfinite():
    T, n = 15, 2
    v = np.linspace(0, 2, T)[:, None].repeat(n, 1)
    v[3, 0], v[4, 0], v[5, 1] = np.nan, np.inf, -np.inf
    spikes = np.zeros((T, n))
    spikes[[5, 9], 0] = 1
    fig = F.traces(v, spikes, 1.0)
    assert len(fig.axes) == n
    a = fig.axes[0]
    assert a.get_title().startswith("neuron 0 ")
    assert len(_threshold_lines(a, 1.0)) == 1
    y = np.asarray(a.get_lines()[0].get_ydata(), float)
    assert np.isnan(y[3]) and np.isnan(y[4]) and np.isfinite(np.delete(y, [3, 4])).all()
    lo, hi = a.get_ylim()
    assert math.isfinite(lo) and math.isfinite(hi) and lo < 0 and hi > 2
    _rendered(fig)

    K = 5
    fig = F.traces(v, spikes, 1.0, v_dend=np.full((T, n, K), np.nan))
    right = fig.axes[1::2]
    assert all(len(ax.get_lines()) == K for ax in right)
    assert [t.get_text() for t in right[0].get_legend().get_texts()] == [f"c{j}" for j in range(K)]
    assert "no finite values" in _texts(fig)
    _rendered(fig)


def test_traces_T1_single_neuron_all_nan():
    fig = F.traces(torch.tensor([[0.3]]), torch.tensor([[1.0]]), 1.0, torch.zeros(1, 1, 2))
    assert len(fig.axes) == 2
    _rendered(fig)
    fig = F.traces(np.full((6, 1), np.nan), np.zeros((6, 1)), 1.0)
    assert "no finite values" in _texts(fig)
    assert len(_threshold_lines(fig.axes[0], 1.0)) == 1
    _rendered(fig)


# --------------------------------------------------------------------------- rate histogram


def test_rate_histogram_never_fired_fraction_and_mean():
    rates = torch.linspace(0.01, 0.3, 400)
    rates[:100] = 0  # a quarter never fired
    fig = F.rate_histogram(rates, title="hidden.0")
    (ax,) = fig.axes
    title = ax.get_title()
    assert "hidden.0" in title and "400 neurons" in title
    assert "never fired 25.0%" in title
    assert f"mean rate {rates.mean().item():.3f}" in title
    assert ax.get_xlabel() == "firing rate (spikes / step)" and ax.get_ylabel() == "neurons"
    assert sum(p.get_height() for p in ax.patches) == 400
    assert ax.get_xlim() == pytest.approx((0.0, 0.3))
    _rendered(fig)


@pytest.mark.parametrize("rates", [np.zeros(50), np.zeros(1), np.array([0.2]), np.array([])])
def test_rate_histogram_edge_cases(rates):
    fig = F.rate_histogram(rates)
    title = fig.axes[0].get_title()
    if rates.size:
        assert f"never fired {np.mean(rates == 0):.1%}" in title
    else:
        assert "no neurons" in title
    _rendered(fig)


# --------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_accuracy_counts_and_normalisation():
    cm = torch.tensor([[50, 5, 0], [10, 30, 10], [0, 0, 20]])
    fig = F.confusion_matrix(cm, class_names=["cat", "dog", "eel"], title="test")
    ax = fig.axes[0]
    acc = 100 / 125
    assert f"accuracy {acc:.2%}" in ax.get_title() and "n = 125" in ax.get_title()
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    (im,) = ax.get_images()
    norm = np.asarray(im.get_array())
    assert np.allclose(norm, cm.numpy() / cm.sum(1, keepdim=True).numpy())
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(str(x) for x in cm.flatten().tolist())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "eel"]
    _rendered(fig)


def test_confusion_matrix_zero_row_large_and_empty():
    cm = np.array([[3, 1], [0, 0]])  # class 1 never seen
    fig = F.confusion_matrix(cm)
    ax = fig.axes[0]
    assert "accuracy 75.00%" in ax.get_title()
    norm = np.asarray(ax.get_images()[0].get_array())
    assert np.allclose(norm, [[0.75, 0.25], [0, 0]]) and np.isfinite(norm).all()
    _rendered(fig)

    big = np.eye(50, dtype=int) * 10  # C > 20: no cell texts
    fig = F.confusion_matrix(big)
    assert len(fig.axes[0].texts) == 0 and "accuracy 100.00%" in fig.axes[0].get_title()
    _rendered(fig)

    fig = F.confusion_matrix(np.zeros((4, 4)))
    assert "accuracy n/a" in fig.axes[0].get_title()
    _rendered(fig)

    with pytest.raises(ValueError):
        F.confusion_matrix(np.zeros((2, 3)))


# --------------------------------------------------------------------------- output helpers


def test_save_png_and_tensorboard_add_figure(tmp_path):
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    path = F.save_png(F.raster(torch.ones(3, 2, 4)), tmp_path / "sub" / "raster.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] >= 200

    w = SummaryWriter(log_dir=str(tmp_path / "tb"))
    w.add_figure("raster/x", F.raster(torch.ones(3, 1, 4)), 0)
    w.add_figure("cm", F.confusion_matrix(np.eye(3)), 0)
    w.close()
    assert any((tmp_path / "tb").iterdir())


def test_figure_to_array_keeps_figure_when_asked():
    fig = F.rate_histogram(np.arange(10) / 10)
    a = F.figure_to_array(fig, close=False)
    b = F.figure_to_array(fig)
    assert a.shape == b.shape and np.array_equal(a, b)
    assert fig.axes == []  # freed
