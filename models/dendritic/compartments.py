"""Dendritic compartments: leaky integrators without reset, optionally with an active part.

Passive compartment (a leaky integrator of its input current I; no threshold, no reset):

    decay_input:      v_p[t] = v_p[t-1] + (I[t] - (v_p[t-1] - v_rest)) / tau_d
    no decay_input:   v_p[t] = v_p[t-1] - (v_p[t-1] - v_rest) / tau_d + I[t]

both of the form (``passive_terms``)

    v_p[t] - v_rest = a * (v_p[t-1] - v_rest) + gain * I[t],   a = 1 - 1/tau_d,
                                                              gain = 1/tau_d (decay_input) or 1

with v_p[-1] = v_rest. Active compartment: the same passive potential v_p plus an active part that
is a function of it; the compartment's potential (what couples to neighbours and feeds the soma) is

    v[t] = v_p[t] + f(v_p[t])
    f = none:               f(v) = 0                                  (a passive compartment)
        sigmoid:            f(v) = strength * sigmoid(beta * (v - theta_d))   (plateau, amplitude)
        tanh:               f(v) = strength * tanh(beta * (v - theta_d))      (signed plateau: below
                                                                               theta_d it subtracts)
        softplus:           f(v) = strength * softplus(beta * (v - theta_d)) / beta   (a smooth
                                                                               threshold_linear)
        threshold_linear:   f(v) = strength * relu(v - theta_d)               (gain above theta_d)

(``ACTIVATIONS`` lists the names.)

``strength`` is a float (shared) or a list with one value per compartment (per branch), fixed or
learnable (``learn_strength``). The state carried from step to step is v_p.

Because v_p has no reset, an uncoupled compartment is a linear recurrence h[t] = a h[t-1] + x[t],
solved for all T steps at once by ``leaky_scan`` (`kernels.compartments`): with the lower-triangular operator

    L[t, s] = gain * a^(t-s)   (t >= s),   h[t] = sum_s L[t, s] x[s] + a^(t+1) h[-1]

one [T, T] @ [T, N] matmul over the time axis (memory O(T N), no [T, T, N] temporary). On CPU
``leaky_recurrence`` computes the same by T in-place steps in one autograd node (O(T N) work).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ..kernels.compartments import active_scan, decay_operator, leaky_recurrence, leaky_scan  # noqa: F401 (the old path's names)

Strength = Union[float, Sequence[float]]


def passive_terms(tau_d: float, decay_input: bool):
    """(a, gain) of ``v_p - v_rest = a (v_p[t-1] - v_rest) + gain * I``."""
    return 1.0 - 1.0 / tau_d, (1.0 / tau_d if decay_input else 1.0)


def passive_step(v_p: torch.Tensor, current: torch.Tensor, a: float, gain: float, v_rest: float) -> torch.Tensor:
    """One step of the passive potential (see the module docstring)."""
    w = v_p - v_rest if v_rest != 0.0 else v_p
    w = a * w + gain * current
    return w + v_rest if v_rest != 0.0 else w


ACTIVATIONS = ("none", "sigmoid", "tanh", "softplus", "threshold_linear")  # an Active compartment's f


def plateau(v_p: torch.Tensor, strength, beta: float, theta_d: float) -> torch.Tensor:
    return strength * torch.sigmoid(beta * (v_p - theta_d))


def threshold_linear(v_p: torch.Tensor, strength, theta_d: float) -> torch.Tensor:
    return strength * torch.relu(v_p - theta_d)


def fhat(z: torch.Tensor, activation: str, beta: float) -> torch.Tensor:
    """f / strength as a function of z = v_p - theta_d, for every name in ACTIVATIONS."""
    if activation == "sigmoid":
        return torch.sigmoid(beta * z)
    if activation == "tanh":
        return torch.tanh(beta * z)
    if activation == "softplus":
        return torch.nn.functional.softplus(beta * z) / beta
    if activation == "threshold_linear":
        return torch.relu(z)
    return torch.zeros_like(z)


def _check_tau_d(tau_d) -> float:
    if not isinstance(tau_d, (int, float)) or isinstance(tau_d, bool) or not tau_d > 1:
        raise ValueError(f"tau_d must be a number > 1 (got tau_d={tau_d!r})")
    return float(tau_d)


class Passive(nn.Module):
    """Passive compartments: leaky integrators with time constant ``tau_d`` and rest ``v_rest``."""

    linear = True  # v is a linear function of the inputs: the dendrite may solve it at once

    def __init__(self, tau_d: float = 2.0, decay_input: bool = True, v_rest: float = 0.0):
        super().__init__()
        self.tau_d = _check_tau_d(tau_d)
        self.decay_input = bool(decay_input)
        self.v_rest = float(v_rest)

    def terms(self):
        """(a, gain) of the passive update."""
        return passive_terms(self.tau_d, self.decay_input)

    def step(self, v_p: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        a, gain = self.terms()
        return passive_step(v_p, current, a, gain, self.v_rest)

    def potential(self, v_p: torch.Tensor) -> torch.Tensor:
        """v = v_p + f(v_p); f = 0 here."""
        return v_p

    def check_size(self, n_compartments: int) -> None:
        """Called by the dendrite: per-compartment parameters must match K."""

    def extra_repr(self) -> str:
        return f"tau_d={self.tau_d}, decay_input={self.decay_input}, v_rest={self.v_rest}"


class Active(Passive):
    """A passive potential plus an active part f(v_p) (see the module docstring)."""

    def __init__(
        self,
        tau_d: float = 2.0,
        decay_input: bool = True,
        v_rest: float = 0.0,
        activation: str = "sigmoid",
        theta_d: float = 0.5,
        beta: float = 5.0,
        strength: Strength = 1.0,
        learn_strength: bool = False,
    ):
        super().__init__(tau_d, decay_input, v_rest)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} (got activation={activation!r})")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (got beta={beta!r})")
        values = [strength] if isinstance(strength, (int, float)) else list(strength)
        if not values or not all(isinstance(s, (int, float)) and s == s for s in values):
            raise ValueError(f"strength must be a number or a non-empty list of numbers (got strength={strength!r})")
        self.activation, self.theta_d, self.beta = activation, float(theta_d), float(beta)
        s = torch.tensor(values if not isinstance(strength, (int, float)) else float(strength))
        if learn_strength:
            self.strength = nn.Parameter(s)
        else:
            self.register_buffer("strength", s)

    @property
    def linear(self) -> bool:
        return self.activation == "none"

    def potential(self, v_p: torch.Tensor) -> torch.Tensor:
        if self.activation == "none":
            return v_p
        return v_p + self.strength * fhat(v_p - self.theta_d, self.activation, self.beta)

    def check_size(self, n_compartments: int) -> None:
        if self.strength.dim() == 1 and self.strength.numel() != n_compartments:
            raise ValueError(
                f"strength has {self.strength.numel()} values but the wiring has {n_compartments} compartments"
            )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}, theta_d={self.theta_d}, beta={self.beta}"
