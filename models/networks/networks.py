"""Network builders: MLP and a small conv net whose hidden layers take any neuron, point or dendritic.

A *neuron factory* is a callable that returns a fresh spiking module; it tells the builder how many
input features one neuron takes through ``inputs_per_neuron`` (1 for a point neuron, K_in for a
dendritic one). A hidden layer of S neurons is then

    linear:  Linear(n_in -> S * K_in)   [T, B, n_in] -> [T, B, S*K_in]   -> neuron -> [T, B, S]
    conv:    Conv2d(C_in -> K_in * C)   [T, B, C_in, H, W] -> [T, B, K_in*C, H, W] -> neuron -> [T, B, C, H, W]

(feature ``s * K_in + k`` is compartment k of neuron s; conv channel ``k * C + c`` is compartment k of
channel c.) Synapse layers run over ``T * B`` rows in one call. The read-out is a linear layer into
``n_classes`` neurons of its own factory; the network returns the read-out spikes [T, B, n_classes].

``synapse`` (`synapses.Synapse`, the ``synapse`` config group; default None = plain) builds every
connection, read-out included: ``synapse.linear`` / ``synapse.conv`` (masks, E/I signs, bounds), then
``synapse.filters`` (an exponential current filter, ``tau_s``) between the synapse and the neurons:

    [synapse -> filter -> competition -> neuron]          (filter and competition only when set)

``dropout`` (MLP) drops hidden spikes with ONE mask per sample for all T steps (`SampleDropout`).
``Conv1dNet`` is the 1-D version of ``ConvNet`` for inputs [C, L] (or [L] = 1 channel x L), e.g. a
per-step vector of channels: its 1-D convolutions run as 2-D ones with 1 x k kernels over a [C, 1, L]
view, so dendritic layouts, competition and the local rules work unchanged.

``competition`` (optional, default None: nothing added) is a factory of `competition.py`, called as
``competition(n_neurons=S, k_in=K_in)`` for every hidden layer; its module sits between the synapse and the
neurons and acts on their currents (lateral inhibition, k-winner-take-all).

``recurrent`` (MLP only; default false: the feed-forward stack above, unchanged) adds a recurrent synapse
(`recurrent.py`) to every hidden layer: true = learned W_rec, 'inhibition' = fixed cross-inhibition
-inhibition (1 - I). The synapses live in ``MLP.recurrent`` beside ``layers``, which stays the plain
(synapse, neuron) stack that `calibrate.layer_pairs` and the runner read; the feed-forward synapse
still runs over all T steps at once, then the neuron runs step by step with W_rec s[t-1] added.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..layers.recurrent import RecurrentSynapse, check_steps, recurrent_kind
from ..layers.synapses import Synapse, TimeDistributed

__all__ = ["Conv1dNet", "ConvNet", "MLP", "SampleDropout", "SpikingNet", "TimeDistributed"]

NeuronFactory = Callable[[], nn.Module]


class SampleDropout(nn.Module):
    """Dropout with one mask per sample for all time steps (inverted: kept units scaled by 1 / (1 - p)).

        train:  y[t, b, ...] = x[t, b, ...] * m[b, ...] / (1 - p),   m[b, ...] ~ Bernoulli(1 - p), the same m for every t
        eval:   y = x

    Multi-step input [T, B, ...] draws m once per call; single-step input [B, ...] draws it at the first
    step after `reset()` (a new sample) and keeps it until the next reset.
    """

    def __init__(self, p: float, step_mode: str = "m"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {p})")
        self.p, self.step_mode = float(p), step_mode
        self._mask: Optional[torch.Tensor] = None

    def _draw(self, like: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(like).bernoulli_(1.0 - self.p).div_(1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.step_mode == "m":
            return x * self._draw(x[0])  # m [B, ...] broadcast over T
        if self._mask is None or self._mask.shape != x.shape:
            self._mask = self._draw(x)
        return x * self._mask

    def reset(self) -> None:
        self._mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode!r}"


def _k_in(neuron: nn.Module) -> int:
    return int(getattr(neuron, "inputs_per_neuron", 1))


def _step_mode(neuron: nn.Module) -> str:
    return getattr(neuron, "step_mode", "m")


def _synapse(synapse: Optional[Synapse]) -> Synapse:
    if synapse is None:
        return Synapse()
    for attr in ("linear", "conv", "filters"):
        if not callable(getattr(synapse, attr, None)):
            raise ValueError(
                f"synapse must be a dendsn.synapses.Synapse (with linear, conv and filters); "
                f"got {type(synapse).__name__}"
            )
    return synapse


def _compete(competition: Optional[Callable[..., nn.Module]], n_neurons: int, cell: nn.Module) -> list:
    """[] or [the competition module for the currents of a layer of ``n_neurons`` ``cell``s]."""
    return [] if competition is None else [competition(n_neurons=int(n_neurons), k_in=_k_in(cell))]


class SpikingNet(nn.Module):
    """A feed-forward stack of (synapse, neuron) pairs; ``spiking`` lists its neuron modules."""

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.layers(x_seq)

    def reset(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset") and callable(m.reset):
                m.reset()


class MLP(SpikingNet):
    """input -> [Linear -> neuron (+ W_rec s[t-1] when recurrent) -> dropout] x len(hidden) -> Linear -> read-out neuron."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        neuron: NeuronFactory,
        readout: NeuronFactory,
        hidden: Sequence[int] = (256,),
        bias: bool = True,
        dropout: float = 0.0,
        competition: Optional[Callable[..., nn.Module]] = None,
        recurrent: Union[bool, str] = False,
        inhibition: float = 0.5,
        recurrent_init: float = 0.0,
        synapse: Optional[Synapse] = None,
    ):
        syn = _synapse(synapse)
        hidden = list(hidden)
        kind = recurrent_kind(recurrent)
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive sizes (got {hidden})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {dropout})")
        n_in = 1
        for d in input_shape:
            n_in *= int(d)
        layers: list[nn.Module] = [nn.Flatten(2)] if len(input_shape) > 1 else []
        recurrences = {}  # index of a hidden neuron in layers -> its W_rec
        for width in hidden:
            cell = neuron()
            layers += [
                syn.linear(n_in, width * _k_in(cell), bias=bias),
                *syn.filters(_step_mode(cell)),
                *_compete(competition, width, cell),
                cell,
            ]
            if kind is not None:
                check_steps(cell)
                recurrences[str(len(layers) - 1)] = RecurrentSynapse(
                    width, _k_in(cell), kind, inhibition, recurrent_init
                )
            if dropout:
                layers.append(SampleDropout(dropout, _step_mode(cell)))
            n_in = width
        layers += _readout_layers(syn, readout, n_in, n_classes, bias)
        super().__init__(layers)
        self.recurrent = nn.ModuleDict(recurrences)  # empty for a feed-forward net: no state_dict keys

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self.recurrent:
            return self.layers(x_seq)
        for i, m in enumerate(self.layers):
            rec = self.recurrent[str(i)] if str(i) in self.recurrent else None
            x_seq = m(x_seq) if rec is None else rec.run(m, x_seq)
        return x_seq


