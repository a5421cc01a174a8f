"""Nonlinear and variant point neurons: QIF, EIF, KLIF, LIAF (`neurons.StepNeuron` models) and PSN.

    QIF:   h[t] = v[t-1] + (x[t] + a0 (v[t-1] - v_rest) (v[t-1] - v_c)) / tau
    EIF:   h[t] = v[t-1] + (x[t] - (v[t-1] - v_rest) + delta_T exp((v[t-1] - theta_rh) / delta_T)) / tau
    KLIF:  m[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau        (LIF charge; no decay_input:
                                                                     v[t-1] - (v[t-1] - v_reset) / tau + x[t])
           F[t] = relu(k m[t]),  k learnable (init 1);  s[t] = H(F[t] - v_threshold)
           v[t] = reset(F[t], s[t]),  or with scale_reset  v[t] = reset(F[t] / k, s[t]) with the
           soft-reset threshold v_threshold / k
    LIAF:  h[t] = LIF charge;  s[t] = H(h[t] - v_threshold) only resets v;  the output is analog:
           y[t] = act(h[t] - v_threshold) (threshold_related) or act(h[t]),  act in ACTS
    PSN:   h = W x + bias   (W [T, T] and bias [T, 1] learnable, x [T, N]: all steps at once)
           s = H(h)          (bias = -threshold, init -1; no state, no reset)

    reset (all but PSN):  hard  v[t] = v_reset where s[t] = 1, else h[t];
                          soft  v[t] = h[t] - v_threshold s[t]   (v_reset None)

Defaults are SpikingJelly 2's (``QIFNode``, ``EIFNode``, ``KLIFNode``, ``LIAFNode``, ``PSN``) and the
same parameters give the same spikes and gradients; H is the surrogate's Heaviside (H(0) = 1).
Every model but PSN takes ``refractory`` (steps) and a ``feedback`` through `StepNeuron.run`; see
`neurons.StepNeuron` for both.

Fast paths. `charge` below is the reference step (the generic `StepNeuron` loop runs it under
autograd, and serves refractory periods and ``store_seq``). ``fused_scan`` runs all T steps of a model
in one autograd node instead: the forward loop writes into preallocated [T, ...] outputs with a few
in-place ops per step (no graph), and the backward is the recurrence of `soma._SomaScan`

    dL/dH[t]   = dL/ds[t] F'(H[t] - theta) + dL/dv[t] dv[t]/dH[t]   (+ dL/dy[t] act'  for LIAF)
    dL/dv[t-1] = alpha[t] dL/dH[t],    alpha[t] = dH[t]/dv[t-1]

with H the potential that fires and is reset (h; F for KLIF) and a per-step alpha[t] evaluated for
all T at once from what the forward kept: 1 + (a0 (2 v - v_rest - v_c) - feedback) / tau (QIF),
1 - (1 + feedback) / tau + exp((v - theta_rh) / delta_T) / tau (EIF), k [k m > 0] (1 - 1/tau - gain feedback)
(KLIF), 1 - 1/tau - gain feedback (LIAF), v = v[t-1]. Equal to the generic loop up to float
rounding (tests/test_zoo_nonlinear.py). PSN's kernel is a [T, T] x [T, N] product each way, over
cache-sized blocks of columns.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .base import SpikingModule, StepNeuron, check_range
from .surrogate import Sigmoid, Surrogate

ACTS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda z: z}


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false (got {name}={value!r})")
    return value


def _lif_charge(x, v, tau: float, decay_input: bool, v_reset: Optional[float]):
    """SpikingJelly's LIF charge, term for term (KLIF and LIAF start from it)."""
    vr = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - vr)) / tau
    return v - (v - vr) / tau + x


# --- the models -------------------------------------------------------------------------------------


