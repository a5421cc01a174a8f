"""Setup of a run: the device, the seed, and the parts built from the config.

dataset -> device tensors (train, validation, test), encoder, neuron factory -> network, read-out,
learning rule; `calibrate`: each layer's synapses scaled to a firing rate (`init_rate`)
"""

from __future__ import annotations

import ctypes
import inspect
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from dendsn.networks import TimeDistributed
from dendsn.networks.calibrate import calibrate_rates, describe, layer_pairs
from dendsn.neurons import outer_spiking

from ..config import choice_name
from ..errors import UserError
from ..learning.base import RuleContext
from ..readouts import TET, Counts, EventFirstSpike


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc keep freed memory for reuse (CPU runs). Every batch allocates and frees the
    same large tensors; by default glibc hands blocks of 32 MiB and more (and, after trimming, smaller
    ones) back to the OS, so each batch faults fresh zero pages in again. Raising the mmap and trim
    thresholds keeps them in the heap. A no-op (False) where mallopt is missing (not glibc)."""
    try:
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


def instantiate_group(node, group: str, **kwargs):
    """Hydra's instantiate of a config group's node; any error becomes one `UserError` that names ``group``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{group}: {cause}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


def call_group(factory, group: str):
    """``factory()`` (e.g. a neuron factory's constructor checks); a ValueError/TypeError names ``group``."""
    try:
        return factory()
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


@dataclass
class Parts:
    model: torch.nn.Module
    train: object
    val: object  # the validation split, or None (dataset.val=0)
    test: object
    info: object
    encoder: torch.nn.Module
    rule: object
    layers: list = field(default_factory=list)  # (name, spiking module)
    decoder: object = None  # the read-out (`readouts.Readout`): loss and prediction


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
                f"or a value below {d.stable_coupling_limit():.3g}"
            )


def build(cfg: DictConfig, device: torch.device) -> Parts:
    dataset = instantiate_group(cfg.dataset, "dataset")
    train, val, test, info = dataset.load(device)
    encoder = instantiate_group(cfg.encoder, "encoder").to(device)
    if getattr(encoder, "event_times", False):  # spike times for the event network (spikegd)
        return build_events(cfg, device, (train, val, test, info), encoder)
    shape_of = getattr(encoder, "output_shape", None)  # an encoder that changes the input's shape
    input_shape = list(shape_of(tuple(info.input_shape)) if callable(shape_of) else info.input_shape)
    neuron = instantiate_group(cfg.neuron, "neuron")
    call_group(neuron, "neuron")  # constructor checks (tau > 1 ...) name the neuron group
    network_cfg = OmegaConf.to_container(cfg.network, resolve=True)
    decoder = build_readout(cfg)
    readout = decoder.neuron(instantiate_group(network_cfg.pop("readout"), "network.readout"))
    call_group(readout, "network.readout")
    extra = synapse_argument(cfg, network_cfg)
    try:
        model = instantiate_group(
            network_cfg,
            "network",
            input_shape=input_shape,
            n_classes=info.n_classes,
            neuron=neuron,
            readout=readout,
            **extra,
        ).to(device)
    except UserError as e:
        if tuple(input_shape) == tuple(info.input_shape):
            raise
        raise UserError(
            f"{e} (encoder={choice_name(cfg, 'encoder')} turns each {tuple(info.input_shape)} sample into "
            f"{tuple(input_shape)})"
        ) from None
    check_dendrites(model)
    rule = instantiate_group(cfg.learning, "learning")
    rule.attach(RuleContext(decoder=decoder))
    return Parts(model, train, val, test, info, encoder, rule, spiking_layers(model), decoder)


def synapse_argument(cfg: DictConfig, network_cfg: dict) -> dict:
    """{"synapse": the synapse group's object} when the network takes one; {} without the group."""
    if cfg.get("synapse") is None:  # the synapse group: how each layer connects
        return {}
    synapse = instantiate_group(cfg.synapse, "synapse")
    if takes(network_cfg.get("_target_"), "synapse"):
        return {"synapse": synapse}
    if not getattr(synapse, "plain", True):  # a user's network without the argument: plain only
        raise UserError(
            f"synapse={choice_name(cfg, 'synapse')}: network._target_={network_cfg.get('_target_')} takes "
            "no synapse argument; add `synapse=None` to its constructor (see dendsn.networks.MLP), "
            "or use synapse=plain"
        )
    return {}


