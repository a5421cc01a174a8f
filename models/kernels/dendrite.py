"""The dendrite's kernels: `CompartmentSum` (the rank-1 read-out's weighted sum over input compartments
in one pass) and `CoupledLoop` (the step loop of a coupled dendrite of active compartments, read out
for the soma, in one autograd node). The reference is `dendritic.dendrite.Dendrite.step` under
autograd (tests/test_fast_paths.py).
"""

from __future__ import annotations

import torch

from .compartments import fhat_, fhat_slope


class CompartmentSum(torch.autograd.Function):
    """z = sum_k q_k x[..., k] in one pass over x (no [..., K] temporary); the backward writes
    q_k * g straight into a gradient laid out like x (neuron-major, or compartment-major at ``dim``)."""

    @staticmethod
    def forward(ctx, x, q, q_list, dim):
        K = x.shape[-1]
        ctx.q, ctx.q_list, ctx.dim, ctx.contiguous = q, q_list, dim, x.is_contiguous()
        if K == 1:
            return x[..., 0] * q_list[0]
        if ctx.contiguous:
            return torch.mv(x.view(-1, K), q).view(x.shape[:-1])
        z = torch.mul(x[..., 0], q_list[0])
        for k in range(1, K):
            z.add_(x[..., k], alpha=q_list[k])
        return z

    @staticmethod
    def backward(ctx, g):
        q_list = ctx.q_list
        K = len(q_list)
        if ctx.contiguous and K > 1:
            g2 = g.reshape(-1, 1)
            if all(v == 1.0 for v in q_list):
                g_x = g2.expand(-1, K).contiguous()
            else:
                g_x = g2 * ctx.q.to(g.dtype)
            return g_x.view(*g.shape, K), None, None, None
        g_x = torch.stack([g * v for v in q_list], dim=ctx.dim)  # compartment-major memory layout
        return g_x.movedim(ctx.dim, -1), None, None, None