class QIF(StepNeuron):
    """Quadratic integrate-and-fire: h = v + (x + a0 (v - v_rest)(v - v_c)) / tau."""

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0, v_threshold: float = 1.0,
                 v_rest: float = 0.0, v_reset: Optional[float] = -0.1, **kw):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.v_c = check_range("v_c", v_c)
        self.a0 = check_range("a0", a0, 0.0, low_open=True)
        self.v_rest = check_range("v_rest", v_rest, None if v_reset is None else v_reset)

    def charge(self, x, state):
        v = state[0]
        return v + (x + self.a0 * (v - self.v_rest) * (v - self.v_c)) / self.tau, ()

    def fused_scan(self, x_seq, state, feedback):
        return _nonlinear_if(self, "qif", (self.tau, self.a0, self.v_rest, self.v_c), x_seq, state, feedback)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}, " + super().extra_repr()


class EIF(StepNeuron):
    """Exponential integrate-and-fire: h = v + (x - (v - v_rest) + delta_T exp((v - theta_rh)/delta_T)) / tau."""

    def __init__(self, tau: float = 2.0, delta_T: float = 1.0, theta_rh: float = 0.8, v_threshold: float = 1.0,
                 v_rest: float = 0.0, v_reset: Optional[float] = -0.1, **kw):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.delta_T = check_range("delta_T", delta_T, 0.0, low_open=True)
        self.theta_rh = check_range("theta_rh", theta_rh)
        self.v_rest = check_range("v_rest", v_rest, None if v_reset is None else v_reset)

    def charge(self, x, state):
        v = state[0]
        return v + (x + self.v_rest - v + self.delta_T * torch.exp((v - self.theta_rh) / self.delta_T)) / self.tau, ()

    def fused_scan(self, x_seq, state, feedback):
        return _nonlinear_if(self, "eif", (self.tau, self.delta_T, self.v_rest, self.theta_rh), x_seq, state, feedback)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, delta_T={self.delta_T}, theta_rh={self.theta_rh}, v_rest={self.v_rest}, "
                + super().extra_repr())


