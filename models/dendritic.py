"""Dendritic neurons: synaptic current -> dendrite (K compartments) -> soma -> spikes.

A layer of S neurons shares one wiring (K compartments, K_in inputs, K_out outputs). Input
currents come from a synapse of `synapses.py`, one per input compartment of every neuron:

    linear  [T, B, S*K_in]       -> [T, B, S, K_in]                      (neuron-major)
    conv    [T, B, K_in*C, H, W] -> [T, B, K_in, C, H, W] -> [T, B, C, H, W, K_in]   (compartment-major)

(which one is inferred from ndim: 3 -> linear, 4+ -> conv; single-step the same without T). Per step t:

    v_k[t]  the dendrite's compartment potentials (`dendrite.py`), k in output_index
    J[t] = sum_k phi_k (v_k[t] - v[t-1])      forward_mode = "voltage_difference"
    J[t] = sum_k phi_k f(v_k[t])              forward_mode = "activation", f = forward_activation
    h[t] = soma charge with drive J[t];  s[t] = F(h[t] - v_threshold);  v[t] = reset(h[t], s[t])
    v_p,k[t] += bap_psi * s[t]                back-propagating spike into the output compartments

with the soma of `soma.py` (LIF or IF; hard reset to v_reset or soft reset when v_reset is None;
F a surrogate or `surrogate.StochasticFiring`). v[t-1] is the soma potential after the previous
step's reset. phi is a scalar or one value per output compartment, fixed or learnable; the default
(phi=None) is 1/K_out for every output compartment, so Phi = 1 whatever the wiring.

Voltage-difference forward keeps the soma linear. With a[t] = sum_k phi_k v_k[t] and
Phi = sum_k phi_k, J[t] = a[t] - Phi v[t-1], so the charge h[t] = alpha' v[t-1] + u'[t] with

    LIF, decay_input:    h = v + (J - (v - v_reset))/tau  ->  alpha' = 1 - (1 + Phi)/tau,  u' = (a + v_reset)/tau
    LIF, no decay_input: h = v - (v - v_reset)/tau + J    ->  alpha' = 1 - 1/tau - Phi,    u' = a + v_reset/tau
    IF:                  h = v + J                        ->  alpha' = 1 - Phi,            u' = a

(v_reset -> 0 in u' for soft reset). In general (alpha, u') = leak_and_drive(a) of the point soma
and alpha' = alpha - input_gain * Phi, input_gain = du/dJ (1/tau with decay_input, else 1). The
whole soma therefore still runs in ONE `soma.multi_step` call; alpha' is a tensor when phi is
learnable and its gradient comes back from the kernel. Note |alpha'| < 1 (a stable soma) needs
Phi < 2 tau - 1 (LIF, decay_input), Phi < 2 - 1/tau (no decay_input), Phi < 2 (IF).

A layer runs as: one synapse matmul, the dendrite for all T at once (passive / uncoupled active),
the fused soma kernel. Since the soma only needs a[t] = sum_k phi_k v_k[t], a passive dendrite is
read out without forming the [T, B, S, K] compartment potentials at all (`_drive_at_once`), and
active compartments run as one fused step loop; the general path below is the reference (and
serves ``store_seq``, learnable phi / g / strength and ``dendrite_method="loop"``).
Back-propagating spikes couple soma -> dendrite, so with bap_psi != 0 the neuron runs its single
step T times (the same code as step_mode='s').

State (cleared by `reset()`): ``v`` [B, S...] soma potential, ``v_dend`` [B, S..., K] compartment
potentials and ``v_dend_p`` their passive part, all after the last step (after the read-out
shortcut, computed on first access from the kept input); with ``store_seq = True``
also ``v_seq`` [T, B, S...] and ``v_dend_seq`` [T, B, S..., K] (after each step's reset / BAP).
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from . import soma
from .compartments import Active, Passive, active_scan
from .dendrite import Coupling, Dendrite, coupling_matrix, readout_factors
from .neurons import PointNeuron, SpikingModule, StepNeuron, _check_threshold
from .surrogate import Sigmoid, Surrogate
from .wiring import Wiring

Phi = Union[float, Sequence[float]]

FORWARD_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda v: v, "relu": torch.relu, "tanh": torch.tanh,
                       "softplus": torch.nn.functional.softplus}


def weighted_sum(v: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """sum_k phi_k v[..., k]: [..., K_out] -> [...]; phi scalar or [K_out]."""
    return v.sum(-1) * phi if phi.dim() == 0 else v @ phi.to(v.dtype)


def total_strength(phi: torch.Tensor, n_output: int) -> torch.Tensor:
    """Phi = sum_k phi_k."""
    return phi * n_output if phi.dim() == 0 else phi.sum()


def _number(name: str, value, minimum: Optional[float] = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {name}={value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {name}={value!r})")
    return float(value)


class DendriticNeuron(SpikingModule):
    """Wiring + compartments + dendrite + soma input + soma. Subclasses define the soma's leak."""

    store_seq = False

    def __init__(
        self,
        wiring: Wiring,
        compartment: Optional[nn.Module] = None,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        coupling_g: Optional[Coupling] = None,
        learn_g: bool = False,
        forward_mode: str = "voltage_difference",
        forward_activation: str = "sigmoid",
        phi: Optional[Phi] = None,
        learn_phi: bool = False,
        bap_psi: float = 0.0,
        firing=None,
        step_mode: str = "m",
        dendrite_method: str = "auto",
    ):
        super().__init__(step_mode)
        v_threshold = _number("v_threshold", v_threshold)
        v_reset = None if v_reset is None else _number("v_reset", v_reset)
        _check_threshold(v_threshold, v_reset)
        if forward_mode not in ("voltage_difference", "activation"):
            raise ValueError(f"forward_mode must be 'voltage_difference' or 'activation' (got forward_mode={forward_mode!r})")
        if forward_activation not in FORWARD_ACTIVATIONS:
            raise ValueError(
                f"forward_activation must be one of {sorted(FORWARD_ACTIVATIONS)} (got forward_activation={forward_activation!r})"
            )
        # a fresh copy per neuron layer: a Hydra partial shares one compartment object between calls
        comp = copy.deepcopy(compartment) if compartment is not None else Passive()
        self.dendrite = Dendrite(wiring, comp, coupling_g, learn_g, dendrite_method)
        self.wiring = wiring
        self.inputs_per_neuron = wiring.n_input
        self.v_threshold, self.v_reset = v_threshold, v_reset
        self.surrogate = firing if firing is not None else (surrogate if surrogate is not None else Sigmoid())
        self.detach_reset = bool(detach_reset)
        self.forward_mode, self.forward_activation = forward_mode, forward_activation
        p = _check_phi(phi, wiring.n_output, nonnegative=forward_mode == "voltage_difference")
        if learn_phi:
            self.phi = nn.Parameter(p)
        else:
            self.register_buffer("phi", p)
        self.bap_psi = _number("bap_psi", bap_psi)            # negative: a hyperpolarising back-propagating spike
        bap_mask = torch.zeros(wiring.n_compartments)
        bap_mask[wiring.output_index] = 1.0
        self.register_buffer("bap_mask", bap_mask, persistent=False)
        self.reset()

    # --- the soma (subclasses) ---------------------------------------------------------------------
    def leak_and_drive(self, x: torch.Tensor):
        """(alpha, u) of `soma.py` for soma input current x."""
        raise NotImplementedError

    @property
    def input_gain(self) -> float:
        """du/dx of `leak_and_drive`."""
        raise NotImplementedError

    # --- soma input ----------------------------------------------------------------------------
    def soma_terms(self, v_out: torch.Tensor):
        """(alpha', u') of the soma charge from the output compartments' v_out [..., K_out]."""
        if self.forward_mode == "voltage_difference":
            alpha, u = self.leak_and_drive(weighted_sum(v_out, self.phi))
            return alpha - self.input_gain * total_strength(self.phi, v_out.shape[-1]), u
        f = FORWARD_ACTIVATIONS[self.forward_activation]
        return self.leak_and_drive(weighted_sum(f(v_out), self.phi))

    # --- shapes and state ----------------------------------------------------------------------
    def split_compartments(self, x: torch.Tensor, n_lead: int) -> torch.Tensor:
        """Synaptic currents -> [lead..., S..., K_in] (n_lead = 2 for [T, B], 1 for [B])."""
        K_in = self.inputs_per_neuron
        if x.dim() == n_lead + 1:                                   # linear, neuron-major
            if x.shape[-1] % K_in:
                raise ValueError(f"input has {x.shape[-1]} features, not a multiple of K_in={K_in} (shape {tuple(x.shape)})")
            return x.unflatten(-1, (x.shape[-1] // K_in, K_in))
        if x.dim() >= n_lead + 2:                                   # conv, compartment-major
            c = x.shape[n_lead]
            if c % K_in:
                raise ValueError(f"input has {c} channels, not a multiple of K_in={K_in} (shape {tuple(x.shape)})")
            return x.unflatten(n_lead, (K_in, c // K_in)).movedim(n_lead, -1)
        raise ValueError(f"input of shape {tuple(x.shape)} has too few dimensions for step_mode={self.step_mode!r}")

    def _soma_v0(self, like: torch.Tensor) -> torch.Tensor:
        if self.v is not None and self.v.shape == like.shape:
            return self.v
        dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
        return torch.full(like.shape, 0.0 if self.v_reset is None else self.v_reset, dtype=dtype, device=like.device)

    def _dend_v0(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The passive state to continue from for input x [B, S..., K_in], or None (at rest)."""
        if self.v_dend_p is not None and self.v_dend_p.shape[:-1] == x.shape[:-1]:
            return self.v_dend_p
        return None

    def reset(self) -> None:
        self.v: Optional[torch.Tensor] = None
        self._set_dend(None, None)
        self.v_seq: Optional[torch.Tensor] = None
        self.v_dend_seq: Optional[torch.Tensor] = None
        self.h_seq: Optional[torch.Tensor] = None          # the soma's charge before each reset (store_seq, no BAP)

    # The compartment state after the last step. The all-at-once read-out (`_drive_at_once`) never
    # forms it; it is computed from the kept input on first access (`dendrite.last_state`), under
    # the grad mode of the forward pass, so training steps that reset every batch never pay for it.
    def _set_dend(self, v_p: Optional[torch.Tensor], v: Optional[torch.Tensor]) -> None:
        self._pending = None
        self._v_dend_p, self._v_dend = v_p, v

    def _settle(self) -> None:
        if self._pending is not None:
            x, v_p0, grad = self._pending
            with torch.set_grad_enabled(grad):
                v_p = self.dendrite.last_state(x, v_p0)
                self._set_dend(v_p, self.dendrite.compartment.potential(v_p))

    @property
    def v_dend_p(self) -> Optional[torch.Tensor]:
        self._settle()
        return self._v_dend_p

    @v_dend_p.setter
    def v_dend_p(self, value: Optional[torch.Tensor]) -> None:
        self._settle()
        self._v_dend_p = value

    @property
    def v_dend(self) -> Optional[torch.Tensor]:
        self._settle()
        return self._v_dend

    @v_dend.setter
    def v_dend(self, value: Optional[torch.Tensor]) -> None:
        self._settle()
        self._v_dend = value

    # --- dynamics ------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, v: torch.Tensor, v_p: torch.Tensor):
        """One step: x [B, S..., K_in], soma v [B, S...], passive state v_p [B, S..., K] -> (s, v, v_p, v_dend)."""
        v_p, v_dend = self.dendrite.step(x, v_p)
        alpha, u = self.soma_terms(self.dendrite.output(v_dend))
        s, v, _ = soma.single_step(
            u, v, alpha, self.v_threshold, self.v_reset, self.surrogate, self.detach_reset, self.training
        )
        if self.bap_psi != 0.0:                                     # back-propagating spike
            v_p = v_p + (self.bap_psi * s).unsqueeze(-1) * self.bap_mask.to(v_p.dtype)
            v_dend = self.dendrite.compartment.potential(v_p)
        return s, v, v_p, v_dend

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        x = self.split_compartments(x, 1)                           # [B, S..., K_in]
        v_p = self._dend_v0(x)
        v_p = self.dendrite.initial(x) if v_p is None else v_p
        s, self.v, self.v_dend_p, self.v_dend = self.step(x, self._soma_v0(x[..., 0]), v_p)
        return s

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        x = self.split_compartments(x_seq, 2)                       # [T, B, S..., K_in]
        v, v_p = self._soma_v0(x[0, ..., 0]), self._dend_v0(x[0])
        if self.bap_psi != 0.0:                                     # soma -> dendrite: step loop
            v_p = self.dendrite.initial(x[0]) if v_p is None else v_p
            s_seq, v_seq, vd_seq = [], [], []
            for x_t in x.unbind(0):                                 # one backward node, not T slices
                s, v, v_p, v_dend = self.step(x_t, v, v_p)
                s_seq.append(s)
                if self.store_seq:
                    v_seq.append(v)
                    vd_seq.append(v_dend)
            self.v = v
            self._set_dend(v_p, v_dend)
            if self.store_seq:
                self.v_seq, self.v_dend_seq = torch.stack(v_seq), torch.stack(vd_seq)
            return torch.stack(s_seq)
        fast = self._drive_at_once(x, v_p)
        if fast is None:
            vp_seq, vd_seq = self.dendrite.multi_step(x, v_p)       # [T, B, S..., K]
            alpha, u = self.soma_terms(self.dendrite.output(vd_seq))   # u [T, B, S...]
        else:
            alpha, u, gain, state = fast                            # the drive is gain * u
        s, self.v, h, v_seq = soma.multi_step(
            u, v, alpha, self.v_threshold, self.v_reset, self.surrogate, self.detach_reset, self.training,
            keep_v=self.store_seq, gain=1.0 if fast is None else gain,
        )
        if fast is None:
            self._set_dend(vp_seq[-1], vd_seq[-1])
        elif state is not None:
            self._set_dend(*state)
        else:
            self._set_dend(None, None)
            self._pending = (x, v_p, torch.is_grad_enabled())
        if self.store_seq:
            self.v_seq, self.v_dend_seq, self.h_seq = v_seq, vd_seq, h
        return s

    def soma_input(self, x_seq: torch.Tensor):
        """(alpha', u') of the soma charge h[t] = alpha' v[t-1] + u'[t] for synaptic currents x_seq
        [T, B, S*K_in] (or the conv layout), from the kept dendritic state: the dendrite's whole
        contribution for all T steps, computed as `multi_step` does (``dendrite_method``). Without
        back-propagating spikes (bap_psi = 0); the state is not changed."""
        if self.bap_psi != 0.0:
            raise ValueError("soma_input needs bap_psi = 0: a back-propagating spike couples the soma back into the dendrite")
        x = self.split_compartments(x_seq, 2)                       # [T, B, S..., K_in]
        v_p = self._dend_v0(x[0])
        fast = self._drive_at_once(x, v_p)
        if fast is not None:
            alpha, u, gain, _ = fast
            return alpha, (u if gain == 1.0 else u * gain)
        return self.soma_terms(self.dendrite.output(self.dendrite.multi_step(x, v_p)[1]))

    def _drive_at_once(self, x: torch.Tensor, v_p0: Optional[torch.Tensor]):
        """(alpha', u'/gain, gain, state) of the soma straight from the synaptic currents x [T, B, S..., K_in], or None.

        The soma only needs a[t] = sum_k phi_k v_k[t] (voltage-difference or identity activation):

        * passive dendrite: a = Ell @ (x @ q) + v_rest Phi whenever `dendrite.readout_factors` finds a
          rank-1 read-out (on CPU a leaky recurrence instead of Ell when Ell is geometric): one pass
          over x instead of forming all K compartments for all T steps; the compartment state
          after the last step is computed only if it is read (`_settle`);
        * active, segregated compartments: `compartments.active_scan`, the leaky recurrence and
          a = sum_k phi_k (v_p + f(v_p))_k step by step in one autograd node (no [T, ..., K] temporaries);
        * active, coupled compartments (inherently sequential): `dendrite.loop_readout`, the step
          loop in one autograd node.

        Parameters must be fixed (learnable phi, g or strength take the general path while grads
        are on). The soma's input gain is folded in: u' = input_gain a + u'(0), returned as
        (u' / gain, gain) so that a scale the read-out leaves over is applied inside the soma
        kernel. ``state`` is the compartment state after the last step, (v_p, v), or None when it
        is left to `_settle`. The results equal the general path's (tests/test_fast_paths.py).
        """
        d = self.dendrite
        comp, g = d.compartment, d.g
        if (self.store_seq or d.method == "loop"
                or (self.forward_mode == "activation" and self.forward_activation != "identity")):
            return None
        if comp.linear:
            mode = "readout"
        elif isinstance(comp, Active) and comp.activation != "none":
            mode = "active" if d.path() == "segregated" else "loop"
        else:
            return None
        if torch.is_grad_enabled() and (self.phi.requires_grad or (g is not None and g.requires_grad)
                                        or (mode != "readout" and comp.strength.requires_grad)):
            return None
        alpha0, u0 = self.leak_and_drive(0.0)
        if isinstance(alpha0, torch.Tensor) or isinstance(u0, torch.Tensor):
            return None
        T = x.shape[0]
        key = (mode, T, x.dtype, x.device, repr(comp), alpha0, u0, self.input_gain, self.forward_mode,
               self.phi.data_ptr(), self.phi._version, None if g is None else (g.data_ptr(), g._version),
               (comp.strength.data_ptr(), comp.strength._version) if mode != "readout" else None)
        if getattr(self, "_readout_key", None) != key:
            self._readout = self._readout_terms(T, x, alpha0, u0, mode)
            self._readout_key = key
        terms, alpha, const = self._readout
        if terms is None:
            return None
        gain = 1.0
        if mode == "active":                                        # segregated: x [T, B, S..., K]
            v_rest = comp.v_rest
            w0 = None if v_p0 is None else (v_p0 - v_rest if v_rest != 0.0 else v_p0)
            a, gain_d = comp.terms()
            u, w = active_scan(x, w0, a, gain_d, *terms, comp.activation, comp.beta, comp.theta_d - v_rest)
            v_p = w + v_rest if v_rest != 0.0 else w
            state = (v_p, comp.potential(v_p))
        elif mode == "loop":
            u, v_p = d.loop_readout(x, terms, v_p0)
            state = (v_p, comp.potential(v_p))
        else:
            w0 = None
            if v_p0 is not None:
                w0 = v_p0 - comp.v_rest if comp.v_rest != 0.0 else v_p0
            u, gain = d.readout(x, terms, w0, dim=2)                # u' = gain * u [T, B, S...]
            state = None
        if const != 0.0:
            u = u + const / gain
        return alpha, u, gain, state

    def _readout_terms(self, T: int, like: torch.Tensor, alpha0: float, u0: float, mode: str):
        """(terms, alpha', constant drive) for `_drive_at_once`; terms None when it does not apply.
        readout: the rank-1 factors (Ell, q, q as floats, m0) cast like ``like``;  active: (c, c * strength)
        as floats when uniform;  loop: c [K]. (c = input_gain * phi on the output compartments.)"""
        d = self.dendrite
        comp = d.compartment
        K = d.wiring.n_compartments
        c = torch.zeros(K, dtype=torch.float64)
        c[d.output_index.cpu()] = self.phi.detach().to("cpu", torch.float64)
        Phi = float(c.sum())
        ig = self.input_gain
        alpha = alpha0 - ig * Phi if self.forward_mode == "voltage_difference" else alpha0
        cast = dict(dtype=like.dtype, device=like.device)
        if mode == "loop":                                          # a = sum_k c_k v_k, v_rest included
            return (c * ig).to(**cast), alpha, u0
        if mode == "active":                                        # y = a - v_rest Phi (see compartments.active_scan)
            s = comp.strength.detach().to("cpu", torch.float64)
            c = c * ig
            cs = c * s
            const = ig * comp.v_rest * Phi + u0
            if bool((c == c[0]).all()) and s.dim() == 0:
                return (float(c[0]), float(cs[0])), alpha, const
            return (c.to(**cast), cs.to(**cast)), alpha, const
        a, gain = comp.terms()
        P = a * torch.eye(K, dtype=torch.float64)
        if d.g is not None:
            P = P + gain * coupling_matrix(K, d.edge_index.cpu(), d.g.detach().to("cpu", torch.float64))
        const = ig * comp.v_rest * Phi + u0
        found = readout_factors(P, gain, T, d.input_index.cpu(), c)
        if found is None:
            return None, alpha, const
        Ell, q, m0, geo = found
        geo = None if geo is None else (geo[0] * ig, geo[1])
        factors = ((Ell * ig).to(**cast), q.to(**cast), [float(v) for v in q], (m0 * ig).to(**cast), geo)
        return factors, alpha, const

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, surrogate={self.surrogate}, "
            f"forward_mode={self.forward_mode!r}, bap_psi={self.bap_psi}, step_mode={self.step_mode!r}"
        )


def _check_phi(phi, n_output: int, nonnegative: bool) -> torch.Tensor:
    if phi is None:  # the default: 1/K_out each, so Phi = 1 and the soma is stable for every wiring
        phi = 1.0 / n_output
    if isinstance(phi, (int, float)) and not isinstance(phi, bool):
        values, scalar = [phi], True
    else:
        try:
            values, scalar = list(phi), False
        except TypeError:
            raise ValueError(f"phi must be a number or a list of numbers (got phi={phi!r})") from None
        if len(values) != n_output:
            raise ValueError(f"phi has {len(values)} values but the wiring has {n_output} output compartments (got phi={phi!r})")
    for v in values:
        _number("phi", v, minimum=0.0 if nonnegative else None)
    return torch.tensor(float(values[0])) if scalar else torch.tensor([float(v) for v in values])


class DendLIF(DendriticNeuron):
    """Dendritic neuron with a LIF soma: h = v + (J - (v - v_reset))/tau (decay_input) or v - (v - v_reset)/tau + J."""

    def __init__(
        self,
        wiring: Wiring,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        compartment: Optional[nn.Module] = None,
        coupling_g: Optional[Coupling] = None,
        learn_g: bool = False,
        forward_mode: str = "voltage_difference",
        forward_activation: str = "sigmoid",
        phi: Optional[Phi] = None,
        learn_phi: bool = False,
        bap_psi: float = 0.0,
        firing=None,
        step_mode: str = "m",
        dendrite_method: str = "auto",
    ):
        if _number("tau", tau) <= 1:
            raise ValueError(f"tau must be > 1 (got tau={tau!r})")
        super().__init__(
            wiring, compartment, v_threshold, v_reset, surrogate, detach_reset, coupling_g, learn_g,
            forward_mode, forward_activation, phi, learn_phi, bap_psi, firing, step_mode, dendrite_method,
        )
        self.tau, self.decay_input = float(tau), bool(decay_input)

    def leak_and_drive(self, x):
        return soma.lif_terms(x, 1.0 / self.tau, self.v_reset, self.decay_input)

    @property
    def input_gain(self) -> float:
        return 1.0 / self.tau if self.decay_input else 1.0

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


class DendIF(DendriticNeuron):
    """Dendritic neuron with an IF soma: h = v + J."""

    def __init__(
        self,
        wiring: Wiring,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        compartment: Optional[nn.Module] = None,
        coupling_g: Optional[Coupling] = None,
        learn_g: bool = False,
        forward_mode: str = "voltage_difference",
        forward_activation: str = "sigmoid",
        phi: Optional[Phi] = None,
        learn_phi: bool = False,
        bap_psi: float = 0.0,
        firing=None,
        step_mode: str = "m",
        dendrite_method: str = "auto",
    ):
        super().__init__(
            wiring, compartment, v_threshold, v_reset, surrogate, detach_reset, coupling_g, learn_g,
            forward_mode, forward_activation, phi, learn_phi, bap_psi, firing, step_mode, dendrite_method,
        )

    def leak_and_drive(self, x):
        return 1.0, x

    @property
    def input_gain(self) -> float:
        return 1.0


class Dendritic(DendriticNeuron):
    """A dendritic neuron whose soma is any point neuron of the library, chosen by config.

    ``soma`` is a point-neuron module or a factory of one (a Hydra partial: each layer gets its own).
    Its threshold, reset, surrogate and refractory period are the soma's. The soma's input current is
    the J[t] of the module docstring:

    * a linear soma (`neurons.PointNeuron`: LIF, IF, PLIF) without a refractory period uses the
      soma's (alpha, u) directly, so the whole neuron runs the fast paths of `DendriticNeuron`
      exactly as `DendLIF` / `DendIF` do;
    * any other soma (QIF, EIF, AdEx, Izhikevich, ALIF, HH, ...) runs its own multi-step on the
      dendrite's read-out a[t] = sum_k phi_k v_k[t] (or sum_k phi_k f(v_k[t]) with the activation
      forward), computed for all T at once by the same fast paths, with ``feedback = Phi``: its
      input at step t is a[t] - Phi v[t-1] = J[t] (voltage difference) or a[t] (activation). With
      back-propagating spikes the dendrite and the soma step together, T times.

    A soma without a membrane potential to feed back (PSN, which is not iterative) needs
    ``forward_mode="activation"``.
    """

    def __init__(
        self,
        wiring: Wiring,
        soma: nn.Module,
        compartment: Optional[nn.Module] = None,
        coupling_g: Optional[Coupling] = None,
        learn_g: bool = False,
        forward_mode: str = "voltage_difference",
        forward_activation: str = "sigmoid",
        phi: Optional[Phi] = None,
        learn_phi: bool = False,
        bap_psi: float = 0.0,
        step_mode: str = "m",
        dendrite_method: str = "auto",
    ):
        cell = soma if isinstance(soma, nn.Module) else soma() if callable(soma) else None
        if not isinstance(cell, SpikingModule):
            raise ValueError(f"soma must be a point neuron of dendsn (got soma={soma!r})")
        if getattr(cell, "inputs_per_neuron", 1) != 1:
            raise ValueError(f"soma must be a point neuron, not a dendritic one (got {type(cell).__name__})")
        iterative = isinstance(cell, StepNeuron)
        if not iterative and forward_mode == "voltage_difference":
            raise ValueError(f"the {type(cell).__name__} soma has no membrane potential for forward_mode=voltage_difference; "
                             "use neuron.forward_mode=activation")
        if not iterative and bap_psi != 0.0:
            raise ValueError(f"the {type(cell).__name__} soma is not iterative, so it cannot take a back-propagating spike; use bap_psi=0")
        v_th = getattr(cell, "v_threshold", 1.0)
        v_reset = getattr(cell, "v_reset", 0.0)
        super().__init__(
            wiring, compartment, v_th, v_reset, getattr(cell, "surrogate", None), getattr(cell, "detach_reset", False),
            coupling_g, learn_g, forward_mode, forward_activation, phi, learn_phi, bap_psi, None, step_mode, dendrite_method,
        )
        cell.step_mode = "m"
        self.soma = cell
        self.linear_soma = isinstance(cell, PointNeuron) and not cell.refractory

    # the soma's charge: the point soma's own (linear somas), else the identity (the generic path
    # reads the dendrite's a[t] through it and hands it to the soma's multi-step)
    def leak_and_drive(self, x):
        return self.soma.leak_and_drive(x) if self.linear_soma else (1.0, x)

    @property
    def input_gain(self):
        return self.soma.input_gain if self.linear_soma else 1.0

    @property
    def feedback(self) -> float:
        return float(total_strength(self.phi.detach(), self.wiring.n_output)) if self.forward_mode == "voltage_difference" else 0.0

    def reset(self) -> None:
        super().reset()
        if "soma" in self._modules:
            self.soma.reset()

    def _read(self, x: torch.Tensor, v_p: Optional[torch.Tensor]) -> torch.Tensor:
        """a[t] for all T from synaptic currents x [T, B, S..., K_in] (the dendrite's state is kept)."""
        fast = self._drive_at_once(x, v_p)
        if fast is None:
            vp_seq, vd_seq = self.dendrite.multi_step(x, v_p)
            _, a = self.soma_terms(self.dendrite.output(vd_seq))
            self._set_dend(vp_seq[-1], vd_seq[-1])
            if self.store_seq:
                self.v_dend_seq = vd_seq
            return a
        _, u, gain, state = fast
        if state is not None:
            self._set_dend(*state)
        else:
            self._set_dend(None, None)
            self._pending = (x, v_p, torch.is_grad_enabled())
        return u if gain == 1.0 else u * gain

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if self.linear_soma:
            return super().multi_step(x_seq)
        x = self.split_compartments(x_seq, 2)                       # [T, B, S..., K_in]
        v_p = self._dend_v0(x[0])
        self.soma.store_seq = self.store_seq
        if self.bap_psi != 0.0:                                     # soma -> dendrite: step together
            v_p = self.dendrite.initial(x[0]) if v_p is None else v_p
            state = self.soma._state0(x[0, ..., 0])
            out, vs, vds, hs = [], [], [], []
            for x_t in x.unbind(0):
                s, h, state, v_p, v_dend = self._step(x_t, state, v_p)
                out.append(s)
                if self.store_seq:
                    vs.append(state[0]), vds.append(v_dend), hs.append(h)
            self.soma.state = state
            self._set_dend(v_p, v_dend)
            if self.store_seq:
                self.v_seq, self.v_dend_seq, self.h_seq = torch.stack(vs), torch.stack(vds), torch.stack(hs)
            self.v = self.soma.v
            return torch.stack(out)
        a = self._read(x, v_p)
        s = self.soma.run(a, self.feedback) if hasattr(self.soma, "run") else self.soma(a)
        self.v = getattr(self.soma, "v", None)
        if self.store_seq:
            self.v_seq, self.h_seq = self.soma.v_seq, self.soma.h_seq
        return s

    def _step(self, x: torch.Tensor, state: tuple, v_p: torch.Tensor):
        v_p, v_dend = self.dendrite.step(x, v_p)
        _, a = self.soma_terms(self.dendrite.output(v_dend))
        s, h, state = self.soma.step(a, state, self.feedback)
        if self.bap_psi != 0.0:
            v_p = v_p + (self.bap_psi * s).unsqueeze(-1) * self.bap_mask.to(v_p.dtype)
            v_dend = self.dendrite.compartment.potential(v_p)
        return s, h, state, v_p, v_dend

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear_soma:
            return super().single_step(x)
        if not hasattr(self.soma, "step"):
            raise ValueError(f"the {type(self.soma).__name__} soma runs whole sequences only (step_mode='m')")
        x = self.split_compartments(x, 1)
        v_p = self._dend_v0(x)
        v_p = self.dendrite.initial(x) if v_p is None else v_p
        s, _, self.soma.state, v_p, v_dend = self._step(x, self.soma._state0(x[..., 0]), v_p)
        self._set_dend(v_p, v_dend)
        self.v = self.soma.v
        return s

    def soma_input(self, x_seq: torch.Tensor):
        if not self.linear_soma:
            raise ValueError(f"soma_input needs a linear soma (LIF, IF, PLIF), not {type(self.soma).__name__}")
        return super().soma_input(x_seq)

    def extra_repr(self) -> str:
        return f"forward_mode={self.forward_mode!r}, bap_psi={self.bap_psi}, step_mode={self.step_mode!r}"
