"""The grouped architecture kernel of GP-NAS (Li et al., CVPR 2020, eqs. 6-8) and its encoding.

GP-NAS encodes an architecture as a vector ``s`` of per-layer choices and
splits the operations into types (groups) ``S = S_1 ∪ ... ∪ S_h``: kernel
sizes, expansion rates, SE on/off... Each group gets a mask ``l_i`` over the
encoding and its own amplitude:

.. math::

    k(s, u) = \\sum_{i=1}^{h} \\sigma_i^2 \\exp\\left(-\\lVert l_i \\odot (s - u) \\rVert^2\\right)
    \\qquad (eq. 7)

so that the model learns (eq. 21, marginal likelihood) how much each type of
operation matters. A sum of RBF kernels on sub-vectors, it is positive
semi-definite.

Encodings (:func:`gpnas_encoding`, :func:`groups`):

* **Positional spaces** (:class:`~raynas.spaces.positional.PositionalSpace`,
  e.g. :func:`~raynas.spaces.mobilenet.mobilenet_block_space`): one entry per
  position, as in the paper's vector of per-layer choices. Numeric choices
  (kernel 3/5/7, expansion 3/6) are scaled to ``[0, 1]`` by value, two-way
  choices (SE off/on) are ``0/1`` in the space's order, other categorical
  positions are one-hot. Groups are the *kinds of choice*: the space's
  ``position_groups`` when it defines them (MobileNet: kernel / expansion /
  SE), otherwise positions offering the same set of choices form a group.
* **NAS-Bench-201**: categorical ops on six edges have no order, so the
  encoding is one-hot per edge (30 entries, ``edge * 5 + op``). The groups
  are the *operation types*, following eq. 6: ``none``, ``skip``
  (skip_connect), ``conv`` (nor_conv_1x1 and nor_conv_3x3) and ``pool``
  (avg_pool_3x3). The ``conv`` group's sub-vector says which edges carry
  which convolution; two cells differing in one edge's conv op change only
  that group's term. Pass ``nb201_grouping="op"`` for one group per op.
* **Other spaces**: :meth:`SearchSpace.encode_onehot` with a single group
  (then eq. 7 is a plain RBF kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.kernels import Kernel
from gpytorch.priors import Prior
from torch import Tensor

from raynas.architecture import Architecture
from raynas.spaces.base import SearchSpace
from raynas.spaces.nb201 import NB201_EDGES, NB201Space
from raynas.spaces.positional import PositionalSpace

#: Operation type of each NAS-Bench-201 op (the groups S_i of eq. 6).
NB201_OP_TYPES: dict[str, str] = {
    "none": "none",
    "skip_connect": "skip",
    "nor_conv_1x1": "conv",
    "nor_conv_3x3": "conv",
    "avg_pool_3x3": "pool",
}
Grouping = Literal["type", "op"]


class GroupedKernel(Kernel):
    r"""GP-NAS kernel (eq. 7): ``k(s,u) = Σ_i σ_i² exp(-‖l_i ⊙ (s-u)‖² / ℓ_i²)``.

    One amplitude ``σ_i²`` (:attr:`outputscale`) per group of encoding
    entries. The paper's eq. 7 has no length-scales (``ℓ_i = 1``, only
    ``σ_i`` is estimated, eq. 21); ``learn_lengthscale=True`` adds one learned
    ``ℓ_i`` per group (a deviation, off by default).

    Args:
        masks: ``h x d`` boolean masks ``l_i`` (eq. 8), one row per group;
            every group must select at least one entry.
        learn_lengthscale: learn a length-scale per group.
        outputscale_prior, lengthscale_prior: optional GPyTorch priors.
        outputscale_constraint, lengthscale_constraint: default ``Positive()``.
        kwargs: passed to :class:`gpytorch.kernels.Kernel` (e.g. ``batch_shape``).

    Inputs are ``... x n x d`` encodings (:func:`gpnas_encoding`).

    Example:
        >>> from raynas.spaces import NB201Space
        >>> space = NB201Space()
        >>> kernel = GroupedKernel(groups(space))
        >>> X = torch.stack([gpnas_encoding(space, space.sample(np.random.default_rng(k))) for k in range(4)])
        >>> kernel(X).to_dense().shape
        torch.Size([4, 4])
    """

    has_lengthscale = False

    def __init__(
        self,
        masks: Tensor | Sequence[Sequence[bool]],
        *,
        learn_lengthscale: bool = False,
        outputscale_prior: Prior | None = None,
        lengthscale_prior: Prior | None = None,
        outputscale_constraint: Interval | None = None,
        lengthscale_constraint: Interval | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        masks = torch.as_tensor(masks, dtype=torch.bool)
        if masks.dim() != 2:
            raise ValueError(f"masks must be an h x d boolean matrix, got shape {tuple(masks.shape)}")
        empty = [i for i, row in enumerate(masks) if not bool(row.any())]
        if empty:
            raise ValueError(f"group masks {empty} select no entry of the encoding")
        # Plain attributes, not buffers: expand_batch must not give them batch dimensions.
        self.masks = masks
        self._index = [row.nonzero().squeeze(-1) for row in masks]
        h = masks.shape[0]
        self.num_groups = h
        self.register_parameter("raw_outputscale", torch.nn.Parameter(torch.zeros(*self.batch_shape, h)))
        self.register_constraint("raw_outputscale", outputscale_constraint or Positive())
        if outputscale_prior is not None:
            self.register_prior(
                "outputscale_prior", outputscale_prior, lambda m: m.outputscale, lambda m, v: m._set_outputscale(v)
            )
        self.learn_lengthscale = bool(learn_lengthscale)
        if self.learn_lengthscale:
            self.register_parameter(
                "raw_group_lengthscale", torch.nn.Parameter(torch.zeros(*self.batch_shape, h))
            )
            self.register_constraint("raw_group_lengthscale", lengthscale_constraint or Positive())
            if lengthscale_prior is not None:
                self.register_prior(
                    "group_lengthscale_prior", lengthscale_prior,
                    lambda m: m.group_lengthscale, lambda m, v: m._set_group_lengthscale(v),
                )
            self.group_lengthscale = torch.ones(*self.batch_shape, h)
        self.outputscale = torch.ones(*self.batch_shape, h)

    # ------------------------------------------------------------ parameters
    @property
    def outputscale(self) -> Tensor:
        """``σ_i²``, shape ``batch_shape x h``."""
        return self.raw_outputscale_constraint.transform(self.raw_outputscale)

    @outputscale.setter
    def outputscale(self, value: Tensor | float) -> None:
        self._set_outputscale(value)

    def _set_outputscale(self, value: Tensor | float) -> None:
        value = torch.as_tensor(value).to(self.raw_outputscale).expand_as(self.raw_outputscale)
        self.initialize(raw_outputscale=self.raw_outputscale_constraint.inverse_transform(value))

    @property
    def group_lengthscale(self) -> Tensor:
        """``ℓ_i``, shape ``batch_shape x h`` (all ones unless ``learn_lengthscale``)."""
        if not self.learn_lengthscale:
            return torch.ones_like(self.raw_outputscale)
        return self.raw_group_lengthscale_constraint.transform(self.raw_group_lengthscale)

    @group_lengthscale.setter
    def group_lengthscale(self, value: Tensor | float) -> None:
        self._set_group_lengthscale(value)

    def _set_group_lengthscale(self, value: Tensor | float) -> None:
        if not self.learn_lengthscale:
            raise AttributeError("this GroupedKernel has fixed length-scales (learn_lengthscale=False)")
        value = torch.as_tensor(value).to(self.raw_group_lengthscale).expand_as(self.raw_group_lengthscale)
        self.initialize(raw_group_lengthscale=self.raw_group_lengthscale_constraint.inverse_transform(value))

    # --------------------------------------------------------------- forward
    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        if params.get("last_dim_is_batch", False):
            raise NotImplementedError("GroupedKernel does not support last_dim_is_batch")
        if x1.shape[-1] != self.masks.shape[-1] or x2.shape[-1] != self.masks.shape[-1]:
            raise ValueError(
                f"GroupedKernel has masks over {self.masks.shape[-1]} encoding entries, got inputs "
                f"with {x1.shape[-1]} and {x2.shape[-1]}"
            )
        scales = self.outputscale
        lengths = self.group_lengthscale if self.learn_lengthscale else None
        result = None
        for i, index in enumerate(self._index):
            index = index.to(x1.device)
            a, b = x1.index_select(-1, index), x2.index_select(-1, index)
            if lengths is not None:
                ell = lengths[..., i].unsqueeze(-1).unsqueeze(-1)
                a, b = a / ell, b / ell
            sq = self.covar_dist(a, b, diag=diag, square_dist=True)
            scale = scales[..., i]
            scale = scale.unsqueeze(-1) if diag else scale.unsqueeze(-1).unsqueeze(-1)
            term = scale * torch.exp(-sq)
            result = term if result is None else result + term
        return result


# --------------------------------------------------------------- encodings
@dataclass(frozen=True)
class GroupedEncoding:
    """How :class:`GroupedKernel` sees a space: an encoding and the masks of its groups.

    Attributes:
        group_names: the groups' names, in mask order.
        masks: ``h x d`` boolean tensor (eq. 8).
        dim: ``d``, length of one encoding.
    """

    space_name: str
    group_names: tuple[str, ...]
    masks: Tensor
    _encode: Callable[[Architecture], np.ndarray]

    @property
    def dim(self) -> int:
        return int(self.masks.shape[-1])

    def encode(self, archs: Sequence[Architecture], dtype: torch.dtype = torch.float64) -> Tensor:
        """``n x d`` encodings of ``archs``."""
        if not len(archs):
            return torch.zeros(0, self.dim, dtype=dtype)
        return torch.as_tensor(np.stack([self._encode(a) for a in archs]), dtype=dtype)


def grouped_encoding(space: SearchSpace, nb201_grouping: Grouping = "type") -> GroupedEncoding:
    """The GP-NAS encoding and groups of ``space`` (see the module docstring)."""
    if nb201_grouping not in ("type", "op"):
        raise ValueError(f"nb201_grouping must be 'type' or 'op', got {nb201_grouping!r}")
    if isinstance(space, NB201Space):
        return _nb201_encoding(space, nb201_grouping)
    if isinstance(space, PositionalSpace):
        return _positional_encoding(space)
    width = len(space.encode_onehot(space.sample(np.random.default_rng(0))))
    return GroupedEncoding(
        space.name, ("all",), torch.ones(1, width, dtype=torch.bool),
        lambda arch: np.asarray(space.encode_onehot(arch), dtype=np.float64),
    )


def gpnas_encoding(space: SearchSpace, arch: Architecture, nb201_grouping: Grouping = "type") -> Tensor:
    """The encoding ``s`` of one architecture (1-D float64 tensor of length ``d``)."""
    space.validate(arch)
    return grouped_encoding(space, nb201_grouping).encode([arch])[0]


def groups(space: SearchSpace, nb201_grouping: Grouping = "type") -> list[Tensor]:
    """The masks ``l_i`` (eq. 8) of the space's groups: boolean tensors of length ``d``."""
    return list(grouped_encoding(space, nb201_grouping).masks)


