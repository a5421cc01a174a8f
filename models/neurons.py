"""Point spiking neurons: LIF, IF and PLIF, each a thin shell around the fused soma of `soma.py`.

    LIF  (decay_input):  h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau
    LIF  (no decay):     h[t] = v[t-1] - (v[t-1] - v_reset) / tau + x[t]
    IF:                  h[t] = v[t-1] + x[t]
    PLIF:                LIF with a learnable 1/tau = sigmoid(w), w0 = -log(tau0 - 1)
    then  s[t] = H(h[t] - v_threshold);  v[t] = v_reset where s[t] = 1 (hard reset),
          or v[t] = h[t] - v_threshold * s[t] when v_reset is None (soft reset).

Shapes: multi-step mode (``step_mode='m'``, the default) takes ``[T, B, ...]`` and returns spikes of
the same shape; single-step mode (``'s'``) takes ``[B, ...]``. The membrane potential after the
last step is kept in ``self.v`` until `reset()`.

Every spiking module in dendsn derives from `SpikingModule`; the runner finds spiking layers (for
firing rates, potentials and local learning rules) by that type. ``inputs_per_neuron`` tells a
network builder how many input features one neuron takes (1 for a point neuron, K_in for a
dendritic one).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from . import soma
from .surrogate import Sigmoid, Surrogate


class SpikingModule(nn.Module):
    """A stateful spiking module with a step mode ('m': [T, B, ...], 's': [B, ...])."""

    inputs_per_neuron = 1

    def __init__(self, step_mode: str = "m"):
        super().__init__()
        if step_mode not in ("m", "s"):
            raise ValueError(f"step_mode must be 'm' or 's' (got {step_mode!r})")
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step(x) if self.step_mode == "m" else self.single_step(x)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the state of the last sequence."""
        raise NotImplementedError


def _check_threshold(v_threshold: float, v_reset: Optional[float]) -> None:
    if v_reset is not None and not v_reset < v_threshold:
        raise ValueError(f"v_reset must be below v_threshold (got v_reset={v_reset}, v_threshold={v_threshold})")


class PointNeuron(SpikingModule):
    """A soma driven directly by its input current: subclasses define ``leak_and_drive``.

    With ``store_seq = True`` a multi-step pass also keeps ``v_seq`` [T, B, ...], the potential after
    each step's reset, and ``h_seq``, the charged potential before it (for plots of membrane traces:
    h crosses the threshold where the neuron fires); off by default, they cost memory."""

    store_seq = False

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        step_mode: str = "m",
    ):
        super().__init__(step_mode)
        _check_threshold(v_threshold, v_reset)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else Sigmoid()
        self.detach_reset = detach_reset
        self.v: Optional[torch.Tensor] = None
        self.v_seq: Optional[torch.Tensor] = None
        self.h_seq: Optional[torch.Tensor] = None

    def leak_and_drive(self, x: torch.Tensor):
        """(alpha, u) of `soma.py` for input current ``x``."""
        raise NotImplementedError

    def drive(self, x: torch.Tensor):
        """(alpha, u, gain) for `soma.multi_step`: the drive is gain * u (default gain 1)."""
        alpha, u = self.leak_and_drive(x)
        return alpha, u, 1.0

    def _v0(self, like: torch.Tensor) -> torch.Tensor:
        if self.v is not None and self.v.shape == like.shape:
            return self.v
        return torch.full_like(like, 0.0 if self.v_reset is None else self.v_reset, dtype=torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        alpha, u, gain = self.drive(x_seq)
        s, self.v, h, v_seq = soma.multi_step(
            u, self._v0(x_seq[0]), alpha, self.v_threshold, self.v_reset, self.surrogate,
            self.detach_reset, self.training, gain=gain, keep_v=self.store_seq,
        )
        self.v_seq, self.h_seq = v_seq, (h if self.store_seq else None)
        return s

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        alpha, u = self.leak_and_drive(x)
        s, self.v, _ = soma.single_step(
            u, self._v0(x), alpha, self.v_threshold, self.v_reset, self.surrogate,
            self.detach_reset, self.training,
        )
        return s

    def reset(self) -> None:
        self.v = None
        self.v_seq = self.h_seq = None

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, surrogate={self.surrogate}, step_mode={self.step_mode!r}"


class LIF(PointNeuron):
    """Leaky integrate-and-fire point neuron (see the module docstring for the update)."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kw):
        if not tau > 1:
            raise ValueError(f"tau must be > 1 (got {tau})")
        super().__init__(**kw)
        self.tau, self.decay_input = float(tau), decay_input

    def leak_and_drive(self, x):
        return soma.lif_terms(x, 1.0 / self.tau, self.v_reset, self.decay_input)

    def drive(self, x):
        return soma.lif_drive(x, 1.0 / self.tau, self.v_reset, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(PointNeuron):
    """Integrate-and-fire point neuron: h[t] = v[t-1] + x[t]."""

    def leak_and_drive(self, x):
        return 1.0, x


class PLIF(PointNeuron):
    """LIF with a learnable time constant: 1/tau = sigmoid(w) (Fang et al. 2021)."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kw):
        if not tau > 1:
            raise ValueError(f"tau must be > 1 (got {tau})")
        super().__init__(**kw)
        self.decay_input = decay_input
        self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def leak_and_drive(self, x):
        return soma.lif_terms(x, torch.sigmoid(self.w), self.v_reset, self.decay_input)
