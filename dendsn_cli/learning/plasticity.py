"""The math shared by the local rules: traces, pre/post correlations, weight dependence.

Traces (a linear recurrence; x[-1] = 0 at the start of every sample):

    x[t] = x[t-1] (1 - 1/tau) + s[t]                  (`trace_step`)
         = sum_{u<=t} (1 - 1/tau)^(t-u) s[u]           (`trace`: ONE [T, T] @ [T, N] matmul for all t)

Correlation of a postsynaptic factor p (spikes, an error) with a presynaptic factor q (spikes, a
trace), summed over the T*B rows (and the output positions of a conv):

    linear:  G[o, i]          = sum_{t,b} p[t, b, o] q[t, b, i]                         = p^T @ q
    conv:    G[o, c, di, dj]  = sum_{t,b,y,x} p[t, b, o, y, x] q[t, b, c, y*st+di*dl-pad, x*st+dj*dl-pad]
                              = p^T @ unfold(q)   over the T*B*H_out*W_out rows

`correlate` is that ONE matmul. Postsynaptic factors are per *neuron*; a layer of dendritic neurons
has K_in synaptic features per neuron, and every compartment shares its soma's factor:

    linear feature  s * K_in + k  <- neuron s           (`expand`: repeat_interleave on rows)
    conv channel    k * C + c     <- channel c          (`expand`: tile the channel blocks)

Weight dependence of STDP (``f_plus`` on potentiation, ``f_minus`` on depression):

    additive:        f_plus = 1,            f_minus = 1
    multiplicative:  f_plus = wmax - W,     f_minus = W - wmin        (soft bounds)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dendsn.dendritic.compartments import decay_operator, leaky_scan

from ..config.checks import is_real, must_be

WEIGHT_DEPENDENCES = ("additive", "multiplicative")


# ---------------------------------------------------------------------------------------- checks
def check_number(
    name: str, value, minimum: Optional[float] = None, above: Optional[float] = None, maximum: Optional[float] = None
) -> float:
    """A finite float within the given bounds, or ValueError naming ``name`` (`config.checks.must_be`)."""
    if not isinstance(value, (int, float)) or not is_real(value):
        raise must_be(name, value, "a finite number", named=True)
    for ok, what in (
        (minimum is None or value >= minimum, f">= {minimum}"),
        (above is None or value > above, f"> {above}"),
        (maximum is None or value <= maximum, f"<= {maximum}"),
    ):
        if not ok:
            raise must_be(name, value, what, named=True)
    return float(value)


def check_tau(name: str, value) -> float:
    """A trace time constant: tau >= 1 (tau = 1 keeps only the current step)."""
    return check_number(name, value, minimum=1.0)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise must_be(name, value, f"one of {', '.join(choices)}", named=True)
    return value


# ---------------------------------------------------------------------------------------- traces
_OPERATORS: dict = {}


def trace(s: torch.Tensor, tau: float) -> torch.Tensor:
    """x[t] = x[t-1] (1 - 1/tau) + s[t] for all t of s [T, ...] at once (x[-1] = 0)."""
    T = s.shape[0]
    key = (T, float(tau), s.dtype, s.device)
    if key not in _OPERATORS:
        if len(_OPERATORS) > 64:
            _OPERATORS.clear()
        _OPERATORS[key] = decay_operator(1.0 - 1.0 / tau, T, 1.0, s.dtype, s.device)
    L, p = _OPERATORS[key]
    return leaky_scan(s, L, p)


def trace_step(x: Optional[torch.Tensor], s: torch.Tensor, tau: float) -> torch.Tensor:
    """One step of the trace: x (1 - 1/tau) + s (x = None: at rest)."""
    return s if x is None else x * (1.0 - 1.0 / tau) + s


@functools.lru_cache(maxsize=64)
def time_weights(decay: float, T: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[T]: decay^(T-1-t), how much a contribution at step t still counts at the end of the sequence.

    Cached per (decay, T, device, dtype): the rules call it every batch, and building it on the host
    and copying it to a GPU each time would stall the device. Read it, do not write to it."""
    t = torch.arange(T, dtype=torch.float64)
    return (torch.tensor(decay, dtype=torch.float64) ** (T - 1 - t)).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------- connections
