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

Synaptic filters shape the current in time:

    IdentityFilter:   i[t] = x[t]
    ExpFilter:        i[t] = (1 - 1/tau_s) * i[t-1] + x[t],   i[-1] = 0

ExpFilter is linear and solved for all T at once with `kernels.compartments.leaky_scan`. Filters keep state
but are not spiking layers: they are plain modules with ``step_mode`` and ``reset()``, not `SpikingModule`s.

The ``synapse`` config group: `Synapse` is the factory the network builders (`networks.MLP`, `ConvNet`,
`Conv1dNet`) call for every connection, read-out included; its keys combine freely:

    sparsity             M ~ a fixed random 0/1 mask, a fraction `sparsity` of zeros, drawn from torch's
                         global RNG (the run's seed) and saved as a buffer;  y = x (W * M)^T + b
    inhibitory_fraction  Dale's law: presynaptic unit j (linear: input feature j; conv: input channel j)
                         is inhibitory (sigma_j = -1) with that probability, else excitatory (+1);
                         every outgoing weight keeps its sign: sigma_j W_ij >= 0
    wmin, wmax           wmin <= W <= wmax
    tau_s                the synaptic current is filtered:  I[t] = (1 - 1/tau_s) I[t-1] + (W x[t] + b)

The constraints are a projection, applied at construction (W <- sigma |W|, then) and by ``clamp_()``
after every optimizer step (BPTT), every local-rule update and `init_rate`'s scaling:

    W <- clamp(W, wmin, wmax);   W <- sigma * max(sigma * W, 0);   W <- W * M

so the stored weight IS the weight the network uses (checkpoints, histograms and local rules see it).
The mask also multiplies W in the forward pass, so masked weights get zero gradient. With every key at
its default (`synapse=plain`) the factory returns exactly nn.Linear / TimeDistributed(nn.Conv2d).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.compartments import decay_operator, leaky_scan


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
        y = fn(x.flatten(0, 1))  # [T*B, ...]
        return y.unflatten(0, x.shape[:2])  # [T, B, ...]

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
        return (
            super().extra_repr()
            + f", n_channels={self.n_channels}, k_in={self.k_in}, wmin={self.wmin}, wmax={self.wmax}, step_mode={self.step_mode!r}"
        )


class SynapticFilter(nn.Module):
    """Base of the filters: stateful over time, a ``step_mode`` ('m': [T, B, ...], 's': [B, ...]), ``reset()``."""

    def __init__(self, step_mode: str = "m"):
        super().__init__()
        self.step_mode = _check_step_mode(step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step(x) if self.step_mode == "m" else self.single_step(x)


class IdentityFilter(SynapticFilter):
    """i[t] = x[t]."""

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        return x_seq

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reset(self) -> None:
        pass


class ExpFilter(SynapticFilter):
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


# --- the `synapse` config group ----------------------------------------------------------------------
class TimeDistributed(nn.Module):
    """Apply a stateless module to [T, B, ...] by folding T into the batch: one call for all steps."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))


class _Constrained:
    """Mixin for an nn.Linear / nn.Conv2d: a fixed mask M, E/I signs sigma, bounds (module docstring)."""

    mask: Optional[torch.Tensor]
    sign: Optional[torch.Tensor]

    def _constrain(self, sparsity: float, inhibitory_fraction: Optional[float], wmin, wmax) -> None:
        self.sparsity, self.inhibitory_fraction = float(sparsity), inhibitory_fraction
        self.wmin, self.wmax = _check_bounds(wmin, wmax)
        W = self.weight
        mask = None
        if self.sparsity > 0:  # torch's global RNG: the run's seed
            off = torch.randperm(W.numel())[: int(round(self.sparsity * W.numel()))]
            mask = torch.ones(W.numel(), dtype=torch.bool)
            mask[off] = False
            mask = mask.view_as(W)
        self.register_buffer("mask", mask)  # None: no state_dict entry
        sign = None
        if inhibitory_fraction is not None:
            n_pre = W.shape[1]  # input features / input channels
            inhibitory = torch.randperm(n_pre)[: int(round(float(inhibitory_fraction) * n_pre))]
            sign = torch.ones(n_pre)
            sign[inhibitory] = -1.0
            sign = sign.view(1, n_pre, *([1] * (W.dim() - 2)))  # [1, in] / [1, C_in, 1, 1]
            with torch.no_grad():
                W.copy_(W.abs() * sign)  # the fan-in init, each column with its sign
        self.register_buffer("sign", sign)
        self.clamp_()

    def effective_weight(self) -> torch.Tensor:
        return self.weight if self.mask is None else self.weight * self.mask

    @torch.no_grad()
    def clamp_(self) -> None:
        """W <- clamp(W, wmin, wmax); W <- sigma max(sigma W, 0); W <- W M (each where set), in place."""
        W = self.weight
        if self.wmin is not None or self.wmax is not None:
            W.clamp_(self.wmin, self.wmax)
        if self.sign is not None:
            W.mul_(self.sign).clamp_(min=0.0).mul_(self.sign)
        if self.mask is not None:
            W.mul_(self.mask)

    def _constraint_repr(self) -> str:
        return (
            f"sparsity={self.sparsity}, inhibitory_fraction={self.inhibitory_fraction}, "
            f"wmin={self.wmin}, wmax={self.wmax}"
        )


class SynapticLinear(_Constrained, nn.Linear):
    """nn.Linear with a fixed mask, E/I signs and bounds: y = x (W * M)^T + b, on [..., in] (any leading dims)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        sparsity: float = 0.0,
        inhibitory_fraction: Optional[float] = None,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
    ):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._constrain(sparsity, inhibitory_fraction, wmin, wmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return nn.Linear.extra_repr(self) + ", " + self._constraint_repr()


class SynapticConv2d(_Constrained, nn.Conv2d):
    """nn.Conv2d with a fixed mask, E/I signs (per input channel) and bounds: y = conv(x, W * M) + b."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        padding=0,
        bias: bool = True,
        sparsity: float = 0.0,
        inhibitory_fraction: Optional[float] = None,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
    ):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self._constrain(sparsity, inhibitory_fraction, wmin, wmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return nn.Conv2d.extra_repr(self) + ", " + self._constraint_repr()


def _check_fraction(name: str, value, upper_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 <= value < 1 if upper_open else 0 <= value <= 1):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval} (got {name}={value!r})")
    return float(value)


class Synapse:
    """The factory of a network's connections (the ``synapse`` group; keys and equations: module docstring).

    ``linear(n_in, n_out, bias)`` -> a module on [..., n_in]; ``conv(c_in, c_out, kernel_size, padding,
    bias)`` -> a module on [T, B, c_in, H, W]; ``filters(step_mode)`` -> the modules between the synapse
    and its neurons ([] or [ExpFilter]). Every key at its default: nn.Linear / TimeDistributed(nn.Conv2d)
    and no filter, the plain network of before the group existed (same modules, same state_dict keys).
    """

    def __init__(
        self,
        sparsity: float = 0.0,
        tau_s: Optional[float] = None,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
        inhibitory_fraction: Optional[float] = None,
    ):
        self.sparsity = _check_fraction("sparsity", sparsity, upper_open=True)
        if tau_s is not None and (not isinstance(tau_s, (int, float)) or isinstance(tau_s, bool) or not tau_s > 1):
            raise ValueError(f"tau_s must be null (no filter) or a number > 1 (got tau_s={tau_s!r})")
        self.tau_s = None if tau_s is None else float(tau_s)
        for name, v in (("wmin", wmin), ("wmax", wmax)):
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
                raise ValueError(f"{name} must be null or a finite number (got {name}={v!r})")
        self.wmin, self.wmax = _check_bounds(wmin, wmax)
        self.inhibitory_fraction = (
            None
            if inhibitory_fraction is None
            else _check_fraction("inhibitory_fraction", inhibitory_fraction, upper_open=False)
        )
        f = self.inhibitory_fraction
        if f is not None and f > 0 and self.wmin is not None and self.wmin >= 0:
            raise ValueError(f"inhibitory_fraction={f} needs negative weights: set wmin < 0 (got wmin={self.wmin})")
        if f is not None and f < 1 and self.wmax is not None and self.wmax <= 0:
            raise ValueError(
                f"inhibitory_fraction={f} leaves excitatory units, which need positive weights: "
                f"set wmax > 0 (got wmax={self.wmax})"
            )

    @property
    def constrained(self) -> bool:
        """Whether the weights carry a mask, signs or bounds (a `SynapticLinear` / `SynapticConv2d`)."""
        return (
            self.sparsity > 0 or self.inhibitory_fraction is not None or self.wmin is not None or self.wmax is not None
        )

    @property
    def plain(self) -> bool:
        """Every key at its default: today's nn.Linear / nn.Conv2d and no filter."""
        return not self.constrained and self.tau_s is None

    def _keys(self) -> dict:
        return dict(
            sparsity=self.sparsity, inhibitory_fraction=self.inhibitory_fraction, wmin=self.wmin, wmax=self.wmax
        )

    def linear(self, n_in: int, n_out: int, bias: bool = True) -> nn.Module:
        if not self.constrained:
            return nn.Linear(n_in, n_out, bias=bias)
        return SynapticLinear(n_in, n_out, bias=bias, **self._keys())

    def conv(self, c_in: int, c_out: int, kernel_size, padding=0, bias: bool = True) -> nn.Module:
        if not self.constrained:
            return TimeDistributed(nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=bias))
        return TimeDistributed(SynapticConv2d(c_in, c_out, kernel_size, padding=padding, bias=bias, **self._keys()))

    def filters(self, step_mode: str = "m") -> list:
        return [] if self.tau_s is None else [ExpFilter(self.tau_s, step_mode=step_mode)]

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in dict(self._keys(), tau_s=self.tau_s).items())
        return f"Synapse({keys})"
