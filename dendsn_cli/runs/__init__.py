"""What a run leaves behind and holds: its directory and lock (rundir), checkpoints, the results of a
sweep (sweep), the process group under torchrun (distributed), and the process-wide state (state)."""
