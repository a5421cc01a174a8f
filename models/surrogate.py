"""Firing functions: how a soma turns its potential into spikes, and the gradient it passes back.

A firing function acts on ``x = h - theta`` (charged potential minus threshold) and has two faces:

    spike(x)  -> s in {0, 1}          forward
    grad(x, s) -> ds/dx               backward (a surrogate for the Heaviside step)

Deterministic surrogates spike with ``s = H(x)`` (``H(0) = 1``) and pass back a smooth bump. The
parametrisation matches SpikingJelly's, so the same ``alpha`` gives the same gradients:

    Sigmoid:    ds/dx = alpha * sig(alpha x) * (1 - sig(alpha x))
    ATan:       ds/dx = (alpha / 2) / (1 + (pi/2 * alpha * x)^2)
    Triangle:   ds/dx = max(0, alpha - alpha^2 * |x|)
    SuperSpike: ds/dx = alpha / (1 + alpha |x|)^2

Stochastic firing spikes with probability ``p(x)`` and passes back ``dp/dx``, the exact gradient
of the expected spike count:

    logistic:     p = 2 f_max sig(beta x)                 (clipped to 1)
    exponential:  p = f_max exp(beta x)                   (clipped to 1)

In eval mode a stochastic soma is still stochastic unless ``deterministic_eval=True``, in which
case it spikes where ``p >= 0.5``.
"""

from __future__ import annotations

import math

import torch


class Surrogate:
    """Heaviside forward, smooth derivative backward. Subclasses define ``grad``."""

    stochastic = False

    def __init__(self, alpha: float):
        if not alpha > 0:
            raise ValueError(f"surrogate alpha must be > 0 (got {alpha})")
        self.alpha = float(alpha)

    def spike(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        return (x >= 0).to(x.dtype)

    def grad(self, x: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spike with this surrogate's gradient (autograd-aware, for single-step use)."""
        return _SpikeFn.apply(x, self, True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"


class Sigmoid(Surrogate):
    def __init__(self, alpha: float = 4.0):
        super().__init__(alpha)

    def grad(self, x, s=None):
        sg = torch.sigmoid(self.alpha * x)
        return sg * (1.0 - sg) * self.alpha


class ATan(Surrogate):
    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def grad(self, x, s=None):
        z = x * (math.pi / 2 * self.alpha)
        return (self.alpha / 2) / (1 + z * z)


class Triangle(Surrogate):
    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def grad(self, x, s=None):
        return (self.alpha - self.alpha * self.alpha * x.abs()).clamp_min(0)


class SuperSpike(Surrogate):
    """ds/dx = alpha / (1 + alpha |x|)^2 (Zenke & Ganguli 2018, normalised to peak alpha)."""

    def __init__(self, alpha: float = 10.0):
        super().__init__(alpha)

    def grad(self, x, s=None):
        z = 1 + self.alpha * x.abs()
        return self.alpha / (z * z)


class StochasticFiring:
    """Spike with probability p(x); backward passes dp/dx (exact for the expectation)."""

    stochastic = True

    def __init__(
        self,
        kind: str = "logistic",
        f_max: float = 0.5,
        beta: float = 5.0,
        deterministic_eval: bool = False,
    ):
        if kind not in ("logistic", "exponential"):
            raise ValueError(f"stochastic firing kind must be 'logistic' or 'exponential' (got {kind!r})")
        if not 0 < f_max <= 1:
            raise ValueError(f"stochastic firing f_max must be in (0, 1] (got {f_max})")
        if not beta > 0:
            raise ValueError(f"stochastic firing beta must be > 0 (got {beta})")
        self.kind, self.f_max, self.beta = kind, float(f_max), float(beta)
        self.deterministic_eval = deterministic_eval

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "logistic":
            return (2 * self.f_max * torch.sigmoid(self.beta * x)).clamp(max=1.0)
        return (self.f_max * torch.exp(self.beta * x)).clamp(max=1.0)

    def spike(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        p = self.probability(x)
        if not training and self.deterministic_eval:
            return (p >= 0.5).to(x.dtype)
        return torch.bernoulli(p)

    def grad(self, x, s=None):
        if self.kind == "logistic":
            sg = torch.sigmoid(self.beta * x)
            g = 2 * self.f_max * self.beta * sg * (1 - sg)
            return torch.where(2 * self.f_max * sg < 1.0, g, torch.zeros_like(g))
        p = self.f_max * torch.exp(self.beta * x)
        return torch.where(p < 1.0, self.beta * p, torch.zeros_like(p))

    def __call__(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        return _SpikeFn.apply(x, self, training)

    def __repr__(self) -> str:
        return f"StochasticFiring(kind={self.kind!r}, f_max={self.f_max}, beta={self.beta})"


class _SpikeFn(torch.autograd.Function):
    """s = firing.spike(x); ds/dx = firing.grad(x, s)."""

    @staticmethod
    def forward(ctx, x, firing, training):
        s = firing.spike(x, training)
        ctx.save_for_backward(x, s)
        ctx.firing = firing
        return s

    @staticmethod
    def backward(ctx, grad_s):
        x, s = ctx.saved_tensors
        return grad_s * ctx.firing.grad(x, s), None, None


def firing(
    kind: str = "deterministic",
    f_max: float = 0.5,
    beta: float = 5.0,
    deterministic_eval: bool = False,
):
    """The firing function a config names: None for deterministic firing (the neuron's surrogate
    decides the gradient), or `StochasticFiring` of ``kind`` 'logistic' / 'exponential'."""
    if kind == "deterministic":
        return None
    if kind not in ("logistic", "exponential"):
        raise ValueError(f"firing kind must be 'deterministic', 'logistic' or 'exponential' (got {kind!r})")
    return StochasticFiring(kind, f_max, beta, deterministic_eval)
