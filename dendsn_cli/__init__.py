"""dendsn runner: CLI, config, data, learning rules, training loop.

The module paths of the flat layout before it (``dendsn_cli.checkpoint``, ``dendsn_cli.tb``, ...) may be
named by users' stored configs and their own code: `ALIASES` maps each to its module now, so
``import dendsn_cli.tb`` gives the very module ``dendsn_cli.training.tb``.
"""

from dendsn import install_aliases

ALIASES = {
    "dendsn_cli.checkpoint": "dendsn_cli.runs.checkpoint",
    "dendsn_cli.distributed": "dendsn_cli.runs.distributed",
    "dendsn_cli.rundir": "dendsn_cli.runs.rundir",
    "dendsn_cli.sweep": "dendsn_cli.runs.sweep",
    "dendsn_cli.tb": "dendsn_cli.training.tb",
    "dendsn_cli.simulate": "dendsn_cli.stimuli",  # the stimuli of conf/stimulus before,
}

install_aliases(ALIASES)
