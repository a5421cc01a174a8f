"""`python -m dendsn_cli ...` = `dendsn ...` (the form torchrun starts: torchrun --nproc_per_node=N -m dendsn_cli train)."""

from .cli import main

main()
