"""Old path of `dendsn_cli.runs.sweep` (kept until the other modules import the new one): the same module."""
import sys; from .runs import sweep; sys.modules[__name__] = sweep  # noqa: E702,I001
