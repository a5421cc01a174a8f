"""The training loop of `dendsn train` and the evaluation of `dendsn eval`.

    build:    dataset -> device tensors (train, validation, test), encoder, neuron factory -> network,
              learning rule + optimizer; `init_rate`: each layer's synapses scaled to a firing rate
    per epoch: for each batch: encode -> reset state -> rule.train_batch (forward, loss, update)
               evaluate the validation and test splits (inference mode) -> TensorBoard -> checkpoints/last.pt
               (+ best.pt, chosen on validation accuracy, never on test data) -> metrics.json
               after the first epoch: a warning for every silent or saturated layer
    finally:  hparams + final metrics, one summary line

Metrics are summed on the device and read back only every `SYNC_EVERY` batches (progress bar, NaN
check), never once per batch. Ctrl-C / SIGTERM set a flag; the loop stops after the current batch
and saves a checkpoint that holds the position inside the epoch, so `resume=` continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import checkpoint
from . import distributed as dist
from .errors import UserError, shorten
from .learning.base import PhaseClock

log = logging.getLogger("dendsn")   # records go to <run dir>/train.log (conf/hydra/job_logging/dendsn.yaml)

SYNC_EVERY = 20


class Interrupted(Exception):
    """The run was stopped by Ctrl-C / SIGTERM after saving."""


class Diverged(Exception):
    """The loss became NaN or infinite."""


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc keep freed memory for reuse (CPU runs). Every batch allocates and frees the
    same large tensors; by default glibc hands blocks of 32 MiB and more (and, after trimming, smaller
    ones) back to the OS, so each batch faults fresh zero pages in again. Raising the mmap and trim
    thresholds keeps them in the heap. A no-op (False) where mallopt is missing (not glibc)."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but no CUDA GPU is visible to torch; use device=cpu or device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible; use cuda:0..")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _instantiate(node, group: str, **kwargs):
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{group}: {cause}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


def _call(factory, group: str):
    try:
        return factory()
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


@dataclass
class Parts:
    model: torch.nn.Module
    train: object
    val: object          # the validation split, or None (dataset.val=0)
    test: object
    info: object
    encoder: torch.nn.Module
    rule: object
    layers: list = field(default_factory=list)  # (name, spiking module)
    decoder: object = None                      # the read-out (`readouts.Readout`): loss and prediction


def check_dendrites(model: torch.nn.Module) -> None:
    """An unstable dendrite (explicit update growing >= 1x per step) fires whatever its input: refuse it."""
    for m in model.modules():
        d = getattr(m, "dendrite", None)
        if d is None or not hasattr(d, "growth"):
            continue
        rho = d.growth()
        if rho >= 1.0:
            g = d.g.tolist() if d.g is not None else None
            raise UserError(
                f"neuron.coupling_g={g} makes the {type(d.wiring).__name__} dendrite unstable (its potentials grow "
                f"{rho:.2f}x per step whatever the input); use neuron.coupling_g=null (stable for every wiring) "
                f"or a value below {d.stable_coupling_limit():.3g}")


def build(cfg: DictConfig, device: torch.device) -> Parts:
    dataset = _instantiate(cfg.dataset, "dataset")
    train, val, test, info = dataset.load(device)
    encoder = _instantiate(cfg.encoder, "encoder").to(device)
    if getattr(encoder, "event_times", False):              # spike times for the event network (spikegd)
        return _build_events(cfg, device, train, val, test, info, encoder)
    shape_of = getattr(encoder, "output_shape", None)        # an encoder that changes the input's shape
    input_shape = list(shape_of(tuple(info.input_shape)) if callable(shape_of) else info.input_shape)
    neuron = _instantiate(cfg.neuron, "neuron")
    _call(neuron, "neuron")  # constructor checks (tau > 1 ...) name the neuron group
    network_cfg = OmegaConf.to_container(cfg.network, resolve=True)
    decoder = build_readout(cfg)
    readout = decoder.neuron(_instantiate(network_cfg.pop("readout"), "network.readout"))
    _call(readout, "network.readout")
    extra = {}
    if cfg.get("synapse") is not None:                      # the synapse group: how each layer connects
        synapse = _instantiate(cfg.synapse, "synapse")
        if _takes(network_cfg.get("_target_"), "synapse"):
            extra["synapse"] = synapse
        elif not getattr(synapse, "plain", True):           # a user's network without the argument: plain only
            from .config import choice_name

            raise UserError(f"synapse={choice_name(cfg, 'synapse')}: network._target_={network_cfg.get('_target_')} takes "
                            "no synapse argument; add `synapse=None` to its constructor (see dendsn.networks.MLP), "
                            "or use synapse=plain")
    try:
        model = _instantiate(
            network_cfg, "network", input_shape=input_shape, n_classes=info.n_classes,
            neuron=neuron, readout=readout, **extra,
        ).to(device)
    except UserError as e:
        if tuple(input_shape) == tuple(info.input_shape):
            raise
        from .config import choice_name

        raise UserError(f"{e} (encoder={choice_name(cfg, 'encoder')} turns each {tuple(info.input_shape)} sample into "
                        f"{tuple(input_shape)})") from None
    check_dendrites(model)
    rule = _instantiate(cfg.learning, "learning")
    rule.decoder = decoder
    return Parts(model, train, val, test, info, encoder, rule, spiking_layers(model), decoder)


def _build_events(cfg: DictConfig, device: torch.device, train, val, test, info, encoder) -> Parts:
    """The event-driven theta network (`dendsn.events.EventMLP`, learning=exact): continuous-time output
    spike times, scored by readout=first_spike as `readouts.EventFirstSpike` (with the rule's gamma)."""
    from .readouts import EventFirstSpike

    neuron = _instantiate(cfg.neuron, "neuron")
    _call(neuron, "neuron")
    if cfg.get("synapse") is not None and not getattr(_instantiate(cfg.synapse, "synapse"), "plain", True):
        from .config import choice_name

        raise UserError(f"synapse={choice_name(cfg, 'synapse')} does not apply to the event network (delta-pulse "
                        "synapses, one weight matrix per layer); use synapse=plain")
    network_cfg = OmegaConf.to_container(cfg.network, resolve=True)
    network_cfg.pop("readout", None)
    model = _instantiate(network_cfg, "network", input_shape=list(info.input_shape), n_classes=info.n_classes,
                         neuron=neuron).to(device)
    rule = _instantiate(cfg.learning, "learning")
    first = build_readout(cfg)
    decoder = EventFirstSpike(T=model.T, temperature=first.temperature, gamma=getattr(rule, "gamma", 0.0))
    rule.decoder = decoder
    return Parts(model, train, val, test, info, encoder, rule, [], decoder)


def _takes(target, name: str) -> bool:
    """Does the callable at the import path ``target`` accept the keyword ``name`` (or **kwargs)?"""
    import inspect

    from hydra._internal.utils import _locate

    try:
        params = inspect.signature(_locate(str(target))).parameters.values()
    except Exception:                                       # not importable: instantiate names the problem
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build_readout(cfg: DictConfig):
    """The `readout` group's decoder (`dendsn_cli.readouts`); learning.per_step_loss=true is readout=tet."""
    from .readouts import Counts, TET

    node = cfg.get("readout")
    decoder = Counts() if node is None else _instantiate(node, "readout")
    if bool(cfg.learning.get("per_step_loss", False)):
        if type(decoder) not in (Counts, TET):
            raise UserError(f"learning.per_step_loss=true is the per-step (TET) loss of the spike-count read-out and "
                            f"readout={decoder.name} has its own loss; use readout=tet, or drop learning.per_step_loss")
        decoder = TET()
    return decoder


def calibrate(parts: Parts, cfg: DictConfig) -> str:
    """Scale each hidden layer's synapses so it fires at ``cfg.init_rate`` on the first training batch,
    then the read-out's to ``cfg.init_readout_rate`` (`dendsn.calibrate`), input side first; the run's
    random stream is left as it was. Layers the rule keeps at a fixed scale (``rule.calibration_skip``)
    stay as they are. With ``init_lr_scale`` each scaled hidden layer's learning rate is multiplied by
    its factor (`LearningRule.scale_lr`). Returns the one-line description for the log.

    Why: with fan-in initialisation (U(+-1/sqrt(n))) a layer's current on sparse spike input is a few
    percent of the threshold, so a new network is silent and learns nothing for epochs; scaled by c the
    weights reach the threshold, but Adam's steps have a fixed size, so c times larger weights would
    also learn c times slower unless their rate is scaled with them. (Not the read-out's: measured,
    scaling its rate too helps the synthetic task a little and costs 3-4 points on Fashion-MNIST.)"""
    from dendsn.calibrate import _inner, calibrate_rates, describe, layer_pairs

    x, _ = next(parts.train.batches(cfg.batch_size, shuffle=False))
    devices = [x.device.index] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x_seq = parts.encoder(x, cfg.T, time_major=parts.info.time_major)
    try:
        pairs = layer_pairs(parts.model)
    except ValueError:
        return ""                                   # a user's network without (synapse, neuron) pairs
    last = len(pairs) - 1
    skip = set(parts.rule.calibration_skip())
    results = []
    try:
        results += calibrate_rates(parts.model, x_seq, cfg.init_rate, skip=skip | {last})
        spiking_readout = getattr(pairs[last][1], "spiking", True)     # an LI read-out has no rate to set
        if cfg.init_readout_rate is not None and last not in skip and spiking_readout:
            results += calibrate_rates(parts.model, x_seq, cfg.init_readout_rate, skip=set(range(last)))
    except ValueError as e:
        raise UserError(f"init_rate={cfg.init_rate}: {e}; set init_rate=null to keep the plain initialisation") from None
    if cfg.init_lr_scale and results:
        scales = {p: c.scale for c in results if c.index != last for p in _inner(pairs[c.index][0]).parameters()}
        parts.rule.scale_lr(scales)
    names = [name for name, _ in parts.layers]
    return describe(results, names) if results else ""


def spiking_layers(model: torch.nn.Module) -> list:
    from dendsn.neurons import outer_spiking

    mods = list(outer_spiking(model))
    names = [f"layer{i + 1}" for i in range(len(mods) - 1)] + ["readout"]
    return list(zip(names, mods))


class Monitor:
    """Forward hooks on spiking layers during an evaluation: per-neuron spike counts (on the device),
    and, for the first batch only when ``record`` is on, the spikes of ``n_samples`` samples and the
    membrane traces (soma ``v_seq``, dendritic ``v_dend_seq``) of ``n_neurons`` neurons per layer."""

    def __init__(self, layers, n_samples: int = 3, n_neurons: int = 4, events=None):
        self.layers = layers
        self.events = events            # an event network (`dendsn.events.EventMLP`): its own statistics
        self.n_samples, self.n_neurons = n_samples, n_neurons
        self.active = self.record = False
        self.counts: dict = {}
        self.rasters: dict = {}
        self.traces: dict = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers
                        if getattr(m, "spiking", True)]           # not a non-spiking LI read-out

    def _hook(self, name):
        def hook(module, inputs, out):
            if not self.active:
                return
            o = out.detach()
            if o.dim() < 3:                                 # single-step modules: no time axis to report
                return
            flat = o.reshape(o.shape[0], o.shape[1], -1)    # [T, B, N]
            c, n = self.counts.get(name, (0.0, 0))
            self.counts[name] = (c + flat.float().sum((0, 1)), n + flat.shape[0] * flat.shape[1])
            if self.record and name not in self.rasters:
                k = min(self.n_samples, flat.shape[1])
                self.rasters[name] = flat[:, :k].float().cpu()                       # [T, k, N]
                v = getattr(module, "h_seq", None)             # before the reset: it crosses the threshold
                v = v if isinstance(v, torch.Tensor) else getattr(module, "v_seq", None)
                if isinstance(v, torch.Tensor):
                    idx = self._neurons(flat)
                    trace = {"v": v.detach().reshape(v.shape[0], v.shape[1], -1)[:, 0, idx].float().cpu(),
                             "spikes": flat[:, 0, idx].float().cpu(), "neurons": idx.tolist(),
                             "v_threshold": float(getattr(module, "v_threshold", 1.0))}
                    vd = getattr(module, "v_dend_seq", None)
                    if isinstance(vd, torch.Tensor):         # [T, B, S..., K]
                        trace["v_dend"] = vd.detach().reshape(vd.shape[0], vd.shape[1], -1, vd.shape[-1])[:, 0, idx].float().cpu()
                    self.traces[name] = trace
        return hook

    def _neurons(self, flat: torch.Tensor) -> torch.Tensor:
        """The sample neurons of a trace: the most active ones of sample 0 (a silent layer: the first)."""
        counts = flat[:, 0].float().sum(0)
        k = min(self.n_neurons, counts.numel())
        return torch.topk(counts, k).indices.sort().values.cpu() if counts.any() else torch.arange(k)

    def start(self, record: bool = False):
        self.active, self.counts, self.rasters, self.traces = True, {}, {}, {}
        self._record(record)
        if self.events is not None:
            from dendsn.events import EventStats

            self.events.stats = EventStats(record=self.n_samples if record else 0)

    def _record(self, on: bool) -> None:
        """Keep the layers' potential sequences (``store_seq``, the general path) only while recording."""
        self.record = on
        for _, m in self.layers:
            if on and hasattr(m, "store_seq"):
                m.store_seq = True
            elif "store_seq" in vars(m):
                del m.store_seq                              # back to the class default (off)

    def stop_recording(self) -> None:
        if self.record:
            self._record(False)

    def stop(self) -> dict:
        """The mean firing rate of every layer (rate/<layer>) over the evaluation."""
        self.active = False
        self._record(False)
        if self.events is not None and self.events.stats is not None:
            stats, self.events.stats = self.events.stats, None
            if dist.active():
                stats.all_reduce(self.events)
            self.event_stats = stats
            if stats.raster is not None:
                self.rasters["network"] = stats.raster          # continuous-time event raster
            return stats.scalars(self.events)
        if dist.active():                   # every rank counted its shard: the sums over all of them
            self.counts = {name: self._reduced(name) for name, m in self.layers        # the same layers on every
                           if getattr(m, "spiking", True) and name in self.counts}       # rank (each saw a batch)
        return {f"rate/{k}": float(c.sum() / (max(n, 1) * c.numel())) for k, (c, n) in self.counts.items()}

    def _reduced(self, name: str) -> tuple:
        c, n = self.counts[name]
        total = dist.reduce_sum(torch.cat([c.float().flatten(), torch.tensor([float(n)], device=c.device)]))
        return total[:-1].reshape(c.shape), int(total[-1].item())

    def neuron_rates(self) -> dict:
        """layer -> [N] each neuron's mean spikes per step over the evaluation (on the CPU); an event network:
        mean spikes per trial."""
        if self.events is not None and getattr(self, "event_stats", None) is not None:
            return self.event_stats.per_neuron(self.events)
        return {k: (c / max(n, 1)).cpu() for k, (c, n) in self.counts.items()}

    def potentials(self) -> dict:
        out = {}
        for name, m in self.layers:
            for attr in ("v", "v_dend"):
                v = getattr(m, attr, None)
                if isinstance(v, torch.Tensor):
                    out[f"{name}/{attr}"] = v.detach()
        return out


