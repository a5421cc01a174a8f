"""The soma: the one inherently sequential part of every neuron, as one multi-step autograd node (a
loop over T in the forward, a hand-written backward; the same code on CPU and CUDA, no fused kernel).

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

The LIF algebra lives here, once per floating-point form: ``lif_terms`` computes (alpha, u) for the
linear somas (LIF, PLIF and the dendritic neuron's LIF soma; ``lif_drive`` the same as (alpha, u,
gain) with u * gain the drive, for `multi_step`'s ``gain``); ``lif_charge`` is SpikingJelly's form
term for term, h = v + (x - (v - v_reset)) / tau, the reference step of KLIF, LIAF and ALIF, and
``lif_feedback_drive`` its drive for their fused kernels (`kernels.nonlinear`). The two forms are the
same map in exact arithmetic and round differently, so each model keeps the one its numbers were
recorded with.

`multi_step` runs all T steps in one autograd node, a few in-place tensor ops per step on [B, ...]
slices written into preallocated outputs (no autograd graph, no temporaries): three forward
(charge, fire as 0/1 floats, reset), and in reverse a handful that evaluate the surrogate derivative
of step t and the recurrence

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

from ..surrogate import Sigmoid, Surrogate

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


def lif_drive(x: torch.Tensor, inv_tau: Alpha, v_reset: Optional[float], decay_input: bool):
    """(alpha, u, gain) with ``gain * u`` the drive of `lif_terms`: a float 1/tau is left as a gain for
    `multi_step` to apply inside its loop (no separate pass over x) when there is no constant term."""
    if isinstance(inv_tau, float) and (v_reset is None or v_reset == 0.0):
        return 1.0 - inv_tau, x, (inv_tau if decay_input else 1.0)
    alpha, u = lif_terms(x, inv_tau, v_reset, decay_input)
    return alpha, u, 1.0


def lif_charge(x, v, tau: float, decay_input: bool, v_reset: Optional[float]):
    """h of the LIF charge in SpikingJelly's form, term for term (the reference step of KLIF, LIAF, ALIF)."""
    vr = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - vr)) / tau
    return v - (v - vr) / tau + x


def lif_feedback_drive(x_seq, tau: float, decay_input: bool, v_reset: Optional[float], fb: float):
    """(m_seq, alpha') of the LIF charge with feedback: m[t] = drive[t] + alpha' v[t-1] once the
    recurrent term is added, drive = x / tau + v_reset / tau (decay_input) or x + v_reset / tau,
    alpha' = 1 - 1/tau - gain feedback (gain 1/tau or 1); m_seq is a new contiguous [T, ...] buffer."""
    m_seq = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
    gain = 1.0 / tau if decay_input else 1.0
    if decay_input:
        torch.div(x_seq, tau, out=m_seq)
    else:
        m_seq.copy_(x_seq)
    if v_reset:
        m_seq.add_(v_reset / tau)
    return m_seq, 1.0 - 1.0 / tau - gain * fb, gain


def reset(h, s, theta, v_reset):
    """v after the reset, with autograd: h - theta s (soft, v_reset None) or h (1 - s) + v_reset s (hard)."""
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
    return s, reset(h, s_r, theta, v_reset), h


def fire_into(H: torch.Tensor, theta: float, firing, training: bool, out: torch.Tensor) -> torch.Tensor:
    """s = F(H - theta) into ``out``: 0/1 floats (a bool mask is slower on CPU), or a stochastic draw."""
    if firing.stochastic:
        return out.copy_(firing.spike(H - theta, training))
    return torch.ge(H, theta, out=out)


def reset_into(H, s, theta: float, v_reset: Optional[float], out: torch.Tensor) -> torch.Tensor:
    """v = H (1 - s) + v_reset s (hard, exact for s in {0, 1}) or H - theta s (soft), into ``out``."""
    if v_reset is None:
        return torch.add(H, s, alpha=-theta, out=out)
    torch.addcmul(H, H, s, value=-1.0, out=out)
    return out.add_(s, alpha=v_reset) if v_reset != 0.0 else out


def surrogate_slope(H: torch.Tensor, s: torch.Tensor, theta: float, firing, buf: Optional[torch.Tensor]):
    """The firing function's slope at H - theta. With ``buf`` (the sigmoid surrogate, computed in place
    in ``buf``) it is sig(a x) (1 - sig(a x)) without its factor a, which `backprop_reset` applies."""
    if buf is None:
        return firing.grad(H - theta, s)
    sg = torch.sub(H, theta, out=buf)
    sg.mul_(firing.alpha).sigmoid_()
    return sg.addcmul_(sg, sg, value=-1.0)


