"""Old path of `dendsn_cli.runs.checkpoint` (kept until the other modules import the new one): the same module."""
import sys; from .runs import checkpoint; sys.modules[__name__] = checkpoint  # noqa: E702,I001
