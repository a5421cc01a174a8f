"""Learning rules: one interface for surrogate-gradient backprop and local plasticity.

A rule is built from its config group `learning` and then driven by the training loop:

    rule.setup(model, optimizer_factory, total_steps, lr_schedule)
    loss, out = rule.train_batch(model, x_seq, y)      # updates the weights
    loss, out = rule.eval_batch(model, x_seq, y)       # no update
    rule.state_dict() / rule.load_state_dict(sd)        # optimizer + scheduler state for resume

``out`` is the read-out spike train [T, B, n_classes]; ``loss`` a 0-dim tensor (no host sync).
"""

from .base import LearningRule
from .bptt import BPTT

__all__ = ["LearningRule", "BPTT"]
