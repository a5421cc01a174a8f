"""Adaptive and conductance point neurons: AdEx, Izhikevich, ALIF, ThetaLIF, CLIF, GLIF5 and Hodgkin-Huxley.

Every model is a `neurons.base.StepNeuron`: one time step (index t, input current x[t]) written as
charge -> fire -> after-spike update, with s[t] = F(h[t] - threshold), F the Heaviside step with a
surrogate gradient. "reset(h, s)" is v_reset where s = 1 (hard) or h - theta s (soft, v_reset=None).
detach_reset detaches s in the reset of v only; spike-triggered jumps of the other state variables
(w += b s, a += s, ...) keep their gradient, as in SpikingJelly's Izhikevich node.

AdEx (Brette & Gerstner 2005), state (v, w):
    h[t] = v + (x[t] - (v - v_rest) + delta_T exp((v - theta_rh) / delta_T) - w) / tau
    w[t] = w + (a (h[t] - v_rest) - w) / tau_w + b s[t];   v[t] = reset(h[t], s[t])

Izhikevich, state (v, w) - SpikingJelly's IzhikevichNode, with ``substeps`` Euler sub-steps m = 1..n:
    v_m = v_{m-1} + (k x[t] + a0 (v_{m-1} - v_rest)(v_{m-1} - v_c) - w_{m-1}) / (n tau)
    w_m = w_{m-1} + (a (v_m - v_rest) - w_{m-1}) / (n tau_w)
    h[t] = v_n;  w[t] = w_n + b s[t];  v[t] = reset(h[t], s[t])          (k = input_scale; n = 1: SJ exactly)
  (a sub-step m > 1 holds v and w once v_{m-1} >= v_threshold: the spike came at that sub-step; without the
  hold the quadratic term would run away in the remaining sub-steps)
  ``preset`` runs Izhikevich (2003), v' = 0.04 V^2 + 5 V + 140 - u + I, u' = a_i (b_i V - u), V >= 30 mV:
  V <- c, u <- u + d (time in ms), in the form above with V = V_r + S v, S = 30 mV - V_r, u = S w + b_i V_r:
    V_r < V_c the roots of 0.04 V^2 + (5 - b_i) V + 140 = 0 (V_r the rest, -70 mV for b_i = 0.2),
    a0 = 0.04 S, v_c = (V_c' - V_r) / S with V_c' = -125 - V_r, v_rest = 0, v_threshold = 1,
    v_reset = (c - V_r) / S, a = b_i, b = d / S, tau = 1 / dt, tau_w = 1 / (a_i dt)   (dt ms per step)
    I = 10 x (x = 1 is I = 10, the current of Izhikevich's figures): input_scale = 10 / S.

ALIF (Bellec et al. 2018, LSNN), state (v, a):
    h[t] = v + (x[t] - (v - v_reset)) / tau;  a' = rho a, rho = exp(-1 / tau_a)
    A[t] = v_threshold + beta a';  s[t] = F(h[t] - A[t]);  a[t] = a' + s[t]
    v[t] = v_reset where s = 1 (hard) or h[t] - A[t] s[t] (soft, relative to the adapted threshold)
ThetaLIF (Diehl & Cook 2015, SPAIC alifstdp_ex), state (v, theta): the same neuron written with
    theta = beta a: theta' = exp(-1 / tau_theta) theta, threshold v_threshold + theta', theta += theta_plus s
  (a second class: the same equations, the parameters and state named as in the paper).

CLIF (snnTorch Synaptic), state (v, i): alpha = exp(-1 / tau_s), beta = exp(-1 / tau),
    i[t] = alpha i + x[t];                 h[t] = beta v + i[t]                  (decay_input = False)
    i[t] = alpha i + (1 - alpha) x[t];     h[t] = beta v + (1 - beta) i[t]       (decay_input = True)
    v[t] = reset(h[t], s[t])   (decay_input = True: unit gain, a constant x settles at v = x)

GLIF5 (Teeter et al. 2018; SPAIC glif), dimensionless (E_L = 0, R = 1, one step = dt), state
(v, i1, i2, theta_s, theta_v):
    h[t] = v + (x[t] + i1 + i2 - v) / tau
    i_j' = (1 - k_j) i_j;  theta_s' = (1 - b_s) theta_s;  theta_v' = theta_v + a_v h[t] - b_v theta_v
    s[t] = F(h[t] - (v_threshold + theta_s' + theta_v'))          (v_threshold = Theta_inf)
    on a spike: v = f_v h[t] - delta_v, i_j = f_j i_j' + delta_i_j, theta_s = theta_s' + delta_theta_s

Hodgkin-Huxley (SPAIC hh; the 1952 squid axon with V in mV from rest, V = 0 at rest), state (v, m, h, n),
``substeps`` Euler sub-steps of dt / substeps ms per time step:
    C V' = I - g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L),  I = input_scale x[t]
    q' = alpha_q(V) (1 - q) - beta_q(V) q   (q = m, h, n)
    alpha_m = (25 - V) / (10 (exp((25 - V) / 10) - 1)),  beta_m = 4 exp(-V / 18)
    alpha_h = 0.07 exp(-V / 20),                         beta_h = 1 / (exp((30 - V) / 10) + 1)
    alpha_n = (10 - V) / (100 (exp((10 - V) / 10) - 1)), beta_n = 0.125 exp(-V / 80)
  No reset: h[t] is the peak of V within step t, and s[t] = F((h[t] - v_threshold) / v_scale) where
  V[t-1] < v_threshold (a spike is an upward crossing of the detection threshold).

Izhikevich and AdEx (two states, v and w, one shape of update) also run as one fused autograd node,
`kernels.adaptive.AdaptScan` (see `fused_scan`), which gives the generic step loop's values and gradients.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..kernels import adaptive as fused
from ..kernels import soma
from .base import StepNeuron, check_range

# --- AdEx and Izhikevich: v with a nonlinearity q(v), and an adaptation current w -----------------


class _TwoState(StepNeuron):
    """v' from a nonlinearity q(v) and an adaptation current w (AdEx, Izhikevich): see the module docstring.

    A subclass sets tau, tau_w, a, b, v_rest, input_scale, substeps and ``kind`` ('quadratic' or
    'exponential') and defines ``q(v)``; ``_q_terms`` gives the kernel what it needs to evaluate it.
    """

    state_names = ("v", "w")
    kind = ""
    substeps = 1

    def _init_adaptation(self, tau, tau_w, a, b, v_rest, input_scale):
        self.tau = check_range("tau", tau, 0.0, low_open=True)
        self.tau_w = check_range("tau_w", tau_w, 0.0, low_open=True)
        self.a = check_range("a", a)
        self.b = check_range("b", b)
        self.v_rest = check_range("v_rest", v_rest)
        self.input_scale = check_range("input_scale", input_scale, 0.0, low_open=True)

    def initial_state(self, like):
        return torch.full_like(like, self.v_rest), torch.zeros_like(like)

    def q(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def charge(self, x, state):
        v, w = state[0], state[1]
        n = self.substeps
        drive = x * self.input_scale if self.input_scale != 1.0 else x
        for m in range(n):
            v_m = v + (drive + self.q(v) - w) / (n * self.tau)
            w_m = w + (self.a * (v_m - self.v_rest) - w) / (n * self.tau_w)
            if m == 0:
                v, w = v_m, w_m
            else:  # the spike came at an earlier sub-step: hold
                held = v.detach() >= self.v_threshold
                v, w = torch.where(held, v, v_m), torch.where(held, w, w_m)
        return v, (w,)

    def after(self, h, s, aux):
        return self.reset_v(h, s), aux[0] + self.b * s

    def fused_scan(self, x_seq, state, feedback):
        if self.substeps != 1 or self.surrogate.stochastic or len(state) != 2:
            return None
        s, v, w = fused.AdaptScan.apply(x_seq, state[0], state[1], self, float(feedback))
        return s, (v, w)


class AdEx(_TwoState):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005), dimensionless; see the module docstring.

    Defaults: rest 0, rheobase threshold theta_rh = 0.8 with slope delta_T = 0.1, spike detection at
    v_threshold = 1 (= theta_rh + 2 delta_T), reset -0.1; the adaptation w (tau_w = 10 steps) follows
    the potential with a = 0.1 and jumps by b = 0.1 per spike. A constant x settles below threshold
    for x < theta_rh - delta_T = 0.7 (no adaptation), and fires on order-1 input. (SpikingJelly's EIF
    default delta_T = 1 has no resting state - q(v) > 0 for every v - so it fires with no input.)
    """

    kind = "exponential"

    def __init__(
        self,
        tau: float = 2.0,
        delta_T: float = 0.1,
        theta_rh: float = 0.8,
        v_rest: float = 0.0,
        tau_w: float = 10.0,
        a: float = 0.1,
        b: float = 0.1,
        input_scale: float = 1.0,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = -0.1,
        **kw,
    ):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kw)
        self._init_adaptation(tau, tau_w, a, b, v_rest, input_scale)
        self.delta_T = check_range("delta_T", delta_T, 0.0, low_open=True)
        self.theta_rh = check_range("theta_rh", theta_rh)
        if not self.v_rest < self.theta_rh:
            raise ValueError(f"theta_rh must be above v_rest (got theta_rh={theta_rh}, v_rest={v_rest})")

    def q(self, v):
        return self.delta_T * torch.exp(((v - self.theta_rh) / self.delta_T).clamp(max=fused.EXP_CAP)) - (
            v - self.v_rest
        )

    def extra_repr(self):
        return (
            f"tau={self.tau}, delta_T={self.delta_T}, theta_rh={self.theta_rh}, v_rest={self.v_rest}, "
            f"tau_w={self.tau_w}, a={self.a}, b={self.b}, " + super().extra_repr()
        )


