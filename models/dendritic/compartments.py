"""Dendritic compartments: leaky integrators without reset, optionally with an active part.

Passive compartment (a leaky integrator of its input current I; no threshold, no reset):

    decay_input:      v_p[t] = v_p[t-1] + (I[t] - (v_p[t-1] - v_rest)) / tau_d
    no decay_input:   v_p[t] = v_p[t-1] - (v_p[t-1] - v_rest) / tau_d + I[t]

both of the form (``passive_terms``)

    v_p[t] - v_rest = a * (v_p[t-1] - v_rest) + gain * I[t],   a = 1 - 1/tau_d,
                                                              gain = 1/tau_d (decay_input) or 1

with v_p[-1] = v_rest. Active compartment: the same passive potential v_p plus an active part that
is a function of it; the compartment's potential (what couples to neighbours and feeds the soma) is

    v[t] = v_p[t] + f(v_p[t])
    f = none:               f(v) = 0                                  (a passive compartment)
        sigmoid:            f(v) = strength * sigmoid(beta * (v - theta_d))   (plateau, amplitude)
        tanh:               f(v) = strength * tanh(beta * (v - theta_d))      (signed plateau: below
                                                                               theta_d it subtracts)
        softplus:           f(v) = strength * softplus(beta * (v - theta_d)) / beta   (a smooth
                                                                               threshold_linear)
        threshold_linear:   f(v) = strength * relu(v - theta_d)               (gain above theta_d)

(``ACTIVATIONS`` lists the names.)

``strength`` is a float (shared) or a list with one value per compartment (per branch), fixed or
learnable (``learn_strength``). The state carried from step to step is v_p.

Because v_p has no reset, an uncoupled compartment is a linear recurrence h[t] = a h[t-1] + x[t],
solved for all T steps at once by ``leaky_scan``: with the lower-triangular operator

    L[t, s] = gain * a^(t-s)   (t >= s),   h[t] = sum_s L[t, s] x[s] + a^(t+1) h[-1]

one [T, T] @ [T, N] matmul over the time axis (memory O(T N), no [T, T, N] temporary). On CPU
``leaky_recurrence`` computes the same by T in-place steps in one autograd node (O(T N) work).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

Strength = Union[float, Sequence[float]]


def passive_terms(tau_d: float, decay_input: bool):
    """(a, gain) of ``v_p - v_rest = a (v_p[t-1] - v_rest) + gain * I``."""
    return 1.0 - 1.0 / tau_d, (1.0 / tau_d if decay_input else 1.0)


def passive_step(v_p: torch.Tensor, current: torch.Tensor, a: float, gain: float, v_rest: float) -> torch.Tensor:
    """One step of the passive potential (see the module docstring)."""
    w = v_p - v_rest if v_rest != 0.0 else v_p
    w = a * w + gain * current
    return w + v_rest if v_rest != 0.0 else w


def decay_operator(a: float, T: int, gain: float = 1.0, dtype=None, device=None):
    """(L, p): L [T, T] with L[t, s] = gain * a^(t-s) for t >= s (else 0); p [T] with p[t] = a^(t+1)."""
    t = torch.arange(T, dtype=torch.float64)
    d = t[:, None] - t[None, :]                                   # [T, T] = t - s
    L = torch.where(d >= 0, gain * torch.tensor(a, dtype=torch.float64) ** d.clamp(min=0), torch.zeros((), dtype=torch.float64))
    p = torch.tensor(a, dtype=torch.float64) ** (t + 1)
    return L.to(dtype=dtype, device=device), p.to(dtype=dtype, device=device)


def leaky_scan(x_seq: torch.Tensor, L: torch.Tensor, p: torch.Tensor, h0: Optional[torch.Tensor] = None):
    """h[t] = a h[t-1] + gain x[t] for all t at once; ``(L, p)`` from `decay_operator`. x_seq [T, ...]."""
    T = x_seq.shape[0]
    h = torch.matmul(L, x_seq.reshape(T, -1)).view(x_seq.shape)  # ONE matmul over the time axis
    if h0 is not None:
        h = h + p.view(T, *([1] * h0.dim())) * h0
    return h


class _LeakyRecurrence(torch.autograd.Function):
    """h[t] = a h[t-1] + gain x[t] (h[-1] = h0), one step at a time in one autograd node; the
    backward is the same recurrence reversed: G[t] = g[t] + a G[t+1], dx = gain G, dh0 = a G[0]."""

    @staticmethod
    def forward(ctx, x, a, gain, h0):
        T = x.shape[0]
        h = torch.empty_like(x, memory_format=torch.contiguous_format)
        for t in range(T):
            prev = h0 if t == 0 else h[t - 1]
            if gain != 1.0:
                torch.mul(x[t], gain, out=h[t])
                if prev is not None:
                    h[t].add_(prev, alpha=a)
            elif prev is None:
                h[t].copy_(x[t])
            else:
                torch.add(x[t], prev, alpha=a, out=h[t])
        ctx.a, ctx.gain = a, gain
        return h

    @staticmethod
    def backward(ctx, g):
        a, gain = ctx.a, ctx.gain
        T = g.shape[0]
        G = torch.empty_like(g, memory_format=torch.contiguous_format)
        G[T - 1].copy_(g[T - 1])
        for t in range(T - 2, -1, -1):
            torch.add(g[t], G[t + 1], alpha=a, out=G[t])
        g_h0 = G[0] * a if ctx.needs_input_grad[3] else None
        if gain != 1.0:
            G.mul_(gain)
        return G, None, None, g_h0


def leaky_recurrence(x_seq: torch.Tensor, a: float, gain: float = 1.0, h0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """h[t] = a h[t-1] + gain x[t] for x_seq [T, ...] (h0 [...] or None = 0): the same result as
    `leaky_scan`, by T in-place steps in one autograd node (O(T N) work; the [T, T] operator is
    O(T^2 N)). The faster of the two on CPU; on GPU one matmul beats T small kernels."""
    return _LeakyRecurrence.apply(x_seq, float(a), float(gain), h0)


ACTIVATIONS = ("none", "sigmoid", "tanh", "softplus", "threshold_linear")   # an Active compartment's f


def plateau(v_p: torch.Tensor, strength, beta: float, theta_d: float) -> torch.Tensor:
    return strength * torch.sigmoid(beta * (v_p - theta_d))


def threshold_linear(v_p: torch.Tensor, strength, theta_d: float) -> torch.Tensor:
    return strength * torch.relu(v_p - theta_d)


def fhat(z: torch.Tensor, activation: str, beta: float) -> torch.Tensor:
    """f / strength as a function of z = v_p - theta_d, for every name in ACTIVATIONS."""
    if activation == "sigmoid":
        return torch.sigmoid(beta * z)
    if activation == "tanh":
        return torch.tanh(beta * z)
    if activation == "softplus":
        return torch.nn.functional.softplus(beta * z) / beta
    if activation == "threshold_linear":
        return torch.relu(z)
    return torch.zeros_like(z)


def _fhat_(f: torch.Tensor, activation: str, beta: float) -> torch.Tensor:
    """`fhat` in place on f = z (the scan's buffer)."""
    if activation == "sigmoid":
        return f.mul_(beta).sigmoid_()
    if activation == "tanh":
        return f.mul_(beta).tanh_()
    if activation == "softplus":
        return f.copy_(torch.nn.functional.softplus(f, beta=beta))
    return f.relu_()


def _fhat_slope(F: torch.Tensor, activation: str, beta: float, out: torch.Tensor) -> torch.Tensor:
    """d fhat / dz from the kept F = fhat(z), into ``out``."""
    if activation == "sigmoid":                       # beta F (1 - F)
        return torch.addcmul(F, F, F, value=-1.0, out=out).mul_(beta)
    if activation == "tanh":                          # beta (1 - F^2)
        return torch.mul(F, F, out=out).neg_().add_(1.0).mul_(beta)
    if activation == "softplus":                      # sigmoid(beta z) = 1 - exp(-beta F)
        return torch.mul(F, -beta, out=out).exp_().neg_().add_(1.0)
    return torch.gt(F, 0.0, out=out)


class _ActiveScan(torch.autograd.Function):
    """Uncoupled active compartments read out for the soma, one step at a time in one autograd node:

        w[t] = a w[t-1] + gain x[t]                         (w = v_p - v_rest, w[-1] = w0)
        y[t] = sum_k c_k (v_p + f(v_p))_k - v_rest sum_k c_k
             = sum_k c_k w_k[t] + sum_k cs_k F_k[t],   F = fhat(v_p), f = strength * fhat, cs = c * strength

    and the reverse loop  G[t] = g_y[t] (c + cs fhat'(v_p[t])) + a G[t+1],  dL/dx[t] = gain G[t], with
    fhat' from the kept F (`_fhat_slope`: sigmoid beta F (1 - F), tanh beta (1 - F^2), softplus
    1 - exp(-beta F), threshold-linear F > 0). Each step works on
    [N, K] slices that stay in cache. ``c``, ``cs``: floats (uniform) or [K] tensors.
    Returns (y [T, N], w[T-1] [N, K]).
    """

    @staticmethod
    def forward(ctx, x, w0, a, gain, c, cs, activation, beta, theta):
        T, N, K = x.shape
        uniform = not isinstance(c, torch.Tensor)
        vec = lambda v: v if isinstance(v, torch.Tensor) else torch.full((K,), v, dtype=x.dtype, device=x.device)
        F = torch.empty_like(x, memory_format=torch.contiguous_format)
        y = torch.empty(T, N, dtype=x.dtype, device=x.device)
        ws = [torch.empty_like(F[0]), torch.empty_like(F[0])]
        E = torch.empty_like(F[0])
        prev = w0
        for t in range(T):
            w = ws[t % 2]
            if prev is None:
                torch.mul(x[t], gain, out=w)
            elif gain == 1.0:
                torch.add(x[t], prev, alpha=a, out=w)
            else:
                torch.mul(x[t], gain, out=w).add_(prev, alpha=a)
            f = _fhat_(torch.sub(w, theta, out=F[t]), activation, beta)   # theta = theta_d - v_rest
            if uniform:                                              # y = c (w + (cs / c) F) summed over k
                torch.add(w, f, alpha=cs / c if c != 0.0 else 0.0, out=E)
                torch.mv(E, vec(c), out=y[t])
            else:
                torch.mv(w, c, out=y[t])
                y[t].addmv_(f, cs)
            prev = w
        ctx.save_for_backward(F, w0)
        ctx.a, ctx.gain, ctx.c, ctx.cs, ctx.activation, ctx.beta = a, gain, c, cs, activation, beta
        ctx.set_materialize_grads(False)
        return y, prev.clone()

    @staticmethod
    def backward(ctx, g_y, g_wlast):
        F, w0 = ctx.saved_tensors
        a, gain, c, cs, beta = ctx.a, ctx.gain, ctx.c, ctx.cs, ctx.beta
        T = F.shape[0]
        D = torch.empty_like(F[0])
        if g_y is None:
            G = torch.zeros_like(F)
        else:                                                        # g_y broadcast over k, one copy
            G = g_y.unsqueeze(-1).expand(F.shape).contiguous()
        for t in range(T - 1, -1, -1):
            if g_y is not None:                                      # D = c + cs fhat'(v_p)
                _fhat_slope(F[t], ctx.activation, beta, D).mul_(cs).add_(c)
                G[t].mul_(D)
            if t < T - 1:
                G[t].add_(G[t + 1], alpha=a)
            elif g_wlast is not None:
                G[t].add_(g_wlast)
        g_w0 = G[0] * a if ctx.needs_input_grad[1] else None
        if gain != 1.0:
            G.mul_(gain)
        return G, g_w0, None, None, None, None, None, None, None


def active_scan(x: torch.Tensor, w0, a: float, gain: float, c, cs, activation: str, beta: float, theta: float):
    """`_ActiveScan` on x [T, ..., K] (w0 [..., K] or None): (y [T, ...], w[T-1] [..., K])."""
    T, K = x.shape[0], x.shape[-1]
    y, w_last = _ActiveScan.apply(x.reshape(T, -1, K), None if w0 is None else w0.reshape(-1, K),
                                  a, gain, c, cs, activation, beta, theta)
    return y.view(x.shape[:-1]), w_last.view(x.shape[1:])


def _check_tau_d(tau_d) -> float:
    if not isinstance(tau_d, (int, float)) or isinstance(tau_d, bool) or not tau_d > 1:
        raise ValueError(f"tau_d must be a number > 1 (got tau_d={tau_d!r})")
    return float(tau_d)


class Passive(nn.Module):
    """Passive compartments: leaky integrators with time constant ``tau_d`` and rest ``v_rest``."""

    linear = True                  # v is a linear function of the inputs: the dendrite may solve it at once

    def __init__(self, tau_d: float = 2.0, decay_input: bool = True, v_rest: float = 0.0):
        super().__init__()
        self.tau_d = _check_tau_d(tau_d)
        self.decay_input = bool(decay_input)
        self.v_rest = float(v_rest)

    def terms(self):
        """(a, gain) of the passive update."""
        return passive_terms(self.tau_d, self.decay_input)

    def step(self, v_p: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        a, gain = self.terms()
        return passive_step(v_p, current, a, gain, self.v_rest)

    def potential(self, v_p: torch.Tensor) -> torch.Tensor:
        """v = v_p + f(v_p); f = 0 here."""
        return v_p

    def check_size(self, n_compartments: int) -> None:
        """Called by the dendrite: per-compartment parameters must match K."""

    def extra_repr(self) -> str:
        return f"tau_d={self.tau_d}, decay_input={self.decay_input}, v_rest={self.v_rest}"


class Active(Passive):
    """A passive potential plus an active part f(v_p) (see the module docstring)."""

    def __init__(
        self,
        tau_d: float = 2.0,
        decay_input: bool = True,
        v_rest: float = 0.0,
        activation: str = "sigmoid",
        theta_d: float = 0.5,
        beta: float = 5.0,
        strength: Strength = 1.0,
        learn_strength: bool = False,
    ):
        super().__init__(tau_d, decay_input, v_rest)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} (got activation={activation!r})")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (got beta={beta!r})")
        values = [strength] if isinstance(strength, (int, float)) else list(strength)
        if not values or not all(isinstance(s, (int, float)) and s == s for s in values):
            raise ValueError(f"strength must be a number or a non-empty list of numbers (got strength={strength!r})")
        self.activation, self.theta_d, self.beta = activation, float(theta_d), float(beta)
        s = torch.tensor(values if not isinstance(strength, (int, float)) else float(strength))
        if learn_strength:
            self.strength = nn.Parameter(s)
        else:
            self.register_buffer("strength", s)

    @property
    def linear(self) -> bool:
        return self.activation == "none"

    def potential(self, v_p: torch.Tensor) -> torch.Tensor:
        if self.activation == "none":
            return v_p
        return v_p + self.strength * fhat(v_p - self.theta_d, self.activation, self.beta)

    def check_size(self, n_compartments: int) -> None:
        if self.strength.dim() == 1 and self.strength.numel() != n_compartments:
            raise ValueError(
                f"strength has {self.strength.numel()} values but the wiring has {n_compartments} compartments"
            )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}, theta_d={self.theta_d}, beta={self.beta}"
