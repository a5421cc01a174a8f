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
    compartment, one [T, T] @ [T, B*S*K] matmul (`kernels.compartments.leaky_scan`); on CPU the same
    recurrence by T in-place steps in one autograd node (`kernels.compartments.leaky_recurrence`), O(T)
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
coupled active compartments as one autograd node with a hand-written backward (`kernels.dendrite.CoupledLoop`).
`DendriticNeuron` uses them when the parameters are fixed.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..kernels import dendrite as fused
from ..kernels.compartments import decay_operator, leaky_recurrence, leaky_scan
from .compartments import Passive
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
    pw = power_stack(P, T)  # [T+1, K, K]
    t = torch.arange(T, device=P.device)
    d = t[:, None] - t[None, :]  # [T, T] = t - s
    blocks = pw[d.clamp(min=0)] * (d >= 0).to(P.dtype)[..., None, None]  # [T, T, K, K] (t, s, i, j)
    blocks = blocks.index_select(2, input_index)  # [T, T, K_in, K]
    op = gain * blocks.permute(0, 3, 1, 2).reshape(T * K, T * input_index.numel())
    init = pw[1:].permute(1, 0, 2).reshape(K, T * K)
    return op, init


def coupled_scan(x_seq: torch.Tensor, op: torch.Tensor, init: torch.Tensor, w0: Optional[torch.Tensor]):
    """Apply `coupled_operator` to x_seq [T, ..., K_in] (and initial deviation w0 [..., K])."""
    T, K_in = x_seq.shape[0], x_seq.shape[-1]
    K = init.shape[0]
    lead = x_seq.shape[1:-1]
    X = x_seq.reshape(T, -1, K_in).transpose(1, 2).reshape(T * K_in, -1)  # [T*K_in, N]
    W = torch.matmul(op, X).view(T, K, -1).transpose(1, 2)  # [T, N, K]
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
    pw = power_stack(P, T)  # [T+1, K, K]
    r = gain * (pw[:T].index_select(1, input_index.to(P.device)) @ c)  # [T, K_in]
    m0 = (pw[1:] @ c).T.contiguous()  # [K, T]
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
            q = torch.ones_like(q)  # exactly uniform: a plain sum
    t = torch.arange(T, device=P.device)
    d = t[:, None] - t[None, :]
    Ell = torch.where(d >= 0, ell[d.clamp(min=0)], torch.zeros((), dtype=ell.dtype, device=ell.device))
    geo = None
    if ell[0] != 0:
        rho = float(ell[1] / ell[0]) if T > 1 else 0.0
        if (ell - ell[0] * rho ** t.to(ell.dtype)).abs().amax() <= 1e-10 * ell.abs().amax():
            geo = (float(ell[0]), rho)
    return Ell, q, m0, geo


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
            for x_t in x_seq.unbind(0):  # one backward node, not T slices
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
                w = leaky_recurrence(x_seq, a, gain, w0)  # [T, ..., K]
            else:
                L, p = self._segregated_operator(T, x_seq)
                w = leaky_scan(x_seq, L, p, w0)  # [T, ..., K]
        else:
            op, init = self._coupled_operator(T, x_seq)
            w = coupled_scan(x_seq, op, init, w0)  # [T, ..., K]
        return w + v_rest if v_rest != 0.0 else w

    def readout(self, x_seq: torch.Tensor, factors, w0: Optional[torch.Tensor] = None, dim: int = -1):
        """``(y, scale)`` with ``scale * y[t] = sum_j c_j w_j[t]`` [T, ...], for factors ``(Ell, q,
        q_list, m0, geo)`` of `readout_factors` (cast to x's dtype and device): one pass over x
        [T, ..., K_in], then the [T, T] matmul, or on CPU for a geometric ell the leaky recurrence
        (scale = ell[0], left for the caller to fold in). ``dim``: where the compartments lie in
        memory for compartment-major (conv) inputs."""
        Ell, q, q_list, m0, geo = factors
        T = x_seq.shape[0]
        z = fused.CompartmentSum.apply(x_seq, q, q_list, dim)  # [T, ...]
        init = None if w0 is None else (w0.reshape(-1, m0.shape[0]) @ m0).T.reshape(z.shape)  # w[-1] @ m0
        if geo is not None and x_seq.device.type == "cpu":
            scale, rho = geo
            y = leaky_recurrence(z, rho)
            return (y if init is None else y + init / scale), scale
        y = torch.matmul(Ell, z.reshape(T, -1)).view(z.shape)
        return (y if init is None else y + init), 1.0

    def loop_readout(self, x_seq: torch.Tensor, c: torch.Tensor, v_p0: Optional[torch.Tensor] = None):
        """(y [T, ...], v_p[T-1] [..., K]) with y[t] = sum_k c_k v_k[t], by `kernels.dendrite.CoupledLoop` (fixed
        parameters; compartments Passive or Active). x_seq [T, ..., K_in] in either layout."""
        comp = self.compartment
        T, K_in, K = x_seq.shape[0], x_seq.shape[-1], self.wiring.n_compartments
        lead = x_seq.shape[1:-1]
        X = x_seq.movedim(-1, 1).reshape(T, K_in, -1)  # [T, K_in, N] compartment-major
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
            strength = s.view(K, 1) if s.dim() == 1 else s  # a tensor: no host sync
        C = self.coupling()
        C = torch.zeros(K, K, dtype=dtype, device=x_seq.device) if C is None else C.detach().to(dtype)
        beta, theta_d = getattr(comp, "beta", 1.0), getattr(comp, "theta_d", 0.0)
        a, gain = comp.terms()
        with torch.autocast(x_seq.device.type, enabled=False):
            y, w_last = fused.CoupledLoop.apply(
                X.to(dtype),
                None if w0 is None else w0.to(dtype),
                C,
                c.to(dtype),
                inputs,
                a,
                gain,
                v_rest,
                kind,
                strength,
                beta,
                theta_d,
            )
        w_last = w_last.T.reshape(*lead, K)
        return y.view(T, *lead), (w_last + v_rest if v_rest != 0.0 else w_last)

    def last_state(self, x_seq: torch.Tensor, v_p0: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The passive potentials after the last step, v_p[T-1] [..., K], without the other T-1 steps."""
        T, v_rest, K = x_seq.shape[0], self.compartment.v_rest, self.wiring.n_compartments
        w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
        path = self.path()
        if path == "segregated":
            L, p = self._segregated_operator(T, x_seq)
            w = torch.tensordot(L[T - 1], x_seq, dims=([0], [0]))  # sum_s L[T-1, s] x[s]
            if w0 is not None:
                w = w + p[T - 1] * w0
        elif path == "coupled":
            op, init = self._coupled_operator(T, x_seq)
            K_in = x_seq.shape[-1]
            rows = op[(T - 1) * K :].view(K, T, K_in)  # [(j), (s, k)] of the last step
            X = x_seq.reshape(T, -1, K_in)
            w = X[0] @ rows[:, 0].T
            for s in range(1, T):
                w = torch.addmm(w, X[s], rows[:, s].T)
            w = w.view(*x_seq.shape[1:-1], K)
            if w0 is not None:
                w = w + (w0.reshape(-1, K) @ init[:, (T - 1) * K :]).view(w.shape)
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
            build = lambda: coupled_operator(
                a * torch.eye(K, dtype=like.dtype, device=like.device), gain, T, self.input_index
            )
            key = ("coupled", T, like.dtype, like.device, a, gain)
        else:
            build = lambda: coupled_operator(
                a * torch.eye(K, dtype=like.dtype, device=like.device) + gain * self.coupling().to(like.dtype),
                gain,
                T,
                self.input_index,
            )
            if self.g.requires_grad and torch.is_grad_enabled():
                return build()  # differentiable in g, not cached
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
            raise ValueError(
                f"coupling_g must be a number or a list of numbers (got coupling_g={coupling_g!r})"
            ) from None
        if len(values) != n_edges:
            raise ValueError(
                f"coupling_g has {len(values)} values but the wiring has {n_edges} edges (got coupling_g={coupling_g!r})"
            )
    if not all(v >= 0 for v in values):
        raise ValueError(f"coupling_g must be >= 0 (got coupling_g={coupling_g!r})")
    return (
        torch.tensor(values[0]) if len(values) == 1 and isinstance(coupling_g, (int, float)) else torch.tensor(values)
    )
