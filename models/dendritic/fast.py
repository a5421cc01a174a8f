"""The dendritic neuron's fast paths: the soma's drive for all T steps straight from the synaptic currents.

The soma of a dendritic neuron needs only a[t] = sum_k phi_k v_k[t] (voltage-difference forward, or
the activation forward with the identity), not the [T, B, S, K] compartment potentials. The
reference computes every compartment for every step (`dendrite.Dendrite.multi_step`, then
`dendritic.soma.soma_terms`); `drive_at_once` computes the same drive in one of three ways:

* passive dendrite: a = Ell @ (x @ q) + v_rest Phi whenever `dendrite.readout_factors` finds a
  rank-1 read-out (on CPU a leaky recurrence instead of Ell when Ell is geometric): one pass
  over x instead of forming all K compartments for all T steps; the compartment state after the
  last step is left to the neuron to compute if it is read;
* active, segregated compartments: `kernels.compartments.active_scan`, the leaky recurrence and
  a = sum_k phi_k (v_p + f(v_p))_k step by step in one autograd node (no [T, ..., K] temporaries);
* active, coupled compartments (inherently sequential): `dendrite.Dendrite.loop_readout`, the step
  loop in one autograd node.

Parameters must be fixed (learnable phi, g or strength take the reference path while grads are
on). The soma's input gain is folded in: u' = input_gain a + u'(0), returned as (u' / gain, gain)
so that a scale the read-out leaves over is applied inside the soma kernel. The terms depend only
on the parameters and T, so they are kept per neuron in `CACHE` under a key of the parameters'
storage and version (a changed parameter recomputes them). tests/test_fast_paths.py checks every
path against the reference.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import nn

from ..kernels import compartments as fused_compartments
from . import compartments, dendrite

CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()  # neuron -> (key, terms)


def drive_at_once(neuron: nn.Module, x: torch.Tensor, v_p0: Optional[torch.Tensor]):
    """(alpha', u'/gain, gain, state) of the soma of ``neuron`` (a `DendriticNeuron`) for synaptic currents
    x [T, B, S..., K_in] from the passive state v_p0, or None where no fast path applies. ``state`` is the
    compartment state after the last step, (v_p, v), or None when the neuron is left to compute it."""
    d = neuron.dendrite
    comp, g = d.compartment, d.g
    if (
        neuron.store_seq
        or d.method == "loop"
        or (neuron.forward_mode == "activation" and neuron.forward_activation != "identity")
    ):
        return None
    if comp.linear:
        mode = "readout"
    elif isinstance(comp, compartments.Active) and comp.activation != "none":
        mode = "active" if d.path() == "segregated" else "loop"
    else:
        return None
    if torch.is_grad_enabled() and (
        neuron.phi.requires_grad
        or (g is not None and g.requires_grad)
        or (mode != "readout" and comp.strength.requires_grad)
    ):
        return None
    alpha0, u0 = neuron.leak_and_drive(0.0)
    if isinstance(alpha0, torch.Tensor) or isinstance(u0, torch.Tensor):
        return None
    T = x.shape[0]
    key = (
        mode,
        T,
        x.dtype,
        x.device,
        repr(comp),
        alpha0,
        u0,
        neuron.input_gain,
        neuron.forward_mode,
        neuron.phi.data_ptr(),
        neuron.phi._version,
        None if g is None else (g.data_ptr(), g._version),
        (comp.strength.data_ptr(), comp.strength._version) if mode != "readout" else None,
    )
    cached = CACHE.get(neuron)
    if cached is None or cached[0] != key:
        cached = (key, readout_terms(neuron, T, x, alpha0, u0, mode))
        CACHE[neuron] = cached
    terms, alpha, const = cached[1]
    if terms is None:
        return None
    gain = 1.0
    if mode == "active":  # segregated: x [T, B, S..., K]
        v_rest = comp.v_rest
        w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
        a, gain_d = comp.terms()
        u, w = fused_compartments.active_scan(
            x, w0, a, gain_d, *terms, comp.activation, comp.beta, comp.theta_d - v_rest
        )
        v_p = w + v_rest if v_rest != 0.0 else w
        state = (v_p, comp.potential(v_p))
    elif mode == "loop":
        u, v_p = d.loop_readout(x, terms, v_p0)
        state = (v_p, comp.potential(v_p))
    else:
        w0 = None
        if v_p0 is not None:
            w0 = v_p0 - comp.v_rest if comp.v_rest != 0.0 else v_p0
        u, gain = d.readout(x, terms, w0, dim=2)  # u' = gain * u [T, B, S...]
        state = None
    if const != 0.0:
        u = u + const / gain
    return alpha, u, gain, state


def cached_terms(neuron: nn.Module):
    """The (terms, alpha', constant drive) `drive_at_once` last used for ``neuron``, or None."""
    cached = CACHE.get(neuron)
    return None if cached is None else cached[1]


def readout_terms(neuron: nn.Module, T: int, like: torch.Tensor, alpha0: float, u0: float, mode: str):
    """(terms, alpha', constant drive) for `drive_at_once`; terms None when it does not apply.
    readout: the rank-1 factors (Ell, q, q as floats, m0) cast like ``like``;  active: (c, c * strength)
    as floats when uniform;  loop: c [K]. (c = input_gain * phi on the output compartments.)"""
    d = neuron.dendrite
    comp = d.compartment
    K = d.wiring.n_compartments
    c = torch.zeros(K, dtype=torch.float64)
    c[d.output_index.cpu()] = neuron.phi.detach().to("cpu", torch.float64)
    Phi = float(c.sum())
    ig = neuron.input_gain
    alpha = alpha0 - ig * Phi if neuron.forward_mode == "voltage_difference" else alpha0
    cast = dict(dtype=like.dtype, device=like.device)
    if mode == "loop":  # a = sum_k c_k v_k, v_rest included
        return (c * ig).to(**cast), alpha, u0
    if mode == "active":  # y = a - v_rest Phi (see kernels.compartments.active_scan)
        s = comp.strength.detach().to("cpu", torch.float64)
        c = c * ig
        cs = c * s
        const = ig * comp.v_rest * Phi + u0
        if bool((c == c[0]).all()) and s.dim() == 0:
            return (float(c[0]), float(cs[0])), alpha, const
        return (c.to(**cast), cs.to(**cast)), alpha, const
    a, gain = comp.terms()
    P = a * torch.eye(K, dtype=torch.float64)
    if d.g is not None:
        P = P + gain * dendrite.coupling_matrix(K, d.edge_index.cpu(), d.g.detach().to("cpu", torch.float64))
    const = ig * comp.v_rest * Phi + u0
    found = dendrite.readout_factors(P, gain, T, d.input_index.cpu(), c)
    if found is None:
        return None, alpha, const
    Ell, q, m0, geo = found
    geo = None if geo is None else (geo[0] * ig, geo[1])
    factors = ((Ell * ig).to(**cast), q.to(**cast), [float(v) for v in q], (m0 * ig).to(**cast), geo)
    return factors, alpha, const