def group_names(space: SearchSpace, nb201_grouping: Grouping = "type") -> list[str]:
    """Names of the groups, in the order of :func:`groups`."""
    return list(grouped_encoding(space, nb201_grouping).group_names)


def _nb201_encoding(space: NB201Space, grouping: Grouping) -> GroupedEncoding:
    ops = space.op_choices
    n_ops, n_edges = len(ops), len(NB201_EDGES)
    kind = {op: (NB201_OP_TYPES.get(op, op) if grouping == "type" else op) for op in ops}
    names = tuple(dict.fromkeys(kind[op] for op in ops))
    masks = torch.zeros(len(names), n_edges * n_ops, dtype=torch.bool)
    for e in range(n_edges):
        for o, op in enumerate(ops):
            masks[names.index(kind[op]), e * n_ops + o] = True
    offsets = np.arange(n_edges) * n_ops

    def encode(arch: Architecture) -> np.ndarray:
        vector = np.zeros(n_edges * n_ops)
        vector[offsets + space.encode_positional(arch)] = 1.0
        return vector

    return GroupedEncoding(space.name, names, masks, encode)


def _positional_encoding(space: PositionalSpace) -> GroupedEncoding:
    names_by_position: dict[str, str] = {}
    declared = getattr(space, "position_groups", None)
    if declared:
        for group, positions in declared.items():
            for position in positions:
                names_by_position[position] = group
    for position, choices in space.positions.items():
        names_by_position.setdefault(position, "choices=" + "|".join(choices))
    # per position: a lookup table choice index -> encoded entries
    tables: list[np.ndarray] = []
    columns: list[str] = []
    for position, choices in space.positions.items():
        numbers = _as_numbers(choices)
        if numbers is not None and len(choices) > 1:
            low, high = min(numbers), max(numbers)
            table = ((np.asarray(numbers) - low) / (high - low if high > low else 1.0))[:, None]
        elif len(choices) <= 2:
            table = np.arange(len(choices), dtype=np.float64)[:, None]
        else:
            table = np.eye(len(choices))
        tables.append(table)
        columns.extend([names_by_position[position]] * table.shape[1])
    group_order = tuple(dict.fromkeys(columns))
    masks = torch.zeros(len(group_order), len(columns), dtype=torch.bool)
    for j, group in enumerate(columns):
        masks[group_order.index(group), j] = True

    def encode(arch: Architecture) -> np.ndarray:
        index = space.encode_positional(arch)
        return np.concatenate([table[k] for table, k in zip(tables, index)])

    return GroupedEncoding(space.name, group_order, masks, encode)


def _as_numbers(choices: Sequence[str]) -> list[float] | None:
    try:
        return [float(c) for c in choices]
    except ValueError:
        return None


__all__ = [
    "NB201_OP_TYPES",
    "GroupedEncoding",
    "GroupedKernel",
    "gpnas_encoding",
    "group_names",
    "grouped_encoding",
    "groups",
]
