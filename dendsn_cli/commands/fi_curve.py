"""The measurement of `dendsn simulate`: one layer of neurons driven by a stimulus (`dendsn_cli.stimuli`)
for every amplitude of a sweep, no training; its f-I curve, rasters and traces.

The layer: S = n_neurons copies of the `neuron` option. A point neuron takes [T, B, S]; a dendritic
one [T, B, S*K_in], feature s*K_in + k = input compartment k of neuron s (the synapse convention of
`dendsn.dendritic`). ``compartments`` lists the input compartments that get the stimulus (the others
get 0); null = all. Every amplitude is one batch row, all T steps run at once in inference mode.

    spikes_per_step[b] = mean over t and s of spikes[t, b, s];   rate_hz[b] = spikes_per_step[b] * 1000 / dt

A run dir (the layout of `dendsn train`: outputs/<date>/<time>/) holds .hydra/, simulate.log and

    fI.csv          amplitude, spikes_per_step, rate_hz, rate_hz_min, rate_hz_max, neuron_<s>_hz per neuron
    fI.png          the f-I curve (mean over neurons; the band spans the slowest and fastest neuron)
    simulate.json   a summary: the stimulus's x label, dt, T, rheobase, the largest rate
    TensorBoard     fI/rate_hz, fI/spikes_per_step, fI/amplitude (scalars, x = amplitude index), the figure
                    fI, raster (spikes of every neuron for the traced amplitudes), traces/<i>_amplitude_<a>
                    (soma potential before the reset, threshold, spikes; the compartments of a dendritic
                    neuron), stimulus (the input current), config, hparams (rheobase, largest rate)
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import config, figures
from .. import train as loop
from ..errors import UserError
from ..stimuli import Stimulus
from ..tb import TensorBoardLogger

MAX_AMPLITUDES = 10_000
MAX_TRACE_NEURONS = 2
TRACE_STEPS = 100  # the raster and trace figures show the first steps (the transient; past it a trace repeats)


def amplitude_values(cfg) -> list[float]:
    """The amplitudes of the sweep: ``amplitudes`` sorted without duplicates, else amp_steps values from
    amp_min to amp_max (evenly spaced)."""
    if cfg.amplitudes is not None:
        values = list(cfg.amplitudes)
        if not values:
            raise UserError(
                "amplitudes=[] is empty: give at least one amplitude, e.g. amplitudes=[0,0.5,1], or "
                "amplitudes=null for amp_min..amp_max in amp_steps"
            )
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise UserError(f"amplitudes[{i}]={v} is not a finite number: give finite amplitudes")
        if len(values) > MAX_AMPLITUDES:
            raise UserError(f"amplitudes has {len(values)} values: at most {MAX_AMPLITUDES}")
        return sorted(set(float(v) for v in values))
    for key in ("amp_min", "amp_max"):
        if not math.isfinite(cfg[key]):
            raise UserError(f"{key}={cfg[key]} is not a finite number")
    if cfg.amp_min > cfg.amp_max:
        raise UserError(
            f"amp_min={cfg.amp_min} is above amp_max={cfg.amp_max}: the amplitudes run from amp_min up to amp_max"
        )
    if not 1 <= cfg.amp_steps <= MAX_AMPLITUDES:
        raise UserError(f"amp_steps={cfg.amp_steps} is out of range: it must be in [1, {MAX_AMPLITUDES}]")
    if cfg.amp_steps == 1:
        return [float(cfg.amp_min)]
    return [
        float(f"{v:.12g}") for v in np.linspace(cfg.amp_min, cfg.amp_max, cfg.amp_steps)
    ]  # 0.3, not 0.30000000000000004


def choice(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` (neuron=lif): from the composed hydra node, else Hydra's runtime, else the target."""
    if "hydra" in cfg:
        return str(cfg.hydra.runtime.choices.get(group))
    return config.choice_name(cfg, group)


def build(cfg: DictConfig):
    """(stimulus, one layer of n_neurons neurons, the mask [S*K_in] of the stimulated input features)."""
    stimulus = loop.instantiate_group(cfg.stimulus, "stimulus")
    if not isinstance(stimulus, Stimulus):
        raise UserError(f"stimulus._target_={cfg.stimulus._target_} is not a dendsn_cli.simulate.Stimulus")
    neuron = loop.call_group(loop.instantiate_group(cfg.neuron, "neuron"), "neuron")
    if str(cfg.neuron.get("_target_")).startswith("dendsn.events."):
        raise UserError(
            "neuron=theta is event-driven (continuous time, dendsn train network=event_mlp learning=exact); "
            "dendsn simulate steps clock-driven neurons: pick one of `dendsn list neuron`, e.g. neuron=qif"
        )
    if not isinstance(neuron, nn.Module):
        raise UserError(f"neuron._target_={cfg.neuron._target_} does not make a torch module")
    loop.check_dendrites(neuron)
    return stimulus, neuron, input_mask(cfg, neuron)