def _weights_finite(model: torch.nn.Module) -> bool:
    """One host sync: are all parameters finite? (NaN weights silence spikes but keep the loss finite.)"""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _predict(parts: Parts, out: torch.Tensor) -> torch.Tensor:
    """[B] the read-out's predictions (`readouts.Readout.predict`; most spikes without a read-out)."""
    return parts.decoder.predict(out) if parts.decoder is not None else out.sum(0).argmax(-1)


def _correct(parts: Parts, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (_predict(parts, out) == y).sum()


def _tallies(decoder) -> tuple:
    """(the read-out's own per-sample tally, e.g. acc_ordinary of the event network, and its names), or (None, ())."""
    tally = getattr(decoder, "tally", None)
    return tally, (tuple(getattr(decoder, "tally_names", ())) if tally is not None else ())


def evaluate(parts: Parts, cfg, split=None, monitor: Optional[Monitor] = None, record: bool = False,
             confusion: Optional[torch.Tensor] = None, extra: Optional[dict] = None) -> tuple[float, float]:
    """(loss, accuracy) on ``split`` (default: the test split) in inference mode. With a ``monitor``, its
    hooks count spikes (and with ``record`` keep rasters / traces of the first batch); ``confusion``
    [C, C] (true, predicted) is incremented on the device. ``extra`` receives the read-out's own tallies
    per sample (`tally`, e.g. acc_ordinary of the event network)."""
    model, rule = parts.model, parts.rule
    split = parts.test if split is None else split
    model.eval()
    parts.encoder.eval()
    tally, names = _tallies(parts.decoder)
    sums = torch.zeros(2 + len(names), device=split.y.device)
    if monitor:
        monitor.start(record)
    with torch.inference_mode():
        for x, y in split.batches(cfg.batch_size, shuffle=False):
            x, y = dist.part(x, y)                           # under torchrun: this rank's part of the batch
            if y.shape[0] == 0:
                continue
            model.reset()
            loss, out = rule.eval_batch(model, parts.encoder(x, cfg.T, time_major=parts.info.time_major), y)
            sums[0] += loss.float() * y.shape[0]
            sums[1] += _correct(parts, out, y)
            if names:
                sums[2:] += tally(out, y)
            if monitor is not None:
                monitor.stop_recording()                     # traces and rasters of the first batch only
            if confusion is not None:
                C = confusion.shape[0]
                pred = _predict(parts, out)
                confusion += torch.bincount(y * C + pred, minlength=C * C).reshape(C, C).to(confusion.device)
    if confusion is not None and dist.active():
        confusion.copy_(dist.reduce_sum(confusion))
    loss_sum, correct, *tallies = dist.reduce_sum(sums).tolist()
    n = len(split)
    if extra is not None:
        extra.update({k: v / n for k, v in zip(names, tallies)})
    return loss_sum / n, correct / n


def _duration(seconds):
    """'2.31s' from a second up, '4.12ms' below: a short phase never prints as 0.00s."""
    return f"{seconds:.2f}s" if seconds >= 1 else f"{seconds * 1000:.3g}ms"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class StopFlag:
    """Ctrl-C / SIGTERM / SIGHUP ask the run to stop after the current batch; a second Ctrl-C forces it
    (KeyboardInterrupt). One flag per process (`STOP`): the CLI enters it before Hydra starts, so a
    signal while data loads or the model is built is remembered too, and `train` enters it again
    (re-entrant; handlers are installed once and restored when the outermost `with` ends)."""

    def __init__(self):
        self.requested = False
        self.immediate = False     # a sweep whose jobs run in other processes: the first Ctrl-C stops it at once
        self.saved = {}
        self.depth = 0

    def __enter__(self):
        if self.depth == 0:
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):   # SIGHUP: a closed terminal
                if sig is None:
                    continue
                try:
                    self.saved[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not the main thread (e.g. a launcher thread)
                    pass
        self.depth += 1
        return self

    def _handler(self, signum, frame):
        if self.immediate or (self.requested and signum == signal.SIGINT):
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            for sig, h in self.saved.items():
                signal.signal(sig, h)
            self.saved = {}


STOP = StopFlag()


HPARAM_SKIP = ("hydra", "resume", "ckpt", "progress", "profile", "device")


def hparams_of(cfg: DictConfig, choices: dict, overrides: list) -> tuple[dict, tuple]:
    """The hyperparameters a sweep compares: every group choice, the seed, and each key the user set or
    swept on the command line (its composed value, with its own type: bool, int, float or str; lists
    as text), and the names of those set on the command line. Not the 60-odd keys that stay at their
    defaults: the HParams tab shows what varied."""
    flat: dict = {k: str(v) for k, v in sorted(choices.items())
                  if v is not None and not k.startswith(("hydra", "logger"))}
    flat["seed"] = int(cfg.seed)
    given = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if not key or key.startswith(HPARAM_SKIP):
            continue
        if key in choices:
            given.append(key)
            continue
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, (DictConfig,)) or value is None:
            continue
        if not isinstance(value, (bool, int, float, str)):
            value = str(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
        flat[key] = value
        given.append(key)
    return flat, tuple(given)


def named_layer_parameters(model: torch.nn.Module, layers: list) -> dict:
    """'<layer>/<what>' -> parameter, 'what' = weight / bias of the synapse, or the neuron's own
    (e.g. 'layer1/w' of a PLIF, 'layer1/phi'). A synapse and whatever sits between it and its neuron
    (`dendsn.calibrate.layer_pairs`) belong to that neuron's layer; parameters outside every layer keep
    their module path."""
    from dendsn.calibrate import layer_pairs

    own = getattr(model, "layer_parameters", None)          # a network that names its own (the event network)
    if callable(own):
        return dict(own())
    name_of = {id(m): name for name, m in layers}
    owner = dict(name_of)
    try:
        for synapse, neuron, between in layer_pairs(model):
            owner.update({id(m): name_of[id(neuron)] for m in (synapse, *between) if id(neuron) in name_of})
    except ValueError:                                  # not a feed-forward stack: the neurons alone
        pass
    out, seen = {}, set()
    for top in model.modules():
        if id(top) not in owner:
            continue
        for mod in top.modules():
            for p_name, p in mod.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                key = f"{owner[id(top)]}/{p_name}"
                while key in out:
                    key += "_"
                out[key] = p
                seen.add(id(p))
    out.update({n: p for n, p in model.named_parameters() if id(p) not in seen})
    return out


def grad_norms(named: dict) -> dict:
    """grad_norm/<layer>: the L2 norm of the gradients of each layer's parameters (after backward)."""
    by_layer: dict = {}
    for key, p in named.items():
        if p.grad is not None:
            by_layer.setdefault(key.split("/", 1)[0], []).append(p.grad.detach().float().pow(2).sum())
    return {f"grad_norm/{k}": torch.stack(v).sum().sqrt() for k, v in by_layer.items()}


def rate_warnings(rates: dict, silent: float = 1e-4, saturated: float = 0.9) -> list:
    """One line per layer whose mean rate is below ``silent`` or above ``saturated``, with what to try."""
    out = []
    for tag, r in rates.items():
        if not tag.startswith("rate/"):
            continue
        name = tag.split("/", 1)[1]
        if r < silent:
            out.append(f"{name} is silent after the first epoch (mean rate {r:.2g} spikes/step): its input never "
                       f"reaches the threshold; try init_rate=0.05, a larger optim.lr, or a lower neuron.v_threshold")
        elif r > saturated:
            out.append(f"{name} is saturated after the first epoch (mean rate {r:.2f} spikes/step): it fires almost "
                       f"every step and passes no information; try a smaller init_rate, optim.lr or a higher neuron.v_threshold")
    return out


def train(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None = None) -> dict:
    """Train per ``cfg``, writing checkpoints, TensorBoard events and metrics.json into ``run_dir``. Under
    torchrun the ranks after 0 train silently (rank 0 prints and writes)."""
    with STOP:
        if dist.is_main():
            return _train(cfg, run_dir, overrides, choices, STOP)
        import contextlib

        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            return _train(cfg, run_dir, overrides, choices, STOP)


class RankLogger:
    """The logger of a rank after 0 under torchrun: writes nothing, but draws figures when rank 0 does (the
    evaluations that record them reduce the same tensors on every rank)."""

    def __init__(self, logger):
        self.logger = logger
        self.log_every_n_steps = getattr(logger, "log_every_n_steps", SYNC_EVERY)

    def wants_figures(self, epoch: int, last: bool) -> bool:
        return self.logger.wants_figures(epoch, last)

    def __getattr__(self, name):
        return lambda *a, **k: None


def _train(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None, stop: StopFlag) -> dict:
    t_start = time.perf_counter()
    device = dist.device_for(select_device(cfg.device))
    main = dist.is_main()
    if device.type == "cpu":
        tune_cpu_allocator()
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    model, rule, train_split, val_split = parts.model, parts.rule, parts.train, parts.val
    if dist.active():
        from .config import choice_name
        from .learning.local import LocalRule

        if isinstance(rule, LocalRule):
            raise UserError(f"learning={choice_name(cfg, 'learning')} updates weights by a local rule, which torchrun's "
                            "processes would each apply to their own shard (the weights would drift apart): train it in "
                            "one process, or use a gradient rule (learning=bptt or exact) under torchrun")
        if cfg.batch_size < dist.world_size():
            raise UserError(f"batch_size={cfg.batch_size} is the global batch, split over {dist.world_size()} processes: "
                            f"it must be at least {dist.world_size()}")
        for name, split in (("validation", val_split), ("test", parts.test)):
            if split is not None and len(split) < dist.world_size():
                raise UserError(f"the {name} split has {len(split)} samples, fewer than the {dist.world_size()} processes "
                                "that evaluate it in parts; use more samples (dataset.val, dataset.n_test) or fewer processes")
    steps = math.ceil(len(train_split) / cfg.batch_size)
    optim_factory = _instantiate(cfg.optim, "optim")
    rule.lr_decay_steps = cfg.get("lr_decay_epochs", 100.0) * steps     # lr_schedule=exp
    rule.setup(model, optim_factory, cfg.epochs * steps, cfg.lr_schedule)
    n_params = sum(p.numel() for p in model.parameters())
    init_line = ""
    event_based = bool(getattr(model, "event_based", False))
    if cfg.init_rate is not None and not cfg.resume and not event_based:   # an event network starts as the paper's
        init_line = calibrate(parts, cfg)
    autocast = None
    if cfg.amp != "none":
        if device.type == "cuda":
            autocast = torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
        else:
            print(f"dendsn: amp={cfg.amp} needs CUDA; running in float32 on {device}", file=sys.stderr)

    ckpt_dir = run_dir / "checkpoints"
    start_epoch, start_batch, history = 0, 0, []
    best: dict = {"epoch": 0}
    partial = None
    if cfg.resume:
        path = checkpoint.find(cfg.resume, "resume")
        ck = checkpoint.load(path, "resume")
        saved_bs = ck.get("batch_size")
        if ck["batch"] and isinstance(saved_bs, int) and saved_bs != cfg.batch_size:
            raise UserError(f"resume={shorten(path)}: the run stopped inside epoch {ck['epoch'] + 1}, after {ck['batch']} "
                            f"batches of batch_size={saved_bs}; with batch_size={cfg.batch_size} that position would skip "
                            f"or repeat samples: resume with batch_size={saved_bs} (a new batch size can start with a new run)")
        checkpoint.load_model_state(model, ck["model"], path, "resume")
        try:
            changed = rule.load_state_dict(ck["rule"]) or []
        except UserError as e:
            raise UserError(f"resume={shorten(path)}: {e}") from None
        if changed:
            print(f"dendsn: resume applies {', '.join(changed)}", file=sys.stderr)
            log.info("resume applies %s", ", ".join(changed))
        if rule.scheduler is not None and hasattr(rule.scheduler, "T_max"):
            rule.scheduler.T_max = max(1, cfg.epochs * steps)  # resumed with more epochs: stretch the schedule
        checkpoint.set_rng_state(ck["rng"])
        start_epoch, start_batch = ck["epoch"], ck["batch"]
        history, best, partial = ck["history"], ck["best"], ck.get("progress")
        if start_epoch >= cfg.epochs:
            raise UserError(f"resume={cfg.resume}: that run already finished {start_epoch} epochs; raise epochs= to train further")
        print(f"dendsn: resuming {path} at epoch {start_epoch + 1}, batch {start_batch}", file=sys.stderr)
        log.info("resuming %s at epoch %d, batch %d", path, start_epoch + 1, start_batch)
    else:
        log.info("training on %s: %d parameters, %d train / %d validation / %d test samples, %d batches per epoch",
                 device, n_params, len(train_split), len(val_split) if val_split else 0, len(parts.test), steps)
    shown = _shown(run_dir)
    print(f"dendsn: {shown} | {device} | {n_params:,} parameters | "
          f"{len(train_split)} train / {len(val_split) if val_split else 0} val / {len(parts.test)} test | "
          f"watch: tensorboard --logdir {shown}", file=sys.stderr)
    if init_line:
        print(f"dendsn: init_rate={cfg.init_rate}: {init_line}", file=sys.stderr)
        log.info("init_rate=%s: %s", cfg.init_rate, init_line)

    clock = rule.clock = PhaseClock(device) if cfg.profile else None   # (a plug-in rule may lack the attribute)
    logger = _instantiate(cfg.logger, "logger")
    if not main:
        logger = RankLogger(logger)              # under torchrun only rank 0 writes TensorBoard
    logger.open(str(run_dir), purge_step=start_epoch + 1 if cfg.resume else None)
    if not cfg.resume:
        logger.config(OmegaConf.to_yaml(cfg, resolve=True), overrides)
    monitor = Monitor(parts.layers, events=model if event_based else None)
    tally, tally_names = _tallies(parts.decoder)
    named_params = named_layer_parameters(model, parts.layers)
    log_every = max(1, int(getattr(logger, "log_every_n_steps", SYNC_EVERY) or SYNC_EVERY))
    every = math.gcd(SYNC_EVERY, log_every)
    times = {"data": 0.0, "train_step": 0.0, "evaluate": 0.0, "logging": 0.0, "checkpoint": 0.0}
    status, samples_seen, train_time = "running", 0, 0.0
    metrics_path = run_dir / "metrics.json"
    early = cfg.early_stop
    select_on = "val_acc" if val_split is not None else "train_acc"
    stale = 0 if not history else len(history) - int(best.get("epoch", 0))
    early_stopped = False
    n_classes = parts.info.n_classes

    save = checkpoint.save_atomic if main else (lambda *a, **k: None)   # rank 0 writes the files
    write_json = _write_json if main else (lambda *a, **k: None)
    trainer = dist.wrap(model, device) or model          # DistributedDataParallel under torchrun
    if dist.rank() > 0:                                  # noise inside a step (Poisson codes, dropout): each
        torch.manual_seed(cfg.seed * 1_000_003 + 7919 * dist.rank())   # process draws its own, rank 0 the run's

    def make_ckpt(epoch, batch, progress):
        return {
            "format": checkpoint.FORMAT, "overrides": overrides, "model": model.state_dict(),
            "rule": rule.state_dict(), "epoch": epoch, "batch": batch, "batch_size": cfg.batch_size, "progress": progress,
            "history": history, "best": best, "rng": checkpoint.rng_state(),
        }

    def summary(status_):
        last = history[-1] if history else {}
        return {
            "status": status_, "epochs_completed": len(history), "final": last,
            "best": best, "selected_on": select_on, "early_stopped": early_stopped,
            "time_s": round(time.perf_counter() - t_start, 2),
            "train_samples_per_s": round(samples_seen / train_time, 1) if train_time else None,
            "device": str(device), "params": n_params, "history": history,
        }

    try:
        from tqdm import tqdm

        if dist.agree(stop.requested, device):
            raise Interrupted("before the first batch")
        for epoch in range(start_epoch, cfg.epochs):
            gen = torch.Generator(device=train_split.x.device).manual_seed(cfg.seed * 1_000_003 + epoch)
            model.train()
            parts.encoder.train()
            sums = torch.zeros(3 + len(tally_names), device=device)  # loss * B, correct, samples, the read-out's tallies
            first = start_batch if epoch == start_epoch else 0
            if first and partial is not None and main:     # (the saved sums are already over all ranks)
                sums += torch.tensor(partial, device=device)
            sized = _terminal_sized()          # False: a pipe, or a terminal that reports 0 x 0
            bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not cfg.progress, leave=False, file=sys.stderr, dynamic_ncols=sized,
                       ncols=None if sized else 80, nrows=None if sized else 20, mininterval=0.2)
            t_epoch, n_epoch, t_train = time.perf_counter(), 0, 0.0
            t0 = time.perf_counter()
            for b, (x, y) in enumerate(train_split.batches(cfg.batch_size, shuffle=True, generator=gen)):
                if b < first:
                    continue
                x, y, counted, rule.loss_scale = dist.shard(x, y)    # under torchrun: this rank's part
                x_seq = parts.encoder(x, cfg.T, time_major=parts.info.time_major)
                if clock is not None:
                    clock.start()                 # on CUDA: waits for the data's kernels first
                t1 = time.perf_counter()
                model.reset()
                loss, out = rule.train_batch(trainer, x_seq, y, autocast)
                if counted:
                    sums[0] += loss.float() * y.shape[0]
                    sums[1] += _correct(parts, out, y)
                    sums[2] += y.shape[0]
                    if tally_names:
                        sums[3:] += tally(out, y)
                n_epoch += counted
                if clock is not None:
                    clock.mark("other")           # after the rule's own phases; on CUDA: waits for the step
                t2 = time.perf_counter()
                times["data"] += t1 - t0
                times["train_step"] += t2 - t1
                t_train += t2 - t0
                bar.update(1)
                if b == first or (b + 1) % every == 0 or b + 1 == steps:
                    if (b + 1) % log_every == 0:  # the loss of this batch and each layer's gradient norm
                        norms = grad_norms(named_params)
                        values = torch.stack([loss.detach().float(), *norms.values()]).tolist()
                        step = epoch * steps + b + 1
                        logger.scalars({"train/batch_loss": values[0], **dict(zip(norms, values[1:]))}, step)
                    loss_sum, correct, n, *_ = dist.reduce_sum(sums).tolist()
                    if not math.isfinite(loss_sum):
                        raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}, batch {b + 1}")
                    if not _weights_finite(model):
                        raise Diverged(f"weights became nan/inf at epoch {epoch + 1}, batch {b + 1}")
                    bar.set_postfix({"loss": f"{loss_sum / n:.3f}", "acc": f"{correct / n:.3f}",
                                     "samples/s": f"{n_epoch * dist.world_size() / max(t_train, 1e-9):.0f}"},
                                    refresh=b == first)
                t0 = time.perf_counter()
                times["logging"] += t0 - t2
                if dist.agree(stop.requested, device):       # under torchrun every rank stops at the same batch
                    t_batch = time.perf_counter()
                    save(make_ckpt(epoch, b + 1, dist.reduce_sum(sums).tolist()), ckpt_dir / "last.pt")
                    samples_seen += dist.total(n_epoch, device)
                    train_time += t_batch - t_epoch
                    bar.close()
                    raise Interrupted(f"epoch {epoch + 1}, batch {b + 1}/{steps}")
            bar.close()
            lr_now = rule.lr()                    # the rate the epoch's last step applied (before epoch_end)
            epoch_train_s = time.perf_counter() - t_epoch
            train_time += epoch_train_s
            n_epoch = dist.total(n_epoch, device)          # under torchrun: every rank's samples
            samples_seen += n_epoch
            rule.epoch_end()
            rule_scalars = rule.epoch_scalars()
            logger.scalars(rule_scalars, epoch + 1)
            logger.images(rule.epoch_images(), epoch + 1)
            loss_sum, correct, n, *train_tallies = dist.reduce_sum(sums).tolist()
            if not math.isfinite(loss_sum):
                raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}")
            if not _weights_finite(model):
                raise Diverged(f"weights became nan/inf at epoch {epoch + 1}")
            last_epoch = epoch + 1 == cfg.epochs
            figures = logger.wants_figures(epoch + 1, last_epoch)
            t0 = time.perf_counter()
            confusion = torch.zeros(n_classes, n_classes, dtype=torch.long, device=device) if figures else None
            row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n}
            row.update({f"train_{k}": v / n for k, v in zip(tally_names, train_tallies)})
            watched = val_split if val_split is not None else parts.test   # rates, pictures, confusion
            extra: dict = {}
            loss_acc = evaluate(parts, cfg, watched, monitor, record=figures, confusion=confusion, extra=extra)
            rates, neuron_rates = monitor.stop(), monitor.neuron_rates()
            if val_split is not None:
                row["val_loss"], row["val_acc"] = loss_acc
                row.update({f"val_{k}": v for k, v in extra.items()})
                extra = {}
                loss_acc = evaluate(parts, cfg, parts.test, extra=extra)
            row["test_loss"], row["test_acc"] = loss_acc
            row.update({f"test_{k}": v for k, v in extra.items()})
            row["lr"] = lr_now
            times["evaluate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            history.append(row)
            potentials = monitor.potentials()
            if dist.agree(not all(bool(torch.isfinite(v).all()) for v in potentials.values()), device):
                raise Diverged(f"membrane potentials became nan/inf at epoch {epoch + 1}")
            scalars = {"train/loss": row["train_loss"], "train/acc": row["train_acc"],
                       "test/loss": row["test_loss"], "test/acc": row["test_acc"], "lr": lr_now,
                       "perf/samples_per_s": n_epoch / max(epoch_train_s, 1e-9), **rates}
            if "val_acc" in row:
                scalars.update({"val/loss": row["val_loss"], "val/acc": row["val_acc"]})
            for k in tally_names:                                    # e.g. test/acc_ordinary
                scalars.update({f"{split}/{k}": row[f"{split}_{k}"] for split in ("train", "val", "test")
                                if f"{split}_{k}" in row})
            scalars.update({f"never_fired/{k}": float((r == 0).float().mean()) for k, r in neuron_rates.items()})
            logger.scalars(scalars, epoch + 1)
            logger.epoch_tensors(named_params, potentials, epoch + 1)
            if figures:
                logger.figures(monitor.rasters, monitor.traces, neuron_rates,
                               confusion.cpu() if confusion is not None else None,
                               "validation" if val_split is not None else "test", epoch + 1)
            times["logging"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            previous = best.get(select_on, -1.0)
            is_best = row[select_on] > previous
            stale = 0 if row[select_on] > previous + early.min_delta else stale + 1
            if is_best:
                best = {"epoch": epoch + 1, **{k: row[k] for k in ("val_acc", "val_loss", "test_acc", "test_loss",
                                                                    "train_acc") if k in row}}
            ck = make_ckpt(epoch + 1, 0, None)
            save(ck, ckpt_dir / "last.pt")
            if is_best:
                save(ck, ckpt_dir / "best.pt")
            write_json(metrics_path, summary("running"))
            times["checkpoint"] += time.perf_counter() - t0
            val_txt = f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}" if "val_acc" in row else ""
            line = (f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"
                    f"{val_txt} | test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}")
            if "test_acc_ordinary" in row:
                line += f" ({row['test_acc_ordinary']:.2%} by ordinary spikes alone)"
            tqdm.write(line, file=sys.stderr)
            log.info(line)
            exhausted = rates.get("events/exhausted", 0.0) + rule_scalars.get("events/train_exhausted", 0.0)
            if exhausted:
                warning = (f"{int(exhausted)} trials of epoch {epoch + 1} ran out of network.K={model.K} events before "
                           f"the trial end T={model.T:g}: their later spikes are missing (events/exhausted in "
                           f"TensorBoard); raise network.K")
                tqdm.write(f"dendsn: warning: {warning}", file=sys.stderr)
                log.warning(warning)
            if epoch == 0:
                for warning in rate_warnings(rates):
                    tqdm.write(f"dendsn: warning: {warning}", file=sys.stderr)
                    log.warning(warning)
            if dist.agree(stop.requested, device) and epoch + 1 < cfg.epochs:   # after the last epoch: complete
                raise Interrupted(f"after epoch {epoch + 1}")
            if early.patience is not None and stale >= early.patience and epoch + 1 < cfg.epochs:
                early_stopped = True
                msg = (f"early stop after epoch {epoch + 1}: {select_on.replace('_', ' ')} has not improved for "
                       f"{early.patience} epoch{'s' if early.patience != 1 else ''} (best at epoch {best['epoch']})")
                tqdm.write(f"dendsn: {msg}", file=sys.stderr)
                log.info(msg)
                break
        status = "completed"
    except (Interrupted, KeyboardInterrupt) as e:   # KeyboardInterrupt: a second Ctrl-C stopped the run at once
        forced = isinstance(e, KeyboardInterrupt)
        status = "interrupted"
        write_json(metrics_path, summary(status))
        logger.close()
        last = ckpt_dir / "last.pt"
        what = "interrupted at once (a second Ctrl-C)" if forced else f"interrupted ({e})"
        log.warning("%s; last checkpoint: %s", what, last if last.exists() else "none")
        if not last.exists():
            lost = "before the first checkpoint: nothing was saved" if forced else ": nothing was trained or saved"
            raise UserError(f"{what}{' ' if forced else ''}{lost}; run the same command again") from None
        kept = f"the last checkpoint ({last}) is kept" if forced else f"checkpoint saved at {last}"
        raise UserError(f"{what}; {kept}; continue with: dendsn train resume={run_dir}") from None
    except Diverged as e:
        status = "diverged"
        write_json(metrics_path, summary(status))
        logger.close()
        kept = f"the last good checkpoint is kept at {ckpt_dir / 'last.pt'}" if (ckpt_dir / "last.pt").exists() else "no epoch finished, so no checkpoint was written"
        log.error("%s; stopped (%s)", e, kept)
        raise UserError(f"{e}; stopped ({kept}); lower optim.lr or set learning.grad_clip") from None
    except BaseException:
        status = "failed"                      # whatever else ends the run: metrics.json says so
        write_json(metrics_path, summary(status))
        logger.close()
        raise
    finally:
        for h in monitor.handles:
            h.remove()

    result = summary(status)
    last = history[-1]
    metrics = {"hparam/test_acc": best.get("test_acc", last["test_acc"]), "hparam/final_test_acc": last["test_acc"],
               "hparam/test_loss": best.get("test_loss", last["test_loss"])}
    if "val_acc" in last:
        metrics.update({"hparam/val_acc": best["val_acc"], "hparam/val_loss": best["val_loss"]})
    hp, given = hparams_of(cfg, choices or {}, overrides)
    logger.hparams(hp, metrics, given)
    logger.close()
    write_json(metrics_path, result)
    if cfg.profile:
        total = sum(times.values())
        parts_txt = ", ".join(f"{k} {_duration(v)} ({v / total:.0%})" for k, v in times.items())
        phases_txt = ", ".join(f"{k} {_duration(v)}" for k, v in clock.times.items())
        print(f"profile: {parts_txt} | train_step = {phases_txt}", file=sys.stderr)
    sps = result["train_samples_per_s"]
    n_ep = len(history)
    chosen = (f"best val acc {best['val_acc']:.2%} @ epoch {best['epoch']}, test acc there {best['test_acc']:.2%}"
              if "val_acc" in best else f"best train acc {best.get('train_acc', 0):.2%} @ epoch {best['epoch']}, "
              f"test acc there {best.get('test_acc', 0):.2%}")
    log.info("%s: %d epochs in %.1fs, test acc %.4f (%s)", status, n_ep, result["time_s"], last["test_acc"], chosen)
    print(f"dendsn: {n_ep} epoch{'s' if n_ep != 1 else ''} in {result['time_s']:.1f}s | test acc {last['test_acc']:.2%} "
          f"({chosen}) | {sps or 0:.0f} train samples/s | {run_dir}")
    return result


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (as a user typed it), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _terminal_sized() -> bool:
    """Does stderr's terminal report a size? Not on a pipe, nor on a terminal that says 0 columns or rows
    (some CI consoles and serial lines): tqdm then gets a fixed 80 x 20 (with 0 rows it draws nothing)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return size.columns > 0 and size.lines > 0


def evaluate_checkpoint(cfg: DictConfig, path: Path, ck: dict) -> dict:
    """Build the model of ``cfg``, load ``ck``'s weights, and evaluate on the test split."""
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    checkpoint.load_model_state(parts.model, ck["model"], path, "ckpt")
    loss, acc = evaluate(parts, cfg)
    return {"test_loss": loss, "test_acc": acc, "n_test": len(parts.test), "epoch": ck.get("epoch")}
