"""Dendritic neurons: synaptic current -> dendrite (K compartments) -> soma -> spikes.

A layer of S neurons shares one wiring (K compartments, K_in inputs, K_out outputs). Input
currents come from a synapse of `layers.synapses`, one per input compartment of every neuron:

    linear  [T, B, S*K_in]       -> [T, B, S, K_in]                      (neuron-major)
    conv    [T, B, K_in*C, H, W] -> [T, B, K_in, C, H, W] -> [T, B, C, H, W, K_in]   (compartment-major)

(which one is inferred from ndim: 3 -> linear, 4+ -> conv; single-step the same without T). Per step t:

    v_k[t]  the dendrite's compartment potentials (`dendrite`), k in output_index
    J[t]    the soma's input current from v_k[t] and v[t-1] (`soma`: voltage difference or activation)
    s[t], v[t] = the soma's step with input J[t]     (any point neuron of `dendsn.neurons`)
    v_p,k[t] += bap_psi * s[t]                       back-propagating spike into the output compartments

The soma is any point neuron; ``firing`` (`surrogate.StochasticFiring`) replaces its firing function.
A soma linear below threshold (LIF, IF, PLIF without a refractory period) charges
h[t] = alpha' v[t-1] + u'[t] (`soma`), so the whole soma runs in ONE kernel call
(`kernels.soma.multi_step`); any other soma runs its own multi-step on the dendrite's read-out
a[t] = sum_k phi_k v_k[t] with ``feedback = Phi``. Either way the dendrite's drive for all T steps
comes from `fast.drive_at_once` where a fast path applies (the soma only needs a[t]),
else from the reference: every compartment for every step (also with ``store_seq``, learnable
phi / g / strength and ``dendrite_method="loop"``). Back-propagating spikes couple soma ->
dendrite, so with bap_psi != 0 the neuron runs its single step T times (the same code as
step_mode='s'). `DendLIF` and `DendIF` are this neuron with a LIF / IF soma, built from flat keys.

State (cleared by `reset()`): ``v`` [B, S...] soma potential, ``v_dend`` [B, S..., K] compartment
potentials and ``v_dend_p`` their passive part, all after the last step (after the read-out
shortcut, computed on first access from the kept input); with ``store_seq = True``
also ``v_seq`` [T, B, S...] and ``v_dend_seq`` [T, B, S..., K] (after each step's reset / BAP).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from ..kernels import soma as soma_kernel
from ..neurons.base import PointNeuron, SpikingModule, StepNeuron
from ..neurons.lif import IF, LIF
from ..surrogate import Surrogate
from . import fast as readout
from .compartments import Passive
from .dendrite import Coupling, Dendrite
from .soma import FORWARD_ACTIVATIONS, Phi, check_number, check_phi, total_strength, weighted_sum
from .wiring import Wiring


class DendriticNeuron(SpikingModule):
    """Wiring + compartments + dendrite + soma input + any point-neuron soma (see the module docstring).

    ``soma`` is a point-neuron module or a factory of one (a Hydra partial: each layer gets its own).
    Its threshold, reset, surrogate and refractory period are the soma's. A soma without a membrane
    potential to feed back (PSN, which is not iterative) needs ``forward_mode="activation"``.
    """

    store_seq = False

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
        firing: Optional[Surrogate] = None,
    ):
        cell = soma_cell(soma, forward_mode, bap_psi, firing)
        super().__init__(step_mode)
        if forward_mode not in ("voltage_difference", "activation"):
            raise ValueError(
                f"forward_mode must be 'voltage_difference' or 'activation' (got forward_mode={forward_mode!r})"
            )
        if forward_activation not in FORWARD_ACTIVATIONS:
            raise ValueError(
                f"forward_activation must be one of {sorted(FORWARD_ACTIVATIONS)} (got forward_activation={forward_activation!r})"
            )
        # a fresh copy per neuron layer: a Hydra partial shares one compartment object between calls
        comp = copy.deepcopy(compartment) if compartment is not None else Passive()
        self.dendrite = Dendrite(wiring, comp, coupling_g, learn_g, dendrite_method)
        self.wiring = wiring
        self.inputs_per_neuron = wiring.n_input
        self.forward_mode, self.forward_activation = forward_mode, forward_activation
        p = check_phi(phi, wiring.n_output, nonnegative=forward_mode == "voltage_difference")
        if learn_phi:
            self.phi = nn.Parameter(p)
        else:
            self.register_buffer("phi", p)
        self.bap_psi = check_number("bap_psi", bap_psi)  # negative: a hyperpolarising back-propagating spike
        bap_mask = torch.zeros(wiring.n_compartments)
        bap_mask[wiring.output_index] = 1.0
        self.register_buffer("bap_mask", bap_mask, persistent=False)
        if firing is not None:
            cell.surrogate = firing
        cell.step_mode = "m"
        self.soma = cell
        self.linear_soma = isinstance(cell, PointNeuron) and not cell.refractory
        self.reset()

    # --- the soma ------------------------------------------------------------------------------
    # the soma's threshold, reset and firing, read and set through the neuron
    v_threshold = property(
        lambda self: getattr(self.soma, "v_threshold", 1.0),
        lambda self, value: setattr(self.soma, "v_threshold", value),
    )
    v_reset = property(
        lambda self: getattr(self.soma, "v_reset", 0.0), lambda self, value: setattr(self.soma, "v_reset", value)
    )
    surrogate = property(
        lambda self: getattr(self.soma, "surrogate", None), lambda self, value: setattr(self.soma, "surrogate", value)
    )
    detach_reset = property(
        lambda self: getattr(self.soma, "detach_reset", False),
        lambda self, value: setattr(self.soma, "detach_reset", value),
    )

    # the soma's charge: the point soma's own (linear somas), else the identity (the soma's own
    # multi-step reads the dendrite's a[t] through it)
    def leak_and_drive(self, x):
        """(alpha, u) of `kernels.soma` for soma input current x."""
        return self.soma.leak_and_drive(x) if self.linear_soma else (1.0, x)

    @property
    def input_gain(self):
        """du/dx of `leak_and_drive`."""
        return self.soma.input_gain if self.linear_soma else 1.0

    @property
    def feedback(self) -> float:
        return (
            float(total_strength(self.phi.detach(), self.wiring.n_output))
            if self.forward_mode == "voltage_difference"
            else 0.0
        )

    def soma_terms(self, v_out: torch.Tensor):
        """(alpha', u') of the soma charge from the output compartments' v_out [..., K_out] (`soma`)."""
        if self.forward_mode == "voltage_difference":
            alpha, u = self.leak_and_drive(weighted_sum(v_out, self.phi))
            return alpha - self.input_gain * total_strength(self.phi, v_out.shape[-1]), u
        f = FORWARD_ACTIVATIONS[self.forward_activation]
        return self.leak_and_drive(weighted_sum(f(v_out), self.phi))

    # --- shapes and state ----------------------------------------------------------------------
    def split_compartments(self, x: torch.Tensor, n_lead: int) -> torch.Tensor:
        """Synaptic currents -> [lead..., S..., K_in] (n_lead = 2 for [T, B], 1 for [B])."""
        K_in = self.inputs_per_neuron
        if x.dim() == n_lead + 1:  # linear, neuron-major
            if x.shape[-1] % K_in:
                raise ValueError(
                    f"input has {x.shape[-1]} features, not a multiple of K_in={K_in} (shape {tuple(x.shape)})"
                )
            return x.unflatten(-1, (x.shape[-1] // K_in, K_in))
        if x.dim() >= n_lead + 2:  # conv, compartment-major
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

    def _soma_state0(self, like: torch.Tensor) -> tuple:
        """The soma's state to continue from: (v,) for a linear soma (kept here), else the soma's own."""
        return (self._soma_v0(like),) if self.linear_soma else self.soma.start_state(like)

    def _keep_soma(self, state: tuple) -> None:
        if self.linear_soma:
            self.v = state[0]
        else:
            self.soma.state = state
            self.v = self.soma.v

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
        self.h_seq: Optional[torch.Tensor] = None  # the soma's charge before each reset (store_seq)
        if "soma" in self._modules:
            self.soma.reset()

    # The compartment state after the last step. The all-at-once read-out (`fast`) never
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
    def soma_step(self, v_out: torch.Tensor, state: tuple):
        """One soma step from the output compartments' v_out [B, S..., K_out] -> (s, h, state)."""
        if self.linear_soma:
            alpha, u = self.soma_terms(v_out)
            s, v, h = soma_kernel.single_step(
                u, state[0], alpha, self.v_threshold, self.v_reset, self.surrogate, self.detach_reset, self.training
            )
            return s, h, (v,)
        _, a = self.soma_terms(v_out)
        return self.soma.step(a, state, self.feedback)

    def step(self, x: torch.Tensor, state: tuple, v_p: torch.Tensor):
        """The reference step: x [B, S..., K_in], soma state, passive state v_p [B, S..., K]
        -> (s, h, soma state, v_p, v_dend)."""
        v_p, v_dend = self.dendrite.step(x, v_p)
        s, h, state = self.soma_step(self.dendrite.output(v_dend), state)
        if self.bap_psi != 0.0:  # back-propagating spike
            v_p = v_p + (self.bap_psi * s).unsqueeze(-1) * self.bap_mask.to(v_p.dtype)
            v_dend = self.dendrite.compartment.potential(v_p)
        return s, h, state, v_p, v_dend

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if not self.linear_soma and not hasattr(self.soma, "step"):
            raise ValueError(f"the {type(self.soma).__name__} soma runs whole sequences only (step_mode='m')")
        x = self.split_compartments(x, 1)  # [B, S..., K_in]
        v_p = self._dend_v0(x)
        v_p = self.dendrite.initial(x) if v_p is None else v_p
        s, _, state, v_p, v_dend = self.step(x, self._soma_state0(x[..., 0]), v_p)
        self._keep_soma(state)
        self._set_dend(v_p, v_dend)
        return s

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        x = self.split_compartments(x_seq, 2)  # [T, B, S..., K_in]
        if self.linear_soma:
            v = self._soma_v0(x[0, ..., 0])
        else:
            self.soma.store_seq = self.store_seq
        v_p = self._dend_v0(x[0])
        if self.bap_psi != 0.0:  # soma -> dendrite: step together
            return self._step_loop(x, v_p)
        alpha, u, gain = self.drive(x, v_p)
        if not self.linear_soma:  # the soma's own multi-step on a[t]
            a = u if gain == 1.0 else u * gain
            s = self.soma.run(a, self.feedback) if hasattr(self.soma, "run") else self.soma(a)
            self.v = getattr(self.soma, "v", None)
            if self.store_seq:
                self.v_seq, self.h_seq = self.soma.v_seq, self.soma.h_seq
            return s
        s, self.v, h, v_seq = soma_kernel.multi_step(
            u,
            v,
            alpha,
            self.v_threshold,
            self.v_reset,
            self.surrogate,
            self.detach_reset,
            self.training,
            keep_v=self.store_seq,
            gain=gain,
        )
        if self.store_seq:
            self.v_seq, self.h_seq = v_seq, h
        return s

    def _step_loop(self, x: torch.Tensor, v_p: Optional[torch.Tensor]) -> torch.Tensor:
        """`step` T times over x [T, B, S..., K_in] (back-propagating spikes)."""
        v_p = self.dendrite.initial(x[0]) if v_p is None else v_p
        state = self._soma_state0(x[0, ..., 0])
        out, vs, vds, hs = [], [], [], []
        for x_t in x.unbind(0):  # one backward node, not T slices
            s, h, state, v_p, v_dend = self.step(x_t, state, v_p)
            out.append(s)
            if self.store_seq:
                vs.append(state[0]), vds.append(v_dend), hs.append(h)
        self._keep_soma(state)
        self._set_dend(v_p, v_dend)
        if self.store_seq:
            # (a linear soma's charge is not kept here: its traces show v, as they did)
            self.v_seq, self.v_dend_seq = torch.stack(vs), torch.stack(vds)
            self.h_seq = None if self.linear_soma else torch.stack(hs)
        return torch.stack(out)

    def drive(self, x: torch.Tensor, v_p: Optional[torch.Tensor]):
        """(alpha', u', gain) of the soma for synaptic currents x [T, B, S..., K_in] from the passive state
        v_p: its charge is h[t] = alpha' v[t-1] + gain * u'[t] (any other soma reads a[t] = gain * u'[t]).
        The dendrite's state after the last step is kept (and ``v_dend_seq`` with ``store_seq``)."""
        fast = readout.drive_at_once(self, x, v_p)
        if fast is None:  # the reference: every compartment
            vp_seq, vd_seq = self.dendrite.multi_step(x, v_p)  # [T, B, S..., K]
            alpha, u = self.soma_terms(self.dendrite.output(vd_seq))  # u [T, B, S...]
            self._set_dend(vp_seq[-1], vd_seq[-1])
            if self.store_seq:
                self.v_dend_seq = vd_seq
            return alpha, u, 1.0
        alpha, u, gain, state = fast
        if state is not None:
            self._set_dend(*state)
        else:
            self._set_dend(None, None)
            self._pending = (x, v_p, torch.is_grad_enabled())
        return alpha, u, gain

    def soma_input(self, x_seq: torch.Tensor):
        """(alpha', u') of the soma charge h[t] = alpha' v[t-1] + u'[t] for synaptic currents x_seq
        [T, B, S*K_in] (or the conv layout), from the kept dendritic state: the dendrite's whole
        contribution for all T steps, computed as `multi_step` does (``dendrite_method``). Without
        back-propagating spikes (bap_psi = 0); the state is not changed."""
        if not self.linear_soma:
            raise ValueError(f"soma_input needs a linear soma (LIF, IF, PLIF), not {type(self.soma).__name__}")
        if self.bap_psi != 0.0:
            raise ValueError(
                "soma_input needs bap_psi = 0: a back-propagating spike couples the soma back into the dendrite"
            )
        x = self.split_compartments(x_seq, 2)  # [T, B, S..., K_in]
        v_p = self._dend_v0(x[0])
        fast = readout.drive_at_once(self, x, v_p)
        if fast is not None:
            alpha, u, gain, _ = fast
            return alpha, (u if gain == 1.0 else u * gain)
        return self.soma_terms(self.dendrite.output(self.dendrite.multi_step(x, v_p)[1]))

    def extra_repr(self) -> str:
        return f"forward_mode={self.forward_mode!r}, bap_psi={self.bap_psi}, step_mode={self.step_mode!r}"


def soma_cell(soma, forward_mode: str, bap_psi: float, firing) -> SpikingModule:
    """The soma module of ``soma`` (a point neuron or a factory of one), checked against the options
    that need an iterative soma (a membrane potential, a single step)."""
    cell = soma if isinstance(soma, nn.Module) else soma() if callable(soma) else None
    if not isinstance(cell, SpikingModule):
        raise ValueError(f"soma must be a point neuron of dendsn (got soma={soma!r})")
    if getattr(cell, "inputs_per_neuron", 1) != 1:
        raise ValueError(f"soma must be a point neuron, not a dendritic one (got {type(cell).__name__})")
    iterative = isinstance(cell, StepNeuron)
    if not iterative and forward_mode == "voltage_difference":
        raise ValueError(
            f"the {type(cell).__name__} soma has no membrane potential for forward_mode=voltage_difference; "
            "use neuron.forward_mode=activation"
        )
    if not iterative and bap_psi != 0.0:
        raise ValueError(
            f"the {type(cell).__name__} soma is not iterative, so it cannot take a back-propagating spike; use bap_psi=0"
        )
    if not iterative and firing is not None:
        raise ValueError(
            f"the {type(cell).__name__} soma fires all steps at once, so it cannot take stochastic firing; "
            "use neuron.firing.kind=deterministic"
        )
    return cell


Dendritic = DendriticNeuron  # the config's name (neuron=dendritic)


class DendLIF(DendriticNeuron):
    """`DendriticNeuron` with a LIF soma, from flat keys: h = v + (J - (v - v_reset))/tau (decay_input)
    or v - (v - v_reset)/tau + J. Other keywords: `DendriticNeuron`'s."""

    def __init__(
        self,
        wiring: Wiring,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        **kw,
    ):
        if check_number("tau", tau) <= 1:
            raise ValueError(f"tau must be > 1 (got tau={tau!r})")
        soma = LIF(
            tau,
            bool(decay_input),
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
        )
        super().__init__(wiring, soma, **kw)

    tau = property(lambda self: self.soma.tau, lambda self, value: setattr(self.soma, "tau", value))
    decay_input = property(
        lambda self: self.soma.decay_input, lambda self, value: setattr(self.soma, "decay_input", value)
    )

    @property
    def input_gain(self) -> float:
        """1/tau (decay_input) or 1, as DendLIF has always computed it (the LIF soma's du/dx, which a
        `DendriticNeuron` with a LIF soma uses, can differ from it in the last bit when v_reset != 0)."""
        return 1.0 / self.tau if self.decay_input else 1.0


class DendIF(DendriticNeuron):
    """`DendriticNeuron` with an IF soma, from flat keys: h = v + J. Other keywords: `DendriticNeuron`'s."""

    def __init__(
        self,
        wiring: Wiring,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        **kw,
    ):
        soma = IF(v_threshold=v_threshold, v_reset=v_reset, surrogate=surrogate, detach_reset=detach_reset)
        super().__init__(wiring, soma, **kw)
