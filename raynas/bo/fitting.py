"""Fitting with one fallback policy, and the libraries' diagnostics routed to :mod:`logging`.

Every model-based method fits hyperparameters by maximising a marginal
likelihood with :func:`botorch.fit.fit_gpytorch_mll`. A fit can fail
numerically (a covariance that is not positive definite after jitter, an
L-BFGS line search that diverges, a non-finite loss). The policy, the same for
every surrogate: keep a valid posterior (the hyperparameters of the last
successful fit, or the starting values), log a warning that says which model
failed and why, and carry on: a search is never aborted by a fit.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from botorch.exceptions import ModelFittingError
from botorch.exceptions.warnings import BotorchWarning
from botorch.fit import fit_gpytorch_mll
from gpytorch.utils.warnings import GPInputWarning, NumericalWarning
import botorch.settings
from torch import Tensor

logger = logging.getLogger("raynas.bo")

#: What a failed fit raises: BoTorch's fitting error (all attempts failed), linear algebra errors
#: (``NotPSDError`` and ``torch.linalg.LinAlgError`` are ``RuntimeError``s) and invalid values
#: (e.g. a prior evaluated at a parameter outside its support).
FIT_ERRORS: tuple[type[BaseException], ...] = (ModelFittingError, RuntimeError, ValueError)

T = TypeVar("T")

#: Warnings the numerical libraries emit routinely while fitting and predicting (jitter added,
#: tiny negative variances clipped, an optimiser that stopped early, input-scaling advice):
#: diagnostics, logged at DEBUG level instead of printed.
DIAGNOSTIC_WARNINGS: tuple[type[Warning], ...] = (BotorchWarning, NumericalWarning, GPInputWarning)


@contextlib.contextmanager
def diagnostics_to_log() -> Iterator[None]:
    """Route the numerical libraries' warnings raised in the block to ``logging`` (DEBUG).

    Warnings of other categories are re-emitted unchanged, so nothing is
    silenced; BoTorch's input-scaling check is off, since architecture
    encodings are not meant to lie in the unit cube.
    """
    with warnings.catch_warnings(record=True) as caught, botorch.settings.validate_input_scaling(False):
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, DIAGNOSTIC_WARNINGS):
            logger.debug("%s: %s", w.category.__name__, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def first_success(
    attempts: Sequence[tuple[str, Callable[[], T]]],
    *,
    what: str,
    errors: tuple[type[BaseException], ...] = FIT_ERRORS,
) -> T | None:
    """Run ``attempts`` (``(setting, callable)``) in order until one does not fail numerically.

    The engine's one fallback policy, for fits that are not a plain
    :func:`fit_mll` (e.g. ESNAC's kernels, learned with Adam and retried with
    more jitter): each failure (one of ``errors``) is logged as a warning
    naming ``what``, the setting and the cause; ``None`` when all fail (the
    caller then falls back further, and says what it did).

    Example:
        >>> first_success([("default", lambda: 1 / 0)], what="demo", errors=(ZeroDivisionError,)) is None
        True
    """
    for k, (setting, attempt) in enumerate(attempts):
        try:
            return attempt()
        except errors as exc:
            following = f"retrying with {attempts[k + 1][0]}" if k + 1 < len(attempts) else "giving up"
            logger.warning("%s: fit failed numerically with %s (%s: %s); %s",
                           what, setting, type(exc).__name__, exc, following)
    return None


def fit_mll(
    mll: Any,
    *,
    what: str,
    maxiter: int,
    fallback: Mapping[str, Tensor] | None = None,
    max_attempts: int = 5,
) -> bool:
    """Maximise ``mll`` with :func:`botorch.fit.fit_gpytorch_mll`; on failure fall back and log.

    Args:
        mll: a GPyTorch marginal likelihood (its ``model`` is fitted in place).
        what: the model's name in the log message (e.g. ``"GP-NAS GP"``).
        maxiter: L-BFGS iterations per attempt.
        fallback: a ``state_dict`` (possibly partial) loaded into the model when the fit
            fails, e.g. the last successful fit's; without it the model keeps the values
            it had before the fit (BoTorch rolls failed attempts back).
        max_attempts: BoTorch's attempts (later ones start from values sampled from priors).

    Returns:
        ``True`` when the fit succeeded.

    Example:
        >>> ok = fit_mll(ExactMarginalLogLikelihood(gp.likelihood, gp), what="my GP", maxiter=100)  # doctest: +SKIP
    """
    model = mll.model
    try:
        with diagnostics_to_log():
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}}, max_attempts=max_attempts)
        return True
    except FIT_ERRORS as exc:
        kept = "the last fitted hyperparameters" if fallback is not None else "its starting hyperparameters"
        logger.warning("%s: hyperparameter fit failed (%s: %s); the model keeps %s",
                       what, type(exc).__name__, exc, kept)
        if fallback is not None:
            model.load_state_dict(dict(fallback), strict=False)
        return False
    finally:
        model.eval()
