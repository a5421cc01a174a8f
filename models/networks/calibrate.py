"""Data-driven initialisation: scale each layer's synapses so the layer fires at a target rate.

With the usual fan-in initialisation (``nn.Linear``'s U(-1/sqrt(n), 1/sqrt(n))) the synaptic
current of a spiking layer is far below threshold on sparse spike input or on images, so a new
network is silent: surrogate-gradient training first spends epochs waking it up, and local rules
see no postsynaptic spikes at all. `calibrate_rates` fixes the start, one layer after the other
(input side first), in the spirit of LSUV (Mishkin & Matas 2016) and of threshold balancing for
SNNs:

    for every (synapse, neuron) pair l, in order:
        find c > 0 such that   rate_l(c) = mean spikes per neuron and step of l, with W_l, b_l
                               scaled by c (layers below already calibrated), is within
                               [target / (1 + tol), target * (1 + tol)]
        W_l <- c W_l,  b_l <- c b_l     (then the synapse's own ``clamp_()``: bounds, E/I signs, mask)

rate_l is measured on one batch ``x_seq`` [T, B, ...] with the network reset before every pass.
c is found by doubling / halving until the target is bracketed, then bisection in log c (at most
``max_iter`` passes per layer, c within [1e-3, 1e3]). When no c reaches the target (a layer whose
competition makes it scale-free, an input with no spikes), the c whose rate came closest is kept,
and c = 1 (nothing changes) when no c does better than 1.

The search is deterministic: it draws no random numbers (the RNG state is saved and restored around
the passes, so stochastic neurons or encoders do not shift the run's random stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import nn

from ..neurons.base import SpikingModule
from .networks import TimeDistributed


def _inner(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, TimeDistributed) else m


def _is_synapse(m: nn.Module) -> bool:
    return isinstance(_inner(m), (nn.Linear, nn.Conv2d))


def layer_pairs(model: nn.Module) -> list:
    """(synapse, neuron, between) of every spiking layer of a feed-forward net, input side first.

    ``model.layers`` (or the model) must be an nn.Sequential; ``synapse`` is the module that holds
    the weight (an nn.Linear / nn.Conv2d, unwrapped from `TimeDistributed`), ``between`` the modules
    between it and the neuron (competition, dropout). Raises ValueError when there is no pair.
    """
    seq = getattr(model, "layers", model)
    if not isinstance(seq, nn.Sequential):
        raise ValueError(
            f"expected a feed-forward network (an nn.Sequential or a model with .layers), got {type(model).__name__}"
        )
    pairs, synapse, between = [], None, []
    for m in seq.children():
        if _is_synapse(m):
            synapse, between = m, []
        elif isinstance(m, SpikingModule) and (hasattr(m, "v_threshold") or not getattr(m, "spiking", True)):
            if synapse is None:
                raise ValueError(f"neuron {type(m).__name__} has no synapse before it")
            pairs.append((synapse, m, list(between)))
            synapse = None
        elif synapse is not None:
            between.append(m)
    if not pairs:
        raise ValueError("no (synapse, neuron) pair in the network")
    return pairs


@dataclass
class Calibration:
    """What `calibrate_rates` did to one layer."""

    index: int  # 0-based position of the layer, input side first
    scale: float  # c: the factor applied to W and b
    rate_before: float  # spikes per neuron and step at c = 1
    rate_after: float  # ... at the chosen c


@torch.no_grad()
def calibrate_rates(
    model: nn.Module,
    x_seq: torch.Tensor,
    target: float,
    tol: float = 0.25,
    max_iter: int = 24,
    skip: Iterable[int] = (),
) -> list:
    """Scale the synapses of every layer (but those in ``skip``, 0-based) toward ``target``; see the module docstring.

    Returns one `Calibration` per calibrated layer. The model keeps its train/eval mode.
    """
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ValueError(f"target firing rate must be in (0, 1) (got {target!r})")
    if tol <= 0:
        raise ValueError(f"tol must be > 0 (got {tol!r})")
    pairs = layer_pairs(model)
    skip = set(skip)
    was_training = model.training
    model.eval()
    devices = [x_seq.device.index] if x_seq.device.type == "cuda" else []
    results = []
    try:
        with torch.random.fork_rng(devices=devices):
            for i, (synapse, neuron, _) in enumerate(pairs):
                if i in skip:
                    continue
                results.append(_calibrate_layer(model, x_seq, i, _inner(synapse), neuron, target, tol, max_iter))
    finally:
        model.train(was_training)
    return results


def _calibrate_layer(model, x_seq, index, synapse, neuron, target, tol, max_iter) -> Calibration:
    W0 = synapse.weight.detach().clone()
    b0 = None if synapse.bias is None else synapse.bias.detach().clone()
    seen: dict = {}

    clamp = getattr(synapse, "clamp_", None)

    def set_scale(c: float) -> None:
        synapse.weight.copy_(W0 * c)
        if b0 is not None:
            synapse.bias.copy_(b0 * c)
        if callable(clamp):  # bounded synapses stay within [wmin, wmax]
            clamp()

    def rate(c: float) -> float:
        if c not in seen:
            set_scale(c)
            seen[c] = _layer_rate(model, x_seq, neuron)
        return seen[c]

    lo_ok, hi_ok = target / (1.0 + tol), target * (1.0 + tol)
    c, r = 1.0, rate(1.0)
    lo = hi = None  # log2 c with rate below / above the band
    for _ in range(max_iter):
        if lo_ok <= r <= hi_ok:
            break
        if r < lo_ok:
            lo = math.log2(c)
        else:
            hi = math.log2(c)
        if lo is not None and hi is not None:
            nxt = 0.5 * (lo + hi)
        elif lo is not None:
            nxt = lo + 1.0
        else:
            nxt = hi - 1.0
        if not -10.0 <= nxt <= 10.0 or (lo is not None and hi is not None and hi - lo < 1e-3):
            break
        c = 2.0**nxt
        r = rate(c)
    best = min(seen, key=lambda k: (abs(math.log((seen[k] + 1e-6) / target)), k != 1.0))
    if abs(math.log((seen[best] + 1e-6) / target)) >= abs(math.log((seen[1.0] + 1e-6) / target)):
        best = 1.0
    set_scale(best)
    return Calibration(index, best, seen[1.0], seen[best])


def _layer_rate(model: nn.Module, x_seq: torch.Tensor, neuron: nn.Module) -> float:
    """Mean spikes per neuron and step of ``neuron`` in one pass of the whole model over x_seq."""
    total: list = []
    handle = neuron.register_forward_hook(lambda m, i, o: total.append((o.float().sum(), o.numel())))
    try:
        reset = getattr(model, "reset", None)
        if callable(reset):
            reset()
        if getattr(neuron, "step_mode", "m") == "s":
            for t in range(x_seq.shape[0]):
                model(x_seq[t])
        else:
            model(x_seq)
    finally:
        handle.remove()
    s = sum(float(a) for a, _ in total)
    n = sum(b for _, b in total)
    return s / max(n, 1)


def describe(results: list, names: Optional[list] = None) -> str:
    """One line: layer: rate before -> after (x scale), for the run's log."""
    parts = []
    for c in results:
        name = names[c.index] if names and c.index < len(names) else f"layer{c.index + 1}"
        parts.append(f"{name} {c.rate_before:.3f}->{c.rate_after:.3f} (x{c.scale:.3g})")
    return ", ".join(parts)
