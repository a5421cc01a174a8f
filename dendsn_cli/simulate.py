"""`dendsn simulate`: drive one layer of neurons with a stimulus, no training, and measure its f-I curve.

    dendsn simulate [neuron=OPTION] [wiring=OPTION] [stimulus=OPTION] [KEY=VALUE ...] [-m]

Stimuli (conf/stimulus/): each maps the amplitudes a [B] of a sweep to an input current I [T, B, n]
(step t = 0 .. T-1, dt ms per step, n input features):

    constant   I[t, b, i] = a_b
    sine       I[t, b, i] = offset + a_b * sin(2 pi frequency t dt / 1000 + phase)
    cosine     I[t, b, i] = offset + a_b * cos(2 pi frequency t dt / 1000 + phase)
    poisson    I[t, b, i] = a_b * sum_{j < n_inputs} w_ij s_ij[t],   s_ij[t] ~ Bernoulli(rate dt / 1000)
               w_ij = 1, or w_ij ~ U(0, 2) with random_weight (drawn once); every amplitude sees the same
               trains (common random numbers: the curve's steps come from the amplitude, not the draw)

So the amplitude is always a current (Poisson: the current of one input spike); sweep an input rate
with -m stimulus.rate=50,100,200 (one f-I curve per rate).

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

A sweep (-m) runs one job per setting, each with its own run dir; at its end `FISweepReport` writes
fI.csv and fI.png at the sweep root, one curve per job, labelled by the overrides that differ.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from . import cli, config, rundir, sweep
from .errors import UserError, shorten

CONFIG_NAME = "simulate"
MAX_AMPLITUDES = 10_000
MAX_TRACE_NEURONS = 2
TRACE_STEPS = 100  # the raster and trace figures show the first steps (the transient; past it a trace repeats)


# ---------------------------------------------------------------- stimuli
def _number(name: str, value, low: Optional[float] = None, low_open: bool = False,
            high: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {name}={value!r})")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g} (got {name}={value!r})")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g} (got {name}={value!r})")
    return float(value)


class Stimulus(nn.Module):
    """amplitudes a [B] -> input current I [T, B, n]. ``x_label`` names the amplitude on the f-I plot."""

    x_label = "amplitude"

    def forward(self, amplitudes: torch.Tensor, T: int, n: int, generator: Optional[torch.Generator] = None):
        raise NotImplementedError


def constant(amplitudes: torch.Tensor, T: int, n: int) -> torch.Tensor:
    """I[t, b, i] = a_b: [B] -> [T, B, n]."""
    return amplitudes.reshape(1, -1, 1).expand(T, -1, n).clone()


def sinusoid(amplitudes: torch.Tensor, T: int, n: int, frequency: float, dt: float, offset: float = 0.0,
             phase: float = 0.0, wave=torch.sin) -> torch.Tensor:
    """I[t, b, i] = offset + a_b * wave(2 pi frequency t dt / 1000 + phase): [B] -> [T, B, n] (phase in
    radians, frequency in Hz, dt in ms; the phase is computed in float64, exact for long runs)."""
    t = torch.arange(T, dtype=torch.float64)
    w = wave(2 * math.pi * frequency * t * dt / 1000.0 + phase)                   # [T]
    i = offset + w[:, None] * amplitudes.double()[None, :]                          # [T, B]
    return i.to(amplitudes.dtype)[:, :, None].expand(T, -1, n).clone()


def poisson_drive(T: int, n: int, n_inputs: int, p: float, weights: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """sum_{j < n_inputs} w_ij s_ij[t] with s_ij[t] ~ Bernoulli(p) independent: [T, n]. ``weights`` [n, n_inputs]
    (None: every w_ij = 1, the count of input spikes)."""
    out = torch.empty(T, n)
    chunk = max(1, (1 << 22) // max(n * n_inputs, 1))                              # ~16 MB of draws at a time
    for t0 in range(0, T, chunk):
        s = (torch.rand(min(chunk, T - t0), n, n_inputs, generator=generator) < p).float()   # [t, n, n_inputs]
        out[t0:t0 + chunk] = s.sum(-1) if weights is None else (s * weights).sum(-1)
    return out


class Constant(Stimulus):
    """Constant current: I[t] = amplitude."""

    x_label = "input current (amplitude)"

    def forward(self, amplitudes, T, n, generator=None):
        return constant(amplitudes, T, n)


class Sine(Stimulus):
    """Sine current: I[t] = offset + amplitude * sin(2 pi frequency t dt / 1000 + phase)."""

    x_label = "input current (sine amplitude)"
    wave = staticmethod(torch.sin)

    def __init__(self, frequency: float = 10.0, offset: float = 0.0, phase: float = 0.0, dt: float = 1.0):
        super().__init__()
        self.dt = _number("dt", dt, low=0.0, low_open=True)
        self.frequency = _number("frequency", frequency, low=0.0)
        if self.frequency > 500.0 / self.dt:               # Nyquist: at least two steps a period
            raise ValueError(f"frequency={frequency} Hz is above the Nyquist frequency of dt={dt} ms: it must be "
                             f"<= {500.0 / self.dt:g} Hz (500 / dt), or lower dt")
        self.offset, self.phase = _number("offset", offset), _number("phase", phase)

    def forward(self, amplitudes, T, n, generator=None):
        return sinusoid(amplitudes, T, n, self.frequency, self.dt, self.offset, self.phase, self.wave)

    def extra_repr(self) -> str:
        return f"frequency={self.frequency} Hz, offset={self.offset}, phase={self.phase}, dt={self.dt} ms"


class Cosine(Sine):
    """Cosine current: I[t] = offset + amplitude * cos(2 pi frequency t dt / 1000 + phase)."""

    x_label = "input current (cosine amplitude)"
    wave = staticmethod(torch.cos)


class Poisson(Stimulus):
    """Poisson input: each input feature i gets ``n_inputs`` trains s_ij at ``rate`` Hz (Bernoulli with
    p = rate dt / 1000 per step), I[t] = amplitude * sum_j w_ij s_ij[t]; w_ij = 1, or U(0, 2) with
    ``random_weight`` (mean 1, drawn once). The mean current is amplitude * n_inputs * p."""

    x_label = "input current per input spike (amplitude)"

    def __init__(self, rate: float = 100.0, n_inputs: int = 10, random_weight: bool = False, dt: float = 1.0):
        super().__init__()
        self.dt = _number("dt", dt, low=0.0, low_open=True)
        self.rate = _number("rate", rate, low=0.0)
        if self.rate * self.dt / 1000.0 > 1.0:
            raise ValueError(f"rate={rate} Hz with dt={dt} ms is more than one spike per step: the rate must be "
                             f"<= {1000.0 / self.dt:g} Hz (1000 / dt)")
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"n_inputs must be an integer >= 1 (got n_inputs={n_inputs!r})")
        self.n_inputs, self.random_weight = n_inputs, bool(random_weight)

    @property
    def p(self) -> float:
        return self.rate * self.dt / 1000.0

    def forward(self, amplitudes, T, n, generator=None):
        w = torch.rand(n, self.n_inputs, generator=generator) * 2.0 if self.random_weight else None
        drive = poisson_drive(T, n, self.n_inputs, self.p, w, generator).to(amplitudes.dtype)   # [T, n]
        return amplitudes.reshape(1, -1, 1) * drive[:, None, :]

    def extra_repr(self) -> str:
        return f"rate={self.rate} Hz, n_inputs={self.n_inputs}, random_weight={self.random_weight}, dt={self.dt} ms"


# ---------------------------------------------------------------- config
@dataclass
class SimulateConfig:
    neuron: Any = MISSING
    wiring: Any = None
    stimulus: Any = MISSING
    seed: int = 0
    device: str = "cpu"
    T: int = 200
    dt: float = 1.0
    n_neurons: int = 4
    amplitudes: Optional[List[float]] = None
    amp_min: float = 0.0
    amp_max: float = 2.0
    amp_steps: int = 21
    compartments: Optional[List[int]] = None
    traces: int = 3
    figures: bool = True


ConfigStore.instance().store(name="dendsn_simulate_schema", node=SimulateConfig)


ROOT_KEYS = ", ".join(sorted(SimulateConfig.__dataclass_fields__))


def explain(e: BaseException, overrides: list[str]) -> str:
    """One line for a composition error: `config.explain`'s, naming `dendsn simulate`, plus the root keys."""
    msg = f"{e}\n{e.__cause__ or ''}"
    m = re.search(r"Key '([^']+)' not in 'SimulateConfig'", msg)
    if m:
        return f"{m.group(1)} is not a known key of dendsn simulate; the root keys are: {ROOT_KEYS}"
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig.*?full_key: (\S+)", msg, re.S)
    if m:
        key = m.group(2)
        given = cli._value_of(overrides, key)
        return f"{key}={shorten(given, 40) if given is not None else '?'} has the wrong type: expected a list, e.g. {key}=[0,0.5,1]"
    return (config._unreadable(overrides, e) or config.explain(e)).replace("dendsn train", "dendsn simulate")


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """conf/simulate.yaml with ``overrides``, interpolations resolved (outside hydra.*); UserError on failure."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    big = config._big_number(overrides)
    if big:
        raise UserError(f"{big.lstrip('+~')}= holds a number with hundreds of digits; give a value in its range "
                        "(`dendsn simulate --help`)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config.CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
        for key in cfg.keys():                              # resolve every interpolation now (one line if one fails)
            if key != "hydra":
                node = cfg[key]
                if OmegaConf.is_config(node):
                    OmegaConf.to_container(node, resolve=True)
        return cfg
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(explain(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def amplitude_values(cfg) -> list[float]:
    """The amplitudes of the sweep: ``amplitudes`` sorted without duplicates, else amp_steps values from
    amp_min to amp_max (evenly spaced)."""
    if cfg.amplitudes is not None:
        values = list(cfg.amplitudes)
        if not values:
            raise UserError("amplitudes=[] is empty: give at least one amplitude, e.g. amplitudes=[0,0.5,1], or "
                            "amplitudes=null for amp_min..amp_max in amp_steps")
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
        raise UserError(f"amp_min={cfg.amp_min} is above amp_max={cfg.amp_max}: the amplitudes run from amp_min up to amp_max")
    if not 1 <= cfg.amp_steps <= MAX_AMPLITUDES:
        raise UserError(f"amp_steps={cfg.amp_steps} is out of range: it must be in [1, {MAX_AMPLITUDES}]")
    if cfg.amp_steps == 1:
        return [float(cfg.amp_min)]
    return [float(f"{v:.12g}") for v in np.linspace(cfg.amp_min, cfg.amp_max, cfg.amp_steps)]   # 0.3, not 0.30000000000000004


def validate(cfg: DictConfig) -> None:
    """Range checks of the root keys, signature checks of the groups, and the stimulus and one neuron built
    (their constructors check their values): raise UserError with one line."""
    known = set(SimulateConfig.__dataclass_fields__) | {"hydra"}
    for key in cfg.keys():
        if key not in known:
            raise UserError(f"{key} is not a known key of dendsn simulate; the root keys are: {ROOT_KEYS}")
    if not 0 <= cfg.seed < 2**63:
        raise UserError(f"seed={shorten(cfg.seed, 40)} is out of range: seed must be an integer in [0, 2**63)")
    for key in ("T", "n_neurons"):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} is out of range: {key} must be >= 1")
    if cfg.traces < 0:
        raise UserError(f"traces={cfg.traces} is out of range: it must be >= 0 (0 = no raster / trace figures)")
    if not (math.isfinite(cfg.dt) and cfg.dt > 0):
        raise UserError(f"dt={cfg.dt} is out of range: dt must be > 0 (milliseconds per step)")
    if not config._DEVICE.match(str(cfg.device)):
        raise UserError(f"device={cfg.device!r} is not known: use cpu, auto, cuda or cuda:N")
    amplitude_values(cfg)
    if cfg.get("wiring") is not None and "wiring" not in cfg.neuron:
        raise UserError(f"wiring applies to dendritic neurons only, and neuron={_choice(cfg, 'neuron')} is "
                        "a point neuron: pick a dendritic neuron (e.g. neuron=dend_lif) or drop the wiring override")
    _check_stimulus_keys(cfg)
    stim_dt = cfg.stimulus.get("dt") if isinstance(cfg.get("stimulus"), DictConfig) else None
    if stim_dt is not None and stim_dt != cfg.dt:
        raise UserError(f"stimulus.dt={stim_dt} differs from dt={cfg.dt}: the stimulus and the rates must share one time "
                        f"step; set dt={stim_dt} (the root key) and leave stimulus.dt as it is")
    for group in ("neuron", "wiring", "stimulus"):
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            config.check_node(node, group)
    config._check_step_mode(cfg.neuron, "neuron")
    build(cfg)


def _choice(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` (neuron=lif): from the composed hydra node, else Hydra's runtime, else the target."""
    if "hydra" in cfg:
        return str(cfg.hydra.runtime.choices.get(group))
    return config.choice_name(cfg, group)