def input_mask(cfg: DictConfig, neuron: nn.Module) -> torch.Tensor:
    """1 for the input features that get the stimulus, 0 for the others: [S*K_in], neuron-major."""
    K_in = int(getattr(neuron, "inputs_per_neuron", 1))
    wiring = getattr(neuron, "wiring", None)
    chosen = None if cfg.compartments is None else list(cfg.compartments)
    if chosen is not None:
        name = choice(cfg, "neuron")
        if wiring is None:
            raise UserError(
                f"compartments={chosen} applies to dendritic neurons only, and neuron={name} is a point "
                "neuron: drop compartments, or pick a dendritic neuron (e.g. neuron=dend_lif)"
            )
        if not chosen:
            raise UserError(
                "compartments=[] selects no input compartment: give indices, e.g. compartments=[0], "
                "or compartments=null for all"
            )
        bad = [k for k in chosen if not 0 <= k < K_in]
        if bad:
            raise UserError(
                f"compartments={chosen}: {bad[0]} is out of range; this {type(wiring).__name__} wiring has "
                f"{K_in} input compartments, indices 0..{K_in - 1}"
            )
    per_neuron = torch.zeros(K_in)
    per_neuron[chosen if chosen is not None else slice(None)] = 1.0
    return per_neuron.repeat(cfg.n_neurons)


# ---------------------------------------------------------------- the simulation
def _fi_rows(amps: list[float], spikes: torch.Tensor, dt: float) -> list[dict]:
    """One row per amplitude from spikes [T, B, S]."""
    per = spikes.float().mean(0).cpu().double()  # [B, S] spikes per step
    hz = per * 1000.0 / dt
    rows = []
    for b, a in enumerate(amps):
        row = {
            "amplitude": a,
            "spikes_per_step": float(per[b].mean()),
            "rate_hz": float(hz[b].mean()),
            "rate_hz_min": float(hz[b].min()),
            "rate_hz_max": float(hz[b].max()),
        }
        row.update({f"neuron_{s}_hz": float(hz[b, s]) for s in range(hz.shape[1])})
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (float(v) if k not in ("job", "label") else v) for k, v in r.items()} for r in csv.DictReader(f)]


def traced_indices(n_amplitudes: int, k: int) -> list[int]:
    """k amplitude indices evenly spaced over the sweep, the largest included, the first left out when
    there are more (amplitude 0 shows a neuron at rest)."""
    if k <= 0:
        return []
    if k >= n_amplitudes:
        return list(range(n_amplitudes))
    return sorted({int(round(x)) for x in np.linspace(0, n_amplitudes - 1, k + 1)[1:]})


def _describe_amplitudes(amps: list[float]) -> str:
    return f"amplitude {amps[0]:g}" if len(amps) == 1 else f"{len(amps)} amplitudes {amps[0]:g}..{amps[-1]:g}"


def log_figures(
    logger,
    cfg: DictConfig,
    neuron,
    stimulus,
    seqs: tuple,
    amps: list[float],
    rows: list[dict],
    what: str,
    title: str,
    run_dir: Path,
) -> None:
    """fI.png and the TensorBoard images of a simulation: the f-I curve, the raster, the stimulus and the
    traces of the traced amplitudes. ``seqs``: input x, input mask, spikes, potentials v and v_dend."""
    x, mask, spikes, v, vd = seqs
    S = cfg.n_neurons
    fi = figures.figure_to_array(fi_figure([(what, rows)], stimulus.x_label, cfg.dt, title=f"f-I curve: {title}"))
    matplotlib.image.imsave(run_dir / "fI.png", fi)  # drawn once: the PNG and the TensorBoard image
    logger.writer.add_image("fI", fi, 0, dataformats="HWC")
    idx = traced_indices(len(amps), cfg.traces)
    n_t = min(cfg.T, TRACE_STEPS)
    window = f": steps 0-{n_t - 1} of {cfg.T}" if n_t < cfg.T else ""
    if idx:
        labels = [f"amplitude {amps[b]:g}" for b in idx]
        logger.writer.add_figure(
            "raster", figures.raster(spikes[:n_t, idx], title=what + window, sample_labels=labels), 0
        )
        logger.writer.add_figure("stimulus", stimulus_figure(x, idx, amps, mask, cfg.dt, stimulus.x_label, what), 0)
    k = min(S, MAX_TRACE_NEURONS)
    if isinstance(v, torch.Tensor):
        v = v.detach().reshape(v.shape[0], v.shape[1], -1).float().cpu()
        dend = (
            vd.detach().reshape(vd.shape[0], vd.shape[1], -1, vd.shape[-1]).float().cpu()
            if isinstance(vd, torch.Tensor)
            else None
        )
        fed = _fed_compartments(cfg, neuron)
        for b in idx:
            fig = figures.traces(
                v[:n_t, b, :k],
                spikes[:n_t, b, :k],
                float(getattr(neuron, "v_threshold", 1.0)),
                v_dend=None if dend is None else dend[:n_t, b, :k],
                neuron_ids=list(range(k)),
                title=f"amplitude {amps[b]:g}, input into {fed}{window}",
            )
            logger.writer.add_figure(f"traces/{b:02d}_amplitude_{amps[b]:g}", fig, 0)


