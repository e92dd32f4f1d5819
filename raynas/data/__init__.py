"""Small offline data sets for real (non-tabular) training runs (Ray-free)."""

from raynas.data.digits import DigitsSplit, load_digits_split

__all__ = ["DigitsSplit", "load_digits_split"]
