"""Standard errors of the report's figures, from what the evaluations record.

Perplexity: the windows are the sampling unit. A window's figure is its mean NLL per predicted
token; the perplexity is ``exp`` of their mean, so the standard error of the log-perplexity (by
the delta method, the relative standard error of the perplexity) is the windows' sample standard
deviation over ``sqrt(windows)``. The gap closure is a ratio of three perplexities measured on
the same windows; its standard error is bootstrapped by resampling the windows jointly for the
three models (a fixed seed keeps the report deterministic). Zero-shot: lm-eval's per-task
standard errors, combined for a mean over tasks and for a difference of two models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: bootstrap resamples of the windows for the gap closure's standard error, and their seed
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def window_means(window_nll: Sequence[float], tokens: int) -> tuple[float, ...]:
    """Each window's mean NLL per predicted token, from the per-window NLL sums of an
    evaluation of ``tokens`` predicted tokens in all (every window predicts as many)."""
    n = len(window_nll)
    if n == 0 or tokens <= 0 or tokens % n:
        raise ValueError(f"{n} windows cannot share {tokens} predicted tokens evenly")
    per_window = tokens // n
    return tuple(float(x) / per_window for x in window_nll)


def log_ppl_se(means: Sequence[float]) -> float:
    """Standard error of the mean NLL per token over windows = relative standard error of the
    perplexity (delta method); NaN with fewer than two windows."""
    x = np.asarray(means, dtype=np.float64)
    if x.size < 2 or not np.all(np.isfinite(x)):
        return math.nan
    return float(x.std(ddof=1) / math.sqrt(x.size))


def bootstrap_indices(windows: int, resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``resamples x windows`` window indices drawn with replacement (the same for every call
    with the same arguments)."""
    return np.random.default_rng(seed).integers(0, windows, size=(resamples, windows))


def closure_draws(dense: Sequence[float], base: Sequence[float], method: Sequence[float],
                  indices: np.ndarray) -> np.ndarray:
    """The gap closure ``(ppl_base - ppl_method) / (ppl_base - ppl_dense)`` of each resample:
    row ``i`` of ``indices`` picks the same windows of all three models. Each resample's mean
    is taken of the windows' differences from the first window, so that windows that agree
    give exactly the same figure in every resample."""
    d, b, m = (np.asarray(x, dtype=np.float64) for x in (dense, base, method))
    ppl = [np.exp(x[0] + (x - x[0])[indices].mean(axis=1)) for x in (d, b, m)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ppl[1] - ppl[2]) / (ppl[1] - ppl[0])


def closure_se(dense: Sequence[float], base: Sequence[float], method: Sequence[float],
               resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
               indices: np.ndarray | None = None) -> float:
    """Bootstrap standard error (sample standard deviation over the resamples) of the gap
    closure, from the per-window mean NLLs of the dense, baseline and method models on the same
    windows. NaN when the three do not have the same windows (counts differ) or fewer than
    two, or fewer than two resamples give a finite closure."""
    n = len(dense)
    if n < 2 or len(base) != n or len(method) != n:
        return math.nan
    idx = bootstrap_indices(n, resamples, seed) if indices is None else indices
    draws = closure_draws(dense, base, method, idx)
    draws = draws[np.isfinite(draws)]
    # (shifted by the first draw, like the means: equal draws give exactly 0)
    return float((draws - draws[0]).std(ddof=1)) if draws.size >= 2 else math.nan


def mean_se(ses: Sequence[float | None]) -> float:
    """Standard error of a mean over tasks of independent figures: ``sqrt(sum se^2) / k``;
    NaN when one is missing."""
    if not ses or any(s is None or not math.isfinite(s) for s in ses):
        return math.nan
    return math.sqrt(math.fsum(s * s for s in ses)) / len(ses)


def paired_diff(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float]:
    """Mean of ``a - b`` over items both models answered, and its standard error
    ``sd(a_i - b_i) / sqrt(n)`` (sample sd): the items are shared, so what they have in common
    cancels, unlike in the unpaired ``sqrt(se_a^2 + se_b^2)``. NaN error below two items."""
    if len(a) != len(b):
        raise ValueError(f"paired difference of {len(a)} and {len(b)} items")
    n = len(a)
    d = [x - y for x, y in zip(a, b)]
    mean = math.fsum(d) / n if n else math.nan
    if n < 2:
        return mean, math.nan
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, math.sqrt(var / n)


def diff_se(se_a: float | None, se_b: float | None) -> float:
    """Standard error of the difference of two figures measured independently (unpaired)."""
    if se_a is None or se_b is None:
        return math.nan
    return math.hypot(se_a, se_b)


@dataclass(frozen=True)
class Estimate:
    """A figure with its standard error, as a table cell: ``value ± se``, with ``*`` when it is
    :attr:`significant` (``|value| > 2 se``)."""

    value: float
    se: float

    @property
    def significant(self) -> bool:
        finite = math.isfinite(self.value) and math.isfinite(self.se)
        return finite and abs(self.value) > 2 * self.se
