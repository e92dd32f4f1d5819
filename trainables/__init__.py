"""The Ray Tune layer of raynas: Trainables that evaluate architectures (imports Ray)."""

from raynas.trainables.digits import DIGITS_DEFAULTS, DigitsTrainable
from raynas.trainables.tabular import TabularTrainable
from raynas.trainables.training import DATASETS, IMAGE_DEFAULTS, ImageTrainable, recipe_defaults

__all__ = [
    "DATASETS",
    "DIGITS_DEFAULTS",
    "IMAGE_DEFAULTS",
    "DigitsTrainable",
    "ImageTrainable",
    "TabularTrainable",
    "recipe_defaults",
]
