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

from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raynas.architecture import Architecture
from raynas.models.amp import scaled_step
from raynas.models.checkpoint import load_training_state, training_state
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
    """The model's logits on ``x`` in eval mode, by batches (the training mode is restored)."""
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

#: Overrides of :data:`DISTILL_DEFAULTS` for CIFAR-sized data (``cifar10``, ``cifar100``, ``fake``): our
#: choice, the usual CIFAR SGD setting for a short fine-tuning of an inherited student.
IMAGE_DISTILL_DEFAULTS: dict[str, Any] = {"lr": 0.05, "batch_size": 128}


@torch.no_grad()
def loader_accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    device: torch.device | str = "cpu", amp: bool = False,
                    memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 accuracy in percent over ``(x, y)`` batches (e.g. a ``DataLoader``), on ``device``, in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            correct += (model(x).argmax(1) == y).sum()
        seen += int(y.shape[0])
    model.train(was_training)
    return 100.0 * int(correct) / max(seen, 1)


def _is_image_datasets(data: Any) -> bool:
    return hasattr(data, "train") and hasattr(data, "val")


class DistillationRun:
    """Train one student by distillation, one epoch per :meth:`step` (Ray-free).

    SGD with Nesterov momentum 0.9 and cosine annealing over ``epochs`` (the
    repository's recipe). Two kinds of data:

    * tensors ``(x_train, y_train, x_val, y_val)`` (digits): the teacher's
      training-set logits are computed once (no augmentation, so they never change);
    * an object with ``train`` and ``val`` datasets (:class:`raynas.data.vision.ImageDatasets`,
      augmented training images): batches come from ``DataLoader`` s and the
      teacher's logits are computed per batch (eval mode, ``no_grad``, same device),
      since every epoch augments the inputs differently.

    On CUDA, ``amp`` turns on ``torch.autocast`` (float16) with a ``GradScaler`` and
    ``channels_last`` the channels-last memory format; on the CPU both change nothing
    numerically, so CPU runs resume bit-identically from :meth:`state_dict`.

    Args:
        space: the compression space (holds the teacher).
        arch: the student architecture.
        data: tensors or image datasets, see above.
        teacher_acc: the teacher's validation accuracy (percent); measured when ``None``.
        teacher_logits: the teacher's training-set logits (tensor data only); computed when ``None``.
        device: where student (and teacher) run.
        amp: mixed precision (only on CUDA; ignored on the CPU).
        channels_last: channels-last tensors and weights.
        num_workers: ``DataLoader`` worker processes (image data).
        teacher: the teacher module to run on ``device`` (default ``space.teacher``; pass a
            device copy to keep the space's teacher on the CPU).
        **settings: keys of :data:`DISTILL_DEFAULTS`.
    """

    def __init__(self, space: CompressionSpace, arch: Architecture, data: Any,
                 teacher_acc: float | None = None, teacher_logits: torch.Tensor | None = None, *,
                 device: torch.device | str = "cpu", amp: bool = False, channels_last: bool = False,
                 num_workers: int = 0, teacher: nn.Module | None = None, **settings: Any) -> None:
        unknown = set(settings) - set(DISTILL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown distillation settings {sorted(unknown)}; known: {sorted(DISTILL_DEFAULTS)}")
        self.settings = {**DISTILL_DEFAULTS, **settings}
        self.space, self.arch = space, arch
        self.device = torch.device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.num_workers = int(num_workers)
        self.teacher = (space.teacher if teacher is None else teacher).eval()
        self.images = _is_image_datasets(data)
        if self.images:
            self.datasets = data
        else:
            self.x_train, self.y_train, self.x_val, self.y_val = (t.to(self.device) for t in data)
            if self.x_train.dim() == 4:
                self.x_train = self.x_train.contiguous(memory_format=self.memory_format)
                self.x_val = self.x_val.contiguous(memory_format=self.memory_format)
            self.teacher_logits = (logits_of(self.teacher, self.x_train) if teacher_logits is None
                                   else teacher_logits.to(self.device))
        if teacher_acc is None:
            teacher_acc = self._accuracy(self.teacher)
        self.teacher_acc = float(teacher_acc)
        if self.teacher_acc <= 0:
            raise ValueError("the teacher's validation accuracy is 0%: ESNAC's objective divides by it; "
                             "train the teacher first (or load its trained weights)")
        self.teacher_params = count_parameters(self.teacher)
        torch.manual_seed(int(self.settings["seed"]))
        self.model = build_student(space, arch, inherit=bool(self.settings["inherit"]))
        self.params = count_parameters(self.model)
        self.model = self.model.to(self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=float(self.settings["lr"]), momentum=0.9,
                                         nesterov=True, weight_decay=float(self.settings["weight_decay"]))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=int(self.settings["epochs"]))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.generator = torch.Generator().manual_seed(int(self.settings["seed"]))
        self.epoch = 0

    # ------------------------------------------------------------------ batches
    def _loader(self, train: bool) -> Any:
        from torch.utils.data import DataLoader

        batch = int(self.settings["batch_size"])
        return DataLoader(
            self.datasets.train if train else self.datasets.val,
            batch_size=batch if train else max(batch, 256), shuffle=train,
            generator=self.generator if train else None, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,  # fresh workers seeded from self.generator: restores draw the same crops
        )

    def _train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(x, y, teacher_logits or None)`` on the device, in this epoch's order."""
        if not self.images:
            order = torch.randperm(len(self.x_train), generator=self.generator)
            batch = int(self.settings["batch_size"])
            for i in range(0, len(order), batch):
                idx = order[i : i + batch].to(self.device)
                yield self.x_train[idx], self.y_train[idx], self.teacher_logits[idx]
            return
        for x, y in self._loader(train=True):
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True), None

    def _accuracy(self, model: nn.Module) -> float:
        if not self.images:
            return accuracy(model, self.x_val, self.y_val)
        return loader_accuracy(model, self._loader(train=False), self.device, self.amp, self.memory_format)

    # ------------------------------------------------------------------ training
    def step(self) -> dict[str, Any]:
        """One epoch of distillation, then validation; the result dict of that epoch."""
        epochs = int(self.settings["epochs"])
        if self.epoch >= epochs:
            raise RuntimeError(f"all {epochs} epochs of {self.arch} were already trained")
        self.model.train()
        temperature, alpha = float(self.settings["temperature"]), float(self.settings["alpha"])
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for x, y, soft in self._train_batches():
            n = int(y.shape[0])
            if self.images and n < 2:  # BatchNorm cannot train on a single example
                continue
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                if soft is None:
                    with torch.no_grad():
                        soft = self.teacher(x)
                logits = self.model(x)
            loss = distillation_loss(logits.float(), soft.float(), y, temperature, alpha)
            scaled_step(loss, self.optimizer, self.scaler)
            total += loss.detach().double() * n
            seen += n
        self.scheduler.step()
        self.epoch += 1
        acc = self._accuracy(self.model)
        objective = compression_objective(acc, self.teacher_acc, self.params, self.teacher_params)
        return {
            "objective": objective.f, "val_acc": acc, "params": self.params, "teacher_params": self.teacher_params,
            "teacher_acc": self.teacher_acc, "compression": objective.ratio, "train_loss": float(total) / max(seen, 1),
            "epoch": self.epoch, "done": self.epoch >= epochs,
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, scheduler, AMP scaler, epoch and RNG states (batch order, torch CPU and CUDA)."""
        return {"arch": self.arch.to_json(), "epoch": self.epoch, **training_state(
            self.model, self.optimizer, self.scheduler, self.scaler, self.generator, self.device)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (tensors may come on any device)."""
        if state["arch"] != self.arch.to_json():
            raise ValueError(f"checkpoint is for {state['arch']}, not {self.arch.to_json()}")
        load_training_state(state, self.model, self.optimizer, self.scheduler, self.scaler, self.generator,
                            self.device)
        self.epoch = int(state["epoch"])
