"""The fused kernels of the nonlinear point neurons (`neurons.nonlinear`): QIF / EIF, KLIF, LIAF and PSN,
each all T steps in one autograd node with a hand-written backward. The reverse recurrence through
the reset is `soma.backprop_reset`, shared with the linear soma. Each kernel equals the model's
reference step (`neurons.base.StepNeuron.step` under autograd; tests/test_zoo_nonlinear.py).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..surrogate import Sigmoid
from . import soma


def float_feedback(feedback) -> Optional[float]:
    """The feedback as a float, or None (a tensor feedback: the generic loop handles it)."""
    if isinstance(feedback, (int, float)) and not isinstance(feedback, bool):
        return float(feedback)
    return None


def nonlinear_if(model, kind, params, x_seq, state, feedback):
    fb = float_feedback(feedback)
    if fb is None:
        return None
    s, v = NonlinearIFScan.apply(
        x_seq,
        state[0].to(x_seq.dtype),
        kind,
        params,
        model.v_threshold,
        model.v_reset,
        model.surrogate,
        model.detach_reset,
        model.training,
        fb,
    )
    return s, (v,)


class NonlinearIFScan(torch.autograd.Function):
    """QIF / EIF, all T steps (h as in the module docstring, input x - feedback v[t-1]).

    The drive x / tau (+ constants) is written for all T first; per step only the nonlinearity is
    added in place, with the feedback folded into its constants:

        QIF:  q = v - c',  h += (a0 / tau) v q,   c' = v_rest + v_c - (tau - feedback) / a0
        EIF:  q = exp((v - theta_rh) / delta_T),  h += (1 - (1 + feedback) / tau) v + (delta_T / tau) q

    q [T, ...] is kept: alpha[t] = dh[t]/dv[t-1] is affine in it, (2 a0 / tau) q + (a0 (v_rest + v_c)
    + feedback) / tau - 1 (QIF) or q / tau + 1 - (1 + feedback) / tau (EIF)."""

    @staticmethod
    def forward(ctx, x_seq, v0, kind, params, theta, v_reset, firing, detach, training, fb):
        tau, p1, v_rest, p2 = params
        h_seq = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
        torch.div(x_seq, tau, out=h_seq)
        if kind == "qif":
            a0, v_c = p1, p2
            const, cq, A = a0 * v_rest * v_c / tau, v_rest + v_c - (tau - fb) / a0, a0 / tau
        else:
            delta_T, theta_rh = p1, p2
            const, c1, cE = v_rest / tau, 1.0 - (1.0 + fb) / tau, delta_T / tau
        if const != 0.0:
            h_seq.add_(const)
        s_seq, q_seq = torch.empty_like(h_seq), torch.empty_like(h_seq)
        v_buf = torch.empty_like(h_seq[0])
        v = v0
        for t in range(h_seq.shape[0]):
            h, q = h_seq[t], q_seq[t]
            if kind == "qif":
                torch.sub(v, cq, out=q)
                h.addcmul_(v, q, value=A)
            else:
                torch.sub(v, theta_rh, out=q)
                if delta_T != 1.0:
                    q.div_(delta_T)
                q.exp_()
                h.add_(v, alpha=c1).add_(q, alpha=cE)
            soma.fire_into(h, theta, firing, training, s_seq[t])
            v = soma.reset_into(h, s_seq[t], theta, v_reset, v_buf)
        ctx.save_for_backward(h_seq, s_seq, q_seq)
        ctx.args = (kind, params, theta, v_reset, firing, detach, fb)
        ctx.set_materialize_grads(False)
        return s_seq, v.clone() if v is v0 else v

    @staticmethod
    def backward(ctx, g_s, g_v):
        h_seq, s_seq, q_seq = ctx.saved_tensors
        kind, (tau, p1, v_rest, p2), theta, v_reset, firing, detach, fb = ctx.args
        if kind == "qif":
            alpha = torch.mul(q_seq, 2.0 * p1 / tau).add_((p1 * (v_rest + p2) + fb) / tau - 1.0)
        else:
            alpha = torch.mul(q_seq, 1.0 / tau).add_(1.0 - (1.0 + fb) / tau)
        g_h, g_v0, _ = soma.backprop_reset(h_seq, s_seq, alpha, theta, v_reset, firing, detach, g_s, g_v, per_step=True)
        return g_h.div_(tau), g_v0, None, None, None, None, None, None, None, None


class KLIFScan(torch.autograd.Function):
    """KLIF, all T steps: m = drive + alpha' v, F = relu(k m), s = F >= theta, v = reset(F or F / k).

    Backward: H = F, alpha[t] = k [F[t] > 0] alpha', and dL/dk = sum_t dL/dF[t] [F[t] > 0] m[t]
    (+ sum_t dL/dv[t] dv[t]/dk with scale_reset: -F (1 - s) / k^2 hard, -(F - theta s) / k^2 soft)."""

    @staticmethod
    def forward(ctx, x_seq, v0, k, tau, decay_input, scale_reset, theta, v_reset, firing, detach, training, fb):
        k_f = float(k.detach())
        m_seq, a1, gain = soma.lif_feedback_drive(x_seq, tau, decay_input, v_reset, fb)
        F_seq, s_seq = torch.empty_like(m_seq), torch.empty_like(m_seq)
        v_buf = torch.empty_like(m_seq[0])
        v = v0
        for t in range(m_seq.shape[0]):
            m, F, s = m_seq[t], F_seq[t], s_seq[t]
            m.add_(v, alpha=a1)
            torch.mul(m, k_f, out=F).relu_()
            soma.fire_into(F, theta, firing, training, s)
            if scale_reset:  # reset(F / k, s) with threshold theta / k
                v = torch.div(F, k_f, out=v_buf)
                if v_reset is None:
                    v.add_(s, alpha=-theta / k_f)
                else:
                    v.addcmul_(v, s, value=-1.0)
                    if v_reset != 0.0:
                        v.add_(s, alpha=v_reset)
            else:
                v = soma.reset_into(F, s, theta, v_reset, v_buf)
        ctx.save_for_backward(m_seq, F_seq, s_seq)
        ctx.args = (k_f, a1, gain, scale_reset, theta, v_reset, firing, detach)
        ctx.set_materialize_grads(False)
        return s_seq, v.clone() if v is v0 else v

    @staticmethod
    def backward(ctx, g_s, g_v):
        m_seq, F_seq, s_seq = ctx.saved_tensors
        k_f, a1, gain, scale_reset, theta, v_reset, firing, detach = ctx.args
        on = torch.gt(F_seq, 0.0).to(F_seq.dtype)  # relu's slope
        alpha = torch.mul(on, k_f * a1)
        keep = scale_reset and ctx.needs_input_grad[2]
        g_F, g_v0, carries = soma.backprop_reset(
            F_seq,
            s_seq,
            alpha,
            theta,
            v_reset,
            firing,
            detach,
            g_s,
            g_v,
            c=1.0 / k_f if scale_reset else 1.0,
            keep_carry=keep,
            per_step=True,
        )
        g_F.mul_(on)  # dL/d(k m)
        g_k = None
        if ctx.needs_input_grad[2]:
            g_k = torch.dot(g_F.flatten(), m_seq.flatten())
            if keep:  # v = reset(F / k, s): the direct dv/dk
                if v_reset is None:
                    direct = torch.add(F_seq, s_seq, alpha=-theta)
                else:
                    direct = torch.addcmul(F_seq, F_seq, s_seq, value=-1.0)
                g_k = g_k - torch.dot(carries.flatten(), direct.flatten()) / (k_f * k_f)
        return (g_F.mul_(k_f * gain), g_v0, g_k, None, None, None, None, None, None, None, None, None)


class LIAFScan(torch.autograd.Function):
    """LIAF, all T steps: h = drive + alpha' v, s = h >= theta, v = reset(h, s); then y = act(...)
    for all T at once. Backward: the recurrence with g_s = 0 and the direct gradient dL/dy act'."""

    @staticmethod
    def forward(ctx, x_seq, v0, tau, decay_input, theta, v_reset, firing, detach, training, fb, act, tr):
        h_seq, a1, gain = soma.lif_feedback_drive(x_seq, tau, decay_input, v_reset, fb)
        s_seq = torch.empty_like(h_seq)
        v_buf = torch.empty_like(h_seq[0])
        v = v0
        for t in range(h_seq.shape[0]):
            h = h_seq[t].add_(v, alpha=a1)
            soma.fire_into(h, theta, firing, training, s_seq[t])
            v = soma.reset_into(h, s_seq[t], theta, v_reset, v_buf)
        y = torch.sub(h_seq, theta) if tr else h_seq.clone()
        if act != "identity":
            getattr(y, act + "_")()  # relu_, sigmoid_, tanh_ in place
        ctx.save_for_backward(h_seq, s_seq, y if act != "identity" else None)
        ctx.args = (a1, gain, theta, v_reset, firing, detach, act, tr)
        ctx.set_materialize_grads(False)
        return y, v.clone() if v is v0 else v

    @staticmethod
    def backward(ctx, g_y, g_v):
        h_seq, s_seq, y = ctx.saved_tensors
        a1, gain, theta, v_reset, firing, detach, act, tr = ctx.args
        g_h = None
        if g_y is not None:  # dL/dy act'(z), one pass from y
            if act == "relu":
                g_h = torch.ops.aten.threshold_backward(g_y, y, 0.0)
            elif act == "sigmoid":
                g_h = torch.ops.aten.sigmoid_backward(g_y, y)
            elif act == "tanh":
                g_h = torch.ops.aten.tanh_backward(g_y, y)
            else:
                g_h = g_y
        g_h, g_v0, _ = soma.backprop_reset(h_seq, s_seq, a1, theta, v_reset, firing, detach, None, g_v, g_H=g_h)
        return g_h.mul_(gain) if gain != 1.0 else g_h, g_v0, None, None, None, None, None, None, None, None, None, None


