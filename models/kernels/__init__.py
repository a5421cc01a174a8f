"""Hand-written autograd Functions and fast paths, apart from the model classes that call them.

    soma          the linear soma: reference step, LIF algebra, the fused scan, the reverse reset recurrence
    nonlinear     QIF / EIF, KLIF, LIAF, PSN scans            adaptive   AdEx / Izhikevich scan
    compartments  leaky and active scans of compartments      dendrite   weighted sum, coupled loop

Each equals a reference step written with autograd (tests/test_fast_paths.py, test_zoo_*.py). The
kernels import torch and the firing functions (`dendsn.surrogate`) only, never a model package: the
models sit above them (an import-linter contract). The dendritic neuron's fast paths, which need the
dendrite's own operators, sit beside it in `dendsn.dendritic.fast`.
"""
