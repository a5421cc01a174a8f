"""dendsn model library: point and dendritic spiking neurons as plain torch modules.

Imported as ``dendsn``; nothing here knows about Hydra, files or logging. Packages by role:

    neurons/     point neurons: base (SpikingModule, StepNeuron, PointNeuron, checks), lif (LIF, IF,
                 PLIF, LI), nonlinear (QIF, EIF, KLIF, LIAF, PSN), adaptive (AdEx, Izhikevich, ALIF, ...)
    dendritic/   compartments, wiring, dendrite, soma (the dendrite's drive of the soma), neuron (one
                 DendriticNeuron; DendLIF / DendIF are presets of it), fast (its fast paths and their cache)
    kernels/     the hand-written autograd Functions, each equal to the reference step it speeds up
    surrogate.py the firing functions (surrogate gradients, stochastic firing), used at every level
    layers/      synapses, competition, recurrent
    networks/    networks (MLP, ConvNet, Conv1dNet), calibrate
    events.py    the event simulator (exact spike times)

The module paths of the flat layout before it (``dendsn.wiring``, ``dendsn.soma``, ...) are named
by configs' ``_target_`` strings and users' stored configs: `ALIASES` maps each to its module now,
so ``import dendsn.wiring`` gives the very module ``dendsn.dendritic.wiring``.
"""

import importlib
import importlib.abc
import importlib.util
import sys

ALIASES = {
    "dendsn.nonlinear": "dendsn.neurons.nonlinear",
    "dendsn.adaptive": "dendsn.neurons.adaptive",
    "dendsn.compartments": "dendsn.dendritic.compartments",
    "dendsn.wiring": "dendsn.dendritic.wiring",
    "dendsn.dendrite": "dendsn.dendritic.dendrite",
    "dendsn.soma": "dendsn.kernels.soma",
    "dendsn.synapses": "dendsn.layers.synapses",
    "dendsn.competition": "dendsn.layers.competition",
    "dendsn.recurrent": "dendsn.layers.recurrent",
    "dendsn.calibrate": "dendsn.networks.calibrate",
}
# dendsn.neurons, dendsn.dendritic and dendsn.networks are packages now that re-export what those
# modules exported; dendsn.events kept its place.


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module path of ``aliases`` (old name -> new name) as the module it names (the same
    object). `dendsn_cli` installs one of its own for the runner's old paths."""

    def __init__(self, aliases: dict):
        self.aliases = aliases

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in self.aliases else None

    def create_module(self, spec):
        return importlib.import_module(self.aliases[spec.name])

    def exec_module(self, module) -> None:
        """The module ran when `create_module` imported it under its own name."""


def install_aliases(aliases: dict) -> None:
    """Put a finder for ``aliases`` on ``sys.meta_path`` (once per table)."""
    if not any(isinstance(f, AliasFinder) and f.aliases is aliases for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder(aliases))


install_aliases(ALIASES)
