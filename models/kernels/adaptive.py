"""The fused kernel of the two-state adaptive neurons (`neurons.adaptive`: AdEx, Izhikevich): all T
steps in one autograd node with a hand-written backward. The reference is the model's `charge` /
`after` step under autograd (tests/test_zoo_adaptive.py checks the kernel against it).
"""

from __future__ import annotations

import torch

from ..surrogate import Sigmoid

EXP_CAP = 20.0  # AdEx: exp((v - theta_rh) / delta_T) is evaluated at most at exp(20) (no overflow on a runaway v)


class _AdaptScan(torch.autograd.Function):
    """All T steps of `neurons.adaptive` two-state models (AdEx, Izhikevich) (one sub-step each) in one autograd node.

    Forward, per step, in place into preallocated [T, B, ...] outputs (no autograd graph):
        h = v + (k (x[t] - f v) + q(v) - w) / tau;  s = h >= theta
        w = (1 - 1/tau_w) w + (a / tau_w)(h - v_rest) + b s;  v = reset(h, s)
    Backward, per step in reverse, with c_v = dL/dv[t], c_w = dL/dw[t] (after step t) and F' the
    surrogate derivative at h[t] - theta:
        dL/dh     = g_s F' + c_v dv/dh + c_w (a / tau_w + b F')
        dL/dx[t]  = k dL/dh / tau
        dL/dv[t-1] = dL/dh (1 + (q'(v[t-1]) - k f) / tau)
        dL/dw[t-1] = (1 - 1/tau_w) c_w - dL/dh / tau
    with dv/dh = 1 - s + (v_reset - h) F' (hard) or 1 - theta F' (soft); no F' term with detach_reset.
    q = a0 (v - v_rest)(v - v_c) (quadratic) or -(v - v_rest) + delta_T exp((v - theta_rh) / delta_T).
    """

    @staticmethod
    def forward(ctx, x_seq, v0, w0, cell, feedback):
        T = x_seq.shape[0]
        k, tau, inv_tw = cell.input_scale, cell.tau, 1.0 / cell.tau_w
        theta, v_reset, vr = cell.v_threshold, cell.v_reset, cell.v_rest
        h_seq = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
        s_seq = torch.empty_like(h_seq)
        v_seq = torch.empty_like(h_seq)  # v after step t's reset
        w = w0.to(h_seq.dtype).clone(memory_format=torch.contiguous_format)
        tmp = torch.empty_like(h_seq[0])
        v = v0.to(h_seq.dtype)
        for t in range(T):
            h, s = h_seq[t], s_seq[t]
            if k == 1.0:  # h = k x - w  (then + q(v), - k f v)
                torch.sub(x_seq[t], w, out=h)
            else:
                torch.mul(x_seq[t], k, out=h)
                h.sub_(w)
            add_q(h, v, cell, tmp)
            if feedback:
                h.add_(v, alpha=-k * feedback)
            torch.add(v, h, alpha=1.0 / tau, out=h)  # h = v + (...) / tau
            torch.ge(h, theta, out=s)
            w.mul_(1.0 - inv_tw).add_(h, alpha=cell.a * inv_tw)  # w + (a (h - v_rest) - w) / tau_w + b s
            if vr != 0.0 and cell.a != 0.0:
                w.add_(-cell.a * vr * inv_tw)
            if cell.b != 0.0:
                w.add_(s, alpha=cell.b)
            v = v_seq[t]
            if v_reset is None:
                torch.add(h, s, alpha=-theta, out=v)
            else:
                torch.addcmul(h, h, s, value=-1.0, out=v)  # h (1 - s), exact for s in {0, 1}
                if v_reset != 0.0:
                    v.add_(s, alpha=v_reset)
        ctx.save_for_backward(h_seq, s_seq, v_seq, v0)
        ctx.cell, ctx.feedback = cell, feedback
        ctx.set_materialize_grads(False)
        return s_seq, v_seq[-1].clone(), w

    @staticmethod
    def backward(ctx, g_s, g_v, g_w):
        h_seq, s_seq, v_seq, v0 = ctx.saved_tensors
        cell, f = ctx.cell, ctx.feedback
        k, tau, inv_tw, a, b = cell.input_scale, cell.tau, 1.0 / cell.tau_w, cell.a, cell.b
        theta, v_reset, detach = cell.v_threshold, cell.v_reset, cell.detach_reset
        firing = cell.surrogate
        fast_sg = type(firing).grad is Sigmoid.grad
        T = h_seq.shape[0]
        g_x = torch.empty_like(h_seq)
        sg_buf, term, tmp = (torch.empty_like(h_seq[0]) for _ in range(3))
        zero = torch.zeros((), dtype=h_seq.dtype, device=h_seq.device)
        c_v = g_v.clone() if g_v is not None else torch.zeros_like(h_seq[0])
        c_w = g_w.clone() if g_w is not None else torch.zeros_like(h_seq[0])
        for t in range(T - 1, -1, -1):
            h, s, gh = h_seq[t], s_seq[t], g_x[t]
            if fast_sg:  # F' = alpha sig (1 - sig), in place
                sg = torch.sub(h, theta, out=sg_buf)
                sg.mul_(firing.alpha).sigmoid_()
                sg.addcmul_(sg, sg, value=-1.0).mul_(firing.alpha)
            else:
                sg = firing.grad(h - theta, s)
            gs_t = g_s[t] if g_s is not None else zero
            # coefficient of F':  g_s + c_v (v_reset - h | -theta) + b c_w
            if detach:
                torch.add(gs_t, c_w, alpha=b, out=term)
            elif v_reset is None:
                torch.add(gs_t, c_v, alpha=-theta, out=term)
                term.add_(c_w, alpha=b)
            else:
                torch.addcmul(gs_t, c_v, h, value=-1.0, out=term)
                if v_reset != 0.0:
                    term.add_(c_v, alpha=v_reset)
                term.add_(c_w, alpha=b)
            if v_reset is None:  # the F'-free part: c_v dv/dh + c_w a / tau_w
                torch.add(c_v, c_w, alpha=a * inv_tw, out=gh)
            else:
                torch.addcmul(c_v, c_v, s, value=-1.0, out=gh)
                gh.add_(c_w, alpha=a * inv_tw)
            gh.addcmul_(term, sg)
            c_w.mul_(1.0 - inv_tw).add_(gh, alpha=-1.0 / tau)
            v_prev = v_seq[t - 1] if t > 0 else v0
            dq(tmp, v_prev, cell)  # q'(v[t-1])
            tmp.add_(1.0 * tau - k * f).mul_(1.0 / tau)  # 1 + (q' - k f) / tau
            torch.mul(gh, tmp, out=c_v)
        g_x.mul_(k / tau)
        return g_x, c_v, c_w, None, None


