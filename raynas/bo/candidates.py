"""Candidate generation: one protocol, configured by each method.

A :class:`CandidateGenerator` proposes the architectures an acquisition
function is maximised over, given the search (its space, RNG, what is seen)
and the ranked observations. :meth:`CandidateGenerator.maximize` scores them
with the acquisition and returns the best; generators that search
iteratively (:class:`EvolutionaryOptimizer`) override it.

Implementations, as the papers use them:

* :class:`EvolutionaryPool`: BONAS's evolutionary sampler (aging evolution,
  tournament selection, mutations from the space) filling a pool.
* :class:`Exhaustive`: every unseen architecture of a small finite space
  (GP-NAS on NAS-Bench-201: 15,625 cells scored at once).
* :class:`LocalPool`: one-edit neighbours of the best observations, random
  multi-edit mutations of them and random architectures (GP-NAS on large spaces).
* :class:`EvolutionaryOptimizer`: NASBOT's evolutionary acquisition optimiser
  over the space's modifiers.
* :class:`MutationPool`: random multi-edit mutations of the best observations
  plus random architectures (ESNAC's compressions around the best students).

Example:
    >>> pool = EvolutionaryPool(size=100).generate(search, ranked)  # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from raynas.architecture import Architecture
from raynas.spaces.base import InvalidArchitectureError, SearchSpace

if TYPE_CHECKING:
    from raynas.search.base import ArchitectureSearch

#: ``(architecture, score)`` pairs, larger score better.
Ranked = Sequence[tuple[Architecture, float]]
#: An acquisition: architectures -> one value each (larger is better).
Score = Callable[[list[Architecture]], np.ndarray]


class CandidateGenerator(ABC):
    """Proposes candidates for the acquisition (see the module docstring)."""

    @abstractmethod
    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        """Unseen candidate architectures; ``population`` is the method's ``(arch, score)`` data."""

    def maximize(self, search: "ArchitectureSearch", population: Ranked, score: Score) -> Architecture | None:
        """The candidate with the largest ``score`` (``None`` when there is none)."""
        pool = self.generate(search, population)
        if not pool:
            return None
        return pool[int(np.argmax(score(pool)))]


def evolutionary_pool(
    space: SearchSpace,
    population: Ranked,
    rng: np.random.Generator,
    size: int,
    *,
    tournament_size: int,
    exclude: Callable[[Architecture], bool],
    multi_edit_probability: float = 0.5,
    max_edits: int = 3,
    random_fraction: float = 0.0,
    max_tries: int | None = None,
) -> list[Architecture]:
    """BONAS' evolutionary sampler (Real et al.'s aging evolution, BONAS §3.3): a pool of candidates.

    Each candidate mutates the winner of a tournament of ``tournament_size``
    members of ``population`` (``(arch, score)``, larger is better) with
    :meth:`SearchSpace.mutate` (one edge or one op); with probability
    ``multi_edit_probability`` the child is mutated again, up to ``max_edits``
    edits, so a pool larger than the one-edit neighbourhood of the population
    can be filled (deviation from the paper's one edit: NB201 has 24
    neighbours per cell, too few for 1,000 candidates). A fraction
    ``random_fraction`` of the pool is drawn uniformly from the space instead.
    Candidates are distinct and ``exclude(arch)`` is false for all of them.

    Returns:
        Up to ``size`` architectures (fewer when ``max_tries`` draws, default
        ``4 * size``, do not find that many).
    """
    if not population:
        raise ValueError("the evolutionary sampler needs a non-empty population")
    pool: dict[Architecture, None] = {}
    n_random = int(round(random_fraction * size))
    limit = 4 * size if max_tries is None else max_tries
    members = [arch for arch, _ in population]
    fitness = np.asarray([score for _, score in population], dtype=float)
    k = min(tournament_size, len(members))
    tries = 0
    while len(pool) < size - n_random and tries < limit:
        # a chunk of tournaments at once: k distinct random members per row, best wins
        chunk = min(256, limit - tries)
        entrants = rng.random((chunk, len(members))).argsort(axis=1)[:, :k]
        winners = entrants[np.arange(chunk), fitness[entrants].argmax(axis=1)]
        for w in winners:
            if len(pool) >= size - n_random:
                break
            tries += 1
            child = space.mutate(members[int(w)], rng)
            edits = 1
            # a further edit with some probability, and always when the child is taken
            while edits < max_edits and (
                rng.random() < multi_edit_probability or child in pool or exclude(child)
            ):
                child = space.mutate(child, rng)
                edits += 1
            if child not in pool and not exclude(child):
                pool[child] = None
    tries = 0
    while len(pool) < size and tries < limit:
        tries += 1
        arch = space.sample(rng)
        if arch not in pool and not exclude(arch):
            pool[arch] = None
    return list(pool)


