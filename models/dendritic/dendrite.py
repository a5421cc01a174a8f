"""The dendrite: K compartments per neuron, wired by a `wiring.Wiring`, driven by synaptic current.

Per time step t, for every neuron (tensors [..., K], the last axis the compartments):

    I_ext,j[t] = x_k[t] if j = input_index[k], else 0          external (synaptic) current
    I_int,j[t] = sum_i A[i, j] * g_ij * (v_i[t-1] - v_j[t-1])   coupling (``coupling_matrix``)
               = (v[t-1] @ C)_j,   C = G - diag(sum_i G_ij),   G = A * g
    v_p[t]     = compartment update of v_p[t-1] with I = I_ext + I_int   (`compartments.py`)
    v[t]       = v_p[t] + f(v_p[t])

and the dendrite hands the output compartments' v[t][..., output_index] to the soma. g is a scalar
or one value per edge (wiring.edges order), fixed (buffer) or learnable (parameter).

Passive compartments are linear, so all T steps are computed at once (``method="auto"``):

  * uncoupled, every compartment an input (segregated): v_p - v_rest = leaky_scan(x) per
    compartment, one [T, T] @ [T, B*S*K] matmul (`compartments.leaky_scan`); on CPU the same
    recurrence by T in-place steps in one autograd node (`compartments.leaky_recurrence`), O(T)
    instead of O(T^2) work per element;
  * coupled: with w = v_p - v_rest (differences cancel v_rest in I_int)

        w[t] = w[t-1] @ P + gain * I_ext[t],          P = a * Id + gain * C      [K, K]
             = sum_{s<=t} gain * I_ext[s] @ P^(t-s) + w[-1] @ P^(t+1)

    i.e. one block-lower-triangular [T*K, T*K_in] operator (``coupled_operator``) applied as one
    matmul over [T*K_in, B*S], plus [K, T*K] for the initial state.

An active part f is applied after the linear solve when there is no coupling; active compartments
with coupling (I_int depends on f(v_p)) run the step loop (``method="loop"`` forces it; the tests
check the two agree). Operators are cached per (T, dtype, device, parameters) and rebuilt with
autograd when g is learnable and gradients are on.

A soma needs only y[t] = sum_j c_j v_j[t]. `readout` computes it for a passive dendrite from a
rank-1 factorisation (`readout_factors`) with one pass over x; `loop_readout` runs the step loop of
coupled active compartments as one autograd node with a hand-written backward (`_CoupledLoop`).
`DendriticNeuron` uses them when the parameters are fixed.
"""

from __future__ import annotations

import math

from typing import Optional, Sequence, Union

import torch
from torch import nn

from .compartments import Passive, _fhat_, _fhat_slope, decay_operator, leaky_recurrence, leaky_scan
from .wiring import Wiring

Coupling = Union[float, Sequence[float]]


