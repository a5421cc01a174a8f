"""The base of every spiking module: the step-mode shell, the single-step model zoo base, the linear soma.

Every spiking module in dendsn derives from `SpikingModule`; the runner finds spiking layers (for
firing rates, potentials and local learning rules) by that type. ``inputs_per_neuron`` tells a
network builder how many input features one neuron takes (1 for a point neuron, K_in for a
dendritic one). Shapes: multi-step mode (``step_mode='m'``, the default) takes ``[T, B, ...]`` and
returns spikes of the same shape; single-step mode (``'s'``) takes ``[B, ...]``.

`StepNeuron` is a point neuron defined by one time step (the nonlinear and adaptive models);
`PointNeuron` a soma linear below threshold, h = alpha v + u, run by the fused kernel of
`kernels.soma` (LIF, IF, PLIF of `neurons.lif`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..kernels import soma
from ..surrogate import Sigmoid, Surrogate


class SpikingModule(nn.Module):
    """A stateful spiking module with a step mode ('m': [T, B, ...], 's': [B, ...])."""

    inputs_per_neuron = 1

    def __init__(self, step_mode: str = "m"):
        super().__init__()
        if step_mode not in ("m", "s"):
            raise ValueError(f"step_mode must be 'm' or 's' (got {step_mode!r})")
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step(x) if self.step_mode == "m" else self.single_step(x)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the state of the last sequence."""
        raise NotImplementedError


def outer_spiking(module: nn.Module):
    """The spiking modules of a network, input side first, without those inside another one (the
    soma of a `dendritic.DendriticNeuron` is part of that neuron, not a layer of its own)."""
    for child in module.children():
        if isinstance(child, SpikingModule):
            yield child
        else:
            yield from outer_spiking(child)


def check_threshold(v_threshold: float, v_reset: Optional[float]) -> None:
    if v_reset is not None and not v_reset < v_threshold:
        raise ValueError(f"v_reset must be below v_threshold (got v_reset={v_reset}, v_threshold={v_threshold})")


# --- the model zoo's base: a neuron defined by its single step -------------------------------------