@dataclass
class EvolutionaryPool(CandidateGenerator):
    """:func:`evolutionary_pool` as a generator; ``exclude`` defaults to the search's seen set."""

    size: int = 1000
    tournament_size: int = 5
    multi_edit_probability: float = 0.5
    max_edits: int = 3
    random_fraction: float = 0.0
    exclude: Callable[[Architecture], bool] | None = None

    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        return evolutionary_pool(
            search.space, population, search.rng, self.size, tournament_size=self.tournament_size,
            exclude=self.exclude or search.is_seen, multi_edit_probability=self.multi_edit_probability,
            max_edits=self.max_edits, random_fraction=self.random_fraction,
        )


class Exhaustive(CandidateGenerator):
    """Every unseen architecture of a finite space, in the space's enumeration order (cached).

    :attr:`index` maps an architecture to its position in :attr:`all`, so a
    method can cache per-architecture quantities (encodings, kernel columns)
    for the whole space.
    """

    def __init__(self, space: SearchSpace) -> None:
        if space.size is None:
            raise ValueError(f"space {space.name!r} is not finite: exhaustive candidates need a finite space")
        self.space = space
        self.all: list[Architecture] = []
        self.index: dict[Architecture, int] = {}

    def enumerate(self) -> list[Architecture]:
        if not self.all:
            self.all = list(self.space.enumerate())
            self.index = {a: i for i, a in enumerate(self.all)}
        return self.all

    def unseen_rows(self, search: "ArchitectureSearch") -> np.ndarray:
        """Positions in :attr:`all` of the architectures not seen by ``search``."""
        self.enumerate()
        keep = np.ones(len(self.all), dtype=bool)
        if not search.allow_repeats:
            seen = [self.index[a] for a in search.seen if a in self.index]
            keep[seen] = False
        return np.flatnonzero(keep)

    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        return [self.all[i] for i in self.unseen_rows(search)]


@dataclass
class LocalPool(CandidateGenerator):
    """Neighbours of the ``top`` best observations, ``mutations`` two-edit mutations of them, ``random`` random ones."""

    top: int = 10
    mutations: int = 500
    random: int = 1000

    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        space, rng = search.space, search.rng
        pool: dict[Architecture, None] = {}
        ranked = sorted(population, key=lambda m: m[1], reverse=True)
        top = [arch for arch, _ in ranked[: self.top]]
        for arch in top:
            for neighbour in space.neighbours(arch):
                pool[neighbour] = None
        for _ in range(self.mutations if top else 0):
            parent = top[int(rng.integers(len(top)))]
            pool[space.mutate(space.mutate(parent, rng), rng)] = None
        for _ in range(self.random):
            pool[space.sample(rng)] = None
        return [a for a in pool if not search.is_seen(a)]


