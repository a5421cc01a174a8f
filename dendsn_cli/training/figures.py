"""The TensorBoard figures of a run: one `FigureSpec` each, in the order they are logged.

A figure states what it records from the watched evaluation and draws it. To add one, write its draw
function (and, when it needs data the evaluation does not keep yet, a record function) and decorate it:

    def record_mean_dendrite(layer, module, spikes, monitor):       # first batch; None: nothing for this layer
        vd = getattr(module, "v_dend_seq", None)                      # [T, B, S, K]
        return None if vd is None else vd.detach().float().mean((1, 2)).cpu()   # [T, K]

    @figure(record=record_mean_dendrite)
    def dendrite_heatmap(seen: Seen):
        for layer, v in seen.records["dendrite_heatmap"].items():
            fig = plots.new_figure(9, 3)
            fig.add_subplot().imshow(v.T.numpy(), aspect="auto")
            yield f"dendrite_heatmap/{layer}", fig

``seen.records[name]`` holds what ``record`` kept per layer (name = the draw function's name); ``seen`` also
has each neuron's rate, the confusion matrix, the split's name. The built-in figures are `FIGURES`; a
figure of your own module joins them with ``+logger.figures=[mymodule.dendrite_heatmap]`` (or a logger
option of yours that lists it: docs/extending.md). Figures are drawn at the first epoch,
every ``logger.figures_every`` epochs and the last one, in a worker thread while the loop evaluates
the test split; they are written at the same point and in the same order as drawn in line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch

from .. import figures as plots


@dataclass
class Seen:
    """What the watched evaluation (validation split, else test) saw, for the figures.

    records        figure name -> layer -> what that figure's ``record`` kept on the first batch
    neuron_rates   layer -> [N] per-neuron mean spikes per step (an event network: per trial)
    confusion      [C, C] counts (rows true, columns predicted), on the CPU
    split          "validation" or "test"
    """

    records: dict = field(default_factory=dict)
    neuron_rates: dict = field(default_factory=dict)
    confusion: Optional[torch.Tensor] = None
    split: str = "validation"

    @property
    def per_trial(self) -> bool:
        """An event network: rasters in continuous time, rates per trial."""
        return any(isinstance(s, dict) for s in self.records.get("raster", {}).values())


@dataclass(frozen=True)
class FigureSpec:
    """One family of TensorBoard figures: ``draw(seen)`` yields (tag, matplotlib Figure); ``record(layer,
    module, spikes [T, B, N], monitor)`` keeps its data from a spiking layer on the first batch."""

    name: str
    draw: Callable[[Seen], Iterator]
    record: Optional[Callable] = None


def figure(record: Optional[Callable] = None):
    """Make the decorated draw function a figure: its `FigureSpec` is ``draw.figure_spec``."""

    def register(draw):
        draw.figure_spec = FigureSpec(draw.__name__, draw, record)
        return draw

    return register


def spec_of(draw, name: str) -> FigureSpec:
    """The `FigureSpec` of a draw function decorated with `figure` (``name``: how the user named it)."""
    spec = getattr(draw, "figure_spec", None)
    if not isinstance(spec, FigureSpec):
        raise ValueError(
            f"{name} in figures is not a figure; decorate its draw function with "
            "@dendsn_cli.training.figures.figure (docs/extending.md)"
        )
    return spec


# --------------------------------------------------------------------------- raster


def record_raster(layer, module, spikes, monitor):
    k = min(monitor.n_samples, spikes.shape[1])
    return spikes[:, :k].float().cpu()  # [T, k, N]


@figure(record=record_raster)
def raster(seen: Seen):
    """raster/<layer>: spikes of 3 samples (time x neuron); raster/network: the event network's, continuous."""
    for name, s in seen.records.get("raster", {}).items():  # [T, k, N]; the event network: a dict
        if isinstance(s, dict):
            yield f"raster/{name}", plots.event_raster(s, title=f"event network: {seen.split} samples")
        else:
            yield f"raster/{name}", plots.raster(s, title=f"{name}: {seen.split} samples")


# --------------------------------------------------------------------------- traces


def sample_neurons(spikes: torch.Tensor, n: int) -> torch.Tensor:
    """The sample neurons of a trace: the most active ones of sample 0 (a silent layer: the first)."""
    counts = spikes[:, 0].float().sum(0)
    k = min(n, counts.numel())
    return torch.topk(counts, k).indices.sort().values.cpu() if counts.any() else torch.arange(k)


def record_traces(layer, module, spikes, monitor):
    v = getattr(module, "h_seq", None)  # before the reset: it crosses the threshold
    v = v if isinstance(v, torch.Tensor) else getattr(module, "v_seq", None)
    if not isinstance(v, torch.Tensor):
        return None
    idx = sample_neurons(spikes, monitor.n_neurons)
    trace = {
        "v": v.detach().reshape(v.shape[0], v.shape[1], -1)[:, 0, idx].float().cpu(),
        "spikes": spikes[:, 0, idx].float().cpu(),
        "neurons": idx.tolist(),
        "v_threshold": float(getattr(module, "v_threshold", 1.0)),
    }
    vd = getattr(module, "v_dend_seq", None)
    if isinstance(vd, torch.Tensor):  # [T, B, S..., K]
        trace["v_dend"] = vd.detach().reshape(vd.shape[0], vd.shape[1], -1, vd.shape[-1])[:, 0, idx].float().cpu()
    return trace


@figure(record=record_traces)
def traces(seen: Seen):
    """traces/<layer>: soma potential, threshold and spikes of 4 neurons (and every compartment's potential)."""
    for name, t in seen.records.get("traces", {}).items():
        kind = "soma (before reset) and dendritic compartments" if "v_dend" in t else "soma (before reset)"
        yield (
            f"traces/{name}",
            plots.traces(
                t["v"],
                t["spikes"],
                t["v_threshold"],
                v_dend=t.get("v_dend"),
                neuron_ids=t["neurons"],
                title=f"{name}: {kind}, {seen.split} sample 0",
            ),
        )


# --------------------------------------------------------------------------- rates, confusion


@figure()
def rates(seen: Seen):
    """rates/<layer>: histogram of per-neuron firing rates."""
    unit = "spikes / trial" if seen.per_trial else "spikes / step"
    for name, r in seen.neuron_rates.items():
        yield f"rates/{name}", plots.rate_histogram(r, title=f"{name} ({seen.split})", unit=unit)


@figure()
def confusion(seen: Seen):
    """confusion/<split>: the row-normalised confusion matrix."""
    if seen.confusion is not None:
        yield f"confusion/{seen.split}", plots.confusion_matrix(seen.confusion, title=seen.split)


FIGURES = [raster.figure_spec, traces.figure_spec, rates.figure_spec, confusion.figure_spec]  # in logging order