# Izhikevich (2003) parameter sets (a_i, b_i, c [mV], d), Fig. 2 of the paper; the one place the names live.
IZHIKEVICH_PRESETS = {
    "regular_spiking": (0.02, 0.2, -65.0, 8.0),
    "fast_spiking": (0.1, 0.2, -65.0, 2.0),
    "intrinsically_bursting": (0.02, 0.2, -55.0, 4.0),
    "chattering": (0.02, 0.2, -50.0, 2.0),
}
IZHIKEVICH_ALIASES = {"bursting": "intrinsically_bursting"}
IZHIKEVICH_CURRENT = 10.0  # I (the 2003 model's units) of a unit input x: I = 10 drives all four presets to fire
_DEFAULT = "default"


def izhikevich_2003(a_i: float, b_i: float, c: float, d: float, dt: float = 1.0, v_peak: float = 30.0) -> dict:
    """The general-form parameters (dimensionless, see the module docstring) of Izhikevich (2003)'s
    (a, b, c, d) at ``dt`` ms per step."""
    disc = (5.0 - b_i) ** 2 - 4 * 0.04 * 140.0
    if disc < 0:
        raise ValueError(f"izhikevich b must leave the neuron a resting state (b <= 0.267; got b={b_i})")
    V_r = (-(5.0 - b_i) - math.sqrt(disc)) / 0.08  # the rest, -70 mV for b = 0.2
    S = v_peak - V_r
    return dict(
        tau=1.0 / dt,
        a0=0.04 * S,
        v_c=(-125.0 - 2 * V_r) / S,
        v_rest=0.0,
        v_threshold=1.0,
        v_reset=(c - V_r) / S,
        a=b_i,
        b=d / S,
        tau_w=1.0 / (a_i * dt),
        input_scale=IZHIKEVICH_CURRENT / S,
    )


