"""Old path of `dendsn_cli.runs.rundir` (kept until the other modules import the new one): the same module."""
import sys; from .runs import rundir; sys.modules[__name__] = rundir  # noqa: E702,I001