def through_reset(
    g, carry, gs_t, H, s, theta: float, v_reset: Optional[float], c: float, detach: bool, sg, a_sg: float, tmp
) -> None:
    """dL/dH[t] into ``g`` from dL/dv[t] (``carry``) and dL/ds[t] (``gs_t``), through the reset of
    `backprop_reset`'s docstring; ``sg`` the firing function's slope (times ``a_sg``)."""
    hard = v_reset is not None
    if detach:
        term = gs_t
    elif hard:  # g_s + carry (v_reset - c H)
        term = torch.addcmul(gs_t, carry, H, value=-c, out=tmp)
        if v_reset != 0.0:
            term.add_(carry, alpha=v_reset)
    else:  # g_s - c theta carry
        term = torch.add(gs_t, carry, alpha=-c * theta, out=tmp)
    if hard:  # c carry (1 - s) + a_sg sg term
        torch.addcmul(carry, carry, s, value=-1.0, out=g)
        if c != 1.0:
            g.mul_(c)
        g.addcmul_(term, sg, value=a_sg)
    elif c == 1.0:
        torch.addcmul(carry, term, sg, value=a_sg, out=g)
    else:
        torch.mul(carry, c, out=g)
        g.addcmul_(term, sg, value=a_sg)


def backprop_reset(
    H_seq,
    s_seq,
    alpha,
    theta,
    v_reset,
    firing,
    detach,
    g_s,
    g_v_last,
    g_H=None,
    c=1.0,
    keep_carry=False,
    per_step=False,
    g_v_seq=None,
):
    """The reverse recurrence of a one-state soma (module docstring): ``v[t] = c H[t] (1 - s[t]) +
    v_reset s[t]`` (hard) or ``c (H[t] - theta s[t])`` (soft), ``s[t] = F(H[t] - theta)``, and
    ``dH[t]/dv[t-1] = alpha`` (a float, a tensor for every step, or [T, ...] with ``per_step``). ``g_H``
    [T, ...] is a direct gradient of H, ``g_v_seq`` [T, ...] one of v after each step's reset.

    Returns (dL/dH [T, ...], dL/dv0, dL/dv [T, ...] after each reset when ``keep_carry``, else None)."""
    T = H_seq.shape[0]
    fast_sg = type(firing).grad is Sigmoid.grad  # sg in place: a sig(a x) (1 - sig(a x))
    a_sg = firing.alpha if fast_sg else 1.0
    g_seq = torch.empty_like(H_seq)
    sg_buf = torch.empty_like(H_seq[0]) if fast_sg else None
    tmp = torch.empty_like(H_seq[0])
    zero = torch.zeros((), dtype=H_seq.dtype, device=H_seq.device)
    carries = torch.zeros_like(H_seq) if keep_carry else None
    carry, own = g_v_last, False  # dL/dv[t]
    for t in range(T - 1, -1, -1):
        H = H_seq[t]
        if g_v_seq is not None:
            carry, own = (g_v_seq[t] if carry is None else carry + g_v_seq[t]), False
        sg = surrogate_slope(H, s_seq[t], theta, firing, sg_buf)
        g = g_seq[t]
        if carry is None:
            if g_s is None:
                g.zero_()
            else:
                torch.mul(g_s[t], sg, out=g)
                if a_sg != 1.0:
                    g.mul_(a_sg)
        else:
            if keep_carry:
                carries[t].copy_(carry)
            through_reset(
                g, carry, zero if g_s is None else g_s[t], H, s_seq[t], theta, v_reset, c, detach, sg, a_sg, tmp
            )
        if g_H is not None:
            g.add_(g_H[t])
        if not own:  # never write into a given gradient
            carry, own = torch.empty_like(g), True
        torch.mul(g, alpha[t] if per_step else alpha, out=carry)
    return g_seq, carry, carries


