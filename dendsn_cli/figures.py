"""Matplotlib figures of a spiking network, sized for TensorBoard image cards and README PNGs.

Every function takes plain CPU tensors or numpy arrays and returns a
``matplotlib.figure.Figure`` built on the Agg canvas (no pyplot, no global state,
nothing shown). Log one with ``SummaryWriter.add_figure(tag, fig, step)`` or save
it with :func:`save_png`.

Figures:
    raster(spikes, title="", sample_labels=None)
        spikes [T, n_samples, N]: one neurons-x-time raster per sample (first 128 neurons).
    traces(v, spikes, v_threshold, v_dend=None, title="", neuron_ids=None, compartment_names=None)
        v, spikes [T, n]: soma potential, threshold and spike times per neuron;
        v_dend [T, n, K]: every dendritic compartment's potential beside it.
    rate_histogram(rates, title="")
        rates [N]: histogram of per-neuron firing rates, never-fired fraction and mean in the title.
    confusion_matrix(cm, class_names=None, title="")
        cm [C, C] counts (rows true, columns predicted): row-normalised, accuracy in the title.

Helpers:
    figure_to_array(fig, close=True) -> np.ndarray [H, W, 3] uint8
    save_png(fig, path, close=True) -> pathlib.Path
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

__all__ = [
    "raster",
    "event_raster",
    "traces",
    "rate_histogram",
    "confusion_matrix",
    "figure_to_array",
    "save_png",
    "new_figure",
    "close_figure",
]

DPI = 100  # 9 in wide -> 900 px: fits a TensorBoard card without much downscaling
WIDTH = 9.0  # inches
MAX_RASTER_NEURONS = 128
MAX_TRACE_ROWS = 8

RC = {  # matplotlib settings of every figure (rc_context)
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "figure.titlesize": 13,
}


# --------------------------------------------------------------------------- helpers


def _np(x, dtype=np.float64) -> np.ndarray:
    """A torch tensor (any device/dtype) or array-like -> numpy array of ``dtype``."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=dtype)


def new_figure(width: float, height: float) -> Figure:
    """An empty figure ``width`` x ``height`` inches on the Agg canvas, constrained layout."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _join(title: str, detail: str) -> str:
    """One suptitle line, or two when one would not fit the figure's width (about 90 characters)."""
    if not title:
        return detail
    return f"{title} — {detail}" if len(title) + len(detail) < 88 else f"{title}\n{detail}"


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=12, style="italic")


def _int_ticks(axis, n: int) -> None:
    """Integer ticks on ``axis`` for the indices 0..n-1 (every one when there are few)."""
    if n <= 12:
        axis.set_major_locator(FixedLocator(np.arange(max(n, 1))))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def _int_xaxis(ax, T: int) -> None:
    ax.set_xlim(-0.5, max(T, 1) - 0.5)
    _int_ticks(ax.xaxis, T)


# --------------------------------------------------------------------------- raster


