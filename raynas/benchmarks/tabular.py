"""Tabular NAS benchmarks: a table whose rows are architectures and whose columns are metrics.

Metric columns are always chosen *by name* (objective, test metric, lower
fidelities); nothing here knows a benchmark's column names or its optimum.
Architectures are read either from one string column in the space's own
format (NAS-Bench-201's ``arch_str``), from one column per edge / position,
or from JSON.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from raynas.architecture import Architecture
from raynas.spaces.base import InvalidArchitectureError, SearchSpace
from raynas.spaces.nb201 import NB201_EDGE_COLUMNS, NB201Space
from raynas.spaces.positional import PositionalSpace

Mode = Literal["max", "min"]


class BenchmarkError(ValueError):
    """A benchmark table or query that cannot be used; the message names the problem."""


class UnknownArchitectureError(BenchmarkError, KeyError):
    """The architecture asked for is not a row of the table."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Fidelity:
    """One rung of a benchmark's fidelity schedule: a metric column and its training epochs."""

    column: str
    epochs: float


def parse_fidelities(spec: str | Sequence[str] | None) -> list[Fidelity]:
    """Parse ``"col_a:12,col_b:200"`` (epochs optional) into :class:`Fidelity` rungs."""
    if spec is None:
        return []
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    rungs = []
    for rank, item in enumerate(items, start=1):
        column, sep, epochs = item.strip().rpartition(":")
        if not sep:
            column, epochs = item.strip(), str(rank)
        if not column.strip():
            raise BenchmarkError(f"fidelity {item!r}: no column name (the form is COLUMN:EPOCHS)")
        try:
            rungs.append(Fidelity(column, float(epochs)))
        except ValueError:
            raise BenchmarkError(f"fidelity {item!r}: epochs {epochs!r} is not a number") from None
    return rungs