def simulate(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict) -> dict:
    """Run the stimulus through the neurons for every amplitude; write fI.csv, fI.png, simulate.json and the
    TensorBoard events into ``run_dir``; return the summary."""
    t0 = time.perf_counter()
    device = loop.select_device(cfg.device)
    loop.seed_everything(cfg.seed)
    amps = amplitude_values(cfg)
    stimulus, neuron, mask = build(cfg)
    neuron = neuron.to(device).eval()
    neuron.store_seq = True  # keep the potentials of every step (traces)
    S, K_in = cfg.n_neurons, int(getattr(neuron, "inputs_per_neuron", 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    a = torch.tensor(amps, dtype=torch.float32)
    x = stimulus(a, cfg.T, S * K_in, generator=gen) * mask  # [T, B, S*K_in]
    names = {g: choices.get(g) for g in ("neuron", "wiring", "stimulus") if choices.get(g)}
    what = " ".join(f"{g}={v}" for g, v in names.items())
    shown = loop.shown_path(run_dir)
    print(
        f"dendsn: simulate {what} | {shown} | {device} | {S} neuron(s) x {K_in} input(s) | "
        f"{_describe_amplitudes(amps)} | T={cfg.T}, dt={cfg.dt:g} ms | watch: tensorboard --logdir {shown}",
        file=sys.stderr,
    )
    with torch.inference_mode():
        if hasattr(neuron, "reset"):
            neuron.reset()
        out = neuron(x.to(device))
    spikes = out.reshape(out.shape[0], out.shape[1], -1).float().cpu()  # [T, B, S]
    v = getattr(neuron, "h_seq", None)  # before the reset: it crosses the threshold
    v = v if isinstance(v, torch.Tensor) else getattr(neuron, "v_seq", None)
    vd = getattr(neuron, "v_dend_seq", None)
    rows = _fi_rows(amps, spikes, cfg.dt)
    write_csv(run_dir / "fI.csv", rows)
    firing = [r["amplitude"] for r in rows if r["spikes_per_step"] > 0]
    summary = {
        "status": "completed",
        "neuron": names.get("neuron"),
        "wiring": names.get("wiring"),
        "stimulus": names.get("stimulus"),
        "x_label": stimulus.x_label,
        "T": cfg.T,
        "dt": cfg.dt,
        "n_neurons": S,
        "inputs_per_neuron": K_in,
        "amplitudes": amps,
        "rheobase": firing[0] if firing else None,
        "max_rate_hz": max(r["rate_hz"] for r in rows),
        "monotone": all(r2["rate_hz"] >= r1["rate_hz"] for r1, r2 in zip(rows, rows[1:])),
    }
    title = f"{what} (T={cfg.T}, dt={cfg.dt:g} ms)"

    logger = cli_logger(cfg)
    logger.open(str(run_dir))
    logger.config(OmegaConf.to_yaml(cfg, resolve=True), overrides)
    for b, r in enumerate(rows):
        logger.scalars(
            {"fI/rate_hz": r["rate_hz"], "fI/spikes_per_step": r["spikes_per_step"], "fI/amplitude": r["amplitude"]}, b
        )
    if cfg.figures:
        log_figures(logger, cfg, neuron, stimulus, (x, mask, spikes, v, vd), amps, rows, what, title, run_dir)
    hp, given = loop.hparams_of(cfg, choices, overrides)
    metrics = {"fI/max_rate_hz": summary["max_rate_hz"]}
    if summary["rheobase"] is not None:
        metrics["fI/rheobase"] = summary["rheobase"]
    logger.hparams(hp, metrics, given)
    logger.close()
    summary["time_s"] = round(time.perf_counter() - t0, 2)
    (run_dir / "simulate.json").write_text(json.dumps(summary, indent=2))
    rheo = f"fires from amplitude {summary['rheobase']:g}" if firing else "silent at every amplitude"
    print(
        f"dendsn: f-I curve: {rheo}, up to {summary['max_rate_hz']:.4g} Hz "
        f"({summary['max_rate_hz'] * cfg.dt / 1000:.3g} spikes/step) at {amps[-1]:g} | "
        f"{'fI.csv, fI.png' if cfg.figures else 'fI.csv'} in {shown} | {summary['time_s']:.2f}s",
        file=sys.stderr,
    )
    return summary


def cli_logger(cfg):
    return TensorBoardLogger(histograms=False, rasters=bool(cfg.figures), flush_secs=30)


def _fed_compartments(cfg, neuron) -> str:
    """The compartments (c<index> as the trace figure names them) that get the stimulus."""
    wiring = getattr(neuron, "wiring", None)
    if wiring is None:
        return "the soma"
    if cfg.compartments is None or sorted(set(cfg.compartments)) == list(range(wiring.n_input)):
        return "every input compartment" if wiring.n_input > 1 else f"c{wiring.input_index[0]}"
    chosen = sorted(set(cfg.compartments))
    return ", ".join(f"c{wiring.input_index[k]}" for k in chosen)


# ---------------------------------------------------------------- figures
def fi_figure(curves: list, x_label: str, dt: float, title: str = ""):
    """f-I curves: ``curves`` [(label, rows of fI.csv)]; rate in Hz (left) and spikes per step (right)
    against the amplitude, the band from the slowest to the fastest neuron of each curve."""
    with matplotlib.rc_context(figures.RC):
        fig = figures.new_figure(8.0, 4.8)
        ax = fig.subplots()
        for i, (label, rows) in enumerate(curves):
            x = np.array([r["amplitude"] for r in rows])
            y = np.array([r["rate_hz"] for r in rows])
            color = f"C{i % 10}"  # marker and dash vary too: equal curves stay visible
            ax.plot(
                x,
                y,
                color=color,
                lw=1.8,
                ls=("-", "--", "-.", ":")[i % 4],
                marker="osD^v<>"[i % 7],
                ms=4,
                mfc=color if i % 2 == 0 else "white",
                label=label,
            )
            lo = np.array([r.get("rate_hz_min", r["rate_hz"]) for r in rows])
            hi = np.array([r.get("rate_hz_max", r["rate_hz"]) for r in rows])
            if np.any(hi > lo):
                ax.fill_between(
                    x,
                    lo,
                    hi,
                    color=color,
                    alpha=0.18,
                    lw=0,
                    label="slowest to fastest neuron" if len(curves) == 1 else None,
                )
        if len(curves) == 1 and len(ax.collections):
            n = sum(k.startswith("neuron_") for k in curves[0][1][0])
            ax.lines[0].set_label(f"mean over {n} neurons" if n else "mean")
            ax.legend(loc="upper left", fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel("firing rate (Hz)")
        ax.set_ylim(bottom=0)
        ax.grid(True, color="0.9")
        ax.secondary_yaxis("right", functions=(lambda hz: hz * dt / 1000.0, lambda s: s * 1000.0 / dt)).set_ylabel(
            "spikes / step"
        )
        if len(curves) > 1:
            ax.legend(loc="upper left", fontsize=9, title="job")
        if title:
            ax.set_title(title)
    return fig


def stimulus_figure(
    x: torch.Tensor, idx: list[int], amps: list[float], mask: torch.Tensor, dt: float, x_label: str, title: str
):
    """The input current of the first stimulated feature (neuron 0) for the traced amplitudes."""
    feature = int(torch.nonzero(mask)[0]) if mask.any() else 0
    with matplotlib.rc_context(figures.RC):
        fig = figures.new_figure(figures.WIDTH, 3.2)
        ax = fig.subplots()
        for j, b in enumerate(idx):
            ax.step(
                np.arange(x.shape[0]),
                x[:, b, feature].numpy(),
                where="mid",
                color=f"C{j % 10}",
                lw=1.2,
                label=f"amplitude {amps[b]:g}",
            )
        ax.set_xlabel(f"time step ({dt:g} ms)")
        ax.set_ylabel("input current")
        ax.legend(loc="upper right", fontsize=9)
        ax.set_title(f"{title}: the stimulus of neuron 0, input feature {feature}")
    return fig
