"""Students of a :class:`~raynas.spaces.compression.CompressionSpace`, and their training by distillation.

* :func:`build_student` instantiates a candidate, **inheriting the teacher's
  weights** where shapes allow: each student layer copies the overlapping
  block of its teacher layer's tensors (first output channels, first input
  channels; for the first ``fc`` after a ``flatten`` the overlap is taken in
  the ``(out, C, H, W)`` view so channels stay aligned). ESNAC (§4) follows
  N2N in starting students from the teacher's weights; slicing the *first* k
  channels is the simplest rule (no importance ranking: a deviation kept for
  simplicity and determinism).
* :func:`distillation_loss` is Hinton et al.'s knowledge-distillation loss,
  :func:`compression_objective` ESNAC's ``f(x) = r(2 − r) · A_s / A_t``.
* :class:`DistillationRun` is the Ray-free training loop (one epoch per call)
  that :class:`raynas.trainables.distill.DistillTrainable` and the offline
  benchmark share.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raynas.architecture import Architecture
from raynas.models.nb201_net import count_parameters
from raynas.spaces.compression import CompressionSpace


class _Skip(nn.Module):
    """Adds node ``source`` to a layer output: a 1x1 conv + BN projection, or identity with channels
    truncated / zero-padded to the target's."""

    def __init__(self, source: int, in_channels: int, out_channels: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.source, self.out_channels = source, out_channels
        self.proj = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
            if projection else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        c = x.shape[1]
        if c > self.out_channels:
            return x[:, : self.out_channels]
        if c < self.out_channels:
            return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - c))
        return x


class StudentNet(nn.Module):
    """The network of one compression architecture: a chain of layers plus additive skip connections."""

    def __init__(self, layers: Sequence[nn.Module], skips: Sequence[Sequence[_Skip]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.skips = nn.ModuleList(nn.ModuleList(row) for row in skips)
        self._sources = sorted({s.source for row in skips for s in row})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep: dict[int, torch.Tensor] = {}
        if 0 in self._sources:
            keep[0] = x
        for k, (layer, row) in enumerate(zip(self.layers, self.skips), start=1):
            x = layer(x)
            for skip in row:
                x = x + skip(keep[skip.source])
            if k in self._sources:
                keep[k] = x
        return x


def _copy_overlap(target: torch.Tensor, source: torch.Tensor) -> None:
    """Copy the leading block the two tensors share (same number of dimensions) into ``target``."""
    index = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, source.shape))
    with torch.no_grad():
        target[index] = source[index].to(target.dtype)


def _inherit(student: nn.Module, teacher: nn.Module) -> None:
    """Overlap-copy every parameter and buffer the two modules share by name."""
    teacher_state = dict(teacher.named_parameters()) | dict(teacher.named_buffers())
    for name, tensor in list(student.named_parameters()) + list(student.named_buffers()):
        source = teacher_state.get(name)
        if source is None or tensor.dim() != source.dim():
            continue
        if tensor.dim() == 0:
            with torch.no_grad():
                tensor.copy_(source)
        else:
            _copy_overlap(tensor, source)


def build_student(space: CompressionSpace, arch: Architecture, inherit: bool = True) -> StudentNet:
    """The network of ``arch`` (validated), with the teacher's weights where shapes allow (``inherit``)."""
    net = space._net(arch)
    shapes = space._shapes(net)
    teacher_shapes = space._shapes(space._net(space.teacher_arch))
    plan = space.skip_plan(arch)
    layers: list[nn.Module] = []
    rows: list[list[_Skip]] = []
    for k, lay in enumerate(net, start=1):
        spec = space.layers[lay.t]
        source = spec.module
        c_in = shapes[k - 1][0]
        if spec.kind == "conv":
            module: nn.Module = nn.Conv2d(c_in, lay.width, spec.kernel, spec.stride, spec.padding, bias=spec.bias)
        elif spec.kind == "bn":
            module = nn.BatchNorm2d(c_in, eps=source.eps, momentum=source.momentum, affine=source.affine,
                                    track_running_stats=source.track_running_stats)
        elif spec.kind == "relu":
            module = nn.ReLU()  # never in place: the input may also feed a skip
        elif spec.kind == "maxpool":
            module = nn.MaxPool2d(spec.kernel, spec.stride, spec.padding)
        elif spec.kind == "avgpool":
            module = nn.AvgPool2d(spec.kernel, spec.stride, spec.padding, count_include_pad=source.count_include_pad)
        elif spec.kind == "aap":
            module = nn.AdaptiveAvgPool2d(spec.size)
        elif spec.kind == "flatten":
            module = nn.Flatten()
        elif spec.kind == "fc":
            module = nn.Linear(c_in, lay.width, bias=spec.bias)
        else:
            module = nn.Dropout(spec.p)
        if inherit and source is not None:
            after_flatten = (k > 1 and space.layers[net[k - 2].t].kind == "flatten"
                             and lay.t > 0 and space.layers[lay.t - 1].kind == "flatten")
            if spec.kind == "fc" and after_flatten:
                s_shape, t_shape = shapes[k - 2], teacher_shapes[lay.t - 1]
                with torch.no_grad():
                    view = module.weight.view(lay.width, *s_shape)
                    _copy_overlap(view, source.weight.view(source.out_features, *t_shape))
                    if spec.bias:
                        _copy_overlap(module.bias, source.bias)
            else:
                _inherit(module, source)
        layers.append(module)
        row = []
        for u, stride, projection, teacher_skip in plan[k - 1]:
            skip = _Skip(u, shapes[u][0], shapes[k][0], stride, bool(projection))
            if inherit and skip.proj is not None and teacher_skip is not None and teacher_skip.projection is not None:
                _inherit(skip.proj, teacher_skip.projection)
            row.append(skip)
        rows.append(row)
    return StudentNet(layers, rows)


