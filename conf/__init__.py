"""The dendsn Hydra config tree (one folder per config group)."""
