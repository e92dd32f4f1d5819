"""argparse helpers shared by the ``raynas`` sub-commands (``search`` in :mod:`raynas.cli`,
``compress`` in :mod:`raynas.compress`).

Standard library only: both modules import it, and neither imports the other's
command-line code through it (the CLI depends on :mod:`raynas.compress`, never the reverse).
"""

from __future__ import annotations

import argparse


def add_data_location_arguments(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--download``: where the image data sets live, for ``search`` and ``compress``."""
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory holding (or receiving, with --download) the CIFAR data; "
                   "default $RAYNAS_DATA_DIR or ~/raynas_data on each node")
    p.add_argument("--download", action="store_true",
                   help="download a missing CIFAR data set into --data-dir (never done otherwise)")
