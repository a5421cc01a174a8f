"""Synapses: presynaptic spikes -> one current per input compartment of every postsynaptic neuron.

A layer of S dendritic neurons with K_in input compartments each needs S * K_in currents. The
feature layout is a convention shared with `dendritic.DendriticNeuron`:

    linear   y = x W^T + b,    W [S*K_in, in]     feature  s * K_in + k      (neuron-major)
                                                   -> [..., S, K_in] by a plain reshape
    conv     y = conv(x, W) + b,  W [K_in*C, in_C, kh, kw]
                                                   channel  k * C + c         (compartment-major)
                                                   -> [..., K_in, C, H, W] -> K moved last

``MaskedLinear`` multiplies W by a fixed random 0/1 mask M (a buffer, a fraction ``sparsity`` of
zeros, drawn from ``mask_seed``) in every forward pass, y = x (W * M)^T + b, so masked weights get
zero gradient and stay zero. Optional bounds: ``clamp_()`` sets W <- min(max(W, wmin), wmax); the
training loop calls it after each optimizer step.

Multi-step input [T, B, ...] is flattened to [T*B, ...] for ONE matmul/conv call and unflattened;
single-step input is [B, ...]; ``step_mode`` ('m' or 's') selects.

Synaptic filters (stateful, `SpikingModule`s) shape the current in time:

    IdentityFilter:   i[t] = x[t]
    ExpFilter:        i[t] = (1 - 1/tau_s) * i[t-1] + x[t],   i[-1] = 0

ExpFilter is linear and solved for all T at once with `compartments.leaky_scan`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .compartments import decay_operator, leaky_scan
from .neurons import SpikingModule


def _check_step_mode(step_mode: str) -> str:
    if step_mode not in ("m", "s"):
        raise ValueError(f"step_mode must be 'm' or 's' (got step_mode={step_mode!r})")
    return step_mode


def _check_bounds(wmin, wmax):
    wmin = None if wmin is None else float(wmin)
    wmax = None if wmax is None else float(wmax)
    if wmin is not None and wmax is not None and not wmin < wmax:
        raise ValueError(f"wmin must be < wmax (got wmin={wmin}, wmax={wmax})")
    return wmin, wmax


def _check_size(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (got {name}={value!r})")
    return value


class _Synapse:
    """Mixin: step-mode dispatch (one call over T*B rows) and weight bounds."""

    wmin: Optional[float]
    wmax: Optional[float]

    def _apply_seq(self, fn, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return fn(x)
        y = fn(x.flatten(0, 1))                                 # [T*B, ...]
        return y.unflatten(0, x.shape[:2])                      # [T, B, ...]

    @torch.no_grad()
    def clamp_(self) -> None:
        """W <- clamp(W, wmin, wmax) in place (no-op without bounds)."""
        if self.wmin is not None or self.wmax is not None:
            self.weight.clamp_(self.wmin, self.wmax)


class DendLinear(_Synapse, nn.Linear):
    """Linear synapses onto S neurons x K_in input compartments: out_features = S * K_in."""

    def __init__(
        self,
        in_features: int,
        n_neurons: int,
        k_in: int = 1,
        bias: bool = True,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
        step_mode: str = "m",
    ):
        _check_size("in_features", in_features)
        _check_size("n_neurons", n_neurons)
        _check_size("k_in", k_in)
        super().__init__(in_features, n_neurons * k_in, bias=bias)
        self.n_neurons, self.k_in = n_neurons, k_in
        self.wmin, self.wmax = _check_bounds(wmin, wmax)
        self.step_mode = _check_step_mode(step_mode)
        self.clamp_()

    def effective_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_seq(lambda z: F.linear(z, self.effective_weight(), self.bias), x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, n_neurons={self.n_neurons}, k_in={self.k_in}, bias={self.bias is not None}, wmin={self.wmin}, wmax={self.wmax}, step_mode={self.step_mode!r}"


class MaskedLinear(DendLinear):
    """DendLinear with a fixed random connectivity mask (a fraction ``sparsity`` of weights is 0)."""

    def __init__(
        self,
        in_features: int,
        n_neurons: int,
        k_in: int = 1,
        bias: bool = True,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
        sparsity: float = 0.5,
        mask_seed: int = 0,
        step_mode: str = "m",
    ):
        if not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1) (got sparsity={sparsity!r})")
        super().__init__(in_features, n_neurons, k_in, bias, wmin, wmax, step_mode)
        self.sparsity, self.mask_seed = float(sparsity), int(mask_seed)
        n = self.weight.numel()
        gen = torch.Generator().manual_seed(self.mask_seed)
        off = torch.randperm(n, generator=gen)[: int(round(self.sparsity * n))]
        mask = torch.ones(n, dtype=torch.bool)
        mask[off] = False
        self.register_buffer("mask", mask.view_as(self.weight))
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    @torch.no_grad()
    def clamp_(self) -> None:
        super().clamp_()
        if hasattr(self, "mask"):
            self.weight.mul_(self.mask)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sparsity={self.sparsity}, mask_seed={self.mask_seed}"


class DendConv2d(_Synapse, nn.Conv2d):
    """2-D convolution onto K_in input compartments of C channels: out_channels = K_in * C."""

    def __init__(
        self,
        in_channels: int,
        n_channels: int,
        k_in: int = 1,
        kernel_size=3,
        stride=1,
        padding=0,
        bias: bool = True,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
        step_mode: str = "m",
    ):
        _check_size("in_channels", in_channels)
        _check_size("n_channels", n_channels)
        _check_size("k_in", k_in)
        super().__init__(in_channels, k_in * n_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.n_channels, self.k_in = n_channels, k_in
        self.wmin, self.wmax = _check_bounds(wmin, wmax)
        self.step_mode = _check_step_mode(step_mode)
        self.clamp_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_seq(super().forward, x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_channels={self.n_channels}, k_in={self.k_in}, wmin={self.wmin}, wmax={self.wmax}, step_mode={self.step_mode!r}"


class IdentityFilter(SpikingModule):
    """i[t] = x[t]."""

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        return x_seq

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reset(self) -> None:
        pass


class ExpFilter(SpikingModule):
    """Exponential (leaky-integrator) synaptic current: i[t] = (1 - 1/tau_s) i[t-1] + x[t]."""

    def __init__(self, tau_s: float = 2.0, step_mode: str = "m"):
        if not isinstance(tau_s, (int, float)) or isinstance(tau_s, bool) or not tau_s > 1:
            raise ValueError(f"tau_s must be a number > 1 (got tau_s={tau_s!r})")
        super().__init__(step_mode)
        self.tau_s = float(tau_s)
        self.i: Optional[torch.Tensor] = None
        self._ops = {}

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau_s

    def _i0(self, like: torch.Tensor) -> Optional[torch.Tensor]:
        return self.i if self.i is not None and self.i.shape == like.shape else None

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        T = x_seq.shape[0]
        key = (T, x_seq.dtype, x_seq.device, self.tau_s)
        if key not in self._ops:
            self._ops = {key: decay_operator(self.decay, T, 1.0, x_seq.dtype, x_seq.device)}
        L, p = self._ops[key]
        i_seq = leaky_scan(x_seq, L, p, self._i0(x_seq[0]))
        self.i = i_seq[-1]
        return i_seq

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        i0 = self._i0(x)
        self.i = x if i0 is None else self.decay * i0 + x
        return self.i

    def reset(self) -> None:
        self.i = None

    def extra_repr(self) -> str:
        return f"tau_s={self.tau_s}, step_mode={self.step_mode!r}"
