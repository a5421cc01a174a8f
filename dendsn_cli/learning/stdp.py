"""Spike-timing-dependent plasticity (pair-based, with traces), and its LTP-only variant.

Per step t, with presynaptic spikes s_pre (the synapse's input; analog inputs count as they are)
and the postsynaptic spikes s_post that count for learning (`LocalRule.learning_post`):

    x_pre[t]  = x_pre[t-1]  (1 - 1/tau_pre)  + s_pre[t]
    x_post[t] = x_post[t-1] (1 - 1/tau_post) + s_post[t]
    dW[o, i]  = sum_{t,b}  a_plus f_plus(W) x_pre[t, i] s_post[t, o]  -  a_minus f_minus(W) x_post[t, o] s_pre[t, i]

    SemiSTDP: the first (LTP) term only.

f (``weight_dependence``) is additive (1, 1) or multiplicative (wmax - W, W - wmin); W is held for
the batch, so f factors out of the sums and dW costs two matmuls over the T*B rows (conv: over the
T*B*H_out*W_out rows of the unfolded presynaptic tensors). A dendritic neuron's spike is shared by
all its input compartments (`plasticity.expand`). The read-out is trained by ``readout`` (gradient
by default); ``layers`` picks the hidden layers that learn by STDP.
"""

from __future__ import annotations

from typing import Optional

import torch

from .local import LocalRule, PlasticLayer
from .plasticity import (
    WEIGHT_DEPENDENCES,
    check_choice,
    check_number,
    check_tau,
    correlate,
    expand,
    trace,
    trace_step,
    weight_dependence,
)


class STDP(LocalRule):
    """Pair-based STDP with traces; see the module docstring. Other keys: `LocalRule`."""

    ltd = True

    def __init__(
        self,
        tau_pre: float = 2.0,
        tau_post: float = 2.0,
        a_plus: float = 1e-4,
        a_minus: float = 1e-4,
        weight_dependence: str = "additive",
        **kw,
    ):
        super().__init__(**kw)
        self.tau_pre = check_tau("tau_pre", tau_pre)
        self.tau_post = check_tau("tau_post", tau_post)
        self.a_plus = check_number("a_plus", a_plus, minimum=0.0)
        self.a_minus = check_number("a_minus", a_minus, minimum=0.0)
        self.weight_dependence = check_choice("weight_dependence", weight_dependence, WEIGHT_DEPENDENCES)
        if weight_dependence == "multiplicative" and (self.wmin is None or self.wmax is None):
            raise ValueError(
                "weight_dependence=multiplicative bounds the weights softly in [wmin, wmax]: set both wmin and wmax"
            )

    def rate(self) -> float:
        return self.a_plus

    # --- the two correlations -------------------------------------------------------------------------
    def correlations_seq(self, layer: PlasticLayer, row_weight: Optional[torch.Tensor] = None):
        """(G_ltp, G_ltd) per neuron from the [T, B, ...] recordings, rows optionally weighted [T, B]."""
        pre, post = layer.seq("pre"), layer.seq("post")
        post = self.learning_post(layer, post, layer.seq("inp"))
        post_w = post if row_weight is None else post * _rows(row_weight, post)
        g_ltp = correlate(layer.conn, post_w, trace(pre, self.tau_pre))
        if not self.ltd:
            return g_ltp, None
        x_post = trace(post, self.tau_post)
        x_post_w = x_post if row_weight is None else x_post * _rows(row_weight, x_post)
        return g_ltp, correlate(layer.conn, x_post_w, pre)

    def combine(self, layer: PlasticLayer, g_ltp: torch.Tensor, g_ltd: Optional[torch.Tensor]) -> torch.Tensor:
        """dW = a_plus f_plus(W) G_ltp - a_minus f_minus(W) G_ltd, per synaptic feature."""
        W = layer.weight.detach()
        f_plus, f_minus = weight_dependence(W, self.weight_dependence, self.wmin, self.wmax)
        if self.weight_dependence == "additive":
            g = self.a_plus * g_ltp if g_ltd is None else self.a_plus * g_ltp - self.a_minus * g_ltd
            return expand(layer.conn, g)
        dW = self.a_plus * f_plus * expand(layer.conn, g_ltp)
        if g_ltd is not None:
            dW = dW - self.a_minus * f_minus * expand(layer.conn, g_ltd)
        return dW

    def delta_seq(self, layer, out, y):
        return self.combine(layer, *self.correlations_seq(layer)), None

    def delta_steps(self, layer, out, y):
        x_pre = x_post = None
        g_ltp = g_ltd = 0.0
        for pre, post, inp in zip(layer.steps("pre"), layer.steps("post"), layer.steps("inp")):
            post = self.learning_post(layer, post, inp)
            x_pre = trace_step(x_pre, pre, self.tau_pre)
            x_post = trace_step(x_post, post, self.tau_post)
            g_ltp = g_ltp + correlate(layer.conn, post, x_pre)
            if self.ltd:
                g_ltd = g_ltd + correlate(layer.conn, x_post, pre)
        return self.combine(layer, g_ltp, g_ltd if self.ltd else None), None


class SemiSTDP(STDP):
    """STDP without depression: dW = a_plus f_plus(W) x_pre s_post (keep it bounded: wmax, normalize)."""

    ltd = False

    def __init__(
        self,
        tau_pre: float = 2.0,
        a_plus: float = 1e-4,
        weight_dependence: str = "additive",
        **kw,
    ):
        for key in ("tau_post", "a_minus"):
            if key in kw:
                raise ValueError(f"{key} does not apply to semi-STDP (no depression); drop it")
        super().__init__(
            tau_pre=tau_pre, tau_post=2.0, a_plus=a_plus, a_minus=0.0, weight_dependence=weight_dependence, **kw
        )


def _rows(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Row weights [T, B] (or [B]) broadcast against an activation [T, B, ...] (or [B, ...])."""
    return w.view(*w.shape, *([1] * (like.dim() - w.dim())))
