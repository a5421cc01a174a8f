"""Old path of the stimuli (``dendsn_cli.simulate.Constant``, ... in conf/stimulus/ and stored configs) and of
the sweep report of `dendsn simulate` (``dendsn_cli.simulate.FISweepReport`` in conf/simulate.yaml)."""

from .commands.simulate import FISweepReport
from .stimuli import Constant, Cosine, Poisson, Sine, Stimulus, constant, poisson_drive, sinusoid

__all__ = ["Constant", "Cosine", "FISweepReport", "Poisson", "Sine", "Stimulus", "constant", "poisson_drive", "sinusoid"]