class Izhikevich(_TwoState):
    """Izhikevich neuron: SpikingJelly's IzhikevichNode (``preset=None``), or the 2003 model by name.

    Every general parameter left at None takes the preset's value (``preset=None``: the defaults
    below: tau 2, v_c 0.8, a0 1, v_rest 0, v_threshold 1, v_reset -0.1, tau_w 2, a 0.1, b 0.2,
    input_scale 1, substeps 1); a value given explicitly wins over the preset. ``v_reset`` takes a
    float (hard reset), None (soft reset) or "default". With a preset, one step is ``dt`` ms
    (default 1) integrated in ``substeps`` Euler sub-steps (default 2, as Izhikevich's own code:
    two 0.5 ms steps per ms; the spike is the sub-step where V reaches 30 mV, the reset comes at the
    end of the step), and x = 1 is I = 10 (rheobase of regular spiking: x = 0.4). The fused kernel
    runs substeps = 1 only; more sub-steps take the generic step loop.
    """

    kind = "quadratic"

    def __init__(
        self,
        tau: Optional[float] = None,
        v_c: Optional[float] = None,
        a0: Optional[float] = None,
        v_rest: Optional[float] = None,
        tau_w: Optional[float] = None,
        a: Optional[float] = None,
        b: Optional[float] = None,
        input_scale: Optional[float] = None,
        v_threshold: Optional[float] = None,
        v_reset=_DEFAULT,
        preset: Optional[str] = None,
        dt: Optional[float] = None,
        substeps: Optional[int] = None,
        **kw,
    ):
        if preset is None:
            if dt is not None:
                raise ValueError(f"izhikevich dt applies to a preset only (got dt={dt!r}, preset=None)")
            p = dict(
                tau=2.0,
                v_c=0.8,
                a0=1.0,
                v_rest=0.0,
                v_threshold=1.0,
                v_reset=-0.1,
                tau_w=2.0,
                a=0.1,
                b=0.2,
                input_scale=1.0,
            )
            n = 1
        else:
            name = IZHIKEVICH_ALIASES.get(preset, preset)
            if name not in IZHIKEVICH_PRESETS:
                names = ", ".join(list(IZHIKEVICH_PRESETS) + list(IZHIKEVICH_ALIASES))
                raise ValueError(f"izhikevich preset must be one of {names} (got preset={preset!r})")
            p = izhikevich_2003(
                *IZHIKEVICH_PRESETS[name], dt=check_range("dt", 1.0 if dt is None else dt, 0.0, low_open=True)
            )
            n = 2
        given = dict(
            tau=tau,
            v_c=v_c,
            a0=a0,
            v_rest=v_rest,
            v_threshold=v_threshold,
            tau_w=tau_w,
            a=a,
            b=b,
            input_scale=input_scale,
        )
        p.update({key: val for key, val in given.items() if val is not None})
        if not (isinstance(v_reset, str) and v_reset == _DEFAULT):
            p["v_reset"] = v_reset
        n = n if substeps is None else substeps
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"substeps must be a whole number >= 1 (got substeps={substeps!r})")
        super().__init__(v_threshold=p["v_threshold"], v_reset=p["v_reset"], **kw)
        self._init_adaptation(p["tau"], p["tau_w"], p["a"], p["b"], p["v_rest"], p["input_scale"])
        self.a0 = check_range("a0", p["a0"], 0.0, low_open=True)
        self.v_c = check_range("v_c", p["v_c"])
        self.preset, self.substeps = preset, n

    def q(self, v):
        return self.a0 * (v - self.v_rest) * (v - self.v_c)

    def extra_repr(self):
        pre = f"preset={self.preset!r}, " if self.preset else ""
        return (
            pre + f"tau={self.tau:g}, v_c={self.v_c:g}, a0={self.a0:g}, v_rest={self.v_rest:g}, tau_w={self.tau_w:g}, "
            f"a={self.a:g}, b={self.b:g}, input_scale={self.input_scale:g}, substeps={self.substeps}, "
            + super().extra_repr()
        )