AdaptScan = _AdaptScan  # its autograd node keeps the name _AdaptScanBackward (tests look for it)


def add_q(h: torch.Tensor, v: torch.Tensor, cell, tmp: torch.Tensor) -> None:
    """h += q(v), in place (tmp a scratch buffer)."""
    if cell.kind == "quadratic":  # a0 (v - vr)(v - vc) = a0 v (v - vr - vc) + a0 vr vc
        torch.sub(v, cell.v_rest + cell.v_c, out=tmp)
        h.addcmul_(v, tmp, value=cell.a0)
        if cell.v_rest * cell.v_c != 0.0:
            h.add_(cell.a0 * cell.v_rest * cell.v_c)
    else:  # -(v - vr) + dT exp((v - th) / dT)
        torch.sub(v, cell.theta_rh, out=tmp)
        tmp.mul_(1.0 / cell.delta_T).clamp_(max=EXP_CAP).exp_()
        h.add_(tmp, alpha=cell.delta_T).sub_(v)
        if cell.v_rest != 0.0:
            h.add_(cell.v_rest)


def dq(out: torch.Tensor, v: torch.Tensor, cell) -> None:
    """out = q'(v)."""
    if cell.kind == "quadratic":  # a0 (2 v - vr - vc)
        torch.mul(v, 2.0 * cell.a0, out=out)
        out.add_(-cell.a0 * (cell.v_rest + cell.v_c))
    else:  # exp((v - th) / dT) - 1 (0 past the cap)
        torch.sub(v, cell.theta_rh, out=out)
        out.mul_(1.0 / cell.delta_T)
        capped = out > EXP_CAP
        out.exp_().sub_(1.0)
        if capped.any():
            out.masked_fill_(capped, -1.0)
