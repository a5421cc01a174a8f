"""Dendritic prediction plasticity (Urbanczik & Senn 2014): the dendrite learns to predict its soma.

For every neuron, u_pred[t] is the somatic potential its dendrite alone would produce: the steady
state of the soma (``h = alpha' v + u'`` of the model's own `soma_terms` / `leak_and_drive`) under the
dendrite's current output, u_pred = u' / (1 - alpha'). For a LIF soma with voltage-difference forward
that is

    u_pred = (sum_k phi_k v_k + v_reset / tau') / (sum_k phi_k + 1 / tau'),   tau' = 1 (decay_input) or tau

over the neuron's output compartments (v_k from the model's dendrite); a point neuron's dendrite is
its synaptic current I, u_pred = v_reset + tau' I. Then, per step, summed over the T*B rows,

    dW[o, i] = eta * sum_{t,b} (S_o[t] - phi(u_pred,o[t])) * psp_i[t]      (read-out: readout_eta)
    db[o]    = eta * sum_{t,b} (S_o[t] - phi(u_pred,o[t]))                  (``learn_bias``)
    phi(u)   = sigmoid(phi_beta (u - v_threshold - phi_offset))             spikes per step
    psp[t]   = psp[t-1] (1 - 1/tau_psp) + s_pre[t]                          presynaptic trace

with S the soma's spikes (``error=spikes``), a sample of the rate phi(u_soma) that U&S's rule uses (a
stochastic soma, ``neuron.firing.kind=logistic``, spikes with probability phi-like f(u)), or that rate
itself (``error=rate``): S - phi(u_pred) is replaced by phi(u_soma) - phi(u_pred), where u_soma is the
steady state of the soma under the dendrite *and* the teacher / feedback current below (u_soma =
u_pred where a layer gets none). The rate error is graded: it moves the weights of a neuron whose
nudge does not carry it across the threshold. Every input compartment of a neuron gets its soma's
error.

Supervision (``readout=dpp``): during training the read-out somas get a teacher current that nudges
them toward the label, none at test:

    I_teach = nudge * (u_target - u_pred) / G,   u_target = u_plus (label) or u_minus (others)

(G = du_pred/dI, so a point LIF soma settles at (1 - nudge) u_pred + nudge u_target). Hidden somas
see no teacher unless ``feedback > 0``: then a first, free pass gives the read-out error
e_b = onehot(y_b) - r_out,b (rates over T), and in the learning pass every hidden soma gets
feedback * (B e_b)_o through a fixed random matrix B (direct random feedback); its dendrite learns to
predict the nudged soma. Without feedback a hidden layer only learns to predict its own soma.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from dendsn.dendritic import DendIF, DendLIF, DendriticNeuron
from dendsn.neurons import PointNeuron

from ..errors import UserError
from .local import READOUT_MODES, LocalRule, PlasticLayer, reset_state
from .plasticity import check_choice, check_number, check_tau, correlate, expand, reduce_rows, trace, trace_step


def linear_soma(neuron: nn.Module) -> bool:
    """Does the soma charge h = alpha v + u (dendsn's LIF family, no refractory period)?"""
    return getattr(neuron, "linear_soma", isinstance(neuron, PointNeuron) and not neuron.refractory) or isinstance(
        neuron, (DendLIF, DendIF)
    )


def soma_name(neuron: nn.Module) -> str:
    cell = getattr(neuron, "soma", neuron)
    ref = getattr(cell, "refractory", 0)
    return type(cell).__name__ + (f" (refractory={ref})" if ref else "")


def steady_soma(neuron: nn.Module, drive: torch.Tensor) -> torch.Tensor:
    """u' / (1 - alpha'): the soma's fixed point for a dendritic output [.., K_out] or point current [..]."""
    if isinstance(neuron, DendriticNeuron):
        alpha, u = neuron.soma_terms(drive)
    else:
        alpha, u = neuron.leak_and_drive(drive)
    if isinstance(alpha, torch.Tensor):
        denom = (1.0 - alpha).to(u.dtype)
        return torch.where(denom.abs() > 1e-6, u / denom.clamp_min(1e-6), u)
    return u / (1.0 - alpha) if abs(1.0 - alpha) > 1e-6 else u  # IF soma: no fixed point, the drive


def predicted_soma(neuron: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """u_pred [T, B, S...] from the neuron's input currents x_seq [T, B, F...] (dendrite from rest)."""
    if isinstance(neuron, DendriticNeuron):
        x = neuron.split_compartments(x_seq, 2)  # [T, B, S..., K_in]
        _, v = neuron.dendrite.multi_step(x)  # [T, B, S..., K]
        return steady_soma(neuron, neuron.dendrite.output(v))
    return steady_soma(neuron, x_seq)


def predicted_soma_step(neuron: nn.Module, x: torch.Tensor, state: dict) -> torch.Tensor:
    """One step of `predicted_soma`: x [B, F...]; the dendrite's state is kept in ``state``."""
    if isinstance(neuron, DendriticNeuron):
        x = neuron.split_compartments(x, 1)  # [B, S..., K_in]
        v_p = state.get("v_p")
        v_p, v = neuron.dendrite.step(x, neuron.dendrite.initial(x) if v_p is None else v_p)
        state["v_p"] = v_p
        return steady_soma(neuron, neuron.dendrite.output(v))
    return steady_soma(neuron, x)


@torch.no_grad()
def drive_gain(neuron: nn.Module, device=None, T: int = 200) -> float:
    """G = du_pred/dI for a constant current I into every input compartment (after T steps)."""
    k = int(getattr(neuron, "inputs_per_neuron", 1))
    one = torch.ones(T, 1, k, device=device)
    if not isinstance(neuron, DendriticNeuron):
        one = one[..., 0]
    g = float((predicted_soma(neuron, one)[-1] - predicted_soma(neuron, torch.zeros_like(one))[-1]).mean())
    return g if g > 1e-6 else 1.0


ERRORS = ("spikes", "rate")


class DPP(LocalRule):
    """Dendritic prediction plasticity; see the module docstring. Other keys: `LocalRule`."""

    readout_modes = READOUT_MODES + ("dpp",)

    def __init__(
        self,
        eta: float = 3e-4,
        tau_psp: float = 2.0,
        phi_beta: float = 5.0,
        phi_offset: float = 0.5,
        nudge: float = 0.8,
        u_plus: float = 3.0,
        u_minus: float = -1.0,
        feedback: float = 0.0,
        calibrate: float = 0.0,
        learn_bias: bool = False,
        error: str = "rate",
        readout: str = "dpp",
        **kw,
    ):
        super().__init__(readout=readout, **kw)
        self.eta = check_number("eta", eta, minimum=0.0)
        self.tau_psp = check_tau("tau_psp", tau_psp)
        self.phi_beta = check_number("phi_beta", phi_beta, above=0.0)
        self.phi_offset = check_number("phi_offset", phi_offset)
        self.nudge = check_number("nudge", nudge, minimum=0.0, maximum=1.0)
        self.u_plus = check_number("u_plus", u_plus)
        self.u_minus = check_number("u_minus", u_minus)
        self.feedback = check_number("feedback", feedback, minimum=0.0)
        self.calibrate = check_number("calibrate", calibrate, minimum=0.0)
        self._shift: dict = {}
        self.learn_bias = bool(learn_bias)
        self.error = check_choice("error", error, ERRORS)
        self._gain: dict = {}
        self._feedback: dict = {}
        self._err: Optional[torch.Tensor] = None

    def rate(self) -> float:
        return self.eta

    def setup_rule(self, model):
        for l in self.layers:  # u_pred is the fixed point of a linear soma
            if not getattr(l.neuron, "spiking", True):
                raise UserError(
                    f"learning=dpp predicts the soma of every layer, the read-out's too, and readout="
                    f"{self.decoder.name if self.decoder is not None else 'membrane'} makes the read-out a "
                    "non-spiking integrator; use a spiking read-out (readout=counts, rate, first_spike, ...)"
                )
            if not linear_soma(l.neuron):
                raise UserError(
                    f"learning=dpp predicts the soma potential of a linear soma (LIF, IF, PLIF without a "
                    f"refractory period); {l.name} has a {soma_name(l.neuron)} soma: use learning=bptt or such a neuron"
                )
        ro = self.readout_layer
        n_classes = ro.n_neurons()
        if self.feedback:
            for l in self.layers:
                if l.learns and not l.is_readout:
                    B = torch.randn(l.n_neurons(), n_classes) / n_classes**0.5
                    self._feedback[l.name] = B.to(l.weight.device, l.weight.dtype)

    def phi(self, layer: PlasticLayer, u: torch.Tensor) -> torch.Tensor:
        offset = self.phi_offset + self._shift.get(layer.name, 0.0)
        return torch.sigmoid(self.phi_beta * (u - layer.neuron.v_threshold - offset))

    @torch.no_grad()
    def learn(self, out, y):
        super().learn(out, y)
        if self.calibrate:  # hidden layers: mean(phi(u_pred)) follows mean(S)
            for l in self.local_layers():
                if not l.is_readout:
                    gap = self.phi(l, l.seq("u_pred")).mean() - l.seq("post").mean()  # on the device: no sync
                    self._shift[l.name] = self._shift.get(l.name, 0.0) + self.calibrate * gap

    def rule_state(self) -> dict:
        return {"shift": {k: float(v) for k, v in self._shift.items()}}

    def load_rule_state(self, sd: dict) -> None:
        self._shift = dict(sd.get("shift", {}))

    def extra_scalars(self) -> dict:
        return {f"plasticity/{k}/phi_shift": float(v) for k, v in self._shift.items()}

    # --- the passes -------------------------------------------------------------------------------
    def run(self, model, x_seq, y):
        out_free = None
        if self._feedback and self.hidden_plastic():
            reset_state(model)
            with torch.no_grad(), self.frozen_intrinsic(every_layer=True):
                out_free = self.forward(model, x_seq)
            r_out = out_free.float().mean(0)  # [B, C]
            self._err = nn.functional.one_hot(y, r_out.shape[-1]).to(r_out.dtype) - r_out
        out = self.record_pass(model, x_seq, grad=self.readout_mode == "gradient")
        return out if out_free is None or self.readout_mode == "gradient" else out_free

    def observe(self, layer, x):
        """Record u_pred of the clean input; add the teacher (read-out) or feedback (hidden) current."""
        if layer.single_step:
            u_pred = predicted_soma_step(layer.neuron, x, layer.state)  # [B, S...]
        else:
            u_pred = predicted_soma(layer.neuron, x)  # [T, B, S...]
        layer.add("u_pred", u_pred)
        current = self.teacher(layer, u_pred)
        nudged = None if current is None else x + expand(layer.conn, current.to(x.dtype), dim=layer.conn.channel_dim)
        if self.error == "rate":  # the nudged soma's steady state: u_pred + G * current
            if nudged is None:
                u_soma = u_pred
            elif layer.single_step:
                u_soma = predicted_soma_step(layer.neuron, nudged, layer.state.setdefault("nudged", {}))
            else:
                u_soma = predicted_soma(layer.neuron, nudged)
            layer.add("u_soma", u_soma)
        return nudged

    def teacher(self, layer: PlasticLayer, u_pred: torch.Tensor) -> Optional[torch.Tensor]:
        """The nudging current per neuron (broadcastable to u_pred), or None."""
        if layer.is_readout:
            if self.readout_mode != "dpp" or not self.nudge:
                return None
            if layer.name not in self._gain:
                self._gain[layer.name] = drive_gain(layer.neuron, u_pred.device)
            onehot = nn.functional.one_hot(self._y, u_pred.shape[-1]).to(u_pred.dtype)  # [B, C]
            u_target = self.u_minus + (self.u_plus - self.u_minus) * onehot
            return self.nudge * (u_target - u_pred) / self._gain[layer.name]
        B = self._feedback.get(layer.name)
        if B is None or self._err is None:
            return None
        fb = self.feedback * (self._err @ B.t())  # [B, S] / [B, C]
        if layer.conn.kind == "conv":
            fb = fb[..., None, None]  # [B, C, 1, 1]
        return fb

    # --- the update ---------------------------------------------------------------------------------
    def somatic(self, layer, seq: bool, t=None):
        """What the dendrite learns to predict: the soma's spikes S, or its rate phi(u_soma) (``error=rate``)."""
        if self.error == "spikes":
            return layer.seq("post") if seq else layer.steps("post")
        u = layer.seq("u_soma") if seq else layer.steps("u_soma")
        return self.phi(layer, u) if seq else [self.phi(layer, v) for v in u]

    def delta_seq(self, layer, out, y):
        err = self.somatic(layer, True) - self.phi(layer, layer.seq("u_pred"))  # [T, B, S...]
        psp = trace(layer.seq("pre"), self.tau_psp)
        return self._scaled(layer, correlate(layer.conn, err, psp), reduce_rows(layer.conn, err))

    def delta_steps(self, layer, out, y):
        psp, g, gb = None, 0.0, 0.0
        for pre, post, u_pred in zip(layer.steps("pre"), self.somatic(layer, False), layer.steps("u_pred")):
            err = post - self.phi(layer, u_pred)
            psp = trace_step(psp, pre, self.tau_psp)
            g = g + correlate(layer.conn, err, psp)
            gb = gb + reduce_rows(layer.conn, err)
        return self._scaled(layer, g, gb)

    def _scaled(self, layer, g, gb):
        eta = self.readout_eta if layer.is_readout else self.eta
        dW = eta * expand(layer.conn, g)
        db = eta * expand(layer.conn, gb) if self.learn_bias and layer.bias is not None else None
        return dW, db