@dataclass
class EvolutionaryOptimizer(CandidateGenerator):
    """NASBOT's acquisition optimiser: an evolutionary algorithm over the space's modifiers.

    The first parents are the ``parents`` best observations plus the ``elite``
    best (by acquisition) of ``random`` random architectures; each of
    ``generations`` generations scores the unseen one-edit neighbours of the
    parents (:meth:`SearchSpace.neighbours`, NASBOT's modifiers on the macro
    spaces; at most ``children`` per parent, drawn at random), and the ``elite``
    best scored so far become the next parents. The best candidate ever
    scored wins. Deviation from the paper's sampling-based EA: a compact
    hill-climbing population, a few hundred scores per suggestion, so that
    ``suggest`` stays fast.
    """

    generations: int = 3
    parents: int = 10
    elite: int = 3
    children: int = 30
    random: int = 10

    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        raise NotImplementedError("EvolutionaryOptimizer scores as it goes: use maximize()")

    def _children(self, search: "ArchitectureSearch", parent: Architecture) -> list[Architecture]:
        try:
            options = search.space.neighbours(parent)
        except InvalidArchitectureError:
            return []
        if len(options) > self.children:
            picks = search.rng.choice(len(options), size=self.children, replace=False)
            options = [options[i] for i in sorted(picks)]
        return options

    def maximize(self, search: "ArchitectureSearch", population: Ranked, score: Score) -> Architecture | None:
        ranked = sorted(population, key=lambda m: -m[1])
        parents = list(dict.fromkeys(arch for arch, _ in ranked))[: self.parents]
        scored: dict[Architecture, float] = {}

        def add(archs: list[Architecture]) -> None:
            if archs:
                scored.update(zip(archs, score(archs)))

        randoms = []
        for _ in range(self.random):
            arch = search.space.sample(search.rng)
            if not search.is_seen(arch) and arch not in scored:
                randoms.append(arch)
        randoms = list(dict.fromkeys(randoms))
        add(randoms)
        parents += sorted(randoms, key=lambda a: -scored[a])[: self.elite]
        for _ in range(self.generations):
            children: dict[Architecture, None] = {}
            for parent in parents:
                for child in self._children(search, parent):
                    if child not in scored and not search.is_seen(child):
                        children.setdefault(child)
            add(list(children))
            if not scored:
                break
            parents = sorted(scored, key=lambda a: -scored[a])[: self.elite]
        if not scored:
            return None
        return max(scored, key=lambda a: scored[a])


@dataclass
class MutationPool(CandidateGenerator):
    """Random mutations around the ``parents`` best observations, plus fresh random architectures.

    Each candidate is, with probability ``random_fraction``, a uniform sample
    of the space; otherwise a random one of the ``parents`` best observations
    (or the space's reference architecture, e.g. a teacher, when there is no
    observation) mutated 1 to ``max_edits`` times. Up to ``size`` distinct
    unseen candidates from ``4 * size`` draws. ESNAC's candidates (§3.3:
    compression operations around the best students); a mutation the space
    refuses (:class:`~raynas.spaces.base.InvalidArchitectureError`) is skipped.
    """

    size: int = 64
    parents: int = 4
    max_edits: int = 3
    random_fraction: float = 0.2
    reference: Architecture | None = None

    def generate(self, search: "ArchitectureSearch", population: Ranked) -> list[Architecture]:
        space, rng = search.space, search.rng
        ranked = sorted(population, key=lambda m: -m[1])
        parents = [arch for arch, _ in ranked[: self.parents]] or ([self.reference] if self.reference else [])
        out: dict[Architecture, None] = {}
        for _ in range(4 * self.size):
            if len(out) >= self.size:
                break
            if not parents or rng.random() < self.random_fraction:
                arch = space.sample(rng)
            else:
                arch = parents[int(rng.integers(len(parents)))]
                try:
                    for _ in range(int(rng.integers(1, self.max_edits + 1))):
                        arch = space.mutate(arch, rng)
                except InvalidArchitectureError:
                    continue
            if not search.is_seen(arch):
                out.setdefault(arch)
        return list(out)
