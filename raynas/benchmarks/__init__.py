"""Tabular NAS benchmarks (NAS-Bench-201 and any table of architectures)."""

from raynas.benchmarks.tabular import (
    BenchmarkError,
    Fidelity,
    TabularBenchmark,
    UnknownArchitectureError,
    load_benchmark,
    parse_fidelities,
)

__all__ = [
    "BenchmarkError",
    "Fidelity",
    "TabularBenchmark",
    "UnknownArchitectureError",
    "load_benchmark",
    "parse_fidelities",
]
