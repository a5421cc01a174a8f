"""Recurrent synapses of a hidden layer: the layer's spikes of step t-1 feed its input at step t.

    x[t] = W_ff y[t] + b                (the feed-forward synapse: all T steps in one matmul, before the loop)
    I[t] = x[t] + W_rec s[t-1]          W_rec [S*K_in, S];  s[-1] = 0 after `reset()`
    s[t] = neuron.single_step(I[t])     the neuron keeps its state between steps

Feature ``s * K_in + k`` of I is input compartment k of neuron s, the neuron-major layout of the
feed-forward current (`dendritic.neuron`); a point neuron (K_in = 1) has W_rec [S, S]. Two kinds:

    learned      W_rec a parameter, W_rec ~ U(-a, a) with a = init_scale / sqrt(S) (0: starts at zero,
                 so a new network starts as its feed-forward version and `init_rate` calibrates it alike)
    inhibition   W_rec = -inhibition (1 - I), the same for every input compartment of a neuron: a fixed
                 buffer (no gradient, never trained); each spike inhibits every other neuron of the layer
                 at the next step (cross-inhibition, as spikelearn's SpikingRecLayer with a static Wrec)

`run` calls the neuron module once for the whole sequence (its forward is the step loop during that
call), so the neuron's forward hooks (firing rates, rasters, `init_rate`'s calibration) see
[T, B, F] in and [T, B, S] out as for a feed-forward layer; the input they see is the feed-forward
current x. With ``store_seq`` on the neuron, the loop keeps ``v_seq`` (and ``v_dend_seq`` for a
dendritic neuron), the state after each step, as the neuron's multi-step pass does. The last spikes
are kept (``s``) until `reset()`, so consecutive calls continue one sequence, like the neurons' state.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..neurons.base import SpikingModule

KINDS = ("learned", "inhibition")


class RecurrentSynapse(nn.Module):
    """W_rec of one layer of ``n_neurons`` neurons with ``k_in`` input compartments each (see the module docstring)."""

    def __init__(
        self, n_neurons: int, k_in: int = 1, kind: str = "learned", inhibition: float = 0.5, init_scale: float = 0.0
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"recurrent kind must be one of {', '.join(KINDS)} (got {kind!r})")
        S, K = int(n_neurons), int(k_in)
        self.kind, self.n_neurons, self.k_in = kind, S, K
        if kind == "inhibition":
            if not (
                isinstance(inhibition, (int, float))
                and not isinstance(inhibition, bool)
                and math.isfinite(inhibition)
                and inhibition >= 0
            ):
                raise ValueError(f"inhibition must be a finite number >= 0 (got inhibition={inhibition!r})")
            self.inhibition = float(inhibition)
            cross = 1.0 - torch.eye(S)  # [S, S]: j -> i for j != i
            self.register_buffer("weight", (-self.inhibition * cross).repeat_interleave(K, dim=0))  # [S*K, S]
        else:
            if not (
                isinstance(init_scale, (int, float))
                and not isinstance(init_scale, bool)
                and math.isfinite(init_scale)
                and init_scale >= 0
            ):
                raise ValueError(f"recurrent_init must be a finite number >= 0 (got recurrent_init={init_scale!r})")
            a = float(init_scale) / math.sqrt(S)
            self.weight = nn.Parameter(torch.empty(S * K, S).uniform_(-a, a) if a else torch.zeros(S * K, S))
        self.s: Optional[torch.Tensor] = None  # [B, S] spikes of the last step

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """The recurrent current W_rec s: [B, S] -> [B, S*K_in]."""
        return F.linear(s, self.weight.to(s.dtype))

    def run(self, neuron: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
        """The layer's spikes [T, B, S] for feed-forward currents x_seq [T, B, S*K_in], step by step."""

        def loop(x_seq: torch.Tensor) -> torch.Tensor:
            keep = bool(getattr(neuron, "store_seq", False))
            s = self.s if self.s is not None and self.s.shape[0] == x_seq.shape[1] else None
            out, kept = [], {}
            for x in x_seq.unbind(0):  # [B, S*K_in]
                s = neuron.single_step(x if s is None else x + self(s))
                out.append(s)
                if keep:
                    for name in ("v", "v_dend"):
                        v = getattr(neuron, name, None)
                        if isinstance(v, torch.Tensor):
                            kept.setdefault(name, []).append(v)
            self.s = s
            if keep:
                neuron.h_seq = None  # single steps keep no charged potential
                for name, vs in kept.items():
                    setattr(neuron, f"{name}_seq", torch.stack(vs))
            return torch.stack(out)

        neuron.forward = loop  # one call: the hooks see the sequence
        try:
            return neuron(x_seq)
        finally:
            del neuron.forward

    def reset(self) -> None:
        self.s = None

    def extra_repr(self) -> str:
        what = f"inhibition={self.inhibition}" if self.kind == "inhibition" else "learned"
        return f"n_neurons={self.n_neurons}, k_in={self.k_in}, {what}"


def check_steps(neuron: nn.Module) -> None:
    """A recurrent layer runs its neuron one step at a time: refuse a multi-step-only neuron (PSN)."""
    if getattr(type(neuron), "single_step", None) is SpikingModule.single_step:
        raise ValueError(
            f"{type(neuron).__name__} runs all T steps at once and has no single step, so it cannot "
            "sit in a recurrent layer (each step needs the spikes of the step before); use another neuron or "
            "recurrent=false"
        )


def recurrent_kind(recurrent) -> Optional[str]:
    """None (feed-forward), 'learned' or 'inhibition' from the ``recurrent`` option of a network builder."""
    if recurrent is None or recurrent is False or recurrent in ("none", "false"):
        return None
    if recurrent is True or recurrent in ("true", "learned"):
        return "learned"
    if recurrent == "inhibition":
        return "inhibition"
    raise ValueError(
        f"recurrent must be false, true (learned recurrent synapses) or inhibition (fixed "
        f"cross-inhibition) (got recurrent={recurrent!r})"
    )
