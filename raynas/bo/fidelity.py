r"""Lower-fidelity results put on the full fidelity's scale: a per-rung outcome transform (Ray-free).

Under ASHA most trials stop at a cheap rung (NAS-Bench-201: 12 of 200
epochs), and their value there is not the objective: on NB201 a 12-epoch
accuracy is about 16 points below the 200-epoch one, with a rank correlation
of 0.81 over the table and the optimum 5th of 15,625 at 12 epochs. Fed as if
it were the objective, a surrogate learns that early-stopped cells are poor
by 16 points, and learns nothing about the scale of the gap.

:func:`calibrate` maps each lower rung's value onto the full fidelity with a
least-squares line fitted on the architectures observed at both (the trials
ASHA promoted, each reporting at every rung on its way):

.. math::  \hat y_{\text{full}} = a_r + b_r\, y_r, \qquad
           (a_r, b_r) = \arg\min \sum_{i \in \text{both}} (y_{i,\text{full}} - a_r - b_r y_{i,r})^2 ,

with fewer than :data:`MIN_PAIRS` pairs (or a slope that is not positive)
only the mean gap :math:`a_r = \overline{y_{\text{full}} - y_r}`, :math:`b_r = 1`,
and with no pair the value as it is. Every model-based method gets its data
through :meth:`raynas.bo.engine.BayesianOptimization.model_data`; with
``low_fidelity="calibrate"`` every surrogate (OTMANN GP, grouped-kernel GP, GCN + BLR, ESNAC's kernels) is
fitted on calibrated values, and their acquisitions target the full
fidelity: they improve on values on the full fidelity's scale (BONAS's EI
on the best full-fidelity value; GP-NAS's and NASBOT's on the best posterior
mean of the evaluated architectures).

Where this stands among multi-fidelity BO methods: MOBSTER (Klein et al.
2020) puts the resource into the GP's input with a fidelity kernel;
Hyper-Tune (Li et al. 2022) fits one surrogate per fidelity and ensembles
them, weighted by how well each ranks the full-fidelity results; BOHB
(Falkner et al. 2018) models only the highest budget with enough data. We
follow Hyper-Tune's idea of learning from the data how lower fidelities
relate to the full one, in its simplest form, a per-rung linear map.
It is an option, not the default: it makes the model's predictions of
stopped cells unbiased, but searches under ASHA measured more epochs to the
optimum with it than with the raw values (``docs/measurements.md``).
Deviation, with its reason: no fidelity kernel, because the engine's
surrogates are not all GPs (BONAS's is a GCN with Bayesian linear
regression) and one transform in the engine serves all of them.

Example::

    >>> import numpy as np
    >>> rungs = {"a": {1.0: 70.0, 2.0: 86.0}, "b": {1.0: 74.0, 2.0: 90.0}, "c": {1.0: 60.0}}
    >>> mapping = fit_rung_maps(rungs.values(), top=2.0)
    >>> round(apply_rung_map(mapping, 1.0, 60.0), 6)   # c, stopped at rung 1: put 16 points up
    76.0
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

#: Fewest architectures seen at both a rung and the full fidelity before a slope is fitted (else a shift).
MIN_PAIRS: int = 5


def fit_rung_maps(
    rung_values: Iterable[Mapping[float, float]], top: float
) -> dict[float, tuple[float, float]]:
    """``{rung: (a, b)}`` mapping each lower rung onto fidelity ``top`` (see the module docstring).

    ``rung_values`` holds, per architecture, its values by fidelity (already
    oriented, larger is better). Rungs with no architecture also seen at
    ``top`` get no map.
    """
    pairs: dict[float, list[tuple[float, float]]] = {}
    for by_rung in rung_values:
        if top not in by_rung:
            continue
        for rung, value in by_rung.items():
            if rung < top:
                pairs.setdefault(rung, []).append((value, by_rung[top]))
    maps: dict[float, tuple[float, float]] = {}
    for rung, xy in pairs.items():
        x, y = np.asarray(xy, dtype=np.float64).T
        shift = (float(np.mean(y - x)), 1.0)
        if len(xy) < MIN_PAIRS or np.ptp(x) == 0.0:
            maps[rung] = shift
            continue
        slope, intercept = np.polyfit(x, y, 1)
        maps[rung] = (float(intercept), float(slope)) if slope > 0 else shift
    return maps


def apply_rung_map(maps: Mapping[float, tuple[float, float]], rung: float, value: float) -> float:
    """``value`` measured at ``rung`` on the full fidelity's scale (unchanged without a map for the rung)."""
    a, b = maps.get(rung, (0.0, 1.0))
    return a + b * value
