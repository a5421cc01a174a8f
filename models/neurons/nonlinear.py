"""Nonlinear and variant point neurons: QIF, EIF, KLIF, LIAF (`neurons.base.StepNeuron` models) and PSN.

    QIF:   h[t] = v[t-1] + (x[t] + a0 (v[t-1] - v_rest) (v[t-1] - v_c)) / tau
    EIF:   h[t] = v[t-1] + (x[t] - (v[t-1] - v_rest) + delta_T exp((v[t-1] - theta_rh) / delta_T)) / tau
    KLIF:  m[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau        (LIF charge; no decay_input:
                                                                     v[t-1] - (v[t-1] - v_reset) / tau + x[t])
           F[t] = relu(k m[t]),  k learnable (init 1);  s[t] = H(F[t] - v_threshold)
           v[t] = reset(F[t], s[t]),  or with scale_reset  v[t] = reset(F[t] / k, s[t]) with the
           soft-reset threshold v_threshold / k
    LIAF:  h[t] = LIF charge;  s[t] = H(h[t] - v_threshold) only resets v;  the output is analog:
           y[t] = act(h[t] - v_threshold) (threshold_related) or act(h[t]),  act in ACTS
    PSN:   h = W x + bias   (W [T, T] and bias [T, 1] learnable, x [T, N]: all steps at once)
           s = H(h)          (bias = -threshold, init -1; no state, no reset)

    reset (all but PSN):  hard  v[t] = v_reset where s[t] = 1, else h[t];
                          soft  v[t] = h[t] - v_threshold s[t]   (v_reset None)

Defaults are SpikingJelly 2's (``QIFNode``, ``EIFNode``, ``KLIFNode``, ``LIAFNode``, ``PSN``) and the
same parameters give the same spikes and gradients; H is the surrogate's Heaviside (H(0) = 1).
Every model but PSN takes ``refractory`` (steps) and a ``feedback`` through `StepNeuron.run`; see
`neurons.base.StepNeuron` for both.

Fast paths. `charge` below is the reference step (the generic `StepNeuron` loop runs it under
autograd, and serves refractory periods and ``store_seq``). ``fused_scan`` runs all T steps of a model
in one autograd node instead (`kernels.nonlinear`): the forward loop writes into preallocated [T, ...] outputs with a few
in-place ops per step (no graph), and the backward is the recurrence `kernels.soma.backprop_reset`

    dL/dH[t]   = dL/ds[t] F'(H[t] - theta) + dL/dv[t] dv[t]/dH[t]   (+ dL/dy[t] act'  for LIAF)
    dL/dv[t-1] = alpha[t] dL/dH[t],    alpha[t] = dH[t]/dv[t-1]

with H the potential that fires and is reset (h; F for KLIF) and a per-step alpha[t] evaluated for
all T at once from what the forward kept: 1 + (a0 (2 v - v_rest - v_c) - feedback) / tau (QIF),
1 - (1 + feedback) / tau + exp((v - theta_rh) / delta_T) / tau (EIF), k [k m > 0] (1 - 1/tau - gain feedback)
(KLIF), 1 - 1/tau - gain feedback (LIAF), v = v[t-1]. Equal to the generic loop up to float
rounding (tests/test_zoo_nonlinear.py). PSN's kernel is a [T, T] x [T, N] product each way, over
cache-sized blocks of columns.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..kernels import nonlinear as fused
from ..kernels import soma
from ..surrogate import Sigmoid, Surrogate
from .base import SpikingModule, StepNeuron, check_range

ACTS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda z: z}


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false (got {name}={value!r})")
    return value


# --- the models -------------------------------------------------------------------------------------


class QIF(StepNeuron):
    """Quadratic integrate-and-fire: h = v + (x + a0 (v - v_rest)(v - v_c)) / tau."""

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: Optional[float] = -0.1,
        **kw,
    ):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.v_c = check_range("v_c", v_c)
        self.a0 = check_range("a0", a0, 0.0, low_open=True)
        self.v_rest = check_range("v_rest", v_rest, None if v_reset is None else v_reset)

    def charge(self, x, state):
        v = state[0]
        return v + (x + self.a0 * (v - self.v_rest) * (v - self.v_c)) / self.tau, ()

    def fused_scan(self, x_seq, state, feedback):
        return fused.nonlinear_if(self, "qif", (self.tau, self.a0, self.v_rest, self.v_c), x_seq, state, feedback)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}, " + super().extra_repr()


class EIF(StepNeuron):
    """Exponential integrate-and-fire: h = v + (x - (v - v_rest) + delta_T exp((v - theta_rh)/delta_T)) / tau."""

    def __init__(
        self,
        tau: float = 2.0,
        delta_T: float = 1.0,
        theta_rh: float = 0.8,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: Optional[float] = -0.1,
        **kw,
    ):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.delta_T = check_range("delta_T", delta_T, 0.0, low_open=True)
        self.theta_rh = check_range("theta_rh", theta_rh)
        self.v_rest = check_range("v_rest", v_rest, None if v_reset is None else v_reset)

    def charge(self, x, state):
        v = state[0]
        return v + (x + self.v_rest - v + self.delta_T * torch.exp((v - self.theta_rh) / self.delta_T)) / self.tau, ()

    def fused_scan(self, x_seq, state, feedback):
        return fused.nonlinear_if(
            self, "eif", (self.tau, self.delta_T, self.v_rest, self.theta_rh), x_seq, state, feedback
        )

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, delta_T={self.delta_T}, theta_rh={self.theta_rh}, v_rest={self.v_rest}, "
            + super().extra_repr()
        )


class KLIF(StepNeuron):
    """LIF whose charged potential is rescaled by a learnable k and rectified: F = relu(k h) fires
    and is reset (Jiang & Zhang 2023, arXiv:2302.09238). ``charge`` returns the potential the reset
    acts on (F, or F / k with scale_reset) and F itself as aux, which `fire` compares to v_threshold."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, scale_reset: bool = False, k: float = 1.0, **kw):
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.decay_input = _flag("decay_input", decay_input)
        self.scale_reset = _flag("scale_reset", scale_reset)
        self.k = nn.Parameter(torch.tensor(check_range("k", k, 0.0, low_open=True)))

    def charge(self, x, state):
        F = torch.relu(self.k * soma.lif_charge(x, state[0], self.tau, self.decay_input, self.v_reset))
        return (F / self.k if self.scale_reset else F), (F,)

    def fire(self, h, aux):
        return super().fire(aux[0], ())

    def after(self, h, s, aux):
        return (self.reset_v(h, s, self.v_threshold / self.k if self.scale_reset else None),)

    def fused_scan(self, x_seq, state, feedback):
        fb = fused.float_feedback(feedback)
        if fb is None:
            return None
        s, v = fused.KLIFScan.apply(
            x_seq,
            state[0].to(x_seq.dtype),
            self.k,
            self.tau,
            self.decay_input,
            self.scale_reset,
            self.v_threshold,
            self.v_reset,
            self.surrogate,
            self.detach_reset,
            self.training,
            fb,
        )
        return s, (v,)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, decay_input={self.decay_input}, scale_reset={self.scale_reset}, " + super().extra_repr()
        )