# --- adaptive thresholds ----------------------------------------------------------------------------


class ALIF(StepNeuron):
    """Adaptive-threshold LIF (Bellec et al. 2018, LSNN): A = v_threshold + beta a, a decays with
    rho = exp(-1/tau_a) and a += s; the soft reset subtracts A (see the module docstring)."""

    state_names = ("v", "a")

    def __init__(self, tau: float = 2.0, tau_a: float = 20.0, beta: float = 0.2, **kw):
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.tau_a = check_range("tau_a", tau_a, 0.0, low_open=True)
        self.beta = check_range("beta", beta, 0.0)
        self.rho, self.jump = math.exp(-1.0 / self.tau_a), 1.0

    def charge(self, x, state):
        v, a = state[0], state[1]
        return soma.lif_charge(x, v, self.tau, True, self.v_reset), (self.rho * a,)

    def threshold(self, a):
        return self.v_threshold + self.beta * a

    def fire(self, h, aux):
        x = h - self.threshold(aux[0])
        return self.surrogate(x, self.training) if self.surrogate.stochastic else self.surrogate(x)

    def after(self, h, s, aux):
        return self.reset_v(h, s, self.threshold(aux[0])), aux[0] + self.jump * s

    def extra_repr(self):
        return f"tau={self.tau}, tau_a={self.tau_a}, beta={self.beta}, " + super().extra_repr()