def _conv_stage(
    syn: Synapse,
    neuron: NeuronFactory,
    competition,
    c_in: int,
    c: int,
    kernel_size,
    padding,
    bias: bool,
    pool: nn.Module,
) -> list:
    """One conv stage: conv (c_in -> c * K_in) -> synaptic filters -> competition -> neuron -> pool."""
    cell = neuron()
    return [
        syn.conv(c_in, int(c) * _k_in(cell), kernel_size, padding=padding, bias=bias),
        *syn.filters(_step_mode(cell)),
        *_compete(competition, c, cell),
        cell,
        TimeDistributed(pool),
    ]


def _readout_layers(syn: Synapse, readout: NeuronFactory, n_in: int, n_classes: int, bias: bool) -> list:
    """The read-out: synapse (n_in -> n_classes * K_in) -> synaptic filters -> read-out neuron."""
    out = readout()
    return [syn.linear(n_in, n_classes * _k_in(out), bias=bias), *syn.filters(_step_mode(out)), out]


def _fc_head(
    syn: Synapse,
    neuron: NeuronFactory,
    readout: NeuronFactory,
    competition,
    n_in: int,
    fc: int,
    n_classes: int,
    bias: bool,
) -> list:
    """After the conv stages: flatten -> fc layer of ``fc`` neurons -> the read-out."""
    cell = neuron()
    return [
        nn.Flatten(2),
        syn.linear(n_in, fc * _k_in(cell), bias=bias),
        *syn.filters(_step_mode(cell)),
        *_compete(competition, fc, cell),
        cell,
        *_readout_layers(syn, readout, fc, n_classes, bias),
    ]