class LIAF(StepNeuron):
    """Leaky integrate and analog fire (Wu et al. 2021, arXiv:2011.06176): a LIF whose spikes only
    reset it; the output is the analog y = act(h - v_threshold) (threshold_related) or act(h)."""

    analog = True

    def __init__(
        self, tau: float = 2.0, decay_input: bool = True, act: str = "relu", threshold_related: bool = True, **kw
    ):
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.decay_input = _flag("decay_input", decay_input)
        if act not in ACTS:
            raise ValueError(f"act must be one of {', '.join(ACTS)} (got act={act!r})")
        self.act = act
        self.threshold_related = _flag("threshold_related", threshold_related)

    def charge(self, x, state):
        return soma.lif_charge(x, state[0], self.tau, self.decay_input, self.v_reset), ()

    def output(self, h: torch.Tensor) -> torch.Tensor:
        return ACTS[self.act](h - self.v_threshold if self.threshold_related else h)

    def step(self, x, state, feedback: float = 0.0):
        s, h, state = super().step(x, state, feedback)
        return self.output(h), h, state

    def fused_scan(self, x_seq, state, feedback):
        fb = fused.float_feedback(feedback)
        if fb is None:
            return None
        y, v = fused.LIAFScan.apply(
            x_seq,
            state[0].to(x_seq.dtype),
            self.tau,
            self.decay_input,
            self.v_threshold,
            self.v_reset,
            self.surrogate,
            self.detach_reset,
            self.training,
            fb,
            self.act,
            self.threshold_related,
        )
        return y, (v,)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, decay_input={self.decay_input}, act={self.act!r}, "
            f"threshold_related={self.threshold_related}, " + super().extra_repr()
        )


class PSN(SpikingModule):
    """Parallel spiking neuron (Fang et al. 2023, arXiv:2304.12760): h = W x + bias over the T steps
    at once, s = H(h). Multi-step only, T fixed at construction; ``weight`` [T, T] and ``bias`` [T, 1]
    are initialised (and named) as SpikingJelly's, so its state dict loads into ours."""

    store_seq = False

    def __init__(self, T: int, surrogate: Optional[Surrogate] = None, refractory: int = 0, step_mode: str = "m"):
        if refractory != 0:
            raise ValueError(f"PSN has no reset, so a refractory period does not apply (got refractory={refractory!r})")
        if step_mode != "m":
            raise ValueError(f"PSN is multi-step only: step_mode must be 'm' (got step_mode={step_mode!r})")
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a whole number of steps >= 1 (got T={T!r})")
        super().__init__(step_mode)
        self.T = T
        self.surrogate = surrogate if surrogate is not None else Sigmoid()
        self.weight = nn.Parameter(torch.empty(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.v = self.v_seq = self.h_seq = None  # no membrane state (h_seq: store_seq)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.shape[0] != self.T:
            raise ValueError(f"PSN was built for T={self.T} steps (got an input of {x_seq.shape[0]} steps)")
        x = x_seq.flatten(1)  # [T, N]
        if self.store_seq:
            with torch.no_grad():
                self.h_seq = torch.addmm(self.bias, self.weight, x).view(x_seq.shape)
        return fused.PSNFn.apply(x, self.weight, self.bias, self.surrogate).view(x_seq.shape)

    def reset(self) -> None:
        self.h_seq = None

    def extra_repr(self) -> str:
        return f"T={self.T}, surrogate={self.surrogate}"