class ThetaLIF(ALIF):
    """LIF with the Diehl & Cook (2015) adaptive threshold (SPAIC alifstdp_ex): the threshold is
    v_threshold + theta, theta += theta_plus per spike and decays with tau_theta. The same equations
    as `ALIF` with theta = beta a (state ``theta`` holds theta itself). theta is per sample: it starts
    from 0 at every `reset()`; Diehl & Cook's homeostasis kept across samples is not modelled."""

    state_names = ("v", "theta")

    def __init__(self, tau: float = 2.0, tau_theta: float = 50.0, theta_plus: float = 0.05, **kw):
        theta_plus = check_range("theta_plus", theta_plus, 0.0)
        super().__init__(tau=tau, tau_a=check_range("tau_theta", tau_theta, 0.0, low_open=True), beta=1.0, **kw)
        self.jump = theta_plus

    def extra_repr(self):
        return f"tau={self.tau}, tau_theta={self.tau_a}, theta_plus={self.jump}, " + StepNeuron.extra_repr(self)


# --- current-based LIF ------------------------------------------------------------------------------


class CLIF(StepNeuron):
    """Current-based LIF (snnTorch Synaptic): an exponential synaptic current feeds a LIF membrane."""

    state_names = ("v", "i")

    def __init__(self, tau_s: float = 5.0, tau: float = 2.0, decay_input: bool = True, **kw):
        super().__init__(**kw)
        self.tau_s = check_range("tau_s", tau_s, 0.0, low_open=True)
        self.tau = check_range("tau", tau, 0.0, low_open=True)
        self.alpha, self.beta = math.exp(-1.0 / self.tau_s), math.exp(-1.0 / self.tau)
        self.decay_input = bool(decay_input)

    def charge(self, x, state):
        v, i = state[0], state[1]
        if self.decay_input:
            i = self.alpha * i + (1.0 - self.alpha) * x
            return self.beta * v + (1.0 - self.beta) * i, (i,)
        i = self.alpha * i + x
        return self.beta * v + i, (i,)

    def extra_repr(self):
        return f"tau_s={self.tau_s}, tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


# --- GLIF5 ------------------------------------------------------------------------------------------