class CoupledLoop(torch.autograd.Function):
    """The step loop of a coupled dendrite, read out for the soma, in one autograd node.

    For compartments whose potential is v = v_p + f(v_p) with f elementwise (active compartments
    make the coupling current nonlinear in v_p, so there is no all-at-once solution), per step

        w[t] = a w[t-1] + gain (C^T v[t-1] + I_ext[t]),   v[t] = w[t] + v_rest + f(w[t] + v_rest)
        y[t] = sum_k c_k v_k[t]

    in a compartment-major [K, N] layout (one [K, K] @ [K, N] matmul a step instead of a skinny
    [N, K] @ [K, K] one), no autograd graph per step, and a hand-written reverse loop:

        G_v[t] = c g_y[t] + gain C G_w[t+1],   G_w[t] = G_v[t] (1 + f'(v_p[t])) + a G_w[t+1]
        dL/dx[t] = gain G_w[t][input_index]

    Returns (y [T, N], w[T-1] [K, N]). ``x`` [T, K_in, N], ``w0`` [K, N] or None; the parameters
    (C, c, strength) are fixed here: learnable ones take the autograd step loop.
    """

    @staticmethod
    def forward(ctx, x, w0, C, c, inputs, a, gain, v_rest, kind, strength, beta, theta_d):
        T, _, N = x.shape
        K = C.shape[0]
        new = lambda *lead: torch.empty(*lead, K, N, dtype=x.dtype, device=x.device)
        gCt = (gain * C).T.contiguous()  # I_int = C^T v, scaled by gain
        F_seq = new(T) if kind != "none" else None  # fhat(v_p[t]), kept for f'
        y = torch.empty(T, N, dtype=x.dtype, device=x.device)
        V, F0 = new(), new()
        ws = [new(), new()]
        W = torch.zeros(K, N, dtype=x.dtype, device=x.device) if w0 is None else w0
        potential_into(W, v_rest, kind, strength, beta, theta_d, V, F0)
        for t in range(T):
            Wt = ws[t % 2]
            torch.addmm(W, gCt, V, beta=a, out=Wt)  # a w + gain C^T v
            if isinstance(inputs, slice):
                Wt[inputs].add_(x[t], alpha=gain)
            else:
                Wt.index_add_(0, inputs, x[t], alpha=gain)
            potential_into(Wt, v_rest, kind, strength, beta, theta_d, V, None if F_seq is None else F_seq[t])
            torch.mv(V.T, c, out=y[t])
            W = Wt
        ctx.save_for_backward(
            F_seq, F0 if w0 is not None else None, C, c, strength if isinstance(strength, torch.Tensor) else None
        )
        ctx.inputs, ctx.a, ctx.gain, ctx.shape = inputs, a, gain, (T, K, N)
        ctx.x_layout = (x.shape, x.stride())  # the gradient is written in x's layout
        ctx.kind, ctx.strength_f, ctx.beta = kind, strength, beta
        ctx.set_materialize_grads(False)
        return y, W.clone()

    @staticmethod
    def backward(ctx, g_y, g_wlast):
        F_seq, F0, C, c, strength_t = ctx.saved_tensors
        inputs, a, gain, kind, beta = ctx.inputs, ctx.a, ctx.gain, ctx.kind, ctx.beta
        strength = strength_t if strength_t is not None else ctx.strength_f
        T, K, N = ctx.shape
        new = lambda *lead: torch.empty(*lead, K, N, dtype=C.dtype, device=C.device)
        gC = gain * C
        g_x = torch.empty_strided(*ctx.x_layout, dtype=C.dtype, device=C.device)
        GV, Z = new(), new()
        bufs = [new(), new()]
        G_next = None  # dL/dw[t+1]
        for t in range(T - 1, -1, -1):
            if G_next is None:
                if g_y is None:
                    GV.zero_()
                else:
                    torch.mul(c[:, None], g_y[t][None, :], out=GV)
            else:
                torch.mm(gC, G_next, out=GV)
                if g_y is not None:
                    GV.addr_(c, g_y[t])
            GW = bufs[t % 2]
            dv_dvp_into(None if F_seq is None else F_seq[t], GV, kind, strength, beta, Z, out=GW)
            if G_next is not None:
                GW.add_(G_next, alpha=a)
            elif g_wlast is not None:
                GW.add_(g_wlast)
            torch.mul(GW[inputs] if isinstance(inputs, slice) else GW.index_select(0, inputs), gain, out=g_x[t])
            G_next = GW
        g_w0 = None
        if ctx.needs_input_grad[1]:
            torch.mm(gC, G_next, out=GV)
            g_w0 = new()
            dv_dvp_into(F0, GV, kind, strength, beta, Z, out=g_w0)
            g_w0.add_(G_next, alpha=a)
        return g_x, g_w0, None, None, None, None, None, None, None, None, None, None


def potential_into(W, v_rest, kind, strength, beta, theta_d, out, F):
    """out = v_p + f(v_p), v_p = W + v_rest, f = strength * fhat, fhat written to F (all [K, N];
    strength a float or a [K, 1] / 0-dim tensor)."""
    if kind == "none":
        torch.add(W, v_rest, out=out)
        return
    fhat_(torch.sub(W, theta_d - v_rest, out=F), kind, beta)
    if isinstance(strength, torch.Tensor):
        torch.addcmul(W, F, strength, out=out)
    else:
        torch.add(W, F, alpha=strength, out=out)
    if v_rest != 0.0:
        out.add_(v_rest)


def dv_dvp_into(F, G, kind, strength, beta, Z, out):
    """out = G (1 + f'(v_p)) from fhat(v_p) = F: f' = strength fhat', fhat' from F (`fhat_slope`)."""
    if kind == "none":
        out.copy_(G)
        return
    fhat_slope(F, kind, beta, Z)
    if isinstance(strength, torch.Tensor):
        Z.mul_(strength)
        torch.addcmul(G, G, Z, out=out)
    else:
        torch.addcmul(G, G, Z, value=strength, out=out)
