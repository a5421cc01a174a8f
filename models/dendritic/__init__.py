"""The dendritic stack, bottom up: `compartments` (one compartment's dynamics), `wiring` (which
compartments connect), `dendrite` (K coupled compartments), `soma` (the dendrite's drive of the
soma), `neuron` (one `DendriticNeuron`; `DendLIF` / `DendIF` are presets of it), `fast` (its fast
paths and their cache, each equal to the reference step).

``dendsn.dendritic`` was one module before (the neurons): its names stay here.
"""

from . import compartments, dendrite, wiring
from .neuron import DendIF, DendLIF, Dendritic, DendriticNeuron
from .soma import FORWARD_ACTIVATIONS, total_strength, weighted_sum

__all__ = [
    "FORWARD_ACTIVATIONS",
    "DendIF",
    "DendLIF",
    "Dendritic",
    "DendriticNeuron",
    "compartments",
    "dendrite",
    "total_strength",
    "weighted_sum",
    "wiring",
]