class GLIF(StepNeuron):
    """Generalized LIF, GLIF5 (Teeter et al. 2018): after-spike currents i1, i2, a spike-induced
    threshold theta_s and a voltage-dependent one theta_v (see the module docstring). The defaults
    fire like a LIF with threshold 1 on order-1 input, with a fast depolarising and a slow
    hyperpolarising after-spike current and a mild threshold adaptation."""

    state_names = ("v", "i1", "i2", "theta_s", "theta_v")

    def __init__(
        self,
        tau: float = 2.0,
        k1: float = 0.5,
        k2: float = 0.05,
        f1: float = 1.0,
        f2: float = 1.0,
        delta_i1: float = 0.1,
        delta_i2: float = -0.05,
        b_s: float = 0.1,
        delta_theta_s: float = 0.1,
        a_v: float = 0.02,
        b_v: float = 0.1,
        f_v: float = 0.0,
        delta_v: float = 0.0,
        **kw,
    ):
        kw.setdefault("v_reset", 0.0)
        if kw["v_reset"] != 0.0:
            raise ValueError(f"glif resets by f_v and delta_v from rest 0 (got v_reset={kw['v_reset']!r})")
        super().__init__(**kw)
        self.tau = check_range("tau", tau, 1.0, low_open=True)
        self.k = (check_range("k1", k1, 0.0, 1.0), check_range("k2", k2, 0.0, 1.0))
        self.f = (check_range("f1", f1, 0.0, 1.0), check_range("f2", f2, 0.0, 1.0))
        self.delta_i = (check_range("delta_i1", delta_i1), check_range("delta_i2", delta_i2))
        self.b_s = check_range("b_s", b_s, 0.0, 1.0)
        self.delta_theta_s = check_range("delta_theta_s", delta_theta_s, 0.0)
        self.a_v = check_range("a_v", a_v)
        self.b_v = check_range("b_v", b_v, 0.0, 1.0)
        self.f_v = check_range("f_v", f_v, 0.0, 1.0, high_open=True)
        self.delta_v = check_range("delta_v", delta_v, 0.0)

    def charge(self, x, state):
        v, i1, i2, th_s, th_v = state[:5]
        h = v + (x + i1 + i2 - v) / self.tau
        th_v = th_v + self.a_v * h - self.b_v * th_v
        return h, ((1.0 - self.k[0]) * i1, (1.0 - self.k[1]) * i2, (1.0 - self.b_s) * th_s, th_v)

    def fire(self, h, aux):
        x = h - (self.v_threshold + aux[2] + aux[3])
        return self.surrogate(x, self.training) if self.surrogate.stochastic else self.surrogate(x)

    def after(self, h, s, aux):
        i1, i2, th_s, th_v = aux
        s_r = s.detach() if self.detach_reset else s
        v = h + s_r * ((self.f_v - 1.0) * h - self.delta_v)
        i1 = i1 + s * ((self.f[0] - 1.0) * i1 + self.delta_i[0])
        i2 = i2 + s * ((self.f[1] - 1.0) * i2 + self.delta_i[1])
        return v, i1, i2, th_s + self.delta_theta_s * s, th_v

    def extra_repr(self):
        return (
            f"tau={self.tau}, k={self.k}, f={self.f}, delta_i={self.delta_i}, b_s={self.b_s}, "
            f"delta_theta_s={self.delta_theta_s}, a_v={self.a_v}, b_v={self.b_v}, f_v={self.f_v}, "
            f"delta_v={self.delta_v}, " + super().extra_repr()
        )


# --- Hodgkin-Huxley ---------------------------------------------------------------------------------


def _x_over_expm1(u: torch.Tensor) -> torch.Tensor:
    """u / (exp(u) - 1), 1 at u = 0 (finite value and gradient everywhere)."""
    small = u.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(u), u)
    return torch.where(small, 1.0 - 0.5 * u, safe / torch.expm1(safe))


def hh_rates(v: torch.Tensor):
    """(alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n) in 1/ms at V = v mV from rest."""
    return (
        _x_over_expm1((25.0 - v) / 10.0),
        4.0 * torch.exp(-v / 18.0),
        0.07 * torch.exp(-v / 20.0),
        torch.sigmoid((v - 30.0) / 10.0),
        0.1 * _x_over_expm1((10.0 - v) / 10.0),
        0.125 * torch.exp(-v / 80.0),
    )


_V_RATES = (-100.0, 200.0)  # mV: the rates are evaluated on V clipped to this range (no overflow far from it)


