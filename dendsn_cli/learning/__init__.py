"""Learning rules: one interface for surrogate-gradient backprop and local plasticity.

A rule is built from its config group `learning` and then driven by the training loop:

    rule.setup(model, optimizer_factory, total_steps, lr_schedule, context)   # context: `RuleContext`
    loss, out = rule.train_batch(model, x_seq, y)      # updates the weights
    loss, out = rule.eval_batch(model, x_seq, y)       # no update
    rule.epoch_end(); rule.epoch_scalars(); rule.epoch_images()   # after every epoch (TensorBoard)
    rule.state_dict() / rule.load_state_dict(sd)        # optimizer + scheduler state for resume

``out`` is the read-out spike train [T, B, n_classes]; ``loss`` a 0-dim tensor (no host sync).

    bptt.py        BPTT          surrogate-gradient backprop through time
    stdp.py        STDP          pair-based STDP with traces;  SemiSTDP: its LTP term only
    dpp.py         DPP           dendritic prediction plasticity (Urbanczik & Senn 2014)
    rstdp.py       RSTDP         reward-modulated (three-factor) STDP
    readout.py     Readout       the baseline: only the read-out learns
    exact.py       ExactGradient exact gradient through the event network of theta neurons (spikegd)
    local.py       LocalRule     what the local rules share (hooks, bounds, competition, read-out)
    plasticity.py                traces, correlations (one matmul, linear and conv), weight dependence
"""

from .base import LearningRule, PhaseClock, RuleContext
from .bptt import BPTT
from .dpp import DPP
from .exact import ExactGradient
from .local import LocalRule
from .readout import Readout
from .rstdp import RSTDP
from .stdp import STDP, SemiSTDP

__all__ = [
    "LearningRule",
    "RuleContext",
    "PhaseClock",
    "BPTT",
    "LocalRule",
    "STDP",
    "SemiSTDP",
    "DPP",
    "RSTDP",
    "Readout",
    "ExactGradient",
]