def _check_stimulus_keys(cfg: DictConfig) -> None:
    """A key added to the stimulus (+stimulus.KEY=...) must be a parameter of its class."""
    import inspect

    from hydra._internal.utils import _locate

    node = cfg.get("stimulus")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        params = [k for k in inspect.signature(_locate(str(node._target_))).parameters if k not in ("self", "args", "kwargs")]
    except Exception:
        return                                                   # config.check_node names an unimportable target
    for key in node.keys():
        if not str(key).startswith("_") and str(key) not in params:
            keys = ", ".join(params) or "none: the amplitude alone sets the current"
            raise UserError(f"stimulus.{key} is not a key of stimulus={_choice(cfg, 'stimulus')}; its keys are: {keys}")


def build(cfg: DictConfig):
    """(stimulus, one layer of n_neurons neurons, the mask [S*K_in] of the stimulated input features)."""
    from .train import _call, _instantiate, check_dendrites

    stimulus = _instantiate(cfg.stimulus, "stimulus")
    if not isinstance(stimulus, Stimulus):
        raise UserError(f"stimulus._target_={cfg.stimulus._target_} is not a dendsn_cli.simulate.Stimulus")
    neuron = _call(_instantiate(cfg.neuron, "neuron"), "neuron")
    if str(cfg.neuron.get("_target_")).startswith("dendsn.events."):
        raise UserError("neuron=theta is event-driven (continuous time, dendsn train network=event_mlp learning=exact); "
                        "dendsn simulate steps clock-driven neurons: pick one of `dendsn list neuron`, e.g. neuron=qif")
    if not isinstance(neuron, nn.Module):
        raise UserError(f"neuron._target_={cfg.neuron._target_} does not make a torch module")
    check_dendrites(neuron)
    return stimulus, neuron, input_mask(cfg, neuron)