def raster(spikes, title: str = "", sample_labels=None) -> Figure:
    """Spike raster, one panel per sample: x = time step, y = neuron index.

    ``spikes``: [T, n_samples, N] in {0, 1} ([T, N] is one sample; trailing dims
    beyond the third are flattened into N). Only the first 128 neurons are drawn
    (the y label says so); the suptitle gives the layer's mean rate over all of them.
    ``sample_labels``: per sample, a string used as the panel title, or a class
    label shown as "sample i (label y)".
    The marks are one ``LineCollection`` per panel, a vertical segment
    ``[(t, n - 0.4), (t, n + 0.4)]`` per spike.
    """
    s = _np(spikes)
    if s.ndim == 1:
        s = s[:, None, None]
    elif s.ndim == 2:
        s = s[:, None, :]
    T, S = s.shape[0], s.shape[1]
    s = s.reshape(T, S, int(np.prod(s.shape[2:]))) > 0  # NaN -> no spike
    N = s.shape[2]
    shown = min(N, MAX_RASTER_NEURONS)
    rate = float(s.mean()) if s.size else 0.0
    S = max(S, 1)

    height = 3.0 + 2.0 * max(shown, 1) / MAX_RASTER_NEURONS
    with matplotlib.rc_context(RC):
        fig = new_figure(WIDTH, height)
        axes = fig.subplots(1, S, sharey=True, squeeze=False)[0]
        # line width: about half a time step, in points, clipped to stay visible/separate
        step_pt = (WIDTH * 72 * 0.85 / S) / max(T, 1)
        lw = float(np.clip(0.45 * step_pt, 0.6, 2.5))
        for i, ax in enumerate(axes):
            if i < s.shape[1]:
                t_idx, n_idx = np.nonzero(s[:, i, :shown])
            else:
                t_idx = n_idx = np.zeros(0, dtype=int)
            segs = np.empty((len(t_idx), 2, 2))
            segs[:, :, 0] = t_idx[:, None]
            segs[:, 0, 1] = n_idx - 0.4
            segs[:, 1, 1] = n_idx + 0.4
            ax.add_collection(LineCollection(segs, colors="k", linewidths=lw, label="spikes"), autolim=False)
            if len(t_idx) == 0:
                hidden = shown < N and i < s.shape[1] and bool(s[:, i].any())
                _note(ax, f"no spikes in the first {shown} neurons" if hidden else "no spikes")
            _int_xaxis(ax, T)
            ax.set_ylim(-0.5, max(shown, 1) - 0.5)
            _int_ticks(ax.yaxis, shown)
            ax.set_xlabel("time step")
            lab = sample_labels[i] if sample_labels is not None and i < len(sample_labels) else None
            if isinstance(lab, str):
                ax.set_title(lab)
            elif lab is not None:
                ax.set_title(f"sample {i} (label {_np(lab).item():g})")
            else:
                ax.set_title(f"sample {i}")
        axes[0].set_ylabel("neuron" if shown == N else f"neuron (first {shown} of {N})")
        fig.suptitle(_join(title, f"mean rate {rate:.3f} spikes / step"))
    return fig


def event_raster(raster: dict, title: str = "") -> Figure:
    """Raster of the event network in continuous time, one panel per sample: x = time in [0, T], y = the
    network's neurons, layer by layer (input side at the bottom; bands and labels mark the layers).

    ``raster``: {"spikes": [(times [n], neuron ids [n]) per sample], "sizes": layer sizes, "names": layer
    names, "T": the trial length} (`dendsn.events.EventStats`).
    """
    spikes, sizes, names, T = raster["spikes"], list(raster["sizes"]), list(raster["names"]), float(raster["T"])
    N, S = sum(sizes), max(len(spikes), 1)
    bounds = np.cumsum([0] + sizes)
    n_spikes = sum(len(_np(t)) for t, _ in spikes)
    with matplotlib.rc_context(RC):
        fig = new_figure(WIDTH, 5.0)
        axes = fig.subplots(1, S, sharey=True, squeeze=False)[0]
        for i, ax in enumerate(axes):
            for k in range(len(sizes)):
                if k % 2 == 0:
                    ax.axhspan(bounds[k] - 0.5, bounds[k + 1] - 0.5, color="0.92", lw=0, zorder=0)
            t, n = (_np(spikes[i][0]), _np(spikes[i][1])) if i < len(spikes) else (np.zeros(0), np.zeros(0))
            segs = np.empty((len(t), 2, 2))
            segs[:, :, 0] = t[:, None]
            segs[:, 0, 1] = n - 0.45 * max(N / 100, 1)
            segs[:, 1, 1] = n + 0.45 * max(N / 100, 1)
            ax.add_collection(LineCollection(segs, colors="k", linewidths=1.0), autolim=False)
            if len(t) == 0:
                _note(ax, "no spikes (pseudospikes only)")
            ax.set_xlim(0, T)
            ax.set_ylim(-0.5, N - 0.5)
            ax.set_xlabel("time (continuous)")
            ax.set_title(f"sample {i}")
        axes[0].set_yticks([(a + b - 1) / 2 for a, b in zip(bounds[:-1], bounds[1:])], names)
        axes[0].set_ylabel("neuron, by layer")
        fig.suptitle(_join(title, f"{n_spikes} ordinary spikes in {len(spikes)} samples"))
    return fig


# --------------------------------------------------------------------------- traces


