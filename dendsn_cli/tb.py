"""TensorBoard logging of a run: moved to `dendsn_cli.training.tb` (this path stays for conf/logger's
``_target_: dendsn_cli.tb.TensorBoardLogger`` and users' stored configs)."""

from .training.tb import TensorBoardLogger

__all__ = ["TensorBoardLogger"]