def input_mask(cfg: DictConfig, neuron: nn.Module) -> torch.Tensor:
    """1 for the input features that get the stimulus, 0 for the others: [S*K_in], neuron-major."""
    K_in = int(getattr(neuron, "inputs_per_neuron", 1))
    wiring = getattr(neuron, "wiring", None)
    chosen = None if cfg.compartments is None else list(cfg.compartments)
    if chosen is not None:
        name = _choice(cfg, "neuron")
        if wiring is None:
            raise UserError(f"compartments={chosen} applies to dendritic neurons only, and neuron={name} is a point "
                            "neuron: drop compartments, or pick a dendritic neuron (e.g. neuron=dend_lif)")
        if not chosen:
            raise UserError("compartments=[] selects no input compartment: give indices, e.g. compartments=[0], "
                            "or compartments=null for all")
        bad = [k for k in chosen if not 0 <= k < K_in]
        if bad:
            raise UserError(f"compartments={chosen}: {bad[0]} is out of range; this {type(wiring).__name__} wiring has "
                            f"{K_in} input compartments, indices 0..{K_in - 1}")
    per_neuron = torch.zeros(K_in)
    per_neuron[chosen if chosen is not None else slice(None)] = 1.0
    return per_neuron.repeat(cfg.n_neurons)


