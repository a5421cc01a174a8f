"""Point neurons: `base` (the shells and checks every neuron shares), `lif` (LIF, IF, PLIF, LI),
`nonlinear` (QIF, EIF, KLIF, LIAF, PSN), `adaptive` (AdEx, Izhikevich, ALIF, ...); their firing
functions are `dendsn.surrogate`.

``dendsn.neurons`` was one module before (LIF, IF, PLIF, LI and the bases): its names stay here.
"""

from .base import PointNeuron, SpikingModule, StepNeuron, check_range, check_threshold, outer_spiking
from .lif import IF, LI, LIF, PLIF

__all__ = [
    "IF",
    "LI",
    "LIF",
    "PLIF",
    "PointNeuron",
    "SpikingModule",
    "StepNeuron",
    "check_range",
    "check_threshold",
    "outer_spiking",
]
