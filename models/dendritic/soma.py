"""The dendrite's drive of the soma: what the output compartments hand the soma each step.

With v_k[t] the output compartments' potentials and v[t-1] the soma potential after the previous
step's reset, the soma's input current is

    J[t] = sum_k phi_k (v_k[t] - v[t-1])      forward_mode = "voltage_difference"
    J[t] = sum_k phi_k f(v_k[t])              forward_mode = "activation", f = FORWARD_ACTIVATIONS[...]

phi is a scalar or one value per output compartment, fixed or learnable; the default (phi=None) is
1/K_out for every output compartment, so Phi = sum_k phi_k = 1 whatever the wiring.

For a soma linear below threshold (h = alpha v + u(J), u linear in J with input_gain = du/dJ), the
voltage-difference drive keeps it linear: with a[t] = sum_k phi_k v_k[t], J[t] = a[t] - Phi v[t-1] and

    h[t] = alpha' v[t-1] + u'[t],   alpha' = alpha - input_gain * Phi,   u' = u(a)

so the soma still runs in ONE kernel call (`kernels.soma`); alpha' is a tensor when phi is
learnable and its gradient comes back from the kernel. For example

    LIF, decay_input:    alpha' = 1 - (1 + Phi)/tau,  u' = (a + v_reset)/tau
    LIF, no decay_input: alpha' = 1 - 1/tau - Phi,    u' = a + v_reset/tau
    IF:                  alpha' = 1 - Phi,            u' = a

(v_reset -> 0 in u' for soft reset). |alpha'| < 1 (a stable soma) needs Phi < 2 tau - 1 (LIF,
decay_input), Phi < 2 - 1/tau (no decay_input), Phi < 2 (IF). Any other soma takes a[t] with
``feedback = Phi``: its input at step t is a[t] - Phi v[t-1] = J[t] (`neurons.base.StepNeuron.step`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

Phi = Union[float, Sequence[float]]

FORWARD_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "identity": lambda v: v,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
}


def weighted_sum(v: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """sum_k phi_k v[..., k]: [..., K_out] -> [...]; phi scalar or [K_out]."""
    return v.sum(-1) * phi if phi.dim() == 0 else v @ phi.to(v.dtype)


def total_strength(phi: torch.Tensor, n_output: int) -> torch.Tensor:
    """Phi = sum_k phi_k."""
    return phi * n_output if phi.dim() == 0 else phi.sum()


def check_number(name: str, value, minimum: Optional[float] = None) -> float:
    """A finite number (>= minimum), else a one-line ValueError naming the key."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {name}={value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {name}={value!r})")
    return float(value)


def check_phi(phi, n_output: int, nonnegative: bool) -> torch.Tensor:
    """phi as a tensor: a scalar, or one value per output compartment (None: 1/K_out)."""
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
            raise ValueError(
                f"phi has {len(values)} values but the wiring has {n_output} output compartments (got phi={phi!r})"
            )
    for v in values:
        check_number("phi", v, minimum=0.0 if nonnegative else None)
    return torch.tensor(float(values[0])) if scalar else torch.tensor([float(v) for v in values])