# ---------------------------------------------------------------- the simulation
def _fi_rows(amps: list[float], spikes: torch.Tensor, dt: float) -> list[dict]:
    """One row per amplitude from spikes [T, B, S]."""
    per = spikes.float().mean(0).cpu().double()                    # [B, S] spikes per step
    hz = per * 1000.0 / dt
    rows = []
    for b, a in enumerate(amps):
        row = {"amplitude": a, "spikes_per_step": float(per[b].mean()), "rate_hz": float(hz[b].mean()),
               "rate_hz_min": float(hz[b].min()), "rate_hz_max": float(hz[b].max())}
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


def simulate(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict) -> dict:
    """Run the stimulus through the neurons for every amplitude; write fI.csv, fI.png, simulate.json and the
    TensorBoard events into ``run_dir``; return the summary."""
    from .train import _shown, hparams_of, seed_everything, select_device

    t0 = time.perf_counter()
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    amps = amplitude_values(cfg)
    stimulus, neuron, mask = build(cfg)
    neuron = neuron.to(device).eval()
    neuron.store_seq = True                                  # keep the potentials of every step (traces)
    S, K_in = cfg.n_neurons, int(getattr(neuron, "inputs_per_neuron", 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    a = torch.tensor(amps, dtype=torch.float32)
    x = stimulus(a, cfg.T, S * K_in, generator=gen) * mask  # [T, B, S*K_in]
    names = {g: choices.get(g) for g in ("neuron", "wiring", "stimulus") if choices.get(g)}
    what = " ".join(f"{g}={v}" for g, v in names.items())
    shown = _shown(run_dir)
    print(f"dendsn: simulate {what} | {shown} | {device} | {S} neuron(s) x {K_in} input(s) | "
          f"{_describe_amplitudes(amps)} | T={cfg.T}, dt={cfg.dt:g} ms | watch: tensorboard --logdir {shown}",
          file=sys.stderr)
    with torch.inference_mode():
        if hasattr(neuron, "reset"):
            neuron.reset()
        out = neuron(x.to(device))
    spikes = out.reshape(out.shape[0], out.shape[1], -1).float().cpu()               # [T, B, S]
    v = getattr(neuron, "h_seq", None)                      # before the reset: it crosses the threshold
    v = v if isinstance(v, torch.Tensor) else getattr(neuron, "v_seq", None)
    vd = getattr(neuron, "v_dend_seq", None)
    rows = _fi_rows(amps, spikes, cfg.dt)
    write_csv(run_dir / "fI.csv", rows)
    firing = [r["amplitude"] for r in rows if r["spikes_per_step"] > 0]
    summary = {
        "status": "completed", "neuron": names.get("neuron"), "wiring": names.get("wiring"),
        "stimulus": names.get("stimulus"), "x_label": stimulus.x_label, "T": cfg.T, "dt": cfg.dt,
        "n_neurons": S, "inputs_per_neuron": K_in, "amplitudes": amps,
        "rheobase": firing[0] if firing else None, "max_rate_hz": max(r["rate_hz"] for r in rows),
        "monotone": all(r2["rate_hz"] >= r1["rate_hz"] for r1, r2 in zip(rows, rows[1:])),
    }
    title = f"{what} (T={cfg.T}, dt={cfg.dt:g} ms)"

    logger = cli_logger(cfg)
    logger.open(str(run_dir))
    logger.config(OmegaConf.to_yaml(cfg, resolve=True), overrides)
    for b, r in enumerate(rows):
        logger.scalars({"fI/rate_hz": r["rate_hz"], "fI/spikes_per_step": r["spikes_per_step"],
                        "fI/amplitude": r["amplitude"]}, b)
    if cfg.figures:
        from . import figures

        import matplotlib.image

        fi = figures.figure_to_array(fi_figure([(what, rows)], stimulus.x_label, cfg.dt, title=f"f-I curve: {title}"))
        matplotlib.image.imsave(run_dir / "fI.png", fi)                  # drawn once: the PNG and the TensorBoard image
        logger.writer.add_image("fI", fi, 0, dataformats="HWC")
        idx = traced_indices(len(amps), cfg.traces)
        n_t = min(cfg.T, TRACE_STEPS)
        window = f": steps 0-{n_t - 1} of {cfg.T}" if n_t < cfg.T else ""
        if idx:
            labels = [f"amplitude {amps[b]:g}" for b in idx]
            logger.writer.add_figure("raster", figures.raster(spikes[:n_t, idx], title=what + window,
                                                              sample_labels=labels), 0)
            logger.writer.add_figure("stimulus", stimulus_figure(x, idx, amps, mask, cfg.dt, stimulus.x_label, what), 0)
        k = min(S, MAX_TRACE_NEURONS)
        if isinstance(v, torch.Tensor):
            v = v.detach().reshape(v.shape[0], v.shape[1], -1).float().cpu()
            dend = vd.detach().reshape(vd.shape[0], vd.shape[1], -1, vd.shape[-1]).float().cpu() if isinstance(vd, torch.Tensor) else None
            fed = _fed_compartments(cfg, neuron)
            for b in idx:
                fig = figures.traces(v[:n_t, b, :k], spikes[:n_t, b, :k], float(getattr(neuron, "v_threshold", 1.0)),
                                     v_dend=None if dend is None else dend[:n_t, b, :k], neuron_ids=list(range(k)),
                                     title=f"amplitude {amps[b]:g}, input into {fed}{window}")
                logger.writer.add_figure(f"traces/{b:02d}_amplitude_{amps[b]:g}", fig, 0)
    hp, given = hparams_of(cfg, choices, overrides)
    metrics = {"fI/max_rate_hz": summary["max_rate_hz"]}
    if summary["rheobase"] is not None:
        metrics["fI/rheobase"] = summary["rheobase"]
    logger.hparams(hp, metrics, given)
    logger.close()
    summary["time_s"] = round(time.perf_counter() - t0, 2)
    (run_dir / "simulate.json").write_text(json.dumps(summary, indent=2))
    rheo = f"fires from amplitude {summary['rheobase']:g}" if firing else "silent at every amplitude"
    print(f"dendsn: f-I curve: {rheo}, up to {summary['max_rate_hz']:.4g} Hz "
          f"({summary['max_rate_hz'] * cfg.dt / 1000:.3g} spikes/step) at {amps[-1]:g} | "
          f"{'fI.csv, fI.png' if cfg.figures else 'fI.csv'} in {shown} | {summary['time_s']:.2f}s", file=sys.stderr)
    return summary


def cli_logger(cfg):
    from .tb import TensorBoardLogger

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
    import matplotlib

    from . import figures

    with matplotlib.rc_context(figures._RC):
        fig = figures._figure(8.0, 4.8)
        ax = fig.subplots()
        for i, (label, rows) in enumerate(curves):
            x = np.array([r["amplitude"] for r in rows])
            y = np.array([r["rate_hz"] for r in rows])
            color = f"C{i % 10}"                  # marker and dash vary too: equal curves stay visible
            ax.plot(x, y, color=color, lw=1.8, ls=("-", "--", "-.", ":")[i % 4], marker="osD^v<>"[i % 7],
                    ms=4, mfc=color if i % 2 == 0 else "white", label=label)
            lo = np.array([r.get("rate_hz_min", r["rate_hz"]) for r in rows])
            hi = np.array([r.get("rate_hz_max", r["rate_hz"]) for r in rows])
            if np.any(hi > lo):
                ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0,
                                label="slowest to fastest neuron" if len(curves) == 1 else None)
        if len(curves) == 1 and len(ax.collections):
            n = sum(k.startswith("neuron_") for k in curves[0][1][0])
            ax.lines[0].set_label(f"mean over {n} neurons" if n else "mean")
            ax.legend(loc="upper left", fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel("firing rate (Hz)")
        ax.set_ylim(bottom=0)
        ax.grid(True, color="0.9")
        ax.secondary_yaxis("right", functions=(lambda hz: hz * dt / 1000.0, lambda s: s * 1000.0 / dt)) \
            .set_ylabel("spikes / step")
        if len(curves) > 1:
            ax.legend(loc="upper left", fontsize=9, title="job")
        if title:
            ax.set_title(title)
    return fig


def stimulus_figure(x: torch.Tensor, idx: list[int], amps: list[float], mask: torch.Tensor, dt: float,
                    x_label: str, title: str):
    """The input current of the first stimulated feature (neuron 0) for the traced amplitudes."""
    import matplotlib

    from . import figures

    feature = int(torch.nonzero(mask)[0]) if mask.any() else 0
    with matplotlib.rc_context(figures._RC):
        fig = figures._figure(figures.WIDTH, 3.2)
        ax = fig.subplots()
        for j, b in enumerate(idx):
            ax.step(np.arange(x.shape[0]), x[:, b, feature].numpy(), where="mid", color=f"C{j % 10}",
                    lw=1.2, label=f"amplitude {amps[b]:g}")
        ax.set_xlabel(f"time step ({dt:g} ms)")
        ax.set_ylabel("input current")
        ax.legend(loc="upper right", fontsize=9)
        ax.set_title(f"{title}: the stimulus of neuron 0, input feature {feature}")
    return fig


# ---------------------------------------------------------------- sweeps
class FISweepReport:
    """Hydra callback: after a sweep, fI.csv and fI.png at the sweep root, one f-I curve per job (labelled by
    the overrides that differ between the jobs), and the list of the jobs that failed (error.txt)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs = sorted(sweep.job_dirs(root), key=lambda j: (sweep._job_number(j) or 0, j.name))
        lists = [{"override_list": sweep._read_overrides(j)} for j in jobs]
        swept = sweep.swept_keys(root, lists, list(config.hydra.overrides.task))
        curves, table, failed, meta = [], [], [], []
        for job, record in zip(jobs, lists):
            label = ",".join(o for o in record["override_list"] if sweep.override_key(o) in swept) or job.name
            if (job / "error.txt").exists():
                failed.append(f"{job}: {(job / 'error.txt').read_text().strip()}")
                continue
            if not (job / "fI.csv").exists():
                continue
            rows = read_csv(job / "fI.csv")
            curves.append((label, rows))
            meta.append(sweep._read_json(job / "simulate.json"))
            table += [{"job": job.name, "label": label, "amplitude": r["amplitude"],
                       "spikes_per_step": r["spikes_per_step"], "rate_hz": r["rate_hz"]} for r in rows]
        if table:
            write_csv(root / "fI.csv", table)
            labels = {m.get("x_label") for m in meta}
            dts = {m.get("dt") for m in meta}
            x_label = labels.pop() if len(labels) == 1 and None not in labels else "amplitude"
            dt = dts.pop() if len(dts) == 1 and None not in dts else None
            from . import figures

            shared = [f"{g}={meta[0][g]}" for g in ("neuron", "wiring", "stimulus")
                      if meta[0].get(g) and all(m.get(g) == meta[0][g] for m in meta)]
            steps = {(m.get("T"), m.get("dt")) for m in meta}
            if len(steps) == 1 and None not in next(iter(steps)):
                T_, dt_ = next(iter(steps))
                shared.append(f"(T={T_}, dt={dt_:g} ms)")
            fig = fi_figure(curves, x_label, dt or 1.0, title=f"f-I curves, one per job: {' '.join(shared)}".rstrip(": "))
            if dt is None:                                   # jobs with different dt: spikes/step has no one axis
                fig.axes[-1].remove()
            figures.save_png(fig, root / "fI.png")
            print(f"dendsn: f-I curves of {len(curves)} job(s): {root / 'fI.png'} and fI.csv")
        cli.FAILED_JOBS.extend(failed)
        print(f"dendsn: sweep finished: {len(curves)} job(s) completed, {len(failed)} failed | {root}", file=sys.stderr)
        for line in failed:
            print(f"dendsn:   failed {line}", file=sys.stderr)

    def __getattr__(self, name):  # the other Callback hooks do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


SWEEP_LIMIT = 64   # jobs of a sweep composed and validated one by one; beyond, each value with the others' first


def check_sweep(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Validate every job of ``dendsn simulate -m OVERRIDES`` before Hydra starts (each swept value, in every
    combination up to SWEEP_LIMIT jobs); return the overrides and the exclude_keys of the job dir names."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if config.sweeper_of(overrides) != "basic":
        raise UserError("dendsn simulate sweeps with Hydra's basic sweeper (one job per value, -m KEY=A,B); a "
                        "sampling sweeper needs an objective to optimize, which a simulation has not")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config.CONFIG_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            per_key = config.expand_sweep(overrides, config_loader=loader)
            n = math.prod(len(lines) for lines in per_key)
            if n <= SWEEP_LIMIT:
                combos = [list(c) for c in itertools.product(*per_key)]
            else:
                firsts = [lines[0] for lines in per_key]
                combos = [firsts] + [firsts[:i] + [v] + firsts[i + 1:] for i, lines in enumerate(per_key) for v in lines[1:]]
            exclude: list[str] = []
            for i, combo in enumerate(combos):
                try:
                    cfg = hydra_compose(CONFIG_NAME, overrides=combo, return_hydra_config=True)
                except (HydraException, OmegaConfBaseException) as e:
                    raise UserError(explain(e, combo)) from None
                if i == 0:
                    exclude = list(cfg.hydra.job.config.override_dirname.exclude_keys)
                validate(cfg)
    finally:
        GlobalHydra.instance().clear()
    return overrides, exclude


# ---------------------------------------------------------------- the command
def _split_args(args: list[str]):
    """Hydra's own argument parser (overrides, -m, --cfg, ...); a parse error is one line."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return get_args_parser().parse_args(args)
    except SystemExit:
        why = [ln.split("error:", 1)[1].strip() for ln in said.getvalue().splitlines() if "error:" in ln]
        cli.fail(f"could not parse the arguments{': ' + shorten(why[-1], 80) if why else ''}; see `dendsn simulate --help`")


def prevalidate(ns) -> tuple[list[str], DictConfig]:
    """The overrides to run, after checking every job, and the config composed with hydra.* (for the run
    or sweep dir); for a sweep, the job dirs are named by the keys that differ between the jobs."""
    overrides = list(ns.overrides)
    if not ns.multirun:
        cfg = compose(overrides, return_hydra_config=True)
        validate(cfg)
        return overrides, cfg
    overrides, exclude = check_sweep(overrides)
    if not any(o.startswith("hydra.job.config.override_dirname.exclude_keys=") for o in overrides):
        keys = sorted(set(exclude) | set(sweep.constant_keys(overrides)))
        if keys:
            overrides.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(cli._quoted, keys))}]")
    hydra_only = [o for o in overrides if o.lstrip("+~").startswith("hydra.")]
    return overrides, compose(hydra_only, return_hydra_config=True)


