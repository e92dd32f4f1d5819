"""Real training of NAS-Bench-201 cells on scikit-learn's 8x8 digits, one epoch per ``step()``.

A CPU-sized stand-in for the NB201 CIFAR protocol: the same cell network and
optimiser recipe (SGD with Nesterov momentum, cosine annealing, cross-entropy)
on a data set that ships with scikit-learn, so a whole trial takes seconds.
All architectures see the same stratified train/validation split (split seed
0); the config's ``seed`` only drives weight initialisation and batch order.

:class:`DigitsTrainable` is :class:`~raynas.trainables.training.ImageTrainable`
fixed to ``dataset="digits"``; it keeps its name, defaults and checkpoint file
so existing code, experiments and checkpoints keep working.
"""

from __future__ import annotations

from typing import Any

from raynas.trainables.training import DIGITS_NB201, ImageTrainable

#: Defaults of every config key except the required ``arch``: the main job's task
#: (:data:`~raynas.trainables.training.DIGITS_NB201`). One trial takes under a second
#: on one core and random cells spread over 65-92 % validation accuracy.
DIGITS_DEFAULTS: dict[str, Any] = {**DIGITS_NB201, "weight_decay": 5e-4, "seed": 0}


class DigitsTrainable(ImageTrainable):
    """Train one NB201 cell on the digits split; report validation accuracy (percent) each epoch.

    Config: ``arch`` (JSON, required) plus the keys of :data:`DIGITS_DEFAULTS`
    (and any other :data:`~raynas.trainables.training.IMAGE_DEFAULTS` key but
    ``dataset``). Uses CUDA when the trial was given a GPU, else the CPU with
    one thread per trial CPU.
    """

    default_dataset = "digits"
    checkpoint_file = "digits_trainable.pt"

    def _build(self, config: dict[str, Any]) -> None:
        dataset = config.get("dataset", "digits")
        if dataset != "digits":
            raise ValueError(
                f"DigitsTrainable trains on digits only, got config['dataset']={dataset!r}; use ImageTrainable"
            )
        super()._build({**DIGITS_DEFAULTS, **config})
