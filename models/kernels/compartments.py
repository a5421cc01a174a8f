"""The compartments' kernels: the leaky recurrence h[t] = a h[t-1] + gain x[t] of a passive compartment
for all T at once (`leaky_scan`, one [T, T] matmul; `leaky_recurrence`, T in-place steps in one
autograd node), and the fused scan of active segregated compartments read out for the soma
(`active_scan`). The reference is `dendritic.compartments` (`Passive.step`, `Active.potential`,
`fhat`); `fhat_` and `fhat_slope` are fhat in place and its slope from the kept value.
tests/test_fast_paths.py and tests/test_dend_dynamics.py check them against it.
"""

from __future__ import annotations

from typing import Optional

import torch


def decay_operator(a: float, T: int, gain: float = 1.0, dtype=None, device=None):
    """(L, p): L [T, T] with L[t, s] = gain * a^(t-s) for t >= s (else 0); p [T] with p[t] = a^(t+1)."""
    t = torch.arange(T, dtype=torch.float64)
    d = t[:, None] - t[None, :]  # [T, T] = t - s
    L = torch.where(
        d >= 0, gain * torch.tensor(a, dtype=torch.float64) ** d.clamp(min=0), torch.zeros((), dtype=torch.float64)
    )
    p = torch.tensor(a, dtype=torch.float64) ** (t + 1)
    return L.to(dtype=dtype, device=device), p.to(dtype=dtype, device=device)


def leaky_scan(x_seq: torch.Tensor, L: torch.Tensor, p: torch.Tensor, h0: Optional[torch.Tensor] = None):
    """h[t] = a h[t-1] + gain x[t] for all t at once; ``(L, p)`` from `decay_operator`. x_seq [T, ...]."""
    T = x_seq.shape[0]
    h = torch.matmul(L, x_seq.reshape(T, -1)).view(x_seq.shape)  # ONE matmul over the time axis
    if h0 is not None:
        h = h + p.view(T, *([1] * h0.dim())) * h0
    return h


class LeakyRecurrence(torch.autograd.Function):
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


def leaky_recurrence(
    x_seq: torch.Tensor, a: float, gain: float = 1.0, h0: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """h[t] = a h[t-1] + gain x[t] for x_seq [T, ...] (h0 [...] or None = 0): the same result as
    `leaky_scan`, by T in-place steps in one autograd node (O(T N) work; the [T, T] operator is
    O(T^2 N)). The faster of the two on CPU; on GPU one matmul beats T small kernels."""
    return LeakyRecurrence.apply(x_seq, float(a), float(gain), h0)


def fhat_(f: torch.Tensor, activation: str, beta: float) -> torch.Tensor:
    """`fhat` in place on f = z (the scan's buffer)."""
    if activation == "sigmoid":
        return f.mul_(beta).sigmoid_()
    if activation == "tanh":
        return f.mul_(beta).tanh_()
    if activation == "softplus":
        return f.copy_(torch.nn.functional.softplus(f, beta=beta))
    return f.relu_()


def fhat_slope(F: torch.Tensor, activation: str, beta: float, out: torch.Tensor) -> torch.Tensor:
    """d fhat / dz from the kept F = fhat(z), into ``out``."""
    if activation == "sigmoid":  # beta F (1 - F)
        return torch.addcmul(F, F, F, value=-1.0, out=out).mul_(beta)
    if activation == "tanh":  # beta (1 - F^2)
        return torch.mul(F, F, out=out).neg_().add_(1.0).mul_(beta)
    if activation == "softplus":  # sigmoid(beta z) = 1 - exp(-beta F)
        return torch.mul(F, -beta, out=out).exp_().neg_().add_(1.0)
    return torch.gt(F, 0.0, out=out)


class ActiveScan(torch.autograd.Function):
    """Uncoupled active compartments read out for the soma, one step at a time in one autograd node:

        w[t] = a w[t-1] + gain x[t]                         (w = v_p - v_rest, w[-1] = w0)
        y[t] = sum_k c_k (v_p + f(v_p))_k - v_rest sum_k c_k
             = sum_k c_k w_k[t] + sum_k cs_k F_k[t],   F = fhat(v_p), f = strength * fhat, cs = c * strength

    and the reverse loop  G[t] = g_y[t] (c + cs fhat'(v_p[t])) + a G[t+1],  dL/dx[t] = gain G[t], with
    fhat' from the kept F (`fhat_slope`: sigmoid beta F (1 - F), tanh beta (1 - F^2), softplus
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
            f = fhat_(torch.sub(w, theta, out=F[t]), activation, beta)  # theta = theta_d - v_rest
            if uniform:  # y = c (w + (cs / c) F) summed over k
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
        else:  # g_y broadcast over k, one copy
            G = g_y.unsqueeze(-1).expand(F.shape).contiguous()
        for t in range(T - 1, -1, -1):
            if g_y is not None:  # D = c + cs fhat'(v_p)
                fhat_slope(F[t], ctx.activation, beta, D).mul_(cs).add_(c)
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
    """`ActiveScan` on x [T, ..., K] (w0 [..., K] or None): (y [T, ...], w[T-1] [..., K])."""
    T, K = x.shape[0], x.shape[-1]
    y, w_last = ActiveScan.apply(
        x.reshape(T, -1, K), None if w0 is None else w0.reshape(-1, K), a, gain, c, cs, activation, beta, theta
    )
    return y.view(x.shape[:-1]), w_last.view(x.shape[1:])
