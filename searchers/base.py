"""The thin Ray Tune layer over :class:`raynas.search.ArchitectureSearch`.

:class:`RaynasSearcher` translates Tune's ``Searcher`` protocol (see
``shared/RAY_TUNE_NOTES.md``) into the Ray-free search lifecycle, and adds
what only Tune needs: metric/mode from ``TuneConfig``, enforcing
``max_concurrent_trials`` itself, ``Searcher.FINISHED`` on an exhausted
space, and an explicit, versioned state written atomically to one file so
that ``Tuner.restore`` continues the same search.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer
from ray.tune.search.variant_generator import parse_spec_vars

from raynas.architecture import Architecture
from raynas.pareto import ComputedObjective
from raynas.search.base import ArchitectureSearch, SearchStateError
from raynas.spaces.base import SearchSpace

SAVE_FORMAT = "raynas-searcher/1"
#: Config key holding the 0-based index of a suggestion within its search.
SUGGESTION_KEY = "suggestion"
#: Tune domains a raynas searcher samples beside the architecture.
SUPPORTED_DOMAINS = (Float, Integer, Categorical)


#: Copies of the last good and the one before searcher state, beside Tune's ``searcher-state-*.pkl``
#: (both end in ``.pkl``, so Tune syncs them with its own state; neither matches ``searcher-state-*.pkl``).
BACKUP_FILE = "raynas-searcher-backup.pkl"
BACKUP_PREV_FILE = "raynas-searcher-backup-prev.pkl"


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".raynas-searcher-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state_bytes(data: bytes) -> dict[str, Any]:
    """A saved searcher state from its bytes; :class:`SearchStateError` when damaged or not raynas'."""
    try:
        state = pickle.loads(data)
    except Exception as error:  # truncated or corrupt pickles raise many kinds of errors
        raise SearchStateError(f"unreadable searcher state ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
        raise SearchStateError("not a raynas searcher state")
    return state


def read_state_file(path: str) -> dict[str, Any]:
    """:func:`load_state_bytes` of a file (OSError when it cannot be read)."""
    with open(path, "rb") as handle:
        return load_state_bytes(handle.read())


class UnsupportedSearchSpaceError(ValueError):
    """A ``param_space`` entry that a raynas searcher cannot search (named in the message)."""


def tune_domains(config: Mapping[str, Any]) -> list[tuple[tuple[str, ...], Domain]]:
    """The Tune domains of ``param_space`` as ``(path, domain)``, checked before any trial starts.

    Continuous, integer and categorical domains (``tune.uniform``,
    ``tune.loguniform``, ``tune.randint``, ``tune.choice``, ...) are supported;
    grid searches, ``tune.sample_from`` functions and the keys raynas itself
    sets (``arch``, ``suggestion``) raise :class:`UnsupportedSearchSpaceError`
    naming the key.
    """
    _, domains, grids = parse_spec_vars(dict(config))
    for path, _ in grids:
        raise UnsupportedSearchSpaceError(
            f"param_space[{'/'.join(path)!r}] is a tune.grid_search: raynas searchers sample each "
            "trial's settings, they do not enumerate grids; use tune.choice([...]) instead"
        )
    for path, domain in domains:
        if path[0] in ("arch", SUGGESTION_KEY):
            raise UnsupportedSearchSpaceError(
                f"param_space[{path[0]!r}] is set by the raynas searcher; remove it from param_space")
        if not isinstance(domain, SUPPORTED_DOMAINS):
            raise UnsupportedSearchSpaceError(
                f"param_space[{'/'.join(path)!r}] is a {type(domain).__name__} domain, which raynas searchers "
                "cannot sample; use tune.uniform/loguniform/randint/choice (or a constant)"
            )
    return [(tuple(path), domain) for path, domain in domains]


def learned_objective(metrics: Sequence[str], modes: Sequence[str] | str | None,
                      computed: Sequence[ComputedObjective]) -> tuple[str, str | None, list[tuple[str, str]]]:
    """Split ``metric=[...]``, ``mode=[...]`` (as Ray Tune's ``OptunaSearch`` takes them) into the one
    learned metric and mode, checking that every other metric is a computed objective with that mode."""
    metrics = list(metrics)
    if isinstance(modes, str) or modes is None or len(modes) != len(metrics):
        raise ValueError(f"metric={metrics} needs a mode for each, as a list of the same length; got mode={modes!r}")
    by_name = {c.name: c for c in computed}
    learned = [(m, d) for m, d in zip(metrics, modes) if m not in by_name]
    if len(learned) != 1:
        raise ValueError(
            f"metric={metrics}: exactly one metric is learned (reported by trials); the others must be "
            f"computed_objectives (known before training), which are {sorted(by_name)}")
    for name, mode in zip(metrics, modes):
        if name in by_name and by_name[name].mode != mode:
            raise ValueError(f"metric {name!r} has mode {mode!r} here but {by_name[name].mode!r} as a computed objective")
    missing = sorted(set(by_name) - set(metrics))
    if missing:
        raise ValueError(f"computed objectives {missing} are not among metric={metrics}")
    (metric, mode), = learned
    return metric, mode, [(metric, mode)] + [(m, d) for m, d in zip(metrics, modes) if m in by_name]


class RaynasSearcher(Searcher):
    """A Ray Tune searcher over architectures, driven by an :class:`ArchitectureSearch`.

    Suggested configs are ``{"arch": <architecture JSON>, "suggestion": k}``
    (k counts this search's suggestions from 0, so results can be put back in
    the order the searcher chose them); Tune merges the constant entries of
    ``param_space`` (e.g. training settings) into them. Tune *domains* in
    ``param_space`` (``"lr": tune.loguniform(1e-3, 1e-1)``) are searched
    jointly with the architecture: each suggestion samples them from a
    generator seeded by the search's seed (saved with the state), so every
    trial receives plain values within the domain. (The surrogates model the
    architecture only; these hyperparameters are sampled, not modelled.)
    Unsupported entries (grid searches, ``sample_from``) are rejected when
    the Tuner starts, naming the key.

    Each method's searcher is a subclass that names its Ray-free class in
    :attr:`search_class`; its options are that class's keyword arguments, passed
    through unchanged, so the settings are declared (and documented) once::

        BONASSearcher(space, metric="val_acc", mode="max", seed=0, pool_size=500)

    Args:
        space_or_search: the search space (the subclass builds its
            :attr:`search_class` on it), or a ready :class:`ArchitectureSearch`.
        metric: result key to optimise; may instead come from ``TuneConfig``
            (Tune passes it on only when ``param_space`` is non-empty). Several
            objectives: a list, as for Ray Tune's ``OptunaSearch``
            (``metric=["val_acc", "flops"], mode=["max", "min"]``), in which
            every metric but the learned one is a ``computed_objectives``
            entry (:class:`raynas.pareto.ComputedObjective`, known before
            training; see :mod:`raynas.pareto`).
        mode: ``"max"`` or ``"min"``, likewise (a list with a list of metrics).
        **options: keyword arguments of :attr:`search_class` (``seed``,
            ``points_to_evaluate``, ``allow_repeats`` and the method's own).
    """

    #: The Ray-free search class that subclasses run.
    search_class: ClassVar[type[ArchitectureSearch] | None] = None

    def __init__(
        self,
        space_or_search: SearchSpace | ArchitectureSearch,
        metric: str | None = None,
        mode: str | None = None,
        **options: Any,
    ) -> None:
        computed = (space_or_search.computed_objectives if isinstance(space_or_search, ArchitectureSearch)
                    else tuple(options.get("computed_objectives", ())))
        #: every objective as ``(metric, mode)``: the learned one first, then the computed ones
        self.objectives: list[tuple[str, str]] = []
        if isinstance(metric, (list, tuple)):
            metric, mode, self.objectives = learned_objective(metric, mode, computed)
        super().__init__(metric=metric, mode=mode)
        if isinstance(space_or_search, ArchitectureSearch):
            if options:
                raise TypeError(
                    f"{type(self).__name__}: options {sorted(options)} apply only when building "
                    "the search from a space, not to a ready ArchitectureSearch"
                )
            search = space_or_search
        elif isinstance(space_or_search, SearchSpace):
            if self.search_class is None:
                raise TypeError(
                    f"{type(self).__name__} has no search method: pass an ArchitectureSearch, "
                    "or use a searcher class such as RandomSearcher"
                )
            try:
                search = self.search_class(space_or_search, mode=mode, **options)
            except TypeError as error:
                if "unexpected keyword argument" not in str(error):
                    raise
                raise TypeError(  # an unknown option: say which searcher and where its options are
                    f"{type(self).__name__}: {error}; its options are the keyword arguments of "
                    f"{self.search_class.__module__}.{self.search_class.__name__}"
                ) from error
        else:
            raise TypeError(
                f"{type(self).__name__} needs a SearchSpace or an ArchitectureSearch, "
                f"got {type(space_or_search).__name__}"
            )
        # Not named ``searcher``: Tune treats objects with that attribute as wrappers.
        self.search = search
        if mode is not None:
            search.mode = mode  # type: ignore[assignment]
        self.max_concurrent: int = 0
        self.domains: list[tuple[tuple[str, ...], Domain]] = []
        self._domain_rng = np.random.default_rng([0 if search.seed is None else int(search.seed), 4099])

    @property
    def space(self):
        return self.search.space

    def predict(self, archs: Any) -> Any:
        """The method's surrogate prediction ``(mean, variance)`` for ``archs``.

        Available for model-based methods (``search_class`` with a ``predict``,
        e.g. BONAS and GP-NAS); see that method for the units.
        """
        predict = getattr(self.search, "predict", None)
        if predict is None:
            raise AttributeError(f"{type(self).__name__} ({type(self.search).__name__}) has no surrogate model to predict with")
        return predict(archs)

    # ------------------------------------------------------------- settings
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take metric and mode from ``TuneConfig`` unless given to the constructor, and the Tune
        domains of ``param_space`` (see the class docstring; unsupported ones raise
        :class:`UnsupportedSearchSpaceError` naming the key)."""
        self.domains = tune_domains(config or {})
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
            self.search.mode = mode  # type: ignore[assignment]
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Enforce ``max_concurrent_trials`` here, so Tune needs no ``ConcurrencyLimiter``."""
        self.max_concurrent = int(max_concurrent)
        return True

    # ------------------------------------------------------------ lifecycle
    def suggest(self, trial_id: str) -> dict | None:
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"{type(self).__name__} has no metric/mode: pass metric= and mode= to the "
                "searcher, or set them in TuneConfig together with a non-empty param_space "
                "(Tune forwards them to searchers only then)."
            )
        if self.max_concurrent and len(self.search.pending) >= self.max_concurrent:
            return None  # Tune asks again when a running trial finishes
        index = self.search.num_suggested
        arch = self.search.suggest(trial_id)
        if arch is None:
            return Searcher.FINISHED
        config: dict[str, Any] = {**arch.to_config(), SUGGESTION_KEY: index}
        for path, domain in self.domains:
            node = config
            for key in path[:-1]:
                node = node.setdefault(key, {})
            value = domain.sample(random_state=self._domain_rng)
            node[path[-1]] = value.item() if isinstance(value, np.generic) else value
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.search.report(trial_id, result.get(self._metric), result.get("training_iteration"))

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        value = None if result is None else result.get(self._metric)
        fidelity = None if result is None else result.get("training_iteration")
        self.search.complete(trial_id, value, error=error, fidelity=fidelity)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list | None = None,
    ) -> None:
        """Feed an evaluation made elsewhere (Tune's optional hook).

        The fidelity is the number of ``intermediate_values`` when Tune gives
        them (one per reported result), else unknown; :meth:`add_evaluated_trials`
        keeps each trial's own ``training_iteration``.
        """
        if not error:
            fidelity = float(len(intermediate_values)) if intermediate_values else None
            self.search.add_evaluated(Architecture.from_config(parameters), value, fidelity=fidelity)

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str) -> None:
        """Warm start from earlier trials (a ``Trial``, a list of them, or an ``ExperimentAnalysis``),
        keeping the fidelity each value was measured at (its result's ``training_iteration``).

        Tune's own implementation drops the fidelity, so a trial ASHA stopped at
        12 epochs would pass for a full evaluation. Errored trials and trials
        without the metric are skipped.
        """
        from ray.tune.experiment import Trial

        if isinstance(trials_or_analysis, Trial):
            trials = [trials_or_analysis]
        elif isinstance(trials_or_analysis, (list, tuple)):
            trials = list(trials_or_analysis)
        else:
            trials = list(trials_or_analysis.trials)
        for trial in trials:
            result = trial.last_result or {}
            if trial.status == Trial.ERROR or metric not in result or "arch" not in trial.config:
                continue
            self.search.add_evaluated(Architecture.from_config(trial.config), result[metric],
                                      fidelity=result.get("training_iteration"))

    # ---------------------------------------------------------- save/restore
    def get_state(self) -> dict[str, Any]:
        return {
            "format": SAVE_FORMAT,
            "metric": self._metric,
            "mode": self._mode,
            "objectives": self.objectives,
            "max_concurrent": self.max_concurrent,
            "search": self.search.state_dict(),
            "domains": self.domains,
            "domain_rng": self._domain_rng.bit_generator.state,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != SAVE_FORMAT:
            raise SearchStateError(f"not a raynas searcher state (format {state.get('format')!r})")
        self._metric = state["metric"]
        self._mode = state["mode"]
        self.objectives = [tuple(o) for o in state.get("objectives", [])]
        self.max_concurrent = state["max_concurrent"]
        self.search.load_state_dict(state["search"])
        self.domains = list(state.get("domains", []))
        if "domain_rng" in state:
            self._domain_rng.bit_generator.state = state["domain_rng"]

    def save(self, checkpoint_path: str) -> None:
        """Write the state to exactly one file, atomically (temp file + rename).

        (Backups of the last good state, :data:`BACKUP_FILE` and :data:`BACKUP_PREV_FILE`, are
        copied by the experiment layer, not here: Tune saves to a temporary name that it renames.)
        """
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        os.makedirs(directory, exist_ok=True)
        _atomic_write(checkpoint_path, pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        """Load a :meth:`save`; if that file is unreadable, the newest readable backup beside it."""
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        errors = []
        for path in (checkpoint_path, os.path.join(directory, BACKUP_FILE),
                     os.path.join(directory, BACKUP_PREV_FILE)):
            try:
                state = read_state_file(path)
            except (OSError, SearchStateError) as error:
                errors.append(f"{path}: {error}")
                continue
            if path != checkpoint_path:
                import logging

                logging.getLogger(__name__).warning(
                    "searcher state %s is unreadable (%s); restored the backup %s", checkpoint_path, errors[0], path)
            self.set_state(state)
            return
        raise SearchStateError("no readable searcher state: " + "; ".join(errors))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(space={self.space.name!r}, metric={self._metric!r}, "
            f"mode={self._mode!r}, evaluated={self.search.num_evaluated}, "
            f"pending={len(self.search.pending)})"
        )
