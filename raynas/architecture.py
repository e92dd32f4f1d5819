"""The immutable architecture value every raynas component passes around.

An :class:`Architecture` is deliberately generic so that one type serves cell
spaces (NAS-Bench-201: one op per edge; NAS-Bench-101: ops per node plus an
adjacency matrix) and positional spaces (one categorical choice per position).
The *space* gives the fields their meaning; the architecture only guarantees
value semantics: it is frozen, hashable, comparable, and has a stable JSON
form that survives a round trip through a Ray Tune config dict.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

#: The key under which raynas searchers put the architecture into a Tune config.
CONFIG_KEY = "arch"


class ArchitectureFormatError(ValueError):
    """Raised when a JSON / config value cannot be read as an architecture."""


@dataclass(frozen=True)
class Architecture:
    """An architecture of a named search space.

    Args:
        space: name of the search space this architecture belongs to.
        ops: one label per position (positional spaces), per edge (NAS-Bench-201)
            or per node (NAS-Bench-101, input and output nodes included).
        matrix: optional upper-triangular 0/1 adjacency matrix for node-labelled
            cell spaces; ``None`` where the space has a fixed wiring.
    """

    space: str
    ops: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        # Normalise containers so that lists given by users still hash and compare.
        object.__setattr__(self, "ops", tuple(str(op) for op in self.ops))
        if self.matrix is not None:
            object.__setattr__(
                self, "matrix", tuple(tuple(int(v) for v in row) for row in self.matrix)
            )

    @functools.cached_property
    def _json(self) -> str:
        # Computed on first use: candidate pools build hundreds of thousands of architectures
        # of which only the suggested few are ever serialised.
        payload: dict[str, Any] = {"space": self.space, "ops": list(self.ops)}
        if self.matrix is not None:
            payload["matrix"] = [list(row) for row in self.matrix]
        return json.dumps(payload, separators=(",", ":"))

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        """Stable, compact JSON text (the same architecture always gives the same text)."""
        return self._json

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> "Architecture":
        """Parse the output of :meth:`to_json` (or the equivalent dict)."""
        if isinstance(text, Architecture):
            return text
        if isinstance(text, (str, bytes)):
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ArchitectureFormatError(f"architecture is not valid JSON: {text!r}") from exc
        elif isinstance(text, Mapping):
            payload = dict(text)
        else:
            raise ArchitectureFormatError(
                f"cannot read an architecture from {type(text).__name__}: {text!r}"
            )
        if not isinstance(payload, dict) or "space" not in payload or "ops" not in payload:
            raise ArchitectureFormatError(
                f"architecture JSON needs the keys 'space' and 'ops', got {payload!r}"
            )
        ops = payload["ops"]
        if isinstance(ops, str) or not isinstance(ops, Sequence):
            raise ArchitectureFormatError(f"architecture 'ops' must be a list, got {ops!r}")
        return cls(space=str(payload["space"]), ops=tuple(ops), matrix=payload.get("matrix"))

    # ------------------------------------------------------- Tune config dict
    def to_config(self) -> dict[str, str]:
        """The Tune config fragment a searcher suggests: ``{"arch": <json>}``."""
        return {CONFIG_KEY: self._json}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Architecture":
        """Read the architecture back from a (possibly flattened) Tune config or result."""
        for key in (CONFIG_KEY, f"config/{CONFIG_KEY}"):
            if key in config:
                return cls.from_json(config[key])
        nested = config.get("config")
        if isinstance(nested, Mapping) and CONFIG_KEY in nested:
            return cls.from_json(nested[CONFIG_KEY])
        raise ArchitectureFormatError(
            f"config has no '{CONFIG_KEY}' entry (keys: {sorted(config)[:10]})"
        )

    # ------------------------------------------------------------ identities
    @property
    def digest(self) -> str:
        """A process-independent hash (Python's ``hash()`` differs between Ray workers)."""
        return hashlib.sha1(self._json.encode()).hexdigest()

    def __str__(self) -> str:
        return self._json