class StepNeuron(SpikingModule):
    """A point neuron defined by one time step; the base of the nonlinear and adaptive models.

    A subclass names its state variables in ``state_names`` (the first is always the membrane
    potential v) and defines

        charge(x, state) -> (h, aux)       the sub-threshold update: h the charged potential, aux the
                                           other state variables after their own update (a tuple)
        fire(h, aux)     -> s              default: F(h - v_threshold), F the surrogate / stochastic firing
        after(h, s, aux) -> new state      default: (reset(h, s), *aux), hard or soft reset of v

    and may override ``initial_state(like)`` (default: v = v_reset, or 0 for soft reset; aux = 0).
    The generic `step` adds what every resetting model shares:

    * a refractory period (``refractory`` = R steps): after a spike the neuron ignores its input,
      stays at v_reset (0 for soft reset) and cannot fire for R steps (a counter ``ref`` per neuron,
      kept as the last state variable);
    * ``feedback`` (used by a dendritic neuron's voltage-difference forward): the input of step t is
      x[t] - feedback * v[t-1].

    `multi_step` runs `step` T times under autograd (one graph node per op, as SpikingJelly's torch
    path does); a subclass with a fused kernel overrides ``fused_scan`` and returns None where it
    does not apply (refractory period, store_seq, ...). ``self.state`` holds the state after the
    last step (``self.v`` is its first entry); with ``store_seq = True`` a multi-step pass also
    keeps ``v_seq`` (after the reset) and ``h_seq`` (the charged potential), [T, B, ...].
    """

    store_seq = False
    state_names: tuple = ("v",)
    resets = True  # False: the model has no reset (a refractory period does not apply)
    analog = False  # True: the output is not a 0/1 spike (LIAF)

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Optional[Surrogate] = None,
        detach_reset: bool = False,
        refractory: int = 0,
        step_mode: str = "m",
    ):
        super().__init__(step_mode)
        v_threshold = _finite("v_threshold", v_threshold)
        v_reset = None if v_reset is None else _finite("v_reset", v_reset)
        check_threshold(v_threshold, v_reset)
        if isinstance(refractory, bool) or not isinstance(refractory, int) or refractory < 0:
            raise ValueError(f"refractory must be a whole number of steps >= 0 (got refractory={refractory!r})")
        if refractory and not self.resets:
            raise ValueError(
                f"{type(self).__name__} has no reset, so a refractory period does not apply (got refractory={refractory})"
            )
        self.v_threshold, self.v_reset = v_threshold, v_reset
        self.surrogate = surrogate if surrogate is not None else Sigmoid()
        self.detach_reset = bool(detach_reset)
        self.refractory = refractory
        self.state: Optional[tuple] = None
        self.v_seq: Optional[torch.Tensor] = None
        self.h_seq: Optional[torch.Tensor] = None

    # --- what a model defines ------------------------------------------------------------------
    @property
    def v_rest0(self) -> float:
        """The potential a fresh neuron starts from."""
        return 0.0 if self.v_reset is None else self.v_reset

    def initial_state(self, like: torch.Tensor) -> tuple:
        v = torch.full_like(like, self.v_rest0)
        return (v,) + tuple(torch.zeros_like(like) for _ in self.state_names[1:])

    def charge(self, x: torch.Tensor, state: tuple):
        raise NotImplementedError

    def fire(self, h: torch.Tensor, aux: tuple) -> torch.Tensor:
        if self.surrogate.stochastic:
            return self.surrogate(h - self.v_threshold, self.training)
        return self.surrogate(h - self.v_threshold)

    def reset_v(self, h: torch.Tensor, s: torch.Tensor, theta=None) -> torch.Tensor:
        """v after the reset: v_reset where s = 1 (hard) or h - theta s (soft; theta defaults to v_threshold)."""
        s = s.detach() if self.detach_reset else s
        return soma.reset(h, s, self.v_threshold if theta is None else theta, self.v_reset)

    def after(self, h: torch.Tensor, s: torch.Tensor, aux: tuple) -> tuple:
        return (self.reset_v(h, s),) + tuple(aux)

    def fused_scan(self, x_seq: torch.Tensor, state: tuple, feedback: float):
        """(s_seq, state after the last step) from a fused kernel, or None (then `step` runs T times)."""
        return None

    # --- the generic machinery -----------------------------------------------------------------
    @property
    def v(self) -> Optional[torch.Tensor]:
        return None if self.state is None else self.state[0]

    @v.setter
    def v(self, value: Optional[torch.Tensor]) -> None:
        self.state = None if value is None else (value,) + (tuple(self.state[1:]) if self.state is not None else ())

    def start_state(self, like: torch.Tensor) -> tuple:
        """The state to continue from for an input like ``like``: the kept one, or `initial_state`."""
        if self.state is not None and self.state[0].shape == like.shape:
            return self.state
        like = like.detach()
        if like.dtype in (torch.float16, torch.bfloat16):
            like = like.float()
        state = self.initial_state(like)
        return state + ((torch.zeros_like(like),) if self.refractory else ())

    _state0 = start_state

    def step(self, x: torch.Tensor, state: tuple, feedback: float = 0.0):
        """One step from ``state`` (ending with the refractory counter when refractory > 0) -> (s, h, new state)."""
        if feedback:
            x = x - feedback * state[0]
        if not self.refractory:
            h, aux = self.charge(x, state)
            s = self.fire(h, aux)
            return s, h, self.after(h, s, aux)
        *model, ref = state
        idle = ref > 0  # refractory: input ignored, held at v_reset
        h, aux = self.charge(torch.where(idle, torch.zeros_like(x), x), tuple(model))
        h = torch.where(idle, torch.full_like(h, self.v_rest0), h)
        s = self.fire(h, aux) * (~idle).to(h.dtype)
        new = self.after(h, s, aux)
        ref = torch.where(s.detach() > 0, torch.full_like(ref, float(self.refractory)), (ref - 1).clamp_min(0))
        return s, h, tuple(new) + (ref,)

    def run(self, x_seq: torch.Tensor, feedback: float = 0.0) -> torch.Tensor:
        """All T steps of x_seq [T, B, ...] from the kept state; returns the output [T, B, ...]."""
        state = self.start_state(x_seq[0])
        if x_seq.dtype in (torch.float16, torch.bfloat16):
            x_seq = x_seq.float()
        fused = None if (self.store_seq or self.refractory) else self.fused_scan(x_seq, state, feedback)
        if fused is not None:
            s_seq, self.state = fused
            self.v_seq = self.h_seq = None
            return s_seq
        out, vs, hs = [], [], []
        for x in x_seq.unbind(0):
            s, h, state = self.step(x, state, feedback)
            out.append(s)
            if self.store_seq:
                vs.append(state[0])
                hs.append(h)
        self.state = state
        self.v_seq, self.h_seq = (torch.stack(vs), torch.stack(hs)) if self.store_seq else (None, None)
        return torch.stack(out)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.run(x_seq)

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        s, _, self.state = self.step(x, self.start_state(x))
        return s

    def reset(self) -> None:
        self.state = None
        self.v_seq = self.h_seq = None

    def extra_repr(self) -> str:
        ref = f", refractory={self.refractory}" if self.refractory else ""
        return f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, surrogate={self.surrogate}{ref}, step_mode={self.step_mode!r}"