def build_events(cfg: DictConfig, device: torch.device, data: tuple, encoder) -> Parts:
    """The event-driven theta network (`dendsn.events.EventMLP`, learning=exact): continuous-time output
    spike times, scored by readout=first_spike as `readouts.EventFirstSpike` (with the rule's gamma)."""
    train, val, test, info = data
    neuron = instantiate_group(cfg.neuron, "neuron")
    call_group(neuron, "neuron")
    if cfg.get("synapse") is not None and not getattr(instantiate_group(cfg.synapse, "synapse"), "plain", True):
        raise UserError(
            f"synapse={choice_name(cfg, 'synapse')} does not apply to the event network (delta-pulse "
            "synapses, one weight matrix per layer); use synapse=plain"
        )
    network_cfg = OmegaConf.to_container(cfg.network, resolve=True)
    network_cfg.pop("readout", None)
    model = instantiate_group(
        network_cfg, "network", input_shape=list(info.input_shape), n_classes=info.n_classes, neuron=neuron
    ).to(device)
    rule = instantiate_group(cfg.learning, "learning")
    first = build_readout(cfg)
    decoder = EventFirstSpike(T=model.T, temperature=first.temperature, **rule.readout_options())
    rule.attach(RuleContext(decoder=decoder))
    return Parts(model, train, val, test, info, encoder, rule, [], decoder)


def takes(target, name: str) -> bool:
    """Does the callable at the import path ``target`` accept the keyword ``name`` (or **kwargs)?"""
    try:
        params = inspect.signature(get_object(str(target))).parameters.values()
    except Exception:  # not importable: instantiate names the problem
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build_readout(cfg: DictConfig):
    """The `readout` group's decoder (`dendsn_cli.readouts`); learning.per_step_loss=true is readout=tet."""
    node = cfg.get("readout")
    decoder = Counts() if node is None else instantiate_group(node, "readout")
    if bool(cfg.learning.get("per_step_loss", False)):
        if type(decoder) not in (Counts, TET):
            raise UserError(
                f"learning.per_step_loss=true is the per-step (TET) loss of the spike-count read-out and "
                f"readout={decoder.name} has its own loss; use readout=tet, or drop learning.per_step_loss"
            )
        decoder = TET()
    return decoder


def weight_module(m: torch.nn.Module) -> torch.nn.Module:
    """The module that holds a synapse's weight (unwrapped from `TimeDistributed`)."""
    return m.module if isinstance(m, TimeDistributed) else m


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
    x, _ = next(parts.train.batches(cfg.batch_size, shuffle=False))
    devices = [x.device.index] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x_seq = parts.encoder(x, cfg.T, time_major=parts.info.time_major)
    try:
        pairs = layer_pairs(parts.model)
    except ValueError:
        return ""  # a user's network without (synapse, neuron) pairs
    last = len(pairs) - 1
    skip = set(parts.rule.calibration_skip())
    results = []
    try:
        results += calibrate_rates(parts.model, x_seq, cfg.init_rate, skip=skip | {last})
        spiking_readout = getattr(pairs[last][1], "spiking", True)  # an LI read-out has no rate to set
        if cfg.init_readout_rate is not None and last not in skip and spiking_readout:
            results += calibrate_rates(parts.model, x_seq, cfg.init_readout_rate, skip=set(range(last)))
    except ValueError as e:
        raise UserError(
            f"init_rate={cfg.init_rate}: {e}; set init_rate=null to keep the plain initialisation"
        ) from None
    if cfg.init_lr_scale and results:
        scales = {p: c.scale for c in results if c.index != last for p in weight_module(pairs[c.index][0]).parameters()}
        parts.rule.scale_lr(scales)
    names = [name for name, _ in parts.layers]
    return describe(results, names) if results else ""


def spiking_layers(model: torch.nn.Module) -> list:
    mods = list(outer_spiking(model))
    names = [f"layer{i + 1}" for i in range(len(mods) - 1)] + ["readout"]
    return list(zip(names, mods))


def named_layer_parameters(model: torch.nn.Module, layers: list) -> dict:
    """'<layer>/<what>' -> parameter, 'what' = weight / bias of the synapse, or the neuron's own
    (e.g. 'layer1/w' of a PLIF, 'layer1/phi'). A synapse and whatever sits between it and its neuron
    (`dendsn.calibrate.layer_pairs`) belong to that neuron's layer; parameters outside every layer keep
    their module path."""
    own = getattr(model, "layer_parameters", None)  # a network that names its own (the event network)
    if callable(own):
        return dict(own())
    name_of = {id(m): name for name, m in layers}
    owner = dict(name_of)
    try:
        for synapse, neuron, between in layer_pairs(model):
            owner.update({id(m): name_of[id(neuron)] for m in (synapse, *between) if id(neuron) in name_of})
    except ValueError:  # not a feed-forward stack: the neurons alone
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