class HodgkinHuxley(StepNeuron):
    """Hodgkin-Huxley (1952) squid axon, V in mV from rest (see the module docstring).

    One step is ``dt`` ms in ``substeps`` explicit Euler sub-steps (default 1 ms in 20 sub-steps of
    0.05 ms: the spike counts equal those of 40 and 80 sub-steps for |x| <= 20, while 10 sub-steps
    diverge). The gates are kept in [0, 1] and the rates are evaluated on V clipped to [-100, 200] mV,
    so a runaway input cannot overflow them. x = 1 is I = input_scale = 10 uA/cm^2; the neuron fires
    repetitively above about I = 6.3 (x = 0.63) and not below about 2.2 (x = 0.22). A spike is an
    upward crossing of v_threshold (50 mV); the surrogate sees (peak - v_threshold) / v_scale, so its
    alpha means the same as for a neuron with threshold 1. No reset, so no refractory period either
    (the neuron has its own).
    """

    state_names = ("v", "m", "h", "n")
    resets = False

    def __init__(
        self,
        dt: float = 1.0,
        substeps: int = 20,
        input_scale: float = 10.0,
        v_scale: float = 20.0,
        g_na: float = 120.0,
        g_k: float = 36.0,
        g_l: float = 0.3,
        e_na: float = 115.0,
        e_k: float = -12.0,
        e_l: float = 10.6,
        c_m: float = 1.0,
        v_threshold: float = 50.0,
        **kw,
    ):
        kw.setdefault("v_reset", 0.0)
        super().__init__(v_threshold=v_threshold, **kw)
        self.dt = check_range("dt", dt, 0.0, low_open=True)
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ValueError(f"substeps must be a whole number >= 1 (got substeps={substeps!r})")
        self.substeps = substeps
        self.input_scale = check_range("input_scale", input_scale, 0.0, low_open=True)
        self.v_scale = check_range("v_scale", v_scale, 0.0, low_open=True)
        self.g_na, self.g_k, self.g_l = (
            check_range(k, val, 0.0) for k, val in (("g_na", g_na), ("g_k", g_k), ("g_l", g_l))
        )
        self.e_na, self.e_k, self.e_l = check_range("e_na", e_na), check_range("e_k", e_k), check_range("e_l", e_l)
        self.c_m = check_range("c_m", c_m, 0.0, low_open=True)

    @property
    def v_rest0(self):
        return 0.0

    def initial_state(self, like):
        v = torch.zeros_like(like)
        am, bm, ah, bh, an, bn = hh_rates(v)
        return v, am / (am + bm), ah / (ah + bh), an / (an + bn)

    def charge(self, x, state):
        v, m, hg, n = state[:4]
        dt = self.dt / self.substeps
        drive = self.input_scale * x
        peak = v
        for _ in range(self.substeps):
            am, bm, ah, bh, an, bn = hh_rates(v.clamp(_V_RATES[0], _V_RATES[1]))
            i_ion = (
                self.g_na * m**3 * hg * (v - self.e_na) + self.g_k * n**4 * (v - self.e_k) + self.g_l * (v - self.e_l)
            )
            v, m, hg, n = (
                v + dt / self.c_m * (drive - i_ion),
                (m + dt * (am * (1.0 - m) - bm * m)).clamp(0.0, 1.0),
                (hg + dt * (ah * (1.0 - hg) - bh * hg)).clamp(0.0, 1.0),
                (n + dt * (an * (1.0 - n) - bn * n)).clamp(0.0, 1.0),
            )
            peak = torch.maximum(peak, v)
        below = (state[0] < self.v_threshold).to(v.dtype)  # an upward crossing only
        return peak, (v, m, hg, n, below)

    def fire(self, h, aux):
        x = (h - self.v_threshold) / self.v_scale
        s = self.surrogate(x, self.training) if self.surrogate.stochastic else self.surrogate(x)
        return s * aux[4]

    def after(self, h, s, aux):
        return aux[:4]

    def extra_repr(self):
        return (
            f"dt={self.dt}, substeps={self.substeps}, input_scale={self.input_scale}, v_scale={self.v_scale}, "
            f"g=({self.g_na}, {self.g_k}, {self.g_l}), E=({self.e_na}, {self.e_k}, {self.e_l}), " + super().extra_repr()
        )