def _finite(name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {name}={value!r})")
    return float(value)


def check_range(
    name: str,
    value,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in the given range, else a one-line ValueError naming the key."""
    v = _finite(name, value)
    bad = (low is not None and (v <= low if low_open else v < low)) or (
        high is not None and (v >= high if high_open else v > high)
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {' and '.join(p for p in (lo, hi) if p)} (got {name}={value!r})")
    return v


class PointNeuron(StepNeuron):
    """A soma driven directly by its input current, linear below threshold: subclasses define
    ``leak_and_drive`` (alpha, u), the charge h = alpha v + u of `kernels.soma`, and the whole sequence
    runs in that module's fused kernel. With a refractory period the generic `StepNeuron` loop runs
    instead (the same charge, through `charge`).

    With ``store_seq = True`` a multi-step pass also keeps ``v_seq`` [T, B, ...], the potential after
    each step's reset, and ``h_seq``, the charged potential before it (for plots of membrane traces:
    h crosses the threshold where the neuron fires); off by default, they cost memory."""

    def leak_and_drive(self, x: torch.Tensor):
        """(alpha, u) of `kernels.soma` for input current ``x``."""
        raise NotImplementedError

    @property
    def input_gain(self):
        """du/dx of `leak_and_drive` (u is linear in x): 1/tau for LIF with decay_input, else 1."""
        _, u1 = self.leak_and_drive(1.0)
        _, u0 = self.leak_and_drive(0.0)
        return u1 - u0

    def drive(self, x: torch.Tensor):
        """(alpha, u, gain) for `soma.multi_step`: the drive is gain * u (default gain 1)."""
        alpha, u = self.leak_and_drive(x)
        return alpha, u, 1.0

    def charge(self, x, state):
        alpha, u = self.leak_and_drive(x)
        return alpha * state[0] + u, ()

    def _v0(self, like: torch.Tensor) -> torch.Tensor:
        if self.v is not None and self.v.shape == like.shape:
            return self.v
        return torch.full_like(
            like,
            0.0 if self.v_reset is None else self.v_reset,
            dtype=torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype,
        )

    def run(self, x_seq: torch.Tensor, feedback: float = 0.0) -> torch.Tensor:
        if self.refractory:
            return super().run(x_seq, feedback)
        alpha, u, gain = self.drive(x_seq)
        if feedback:  # x[t] - fb v[t-1]: the leak grows by du/dx * fb
            alpha = alpha - self.input_gain * feedback
        s, v, h, v_seq = soma.multi_step(
            u,
            self._v0(x_seq[0]),
            alpha,
            self.v_threshold,
            self.v_reset,
            self.surrogate,
            self.detach_reset,
            self.training,
            gain=gain,
            keep_v=self.store_seq,
        )
        self.state = (v,)
        self.v_seq, self.h_seq = v_seq, (h if self.store_seq else None)
        return s

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.refractory:
            return super().single_step(x)
        alpha, u = self.leak_and_drive(x)
        s, v, _ = soma.single_step(
            u,
            self._v0(x),
            alpha,
            self.v_threshold,
            self.v_reset,
            self.surrogate,
            self.detach_reset,
            self.training,
        )
        self.state = (v,)
        return s
