"""Old path of `dendsn_cli.runs.distributed` (kept until the other modules import the new one): the same module."""
import sys; from .runs import distributed; sys.modules[__name__] = distributed  # noqa: E702,I001
