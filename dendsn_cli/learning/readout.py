"""The baseline of the local rules: only the read-out learns, on frozen hidden layers.

The hidden layers get the same start as under a local rule (``init``, bounds, ``normalize``; by
default the network's own random initialisation) and never change; the read-out learns by
``readout`` (gradient: CE on spike counts into the read-out only; delta: the local delta rule).
"""

from __future__ import annotations

from .local import LocalRule


class Readout(LocalRule):
    """Train the read-out only; hidden weights stay as initialised. Keys: `LocalRule`."""

    def setup(self, model, optimizer_factory, total_steps, lr_schedule="none", context=None) -> None:
        super().setup(model, optimizer_factory, total_steps, lr_schedule, context)
        for layer in self.hidden:
            layer.learns = False

    def delta_seq(self, layer, out, y):
        raise RuntimeError("the read-out baseline has no local layers")

    delta_steps = delta_seq