# --------------------------------------------------------------------- distillation
def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    r"""Knowledge distillation (Hinton, Vinyals, Dean 2015):
    ``α T² KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) CE(z_s, y)``.

    Args:
        student_logits, teacher_logits: ``(batch, classes)``.
        labels: ``(batch,)`` class indices.
        temperature: ``T > 0``; the ``T²`` factor keeps gradient magnitudes comparable across ``T``.
        alpha: weight of the soft (teacher) term in ``[0, 1]``.
    """
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}")
    hard = F.cross_entropy(student_logits, labels)
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * temperature**2
    return alpha * soft + (1.0 - alpha) * hard


class Objective(NamedTuple):
    """ESNAC's objective and its parts."""

    f: float
    ratio: float
    accuracy_ratio: float


def compression_objective(student_acc: float, teacher_acc: float, student_params: int,
                          teacher_params: int) -> Objective:
    """``f = r(2 − r) · A_s / A_t`` with ``r = 1 − params_s / params_t`` (ESNAC §4).

    ``r(2 − r)`` rewards compression with diminishing returns; a student larger
    than its teacher gets a negative ``r`` and a negative ``f``.
    """
    if teacher_params <= 0 or teacher_acc <= 0:
        raise ValueError(f"teacher params and accuracy must be positive, got {teacher_params}, {teacher_acc}")
    r = 1.0 - student_params / teacher_params
    accuracy_ratio = student_acc / teacher_acc
    return Objective(r * (2.0 - r) * accuracy_ratio, r, accuracy_ratio)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent (eval mode; the training mode is restored)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / max(len(x), 1)


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


#: Defaults of the distillation recipe (per student; CPU-sized for digits).
DISTILL_DEFAULTS: dict[str, Any] = {
    "epochs": 3, "lr": 0.02, "batch_size": 64, "weight_decay": 5e-4,
    "temperature": 4.0, "alpha": 0.9, "seed": 0, "inherit": True,
}


class DistillationRun:
    """Train one student by distillation, one epoch per :meth:`step` (Ray-free).

    SGD with Nesterov momentum 0.9 and cosine annealing over ``epochs`` (the
    repository's recipe); the teacher's logits on the training set are
    computed once (no augmentation, so they never change).

    Args:
        space: the compression space (holds the teacher).
        arch: the student architecture.
        data: ``(x_train, y_train, x_val, y_val)`` tensors.
        teacher_acc: the teacher's validation accuracy (percent); measured when ``None``.
        teacher_logits: the teacher's training-set logits; computed when ``None``.
        **settings: keys of :data:`DISTILL_DEFAULTS`.
    """

    def __init__(self, space: CompressionSpace, arch: Architecture, data: Sequence[torch.Tensor],
                 teacher_acc: float | None = None, teacher_logits: torch.Tensor | None = None,
                 **settings: Any) -> None:
        unknown = set(settings) - set(DISTILL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown distillation settings {sorted(unknown)}; known: {sorted(DISTILL_DEFAULTS)}")
        self.settings = {**DISTILL_DEFAULTS, **settings}
        self.space, self.arch = space, arch
        self.x_train, self.y_train, self.x_val, self.y_val = data
        teacher = space.teacher.eval()
        self.teacher_logits = logits_of(teacher, self.x_train) if teacher_logits is None else teacher_logits
        self.teacher_acc = accuracy(teacher, self.x_val, self.y_val) if teacher_acc is None else float(teacher_acc)
        self.teacher_params = count_parameters(teacher)
        torch.manual_seed(int(self.settings["seed"]))
        self.model = build_student(space, arch, inherit=bool(self.settings["inherit"]))
        self.params = count_parameters(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=float(self.settings["lr"]), momentum=0.9,
                                         nesterov=True, weight_decay=float(self.settings["weight_decay"]))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=int(self.settings["epochs"]))
        self.generator = torch.Generator().manual_seed(int(self.settings["seed"]))
        self.epoch = 0

    def step(self) -> dict[str, Any]:
        """One epoch of distillation, then validation; the result dict of that epoch."""
        epochs = int(self.settings["epochs"])
        if self.epoch >= epochs:
            raise RuntimeError(f"all {epochs} epochs of {self.arch} were already trained")
        self.model.train()
        order = torch.randperm(len(self.x_train), generator=self.generator)
        batch, total, seen = int(self.settings["batch_size"]), 0.0, 0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = distillation_loss(self.model(self.x_train[idx]), self.teacher_logits[idx], self.y_train[idx],
                                     float(self.settings["temperature"]), float(self.settings["alpha"]))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        self.scheduler.step()
        self.epoch += 1
        acc = accuracy(self.model, self.x_val, self.y_val)
        objective = compression_objective(acc, self.teacher_acc, self.params, self.teacher_params)
        return {
            "objective": objective.f, "val_acc": acc, "params": self.params, "teacher_params": self.teacher_params,
            "teacher_acc": self.teacher_acc, "compression": objective.ratio, "train_loss": total / max(seen, 1),
            "epoch": self.epoch, "done": self.epoch >= epochs,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_json(), "epoch": self.epoch, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["arch"] != self.arch.to_json():
            raise ValueError(f"checkpoint is for {state['arch']}, not {self.arch.to_json()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