@dataclass
class Connection:
    """How a synapse maps presynaptic activity to its features: linear, or a 2-D convolution."""

    kind: str  # "linear" | "conv"
    k_in: int = 1  # synaptic features per postsynaptic neuron
    kernel_size: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()

    @staticmethod
    def of(module: nn.Module, k_in: int) -> "Connection":
        if isinstance(module, nn.Linear):
            return Connection("linear", k_in)
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ValueError(
                    f"local rules support Conv2d with groups=1, numeric zero padding (got groups={module.groups}, "
                    f"padding={module.padding!r}, padding_mode={module.padding_mode!r})"
                )
            return Connection(
                "conv",
                k_in,
                tuple(module.kernel_size),
                tuple(module.stride),
                tuple(module.padding),
                tuple(module.dilation),
            )
        raise ValueError(f"local rules support nn.Linear and nn.Conv2d synapses (got {type(module).__name__})")

    @property
    def channel_dim(self) -> int:
        """The feature axis of a [rows..., features] linear or [N, C, H, W] conv activation (from the end)."""
        return -1 if self.kind == "linear" else -3


def correlate(conn: Connection, post: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """G = sum over rows of post x pre: ONE matmul (see the module docstring).

    linear: post [..., O], pre [..., I] with the same leading dims        -> [O, I]
    conv:   post [..., O, H_out, W_out], pre [..., C, H, W]               -> [O, C, kh, kw]
    """
    if conn.kind == "linear":
        P = post.reshape(-1, post.shape[-1])  # [N, O]
        Q = pre.reshape(-1, pre.shape[-1])  # [N, I]
        return P.t() @ Q
    O = post.shape[-3]
    P = post.reshape(-1, O, post.shape[-2] * post.shape[-1])  # [N, O, L]
    Q = pre.reshape(-1, *pre.shape[-3:])  # [N, C, H, W]
    U = F.unfold(Q, conn.kernel_size, conn.dilation, conn.padding, conn.stride)  # [N, C*kh*kw, L]
    if U.shape[-1] != P.shape[-1]:
        raise ValueError(f"conv positions disagree: unfold gives {U.shape[-1]}, the layer has {P.shape[-1]}")
    G = P.transpose(0, 1).reshape(O, -1) @ U.transpose(1, 2).reshape(-1, U.shape[1])  # [O, C*kh*kw]
    return G.view(O, Q.shape[1], *conn.kernel_size)


def correlate_per_sample(conn: Connection, post: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """`correlate` for every sample b of post [B, ...], pre [B, ...] separately: [B, O, I] / [B, O, C, kh, kw]."""
    if conn.kind == "linear":
        return torch.einsum("bo,bi->boi", post.reshape(post.shape[0], -1), pre.reshape(pre.shape[0], -1))
    return torch.stack([correlate(conn, post[b : b + 1], pre[b : b + 1]) for b in range(post.shape[0])])


def expand(conn: Connection, g: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Per-neuron values -> per-feature values along ``dim``: feature (s, k) gets neuron s's value."""
    if conn.k_in == 1:
        return g
    if conn.kind == "linear":
        return g.repeat_interleave(conn.k_in, dim=dim)  # s * K_in + k <- s
    reps = [1] * g.dim()
    reps[dim] = conn.k_in
    return g.repeat(*reps)  # k * C + c <- c


def neuron_sum(conn: Connection, x: torch.Tensor) -> torch.Tensor:
    """Per-feature values [..., S*K_in] / [..., K_in*C, H, W] -> per-neuron sums over compartments."""
    if conn.k_in == 1:
        return x
    if conn.kind == "linear":
        return x.unflatten(-1, (-1, conn.k_in)).sum(-1)
    return x.unflatten(-3, (conn.k_in, -1)).sum(-4)


def reduce_rows(conn: Connection, x: torch.Tensor) -> torch.Tensor:
    """Sum a per-neuron activation over everything but its neuron axis: [..., O] or [..., O, H, W] -> [O]."""
    if conn.kind == "linear":
        return x.reshape(-1, x.shape[-1]).sum(0)
    return x.transpose(-3, -1).reshape(-1, x.shape[-3]).sum(0)


# ---------------------------------------------------------------------------------------- weights
def weight_dependence(W: torch.Tensor, kind: str, wmin: Optional[float], wmax: Optional[float]):
    """(f_plus, f_minus) of ``kind`` (see the module docstring); floats for additive."""
    if kind == "additive":
        return 1.0, 1.0
    return wmax - W, W - wmin


def topk_mask(score: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """1 where an entry is among the k largest along ``dim`` (ties broken by position), else 0."""
    n = score.shape[dim]
    if k >= n:
        return torch.ones_like(score)
    idx = score.topk(k, dim=dim).indices
    return torch.zeros_like(score).scatter_(dim, idx, 1.0)


def normalize_rows(W: torch.Tensor, norm: float) -> None:
    """In place: every postsynaptic row W[o] (all its inputs) gets Euclidean norm ``norm``."""
    flat = W.view(W.shape[0], -1)
    flat.mul_(norm / flat.norm(dim=1, keepdim=True).clamp_min(1e-12))
