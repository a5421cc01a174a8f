"""The commands of `dendsn`. `train` and `simulate` are two uses of one pipeline (`pipeline.py`: parse,
compose and validate every job, claim the run dir, launch through Hydra, report); `eval` composes the
config a checkpoint was trained with; `list` and the help texts read conf/ only (no torch); `torchrun`
starts `train` in several processes.

Each command module has ``command(args: list[str]) -> None``; `dendsn_cli.cli` imports the one it runs.
"""

COMMANDS = {"train": "train", "eval": "eval", "simulate": "simulate", "list": "listing", "torchrun": "torchrun"}
