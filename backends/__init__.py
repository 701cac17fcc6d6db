"""Backends: the NumPy reference interpreter, Numba CPU and Numba CUDA code generators."""
