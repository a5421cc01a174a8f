"""Network builders: MLP and a small conv net whose hidden layers take any neuron, point or dendritic.

A *neuron factory* is a callable that returns a fresh spiking module; it tells the builder how many
input features one neuron takes through ``inputs_per_neuron`` (1 for a point neuron, K_in for a
dendritic one). A hidden layer of S neurons is then

    linear:  Linear(n_in -> S * K_in)   [T, B, n_in] -> [T, B, S*K_in]   -> neuron -> [T, B, S]
    conv:    Conv2d(C_in -> K_in * C)   [T, B, C_in, H, W] -> [T, B, K_in*C, H, W] -> neuron -> [T, B, C, H, W]

(feature ``s * K_in + k`` is compartment k of neuron s; conv channel ``k * C + c`` is compartment k of
channel c.) Synapse layers run over ``T * B`` rows in one call. The read-out is a linear layer into
``n_classes`` neurons of its own factory; the network returns the read-out spikes [T, B, n_classes].

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

from .recurrent import RecurrentSynapse, check_steps, recurrent_kind


NeuronFactory = Callable[[], nn.Module]


class TimeDistributed(nn.Module):
    """Apply a stateless module to [T, B, ...] by folding T into the batch: one call for all steps."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))


def _k_in(neuron: nn.Module) -> int:
    return int(getattr(neuron, "inputs_per_neuron", 1))


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
    """input -> [Linear -> neuron (+ W_rec s[t-1] when recurrent)] x len(hidden) -> Linear -> read-out neuron."""

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
    ):
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
        recurrences = {}                                    # index of a hidden neuron in layers -> its W_rec
        for width in hidden:
            cell = neuron()
            layers += [nn.Linear(n_in, width * _k_in(cell), bias=bias), *_compete(competition, width, cell), cell]
            if kind is not None:
                check_steps(cell)
                recurrences[str(len(layers) - 1)] = RecurrentSynapse(width, _k_in(cell), kind, inhibition,
                                                                     recurrent_init)
            if dropout:
                layers.append(nn.Dropout(dropout))
            n_in = width
        out = readout()
        layers += [nn.Linear(n_in, n_classes * _k_in(out), bias=bias), out]
        super().__init__(layers)
        self.recurrent = nn.ModuleDict(recurrences)        # empty for a feed-forward net: no state_dict keys

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self.recurrent:
            return self.layers(x_seq)
        for i, m in enumerate(self.layers):
            rec = self.recurrent[str(i)] if str(i) in self.recurrent else None
            x_seq = m(x_seq) if rec is None else rec.run(m, x_seq)
        return x_seq


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
    ):
        if recurrent_kind(recurrent) is not None:
            raise ValueError(f"network=conv has no recurrent layers (got recurrent={str(recurrent).lower()}); use "
                             "network=mlp for recurrent=true or recurrent=inhibition")
        if len(input_shape) != 3:
            raise ValueError(f"conv needs image inputs [C, H, W] (got input shape {tuple(input_shape)}); use network=mlp")
        c_in, h, w = (int(d) for d in input_shape)
        layers: list[nn.Module] = []
        for c in channels:
            cell = neuron()
            layers += [
                TimeDistributed(nn.Conv2d(c_in, int(c) * _k_in(cell), 3, padding=1, bias=bias)),
                *_compete(competition, c, cell),
                cell,
                TimeDistributed(nn.AvgPool2d(2)),
            ]
            c_in, h, w = int(c), h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"too many conv stages ({len(channels)}) for input {tuple(input_shape)}")
        cell = neuron()
        layers += [nn.Flatten(2), nn.Linear(c_in * h * w, fc * _k_in(cell), bias=bias), *_compete(competition, fc, cell), cell]
        out = readout()
        layers += [nn.Linear(fc, n_classes * _k_in(out), bias=bias), out]
        super().__init__(layers)
