"""Read-outs (`readout=` group): how the network's answer is read from its output layer and scored.

The network's last layer gives ``out`` [T, B, C] (C classes): spikes for the spiking read-outs, or the
membrane potential v of a non-spiking leaky integrator (`dendsn.neurons.LI`) for the membrane read-outs.
Each read-out defines a loss (what training minimises) and a score [B, C] whose argmax is the
prediction (what accuracy counts). With n[b, c] = sum_t out[t, b, c] the spike count:

    counts         score = n                                   loss = CE(n, y)          (the default)
    rate           score = n / T                               loss = CE(gain * n / T, y)
    time_weighted  score = sum_t w_t out[t],  w_t = exp(-t / (decay * T))   loss = CE(gain * score, y)
                   (SPAIC TimeSpike_Counts: early spikes weigh more)
    first_spike    t_c = the first step at which class c fires, or ``silent_time`` (default T) if it never
                   does; score = -t (ties: more spikes win); loss = CE(-t / temperature, y)
                   (time-to-first-spike coding with a temporal cross-entropy; t is differentiable through
                   the spikes' surrogate gradient, see `first_spike_times`)
    tet            score = n                                   loss = mean_t CE(T * out[t], y)
                   (TET, Deng et al. 2022: every step is scored; = learning.per_step_loss=true)
    mse_count      score = n                                   loss = mean_{b,c} (n - T r_target)^2 / T,
                   r_target = correct_rate for c = y, incorrect_rate otherwise (snnTorch mse_count_loss)
  non-spiking (LI read-out layer with time constant ``tau``; out = v):
    membrane_final score = v[T-1]                              loss = CE(score, y)  (SPAIC Final_Step_Voltage)
    membrane_sum   score = sum_t v[t]                          loss = CE(score, y)  (SPAIC Voltage_Sum)
    membrane_mean  score = mean_t v[t]                         loss = CE(score, y)
    membrane_max   score = max_t v[t]                          loss = CE(score, y)
    time_softmax   p = mean_t softmax_c(v[t])                  loss = -log p_y;  score = p
                   (a softmax at every step, averaged over time)

The event network (`network=event_mlp`, `learning=exact`) gives no [T, B, C] sequence but continuous output
times: ``out`` [2, B, C] holds the output times with pseudospikes and the first ordinary spike times (inf:
silent); `EventFirstSpike` (built from readout=first_spike) scores them:

    event first_spike  score = -t_out    loss = CE(-t_out / temperature, y) + gamma (exp(t_y / T_trial) - 1)
                   prediction = the earliest output; without pseudospikes: the earliest ordinary spike
                   (no output spike: no prediction, counted wrong)

A read-out that can score the event network's output times declares ``event_readout = True`` (first_spike),
which the config's rules read (`dendsn_cli.config.capabilities`). A read-out's ``neuron(factory)`` gives the read-out layer's neuron factory: the network's own spiking
read-out (``network.readout``) for the spiking read-outs, an `LI` of time constant ``tau`` for the others.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from dendsn.neurons import LI
from dendsn_cli.config.checks import must_be, number


class Readout:
    """Base: the spike-count score; subclasses override `scores` and `loss`."""

    name = "readout"
    spiking = True  # False: the read-out layer is a non-spiking LI and ``out`` is its potential

    def neuron(self, factory):
        """The read-out layer's neuron factory, given the network's (spiking) one."""
        return factory

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        return out.sum(0)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """[B] predicted classes: the argmax of `scores` (the first class on ties)."""
        return self.scores(out).argmax(-1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.scores(out), y)

    def __repr__(self) -> str:
        return f"readout={self.name}"


class Counts(Readout):
    """Spike counts n = sum_t out[t]; cross-entropy on n (the default)."""

    name = "counts"


class Rate(Readout):
    """Spike rate n / T (spikes per step); cross-entropy on gain * rate, a logit scale independent of T."""

    name = "rate"

    def __init__(self, gain: float = 10.0):
        self.gain = number("gain", gain, above=0.0)

    def scores(self, out):
        return out.mean(0)

    def loss(self, out, y):
        return nn.functional.cross_entropy(self.gain * self.scores(out), y)


class TimeWeighted(Readout):
    """Time-weighted counts (SPAIC TimeSpike_Counts): sum_t exp(-t / (decay T)) out[t]; CE on gain * that."""

    name = "time_weighted"

    def __init__(self, decay: float = 0.5, gain: float = 1.0):
        self.decay = number("decay", decay, above=0.0)
        self.gain = number("gain", gain, above=0.0)

    def weights(self, T: int, like: torch.Tensor) -> torch.Tensor:
        t = torch.arange(T, device=like.device, dtype=like.dtype)
        return torch.exp(-t / (self.decay * T))

    def scores(self, out):
        w = self.weights(out.shape[0], out)
        return torch.tensordot(w, out, dims=([0], [0]))

    def loss(self, out, y):
        return nn.functional.cross_entropy(self.gain * self.scores(out), y)


def first_spike_times(out: torch.Tensor, silent_time: float) -> torch.Tensor:
    """[T, B, C] spikes -> [B, C] the step of each neuron's first spike, ``silent_time`` where none.

        first[t] = s[t] prod_{k<t} (1 - s[k]),   t_first = sum_t t first[t] + silent_time prod_t (1 - s[t])

    Exact for binary spikes, and differentiable: through the surrogate gradient of s, a neuron that is
    silent at t is pulled towards firing there (d t_first / d s[t] = t - silent_time < 0 when nothing fired
    before), and one that fires is pulled earlier.
    """
    T = out.shape[0]
    quiet = 1.0 - out
    before = torch.cumprod(torch.cat([torch.ones_like(out[:1]), quiet[:-1]], 0), 0)  # prod_{k<t} (1 - s[k])
    first = out * before
    t = torch.arange(T, device=out.device, dtype=out.dtype).view(T, *([1] * (out.dim() - 1)))
    never = before[-1] * quiet[-1]
    return (t * first).sum(0) + silent_time * never


class FirstSpike(Readout):
    """Time-to-first-spike read-out: the class that fires first wins; temporal CE on -t_first.

    A class that never fires gets t = ``silent_time`` (default null: T, one step after the last; a value
    below T - 1 ranks silent classes ahead of late-firing ones); ties in time are broken by spike counts
    (more spikes win), then by the lower class index.
    """

    name = "first_spike"
    event_readout = True  # also scores the event network's output times (as `EventFirstSpike`)

    def __init__(self, silent_time: float | None = None, temperature: float = 1.0):
        self.silent_time = None if silent_time is None else number("silent_time", silent_time, minimum=0.0)
        self.temperature = number("temperature", temperature, above=0.0)

    def times(self, out: torch.Tensor) -> torch.Tensor:
        T = out.shape[0]
        return first_spike_times(out, float(T) if self.silent_time is None else self.silent_time)

    def scores(self, out):
        return -self.times(out)

    def predict(self, out):
        s = self.scores(out)
        first = s == s.max(-1, keepdim=True).values  # the earliest class(es)
        return torch.where(first, out.sum(0), torch.full_like(s, -1.0)).argmax(-1)  # ties: most spikes

    def loss(self, out, y):
        return nn.functional.cross_entropy(self.scores(out) / self.temperature, y)


class TET(Readout):
    """Spike counts scored at every step (TET): loss = mean_t CE(T out[t], y); prediction by counts."""

    name = "tet"

    def loss(self, out, y):
        T = out.shape[0]
        return nn.functional.cross_entropy((out * T).flatten(0, 1), y.repeat(T))


class MSECount(Readout):
    """MSE between spike counts and target counts (snnTorch mse_count_loss): the correct class should fire
    on ``correct_rate`` of the steps, the others on ``incorrect_rate``; loss = mean (n - T r)^2 / T."""

    name = "mse_count"

    def __init__(self, correct_rate: float = 0.8, incorrect_rate: float = 0.2):
        self.correct_rate = number("correct_rate", correct_rate, minimum=0.0, maximum=1.0)
        self.incorrect_rate = number("incorrect_rate", incorrect_rate, minimum=0.0, maximum=1.0)
        if not self.incorrect_rate < self.correct_rate:
            raise ValueError(
                f"incorrect_rate must be below correct_rate (got incorrect_rate={incorrect_rate}, "
                f"correct_rate={correct_rate})"
            )

    def loss(self, out, y):
        T = out.shape[0]
        n = out.sum(0)
        onehot = nn.functional.one_hot(y, n.shape[-1]).to(n.dtype)
        target = T * (self.incorrect_rate + (self.correct_rate - self.incorrect_rate) * onehot)
        return ((n - target) ** 2).mean() / T


class Membrane(Readout):
    """A non-spiking leaky-integrator read-out: score = the potential v at the last step, summed, averaged
    or maximal over time (``reduce``: final | sum | mean | max); cross-entropy on the score."""

    spiking = False
    REDUCE = ("final", "sum", "mean", "max")

    def __init__(self, reduce: str = "final", tau: float = 4.0):
        if reduce not in self.REDUCE:
            raise must_be("reduce", reduce, f"one of {', '.join(self.REDUCE)}")
        self.reduce = reduce
        self.tau = number("tau", tau, minimum=1.0)
        self.name = f"membrane_{reduce}"

    def neuron(self, factory):
        return functools.partial(LI, tau=self.tau)

    def scores(self, out):
        if self.reduce == "final":
            return out[-1]
        if self.reduce == "sum":
            return out.sum(0)
        if self.reduce == "mean":
            return out.mean(0)
        return out.max(0).values


class TimeSoftmax(Membrane):
    """Softmax over the classes at every step of the LI potential, averaged over time: p = mean_t softmax(v[t]);
    loss = -log p_y (NLL of the time-averaged distribution); score = p."""

    name = "time_softmax"

    def __init__(self, tau: float = 4.0):
        super().__init__("final", tau)
        self.name = "time_softmax"

    def scores(self, out):
        return torch.softmax(out, dim=-1).mean(0)

    def loss(self, out, y):
        return nn.functional.nll_loss(torch.log(self.scores(out).clamp_min(1e-12)), y)


class EventFirstSpike(Readout):
    """Time-to-first-spike of the event network (spikegd): out [2, B, C] = (output times with pseudospikes,
    first ordinary spike times, inf where silent); see the module docstring. ``gamma`` weighs the term
    exp(t_y / T) - 1 that pulls the correct output earlier (Klos & Memmesheimer use 1e-2)."""

    name = "first_spike"

    def __init__(self, T: float, temperature: float = 1.0, gamma: float = 0.0):
        self.T = number("T", T, above=0.0)
        self.temperature = number("temperature", temperature, above=0.0)
        self.gamma = number("gamma", gamma, minimum=0.0)

    def scores(self, out):
        return -out[0]

    def predict(self, out):
        return out[0].argmin(-1)

    def loss(self, out, y):
        t = out[0]
        ce = nn.functional.cross_entropy(-t / self.temperature, y)
        if not self.gamma:
            return ce
        return ce + self.gamma * (torch.exp(t.gather(1, y.unsqueeze(1)) / self.T) - 1).mean()

    tally_names = ("acc_ordinary",)

    def tally(self, out, y) -> torch.Tensor:
        """[1]: how many samples the ordinary spikes alone classify right (the earliest output spike)."""
        t = out[1]
        pred = torch.where(torch.isfinite(t).any(-1), t.argmin(-1), torch.full_like(y, -1))
        return (pred == y).sum().reshape(1)
