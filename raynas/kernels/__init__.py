"""Kernels over architectures (GPyTorch ``Kernel`` subclasses)."""
