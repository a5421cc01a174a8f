"""The soma: the one inherently sequential part of every neuron, as one fused multi-step kernel.

Every soma in dendsn (point LIF / IF / PLIF, and the soma of a dendritic neuron) is a linear leaky
integrator followed by a firing function and a reset. Per time step t:

    h[t] = alpha * v[t-1] + u[t]                     charge
    s[t] = F(h[t] - theta)                           fire (Heaviside + surrogate, or stochastic)
    v[t] = h[t] - theta * s[t]                       soft reset   (v_reset is None)
    v[t] = (1 - s[t]) * h[t] + s[t] * v_reset        hard reset

``u`` is the drive already scaled by the model, ``alpha`` the per-step retention. For example

    LIF, decay_input:     alpha = 1 - 1/tau,  u[t] = (x[t] + v_reset) / tau
    LIF, no decay_input:  alpha = 1 - 1/tau,  u[t] = x[t] + v_reset / tau
    IF:                   alpha = 1,          u[t] = x[t]

``lif_terms`` computes (alpha, u) for the LIF family so models do not write the algebra twice.

`multi_step` runs all T steps in one autograd node: the forward loop does three tensor ops a
step, and the backward pass computes every surrogate derivative for all T at once, leaving a
two-op recurrence per step:

    dL/dh[t]   = dL/ds[t] * F'(h[t]-theta) + dL/dv[t] * dv[t]/dh[t]
    dL/dv[t-1] = alpha * dL/dh[t]  (+ the direct gradient of v[t-1], when it is an output)
    dL/du[t]   = dL/dh[t],  dL/dalpha = sum_t dL/dh[t] * v[t-1]

with dv/dh = 1 - theta F' (soft) or 1 - s + (v_reset - h) F' (hard); the F' terms vanish with
``detach_reset``. `single_step` is the same update written with autograd, for online rules; both
give the same values and gradients.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .surrogate import Surrogate

Alpha = Union[float, torch.Tensor]


def lif_terms(x: torch.Tensor, inv_tau: Alpha, v_reset: Optional[float], decay_input: bool):
    """(alpha, u) of a LIF soma with leak ``inv_tau = 1/tau`` (float or tensor) and drive ``x``."""
    vr = 0.0 if v_reset is None else v_reset
    alpha = 1.0 - inv_tau
    if decay_input:
        u = x * inv_tau if vr == 0.0 else (x + vr) * inv_tau
    else:
        u = x if vr == 0.0 else x + vr * inv_tau
    return alpha, u


def _reset(h, s, theta, v_reset):
    if v_reset is None:
        return h - theta * s
    return h * (1.0 - s) + v_reset * s


def single_step(
    u: torch.Tensor,
    v: torch.Tensor,
    alpha: Alpha,
    theta: float,
    v_reset: Optional[float],
    firing: Surrogate,
    detach_reset: bool = False,
    training: bool = True,
):
    """One step of the soma with autograd. Returns (s, v_new, h)."""
    h = alpha * v + u
    if firing.stochastic:
        s = firing(h - theta, training)
    else:
        s = firing(h - theta)
    s_r = s.detach() if detach_reset else s
    return s, _reset(h, s_r, theta, v_reset), h


class _SomaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u_seq, v0, alpha_t, alpha_f, theta, v_reset, firing, detach_reset, training, keep_v):
        alpha = alpha_f if alpha_t is None else alpha_t
        T = u_seq.shape[0]
        h_seq = torch.empty_like(u_seq)
        v = v0
        v_seq = torch.empty_like(u_seq) if keep_v else None
        stochastic = firing.stochastic
        if stochastic:
            s_seq = torch.empty_like(u_seq)
        else:
            fired = torch.empty(u_seq.shape, dtype=torch.bool, device=u_seq.device)
        hard = v_reset is not None
        for t in range(T):
            h = h_seq[t]
            if alpha_t is None:
                torch.add(u_seq[t], v, alpha=alpha_f, out=h)
            else:
                torch.addcmul(u_seq[t], v, alpha_t, out=h)
            if stochastic:
                s_seq[t] = firing.spike(h - theta, training)
                f = s_seq[t] > 0
            else:
                f = fired[t]
                torch.ge(h, theta, out=f)
            if hard:
                v = h.masked_fill(f, v_reset)
            else:
                v = torch.where(f, h - theta, h)
            if keep_v:
                v_seq[t] = v
        if not stochastic:
            s_seq = fired.to(u_seq.dtype)
        ctx.save_for_backward(h_seq, s_seq, v0, alpha_t)
        ctx.alpha_f, ctx.theta, ctx.v_reset = alpha_f, theta, v_reset
        ctx.firing, ctx.detach_reset = firing, detach_reset
        return s_seq, v, h_seq, v_seq

    @staticmethod
    def backward(ctx, g_s, g_v_last, g_h, g_v_seq):
        h_seq, s_seq, v0, alpha_t = ctx.saved_tensors
        theta, v_reset = ctx.theta, ctx.v_reset
        alpha = ctx.alpha_f if alpha_t is None else alpha_t
        T = h_seq.shape[0]
        x = h_seq - theta
        sg = ctx.firing.grad(x, s_seq)                           # [T, ...] all steps at once
        gs_sg = g_s * sg if g_s is not None else torch.zeros_like(h_seq)
        if g_h is not None:
            gs_sg = gs_sg + g_h
        if v_reset is None:
            dvdh = None if ctx.detach_reset else 1.0 - theta * sg
        else:
            dvdh = 1.0 - s_seq
            if not ctx.detach_reset:
                dvdh = dvdh + (v_reset - h_seq) * sg
        g_u = torch.empty_like(h_seq)
        carry = g_v_last if g_v_last is not None else torch.zeros_like(h_seq[0])
        for t in range(T - 1, -1, -1):
            if g_v_seq is not None:
                carry = carry + g_v_seq[t]
            if dvdh is None:
                torch.add(gs_sg[t], carry, out=g_u[t])
            else:
                torch.addcmul(gs_sg[t], carry, dvdh[t], out=g_u[t])
            carry = g_u[t] * alpha
        g_alpha = None
        if alpha_t is not None and ctx.needs_input_grad[2]:
            v_prev = torch.cat([v0.expand_as(h_seq[:1]), _reset(h_seq[:-1], s_seq[:-1], theta, v_reset)])
            g_alpha = (g_u * v_prev).sum(0)
            g_alpha = _sum_to(g_alpha, alpha_t.shape)
        return g_u, carry, g_alpha, None, None, None, None, None, None, None


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    """Reduce a broadcast gradient ``g`` back to ``shape``."""
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    g = g.sum(dim=tuple(range(lead))) if lead > 0 else g
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def multi_step(
    u_seq: torch.Tensor,
    v0: torch.Tensor,
    alpha: Alpha,
    theta: float,
    v_reset: Optional[float],
    firing: Surrogate,
    detach_reset: bool = False,
    training: bool = True,
    keep_v: bool = False,
):
    """Run the soma over ``u_seq`` [T, ...] from ``v0`` [...].

    Returns ``(s_seq, v_last, h_seq, v_seq)``: spikes [T, ...], the potential after the last step,
    the charged potentials before firing [T, ...], and the post-reset potentials [T, ...] when
    ``keep_v`` (else None). Half-precision drives are integrated in float32.
    """
    dtype = u_seq.dtype
    if dtype in (torch.float16, torch.bfloat16):
        u_seq = u_seq.float()
    v0 = v0.to(u_seq.dtype)
    if isinstance(alpha, torch.Tensor):
        alpha_t, alpha_f = alpha.to(u_seq.dtype), 0.0
    else:
        alpha_t, alpha_f = None, float(alpha)
    s, v, h, v_seq = _SomaScan.apply(
        u_seq, v0, alpha_t, alpha_f, float(theta), v_reset, firing, detach_reset, training, keep_v
    )
    if s.dtype != dtype:
        s = s.to(dtype)
    return s, v, h, v_seq
