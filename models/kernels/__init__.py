"""Hand-written autograd Functions and fast paths, apart from the model classes that call them.

    soma          the linear soma: reference step, LIF algebra, the fused scan, the reverse reset recurrence
    nonlinear     QIF / EIF, KLIF, LIAF, PSN scans            adaptive   AdEx / Izhikevich scan
    compartments  leaky and active scans of compartments      dendrite   weighted sum, coupled loop
    readout       the dendritic neuron's fast paths (the soma's drive for all T at once) and their cache

Each equals a reference step written with autograd (tests/test_fast_paths.py, test_zoo_*.py). The
kernels that import the model packages (soma, nonlinear, adaptive, readout) are imported as
modules (``from ..kernels import soma``), never names out of them, so that the packages may load in
any order; compartments and dendrite import torch only.
"""
