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

from .base import LearningRule, clamp_weights


class ExactGradient(LearningRule):
    """``gamma``: weight of the term exp(t_y / T) - 1 that pulls the correct output's spike earlier;
    ``grad_clip``: clip the gradient's L2 norm (0: off)."""

    exact = True

    def __init__(self, gamma: float = 0.01, grad_clip: float = 0.0):
        super().__init__(per_step_loss=False)
        for key, value in (("gamma", gamma), ("grad_clip", grad_clip)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{key} must be a number >= 0 (got {key}={value!r})")
        self.gamma, self.grad_clip = float(gamma), float(grad_clip)
        self._events = None          # [trials cut at K, most events in a trial] of this epoch (on the device)
        self._scalars: dict = {}

    def train_batch(self, model, x_seq, y, autocast=None):
        out = model(x_seq)                      # float32 always: phases near Theta need the precision
        loss = self.loss(out, y)
        ev = getattr(getattr(model, "module", model), "last", None)     # (model: DDP's wrapper under torchrun)
        if ev is not None:
            seen = torch.stack([ev.exhausted.sum(), ev.used.max()])
            self._events = seen if self._events is None else torch.stack(
                [self._events[0] + seen[0], torch.maximum(self._events[1], seen[1])])
        self.phase("forward")
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.loss_scale if self.loss_scale != 1.0 else loss).backward()
        self.phase("backward")
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        clamp_weights(model)                    # the initial phases back into [0, Theta]
        self.phase("optimizer")
        return loss.detach(), out.detach()

    def epoch_end(self) -> None:
        self._scalars = {}
        if self._events is not None:
            from .. import distributed as dist

            events = self._events
            if dist.active():                   # under torchrun: over every process's shard
                import torch.distributed as tdist

                exhausted = dist.reduce_sum(events[:1])
                most = events[1:].clone()
                tdist.all_reduce(most, op=tdist.ReduceOp.MAX)
                events = torch.cat([exhausted, most])
            exhausted, used_max = events.tolist()
            self._scalars = {"events/train_exhausted": float(exhausted), "events/train_used_max": float(used_max)}
        self._events = None

    def epoch_scalars(self) -> dict:
        """events/train_exhausted (training trials cut at K events), events/train_used_max."""
        return dict(self._scalars)
