"""The Ray-free core every raynas searcher shares.

:class:`ArchitectureSearch` owns what every search method needs and nothing
method-specific: the space, the optimisation direction, a seeded random
generator, the history of observations, the trials still pending, the
architectures to try first, de-duplication, failures, exhaustion of finite
spaces and a versioned, explicit state for save/restore. A method only
implements :meth:`ArchitectureSearch.propose` (and, if it keeps state of its
own, :meth:`ArchitectureSearch.extra_state` / :meth:`ArchitectureSearch.load_extra_state`).

The lifecycle mirrors Syne Tune's searcher API and maps one to one onto Ray
Tune's ``Searcher`` (see :mod:`raynas.searchers.base`):

``suggest(trial_id)`` → ``report(trial_id, value, fidelity)``* →
``complete(trial_id, value | None, error=...)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from raynas.architecture import Architecture, ArchitectureFormatError
from raynas.pareto import ComputedObjective, Constraint
from raynas.spaces.base import InvalidArchitectureError, SearchSpace

Mode = Literal["max", "min"]
STATE_VERSION = 1
#: Rejection-sampling draws before a finite space's unseen remainder is enumerated.
RANDOM_DRAWS = 1000


class SearchStateError(ValueError):
    """A saved search state that cannot be loaded into this search."""


@dataclass(frozen=True)
class Observation:
    """A finished evaluation: the architecture, its objective value and at which fidelity.

    ``fidelity`` is the ``training_iteration`` of the result the value came
    from (lower than the maximum when a scheduler such as ASHA stopped the
    trial early), or ``None`` when unknown.
    """

    arch: Architecture
    value: float
    trial_id: str
    fidelity: float | None = None


def as_architecture(point: Architecture | Mapping[str, Any] | str) -> Architecture:
    """Accept an architecture, its JSON, or a Tune config holding it."""
    if isinstance(point, Architecture):
        return point
    if isinstance(point, Mapping) and "space" not in point:
        return Architecture.from_config(point)
    return Architecture.from_json(point)


class ArchitectureSearch(ABC):
    """Base class of all raynas search methods (Ray-free).

    Args:
        space: the search space.
        mode: ``"max"`` or ``"min"``; may be set later (e.g. by Tune) through :attr:`mode`.
        seed: seed of the method's random generator; the same seed and the
            same sequence of results give the same suggestions.
        points_to_evaluate: architectures (or their JSON / Tune configs) to
            suggest first, in order, before the method's own proposals.
        allow_repeats: suggest an architecture again even when it was already
            evaluated, failed or is pending. Off by default: on tabular
            benchmarks a repeat costs a query and teaches nothing.
        max_attempts: proposals tried before falling back to a random
            unseen architecture when the method keeps proposing seen ones.
        computed_objectives: objectives known before training
            (:class:`~raynas.pareto.ComputedObjective`: parameters, FLOPs, ...),
            traded against the learned one for a Pareto front; only methods
            with :attr:`supports_computed_objectives` take them.
        constraints: bounds on quantities known before training
            (:class:`~raynas.pareto.Constraint`, e.g. FLOPs ≤ 60 M): an
            architecture outside them is never suggested.
    """

    #: whether the method trades the learned objective against :attr:`computed_objectives`
    supports_computed_objectives: bool = False

    def __init__(
        self,
        space: SearchSpace,
        *,
        mode: Mode | None = None,
        seed: int | None = 0,
        points_to_evaluate: Sequence[Architecture | Mapping[str, Any] | str] | None = None,
        allow_repeats: bool = False,
        max_attempts: int = 100,
        computed_objectives: Sequence[ComputedObjective] = (),
        constraints: Sequence[Constraint] = (),
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        if computed_objectives and not self.supports_computed_objectives:
            raise ValueError(
                f"{type(self).__name__} optimises one objective; computed objectives "
                f"{[c.name for c in computed_objectives]} need random, regevo, gpnas or bonas")
        #: objectives known before training (parameters, FLOPs, ...), traded against the learned one
        #: (:mod:`raynas.pareto`); empty for a single-objective search
        self.computed_objectives: tuple[ComputedObjective, ...] = tuple(computed_objectives)
        self._computed: dict[Architecture, tuple[float, ...]] = {}
        #: bounds on quantities known before training; an architecture outside them is never suggested
        self.constraints: tuple[Constraint, ...] = tuple(constraints)
        self._feasible: dict[Architecture, bool] = {}
        self.space = space
        self._mode: Mode | None = None
        if mode is not None:
            self.mode = mode
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.allow_repeats = allow_repeats
        self.max_attempts = max_attempts
        self.observations: list[Observation] = []
        self.evaluated: dict[Architecture, float] = {}  # latest value of each evaluated architecture
        self.failed: dict[str, Architecture] = {}
        self.pending: dict[str, Architecture] = {}
        self._intermediate: dict[str, tuple[float, float | None]] = {}
        #: every value each architecture reported, by fidelity (intermediate rungs and final results):
        #: what calibrates a lower rung against the full fidelity (:mod:`raynas.bo.fidelity`)
        self.rung_values: dict[Architecture, dict[float, float]] = {}
        self._seen: set[Architecture] = set()
        self._all: list[Architecture] | None = None
        self.points_to_evaluate: list[Architecture] = []
        for point in points_to_evaluate or []:
            try:
                arch = as_architecture(point)
                space.validate(arch)
            except (ArchitectureFormatError, InvalidArchitectureError) as exc:
                raise InvalidArchitectureError(f"points_to_evaluate entry {point!r}: {exc}") from exc
            self.points_to_evaluate.append(arch)

    # ------------------------------------------------------------- settings
    @property
    def mode(self) -> Mode | None:
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {value!r}")
        self._mode = value

    def score(self, value: float) -> float:
        """``value`` oriented so that larger is better whatever the mode."""
        return value if self._mode != "min" else -value

    def computed_matrix(self, archs: Sequence[Architecture]) -> torch.Tensor:
        """The computed objectives of ``archs``, ``len(archs) x k``, oriented so that larger is better."""
        rows = []
        for arch in archs:
            row = self._computed.get(arch)
            if row is None:
                row = self._computed[arch] = tuple(c.oriented(arch) for c in self.computed_objectives)
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float64).reshape(len(archs), len(self.computed_objectives))

    def objective_reference(self) -> torch.Tensor:
        """The hypervolume reference, learned objective first (NaN: inferred), computed ones oriented."""
        return torch.tensor([math.nan] + [c.oriented_reference for c in self.computed_objectives],
                            dtype=torch.float64)

    # ------------------------------------------------------------ lifecycle
    def suggest(self, trial_id: str) -> Architecture | None:
        """The next architecture to evaluate, or ``None`` when nothing unseen is left."""
        if trial_id in self.pending:
            raise ValueError(f"trial {trial_id!r} already has a suggestion")
        arch = self._next_point() or self._propose_unseen()
        if arch is None:
            return None
        self.pending[trial_id] = arch
        self._seen.add(arch)
        return arch

    def report(self, trial_id: str, value: float | None, fidelity: float | None = None) -> None:
        """An intermediate result; kept as a fallback should the trial end without one."""
        if trial_id in self.pending and is_number(value):
            self._intermediate[trial_id] = (float(value), fidelity)  # type: ignore[arg-type]
            self._record_rung(self.pending[trial_id], float(value), fidelity)

    def complete(
        self,
        trial_id: str,
        value: float | None,
        *,
        error: bool = False,
        fidelity: float | None = None,
    ) -> Observation | None:
        """A trial ended. Errors and results without a finite value are recorded, never used as data.

        A final result that lacks the metric (``value`` ``None``) falls back to the trial's last
        intermediate value; a final value that is present but not finite (NaN, inf: the training
        diverged) makes the trial a failure, whatever it reported before.
        """
        # A failed trial may be retried by Tune (FailureConfig, or Tuner.restore(resume_errored=True)).
        arch = self.pending.pop(trial_id, None) or self.failed.pop(trial_id, None)
        fallback = self._intermediate.pop(trial_id, None)
        if arch is None:
            return None  # unknown or already completed: nothing to do, nothing lost
        if not error and value is None and fallback is not None:
            value, fidelity = fallback
        if error or not is_number(value):
            self.failed[trial_id] = arch
            return None
        observation = Observation(arch, float(value), trial_id, fidelity)  # type: ignore[arg-type]
        self.observations.append(observation)
        self._record_rung(arch, observation.value, fidelity)
        self.evaluated[arch] = observation.value
        self.on_observation(observation)
        return observation

    def _record_rung(self, arch: Architecture, value: float, fidelity: float | None) -> None:
        if fidelity is not None and is_number(value) and math.isfinite(value):
            self.rung_values.setdefault(arch, {})[float(fidelity)] = float(value)

    def add_evaluated(self, arch: Architecture, value: float, fidelity: float | None = None) -> None:
        """Record an evaluation made outside this search (e.g. from an earlier experiment)."""
        self.space.validate(arch)
        trial_id = f"external_{len(self.observations)}"
        self.pending[trial_id] = arch
        self._seen.add(arch)
        self.complete(trial_id, value, fidelity=fidelity)

    # --------------------------------------------------------- method hooks
    @abstractmethod
    def propose(self) -> Architecture:
        """The method's own choice of the next architecture (may be a seen one; the base retries)."""

    def on_observation(self, observation: Observation) -> None:
        """Called once per new observation; methods with incremental models update here."""

    def extra_state(self) -> dict[str, Any]:
        """Method-specific state to save (JSON-like values, architectures as JSON)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    # ------------------------------------------------------------- queries
    @property
    def seen(self) -> frozenset[Architecture]:
        """Architectures evaluated, failed or pending."""
        return frozenset(self._seen)

    def is_seen(self, arch: Architecture) -> bool:
        """Whether ``arch`` was evaluated, failed or is pending (never true with ``allow_repeats``), or
        breaks a :attr:`constraints` bound: what a search must not suggest (every candidate generator asks)."""
        if self.constraints and not self.is_feasible(arch):
            return True
        return not self.allow_repeats and arch in self._seen

    def is_feasible(self, arch: Architecture) -> bool:
        """Whether ``arch`` satisfies every constraint (cached per architecture)."""
        feasible = self._feasible.get(arch)
        if feasible is None:
            feasible = self._feasible[arch] = all(c.satisfied(arch) for c in self.constraints)
        return feasible

    def best(self) -> Observation | None:
        """The best observation so far (by the mode), or ``None``."""
        if not self.observations:
            return None
        return max(self.observations, key=lambda o: self.score(o.value))

    @property
    def num_evaluated(self) -> int:
        return len(self.observations)

    @property
    def num_random_initial(self) -> int | None:
        """Suggestions drawn uniformly at random before the method's own rule steers (``None``: all).

        Reports compare the best architecture with these random cells
        (:func:`raynas.analysis.write_report`).
        """
        return 0

    @property
    def num_suggested(self) -> int:
        """Suggestions made so far (evaluated, failed and pending)."""
        return len(self.observations) + len(self.failed) + len(self.pending)

    # -------------------------------------------------------- internals
    def _next_point(self) -> Architecture | None:
        while self.points_to_evaluate:
            arch = self.points_to_evaluate.pop(0)
            if not self.is_seen(arch):
                return arch
        return None

    def _propose_unseen(self) -> Architecture | None:
        for _ in range(self.max_attempts):
            arch = self.propose()
            if not self.is_seen(arch):
                return arch
        return self.random_unseen()

    def random_unseen(self) -> Architecture | None:
        """A uniformly random architecture not seen yet; ``None`` when a finite space is exhausted."""
        for _ in range(RANDOM_DRAWS):
            arch = self.space.sample(self.rng)
            if not self.is_seen(arch):
                return arch
        if self.space.size is None:
            raise RuntimeError(
                f"could not find an unseen architecture in {RANDOM_DRAWS} random draws "
                f"from space {self.space.name!r}"
            )
        if self._all is None:
            self._all = list(self.space.enumerate())
        unseen = [a for a in self._all if not self.is_seen(a)]
        if not unseen:
            return None
        return unseen[int(self.rng.integers(len(unseen)))]

    # ---------------------------------------------------------- save/restore
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this search exactly where it stands."""
        return {
            "version": STATE_VERSION,
            "method": type(self).__name__,
            "space": self.space.name,
            "mode": self._mode,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "observations": [
                (o.arch.to_json(), o.value, o.trial_id, o.fidelity) for o in self.observations
            ],
            "failed": {t: a.to_json() for t, a in self.failed.items()},
            "pending": {t: a.to_json() for t, a in self.pending.items()},
            "intermediate": dict(self._intermediate),
            "rungs": [(a.to_json(), f, v) for a, by_rung in self.rung_values.items() for f, v in by_rung.items()],
            "points_to_evaluate": [a.to_json() for a in self.points_to_evaluate],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the method's model is rebuilt from the observations."""
        if state.get("version") != STATE_VERSION:
            raise SearchStateError(
                f"search state version {state.get('version')!r} is not supported "
                f"(this raynas reads version {STATE_VERSION})"
            )
        if state.get("method") != type(self).__name__ or state.get("space") != self.space.name:
            raise SearchStateError(
                f"saved state is for {state.get('method')} on space {state.get('space')!r}, "
                f"not {type(self).__name__} on {self.space.name!r}"
            )
        if state["mode"] is not None:
            self.mode = state["mode"]
        self.seed = state["seed"]
        self.rng.bit_generator.state = state["rng"]
        self.observations = [
            Observation(Architecture.from_json(a), v, t, f) for a, v, t, f in state["observations"]
        ]
        self.evaluated = {o.arch: o.value for o in self.observations}
        self.failed = {t: Architecture.from_json(a) for t, a in state["failed"].items()}
        self.pending = {t: Architecture.from_json(a) for t, a in state["pending"].items()}
        self._intermediate = dict(state.get("intermediate", {}))
        self.rung_values = {}
        for o in self.observations:  # states saved before rung values were kept: the final results
            self._record_rung(o.arch, o.value, o.fidelity)
        for a, f, v in state.get("rungs", []):
            self.rung_values.setdefault(Architecture.from_json(a), {})[float(f)] = float(v)
        self.points_to_evaluate = [Architecture.from_json(a) for a in state["points_to_evaluate"]]
        self._seen = set(_all_archs(self.observations, self.failed, self.pending))
        self.load_extra_state(state.get("extra", {}))


def _all_archs(
    observations: Iterable[Observation],
    failed: Mapping[str, Architecture],
    pending: Mapping[str, Architecture],
) -> Iterable[Architecture]:
    yield from (o.arch for o in observations)
    yield from failed.values()
    yield from pending.values()


def is_number(value: Any) -> bool:
    """True for a finite real number (NaN, inf, None and strings are not)."""
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
