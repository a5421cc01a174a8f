"""Input encoders: a batch from `Split.batches` -> a time-major input [T, B, ...].

Each encoder is an `nn.Module` chosen by `encoder=<name>` (Hydra `_target_`) and
called as `encoder(x, T, time_major)`:

    static inputs       x: [B, ...]    (images in [0, 1])   -> [T, B, ...]
    time-major inputs   x: [B, T, C]   (spike trains, or the image rows of dataset.sequential=rows) -> [T, B, C]

`time_major` comes from the dataset (`DataInfo.time_major`); the encoders never
guess it from the number of dimensions.

    Direct    I[t] = x                                   (constant current)
    Poisson   S[t] ~ Bernoulli(clamp(rate_scale * x, 0, 1))  independently per t
              (p in steps of 2^-16, from 16 random bits per spike: see `bernoulli16`)
    Latency   S[t] = [t == round((1 - x) * (T - 1))] * [x > threshold]   (one spike)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from dendsn_cli.errors import UserError


def spike_trains_to_time_major(x: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T', C] spike trains -> [T, B, C]; UserError unless the run's T equals the data's T'."""
    if x.dim() < 2 or x.shape[1] != T:
        data_T = x.shape[1] if x.dim() >= 2 else None
        raise UserError(
            f"T={T} but the dataset's spike trains have {data_T} time steps; "
            f"set T={data_T} (or change dataset.T to {T})")
    return x.transpose(0, 1).contiguous()   # [T, B, C]


def _check_T(T: int) -> None:
    if not isinstance(T, numbers.Integral) or isinstance(T, bool) or T < 1:
        raise UserError(f"T={T!r} is invalid: the number of time steps must be an integer >= 1; set T")


class Direct(nn.Module):
    """Constant-current coding: the static input is presented unchanged at every step.

    I[t] = x for t = 0..T-1. The result is an `expand`ed view (stride 0 along T,
    no copy): read it, or `reshape` it, but do not write to it in place.
    Time-major spike trains are passed through as [T, B, C]; so are image rows (dataset.sequential=rows:
    the current of step t is row t, the only encoder the config allows for them).
    """

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            return spike_trains_to_time_major(x, T)          # [T, B, C]
        return x.unsqueeze(0).expand(T, *x.shape)            # [T, B, ...]


def random_int16(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Independent uniform integers in [-2^15, 2^15 - 1], int16, from torch's global RNG on `device`.

    One 64-bit draw gives four of them: a quarter of the generator calls of `torch.rand`.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    return words.view(torch.int16)[:n].view(shape)


def bernoulli16(p: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
    """S[t] ~ Bernoulli(p) for t = 0..T-1, independently: [B, ...] probabilities -> [T, B, ...] spikes.

    One 16-bit random integer r per spike, compared with p's threshold:

        q = round(2^16 p),   S = [r < q - 2^15],   r uniform on {-2^15 .. 2^15 - 1}, then r = min(r, 2^15 - 2)

    so P(S = 1) = q / 2^16 for q <= 2^16 - 2, and q >= 2^16 - 1 (threshold 2^15 - 1, above every
    clamped r) always spikes: p = 0 never spikes, p = 1 always does, and any other p is resolved
    to 2^-16 (float32 `torch.rand` resolves it to 2^-24).
    """
    q = torch.round(p.clamp(0.0, 1.0) * 65536.0)                         # [B, ...] in 0..2^16
    threshold = (q - 32768.0).clamp_(max=32767.0).to(torch.int16)       # [B, ...]
    r = random_int16((T, *p.shape), p.device).clamp_(max=32766)          # [T, B, ...]
    return torch.lt(r, threshold, out=torch.empty(r.shape, dtype=dtype, device=p.device))


class Poisson(nn.Module):
    """Rate coding: each input spikes independently at each step with probability p.

    S[t] ~ Bernoulli(p),  p = clamp(rate_scale * x, 0, 1),  t = 0..T-1,

    with p resolved to 2^-16 (`bernoulli16`: 16 random bits per spike, a quarter of the random-number
    work of one float per spike); p = 0 never spikes and p = 1 always does. Draws from torch's global
    RNG on x's device, so the runner's seeding (and RNG-state restore on resume) makes it
    reproducible. Time-major data are already spikes: they are passed through unchanged (as
    [T, B, C]), `rate_scale` is not applied (the analog rows of dataset.sequential=rows are not spikes:
    the config refuses poisson for them, use encoder=direct).
    """

    def __init__(self, rate_scale: float = 1.0):
        super().__init__()
        if not (isinstance(rate_scale, numbers.Real) and math.isfinite(rate_scale) and rate_scale > 0):
            raise UserError(f"encoder.rate_scale={rate_scale!r} is invalid: it must be a number > 0")
        self.rate_scale = float(rate_scale)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            return spike_trains_to_time_major(x, T)          # [T, B, C]
        return bernoulli16(x * self.rate_scale, T, x.dtype)  # [T, B, ...]


class Latency(nn.Module):
    """Time-to-first-spike coding: one spike per input, brighter inputs spike earlier.

    linear=True:   t_s = round((1 - x) * (T - 1))
    linear=False:  t_s = round(ln(x) / ln(threshold) * (T - 1))   (equal intensity
                   ratios -> equal delays; needs threshold > 0)
    S[t] = [t == t_s] for inputs with x > threshold; inputs x <= threshold never spike.
    x is clamped to [0, 1]; round is torch.round (half to even).
    Needs static inputs: time-major spike trains raise a UserError.
    """

    def __init__(self, threshold: float = 0.2, linear: bool = True):
        super().__init__()
        if not (isinstance(threshold, numbers.Real) and 0.0 <= threshold < 1.0):
            raise UserError(f"encoder.threshold={threshold!r} is invalid: it must be in [0, 1)")
        if not linear and threshold <= 0.0:
            raise UserError(
                f"encoder.threshold={threshold!r} is invalid with encoder.linear=false: the log latency "
                f"ln(x)/ln(threshold) needs threshold in (0, 1)")
        self.threshold, self.linear = float(threshold), bool(linear)

    def spike_times(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """t_s for every input (also those below threshold). [B, ...] int64 in [0, T-1]."""
        x = x.clamp(0.0, 1.0)
        if self.linear:
            delay = 1.0 - x                                            # [B, ...] in [0, 1]
        else:
            delay = torch.log(x.clamp_min(self.threshold)) / math.log(self.threshold)
        return torch.round(delay * (T - 1)).long().clamp(0, T - 1)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            raise UserError(
                "encoder=latency needs static inputs (images), but this dataset already gives spike "
                "trains; use encoder=direct")
        t_s = self.spike_times(x, T)                                   # [B, ...]
        steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))   # [T, 1, ...]
        fires = (steps == t_s.unsqueeze(0)) & (x > self.threshold).unsqueeze(0)   # [T, B, ...]
        return fires.to(x.dtype)
