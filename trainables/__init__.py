"""The Ray Tune layer of raynas: Trainables that evaluate architectures (imports Ray)."""

from raynas.trainables.digits import DIGITS_DEFAULTS, DigitsTrainable
from raynas.trainables.tabular import TabularTrainable

__all__ = ["DIGITS_DEFAULTS", "DigitsTrainable", "TabularTrainable"]