class KLIF(StepNeuron):
    """LIF whose charged potential is rescaled by a learnable k and rectified: F = relu(k h) fires
    and is reset (Jiang & Zhang 2023, arXiv:2302.09238). ``charge`` returns the potential the reset
    acts on (F, or F / k with scale_reset) and F itself as aux, which `fire` compares to v_threshold."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, scale_reset: bool = False, k: float = 1.0, **kw):
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.decay_input = _flag("decay_input", decay_input)
        self.scale_reset = _flag("scale_reset", scale_reset)
        self.k = nn.Parameter(torch.tensor(check_range("k", k, 0.0, low_open=True)))

    def charge(self, x, state):
        F = torch.relu(self.k * _lif_charge(x, state[0], self.tau, self.decay_input, self.v_reset))
        return (F / self.k if self.scale_reset else F), (F,)

    def fire(self, h, aux):
        return super().fire(aux[0], ())

    def after(self, h, s, aux):
        return (self.reset_v(h, s, self.v_threshold / self.k if self.scale_reset else None),)

    def fused_scan(self, x_seq, state, feedback):
        fb = _float_feedback(feedback)
        if fb is None:
            return None
        s, v = _KLIFScan.apply(x_seq, state[0].to(x_seq.dtype), self.k, self.tau, self.decay_input, self.scale_reset,
                               self.v_threshold, self.v_reset, self.surrogate, self.detach_reset, self.training, fb)
        return s, (v,)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, scale_reset={self.scale_reset}, "
                + super().extra_repr())


class LIAF(StepNeuron):
    """Leaky integrate and analog fire (Wu et al. 2021, arXiv:2011.06176): a LIF whose spikes only
    reset it; the output is the analog y = act(h - v_threshold) (threshold_related) or act(h)."""

    analog = True

    def __init__(self, tau: float = 2.0, decay_input: bool = True, act: str = "relu",
                 threshold_related: bool = True, **kw):
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.decay_input = _flag("decay_input", decay_input)
        if act not in ACTS:
            raise ValueError(f"act must be one of {', '.join(ACTS)} (got act={act!r})")
        self.act = act
        self.threshold_related = _flag("threshold_related", threshold_related)

    def charge(self, x, state):
        return _lif_charge(x, state[0], self.tau, self.decay_input, self.v_reset), ()

    def output(self, h: torch.Tensor) -> torch.Tensor:
        return ACTS[self.act](h - self.v_threshold if self.threshold_related else h)

    def step(self, x, state, feedback: float = 0.0):
        s, h, state = super().step(x, state, feedback)
        return self.output(h), h, state

    def fused_scan(self, x_seq, state, feedback):
        fb = _float_feedback(feedback)
        if fb is None:
            return None
        y, v = _LIAFScan.apply(x_seq, state[0].to(x_seq.dtype), self.tau, self.decay_input, self.v_threshold,
                               self.v_reset, self.surrogate, self.detach_reset, self.training, fb,
                               self.act, self.threshold_related)
        return y, (v,)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, act={self.act!r}, "
                f"threshold_related={self.threshold_related}, " + super().extra_repr())


class PSN(SpikingModule):
    """Parallel spiking neuron (Fang et al. 2023, arXiv:2304.12760): h = W x + bias over the T steps
    at once, s = H(h). Multi-step only, T fixed at construction; ``weight`` [T, T] and ``bias`` [T, 1]
    are initialised (and named) as SpikingJelly's, so its state dict loads into ours."""

    store_seq = False

    def __init__(self, T: int, surrogate: Optional[Surrogate] = None, refractory: int = 0, step_mode: str = "m"):
        if refractory != 0:
            raise ValueError(f"PSN has no reset, so a refractory period does not apply (got refractory={refractory!r})")
        if step_mode != "m":
            raise ValueError(f"PSN is multi-step only: step_mode must be 'm' (got step_mode={step_mode!r})")
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a whole number of steps >= 1 (got T={T!r})")
        super().__init__(step_mode)
        self.T = T
        self.surrogate = surrogate if surrogate is not None else Sigmoid()
        self.weight = nn.Parameter(torch.empty(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.v = self.v_seq = self.h_seq = None                       # no membrane state (h_seq: store_seq)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.shape[0] != self.T:
            raise ValueError(f"PSN was built for T={self.T} steps (got an input of {x_seq.shape[0]} steps)")
        x = x_seq.flatten(1)                                          # [T, N]
        if self.store_seq:
            with torch.no_grad():
                self.h_seq = torch.addmm(self.bias, self.weight, x).view(x_seq.shape)
        return _PSNFn.apply(x, self.weight, self.bias, self.surrogate).view(x_seq.shape)

    def reset(self) -> None:
        self.h_seq = None

    def extra_repr(self) -> str:
        return f"T={self.T}, surrogate={self.surrogate}"


# --- fused kernels ----------------------------------------------------------------------------------


def _float_feedback(feedback) -> Optional[float]:
    """The feedback as a float, or None (a tensor feedback: the generic loop handles it)."""
    if isinstance(feedback, (int, float)) and not isinstance(feedback, bool):
        return float(feedback)
    return None


def _fire_(H: torch.Tensor, theta: float, firing, training: bool, out: torch.Tensor) -> torch.Tensor:
    """s = F(H - theta) into ``out``: 0/1 floats (a bool mask is slower on CPU), or a stochastic draw."""
    if firing.stochastic:
        return out.copy_(firing.spike(H - theta, training))
    return torch.ge(H, theta, out=out)


def _reset_(H, s, theta: float, v_reset: Optional[float], out: torch.Tensor) -> torch.Tensor:
    """v = H (1 - s) + v_reset s (hard, exact for s in {0, 1}) or H - theta s (soft), into ``out``."""
    if v_reset is None:
        return torch.add(H, s, alpha=-theta, out=out)
    torch.addcmul(H, H, s, value=-1.0, out=out)
    return out.add_(s, alpha=v_reset) if v_reset != 0.0 else out


def _backprop_reset(H_seq, s_seq, alpha, theta, v_reset, firing, detach, g_s, g_v_last, g_H=None, c=1.0,
                    keep_carry=False):
    """The reverse recurrence of a one-state soma (module docstring): ``v[t] = c H[t] (1 - s[t]) +
    v_reset s[t]`` (hard) or ``c (H[t] - theta s[t])`` (soft), ``s[t] = F(H[t] - theta)``, and
    ``dH[t]/dv[t-1] = alpha`` (a float or [T, ...]). ``g_H`` [T, ...] is a direct gradient of H.

    Returns (dL/dH [T, ...], dL/dv0, dL/dv [T, ...] after each reset when ``keep_carry``, else None)."""
    T = H_seq.shape[0]
    hard = v_reset is not None
    fast_sg = type(firing).grad is Sigmoid.grad                      # sg in place: a sig(a x) (1 - sig(a x))
    a_sg = firing.alpha if fast_sg else 1.0
    g_seq = torch.empty_like(H_seq)
    sg_buf = torch.empty_like(H_seq[0]) if fast_sg else None
    tmp = torch.empty_like(H_seq[0])
    zero = torch.zeros((), dtype=H_seq.dtype, device=H_seq.device)
    carries = torch.zeros_like(H_seq) if keep_carry else None
    per_step = isinstance(alpha, torch.Tensor)
    carry, own = g_v_last, False                                     # dL/dv[t]
    for t in range(T - 1, -1, -1):
        H = H_seq[t]
        if fast_sg:
            sg = torch.sub(H, theta, out=sg_buf)
            sg.mul_(a_sg).sigmoid_()
            sg.addcmul_(sg, sg, value=-1.0)                          # sig (1 - sig); a_sg applied below
        else:
            sg = firing.grad(H - theta, s_seq[t])
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
            gs_t = zero if g_s is None else g_s[t]
            if detach:
                term = gs_t
            elif hard:                                               # g_s + carry (v_reset - c H)
                term = torch.addcmul(gs_t, carry, H, value=-c, out=tmp)
                if v_reset != 0.0:
                    term.add_(carry, alpha=v_reset)
            else:                                                    # g_s - c theta carry
                term = torch.add(gs_t, carry, alpha=-c * theta, out=tmp)
            if hard:                                                 # c carry (1 - s) + a_sg sg term
                torch.addcmul(carry, carry, s_seq[t], value=-1.0, out=g)
                if c != 1.0:
                    g.mul_(c)
                g.addcmul_(term, sg, value=a_sg)
            elif c == 1.0:
                torch.addcmul(carry, term, sg, value=a_sg, out=g)
            else:
                torch.mul(carry, c, out=g)
                g.addcmul_(term, sg, value=a_sg)
        if g_H is not None:
            g.add_(g_H[t])
        if not own:                                                  # never write into a given gradient
            carry, own = torch.empty_like(g), True
        torch.mul(g, alpha[t] if per_step else alpha, out=carry)
    return g_seq, carry, carries


def _nonlinear_if(model, kind, params, x_seq, state, feedback):
    fb = _float_feedback(feedback)
    if fb is None:
        return None
    s, v = _NonlinearIFScan.apply(x_seq, state[0].to(x_seq.dtype), kind, params, model.v_threshold, model.v_reset,
                                  model.surrogate, model.detach_reset, model.training, fb)
    return s, (v,)


class _NonlinearIFScan(torch.autograd.Function):
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
            _fire_(h, theta, firing, training, s_seq[t])
            v = _reset_(h, s_seq[t], theta, v_reset, v_buf)
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
        g_h, g_v0, _ = _backprop_reset(h_seq, s_seq, alpha, theta, v_reset, firing, detach, g_s, g_v)
        return g_h.div_(tau), g_v0, None, None, None, None, None, None, None, None


def _lif_drive(x_seq, tau: float, decay_input: bool, v_reset: Optional[float], fb: float):
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


class _KLIFScan(torch.autograd.Function):
    """KLIF, all T steps: m = drive + alpha' v, F = relu(k m), s = F >= theta, v = reset(F or F / k).

    Backward: H = F, alpha[t] = k [F[t] > 0] alpha', and dL/dk = sum_t dL/dF[t] [F[t] > 0] m[t]
    (+ sum_t dL/dv[t] dv[t]/dk with scale_reset: -F (1 - s) / k^2 hard, -(F - theta s) / k^2 soft)."""

    @staticmethod
    def forward(ctx, x_seq, v0, k, tau, decay_input, scale_reset, theta, v_reset, firing, detach, training, fb):
        k_f = float(k.detach())
        m_seq, a1, gain = _lif_drive(x_seq, tau, decay_input, v_reset, fb)
        F_seq, s_seq = torch.empty_like(m_seq), torch.empty_like(m_seq)
        v_buf = torch.empty_like(m_seq[0])
        v = v0
        for t in range(m_seq.shape[0]):
            m, F, s = m_seq[t], F_seq[t], s_seq[t]
            m.add_(v, alpha=a1)
            torch.mul(m, k_f, out=F).relu_()
            _fire_(F, theta, firing, training, s)
            if scale_reset:                                          # reset(F / k, s) with threshold theta / k
                v = torch.div(F, k_f, out=v_buf)
                if v_reset is None:
                    v.add_(s, alpha=-theta / k_f)
                else:
                    v.addcmul_(v, s, value=-1.0)
                    if v_reset != 0.0:
                        v.add_(s, alpha=v_reset)
            else:
                v = _reset_(F, s, theta, v_reset, v_buf)
        ctx.save_for_backward(m_seq, F_seq, s_seq)
        ctx.args = (k_f, a1, gain, scale_reset, theta, v_reset, firing, detach)
        ctx.set_materialize_grads(False)
        return s_seq, v.clone() if v is v0 else v

    @staticmethod
    def backward(ctx, g_s, g_v):
        m_seq, F_seq, s_seq = ctx.saved_tensors
        k_f, a1, gain, scale_reset, theta, v_reset, firing, detach = ctx.args
        on = torch.gt(F_seq, 0.0).to(F_seq.dtype)                    # relu's slope
        alpha = torch.mul(on, k_f * a1)
        keep = scale_reset and ctx.needs_input_grad[2]
        g_F, g_v0, carries = _backprop_reset(F_seq, s_seq, alpha, theta, v_reset, firing, detach, g_s, g_v,
                                             c=1.0 / k_f if scale_reset else 1.0, keep_carry=keep)
        g_F.mul_(on)                                                 # dL/d(k m)
        g_k = None
        if ctx.needs_input_grad[2]:
            g_k = torch.dot(g_F.flatten(), m_seq.flatten())
            if keep:                                                 # v = reset(F / k, s): the direct dv/dk
                if v_reset is None:
                    direct = torch.add(F_seq, s_seq, alpha=-theta)
                else:
                    direct = torch.addcmul(F_seq, F_seq, s_seq, value=-1.0)
                g_k = g_k - torch.dot(carries.flatten(), direct.flatten()) / (k_f * k_f)
        return (g_F.mul_(k_f * gain), g_v0, g_k, None, None, None, None, None, None, None, None, None)


class _LIAFScan(torch.autograd.Function):
    """LIAF, all T steps: h = drive + alpha' v, s = h >= theta, v = reset(h, s); then y = act(...)
    for all T at once. Backward: the recurrence with g_s = 0 and the direct gradient dL/dy act'."""

    @staticmethod
    def forward(ctx, x_seq, v0, tau, decay_input, theta, v_reset, firing, detach, training, fb, act, tr):
        h_seq, a1, gain = _lif_drive(x_seq, tau, decay_input, v_reset, fb)
        s_seq = torch.empty_like(h_seq)
        v_buf = torch.empty_like(h_seq[0])
        v = v0
        for t in range(h_seq.shape[0]):
            h = h_seq[t].add_(v, alpha=a1)
            _fire_(h, theta, firing, training, s_seq[t])
            v = _reset_(h, s_seq[t], theta, v_reset, v_buf)
        y = torch.sub(h_seq, theta) if tr else h_seq.clone()
        if act != "identity":
            getattr(y, act + "_")()                                  # relu_, sigmoid_, tanh_ in place
        ctx.save_for_backward(h_seq, s_seq, y if act != "identity" else None)
        ctx.args = (a1, gain, theta, v_reset, firing, detach, act, tr)
        ctx.set_materialize_grads(False)
        return y, v.clone() if v is v0 else v

    @staticmethod
    def backward(ctx, g_y, g_v):
        h_seq, s_seq, y = ctx.saved_tensors
        a1, gain, theta, v_reset, firing, detach, act, tr = ctx.args
        g_h = None
        if g_y is not None:                                          # dL/dy act'(z), one pass from y
            if act == "relu":
                g_h = torch.ops.aten.threshold_backward(g_y, y, 0.0)
            elif act == "sigmoid":
                g_h = torch.ops.aten.sigmoid_backward(g_y, y)
            elif act == "tanh":
                g_h = torch.ops.aten.tanh_backward(g_y, y)
            else:
                g_h = g_y
        g_h, g_v0, _ = _backprop_reset(h_seq, s_seq, a1, theta, v_reset, firing, detach, None, g_v, g_H=g_h)
        return g_h.mul_(gain) if gain != 1.0 else g_h, g_v0, None, None, None, None, None, None, None, None, None, None


class _PSNFn(torch.autograd.Function):
    """PSN on x [T, N]: h = bias + W x, s = h >= 0. Backward: g_h = g_s F'(h), g_x = W^T g_h,
    g_W = g_h x^T, g_bias = sum over N of g_h. Both passes go over blocks of columns that stay in
    cache (one [T, T] x [T, N] product is memory-bound; blocks are about 2x faster here). For
    Sigmoid, F'(h) = a sig(a h) (1 - sig(a h)), with the factor a applied to the [T, T] factors."""

    @staticmethod
    def forward(ctx, x, weight, bias, firing):
        T, N = x.shape
        h, s = torch.empty_like(x), torch.empty_like(x)
        for i in range(0, N, _psn_block(T)):
            cols = slice(i, i + _psn_block(T))
            torch.ge(torch.addmm(bias, weight, x[:, cols], out=h[:, cols]), 0.0, out=s[:, cols])
        ctx.save_for_backward(x, weight, h)
        ctx.firing = firing
        return s

    @staticmethod
    def backward(ctx, g_s):
        x, weight, h = ctx.saved_tensors
        firing = ctx.firing
        T, N = x.shape
        C = _psn_block(T)
        fast_sg = type(firing).grad is Sigmoid.grad
        a = firing.alpha if fast_sg else 1.0
        g_x = torch.empty_like(x)
        g_w, g_b = torch.zeros_like(weight), torch.zeros_like(weight[:, :1])
        w_t = weight.t() * a
        buf = torch.empty_like(x[:, :C])
        for i in range(0, N, C):
            cols = slice(i, i + C)
            if fast_sg:                                              # g = g_s y (1 - y), y = sig(a h)
                g = torch.mul(h[:, cols], a, out=buf[:, :min(C, N - i)]).sigmoid_()
                torch.ops.aten.sigmoid_backward(g_s[:, cols], g, grad_input=g)
            else:
                g = firing.grad(h[:, cols]).mul_(g_s[:, cols])
            torch.mm(w_t, g, out=g_x[:, cols])
            g_w.addmm_(g, x[:, cols].t())
            g_b.add_(g.sum(1, keepdim=True))
        return g_x, g_w.mul_(a), g_b.mul_(a), None


def _psn_block(T: int) -> int:
    """Columns per block of the PSN kernel: about 128K floats (512 KiB) per [T, C] block."""
    return max(256, (1 << 17) // T)