def coupling_matrix(K: int, edge_index: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """C [K, K] with I_int = v @ C for edges ``edge_index`` [2, E] (src, dest) and conductance g."""
    G = torch.zeros(K, K, dtype=g.dtype, device=g.device)
    G = G.index_put((edge_index[0], edge_index[1]), g.expand(edge_index.shape[1]))
    return G - torch.diag(G.sum(0))


def power_stack(P: torch.Tensor, n: int) -> torch.Tensor:
    """[n+1, K, K]: P^0, P^1, ..., P^n."""
    out = [torch.eye(P.shape[0], dtype=P.dtype, device=P.device)]
    for _ in range(n):
        out.append(out[-1] @ P)
    return torch.stack(out)


def coupled_operator(P: torch.Tensor, gain: float, T: int, input_index: torch.Tensor):
    """(op [T*K, T*K_in], init [K, T*K]) so that w[t] = sum_s gain I_ext[s] @ P^(t-s) + w0 @ P^(t+1).

    op[(t, j), (s, k)] = gain * P^(t-s)[input_index[k], j] for t >= s;  init[i, (t, j)] = P^(t+1)[i, j].
    """
    K = P.shape[0]
    pw = power_stack(P, T)                                          # [T+1, K, K]
    t = torch.arange(T, device=P.device)
    d = t[:, None] - t[None, :]                                     # [T, T] = t - s
    blocks = pw[d.clamp(min=0)] * (d >= 0).to(P.dtype)[..., None, None]   # [T, T, K, K] (t, s, i, j)
    blocks = blocks.index_select(2, input_index)                    # [T, T, K_in, K]
    op = gain * blocks.permute(0, 3, 1, 2).reshape(T * K, T * input_index.numel())
    init = pw[1:].permute(1, 0, 2).reshape(K, T * K)
    return op, init


def coupled_scan(x_seq: torch.Tensor, op: torch.Tensor, init: torch.Tensor, w0: Optional[torch.Tensor]):
    """Apply `coupled_operator` to x_seq [T, ..., K_in] (and initial deviation w0 [..., K])."""
    T, K_in = x_seq.shape[0], x_seq.shape[-1]
    K = init.shape[0]
    lead = x_seq.shape[1:-1]
    X = x_seq.reshape(T, -1, K_in).transpose(1, 2).reshape(T * K_in, -1)   # [T*K_in, N]
    W = torch.matmul(op, X).view(T, K, -1).transpose(1, 2)                  # [T, N, K]
    if w0 is not None:
        W = W + torch.matmul(w0.reshape(-1, K), init).view(-1, T, K).transpose(0, 1)
    return W.reshape(T, *lead, K)


def readout_factors(P: torch.Tensor, gain: float, T: int, input_index: torch.Tensor, c: torch.Tensor):
    """Rank-1 factors of a passive dendrite's read-out ``y[t] = sum_j c_j w_j[t]`` (w = v_p - v_rest).

    From the solution above, ``y[t] = sum_{s<=t} x[s] @ r[t-s] + w[-1] @ m0[:, t]`` with
    ``r[d] = gain * P^d[input_index] @ c`` [T, K_in] and ``m0[:, t] = P^(t+1) @ c`` [K, T]. When every
    r[d] is a multiple ``ell[d] * q`` of one vector q (segregated wirings, and any wiring whose inputs
    are symmetric under c, e.g. k-to-1 with equal phi), the read-out is a weighted sum over input
    compartments followed by one [T, T] Toeplitz operator over time:

        y = Ell @ (x @ q),   Ell[t, s] = ell[t - s]  (t >= s)

    and, when ell is geometric (ell[d] = ell[0] rho^d: segregated wirings), a leaky recurrence
    ``y[t] = rho y[t-1] + ell[0] (x[t] @ q)``. Returns ``(Ell [T, T], q [K_in], m0 [K, T], geo)``
    (float64, max |q| = 1; geo = (ell[0], rho) or None), or None when r has rank > 1.
    """
    P, c = P.double(), c.double()
    pw = power_stack(P, T)                                          # [T+1, K, K]
    r = gain * (pw[:T].index_select(1, input_index.to(P.device)) @ c)   # [T, K_in]
    m0 = (pw[1:] @ c).T.contiguous()                                # [K, T]
    peak = r.abs().amax(1)
    i = int(peak.argmax())
    if peak[i] == 0:
        q, ell = torch.ones_like(r[0]), torch.zeros_like(r[:, 0])
    else:
        q = r[i] / r[i].abs().amax()
        ell = (r @ q) / (q @ q)
        if (r - ell[:, None] * q).abs().amax() > 1e-10 * peak[i]:
            return None
        if (q - 1.0).abs().amax() < 1e-12:
            q = torch.ones_like(q)                                  # exactly uniform: a plain sum
    t = torch.arange(T, device=P.device)
    d = t[:, None] - t[None, :]
    Ell = torch.where(d >= 0, ell[d.clamp(min=0)], torch.zeros((), dtype=ell.dtype, device=ell.device))
    geo = None
    if ell[0] != 0:
        rho = float(ell[1] / ell[0]) if T > 1 else 0.0
        if (ell - ell[0] * rho ** t.to(ell.dtype)).abs().amax() <= 1e-10 * ell.abs().amax():
            geo = (float(ell[0]), rho)
    return Ell, q, m0, geo


class _CompartmentSum(torch.autograd.Function):
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
        g_x = torch.stack([g * v for v in q_list], dim=ctx.dim)   # compartment-major memory layout
        return g_x.movedim(ctx.dim, -1), None, None, None


class _CoupledLoop(torch.autograd.Function):
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
        gCt = (gain * C).T.contiguous()                            # I_int = C^T v, scaled by gain
        F_seq = new(T) if kind != "none" else None                  # fhat(v_p[t]), kept for f'
        y = torch.empty(T, N, dtype=x.dtype, device=x.device)
        V, F0 = new(), new()
        ws = [new(), new()]
        W = torch.zeros(K, N, dtype=x.dtype, device=x.device) if w0 is None else w0
        _potential(W, v_rest, kind, strength, beta, theta_d, V, F0)
        for t in range(T):
            Wt = ws[t % 2]
            torch.addmm(W, gCt, V, beta=a, out=Wt)                  # a w + gain C^T v
            if isinstance(inputs, slice):
                Wt[inputs].add_(x[t], alpha=gain)
            else:
                Wt.index_add_(0, inputs, x[t], alpha=gain)
            _potential(Wt, v_rest, kind, strength, beta, theta_d, V, None if F_seq is None else F_seq[t])
            torch.mv(V.T, c, out=y[t])
            W = Wt
        ctx.save_for_backward(F_seq, F0 if w0 is not None else None, C, c,
                              strength if isinstance(strength, torch.Tensor) else None)
        ctx.inputs, ctx.a, ctx.gain, ctx.shape = inputs, a, gain, (T, K, N)
        ctx.x_layout = (x.shape, x.stride())                        # the gradient is written in x's layout
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
        n_in = len(range(K)[inputs]) if isinstance(inputs, slice) else inputs.numel()
        g_x = torch.empty_strided(*ctx.x_layout, dtype=C.dtype, device=C.device)
        GV, Z = new(), new()
        bufs = [new(), new()]
        G_next = None                                               # dL/dw[t+1]
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
            _dv_dvp(None if F_seq is None else F_seq[t], GV, kind, strength, beta, Z, out=GW)
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
            _dv_dvp(F0, GV, kind, strength, beta, Z, out=g_w0)
            g_w0.add_(G_next, alpha=a)
        return g_x, g_w0, None, None, None, None, None, None, None, None, None, None


def _potential(W, v_rest, kind, strength, beta, theta_d, out, F):
    """out = v_p + f(v_p), v_p = W + v_rest, f = strength * fhat, fhat written to F (all [K, N];
    strength a float or a [K, 1] / 0-dim tensor)."""
    if kind == "none":
        torch.add(W, v_rest, out=out)
        return
    _fhat_(torch.sub(W, theta_d - v_rest, out=F), kind, beta)
    if isinstance(strength, torch.Tensor):
        torch.addcmul(W, F, strength, out=out)
    else:
        torch.add(W, F, alpha=strength, out=out)
    if v_rest != 0.0:
        out.add_(v_rest)


def _dv_dvp(F, G, kind, strength, beta, Z, out):
    """out = G (1 + f'(v_p)) from fhat(v_p) = F: f' = strength fhat', fhat' from F (`_fhat_slope`)."""
    if kind == "none":
        out.copy_(G)
        return
    _fhat_slope(F, kind, beta, Z)
    if isinstance(strength, torch.Tensor):
        Z.mul_(strength)
        torch.addcmul(G, G, Z, out=out)
    else:
        torch.addcmul(G, G, Z, value=strength, out=out)


class Dendrite(nn.Module):
    """Compartments + wiring + coupling. Holds parameters only; the neuron holds the state v_p."""

    def __init__(
        self,
        wiring: Wiring,
        compartment: Optional[nn.Module] = None,
        coupling_g: Optional[Coupling] = None,
        learn_g: bool = False,
        method: str = "auto",
    ):
        super().__init__()
        if not isinstance(wiring, Wiring):
            raise ValueError(f"wiring must be a dendsn.wiring.Wiring (got wiring={wiring!r})")
        if method not in ("auto", "loop"):
            raise ValueError(f"dendrite method must be 'auto' or 'loop' (got method={method!r})")
        K = wiring.n_compartments
        self.wiring, self.method = wiring, method
        self.compartment = compartment if compartment is not None else Passive()
        self.compartment.check_size(K)
        self.register_buffer("input_index", torch.tensor(wiring.input_index), persistent=False)
        self.register_buffer("output_index", torch.tensor(wiring.output_index), persistent=False)
        self.register_buffer("adjacency", wiring.adjacency, persistent=False)
        self.register_buffer(
            "edge_index", torch.tensor(wiring.edges, dtype=torch.long).reshape(-1, 2).T.contiguous(), persistent=False
        )
        self.inputs_are_all = wiring.input_index == list(range(K))
        self.outputs_are_all = wiring.output_index == list(range(K))
        if wiring.n_edges == 0:
            self.register_buffer("g", None)
        else:
            if coupling_g is None:
                coupling_g = auto_coupling(wiring, self.compartment)
            g = _check_coupling(coupling_g, wiring.n_edges)
            if learn_g:
                self.g = nn.Parameter(g)
            else:
                self.register_buffer("g", g)
        self._ops = {}

    # --- the equations -------------------------------------------------------------------------
    def external_current(self, x: torch.Tensor) -> torch.Tensor:
        """I_ext [..., K] from the input compartments' currents x [..., K_in]."""
        if self.inputs_are_all:
            return x
        zeros = x.new_zeros(*x.shape[:-1], self.wiring.n_compartments)
        return zeros.index_copy(-1, self.input_index, x)

    def coupling(self) -> Optional[torch.Tensor]:
        """C [K, K] (I_int = v @ C), or None without edges."""
        if self.g is None:
            return None
        return coupling_matrix(self.wiring.n_compartments, self.edge_index, self.g)

    def step(self, x: torch.Tensor, v_p: torch.Tensor):
        """One step: x [..., K_in], v_p [..., K] (previous passive state) -> (v_p, v) [..., K]."""
        current = self.external_current(x)
        C = self.coupling()
        if C is not None:
            current = current + self.compartment.potential(v_p) @ C.to(x.dtype)
        v_p = self.compartment.step(v_p, current)
        return v_p, self.compartment.potential(v_p)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """v_p at rest, [..., K] for input x [..., K_in]."""
        return x.new_full((*x.shape[:-1], self.wiring.n_compartments), self.compartment.v_rest)

    def output(self, v: torch.Tensor) -> torch.Tensor:
        """The soma-facing compartments: [..., K] -> [..., K_out]."""
        return v if self.outputs_are_all else v.index_select(-1, self.output_index)

    # --- all T steps -----------------------------------------------------------------------------
    def forward(self, x_seq: torch.Tensor, v_p0: Optional[torch.Tensor] = None):
        return self.multi_step(x_seq, v_p0)

    def path(self) -> str:
        """'segregated' | 'coupled' (all-at-once linear solves) or 'loop'."""
        if self.method == "loop":
            return "loop"
        if self.g is None and self.inputs_are_all:
            return "segregated"
        if self.g is None or self.compartment.linear:
            return "coupled"
        return "loop"

    def multi_step(self, x_seq: torch.Tensor, v_p0: Optional[torch.Tensor] = None):
        """x_seq [T, ..., K_in], v_p0 [..., K] or None (rest) -> (v_p_seq, v_seq), both [T, ..., K]."""
        if self.path() == "loop":
            v_p = self.initial(x_seq[0]) if v_p0 is None else v_p0
            vp_list, v_list = [], []
            for x_t in x_seq.unbind(0):                             # one backward node, not T slices
                v_p, v = self.step(x_t, v_p)
                vp_list.append(v_p)
                v_list.append(v)
            return torch.stack(vp_list), torch.stack(v_list)
        v_p = self.passive_seq(x_seq, v_p0)
        return v_p, self.compartment.potential(v_p)

    def passive_seq(self, x_seq: torch.Tensor, v_p0: Optional[torch.Tensor] = None) -> torch.Tensor:
        """v_p [T, ..., K] for all T steps at once (paths 'segregated' and 'coupled')."""
        T, v_rest = x_seq.shape[0], self.compartment.v_rest
        w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
        if self.path() == "segregated":
            if x_seq.device.type == "cpu":
                a, gain = self.compartment.terms()
                w = leaky_recurrence(x_seq, a, gain, w0)            # [T, ..., K]
            else:
                L, p = self._segregated_operator(T, x_seq)
                w = leaky_scan(x_seq, L, p, w0)                      # [T, ..., K]
        else:
            op, init = self._coupled_operator(T, x_seq)
            w = coupled_scan(x_seq, op, init, w0)                   # [T, ..., K]
        return w + v_rest if v_rest != 0.0 else w

    def readout(self, x_seq: torch.Tensor, factors, w0: Optional[torch.Tensor] = None, dim: int = -1):
        """``(y, scale)`` with ``scale * y[t] = sum_j c_j w_j[t]`` [T, ...], for factors ``(Ell, q,
        q_list, m0, geo)`` of `readout_factors` (cast to x's dtype and device): one pass over x
        [T, ..., K_in], then the [T, T] matmul, or on CPU for a geometric ell the leaky recurrence
        (scale = ell[0], left for the caller to fold in). ``dim``: where the compartments lie in
        memory for compartment-major (conv) inputs."""
        Ell, q, q_list, m0, geo = factors
        T = x_seq.shape[0]
        z = _CompartmentSum.apply(x_seq, q, q_list, dim)             # [T, ...]
        init = None if w0 is None else (w0.reshape(-1, m0.shape[0]) @ m0).T.reshape(z.shape)   # w[-1] @ m0
        if geo is not None and x_seq.device.type == "cpu":
            scale, rho = geo
            y = leaky_recurrence(z, rho)
            return (y if init is None else y + init / scale), scale
        y = torch.matmul(Ell, z.reshape(T, -1)).view(z.shape)
        return (y if init is None else y + init), 1.0

    def loop_readout(self, x_seq: torch.Tensor, c: torch.Tensor, v_p0: Optional[torch.Tensor] = None):
        """(y [T, ...], v_p[T-1] [..., K]) with y[t] = sum_k c_k v_k[t], by `_CoupledLoop` (fixed
        parameters; compartments Passive or Active). x_seq [T, ..., K_in] in either layout."""
        comp = self.compartment
        T, K_in, K = x_seq.shape[0], x_seq.shape[-1], self.wiring.n_compartments
        lead = x_seq.shape[1:-1]
        X = x_seq.movedim(-1, 1).reshape(T, K_in, -1)               # [T, K_in, N] compartment-major
        idx = self.wiring.input_index
        inputs = slice(idx[0], idx[0] + K_in) if idx == list(range(idx[0], idx[0] + K_in)) else self.input_index
        v_rest = comp.v_rest
        w0 = None
        if v_p0 is not None:
            w0 = (v_p0 - v_rest if v_rest != 0.0 else v_p0).reshape(-1, K).T.contiguous()
        dtype = torch.float32 if x_seq.dtype in (torch.float16, torch.bfloat16) else x_seq.dtype
        kind = getattr(comp, "activation", "none")
        strength = 1.0
        if kind != "none":
            s = comp.strength.detach().to(dtype)
            strength = s.view(K, 1) if s.dim() == 1 else s         # a tensor: no host sync
        C = self.coupling()
        C = torch.zeros(K, K, dtype=dtype, device=x_seq.device) if C is None else C.detach().to(dtype)
        beta, theta_d = getattr(comp, "beta", 1.0), getattr(comp, "theta_d", 0.0)
        a, gain = comp.terms()
        with torch.autocast(x_seq.device.type, enabled=False):
            y, w_last = _CoupledLoop.apply(X.to(dtype), None if w0 is None else w0.to(dtype), C, c.to(dtype), inputs,
                                           a, gain, v_rest, kind, strength, beta, theta_d)
        w_last = w_last.T.reshape(*lead, K)
        return y.view(T, *lead), (w_last + v_rest if v_rest != 0.0 else w_last)

    def last_state(self, x_seq: torch.Tensor, v_p0: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The passive potentials after the last step, v_p[T-1] [..., K], without the other T-1 steps."""
        T, v_rest, K = x_seq.shape[0], self.compartment.v_rest, self.wiring.n_compartments
        w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
        path = self.path()
        if path == "segregated":
            L, p = self._segregated_operator(T, x_seq)
            w = torch.tensordot(L[T - 1], x_seq, dims=([0], [0]))   # sum_s L[T-1, s] x[s]
            if w0 is not None:
                w = w + p[T - 1] * w0
        elif path == "coupled":
            op, init = self._coupled_operator(T, x_seq)
            K_in = x_seq.shape[-1]
            rows = op[(T - 1) * K:].view(K, T, K_in)                # [(j), (s, k)] of the last step
            X = x_seq.reshape(T, -1, K_in)
            w = X[0] @ rows[:, 0].T
            for s in range(1, T):
                w = torch.addmm(w, X[s], rows[:, s].T)
            w = w.view(*x_seq.shape[1:-1], K)
            if w0 is not None:
                w = w + (w0.reshape(-1, K) @ init[:, (T - 1) * K:]).view(w.shape)
        else:
            return self.multi_step(x_seq, v_p0)[0][-1]
        return w + v_rest if v_rest != 0.0 else w

    def _segregated_operator(self, T: int, like: torch.Tensor):
        a, gain = self.compartment.terms()
        key = ("segregated", T, like.dtype, like.device, a, gain)
        if key not in self._ops:
            self._ops = {key: decay_operator(a, T, gain, like.dtype, like.device)}
        return self._ops[key]

    def _coupled_operator(self, T: int, like: torch.Tensor):
        a, gain = self.compartment.terms()
        K = self.wiring.n_compartments
        if self.g is None:
            build = lambda: coupled_operator(a * torch.eye(K, dtype=like.dtype, device=like.device), gain, T, self.input_index)
            key = ("coupled", T, like.dtype, like.device, a, gain)
        else:
            build = lambda: coupled_operator(
                a * torch.eye(K, dtype=like.dtype, device=like.device) + gain * self.coupling().to(like.dtype),
                gain, T, self.input_index,
            )
            if self.g.requires_grad and torch.is_grad_enabled():
                return build()                                       # differentiable in g, not cached
            key = ("coupled", T, like.dtype, like.device, a, gain, self.g.data_ptr(), self.g._version)
        if key not in self._ops:
            self._ops = {key: build()}
        return self._ops[key]

    def growth(self, g: Optional[torch.Tensor] = None) -> float:
        """Spectral radius of the passive propagator P = a Id + gain C (with conductance ``g``, default
        this dendrite's): the factor by which the compartment potentials can grow per step without input.
        >= 1 means the explicit update is unstable (potentials oscillate and explode whatever the input)."""
        g = self.g if g is None else g
        if g is None:
            return abs(self.compartment.terms()[0])
        a, gain = self.compartment.terms()
        C = coupling_matrix(self.wiring.n_compartments, self.edge_index.cpu(), g.detach().double().cpu())
        P = a * torch.eye(self.wiring.n_compartments, dtype=torch.float64) + gain * C
        return float(torch.linalg.eigvals(P).abs().max())

    def stable_coupling_limit(self) -> float:
        """The largest scalar conductance g for which `growth` stays below 1 (bisection)."""
        if self.g is None:
            return math.inf
        lo, hi = 0.0, 1.0
        while self.growth(torch.tensor(hi)) < 1.0 and hi < 1e6:
            lo, hi = hi, hi * 2.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.growth(torch.tensor(mid)) < 1.0 else (lo, mid)
        return lo

    def extra_repr(self) -> str:
        return f"wiring={self.wiring!r}, method={self.method!r}"


def auto_coupling(wiring: Wiring, compartment: nn.Module) -> float:
    """The default conductance: the largest g for which every compartment's explicit update stays
    monotone, a - gain * g * d_j >= 0 for the largest in-degree d_j (a, gain of the passive update).
    A compartment then relaxes toward its inputs without overshoot, so the dendrite is stable for every
    wiring (g = 1 makes a k-to-1 tree with k = 3 grow 2.5x per step: its potentials explode)."""
    a, gain = compartment.terms()
    d_max = max(int(c) for c in wiring.adjacency.sum(0).tolist()) if wiring.n_edges else 1
    return a / (gain * max(d_max, 1))


def _check_coupling(coupling_g, n_edges: int) -> torch.Tensor:
    if isinstance(coupling_g, (int, float)) and not isinstance(coupling_g, bool):
        values = [float(coupling_g)]
    else:
        try:
            values = [float(v) for v in coupling_g]
        except (TypeError, ValueError):
            raise ValueError(f"coupling_g must be a number or a list of numbers (got coupling_g={coupling_g!r})") from None
        if len(values) != n_edges:
            raise ValueError(f"coupling_g has {len(values)} values but the wiring has {n_edges} edges (got coupling_g={coupling_g!r})")
    if not all(v >= 0 for v in values):
        raise ValueError(f"coupling_g must be >= 0 (got coupling_g={coupling_g!r})")
    return torch.tensor(values[0]) if len(values) == 1 and isinstance(coupling_g, (int, float)) else torch.tensor(values)
