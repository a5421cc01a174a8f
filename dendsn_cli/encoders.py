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
    RelativeLatency  Latency of x' = (x - min_b x) / (max_b x - min_b x), per sample b
    PoissonHz S[t] ~ Bernoulli(clamp(x * max_rate * dt / 1000, 0, 1))   (rate in Hz, step in ms)
    SSTB      S[t] = [t == floor(scale * x / dt)]          (x: one spike time per input)
    MSTB      S[t] = OR_k [t == floor(scale * x_k / dt)]   (x: K spike times per input, last axis)
    Phase     S[t] = bit (t mod K) of x in binary: x ~ sum_i S[i] 2^-(i+1)   (K phases, repeated)
    Delta     S[t] = [x[t] - x[t-1] >= threshold] (- [x[t] - x[t-1] <= -threshold] with off_spike)
    Population  x [B, F] -> [B, F * n] Gaussian tuning curves r_j(x), as currents or latency spikes
    BinnedLatency  x [B, ...] -> [B, ...] one continuous spike time per input, in units of the trial
              (the event network's input, `dendsn.events`): pixel p = round(255 x) falls in bin
              v = (255 - p) // (256 // (bins + 1)); bin v < bins spikes at t_v / T = ln(I / (I - v_th bins)),
              I = bins - v (brighter: earlier); the darkest bins never spike (spikegd's MNIST coding)

Parameters are checked in the constructors: a bad one raises a one-line `UserError` that
names the key. Each encoder declares what it ``accepts`` (the dataset inputs it encodes: "images",
"spike_trains", "sequences", "event_frames"), read by the config's rules (`dendsn_cli.config.capabilities`). An encoder that changes the shape of a step (Population, MSTB) has
`output_shape(input_shape)`: the shape of one output step for one sample of `input_shape`.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import nn

from dendsn_cli.config.checks import invalid, is_int, is_real, positive
from dendsn_cli.errors import UserError


def spike_trains_to_time_major(x: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T', C] spike trains -> [T, B, C]; UserError unless the run's T equals the data's T'."""
    if x.dim() < 2 or x.shape[1] != T:
        data_T = x.shape[1] if x.dim() >= 2 else None
        raise UserError(
            f"T={T} but the dataset's spike trains have {data_T} time steps; "
            f"set T={data_T} (or change dataset.T to {T})"
        )
    return x.transpose(0, 1).contiguous()  # [T, B, C]


def _check_T(T: int) -> None:
    if not is_int(T) or T < 1:
        raise invalid("T", T, "the number of time steps must be an integer >= 1", "set T")


def _refuse_time_major(name: str, inputs: str = "images") -> None:
    raise UserError(
        f"encoder={name} needs static inputs ({inputs}), but this dataset already gives spike "
        f"trains (or row sequences); use encoder=direct"
    )


def _invalid(key: str, value, why: str, use: str) -> UserError:
    """The one-line error of a bad encoder parameter: which key, why, what to set instead."""
    return invalid(f"encoder.{key}", value, why, f"use {use}")


def _positive(key: str, value, use: str) -> float:
    return positive(f"encoder.{key}", value, f"use {use}")


class Direct(nn.Module):
    """Constant-current coding: the static input is presented unchanged at every step.

    I[t] = x for t = 0..T-1. The result is an `expand`ed view (stride 0 along T,
    no copy): read it, or `reshape` it, but do not write to it in place.
    Time-major spike trains are passed through as [T, B, C]; so are image rows (dataset.sequential=rows:
    the current of step t is row t, the only encoder the config allows for them).
    """

    name = "direct"
    accepts = ("images", "spike_trains", "sequences", "event_frames")

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            return spike_trains_to_time_major(x, T)  # [T, B, C]
        return x.unsqueeze(0).expand(T, *x.shape)  # [T, B, ...]


def random_int16(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Independent uniform integers in [-2^15, 2^15 - 1], int16, from torch's global RNG on `device`.

    One 64-bit draw gives four of them: a quarter of the generator calls of `torch.rand`.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(torch.int16)[:n].view(shape)


def bernoulli16(p: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
    """S[t] ~ Bernoulli(p) for t = 0..T-1, independently: [B, ...] probabilities -> [T, B, ...] spikes.

    One 16-bit random integer r per spike, compared with p's threshold:

        q = round(2^16 p),   S = [r < q - 2^15],   r uniform on {-2^15 .. 2^15 - 1}, then r = min(r, 2^15 - 2)

    so P(S = 1) = q / 2^16 for q <= 2^16 - 2, and q >= 2^16 - 1 (threshold 2^15 - 1, above every
    clamped r) always spikes: p = 0 never spikes, p = 1 always does, and any other p is resolved
    to 2^-16 (float32 `torch.rand` resolves it to 2^-24).
    """
    q = torch.round(p.clamp(0.0, 1.0) * 65536.0)  # [B, ...] in 0..2^16
    threshold = (q - 32768.0).clamp_(max=32767.0).to(torch.int16)  # [B, ...]
    r = random_int16((T, *p.shape), p.device).clamp_(max=32766)  # [T, B, ...]
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

    name = "poisson"
    accepts = ("images", "spike_trains")  # time-major spikes pass through

    def __init__(self, rate_scale: float = 1.0):
        super().__init__()
        if not (isinstance(rate_scale, numbers.Real) and math.isfinite(rate_scale) and rate_scale > 0):
            raise invalid("encoder.rate_scale", rate_scale, "it must be a number > 0")
        self.rate_scale = float(rate_scale)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            return spike_trains_to_time_major(x, T)  # [T, B, C]
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

    name = "latency"
    accepts = ("images",)

    def __init__(self, threshold: float = 0.2, linear: bool = True):
        super().__init__()
        if not (isinstance(threshold, numbers.Real) and 0.0 <= threshold < 1.0):
            raise invalid("encoder.threshold", threshold, "it must be in [0, 1)")
        if not linear and threshold <= 0.0:
            raise UserError(
                f"encoder.threshold={threshold!r} is invalid with encoder.linear=false: the log latency "
                f"ln(x)/ln(threshold) needs threshold in (0, 1)"
            )
        self.threshold, self.linear = float(threshold), bool(linear)

    def spike_times(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """t_s for every input (also those below threshold). [B, ...] int64 in [0, T-1]."""
        x = x.clamp(0.0, 1.0)
        if self.linear:
            delay = 1.0 - x  # [B, ...] in [0, 1]
        else:
            delay = torch.log(x.clamp_min(self.threshold)) / math.log(self.threshold)
        return torch.round(delay * (T - 1)).long().clamp(0, T - 1)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            _refuse_time_major(self.name)
        t_s = self.spike_times(x, T)  # [B, ...]
        steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))  # [T, 1, ...]
        fires = (steps == t_s.unsqueeze(0)) & (x > self.threshold).unsqueeze(0)  # [T, B, ...]
        return fires.to(x.dtype)


class RelativeLatency(Latency):
    """Latency coding relative to each sample's own range (after SPAIC's Relative_Latency).

        x'_b = (x_b - min x_b) / (max x_b - min x_b)      over all inputs of sample b
        S[t] = [t == t_s(x')] * [x' > threshold]           (Latency's rule, `linear` as there)

    Each sample's largest input spikes at t = 0 and its smallest never (x' = 0 is not above a
    threshold >= 0), whatever the sample's contrast. A constant sample (max = min) has x' = 0
    everywhere: it gives no spikes. Needs static inputs.
    """

    name = "relative_latency"

    def __init__(self, threshold: float = 0.0, linear: bool = True):
        super().__init__(threshold, linear)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        if time_major:
            _refuse_time_major(self.name)
        flat = x.reshape(x.shape[0], -1)  # [B, N]
        lo = flat.amin(1, keepdim=True)  # [B, 1]
        span = flat.amax(1, keepdim=True) - lo  # [B, 1]
        relative = torch.where(span > 0, (flat - lo) / span, torch.zeros_like(flat))
        return super().forward(relative.view_as(x), T)


class PoissonHz(Poisson):
    """Rate coding with a rate in Hz and a step in ms (the Brian / BindsNET convention).

        p = clamp(x * max_rate * dt / 1000, 0, 1),   S[t] ~ Bernoulli(p)   (`bernoulli16`)

    x = 1 fires at `max_rate` Hz. max_rate * dt / 1000 is the expected number of spikes per step at
    x = 1: above 1 a Bernoulli step cannot carry the rate, so it is refused (not clamped). Time-major
    spike trains pass through unchanged, as in Poisson.
    """

    name = "poisson_hz"

    def __init__(self, max_rate: float = 200.0, dt: float = 1.0):
        max_rate = _positive("max_rate", max_rate, "a rate in Hz, e.g. encoder.max_rate=200")
        dt = _positive("dt", dt, "a time step in ms, e.g. encoder.dt=1.0")
        per_step = max_rate * dt / 1000.0
        if per_step > 1.0:
            raise _invalid(
                "max_rate",
                max_rate,
                f"with encoder.dt={dt:g} ms it asks for {per_step:g} spikes per step at x = 1, more than 1",
                f"encoder.max_rate <= {1000.0 / dt:g} (1000 / dt) or a smaller encoder.dt",
            )
        super().__init__(rate_scale=per_step)
        self.max_rate, self.dt = max_rate, dt


def spike_times_to_train(times: torch.Tensor, T: int, dt: float) -> torch.Tensor:
    """Spike times in ms [M..., K] -> a binary spike train [T, M...]:

        S[t, m] = OR_k [floor(times[m, k] / dt) == t]

    A time that is negative, NaN or >= T * dt (its step >= T) is no spike; several spikes of one input
    in one step count once. floor is taken in the float precision of `times`.
    """
    step = torch.floor(times / dt)  # [M..., K]; NaN stays NaN
    valid = (times >= 0) & (step < T)  # NaN compares False
    shape = times.shape[:-1]
    n = math.prod(shape)
    cell = torch.arange(n, device=times.device).view(*shape, 1)  # [M..., 1]
    # flat index t * n + m of each spike; the ones that are no spike all go to one spare slot, T * n
    index = torch.where(valid, torch.where(valid, step, 0).long() * n + cell, T * n)  # [M..., K]
    out = torch.zeros(T * n + 1, dtype=times.dtype, device=times.device)
    out[index] = 1.0  # no boolean mask (no host sync); repeated indices: still 1
    return out[:-1].view(T, *shape)  # [T, M...]


class SSTB(nn.Module):
    """One spike time per input -> a binary spike train (SPAIC's SigleSpikeToBinary).

        t_ms = scale * x,   S[t] = [t == floor(t_ms / dt)]        x: [B, ...] -> [T, B, ...]

    x holds spike times; `scale` is ms per unit of x (1: x is in ms), `dt` the step in ms. A negative
    or NaN time is no spike, and so is a time >= T * dt (after the last step). Static images read as
    times: with T=8, dt=1, scale=7 a pixel x spikes at step floor(7 x), the darkest first (x = 0 at
    step 0): the reverse of encoder=latency. Time-major datasets already give spike trains: refused.
    """

    name = "sstb"
    accepts = ("images",)

    def __init__(self, dt: float = 1.0, scale: float = 1.0):
        super().__init__()
        self.dt = _positive("dt", dt, "the time step in ms, e.g. encoder.dt=1.0")
        self.scale = _positive("scale", scale, "ms per unit of the input, e.g. encoder.scale=1.0")

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            _refuse_time_major(self.name, "spike times")
        return spike_times_to_train(self.scale * x.unsqueeze(-1), T, self.dt)  # [T, B, ...]


class MSTB(SSTB):
    """Up to K spike times per input -> a binary spike train (SPAIC's MultipleSpikeToBinary).

        t_ms = scale * x,   S[t, b, n] = OR_k [t == floor(t_ms[b, n, k] / dt)]     x: [B, ..., K] -> [T, B, ...]

    The last axis of x holds each input's K spike times; pad shorter lists with -1 (or NaN), and a
    time >= T * dt is dropped, as in SSTB. Two spikes in one step count once. x [B, K] (one input)
    gives [T, B, 1]. Images would be read row by row (the K = 28 columns as 28 times of one row input):
    mstb is meant for datasets that hold spike times.
    """

    name = "mstb"

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            _refuse_time_major(self.name, "spike times")
        times = self.scale * (x if x.dim() > 2 else x.unsqueeze(1))  # [B, N..., K]
        return spike_times_to_train(times, T, self.dt)  # [T, B, N...]

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) or (1,)


class Phase(nn.Module):
    """Weighted phase coding (Kim et al. 2018; SpikingJelly's WeightedPhaseEncoder), K = `phases`.

    x, clamped to [0, 1], is written with K binary digits, most significant first:

        q = min(floor(2^K x), 2^K - 1),   x ~ sum_{i<K} b_i 2^-(i+1),   b_i = bit (K-1-i) of q
        S[t] = b_(t mod K)

    so phase i carries the weight 2^-(i+1) and the K-step pattern repeats. x >= 1 - 2^-K spikes at every
    phase. When T is not a multiple of K the last period is cut short: it holds only the first T mod K
    phases (the most significant bits); T < K keeps the T most significant bits. Needs static inputs.
    """

    name = "phase"
    accepts = ("images",)

    def __init__(self, phases: int = 8):
        super().__init__()
        if not (is_int(phases) and 1 <= phases <= 30):
            raise _invalid(
                "phases", phases, "the number of phases must be an integer in 1..30", "e.g. encoder.phases=8"
            )
        self.phases = int(phases)

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            _refuse_time_major(self.name)
        K = self.phases
        q = torch.floor(x.clamp(0.0, 1.0) * 2**K).clamp_(max=2**K - 1).long()  # [B, ...]
        shift = (K - 1 - torch.arange(T, device=x.device) % K).view(T, *([1] * x.dim()))  # [T, 1, ...]
        return ((q.unsqueeze(0) >> shift) & 1).to(x.dtype)  # [T, B, ...]


class Delta(nn.Module):
    """Delta modulation (snnTorch's spikegen.delta): a spike where the input rose by `threshold` or more.

        d[t] = x[t] - x[t-1]  (t >= 1),   d[0] = x[0] - 0  (first=true)  or  0  (first=false)
        S[t] = [d[t] >= threshold]  -  off_spike * [d[t] <= -threshold]     (off spikes are -1)

    Time-major inputs x [B, T, C] (spike trains: their onsets; the analog rows of
    dataset.sequential=rows: where a pixel brightens from one row to the next) -> [T, B, C].
    A static input [B, ...] is the signal x held for T steps (as encoder=direct presents it): step 0
    carries d[0] = x, every later step is silent; with first=false it would never spike, so that is refused.
    """

    name = "delta"
    accepts = ("images", "spike_trains", "sequences")

    def __init__(self, threshold: float = 0.1, off_spike: bool = False, first: bool = True):
        super().__init__()
        self.threshold = _positive("threshold", threshold, "the change that makes a spike, e.g. encoder.threshold=0.1")
        for key, value in (("off_spike", off_spike), ("first", first)):
            if not isinstance(value, bool):
                raise _invalid(key, value, "it must be true or false", f"encoder.{key}=true or encoder.{key}=false")
        self.off_spike, self.first = off_spike, first

    def spikes(self, d: torch.Tensor) -> torch.Tensor:
        """S = [d >= threshold] - off_spike * [d <= -threshold], in d's dtype."""
        s = (d >= self.threshold).to(d.dtype)
        if self.off_spike:
            s = s - (d <= -self.threshold).to(d.dtype)
        return s

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            x_seq = spike_trains_to_time_major(x, T)  # [T, B, C]
            before = torch.zeros_like(x_seq[:1]) if self.first else x_seq[:1]
            return self.spikes(x_seq - torch.cat([before, x_seq[:-1]]))  # [T, B, C]
        if not self.first:
            raise UserError(
                "encoder.first=False is invalid for static inputs: a static input is constant over time, "
                "so it would never spike; use encoder.first=true (one spike volley at step 0)"
            )
        out = torch.zeros(T, *x.shape, dtype=x.dtype, device=x.device)  # [T, B, ...]
        out[0] = self.spikes(x)
        return out


class Population(nn.Module):
    """Population coding with Gaussian receptive fields (Bohte et al. 2002): each feature -> n neurons.

        mu_j = lo + j (hi - lo) / (n - 1),  j = 0..n-1        (centres evenly over [lo, hi], ends included)
        r_j(x) = exp(-(x - mu_j)^2 / (2 sigma^2))  in (0, 1]   (sigma = null: the spacing (hi - lo) / (n - 1))
        mode=current:  I[t] = r                                (every step, a constant current)
        mode=latency:  S[t] = [t == round((1 - r) (T - 1))] * [r > threshold]   (Latency's rule on r)

    x [B, ...] is flattened to F features: the output is [T, B, F * n], neuron j of feature f at
    index f * n + j (see `output_shape`). x is not clamped: beyond [lo, hi] the end neuron responds
    most. Needs static inputs.
    """

    name = "population"
    accepts = ("images",)

    def __init__(
        self,
        n: int = 8,
        lo: float = 0.0,
        hi: float = 1.0,
        sigma: Optional[float] = None,
        mode: str = "current",
        threshold: float = 0.1,
    ):
        super().__init__()
        if not (is_int(n) and n >= 2):
            raise _invalid("n", n, "the number of neurons per feature must be an integer >= 2", "e.g. encoder.n=8")
        if not is_real(lo):
            raise _invalid("lo", lo, "it must be a finite number", "e.g. encoder.lo=0.0")
        if not (is_real(hi) and hi > lo):
            raise _invalid("hi", hi, f"it must be a finite number above encoder.lo={lo!r}", f"encoder.hi > {lo!r}")
        if sigma is not None:
            sigma = _positive("sigma", sigma, "a width in input units, or encoder.sigma=null (the centres' spacing)")
        if mode not in ("current", "latency"):
            raise _invalid(
                "mode", mode, "it must be current or latency", "encoder.mode=current or encoder.mode=latency"
            )
        self.n, self.lo, self.hi, self.mode = int(n), float(lo), float(hi), mode
        self.sigma = sigma if sigma is not None else (self.hi - self.lo) / (self.n - 1)
        self.latency = Latency(threshold=threshold)  # checks encoder.threshold

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """r [B, F * n] for x [B, ...]."""
        mu = torch.linspace(self.lo, self.hi, self.n, dtype=x.dtype, device=x.device)  # [n]
        d = x.reshape(x.shape[0], -1, 1) - mu  # [B, F, n]
        return torch.exp(-d * d / (2.0 * self.sigma**2)).flatten(1)  # [B, F * n]

    def forward(self, x: torch.Tensor, T: int, time_major: bool = False) -> torch.Tensor:
        _check_T(T)
        if time_major:
            _refuse_time_major(self.name, "feature vectors or images")
        r = self.responses(x)  # [B, F * n]
        if self.mode == "latency":
            return self.latency(r, T)  # [T, B, F * n]
        return r.unsqueeze(0).expand(T, *r.shape)  # [T, B, F * n], no copy

    def output_shape(self, input_shape: tuple) -> tuple:
        return (math.prod(input_shape) * self.n,)


class BinnedLatency(nn.Module):
    """Binned time-to-first-spike in continuous time, for the event network (`network=event_mlp`).

    Pixels p = round(255 x) are binned into ``bins`` + 1 bins, v = (255 - p) // (256 // (bins + 1)); bin
    v < bins is one input spike at t_v = T ln(I / (I - v_th * bins)) with I = bins - v (the first-spike
    time of a LIF neuron driven by the constant current I; brighter pixels spike earlier), the rest is
    silent. bins=1 is the binarised image: pixels >= 128 spike once at t = T ln(1 / 0.99) = 0.01005 T.
    Returns [B, ...] spike times in units of the trial length T (inf: no spike): the event network
    groups the inputs that share a time into one event (the paper's virtual input neurons).
    """

    accepts = ("images",)
    event_based = True  # a part of the event network (network=event_mlp, learning=exact)

    event_times = True  # the output is spike times, not a [T, B, ...] sequence

    def __init__(self, bins: int = 1, v_th: float = 0.01):
        super().__init__()
        if not is_int(bins) or not 1 <= bins <= 255:
            raise _invalid("bins", bins, "it must be an integer in [1, 255]", "encoder.bins=1 (binarised pixels)")
        v_th = _positive("v_th", v_th, "encoder.v_th=0.01")
        if not v_th * bins < 1:
            raise _invalid(
                "v_th",
                v_th,
                f"with bins={bins} the dimmest bin's current 1 never reaches "
                f"v_th * bins = {v_th * bins:g}, so it would never spike",
                f"a v_th below {1 / bins:g}",
            )
        self.bins, self.v_th = int(bins), v_th
        current = torch.arange(bins, 0, -1, dtype=torch.float64)  # I = bins - v, v = 0..bins-1
        times = torch.log(current / (current - v_th * bins))
        self.register_buffer(
            "times", torch.cat([times, torch.full((256,), math.inf, dtype=torch.float64)]).float(), persistent=False
        )

    def bin_of(self, x: torch.Tensor) -> torch.Tensor:
        p = (x * 255).round().clamp(0, 255).long()
        return (255 - p) // (256 // (self.bins + 1))

    def forward(self, x: torch.Tensor, T: int = 1, time_major: bool = False) -> torch.Tensor:
        if time_major:
            _refuse_time_major("binned_latency")
        return self.times.to(x.device)[self.bin_of(x)]
