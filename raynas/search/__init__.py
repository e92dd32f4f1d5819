"""Ray-free search methods: the base lifecycle and the baselines."""

from raynas.search.base import ArchitectureSearch, Observation, SearchStateError, is_number
from raynas.search.evolution import RegularizedEvolution
from raynas.search.random import RandomSearch

__all__ = [
    "ArchitectureSearch",
    "Observation",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchStateError",
    "is_number",
]
