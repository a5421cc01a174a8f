"""dendsn runner: CLI, config, data, learning rules, training loop."""