def _task(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = [o for o in hc.overrides.task if not o.startswith("hydra.")]
    try:
        if multirun:
            rundir.lock_dir(run_dir, "hydra.sweep.subdir")
        return simulate(cfg, run_dir, overrides, dict(hc.runtime.choices))
    except Exception as e:
        if os.environ.get("DENDSN_DEBUG") and not isinstance(e, UserError):
            raise
        message, code = cli.describe(e)
        if not multirun:
            cli.fail(message, code)
        (run_dir / "error.txt").write_text(message + "\n")
        print(f"dendsn: job {hc.job.num} failed: {message}", file=sys.stderr)
        return None


def command(args: list[str]) -> None:
    """`dendsn simulate ARGS`: check the overrides (every job of a sweep), claim the run dir, run Hydra."""
    import hydra

    ns = _split_args(args)
    if ns.help:
        print(help_text())
        return
    informational = ns.hydra_help or ns.info or ns.shell_completion
    printing = ns.cfg or ns.resolve or ns.package
    overrides = list(ns.overrides)
    cli.FAILED_JOBS.clear()
    if not informational:
        try:
            overrides, cfg = prevalidate(ns)
            if not printing:
                overrides = cli.claim_dir(overrides, ns.multirun, cfg)
        except UserError as e:       # (claim_dir's hint to resume is train's: a simulation is run again)
            cli.fail(re.sub(r"continue it with: dendsn train resume=.*?, or ", "", str(e)))
    hydra_flags = [a for a in args if a not in ns.overrides]
    sys.argv = ["dendsn simulate", *hydra_flags, *overrides]
    app = hydra.main(config_path="pkg://dendsn_conf", config_name=CONFIG_NAME, version_base="1.3")(_task)
    try:
        app()
    except SystemExit as e:
        cli._drop_refused_run(e.code)
        raise
    if cli.FAILED_JOBS:
        sys.exit(1)


def _root_keys() -> list[tuple[str, str]]:
    """(key, its comment in conf/simulate.yaml (default: value)) for every root key, in the file's order."""
    text = resources.files(config.CONFIG_MODULE).joinpath(f"{CONFIG_NAME}.yaml").read_text()
    out = []
    for line in text.split("hydra:")[0].splitlines():
        m = re.match(r"^([A-Za-z_]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if m and m.group(1) != "defaults" and m.group(2):
            out.append((m.group(1), f"{m.group(3) or ''} (default: {m.group(2)})".strip()))
    return out


def _stimulus_keys() -> list[tuple[str, str]]:
    """(stimulus option, 'key (default), ...') from conf/stimulus/*.yaml."""
    folder = resources.files(config.CONFIG_MODULE).joinpath("stimulus")
    out = []
    for f in sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name):
        keys = [f"{m.group(1)}={m.group(2)}" for m in re.finditer(r"^([a-z]\w*):\s*([^#\s]+)", f.read_text(), re.M)
                if m.group(1) != "dt"]
        out.append((f.name[:-5], ", ".join(keys) or "(amplitude only)"))
    return out


def help_text() -> str:
    """`dendsn simulate --help`."""
    groups = cli._groups()
    defaults = dict(compose([], return_hydra_config=True).hydra.runtime.choices)
    lines = ["usage: dendsn simulate [GROUP=OPTION | KEY=VALUE ...] [-m] [--cfg job] [--help]", "",
             "Drive one layer of neurons with a stimulus, no training: for each amplitude of a sweep, the firing",
             "rate -> an f-I curve (fI.csv, fI.png), and rasters, soma and compartment traces in TensorBoard.",
             "", "config groups (* = default):"]
    for group in ("neuron", "wiring", "stimulus"):
        names = ", ".join(f"{n}*" if defaults.get(group) == n else n for n, _ in groups.get(group, []))
        lines.append(f"  {group}: {names}")
        if group == "wiring":
            lines.append("      the morphology of a dendritic neuron (its default comes with the neuron option)")
    lines += ["", "stimulus keys (stimulus.KEY=VALUE; each amplitude scales the current):"]
    lines += [f"  {name:<9} {keys}" for name, keys in _stimulus_keys()]
    keys = _root_keys()
    width = max(len(k) for k, _ in keys)
    lines += ["", "root keys:"] + [f"  {k:<{width}}  {d}" for k, d in keys]
    lines += ["", "examples:",
              "  dendsn simulate                                         dend_lif, constant current 0..2",
              "  dendsn simulate neuron=lif amplitudes=[0,1,1.5,2,4]",
              "  dendsn simulate neuron=dend_lif wiring=kto1 compartments=[0] stimulus=poisson",
              "  dendsn simulate stimulus=sine stimulus.frequency=20 T=500",
              "  dendsn simulate -m neuron.tau=2,4,8                     one curve per job, fI.png at the sweep root",
              "", "Runs go to outputs/<date>/<time>/ (sweeps to outputs/multirun/); watch them with: tensorboard --logdir outputs"]
    return "\n".join(lines)
