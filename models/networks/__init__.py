"""Networks: `networks` (MLP, ConvNet, Conv1dNet) and `calibrate` (firing-rate calibration).

``dendsn.networks`` was one module before: its names stay here.
"""

from .networks import MLP, As2d, Conv1dNet, ConvNet, NeuronFactory, SampleDropout, SpikingNet, Synapse, TimeDistributed

__all__ = [
    "MLP",
    "As2d",
    "Conv1dNet",
    "ConvNet",
    "NeuronFactory",
    "SampleDropout",
    "SpikingNet",
    "Synapse",
    "TimeDistributed",
]
