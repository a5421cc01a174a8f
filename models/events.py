r"""Exact, smooth gradient descent in event-driven networks of theta neurons (Klos & Memmesheimer,
"Smooth exact gradient descent learning in spiking neural networks", arXiv 2309.14523; spikegd).

The neuron is the oscillatory quadratic integrate-and-fire neuron with delta-pulse input,

    tau dV/dt = V (V - 1) + I0 + tau sum_i w_i sum_k delta(t - t_i^k),        I0 > 1/4,

written in its phase. With r = sqrt(I0 - 1/4),

    phi = Phi(V) = (tau / r) (arctan((V - 1/2) / r) + pi/2),    V = Phi^-1(phi) = r tan(phi r / tau - pi/2) + 1/2,

and phi grows at rate 1 between inputs: V = -inf is phi = 0 (just after a spike), V = +inf is the
threshold phi = Theta = tau pi / r (the free period). An input of weight w moves V by w, i.e.

    phi -> H(phi, w) = Phi(Phi^-1(phi) + w) = (tau / r) (arctan(tan(phi r / tau - pi/2) + w / r) + pi/2),

left unchanged within ``eps`` of 0 or Theta (V is infinite there).

Event-based simulation (`simulate`): per trial of length T the next event is the earlier of the next
input spike and the next network spike (the neuron with the largest phase, in Theta - phi_max); every
phase advances by that interval, the event's weights act through H, and a network spiker resets to
phi = 0. At most K events are simulated (input events count), a fixed bound so that one loop serves a
whole batch; a trial that has not reached T after K events is flagged (``exhausted``), never
silently cut. Feed-forward layers are one network whose block weight matrix sends each layer's spikes
to the next layer only. Every event time is a differentiable function of the weights and the initial
phases, so autograd through the loop gives the exact gradient of anything computed from the times.

Pseudodynamics (`EventMLP`): at the trial end each layer is read as a rate network,

    r_0 = 0 (the input),    r_l = H(phi_end_l, W_l r_{l-1}) / Theta,

and an output neuron that never fired gets the pseudospike time t = T + k Theta - H(phi_end, W r_L)
(k = 1: its first). The output time is its first ordinary spike if it fired, else the pseudospike time.
Spikes can only appear or vanish at the trial end (where the ordinary time T and the pseudospike time
T + Theta - Theta meet), so the output times, and a loss of them, are continuous in the parameters, and
the pseudospike time still has a gradient that pulls a silent neuron towards firing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.distributed as tdist
from torch import nn

from .neurons.base import check_range


class Theta:
    """The theta (phase) form of the oscillatory QIF neuron; see the module docstring for the equations.

    tau: time constant (> 0); I0: constant current (> 1/4, so the neuron oscillates); eps: the phase
    margin at 0 and Theta inside which an input leaves the phase unchanged.
    """

    state_names = ("phi",)
    init_name = "phi0"

    def __init__(self, tau: float = 6 / math.pi, I0: float = 1.25, eps: float = 1e-6, phi0: float = 0.5):
        self.tau = check_range("tau", tau, 0.0, low_open=True)
        self.I0 = check_range("I0", I0, 0.25, low_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        self.r = math.sqrt(self.I0 - 0.25)
        self.period = self.tau * math.pi / self.r  # Theta: the threshold phase, the free period
        if not self.eps < self.period / 4:
            raise ValueError(f"eps must be below Theta / 4 = {self.period / 4:g} (got eps={eps})")
        if isinstance(phi0, bool) or not isinstance(phi0, (int, float)) or not 0.0 <= phi0 <= 1.0:
            raise ValueError(f"phi0 must be in [0, 1] (a fraction of Theta) (got phi0={phi0!r})")
        self.init_value = float(phi0) * self.period  # every neuron's initial phase (trained)

    # -- the protocol of `simulate` and `EventMLP`: a state is a tuple of [B, N] tensors
    def initial(self, x0: torch.Tensor) -> tuple:
        return (x0,)

    def clamp_init_(self, x0: torch.Tensor) -> None:
        x0.clamp_(0.0, self.period)

    def next_spike(self, state: tuple) -> torch.Tensor:
        return self.period - state[0]

    def step(
        self,
        state: tuple,
        dt_next: torch.Tensor,
        dt: torch.Tensor,
        w: torch.Tensor,
        live: torch.Tensor,
        fire: torch.Tensor,
    ):
        """Advance by dt [B], apply the event's weights w [B, N] where ``live``, reset ``fire`` [B, N]."""
        phi = state[0] + dt.unsqueeze(1)
        phi = torch.where(live.unsqueeze(1), self.H(phi, w), phi)
        phi = torch.where(fire, torch.zeros_like(phi), phi)
        return (phi,), self.period - phi

    def pseudo_rate(self, state: tuple, drive: torch.Tensor) -> torch.Tensor:
        return self.H(state[0], drive) / self.period

    def t_pseudo(self, state: tuple, drive: torch.Tensor, T: float) -> torch.Tensor:
        return T + self.period - self.H(state[0], drive)

    def Phi(self, V: torch.Tensor) -> torch.Tensor:
        return self.tau / self.r * (torch.atan((V - 0.5) / self.r) + math.pi / 2)

    def iPhi(self, phi: torch.Tensor) -> torch.Tensor:
        return self.r * torch.tan(phi * self.r / self.tau - math.pi / 2) + 0.5

    def H(self, phi: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The phase after an input of weight ``w`` (broadcast), unchanged within eps of 0 and Theta."""
        inside = (phi > self.eps) & (phi < self.period - self.eps)
        safe = phi.clamp(self.eps, self.period - self.eps)  # no inf in the branch where() drops:
        u = safe * (self.r / self.tau) - math.pi / 2  # its gradient would be 0 * inf = nan
        new = (self.tau / self.r) * (torch.atan(torch.tan(u) + w / self.r) + math.pi / 2)
        return torch.where(inside, new, phi)

    def __repr__(self) -> str:
        return f"Theta(tau={self.tau:g}, I0={self.I0:g}, eps={self.eps:g}, Theta={self.period:g})"


def _tan_ratio(z: torch.Tensor) -> torch.Tensor:
    """tan(sqrt z) / sqrt z for z > 0, tanh(sqrt -z) / sqrt -z for z < 0: one analytic function of z
    (1 + z/3 + 2 z^2/15 + ... at 0), each branch computed on inputs where it is finite (no nan gradient)."""
    small = z.abs() < 1e-3
    pos, neg = (z > 0) & ~small, (z < 0) & ~small
    rp = torch.where(pos, z, torch.ones_like(z)).sqrt()
    rn = torch.where(neg, -z, torch.ones_like(z)).sqrt()
    series = 1 + z / 3 + 2 * z * z / 15 + 17 * z * z * z / 315
    return torch.where(pos, torch.tan(rp) / rp, torch.where(neg, torch.tanh(rn) / rn, series))


def _atan_ratio(w: torch.Tensor) -> torch.Tensor:
    """atan(sqrt w) / sqrt w for w > 0, atanh(sqrt -w) / sqrt -w for -1 < w < 0 (1 - w/3 + w^2/5 - ... at 0)."""
    small = w.abs() < 1e-3
    pos, neg = (w > 0) & ~small, (w < 0) & (w > -1) & ~small
    rp = torch.where(pos, w, torch.ones_like(w)).sqrt()
    rn = torch.where(neg, -w, torch.full_like(w, 0.25)).sqrt()
    series = 1 - w / 3 + w * w / 5 - w * w * w / 7
    return torch.where(pos, torch.atan(rp) / rp, torch.where(neg, torch.atanh(rn) / rn, series))


class QIFExp:
    """The QIF neuron with an exponentially decaying synaptic current (spikegd's second model), tau_m = 2 tau_s:

        tau dV/dt = V (V - 1) + I,        (tau / 2) dI/dt = -I + (tau / 2) sum_i w_i sum_k delta(t - t_i^k)

    An input of weight w adds w to I; V runs to +inf in finite time (a spike), then restarts at -inf
    (numerically +-1/eps). With I = 0 the neuron rests at V = 0 and V = 1 is the threshold. Between events
    the flow is closed-form (s = sqrt|I|, e = exp(-dt / tau)): I > 0: V' = s e tan(arctan(V / s) + s (1 - e));
    I < 0: V' = s e tanh(arctanh(V / s) - s (1 - e)); I = 0: V' = V / (V - (V - 1) / e); I' = I e^2 (spikegd's
    solutions, computed in the angle-addition form of `flow`, smooth through I = 0). The time to the next spike
    inverts them (`next_spike`). Pseudodynamics: with I_p = I_end + W r_prev and the pseudo current c = alpha
    softplus(I_p / alpha), a layer is read as r = phi_p / Theta_p, phi_p = (tau / sqrt c)(arctan((V_end -
    1/2) / sqrt c) + pi/2), Theta_p = tau pi / sqrt c, and a silent output gets t = T + Theta_p - phi_p.
    v0: every neuron's initial V (trained); the initial current is 0.
    """

    state_names = ("v", "i")
    init_name = "v0"

    def __init__(self, tau: float = 1.0, eps: float = 1e-6, alpha: float = 10.0, v0: float = 0.0):
        self.tau = check_range("tau", tau, 0.0, low_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        self.alpha = check_range("alpha", alpha, 0.0, low_open=True)
        self.init_value = check_range("v0", v0)

    def initial(self, x0: torch.Tensor) -> tuple:
        return (x0, torch.zeros_like(x0))

    def clamp_init_(self, x0: torch.Tensor) -> None:
        x0.clamp_(-1 / self.eps, 1 / self.eps)

    def flow(self, V, I, dt):
        """(V, I) after dt ([B, 1] or broadcastable) without events: with c = 1 - e, e = exp(-dt / tau),
        V' = e (V + I c g) / (1 - V c g), g = tan(x)/x (I > 0), tanh(x)/x (I < 0), x = sqrt|I| c (1 at I = 0).
        g is one analytic function of I c^2 (`_tan_ratio`), so the flow and its gradient are smooth through
        I = 0 in float32 too (the angle-addition form of the tan / tanh solutions)."""
        e = torch.exp(-dt / self.tau)
        c = -torch.expm1(-dt / self.tau)
        g = _tan_ratio(I * c * c)
        new = e * (V + I * c * g) / (1 - V * c * g)
        return torch.clamp(new, max=1 / self.eps), I * e * e

    def next_spike(self, state: tuple) -> torch.Tensor:
        """Time until V reaches +inf: dt = -tau log(1 - h), a spike when h < 1, with h = q(I / V^2) / V for V > 0
        (q = atan(y)/y, atanh(y)/y of y = sqrt|I| / V; for I < 0 only while V > sqrt|I|) and
        h = atan2(sqrt I, V) / sqrt I for V <= 0 < I; otherwise never."""
        V, I = state
        above = V > 0
        Vp = torch.where(above, V, torch.ones_like(V))
        w = I / (Vp * Vp)
        h_above = _atan_ratio(w) / Vp
        rising = (~above) & (I > 0)
        sq = torch.where(rising, I, torch.ones_like(I)).sqrt()
        h_below = torch.atan2(sq, torch.where(rising, V, torch.zeros_like(V))) / sq
        h = torch.where(above, h_above, h_below)
        spikes = torch.where(above, w > -1, rising) & (h < 1)
        dt = -self.tau * torch.log1p(-torch.where(spikes, h, torch.zeros_like(h)))
        return torch.where(spikes, dt, torch.full_like(V, math.inf))

    def step(
        self,
        state: tuple,
        dt_next: torch.Tensor,
        dt: torch.Tensor,
        w: torch.Tensor,
        live: torch.Tensor,
        fire: torch.Tensor,
    ):
        V, I = state
        d = dt.unsqueeze(1)
        now = ((dt_next - d).abs() < self.eps) & (d > 0)  # spiking at this event: V is infinite here
        V = torch.where(now, torch.zeros_like(V), V)
        V, I = self.flow(V, I, d)
        V = torch.where(now, torch.full_like(V, 1 / self.eps), V)
        I = I + w * live.unsqueeze(1).to(w.dtype)
        V = torch.where(fire, torch.full_like(V, -1 / self.eps), V)
        dt_new = self.next_spike((V, I))
        return (V, I), torch.where(now & ~fire, dt_next - d, dt_new)

    def _pseudo(self, state: tuple, drive: torch.Tensor):
        V, I = state
        root = (self.alpha * nn.functional.softplus((I + drive) / self.alpha)).sqrt()
        phi = self.tau * (torch.atan((V - 0.5) / root) + math.pi / 2) / root
        return phi, self.tau * math.pi / root

    def pseudo_rate(self, state: tuple, drive: torch.Tensor) -> torch.Tensor:
        phi, period = self._pseudo(state, drive)
        return phi / period

    def t_pseudo(self, state: tuple, drive: torch.Tensor, T: float) -> torch.Tensor:
        phi, period = self._pseudo(state, drive)
        return T + period - phi

    def __repr__(self) -> str:
        return f"QIFExp(tau={self.tau:g}, eps={self.eps:g}, alpha={self.alpha:g})"


EVENT_NEURONS = (Theta, QIFExp)


@dataclass
class Events:
    """What `simulate` returns for a batch of B trials and the L <= K events it stepped through."""

    times: torch.Tensor  # [B, L] the time of each event (T for the steps after a trial's end)
    source: torch.Tensor  # [B, L] the spiking network neuron, -1 for an input event or no event
    is_input: torch.Tensor  # [B, L] bool: an input spike
    state_end: tuple  # the neurons' state at the trial end: theta (phi,), qif_exp (V, I), each [B, N]
    used: torch.Tensor  # [B] events inside the trial (input and network spikes)
    exhausted: torch.Tensor  # [B] bool: K events did not reach T (the trial was cut)

    def spike_counts(self, n: int) -> torch.Tensor:
        """[B, n] ordinary spikes per network neuron."""
        idx = torch.where(self.source >= 0, self.source, torch.full_like(self.source, n))
        counts = torch.zeros(idx.shape[0], n + 1, device=idx.device, dtype=torch.float32)
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32))
        return counts[:, :n]

    def first_spike(self, neurons: torch.Tensor):
        """([B, C] first ordinary spike time of each neuron in ``neurons`` (inf if silent), [B, C] fired)."""
        hit = self.source.unsqueeze(-1) == neurons.view(1, 1, -1)  # [B, L, C]
        fired = hit.any(1)
        first = hit.float().argmax(1)  # the first True
        t = self.times.gather(1, first)
        return torch.where(fired, t, torch.full_like(t, math.inf)), fired


def simulate(
    neuron,
    x0: torch.Tensor,
    out_weights: torch.Tensor,
    T: float,
    K: int,
    in_times: Optional[torch.Tensor] = None,
    in_weights: Optional[torch.Tensor] = None,
    check_every: int = 8,
    stop_early: bool = True,
) -> Events:
    """Event-based simulation of B trials of a network of N event neurons (`Theta` or `QIFExp`).

    x0: [B, N] (or [N]) every neuron's initial state variable (theta: phase, qif_exp: V); out_weights: [N, N], row j the weights of neuron j's spike onto
    every neuron; in_times: [B, M] input spike times (inf: none; any order), in_weights: [B, M, N] the
    weights of each input spike onto every neuron. Runs at most K events; with ``stop_early`` stops once
    every trial has reached T (checked every ``check_every`` events: one host sync each), else all K.
    """
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"K must be an integer >= 1 (got K={K!r})")
    N = out_weights.shape[0]
    if x0.dim() == 1:
        x0 = x0.unsqueeze(0)
    B = x0.shape[0] if in_times is None else in_times.shape[0]
    state = neuron.initial(x0.expand(B, N))
    dtype, device = x0.dtype, x0.device
    if in_times is None:
        in_times = torch.full((B, 0), math.inf, dtype=dtype, device=device)
        in_weights = torch.zeros(B, 0, N, dtype=dtype, device=device)
    order = in_times.argsort(1)
    in_times = torch.cat([in_times.gather(1, order), torch.full((B, 1), math.inf, dtype=dtype, device=device)], 1)
    in_weights = in_weights.gather(1, order.unsqueeze(-1).expand(-1, -1, N))
    in_weights = torch.cat([in_weights, in_weights.new_zeros(B, 1, N)], 1)  # the inf sentinel's
    t = torch.zeros(B, dtype=dtype, device=device)
    ptr = torch.zeros(B, dtype=torch.long, device=device)
    ids = torch.arange(N, device=device).unsqueeze(0)
    dt_next = neuron.next_spike(state)  # [B, N] each neuron's time to its next spike
    times, sources, inputs, lives = [], [], [], []
    for k in range(K):
        dt_net, j_net = dt_next.min(1)
        dt_in = in_times.gather(1, ptr.unsqueeze(1)).squeeze(1) - t
        spike_in = dt_in < dt_net
        dt = torch.where(spike_in, dt_in, dt_net)
        live = dt < T - t  # the event lies inside the trial
        dt = torch.where(live, dt, T - t)
        t = t + dt
        w_in = in_weights.gather(1, ptr.view(B, 1, 1).expand(B, 1, N)).squeeze(1)
        w = torch.where(spike_in.unsqueeze(1), w_in, out_weights.index_select(0, j_net))
        fire = live & ~spike_in
        state, dt_next = neuron.step(state, dt_next, dt, w, live, fire.unsqueeze(1) & (ids == j_net.unsqueeze(1)))
        ptr = ptr + (spike_in & live).long()
        times.append(t)
        sources.append(torch.where(fire, j_net, torch.full_like(j_net, -1)))
        inputs.append(spike_in & live)
        lives.append(live)
        if stop_early and (k + 1) % check_every == 0 and k + 1 < K and not bool((t < T).any()):
            break
    live = torch.stack(lives, 1)
    return Events(
        times=torch.stack(times, 1),
        source=torch.stack(sources, 1),
        is_input=torch.stack(inputs, 1),
        state_end=state,
        used=live.sum(1),
        exhausted=t < T,
    )


class EventMLP(nn.Module):
    """A feed-forward network of event neurons (theta or qif_exp; input -> hidden... -> n_classes), simulated
    event by event.

    Its input is one spike time per input unit ([B, *input_shape], in units of the trial T, inf: no
    spike), as `dendsn_cli.encoders.BinnedLatency` gives. Inputs that share a time are one event whose
    weights are the sum of theirs (the paper's virtual input neurons), so a batch costs as many input
    events as it has distinct times. ``forward`` returns [2, B, C]: the output times with pseudospikes
    (what the loss and the prediction use) and the first ordinary spike times (inf: silent).

    Parameters: each layer's weights, initialised U(+-w_scale / sqrt(fan_in)), and every neuron's initial
    state (theta: its phase phi0, from ``neuron.phi0`` * Theta, kept in [0, Theta]; qif_exp: its V, v0),
    trained with ``learn_init``.
    ``flip``: in training, each input unit's spike is flipped with this probability (a unit that spikes
    goes silent, a silent one spikes at the first input time; the paper's binarised-pixel noise).
    """

    event_based = True

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        neuron=None,
        hidden: Sequence[int] = (100, 100),
        T: float = 2.0,
        K: int = 200,
        w_scale: float = 0.5,
        learn_init: bool = True,
        flip: float = 0.0,
        readout=None,
        synapse=None,
    ):
        super().__init__()
        if neuron is None:
            neuron = Theta
        self.neuron = neuron() if callable(neuron) and not isinstance(neuron, EVENT_NEURONS) else neuron
        if not isinstance(self.neuron, EVENT_NEURONS):
            raise ValueError(
                f"the event network needs event neurons (neuron=theta or qif_exp), not {type(self.neuron).__name__}"
            )
        hidden = list(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of layer sizes >= 1 (got hidden={hidden})")
        self.T = check_range("T", T, 0.0, low_open=True)
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"K must be an integer >= 1 (got K={K!r})")
        self.K = K
        w_scale = check_range("w_scale", w_scale, 0.0, low_open=True)
        if isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0.0 <= flip < 1.0:
            raise ValueError(f"flip must be in [0, 1) (got flip={flip!r})")
        self.flip = float(flip)
        n_in = int(math.prod(input_shape))
        self.sizes = hidden + [int(n_classes)]
        self.names = [f"layer{i + 1}" for i in range(len(hidden))] + ["readout"]
        fan_in = [n_in] + hidden
        self.weights = nn.ParameterList()
        for n_out, n_prev in zip(self.sizes, fan_in):
            width = w_scale / math.sqrt(n_prev)
            self.weights.append(nn.Parameter(torch.empty(n_out, n_prev).uniform_(-width, width)))
        self.init = nn.ParameterList(  # per layer: [n] initial states (phase or V)
            nn.Parameter(torch.full((n,), self.neuron.init_value), requires_grad=bool(learn_init)) for n in self.sizes
        )
        self.stats = None  # an `EventStats` while the runner's monitor watches an evaluation
        self.stop_early = True  # end the event loop once every trial reached T (False: always K events)
        self.last: Optional[Events] = None

    # -- the runner's hooks
    def reset(self) -> None:
        """No state is carried between batches."""

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep the initial states in range (theta: phases in [0, Theta]) after every optimizer step."""
        for p in self.init:
            self.neuron.clamp_init_(p)

    def layer_parameters(self) -> dict:
        """'<layer>/weight' and '<layer>/phi0' (qif_exp: '<layer>/v0') -> tensor, for TensorBoard's histograms
        and gradient norms."""
        out = {}
        for name, w, p in zip(self.names, self.weights, self.init):
            out[f"{name}/weight"] = w
            out[f"{name}/{self.neuron.init_name}"] = p
        return out

    # -- the network
    def offsets(self) -> list:
        return [0] + list(torch.tensor(self.sizes).cumsum(0).tolist())

    def out_weights(self) -> torch.Tensor:
        """[N, N] row j: the weights of neuron j's spike onto every neuron (the next layer's block)."""
        N, off = sum(self.sizes), self.offsets()
        rows = []
        for i, n in enumerate(self.sizes):
            if i + 1 < len(self.sizes):
                w = self.weights[i + 1].t()  # [n, n_next]
                rows.append(nn.functional.pad(w, (off[i + 1], N - off[i + 2])))
            else:
                rows.append(self.weights[0].new_zeros(n, N))
        return torch.cat(rows, 0)

    def input_events(self, x: torch.Tensor):
        """([B, M] input event times, [B, M, N] their weights) of per-unit spike times ``x`` (trial units)."""
        B = x.shape[0]
        x = x.reshape(B, -1)
        finite = torch.isfinite(x)
        values = torch.unique(x[finite]) if bool(finite.any()) else x.new_zeros(0)
        N, n1 = sum(self.sizes), self.sizes[0]
        if values.numel() == 0:  # no input spike: the first layer's weights stay in the graph
            return x.new_full((B, 1), math.inf), x.new_zeros(B, 1, N) + 0 * self.weights[0].sum()  # (for DDP)
        onehot = (x.unsqueeze(-1) == values.view(1, 1, -1)).to(self.weights[0].dtype)  # [B, n_in, M]
        w = onehot.transpose(1, 2) @ self.weights[0].t()  # [B, M, n1]
        w = nn.functional.pad(w, (0, N - n1))
        present = onehot.sum(1) > 0  # [B, M]
        times = torch.where(
            present, values.view(1, -1).to(x.dtype) * self.T, torch.full_like(present, math.inf, dtype=x.dtype)
        )
        return times, w

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(x)
        if not self.training or self.flip == 0.0 or not bool(finite.any()):
            return x
        first = x[finite].min()
        flip = torch.rand(x.shape, device=x.device) < self.flip
        flipped = torch.where(finite, torch.full_like(x, math.inf), first.expand_as(x))
        return torch.where(flip, flipped, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._flip(x.float())
        B = x.shape[0]
        in_times, in_w = self.input_events(x)
        x0 = torch.cat(list(self.init)).unsqueeze(0).expand(B, -1)
        ev = simulate(self.neuron, x0, self.out_weights(), self.T, self.K, in_times, in_w, stop_early=self.stop_early)
        self.last = ev
        off = self.offsets()
        # pseudodynamics: each layer read as a rate network at the trial end
        rate = None
        for i in range(len(self.sizes) - 1):
            end = tuple(x[:, off[i] : off[i + 1]] for x in ev.state_end)
            drive = torch.zeros_like(end[0]) if rate is None else rate @ self.weights[i].t()
            rate = self.neuron.pseudo_rate(end, drive)
        drive = rate @ self.weights[-1].t()
        t_pseudo = self.neuron.t_pseudo(tuple(x[:, off[-2] :] for x in ev.state_end), drive, self.T)
        outs = torch.arange(off[-2], off[-1], device=x.device)
        t_ord, fired = ev.first_spike(outs)
        t_out = torch.where(fired, t_ord, t_pseudo)  # (where's gradient never reaches the inf of t_ord)
        if self.stats is not None:
            self.stats.add(self, ev)
        return torch.stack([t_out, t_ord.detach()])


class EventStats:
    """What the runner's monitor gathers from an `EventMLP` over an evaluation: ordinary spikes per neuron,
    events used (vs K), trials that ran out of events, and the event rasters of the first samples."""

    def __init__(self, record: int = 0):
        self.record = record  # samples of the first batch whose spike times are kept (0: none)
        self.counts = None
        self.trials = 0
        self.used_sum = 0
        self.used_max = 0
        self.exhausted = 0
        self.raster = None

    @torch.no_grad()
    def add(self, net: EventMLP, ev: Events) -> None:
        N = sum(net.sizes)
        counts = ev.spike_counts(N).sum(0)
        self.counts = counts if self.counts is None else self.counts + counts
        self.trials += ev.used.shape[0]
        used = torch.stack([ev.used.sum(), ev.used.max(), ev.exhausted.sum()]).tolist()
        self.used_sum += used[0]
        self.used_max = max(self.used_max, int(used[1]))
        self.exhausted += int(used[2])
        if self.record and self.raster is None:
            k = min(self.record, ev.times.shape[0])
            spikes = []
            for b in range(k):
                m = ev.source[b] >= 0
                spikes.append((ev.times[b][m].detach().cpu(), ev.source[b][m].cpu()))
            self.raster = {"spikes": spikes, "sizes": list(net.sizes), "names": list(net.names), "T": net.T}

    def all_reduce(self, net: EventMLP) -> None:
        """Sum the counts of every process of a torch.distributed group (max for the most events)."""
        counts = self.counts if self.counts is not None else torch.zeros(sum(net.sizes))
        device = counts.device if tdist.get_backend() != "nccl" else torch.device("cuda", torch.cuda.current_device())
        total = torch.cat(
            [
                counts.float().to(device),
                torch.tensor([self.trials, self.used_sum, self.exhausted], dtype=torch.float32, device=device),
            ]
        )
        tdist.all_reduce(total)
        most = torch.tensor([float(self.used_max)], device=device)
        tdist.all_reduce(most, op=tdist.ReduceOp.MAX)
        self.counts = total[:-3].to(counts.device)
        self.trials, self.used_sum, self.exhausted = (int(v) for v in total[-3:].tolist())
        self.used_max = int(most.item())

    def per_neuron(self, net: EventMLP) -> dict:
        """layer -> [n] mean ordinary spikes per trial of each neuron (on the CPU)."""
        if self.counts is None:
            return {}
        mean = (self.counts / max(self.trials, 1)).cpu()
        return dict(zip(net.names, mean.split(net.sizes)))

    def scalars(self, net: EventMLP) -> dict:
        out = {f"spikes_per_neuron/{name}": float(r.mean()) for name, r in self.per_neuron(net).items()}
        out.update(
            {
                "events/used_mean": self.used_sum / max(self.trials, 1),
                "events/used_max": float(self.used_max),
                "events/K": float(net.K),
                "events/exhausted": float(self.exhausted),
            }
        )
        return out