def _trace_arrays(v, spikes, v_dend) -> tuple:
    """(v [T, n], spikes [T, n] bool or None, v_dend [T, n, K] or None) as numpy arrays."""
    v = _np(v)
    if v.ndim == 1:
        v = v[:, None]
    sp = None
    if spikes is not None:
        sp = _np(spikes)
        sp = sp.reshape(sp.shape[0], -1) > 0 if sp.ndim >= 2 else (sp > 0)[:, None]
    vd = None
    if v_dend is not None:
        vd = _np(v_dend)
        if vd.ndim == 2:
            vd = vd[:, :, None]
        elif vd.ndim == 1:
            vd = vd[:, None, None]
    return v, sp, vd


def _soma_panel(ax, v, sp, thr, r: int, nid, marker) -> None:
    """Row ``r``: the soma potential, the threshold (dashed) and the spike ticks along the top."""
    T, n = v.shape[0], v.shape[1]
    t = np.arange(T)
    if r < n:
        y = np.where(np.isfinite(v[:, r]), v[:, r], np.nan)
        ax.plot(t, y, color="C0", lw=1.5, marker=marker, ms=4, label="v")
        if not np.isfinite(y).any():
            _note(ax, "no finite values")
    if thr is not None and math.isfinite(thr):
        ax.axhline(thr, color="C3", ls="--", lw=1.2, label="threshold")
    # y range from the finite data and the threshold, with headroom for the spike ticks
    vals = v[:, r][np.isfinite(v[:, r])] if r < n else np.zeros(0)
    if thr is not None and math.isfinite(thr):
        vals = np.append(vals, thr)
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        rng = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.5
        ax.set_ylim(lo - 0.08 * rng, hi + 0.3 * rng)
    k = 0
    if sp is not None and r < sp.shape[1]:
        ts = np.nonzero(sp[:T, r])[0]
        k = len(ts)
        if k:
            ax.vlines(ts, 0.86, 1.0, transform=ax.get_xaxis_transform(), colors="k", lw=1.5, label="spike")
    ax.set_title(f"neuron {nid} (soma, {k} spike{'' if k == 1 else 's'})")
    ax.set_ylabel("v")
    _int_xaxis(ax, T)


def _dendrite_panel(axd, vd, r: int, nid, marker, compartment_names, T: int) -> None:
    """Row ``r``: one line per dendritic compartment (the legend on the first row)."""
    K = vd.shape[2]
    names = list(compartment_names) if compartment_names is not None else [f"c{j}" for j in range(K)]
    names += [f"c{j}" for j in range(len(names), K)]
    colors = (
        matplotlib.colormaps["tab10"](np.arange(K) % 10)
        if K <= 10
        else matplotlib.colormaps["viridis"](np.linspace(0, 1, K))
    )
    any_finite = False
    if r < vd.shape[1]:
        for j in range(K):
            y = vd[:, r, j]
            y = np.where(np.isfinite(y), y, np.nan)
            any_finite |= bool(np.isfinite(y).any())
            axd.plot(np.arange(len(y)), y, color=colors[j], lw=1.2, marker=marker, ms=3, label=str(names[j]))
    if not any_finite:
        _note(axd, "no finite values")
    axd.set_title(f"neuron {nid} (dendritic compartments)")
    axd.set_ylabel("v")
    _int_xaxis(axd, T)
    if r == 0 and K:
        axd.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=1 if K <= 8 else 2, title="compartment")


def traces(v, spikes, v_threshold, v_dend=None, title: str = "", neuron_ids=None, compartment_names=None) -> Figure:
    """Membrane potentials of a few sample neurons, one row per neuron.

    Left: soma potential ``v`` [T, n] over time, the threshold as a dashed
    horizontal line at ``v_threshold`` and the spike times (``spikes`` [T, n]) as
    short vertical ticks along the top of the panel. Right (when ``v_dend``
    [T, n, K] is given): one line per dendritic compartment, labelled by
    ``compartment_names`` or "c0".."cK-1". Non-finite values are left out.
    At most 8 rows are drawn (the suptitle says so).
    """
    v, sp, vd = _trace_arrays(v, spikes, v_dend)
    T, n = v.shape[0], v.shape[1]
    ids = list(neuron_ids) if neuron_ids is not None else list(range(n))
    rows = max(1, min(n, MAX_TRACE_ROWS))
    thr = None if v_threshold is None else float(_np(v_threshold).reshape(-1)[0])
    marker = "o" if T <= 2 else None

    with matplotlib.rc_context(RC):
        fig = new_figure(WIDTH, 1.0 + 1.9 * rows)
        cols = 2 if vd is not None else 1
        axes = fig.subplots(rows, cols, sharex=True, squeeze=False)
        for r in range(rows):
            nid = ids[r] if r < len(ids) else r
            _soma_panel(axes[r, 0], v, sp, thr, r, nid, marker)
            if vd is not None:
                _dendrite_panel(axes[r, 1], vd, r, nid, marker, compartment_names, T)
        for ax in axes[-1]:
            ax.set_xlabel("time step")
        handles = {}
        for ax in axes[:, 0]:  # v / threshold / spike, once each, below the panels
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        if handles:
            fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncols=len(handles))
        sup = title
        if n > rows:
            sup = _join(title, f"first {rows} of {n} neurons")
        if sup:
            fig.suptitle(sup)
    return fig


