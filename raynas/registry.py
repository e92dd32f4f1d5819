"""Spaces by short name, for the CLI and for tables that name their space."""

from __future__ import annotations

import importlib
from typing import Any

from raynas.spaces.base import SearchSpace

#: name -> "module:Class"; imported lazily so that optional pieces cost nothing until used.
SPACES: dict[str, str] = {
    "nb201": "raynas.spaces.nb201:NB201Space",
    "nb101": "raynas.spaces.nb101:NB101Space",
    "macro_cnn": "raynas.spaces.macro:MacroCNNSpace",
    "macro_mlp": "raynas.spaces.macro:MacroMLPSpace",
    "mobilenet": "raynas.spaces.mobilenet:MobileNetSpace",
}


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate the space registered as ``name``."""
    try:
        target = SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; choose from {sorted(SPACES)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)