class TabularBenchmark:
    """Metrics of every architecture of a space, looked up in O(1).

    Args:
        frame: one row per architecture.
        space: the space the rows belong to.
        architectures: the architecture of each row, in row order.
        objective: column the search optimises.
        mode: ``"max"`` or ``"min"``.
        test_metric: optional column reported as the final quality of a search.
        fidelities: optional lower-fidelity rungs (cheapest first); the
            objective is always the last rung.
        source: where the table came from, for error messages.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        space: SearchSpace,
        architectures: Sequence[Architecture],
        objective: str,
        mode: Mode = "max",
        test_metric: str | None = None,
        fidelities: Sequence[Fidelity] = (),
        objective_epochs: float | None = None,
        source: str = "<table>",
    ) -> None:
        if mode not in ("max", "min"):
            raise BenchmarkError(f"mode must be 'max' or 'min', got {mode!r}")
        self.source = source
        self.space = space
        self.objective = objective
        self.mode: Mode = mode
        self.test_metric = test_metric
        if len(frame) == 0:
            raise BenchmarkError(f"{source}: the table has a header ({list(frame.columns)}) but no rows")
        if not isinstance(objective, str) or not objective:
            raise BenchmarkError(f"{source}: the objective must be a column name, got {objective!r}")
        columns = [objective] + ([test_metric] if test_metric else []) + [f.column for f in fidelities]
        for fidelity in fidelities:
            if fidelity.column == objective:
                raise BenchmarkError(f"{source}: fidelity column {fidelity.column!r} is the objective itself; "
                                     "list only the lower-fidelity columns")
            if not math.isfinite(fidelity.epochs) or fidelity.epochs <= 0:
                raise BenchmarkError(f"{source}: fidelity {fidelity.column!r}: epochs must be a positive number, "
                                     f"got {fidelity.epochs!r}")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise BenchmarkError(
                f"{source}: column(s) {missing} not found; the table has {list(frame.columns)}"
            )
        for column in dict.fromkeys(columns):
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
            if len(bad):
                rows = ", ".join(str(r + 2) for r in bad[:5])  # +2: header line and 1-based
                raise BenchmarkError(
                    f"{source}: column {column!r} has {len(bad)} non-numeric or missing value(s), "
                    f"first at line(s) {rows}"
                )
        self.frame = frame.reset_index(drop=True)
        self.architectures = list(architectures)
        self._row: dict[Architecture, int] = {}
        for row, arch in enumerate(self.architectures):
            if arch in self._row:
                raise BenchmarkError(
                    f"{source}: architecture {space.describe(arch)} appears twice "
                    f"(lines {self._row[arch] + 2} and {row + 2})"
                )
            self._row[arch] = row
        self._values = {c: self.frame[c].to_numpy(dtype=float) for c in dict.fromkeys(columns)}
        top_epochs = objective_epochs
        if top_epochs is None:
            top_epochs = max((f.epochs for f in fidelities), default=0.0) + 1.0 if fidelities else 1.0
        self.fidelities: list[Fidelity] = sorted(fidelities, key=lambda f: f.epochs) + [
            Fidelity(objective, float(top_epochs))
        ]
        if len({f.epochs for f in self.fidelities}) != len(self.fidelities):
            raise BenchmarkError(f"{source}: fidelity epochs must be distinct and below the objective's")

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        objective: str,
        *,
        space: str | SearchSpace = "nb201",
        mode: Mode = "max",
        test_metric: str | None = None,
        fidelities: str | Sequence[str] | Sequence[Fidelity] | None = None,
        objective_epochs: float | None = None,
        arch_column: str | None = None,
        position_columns: Sequence[str] | None = None,
    ) -> "TabularBenchmark":
        """Load a CSV benchmark.

        Args:
            path: the CSV file.
            objective: name of the objective column.
            space: ``"nb201"``, ``"positional"`` or a :class:`SearchSpace` instance.
            arch_column: column holding the architecture as text (the space's
                :meth:`~SearchSpace.describe` format or JSON). NB201 defaults to
                ``arch_str`` and falls back to the six ``op_e..`` columns.
            position_columns: for positional spaces, one column per position;
                the choices are read from the table.
            fidelities: lower-fidelity columns as ``"col:epochs,..."`` or a list.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise BenchmarkError(f"benchmark table {path!r} does not exist")
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise BenchmarkError(f"{path}: cannot parse as CSV: {exc}") from exc
        rungs = (
            list(fidelities)
            if fidelities and isinstance(fidelities[0], Fidelity)  # type: ignore[index]
            else parse_fidelities(fidelities)  # type: ignore[arg-type]
        )
        space_obj, archs = read_architectures(frame, space, arch_column, position_columns, source=path)
        return cls(
            frame,
            space_obj,
            archs,
            objective,
            mode=mode,
            test_metric=test_metric,
            fidelities=rungs,
            objective_epochs=objective_epochs,
            source=path,
        )

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self.architectures)

    def __contains__(self, arch: Architecture) -> bool:
        return arch in self._row

    def row(self, arch: Architecture) -> int:
        try:
            return self._row[arch]
        except KeyError:
            try:
                shown = self.space.describe(arch)
            except InvalidArchitectureError as error:  # not even a cell of the table's space: say why
                shown = f"{arch} ({error})"
            raise UnknownArchitectureError(f"architecture {shown} is not in benchmark {self.source}") from None

    def value(self, arch: Architecture, column: str | None = None) -> float:
        """The metric ``column`` (default: the objective) of ``arch``."""
        column = column or self.objective
        if column not in self._values:
            if column not in self.frame.columns:
                raise BenchmarkError(f"{self.source}: no column {column!r}")
            self._values[column] = pd.to_numeric(self.frame[column], errors="coerce").to_numpy(float)
        return float(self._values[column][self.row(arch)])

    def metrics(self, arch: Architecture) -> dict[str, float]:
        """Objective, test metric and fidelity values of ``arch`` by column name."""
        row = self.row(arch)
        return {column: float(values[row]) for column, values in self._values.items()}

    @property
    def numeric_columns(self) -> list[str]:
        """Every numeric column of the table (integers and floats, not booleans), in table order.

        The metric columns (objective, test metric, fidelities) and any other
        numbers the table holds (parameters, FLOPs, an index, ...).
        """
        return list(self._numeric_arrays())

    def numeric_row(self, arch: Architecture) -> dict[str, float | int]:
        """Every :attr:`numeric_columns` value of ``arch``'s row by column name (a new dict per call).

        Integer columns give ``int``, float columns ``float`` (NaN where the table has no value).
        """
        row = self.row(arch)
        return {column: values[row].item() for column, values in self._numeric_arrays().items()}

    def _numeric_arrays(self) -> dict[str, np.ndarray]:
        """Column name -> its values as a NumPy array, for every numeric column (built once, on first use)."""
        arrays = self.__dict__.get("_numeric_cache")
        if arrays is None:
            arrays = {
                str(column): self.frame[column].to_numpy()
                for column in self.frame.columns
                if pd.api.types.is_numeric_dtype(self.frame[column].dtype)
                and not pd.api.types.is_bool_dtype(self.frame[column].dtype)
            }
            self.__dict__["_numeric_cache"] = arrays
        return arrays

    def best_index(self, column: str | None = None) -> int:
        values = self._values[column or self.objective]
        return int(np.argmax(values) if self.mode == "max" else np.argmin(values))

    @property
    def optimum(self) -> tuple[Architecture, float]:
        """The best architecture by the objective and its value (ties: first row)."""
        index = self.best_index()
        return self.architectures[index], float(self._values[self.objective][index])

    def is_better(self, a: float, b: float) -> bool:
        """Whether objective value ``a`` beats ``b`` in this benchmark's mode."""
        if math.isnan(b):
            return not math.isnan(a)
        return a > b if self.mode == "max" else a < b

    def __repr__(self) -> str:
        return (
            f"TabularBenchmark({self.source!r}, rows={len(self)}, space={self.space.name!r}, "
            f"objective={self.objective!r}, mode={self.mode!r})"
        )


