"""Exact, smooth gradient descent (Klos & Memmesheimer 2023, spikegd) for the event network.

    loss = CE(-t_out, y) + gamma (exp(t_out[y] / T) - 1)        (readout=first_spike on the event network)
    theta <- optimizer(theta, dloss/dtheta)                     theta: every layer's weights, initial phases

`dendsn.events.EventMLP` simulates theta neurons event by event, so every output time (an ordinary
first spike, or the pseudospike time of a silent output) is a differentiable function of the weights
and initial phases, and autograd through the simulation gives the exact gradient: no surrogate. Spikes
appear or vanish only at the trial end, so the loss is continuous in the parameters. After every step
the initial phases are clamped to [0, Theta]. The network, not this rule, defines what is exact:
`learning=exact` is the rule that the event network takes (and the only one).
"""

from __future__ import annotations

import torch

from ..runs import distributed as dist
from .bptt import BPTT


class ExactGradient(BPTT):
    """``gamma``: weight of the term exp(t_y / T) - 1 that pulls the correct output's spike earlier;
    ``grad_clip``: clip the gradient's L2 norm (0: off). The step is BPTT's (backprop of the read-out's loss,
    the optimizer, the constraints: here the initial phases back into [0, Theta]), always in float32:
    phases near Theta need the precision. It also counts the epoch's events (trials cut at K, the most used)."""

    exact = True

    def __init__(self, gamma: float = 0.01, grad_clip: float = 0.0):
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            raise ValueError(f"gamma must be a number >= 0 (got gamma={gamma!r})")
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)):
            raise ValueError(f"grad_clip must be a number >= 0 (got grad_clip={grad_clip!r})")
        super().__init__(per_step_loss=False, grad_clip=float(grad_clip))
        self.gamma = float(gamma)
        self._events = None  # [trials cut at K, most events in a trial] of this epoch (on the device)
        self._scalars: dict = {}

    def readout_options(self) -> dict:
        """The event network's read-out adds ``gamma`` (exp(t_y / T) - 1) to its loss."""
        return {"gamma": self.gamma}

    def train_batch(self, model, x_seq, y, autocast=None):
        result = super().train_batch(model, x_seq, y, None)
        ev = getattr(getattr(model, "module", model), "last", None)  # (model: DDP's wrapper under torchrun)
        if ev is not None:
            seen = torch.stack([ev.exhausted.sum(), ev.used.max()])
            self._events = (
                seen
                if self._events is None
                else torch.stack([self._events[0] + seen[0], torch.maximum(self._events[1], seen[1])])
            )
        return result

    def epoch_end(self) -> None:
        self._scalars = {}
        if self._events is not None:
            events = self._events  # under torchrun: over every process's shard
            exhausted, used_max = dist.reduce_sum(events[:1]).item(), dist.reduce_max(events[1:]).item()
            self._scalars = {"events/train_exhausted": float(exhausted), "events/train_used_max": float(used_max)}
        self._events = None

    def epoch_scalars(self) -> dict:
        """events/train_exhausted (training trials cut at K events), events/train_used_max."""
        return dict(self._scalars)
