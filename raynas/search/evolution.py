"""Regularized (aging) evolution, Real et al., AAAI 2019.

Defaults follow the NAS-Bench-201 paper's baseline: population 10,
tournament sample 3, one-edit mutation (one op on one edge for NB201).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping

import torch

from raynas.architecture import Architecture
from raynas.pareto import crowding_distance, nondominated_ranks
from raynas.search.base import ArchitectureSearch, Observation
from raynas.spaces.base import SearchSpace


class RegularizedEvolution(ArchitectureSearch):
    """Aging evolution with tournament selection, asynchronous as in the paper.

    The population holds the ``population_size`` most recent members; a new
    member pushes out the oldest. Until that many architectures have been
    started they are drawn at random (the initial population, counted in the
    budget). Afterwards each cycle samples ``sample_size`` members uniformly
    without replacement and mutates the best of them once
    (:meth:`SearchSpace.mutate`).

    Repeats: the paper's evolution would simply train a child again when a
    mutation recreates an architecture already evaluated. Here the child joins
    the population with its known value at no cost, and the cycle goes on
    until it yields an unseen architecture. This keeps the aging dynamics of
    the paper (good architectures survive by being re-discovered) while
    spending queries only on new architectures; replacing such repeats by
    random architectures instead would flush the population and degrade the
    method to random search late in a run. With several workers, suggestions
    use whatever has completed, as in the paper's distributed setting.

    Several objectives (``computed_objectives``): the tournament is won by the
    member of the best non-dominated front of the population, ties broken by
    the larger crowding distance (NSGA-II's crowded comparison, Deb et al.
    2002, §III-B; MO-REA in the multi-objective NAS literature), so the
    population spreads along the Pareto front of accuracy and cost.

    Args:
        population_size: P, members of the population.
        sample_size: S, tournament size.
        max_cycles: evolution cycles tried per suggestion before falling back
            to a random unseen architecture.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        population_size: int = 10,
        sample_size: int = 3,
        max_cycles: int = 1000,
        **kwargs: Any,
    ) -> None:
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"need population_size >= 1 and 1 <= sample_size <= population_size, "
                f"got population_size={population_size}, sample_size={sample_size}"
            )
        super().__init__(space, max_attempts=1, **kwargs)
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_cycles = max_cycles
        self.population: deque[tuple[Architecture, float]] = deque(maxlen=population_size)

    supports_computed_objectives = True

    def on_observation(self, observation: Observation) -> None:
        self.population.append((observation.arch, observation.value))

    def _fitness(self, members: list[tuple[Architecture, float]]) -> list[tuple[float, ...]]:
        """Larger is better: the oriented value, or (−front, crowding) with computed objectives."""
        if not self.computed_objectives:
            return [(self.score(v),) for _, v in members]
        Y = torch.cat([torch.tensor([[self.score(v)] for _, v in members], dtype=torch.float64),
                       self.computed_matrix([a for a, _ in members])], dim=1)
        ranks = nondominated_ranks(Y)
        crowding = crowding_distance(Y, ranks)
        return [(-float(r), float(c)) for r, c in zip(ranks, crowding)]

    @property
    def num_random_initial(self) -> int | None:
        return self.population_size

    def propose(self) -> Architecture:
        if self.num_suggested < self.population_size or not self.population:
            return self.space.sample(self.rng)
        child = None
        for _ in range(self.max_cycles):
            members = list(self.population)
            fitness = self._fitness(members)
            size = min(self.sample_size, len(members))
            picks = self.rng.choice(len(members), size=size, replace=False)
            parent = members[max(picks, key=lambda i: fitness[i])]
            child = self.space.mutate(parent[0], self.rng)
            if not self.is_seen(child):
                return child
            if child in self.evaluated:  # re-discovered: it ages into the population for free
                self.population.append((child, self.evaluated[child]))
        return child if child is not None else self.space.sample(self.rng)

    def extra_state(self) -> dict[str, Any]:
        return {"population": [(a.to_json(), v) for a, v in self.population]}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.population = deque(
            ((Architecture.from_json(a), v) for a, v in state.get("population", [])),
            maxlen=self.population_size,
        )
