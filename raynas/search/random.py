"""Random search: the honest baseline every other method must beat."""

from __future__ import annotations

from raynas.architecture import Architecture
from raynas.search.base import ArchitectureSearch


class RandomSearch(ArchitectureSearch):
    """Uniform sampling from the space, without replacement.

    The base class rejects architectures already seen and, once rejection
    stalls in a finite space, draws uniformly from the unseen remainder; so on
    a space of N architectures the optimum is found after (N+1)/2 queries in
    expectation (7,813 on NAS-Bench-201).
    """

    #: uniform sampling needs no objective at all, so several are no different
    supports_computed_objectives = True


    @property
    def num_random_initial(self) -> int | None:
        return None

    def propose(self) -> Architecture:
        return self.space.sample(self.rng)