def read_architectures(
    frame: pd.DataFrame,
    space: str | SearchSpace,
    arch_column: str | None = None,
    position_columns: Sequence[str] | None = None,
    source: str = "<table>",
) -> tuple[SearchSpace, list[Architecture]]:
    """Turn each row of ``frame`` into an architecture of ``space`` (see :meth:`TabularBenchmark.from_csv`)."""
    if isinstance(space, str):
        if space == "nb201":
            space = NB201Space()
        elif space == "positional":
            if not position_columns:
                raise BenchmarkError(f"{source}: a positional table needs position_columns")
            space = PositionalSpace.from_table(frame, position_columns)
        else:
            from raynas.registry import make_space

            space = make_space(space)
    if arch_column is None and position_columns is None:
        if isinstance(space, NB201Space):
            if "arch_str" in frame.columns:
                arch_column = "arch_str"
            elif all(c in frame.columns for c in NB201_EDGE_COLUMNS):
                position_columns = list(NB201_EDGE_COLUMNS)
            else:
                raise BenchmarkError(
                    f"{source}: an NB201 table needs an 'arch_str' column or the columns "
                    f"{list(NB201_EDGE_COLUMNS)}; it has {list(frame.columns)}"
                )
        else:
            raise BenchmarkError(f"{source}: say which column(s) hold the architecture")
    archs = []
    if arch_column is not None:
        if arch_column not in frame.columns:
            raise BenchmarkError(f"{source}: architecture column {arch_column!r} not found")
        cells: Sequence = frame[arch_column].tolist()
        parse = space.parse
    else:
        missing = [c for c in position_columns if c not in frame.columns]  # type: ignore[union-attr]
        if missing:
            raise BenchmarkError(f"{source}: architecture column(s) {missing} not found")
        cells = frame[list(position_columns)].astype(str).itertuples(index=False, name=None)  # type: ignore[arg-type]

        def parse(ops: tuple[str, ...]) -> Architecture:
            arch = Architecture(space.name, ops)
            space.validate(arch)
            return arch

    for line, cell in enumerate(cells, start=2):
        if arch_column is not None and not isinstance(cell, str):  # an empty cell (a short row) reads as NaN
            raise BenchmarkError(f"{source}, line {line}: no architecture in column {arch_column!r} ({cell!r})")
        try:
            archs.append(parse(cell))
        except (InvalidArchitectureError, ValueError) as exc:
            raise BenchmarkError(f"{source}, line {line}: malformed architecture {cell!r}: {exc}") from exc
    return space, archs


def load_benchmark(path: str | os.PathLike, objective: str, **kwargs) -> TabularBenchmark:
    """Shorthand for :meth:`TabularBenchmark.from_csv`."""
    return TabularBenchmark.from_csv(path, objective, **kwargs)

