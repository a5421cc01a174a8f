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
    compartment, one [T, T] @ [T, B*S*K] matmul (`compartments.leaky_scan`);
  * coupled: with w = v_p - v_rest (differences cancel v_rest in I_int)

        w[t] = w[t-1] @ P + gain * I_ext[t],          P = a * Id + gain * C      [K, K]
             = sum_{s<=t} gain * I_ext[s] @ P^(t-s) + w[-1] @ P^(t+1)

    i.e. one block-lower-triangular [T*K, T*K_in] operator (``coupled_operator``) applied as one
    matmul over [T*K_in, B*S], plus [K, T*K] for the initial state.

An active part f is applied after the linear solve when there is no coupling; active compartments
with coupling (I_int depends on f(v_p)) run the step loop (``method="loop"`` forces it; the tests
check the two agree). Operators are cached per (T, dtype, device, parameters) and rebuilt with
autograd when g is learnable and gradients are on.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from .compartments import Passive, decay_operator, leaky_scan
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


class Dendrite(nn.Module):
    """Compartments + wiring + coupling. Holds parameters only; the neuron holds the state v_p."""

    def __init__(
        self,
        wiring: Wiring,
        compartment: Optional[nn.Module] = None,
        coupling_g: Coupling = 1.0,
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
        path, T, v_rest = self.path(), x_seq.shape[0], self.compartment.v_rest
        if path == "loop":
            v_p = self.initial(x_seq[0]) if v_p0 is None else v_p0
            vp_list, v_list = [], []
            for t in range(T):
                v_p, v = self.step(x_seq[t], v_p)
                vp_list.append(v_p)
                v_list.append(v)
            return torch.stack(vp_list), torch.stack(v_list)
        w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
        if path == "segregated":
            L, p = self._segregated_operator(T, x_seq)
            w = leaky_scan(x_seq, L, p, w0)                          # [T, ..., K]
        else:
            op, init = self._coupled_operator(T, x_seq)
            w = coupled_scan(x_seq, op, init, w0)                   # [T, ..., K]
        v_p = w + v_rest if v_rest != 0.0 else w
        return v_p, self.compartment.potential(v_p)

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

    def extra_repr(self) -> str:
        return f"wiring={self.wiring!r}, method={self.method!r}"


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
