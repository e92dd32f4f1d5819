"""ESNAC's compression space: every student is a compression of one teacher network.

Cao, Wang, Kitani, "Learnable Embedding Space for Efficient Neural
Architecture Compression", ICLR 2019 (§3.1 search space, §3.3 sampling).

**Teacher.** :func:`flatten_teacher` turns an ``nn.Module`` into a chain of
layers (:class:`TeacherLayer`). Supported: ``Conv2d`` (groups 1, dilation 1,
zero padding), ``BatchNorm2d``, ``ReLU``, ``MaxPool2d``/``AvgPool2d``
(square, ``ceil_mode=False``), ``AdaptiveAvgPool2d``, ``Flatten``,
``Linear``, ``Dropout``, containers (``nn.Sequential`` and modules whose
children run in registration order: torchvision's ``ResNet`` and ``VGG``),
and torchvision's ``BasicBlock``/``Bottleneck`` (their layers in forward
order; the block's shortcut becomes a skip connection, its ``downsample`` a
projection on that skip). A ``Flatten`` is inserted where a ``Linear``
follows a spatial layer (torchvision calls ``torch.flatten`` in ``forward``).
Any other module raises :class:`UnsupportedLayerError` naming its type and
path. Custom modules are read as a chain of their children in registration
order: a module whose ``forward`` does something else is not detected.

**Encoding.** ``ops = ("input", layer_1, ..., layer_L, "output")``, ``matrix``
is ``None``. A layer is ``"<t>:<kind>"``, with ``":<width>"`` for ``conv`` and
``fc`` (output channels / features) and ``"<u,v"`` listing the nodes whose
output is added to this layer's output (skip connections; node 0 is the
input, node ``i`` the output of layer ``i``). ``t`` is the index of the
teacher layer it comes from; kernel, stride, padding and bias come from the
teacher, input channels from the previous layer (shape inference), so a
student is exactly "which teacher layers, how wide, which skips".

**Operations** (§3.1): *layer removal* (any layer but the classifier whose
removal still gives composing shapes and does not give a ``fc`` more input
features than in the teacher; skips from/to it move to the previous node), *layer shrinkage* (fewer output channels of a ``conv`` or hidden
``fc``) and *adding skip connections* (between spatial nodes whose sizes
divide). A skip whose source and target differ in spatial size, or whose
teacher skip had a ``downsample``, gets a 1x1 conv + BN projection in the
student; a skip that differs only in channels adds the first
``min(C_u, C_v)`` channels (parameter-free; our choice, the excerpt of the
paper does not say how mismatched shortcuts are handled: this way shrinking
a residual block never adds parameters).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import networkx as nx
import numpy as np
from torch import nn

from raynas.architecture import Architecture
from raynas.spaces.base import INPUT_OP, OP_ATTR, OUTPUT_OP, InfiniteSpaceError, InvalidArchitectureError, SearchSpace

#: Layer kinds of the space, in the order used by one-hot features.
KINDS: tuple[str, ...] = ("conv", "bn", "relu", "maxpool", "avgpool", "aap", "flatten", "fc", "dropout")
#: Kinds with a width (output channels / features) that shrinkage changes.
WIDTH_KINDS = frozenset({"conv", "fc"})
#: The three compression operations of §3.1.
OPERATIONS: tuple[str, ...] = ("remove", "shrink", "skip")
_LAYER_RE = re.compile(r"^(\d+):([a-z]+)(?::(\d+))?(?:<([\d,]+))?$")
_MUTATION_ATTEMPTS = 200


class UnsupportedLayerError(TypeError):
    """The teacher contains a module the compression space cannot represent."""


@dataclass(frozen=True)
class TeacherLayer:
    """One layer of the flattened teacher.

    ``module`` is the teacher's module (``None`` for an inserted ``flatten``);
    ``width`` its output channels/features (conv, fc); ``kernel``, ``stride``,
    ``padding`` for conv and pooling; ``bias`` for conv/fc; ``size`` the output
    size of ``aap``; ``p`` the dropout rate.
    """

    kind: str
    path: str
    module: nn.Module | None = field(default=None, compare=False, repr=False)
    width: int | None = None
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    bias: bool = False
    size: tuple[int, int] = (1, 1)
    p: float = 0.0


@dataclass(frozen=True)
class TeacherSkip:
    """A teacher shortcut: the output of node ``source`` is added to the output of layer ``target``
    (teacher numbering, nodes 1-based, 0 = input); ``projection`` is the ``downsample`` module or ``None``."""

    source: int
    target: int
    projection: nn.Module | None = field(default=None, compare=False, repr=False)


def _square(value: Any, what: str, path: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise UnsupportedLayerError(f"{path}: non-square {what} {tuple(value)} is not supported")
        value = value[0]
    return int(value)


def _layer(module: nn.Module, path: str) -> TeacherLayer:
    """One supported leaf module as a :class:`TeacherLayer` (or an :class:`UnsupportedLayerError`)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or _square(module.dilation, "dilation", path) != 1 or module.padding_mode != "zeros":
            raise UnsupportedLayerError(
                f"{path}: Conv2d with groups={module.groups}, dilation={module.dilation}, "
                f"padding_mode={module.padding_mode!r} is not supported (need 1, 1, 'zeros')"
            )
        if isinstance(module.padding, str):
            raise UnsupportedLayerError(f"{path}: Conv2d padding={module.padding!r} is not supported (give integers)")
        return TeacherLayer(
            "conv", path, module, width=module.out_channels, kernel=_square(module.kernel_size, "kernel", path),
            stride=_square(module.stride, "stride", path), padding=_square(module.padding, "padding", path),
            bias=module.bias is not None,
        )
    if isinstance(module, nn.BatchNorm2d):
        return TeacherLayer("bn", path, module)
    if isinstance(module, nn.ReLU):
        return TeacherLayer("relu", path, module)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
        if module.ceil_mode or (kind == "maxpool" and _square(module.dilation, "dilation", path) != 1):
            raise UnsupportedLayerError(f"{path}: {type(module).__name__} with ceil_mode/dilation is not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return TeacherLayer(
            kind, path, module, kernel=_square(module.kernel_size, "kernel", path),
            stride=_square(stride, "stride", path), padding=_square(module.padding, "padding", path),
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if any(s is None for s in size):
            raise UnsupportedLayerError(f"{path}: AdaptiveAvgPool2d with a None output size is not supported")
        return TeacherLayer("aap", path, module, size=(int(size[0]), int(size[1])))
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise UnsupportedLayerError(f"{path}: Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) "
                                        "is not supported (need 1, -1)")
        return TeacherLayer("flatten", path, module)
    if isinstance(module, nn.Linear):
        return TeacherLayer("fc", path, module, width=module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.Dropout):
        return TeacherLayer("dropout", path, module, p=float(module.p))
    raise UnsupportedLayerError(
        f"unsupported layer {type(module).__module__}.{type(module).__name__} at {path or '<root>'}; the "
        f"compression space supports Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, "
        f"Flatten, Linear, Dropout, nn.Sequential and torchvision's BasicBlock/Bottleneck"
    )


def flatten_teacher(teacher: nn.Module) -> tuple[list[TeacherLayer], list[TeacherSkip]]:
    """The teacher as a chain of :class:`TeacherLayer` plus its shortcuts (see the module docstring)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    layers: list[TeacherLayer] = []
    skips: list[TeacherSkip] = []

    def add(module: nn.Module, path: str) -> None:
        flat = any(lay.kind in ("flatten", "fc") for lay in layers)
        if isinstance(module, nn.Linear) and layers and not flat:
            layers.append(TeacherLayer("flatten", f"{path}<flatten>"))
        layers.append(_layer(module, path))

    def walk(module: nn.Module, path: str) -> None:
        if isinstance(module, (BasicBlock, Bottleneck)):
            source = len(layers)  # node index of the block input
            names = ["conv1", "bn1", "relu", "conv2", "bn2"]
            if isinstance(module, Bottleneck):
                names += ["relu", "conv3", "bn3"]
            for name in names:
                add(getattr(module, name), f"{path}.{name}" if path else name)
            skips.append(TeacherSkip(source, len(layers), module.downsample))
            if module.downsample is not None:  # validate the projection's layers too
                for name, child in module.downsample.named_children():
                    _layer(child, f"{path}.downsample.{name}")
            add(module.relu, f"{path}.relu")
            return
        children = list(module.named_children())
        if not children:
            add(module, path)
            return
        for name, child in children:
            walk(child, f"{path}.{name}" if path else name)

    walk(teacher, "")
    if not layers or layers[-1].kind != "fc":
        raise UnsupportedLayerError("the teacher must end with a Linear classifier")
    return layers, skips


@dataclass
class _Layer:
    """Working form of one student layer: teacher index, width (conv/fc) and skip sources (nodes)."""

    t: int
    width: int | None
    skips: tuple[int, ...] = ()


@dataclass(frozen=True)
class LayerDescriptor:
    """What the embedding sees of one layer (§3.2): type, kernel, stride, padding, in/out channels, skips.

    ``skips`` are the relative distances ``v - u`` of the skip connections into this layer.
    """

    kind: str
    kernel: int
    stride: int
    padding: int
    in_channels: int
    out_channels: int
    skips: tuple[int, ...]


class CompressionSpace(SearchSpace):
    """Students of one teacher (ESNAC §3.1); see the module docstring for encoding and operations.

    Args:
        teacher: the trained teacher network (kept, in eval mode, for weight inheritance).
        input_shape: ``(C, H, W)`` of one input image.
        name: the space name stored in architectures.
        min_width: fewest channels/features a shrunk layer keeps.
        remove_prob, shrink_prob, skip_prob: :meth:`sample`'s per-layer chance of removal and
            shrinkage and per-node chance of a new skip (ESNAC samples random compressions).

    Example:
        >>> import torchvision
        >>> space = CompressionSpace(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
        >>> student = space.sample(np.random.default_rng(0))
    """

    def __init__(
        self,
        teacher: nn.Module,
        input_shape: Sequence[int],
        *,
        name: str = "compression",
        min_width: int = 2,
        remove_prob: float = 0.2,
        shrink_prob: float = 0.6,
        skip_prob: float = 0.05,
    ) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        self.teacher = teacher.eval()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.name = name
        self.min_width = int(min_width)
        self.remove_prob, self.shrink_prob, self.skip_prob = float(remove_prob), float(shrink_prob), float(skip_prob)
        self.layers, self.skips = flatten_teacher(teacher)
        self._teacher_skips = {(s.source, s.target): s for s in self.skips}
        net = [_Layer(t, lay.width, ()) for t, lay in enumerate(self.layers)]
        for s in self.skips:
            net[s.target - 1].skips += (s.source,)
        self.teacher_arch = self._arch(net)
        self._fc_limit: dict[int, int] = {}
        shapes = self._shapes(net)
        self._fc_limit = {t: shapes[t][0] for t, lay in enumerate(self.layers) if lay.kind == "fc"}

    # ------------------------------------------------------------ properties
    @property
    def op_choices(self) -> tuple[str, ...]:
        return KINDS

    def max_nodes(self) -> int:
        return len(self.layers) + 2

    def enumerate(self) -> Iterator[Architecture]:
        raise InfiniteSpaceError(f"the compression space {self.name!r} is too large to enumerate")

    # ------------------------------------------------------------- encoding
    def _format(self, layer: _Layer) -> str:
        kind = self.layers[layer.t].kind
        text = f"{layer.t}:{kind}"
        if kind in WIDTH_KINDS:
            text += f":{layer.width}"
        if layer.skips:
            text += "<" + ",".join(str(u) for u in sorted(set(layer.skips)))
        return text

    def _arch(self, net: list[_Layer]) -> Architecture:
        return Architecture(self.name, (INPUT_OP, *(self._format(lay) for lay in net), OUTPUT_OP))

    def _net(self, arch: Architecture) -> list[_Layer]:
        self.check_space(arch)
        ops = arch.ops
        if arch.matrix is not None:
            raise InvalidArchitectureError("compression architectures have no matrix (skips live in the layers)")
        if len(ops) < 3 or ops[0] != INPUT_OP or ops[-1] != OUTPUT_OP:
            raise InvalidArchitectureError(f"ops must be 'input', layers..., 'output', got {list(ops)[:3]}...")
        net: list[_Layer] = []
        for k, text in enumerate(ops[1:-1], start=1):
            match = _LAYER_RE.match(text)
            if match is None:
                raise InvalidArchitectureError(f"layer {k}: cannot read {text!r} (format 't:kind[:width][<u,v]')")
            t, kind, width, skips = int(match[1]), match[2], match[3], match[4]
            if t >= len(self.layers) or self.layers[t].kind != kind:
                raise InvalidArchitectureError(f"layer {k}: {text!r} does not name a {kind!r} layer of the teacher")
            if (width is None) != (kind not in WIDTH_KINDS):
                raise InvalidArchitectureError(f"layer {k}: {text!r}: width is required for conv/fc and only for them")
            net.append(_Layer(t, None if width is None else int(width),
                              tuple(int(u) for u in skips.split(",")) if skips else ()))
        return net

    # -------------------------------------------------------- shape checks
    def shapes(self, arch: Architecture) -> list[tuple[int, ...]]:
        """Output shape (without batch) of every node, input first; raises if shapes do not compose."""
        return self._shapes(self._net(arch))

    def _shapes(self, net: list[_Layer]) -> list[tuple[int, ...]]:
        last = len(self.layers) - 1
        if not net or net[-1].t != last or net[-1].width != self.layers[last].width:
            raise InvalidArchitectureError(
                f"the last layer must be the teacher's classifier {last}:fc:{self.layers[last].width}"
            )
        shapes: list[tuple[int, ...]] = [self.input_shape]
        previous_t = -1
        for k, lay in enumerate(net, start=1):
            spec = self.layers[lay.t]
            where = f"layer {k} ({spec.kind}, teacher {spec.path})"
            if lay.t <= previous_t:
                raise InvalidArchitectureError(f"{where}: teacher layers must keep their order")
            previous_t = lay.t
            shape = shapes[-1]
            if spec.kind in WIDTH_KINDS and not 1 <= lay.width <= spec.width:  # type: ignore[operator]
                raise InvalidArchitectureError(f"{where}: width {lay.width} not in [1, {spec.width}]")
            if spec.kind in ("conv", "bn", "maxpool", "avgpool", "aap", "flatten") and len(shape) != 3:
                raise InvalidArchitectureError(f"{where} needs a (C, H, W) input, gets {shape}")
            if spec.kind == "fc" and len(shape) != 1:
                raise InvalidArchitectureError(f"{where} needs a flat input, gets {shape}")
            if spec.kind == "fc" and shape[0] > self._fc_limit.get(lay.t, shape[0]):
                raise InvalidArchitectureError(
                    f"{where}: {shape[0]} input features, more than the teacher's {self._fc_limit[lay.t]} "
                    "(students never grow)"
                )
            if spec.kind in ("conv", "maxpool", "avgpool"):
                c, h, w = shape
                h2 = (h + 2 * spec.padding - spec.kernel) // spec.stride + 1
                w2 = (w + 2 * spec.padding - spec.kernel) // spec.stride + 1
                if h2 < 1 or w2 < 1 or (spec.kind != "conv" and spec.padding * 2 > spec.kernel):
                    raise InvalidArchitectureError(f"{where}: a {h}x{w} input is too small")
                shape = (lay.width if spec.kind == "conv" else c, h2, w2)  # type: ignore[assignment]
            elif spec.kind == "aap":
                shape = (shape[0], *spec.size)
            elif spec.kind == "flatten":
                shape = (int(np.prod(shape)),)
            elif spec.kind == "fc":
                shape = (lay.width,)  # type: ignore[assignment]
            for u in lay.skips:
                if not 0 <= u < k:
                    raise InvalidArchitectureError(f"{where}: skip from node {u} does not come from an earlier node")
                if u == k - 1:
                    raise InvalidArchitectureError(f"{where}: skip from node {u} duplicates the chain edge")
                self._skip_kind(shapes[u], shape, where, u)
            shapes.append(shape)
        return shapes

    @staticmethod
    def _skip_kind(source: tuple[int, ...], target: tuple[int, ...], where: str, u: int) -> int:
        """The spatial stride of a skip ``source -> target`` (raises if it cannot be added)."""
        if len(source) != 3 or len(target) != 3:
            raise InvalidArchitectureError(f"{where}: skip from node {u} must join two (C, H, W) tensors")
        (_, h, w), (_, h2, w2) = source, target
        if h % h2 or w % w2 or h // h2 != w // w2:
            raise InvalidArchitectureError(f"{where}: skip from node {u}: {h}x{w} does not reduce to {h2}x{w2}")
        return h // h2

    def validate(self, arch: Architecture) -> None:
        self._shapes(self._net(arch))

    def _valid(self, net: list[_Layer]) -> bool:
        try:
            self._shapes(net)
        except InvalidArchitectureError:
            return False
        return True

    # ------------------------------------------------------- descriptors
    def descriptors(self, arch: Architecture) -> list[LayerDescriptor]:
        """The per-layer sequence the BiLSTM embeds (§3.2)."""
        net = self._net(arch)
        shapes = self._shapes(net)
        out: list[LayerDescriptor] = []
        for k, lay in enumerate(net, start=1):
            spec = self.layers[lay.t]
            out.append(LayerDescriptor(
                spec.kind, spec.kernel, spec.stride, spec.padding, int(shapes[k - 1][0]), int(shapes[k][0]),
                tuple(sorted(k - u for u in lay.skips)),
            ))
        return out

    def teacher_index(self, arch: Architecture) -> list[int]:
        """The teacher layer each student layer comes from."""
        return [lay.t for lay in self._net(arch)]

    def skip_plan(self, arch: Architecture) -> list[list[tuple[int, int, int, TeacherSkip | None]]]:
        """Per layer, its skips as ``(source node, stride, projection?, teacher skip)``; ``projection`` is 1
        when the student needs a 1x1 conv + BN (spatial change or the teacher had a downsample)."""
        net = self._net(arch)
        shapes = self._shapes(net)
        nodes_t = [0] + [lay.t + 1 for lay in net]  # teacher node of each student node
        plan = []
        for k, lay in enumerate(net, start=1):
            row = []
            for u in sorted(set(lay.skips)):
                stride = self._skip_kind(shapes[u], shapes[k], f"layer {k}", u)
                teacher = self._teacher_skips.get((nodes_t[u], lay.t + 1))
                projection = int(stride > 1 or (teacher is not None and teacher.projection is not None))
                row.append((u, stride, projection, teacher))
            plan.append(row)
        return plan

    # -------------------------------------------------------------- graphs
    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        net = self._net(arch)
        graph = nx.DiGraph()
        graph.add_node(0, **{OP_ATTR: INPUT_OP})
        for k, lay in enumerate(net, start=1):
            graph.add_node(k, **{OP_ATTR: self.layers[lay.t].kind, "units": lay.width or 0})
            graph.add_edge(k - 1, k)
            for u in lay.skips:
                graph.add_edge(u, k)
        graph.add_node(len(net) + 1, **{OP_ATTR: OUTPUT_OP})
        graph.add_edge(len(net), len(net) + 1)
        return graph

    def encode_positional(self, arch: Architecture) -> np.ndarray:
        """Per teacher layer: 0 removed, else 1 + round(8 · width / teacher width) (1 for layers without width)."""
        code = np.zeros(len(self.layers), dtype=np.int64)
        for lay in self._net(arch):
            spec = self.layers[lay.t]
            code[lay.t] = 1 + (round(8 * lay.width / spec.width) if spec.kind in WIDTH_KINDS else 0)  # type: ignore
        return code

    # ---------------------------------------------------------- operations
    def _remove(self, net: list[_Layer], k: int) -> list[_Layer]:
        """Remove layer ``k`` (1-based); skips from/to it move to node ``k - 1``, later nodes shift down."""
        out: list[_Layer] = []
        moved = net[k - 1].skips
        for j, lay in enumerate(net, start=1):
            if j == k:
                continue
            skips = tuple(u - 1 if u >= k else u for u in lay.skips)
            if j == k - 1:
                skips += moved
            new_index = j - (j > k)
            skips = tuple(sorted({u for u in skips if u < new_index - 1}))
            out.append(_Layer(lay.t, lay.width, skips))
        return out

    def apply(self, arch: Architecture, operation: str, **params: Any) -> Architecture:
        """Apply one compression operation with explicit parameters; raises if the result is invalid.

        ``remove``: ``layer`` (1-based position); ``shrink``: ``layer``, ``width``; ``skip``:
        ``source`` (node), ``layer`` (target position).
        """
        net = self._modify(self._net(arch), operation, **params)
        self._shapes(net)
        return self._arch(net)

    def _modify(self, net: list[_Layer], operation: str, **p: Any) -> list[_Layer]:
        k = int(p["layer"])
        if not 1 <= k <= len(net):
            raise InvalidArchitectureError(f"no layer {k}")
        if operation == "remove":
            if k == len(net):
                raise InvalidArchitectureError("the classifier cannot be removed")
            return self._remove(net, k)
        net = [_Layer(lay.t, lay.width, lay.skips) for lay in net]
        if operation == "shrink":
            if net[k - 1].width is None or k == len(net):
                raise InvalidArchitectureError(f"layer {k} cannot be shrunk")
            width = int(p["width"])
            if not self.min_width <= width < net[k - 1].width:  # type: ignore[operator]
                raise InvalidArchitectureError(f"shrinking layer {k} to {width} channels is not a shrinkage")
            net[k - 1].width = width
            return net
        if operation == "skip":
            u = int(p["source"])
            if u in net[k - 1].skips or not 0 <= u < k - 1:
                raise InvalidArchitectureError(f"cannot add a skip {u} -> {k}")
            net[k - 1].skips = tuple(sorted((*net[k - 1].skips, u)))
            return net
        raise ValueError(f"unknown operation {operation!r}; choose from {OPERATIONS}")

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every valid student one operation away: each removal, each shrinkage to ½ and ¾ of the width,
        each skip between compatible nodes."""
        net = self._net(arch)
        result: dict[Architecture, None] = {}
        candidates: list[tuple[str, dict]] = []
        for k, lay in enumerate(net, start=1):
            candidates.append(("remove", {"layer": k}))
            if lay.width is not None:
                for f in (0.5, 0.75):
                    candidates.append(("shrink", {"layer": k, "width": max(self.min_width, int(lay.width * f))}))
            for u in range(k - 1):
                candidates.append(("skip", {"source": u, "layer": k}))
        for operation, params in candidates:
            try:
                out = self._modify(net, operation, **params)
                if not self._valid(out):
                    continue
            except InvalidArchitectureError:
                continue
            child = self._arch(out)
            if child != arch:
                result.setdefault(child)
        return list(result)

    def _random_operation(self, net: list[_Layer], rng: np.random.Generator) -> list[_Layer]:
        operation = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
        k = int(rng.integers(1, len(net) + 1))
        if operation == "shrink":
            width = net[k - 1].width
            if width is None:
                raise InvalidArchitectureError("no width")
            return self._modify(net, "shrink", layer=k, width=max(self.min_width, int(width * rng.uniform(0.3, 0.9))))
        if operation == "skip":
            return self._modify(net, "skip", layer=k, source=int(rng.integers(0, max(k - 1, 1))))
        return self._modify(net, "remove", layer=k)

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One random compression operation (removal, shrinkage by a factor in [0.3, 0.9], or a skip)."""
        net = self._net(arch)
        for _ in range(_MUTATION_ATTEMPTS):
            try:
                out = self._random_operation(net, rng)
            except InvalidArchitectureError:
                continue
            if self._valid(out):
                child = self._arch(out)
                if child != arch:
                    return child
        raise InvalidArchitectureError(f"no valid compression of {arch} in {_MUTATION_ATTEMPTS} tries")

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random compression of the teacher (§3.3): a per-network removal, shrinkage and skip rate drawn
        around the space's settings, then every layer removed / shrunk (uniform factor in [0.1, 1)) and skips
        added at those rates; invalid removals and skips are skipped."""
        remove = rng.uniform(0, 2 * self.remove_prob)
        shrink = rng.uniform(0, min(1.0, 2 * self.shrink_prob))
        skip = rng.uniform(0, 2 * self.skip_prob)
        net = self._net(self.teacher_arch)
        k = len(net) - 1
        while k >= 1:  # removals from the back, so positions before k stay put
            if rng.random() < remove:
                candidate = self._remove(net, k)
                if self._valid(candidate):
                    net = candidate
            k -= 1
        for lay in net[:-1]:
            if lay.width is not None and rng.random() < shrink:
                lay.width = max(self.min_width, min(lay.width, int(math.ceil(lay.width * rng.uniform(0.1, 1.0)))))
        if not self._valid(net):  # a shrunk fc feeding a fixed-size layer cannot fail, but be safe
            net = self._net(self.teacher_arch)
        for k in range(2, len(net) + 1):
            if rng.random() < skip:
                u = int(rng.integers(0, k - 1))
                candidate = [_Layer(lay.t, lay.width, lay.skips) for lay in net]
                candidate[k - 1].skips = tuple(sorted({*candidate[k - 1].skips, u}))
                if self._valid(candidate):
                    net = candidate
        return self._arch(net)

    def describe(self, arch: Architecture) -> str:
        """``"0:conv:16 > 1:bn > ..."``: the layer strings joined by ``" > "``."""
        self.validate(arch)
        return " > ".join(arch.ops[1:-1])

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        if text.startswith("{"):
            return super().parse(text)
        arch = Architecture(self.name, (INPUT_OP, *(s.strip() for s in text.split(">")), OUTPUT_OP))
        self.validate(arch)
        return arch