class SomaScan(torch.autograd.Function):
    """All T steps of the soma in one autograd node (see the module docstring).

    Forward, per step: ``h[t] = u[t] + alpha v`` (``gain * u[t]`` first when the drive is scaled),
    ``s[t] = h >= theta`` as 0/1 floats (a bool mask is slower on CPU), and ``v = h - h s + v_reset s``
    (hard reset, the same values as masked_fill for finite h) or ``v = h - theta s`` (soft).
    Backward, per step in reverse: the surrogate derivative of step t (in place for Sigmoid) and
    the recurrence, on [B, ...] slices that stay in cache.
    """

    @staticmethod
    def forward(ctx, u_seq, v0, alpha_t, alpha_f, gain, theta, v_reset, firing, detach_reset, training, keep_v):
        T = u_seq.shape[0]
        h_seq = torch.empty_like(u_seq, memory_format=torch.contiguous_format)
        s_seq = torch.empty_like(h_seq)
        v_seq = torch.empty_like(h_seq) if keep_v else None
        v_buf = None if keep_v else torch.empty_like(h_seq[0])
        v = v0
        for t in range(T):
            h, s = h_seq[t], s_seq[t]
            if gain != 1.0:  # h = gain * x[t] + alpha * v
                torch.mul(u_seq[t], gain, out=h)
                if alpha_t is None:
                    h.add_(v, alpha=alpha_f)
                else:
                    h.addcmul_(v, alpha_t)
            elif alpha_t is None:
                torch.add(u_seq[t], v, alpha=alpha_f, out=h)
            else:
                torch.addcmul(u_seq[t], v, alpha_t, out=h)
            fire_into(h, theta, firing, training, s)
            v = reset_into(h, s, theta, v_reset, v_seq[t] if keep_v else v_buf)
        v_last = v.clone() if keep_v else v
        ctx.save_for_backward(h_seq, s_seq, v0, alpha_t)
        ctx.alpha_f, ctx.gain, ctx.theta, ctx.v_reset = alpha_f, gain, theta, v_reset
        ctx.firing, ctx.detach_reset = firing, detach_reset
        ctx.set_materialize_grads(False)  # unused outputs: None, not zeros
        return s_seq, v_last, h_seq, v_seq

    @staticmethod
    def backward(ctx, g_s, g_v_last, g_h, g_v_seq):
        h_seq, s_seq, v0, alpha_t = ctx.saved_tensors
        theta, v_reset, gain = ctx.theta, ctx.v_reset, ctx.gain
        alpha = ctx.alpha_f if alpha_t is None else alpha_t
        g_u, g_v0, _ = backprop_reset(
            h_seq, s_seq, alpha, theta, v_reset, ctx.firing, ctx.detach_reset, g_s, g_v_last, g_H=g_h, g_v_seq=g_v_seq
        )
        g_alpha = None
        if alpha_t is not None and ctx.needs_input_grad[2]:
            v_prev = torch.cat([v0.expand_as(h_seq[:1]), reset(h_seq[:-1], s_seq[:-1], theta, v_reset)])
            g_alpha = sum_to((g_u * v_prev).sum(0), alpha_t.shape)
        if gain != 1.0:
            g_u.mul_(gain)
        return g_u, g_v0, g_alpha, None, None, None, None, None, None, None, None


def sum_to(g: torch.Tensor, shape) -> torch.Tensor:
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
    gain: float = 1.0,
):
    """Run the soma over ``u_seq`` [T, ...] from ``v0`` [...].

    The drive is ``gain * u_seq`` (``gain`` a float, folded into the kernel so that a scaled input
    such as LIF's x / tau costs no extra pass). Returns ``(s_seq, v_last, h_seq, v_seq)``: spikes
    [T, ...], the potential after the last step, the charged potentials before firing [T, ...], and
    the post-reset potentials [T, ...] when ``keep_v`` (else None). Half-precision drives are
    integrated in float32.
    """
    dtype = u_seq.dtype
    if dtype in (torch.float16, torch.bfloat16):
        u_seq = u_seq.float()
    if v0.dtype != u_seq.dtype:
        v0 = v0.to(u_seq.dtype)
    if isinstance(alpha, torch.Tensor):
        alpha_t, alpha_f = alpha.to(u_seq.dtype), 0.0
    else:
        alpha_t, alpha_f = None, float(alpha)
    s, v, h, v_seq = SomaScan.apply(
        u_seq, v0, alpha_t, alpha_f, float(gain), float(theta), v_reset, firing, detach_reset, training, keep_v
    )
    if s.dtype != dtype:
        s = s.to(dtype)
    return s, v, h, v_seq
