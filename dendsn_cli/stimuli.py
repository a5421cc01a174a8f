"""Stimuli of `dendsn simulate` (conf/stimulus/): each maps the amplitudes a [B] of a sweep to an input
current I [T, B, n] (step t = 0 .. T-1, dt ms per step, n input features):

    constant   I[t, b, i] = a_b
    sine       I[t, b, i] = offset + a_b * sin(2 pi frequency t dt / 1000 + phase)
    cosine     I[t, b, i] = offset + a_b * cos(2 pi frequency t dt / 1000 + phase)
    poisson    I[t, b, i] = a_b * sum_{j < n_inputs} w_ij s_ij[t],   s_ij[t] ~ Bernoulli(rate dt / 1000)
               w_ij = 1, or w_ij ~ U(0, 2) with random_weight (drawn once); every amplitude sees the same
               trains (common random numbers: the curve's steps come from the amplitude, not the draw)

So the amplitude is always a current (Poisson: the current of one input spike). A stimulus of your own
subclasses `Stimulus`. (Configs name these classes ``dendsn_cli.simulate.<Class>`` too: that path
re-exports them.)
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


def _number(
    name: str, value, low: Optional[float] = None, low_open: bool = False, high: Optional[float] = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {name}={value!r})")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g} (got {name}={value!r})")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g} (got {name}={value!r})")
    return float(value)


class Stimulus(nn.Module):
    """amplitudes a [B] -> input current I [T, B, n]. ``x_label`` names the amplitude on the f-I plot."""

    x_label = "amplitude"

    def forward(self, amplitudes: torch.Tensor, T: int, n: int, generator: Optional[torch.Generator] = None):
        raise NotImplementedError


def constant(amplitudes: torch.Tensor, T: int, n: int) -> torch.Tensor:
    """I[t, b, i] = a_b: [B] -> [T, B, n]."""
    return amplitudes.reshape(1, -1, 1).expand(T, -1, n).clone()


def sinusoid(
    amplitudes: torch.Tensor,
    T: int,
    n: int,
    frequency: float,
    dt: float,
    offset: float = 0.0,
    phase: float = 0.0,
    wave=torch.sin,
) -> torch.Tensor:
    """I[t, b, i] = offset + a_b * wave(2 pi frequency t dt / 1000 + phase): [B] -> [T, B, n] (phase in
    radians, frequency in Hz, dt in ms; the phase is computed in float64, exact for long runs)."""
    t = torch.arange(T, dtype=torch.float64)
    w = wave(2 * math.pi * frequency * t * dt / 1000.0 + phase)  # [T]
    i = offset + w[:, None] * amplitudes.double()[None, :]  # [T, B]
    return i.to(amplitudes.dtype)[:, :, None].expand(T, -1, n).clone()


def poisson_drive(
    T: int,
    n: int,
    n_inputs: int,
    p: float,
    weights: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """sum_{j < n_inputs} w_ij s_ij[t] with s_ij[t] ~ Bernoulli(p) independent: [T, n]. ``weights`` [n, n_inputs]
    (None: every w_ij = 1, the count of input spikes)."""
    out = torch.empty(T, n)
    chunk = max(1, (1 << 22) // max(n * n_inputs, 1))  # ~16 MB of draws at a time
    for t0 in range(0, T, chunk):
        s = (torch.rand(min(chunk, T - t0), n, n_inputs, generator=generator) < p).float()  # [t, n, n_inputs]
        out[t0 : t0 + chunk] = s.sum(-1) if weights is None else (s * weights).sum(-1)
    return out


class Constant(Stimulus):
    """Constant current: I[t] = amplitude."""

    x_label = "input current (amplitude)"

    def forward(self, amplitudes, T, n, generator=None):
        return constant(amplitudes, T, n)


class Sine(Stimulus):
    """Sine current: I[t] = offset + amplitude * sin(2 pi frequency t dt / 1000 + phase)."""

    x_label = "input current (sine amplitude)"
    wave = staticmethod(torch.sin)

    def __init__(self, frequency: float = 10.0, offset: float = 0.0, phase: float = 0.0, dt: float = 1.0):
        super().__init__()
        self.dt = _number("dt", dt, low=0.0, low_open=True)
        self.frequency = _number("frequency", frequency, low=0.0)
        if self.frequency > 500.0 / self.dt:  # Nyquist: at least two steps a period
            raise ValueError(
                f"frequency={frequency} Hz is above the Nyquist frequency of dt={dt} ms: it must be "
                f"<= {500.0 / self.dt:g} Hz (500 / dt), or lower dt"
            )
        self.offset, self.phase = _number("offset", offset), _number("phase", phase)

    def forward(self, amplitudes, T, n, generator=None):
        return sinusoid(amplitudes, T, n, self.frequency, self.dt, self.offset, self.phase, self.wave)

    def extra_repr(self) -> str:
        return f"frequency={self.frequency} Hz, offset={self.offset}, phase={self.phase}, dt={self.dt} ms"


class Cosine(Sine):
    """Cosine current: I[t] = offset + amplitude * cos(2 pi frequency t dt / 1000 + phase)."""

    x_label = "input current (cosine amplitude)"
    wave = staticmethod(torch.cos)


class Poisson(Stimulus):
    """Poisson input: each input feature i gets ``n_inputs`` trains s_ij at ``rate`` Hz (Bernoulli with
    p = rate dt / 1000 per step), I[t] = amplitude * sum_j w_ij s_ij[t]; w_ij = 1, or U(0, 2) with
    ``random_weight`` (mean 1, drawn once). The mean current is amplitude * n_inputs * p."""

    x_label = "input current per input spike (amplitude)"

    def __init__(self, rate: float = 100.0, n_inputs: int = 10, random_weight: bool = False, dt: float = 1.0):
        super().__init__()
        self.dt = _number("dt", dt, low=0.0, low_open=True)
        self.rate = _number("rate", rate, low=0.0)
        if self.rate * self.dt / 1000.0 > 1.0:
            raise ValueError(
                f"rate={rate} Hz with dt={dt} ms is more than one spike per step: the rate must be "
                f"<= {1000.0 / self.dt:g} Hz (1000 / dt)"
            )
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"n_inputs must be an integer >= 1 (got n_inputs={n_inputs!r})")
        self.n_inputs, self.random_weight = n_inputs, bool(random_weight)

    @property
    def p(self) -> float:
        return self.rate * self.dt / 1000.0

    def forward(self, amplitudes, T, n, generator=None):
        w = torch.rand(n, self.n_inputs, generator=generator) * 2.0 if self.random_weight else None
        drive = poisson_drive(T, n, self.n_inputs, self.p, w, generator).to(amplitudes.dtype)  # [T, n]
        return amplitudes.reshape(1, -1, 1) * drive[:, None, :]

    def extra_repr(self) -> str:
        return f"rate={self.rate} Hz, n_inputs={self.n_inputs}, random_weight={self.random_weight}, dt={self.dt} ms"