# --------------------------------------------------------------------------- rates


def rate_histogram(rates, title: str = "", unit: str = "spikes / step") -> Figure:
    """Histogram of per-neuron mean firing rates (``unit``: spikes per step; the event network's, per trial).

    Bins span ``[0, max(rate, 1e-3)]``; the title reports the neuron count, the
    fraction that never fired (rate == 0) and the mean rate, also drawn as a
    dashed vertical line.
    """
    r = _np(rates).reshape(-1)
    r = r[np.isfinite(r)]
    N = r.size
    with matplotlib.rc_context(RC):
        fig = new_figure(WIDTH, 4.5)
        ax = fig.subplots()
        if N == 0:
            _note(ax, "no neurons")
            detail = "no neurons"
        else:
            silent = float(np.mean(r == 0))
            mean = float(r.mean())
            lo, hi = min(0.0, float(r.min())), max(float(r.max()), 1e-3)
            ax.hist(r, bins=np.linspace(lo, hi, 41), color="C0", edgecolor="white", lw=0.5)
            ax.axvline(mean, color="C3", ls="--", lw=1.2, label=f"mean {mean:.3f}")
            ax.set_xlim(lo, hi)
            ax.legend(loc="upper right")
            detail = f"{N} neurons, never fired {silent:.1%}, mean rate {mean:.3f}"
        ax.set_title(_join(title, detail))
        ax.set_xlabel(f"firing rate ({unit})")
        ax.set_ylabel("neurons")
    return fig


# --------------------------------------------------------------------------- confusion


def confusion_matrix(cm, class_names=None, title: str = "") -> Figure:
    """Confusion matrix ``cm`` [C, C] of counts (rows = true class, columns = predicted).

    Colour = each row normalised to the fraction of its true class (a zero row
    stays 0); for C <= 20 every cell shows its count. The title gives the
    accuracy (trace / total) and the number of samples.
    """
    m = _np(cm)
    m = np.where(np.isfinite(m), m, 0.0)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square [C, C], got shape {m.shape}")
    C = m.shape[0]
    total = float(m.sum())
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    acc = float(np.trace(m)) / total if total > 0 else float("nan")
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(C)]

    with matplotlib.rc_context(RC):
        fig = new_figure(8.0, 6.8)
        ax = fig.subplots()
        im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label("fraction of the true class")
        if 0 < C <= 20:
            fs = float(np.clip(120 / C, 6, 12))
            for i in range(C):
                for j in range(C):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=fs,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
        if C <= 30:
            ax.set_xticks(
                np.arange(C), labels=names[:C], rotation=45 if C > 10 else 0, ha="right" if C > 10 else "center"
            )
            ax.set_yticks(np.arange(C), labels=names[:C])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        detail = f"accuracy {acc:.2%} (n = {total:.0f})" if total > 0 else "accuracy n/a (n = 0)"
        ax.set_title(_join(title, detail))
    return fig


# --------------------------------------------------------------------------- output


def close_figure(fig: Figure) -> None:
    """Free ``fig`` (and unregister it from pyplot where pyplot manages it)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # a pyplot-managed figure would otherwise stay registered
        plt.close(fig)
    fig.clear()


def figure_to_array(fig: Figure, close: bool = True) -> np.ndarray:
    """Render ``fig`` with Agg -> RGB array [H, W, 3] uint8; ``close`` frees the figure."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if close:
        close_figure(fig)
    return img


def save_png(fig: Figure, path, close: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created); ``close`` frees it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=fig.dpi, facecolor="white")
    if close:
        close_figure(fig)
    return path
