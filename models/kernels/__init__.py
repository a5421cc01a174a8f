"""Hand-written autograd Functions and fast paths, apart from the model classes that call them.

Each kernel equals a reference step written with autograd (tests/test_fast_paths.py). Models import
these modules as modules (``from ..kernels import soma``), never names out of them, so that the
packages may import each other in any order.
"""
