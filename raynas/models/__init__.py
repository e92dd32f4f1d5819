"""PyTorch models of raynas search spaces (Ray-free)."""

from raynas.models.nb201_net import NB201Cell, NB201Network, count_parameters

__all__ = ["NB201Cell", "NB201Network", "count_parameters"]