class ConvNet(SpikingNet):
    """conv-pool-conv-pool-fc: [Conv3x3 -> neuron -> AvgPool2] x len(channels) -> Linear -> neuron -> read-out."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        neuron: NeuronFactory,
        readout: NeuronFactory,
        channels: Sequence[int] = (16, 32),
        fc: int = 128,
        bias: bool = True,
        competition: Optional[Callable[..., nn.Module]] = None,
        recurrent: Union[bool, str] = False,
        synapse: Optional[Synapse] = None,
    ):
        syn = _synapse(synapse)
        if recurrent_kind(recurrent) is not None:
            raise ValueError(
                f"network=conv has no recurrent layers (got recurrent={str(recurrent).lower()}); use "
                "network=mlp for recurrent=true or recurrent=inhibition"
            )
        if len(input_shape) != 3:
            raise ValueError(
                f"conv needs image inputs [C, H, W] (got input shape {tuple(input_shape)}); use network=mlp"
            )
        c_in, h, w = (int(d) for d in input_shape)
        layers: list[nn.Module] = []
        for c in channels:
            layers += _conv_stage(syn, neuron, competition, c_in, c, 3, 1, bias, nn.AvgPool2d(2))
            c_in, h, w = int(c), h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"too many conv stages ({len(channels)}) for input {tuple(input_shape)}")
        layers += _fc_head(syn, neuron, readout, competition, c_in * h * w, fc, n_classes, bias)
        super().__init__(layers)


class As2d(nn.Module):
    """[T, B, C, L] -> [T, B, C, 1, L]: a 1-D signal as a 2-D image of height 1 ([L] -> [1, 1, L] for one channel)."""

    def __init__(self, n_signal_dims: int):
        super().__init__()
        self.n_signal_dims = n_signal_dims  # 1: [L], 2: [C, L]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_signal_dims == 1:
            return x.unsqueeze(-2).unsqueeze(-2)  # [..., L] -> [..., 1, 1, L]
        return x.unsqueeze(-2)  # [..., C, L] -> [..., C, 1, L]


class Conv1dNet(SpikingNet):
    """1-D conv-pool stack: [Conv1d(k) -> neuron -> AvgPool1d(2)] x len(channels) -> Linear -> neuron -> read-out.

    Input per step: [C, L] (C channels of length L), or [L], taken as 1 channel x L (e.g. the synthetic
    dataset's vector of spike channels, or a sequential image row). Each Conv1d(c_in -> c, k, padding
    k // 2) is computed as Conv2d with a 1 x k kernel over the [C, 1, L] view (the same numbers:
    conv1d(x, W)[o, l] = conv2d(x[:, None], W[:, :, None])[o, 0, l]; weights [c, c_in, 1, k]), and
    AvgPool1d(2) as AvgPool2d((1, 2)).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        neuron: NeuronFactory,
        readout: NeuronFactory,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        fc: int = 128,
        bias: bool = True,
        competition: Optional[Callable[..., nn.Module]] = None,
        recurrent: Union[bool, str] = False,
        synapse: Optional[Synapse] = None,
    ):
        syn = _synapse(synapse)
        if recurrent_kind(recurrent) is not None:
            raise ValueError(
                f"network=conv1d has no recurrent layers (got recurrent={str(recurrent).lower()}); use "
                "network=mlp for recurrent=true or recurrent=inhibition"
            )
        if len(input_shape) not in (1, 2):
            raise ValueError(
                f"conv1d needs 1-D inputs [C, L] or [L] per step (got input shape {tuple(input_shape)}); "
                "use network=conv for images or network=mlp"
            )
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1 (got kernel_size={kernel_size!r})")
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive sizes (got {list(channels)})")
        c_in, length = (1, int(input_shape[0])) if len(input_shape) == 1 else (int(input_shape[0]), int(input_shape[1]))
        layers: list[nn.Module] = [As2d(len(input_shape))]
        for c in channels:
            length //= 2
            if length < 1:
                raise ValueError(
                    f"too many conv1d stages ({len(channels)}) for input {tuple(input_shape)}: each halves L"
                )
            layers += _conv_stage(
                syn, neuron, competition, c_in, c, (1, kernel_size), (0, kernel_size // 2), bias, nn.AvgPool2d((1, 2))
            )
            c_in = int(c)
        layers += _fc_head(syn, neuron, readout, competition, c_in * length, fc, n_classes, bias)
        super().__init__(layers)
