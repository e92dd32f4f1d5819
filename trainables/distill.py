"""Knowledge-distillation training of ESNAC students, one epoch per ``step()`` (Ray Tune Trainable).

Each result reports the student's validation accuracy ``val_acc`` (percent),
its parameter count ``params``, the compression ``r = 1 − params/teacher_params``
and ESNAC's objective ``objective = r(2 − r) · A_s / A_t`` (Cao et al., ICLR
2019, §4), so that ASHA can stop poor students early. The training loop is
:class:`raynas.models.student.DistillationRun` (Ray-free, shared with the
offline benchmark).

Use it with the teacher's space (and optionally other data)::

    tune.with_parameters(DistillTrainable, space=space)              # digits
    tune.with_parameters(DistillTrainable, space=space, data=(x_train, y_train, x_val, y_val))
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from ray import tune

from raynas.architecture import Architecture
from raynas.models.student import DISTILL_DEFAULTS, DistillationRun, accuracy, logits_of
from raynas.spaces.base import InvalidArchitectureError
from raynas.spaces.compression import CompressionSpace

#: Config keys besides ``arch`` and the keys of :data:`raynas.models.student.DISTILL_DEFAULTS`.
DATA_DEFAULTS: dict[str, Any] = {"dataset": "digits", "val_fraction": 0.2, "split_seed": 0, "num_threads": None}


class DistillTrainable(tune.Trainable):
    """Distil the teacher of ``space`` into the student ``config["arch"]``; report ``objective`` per epoch.

    Config: ``arch`` (JSON, required), the keys of :data:`~raynas.models.student.DISTILL_DEFAULTS`
    (``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``temperature``, ``alpha``, ``seed``,
    ``inherit``) and of :data:`DATA_DEFAULTS`. Other keys (e.g. the searcher's ``suggestion``) are ignored.
    """

    checkpoint_file = "distill_trainable.pt"

    def setup(self, config: dict[str, Any], space: CompressionSpace | None = None,
              data: Sequence[torch.Tensor] | None = None) -> None:
        if not isinstance(space, CompressionSpace):
            raise TypeError("DistillTrainable needs the teacher's CompressionSpace: "
                            "tune.with_parameters(DistillTrainable, space=space)")
        self.space, self._given_data = space, data
        self._data_key: tuple | None = None
        self._build(config)

    def _build(self, config: dict[str, Any]) -> None:
        settings = {k: config.get(k, v) for k, v in DISTILL_DEFAULTS.items()}
        data_settings = {k: config.get(k, v) for k, v in DATA_DEFAULTS.items()}
        try:
            arch = Architecture.from_config(config)
            self.space.validate(arch)
        except (InvalidArchitectureError, ValueError) as exc:
            raise InvalidArchitectureError(f"DistillTrainable: invalid config['arch']: {exc}") from exc
        torch.set_num_threads(int(data_settings["num_threads"] or self._trial_cpus()))
        key = (data_settings["dataset"], data_settings["val_fraction"], data_settings["split_seed"])
        if key != self._data_key:  # actor reuse: keep data and teacher outputs
            self._data = self._load_data(data_settings)
            teacher = self.space.teacher.eval()
            self._teacher_logits = logits_of(teacher, self._data[0])
            self._teacher_acc = accuracy(teacher, self._data[2], self._data[3])
            self._data_key = key
        self.run = DistillationRun(self.space, arch, self._data, teacher_acc=self._teacher_acc,
                                   teacher_logits=self._teacher_logits, **settings)
        self.arch_str = self.space.describe(arch)

    def _load_data(self, settings: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        if self._given_data is not None:
            return tuple(self._given_data)
        if settings["dataset"] != "digits":
            raise ValueError(f"DistillTrainable: config['dataset'] must be 'digits' unless data= is given, "
                             f"got {settings['dataset']!r}")
        from raynas.data.digits import load_digits_split

        return tuple(load_digits_split(float(settings["val_fraction"]), int(settings["split_seed"])))

    def _trial_cpus(self) -> int:
        resources = self.trial_resources
        try:
            return max(1, int(resources.required_resources.get("CPU", 1))) if resources is not None else 1
        except AttributeError:  # pragma: no cover
            return 1

    def step(self) -> dict[str, Any]:
        return {**self.run.step(), "arch_str": self.arch_str}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(self.run.state_dict(), os.path.join(checkpoint_dir, self.checkpoint_file))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        path = os.path.join(checkpoint_dir, self.checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"DistillTrainable: no checkpoint file {self.checkpoint_file!r} in {checkpoint_dir}")
        self.run.load_state_dict(torch.load(path, weights_only=True))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        self.config = new_config
        return True
