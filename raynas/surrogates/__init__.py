"""Surrogate models over architectures."""