class PSNFn(torch.autograd.Function):
    """PSN on x [T, N]: h = bias + W x, s = h >= 0. Backward: g_h = g_s F'(h), g_x = W^T g_h,
    g_W = g_h x^T, g_bias = sum over N of g_h. Both passes go over blocks of columns that stay in
    cache (one [T, T] x [T, N] product is memory-bound; blocks are about 2x faster here). For
    Sigmoid, F'(h) = a sig(a h) (1 - sig(a h)), with the factor a applied to the [T, T] factors."""

    @staticmethod
    def forward(ctx, x, weight, bias, firing):
        T, N = x.shape
        h, s = torch.empty_like(x), torch.empty_like(x)
        for i in range(0, N, psn_block(T)):
            cols = slice(i, i + psn_block(T))
            torch.ge(torch.addmm(bias, weight, x[:, cols], out=h[:, cols]), 0.0, out=s[:, cols])
        ctx.save_for_backward(x, weight, h)
        ctx.firing = firing
        return s

    @staticmethod
    def backward(ctx, g_s):
        x, weight, h = ctx.saved_tensors
        firing = ctx.firing
        T, N = x.shape
        C = psn_block(T)
        fast_sg = type(firing).grad is Sigmoid.grad
        a = firing.alpha if fast_sg else 1.0
        g_x = torch.empty_like(x)
        g_w, g_b = torch.zeros_like(weight), torch.zeros_like(weight[:, :1])
        w_t = weight.t() * a
        buf = torch.empty_like(x[:, :C])
        for i in range(0, N, C):
            cols = slice(i, i + C)
            if fast_sg:  # g = g_s y (1 - y), y = sig(a h)
                g = torch.mul(h[:, cols], a, out=buf[:, : min(C, N - i)]).sigmoid_()
                torch.ops.aten.sigmoid_backward(g_s[:, cols], g, grad_input=g)
            else:
                g = firing.grad(h[:, cols]).mul_(g_s[:, cols])
            torch.mm(w_t, g, out=g_x[:, cols])
            g_w.addmm_(g, x[:, cols].t())
            g_b.add_(g.sum(1, keepdim=True))
        return g_x, g_w.mul_(a), g_b.mul_(a), None


def psn_block(T: int) -> int:
    """Columns per block of the PSN kernel: about 128K floats (512 KiB) per [T, C] block."""
    return max(256, (1 << 17) // T)
