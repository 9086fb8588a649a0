"""Shared GPU kernels of tsmodels: scan, FFT long convolution, Vandermonde kernel generation.

Each op lives in its own sub-package with three parts: ``reference.py`` (plain PyTorch, the
definition and the CPU path), the Triton kernels, and an ``__init__`` exposing the public
function that dispatches between them (see :mod:`kernels._dispatch`). This package imports
nothing else of tsmodels.

Note: a different PyPI project also installs a top-level ``kernels`` module; tsmodels does
not depend on it, and the two cannot be installed in one environment.
"""
