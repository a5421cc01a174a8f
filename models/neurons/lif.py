"""Point spiking neurons: LIF, IF and PLIF, each a thin shell around the fused soma of `kernels.soma`.

    LIF  (decay_input):  h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau
    LIF  (no decay):     h[t] = v[t-1] - (v[t-1] - v_reset) / tau + x[t]
    IF:                  h[t] = v[t-1] + x[t]
    PLIF:                LIF with a learnable 1/tau = sigmoid(w), w0 = -log(tau0 - 1)
    then  s[t] = H(h[t] - v_threshold);  v[t] = v_reset where s[t] = 1 (hard reset),
          or v[t] = h[t] - v_threshold * s[t] when v_reset is None (soft reset).

Shapes: multi-step mode (``step_mode='m'``, the default) takes ``[T, B, ...]`` and returns spikes of
the same shape; single-step mode (``'s'``) takes ``[B, ...]``. The membrane potential after the
last step is kept in ``self.v`` until `reset()`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..kernels import soma
from .base import PointNeuron, SpikingModule


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


class LI(SpikingModule):
    """A non-spiking leaky integrator: the read-out layer of the membrane read-outs (``readout=membrane_*``,
    ``time_softmax``; SPAIC's ``nonspikinglif``, snnTorch's ``reset_mechanism='none'`` output layer).

        v[t] = v[t-1] + (x[t] - v[t-1]) / tau,   v[-1] = 0        (tau = 1: v[t] = x[t])

    It never fires and never resets; its output is the potential sequence v [T, B, ...] itself. The
    recursion is linear, so a multi-step pass is one [T, T] matrix product over the time axis,
    v[t] = sum_{k<=t} (1/tau) (1 - 1/tau)^(t-k) x[k], plus the carried-over (1 - 1/tau)^(t+1) v[-1].
    ``spiking = False`` tells the runner that the output is not spikes (no firing rate, raster or
    rate calibration for this layer).
    """

    spiking = False

    def __init__(self, tau: float = 2.0, step_mode: str = "m"):
        if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau >= 1):
            raise ValueError(f"tau must be a number >= 1 (got {tau!r})")
        super().__init__(step_mode)
        self.tau = float(tau)
        self.v: Optional[torch.Tensor] = None
        self.v_seq: Optional[torch.Tensor] = None

    def reset(self) -> None:
        self.v, self.v_seq = None, None

    def _kernel(self, T: int, like: torch.Tensor) -> torch.Tensor:
        """K [T, T + 1]: v[t] = sum_k K[t, k] x[k] for k < T, and K[t, T] = (1 - 1/tau)^(t+1) weights v[-1]."""
        a = 1.0 - 1.0 / self.tau
        t = torch.arange(T, device=like.device, dtype=like.dtype)
        lag = t.view(-1, 1) - t.view(1, -1)  # t - k
        K = torch.where(
            lag >= 0, a ** lag.clamp(min=0) / self.tau, torch.zeros((), dtype=like.dtype, device=like.device)
        )
        return torch.cat([K, (a ** (t + 1)).view(-1, 1)], dim=1)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        T, dtype = x_seq.shape[0], x_seq.dtype
        x = x_seq if dtype == torch.float64 else x_seq.float()  # AMP: bf16 counts steps only to 256
        K = self._kernel(T, x)
        v_seq = torch.tensordot(K[:, :T], x, dims=([1], [0]))  # [T, B, ...]
        if self.v is not None:
            v_seq = v_seq + K[:, T].view(-1, *([1] * (x.dim() - 1))) * self.v.to(x.dtype)
        v_seq = v_seq.to(dtype)
        self.v, self.v_seq = v_seq[-1], v_seq
        return v_seq

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x) if self.v is None else self.v
        self.v = v + (x - v) / self.tau
        return self.v

    def extra_repr(self) -> str:
        return f"tau={self.tau}, non-spiking"
