"""Paired significance tests over per-query scores of two systems on the same queries.

All tests are two-sided on the mean per-query difference ``b - a`` (positive = b is better).

* ``ttest``: paired t-test (``scipy.stats.ttest_rel``) with a t confidence interval.
* ``bootstrap``: paired bootstrap over queries; the p-value is the share of resampled mean
  differences at least as far from the observed mean as the observed mean is from 0 (the bootstrap
  distribution shifted to the null), with the +1 Monte-Carlo correction.
* ``randomization``: sign-flip permutation test (Fisher); exact enumeration when
  ``2**n <= n_resamples``, else ``n_resamples`` random flips with the +1 correction.

The bootstrap and randomization intervals are percentile intervals of the paired bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

Method = Literal["bootstrap", "ttest", "randomization"]

#: Resampled rows of ``n`` queries per block: bounds memory at ~32 MiB whatever n and n_resamples.
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of a paired test; ``diff = mean_b - mean_a`` and ``rel_diff = diff / |mean_a|``
    (NaN when ``mean_a`` is 0); ``[ci_low, ci_high]`` is the 95% interval of ``diff``."""

    mean_a: float
    mean_b: float
    diff: float
    rel_diff: float
    p_value: float
    ci_low: float
    ci_high: float
    method: str
    n: int


def _blocks(n: int, total: int) -> list[int]:
    size = max(1, _BLOCK_CELLS // max(n, 1))
    return [min(size, total - s) for s in range(0, total, size)]


def _bootstrap_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of the per-query differences."""
    n = len(d)
    out = [d[rng.integers(0, n, size=(b, n))].mean(axis=1) for b in _blocks(n, n_resamples)]  # (b, n) each
    return np.concatenate(out)


def _exact_flips(n: int, n_resamples: int) -> bool:
    """Enumerate all 2**n sign patterns instead of sampling when that is no more work."""
    return n < 63 and 2**n <= n_resamples


def _sign_flip_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(d)
    if _exact_flips(n, n_resamples):
        # Every one of the 2**n sign patterns once: the exact permutation distribution.
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2**n, n)
        return ((1 - 2 * bits) * d).mean(axis=1)
    out = [((1 - 2 * rng.integers(0, 2, size=(b, n))) * d).mean(axis=1) for b in _blocks(n, n_resamples)]
    return np.concatenate(out)


def _at_least(values: np.ndarray, threshold: float) -> np.ndarray:
    # Relative tolerance so that float noise in the resampled means never decides a tie.
    return values >= threshold - 1e-12 * max(1.0, abs(threshold))


def paired_test(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    method: Method = "bootstrap",
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTestResult:
    """Test whether system b's per-query scores differ from system a's (same queries, same order)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-D per-query scores of equal length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"a paired test needs at least 2 queries, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("per-query scores must be finite (found NaN or inf)")
    if method not in ("bootstrap", "ttest", "randomization"):
        raise ValueError(f"unknown method {method!r}; use 'bootstrap', 'ttest' or 'randomization'")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    d = y - x  # (n,) per-query difference
    n, mean_d = len(d), float(d.mean())
    mean_a, mean_b = float(x.mean()), float(y.mean())
    rel = mean_d / abs(mean_a) if mean_a != 0 else math.nan
    alpha = 1.0 - confidence

    if method == "ttest":
        sd = float(d.std(ddof=1))
        if sd == 0.0:
            # Every query moved by the same amount: no sampling noise at all.
            p, lo, hi = (1.0 if mean_d == 0.0 else 0.0), mean_d, mean_d
        else:
            p = float(stats.ttest_rel(y, x).pvalue)
            half = float(stats.t.ppf(1 - alpha / 2, df=n - 1)) * sd / math.sqrt(n)
            lo, hi = mean_d - half, mean_d + half
        return PairedTestResult(mean_a, mean_b, mean_d, rel, p, lo, hi, method, n)

    rng = np.random.default_rng(seed)
    boot = _bootstrap_means(d, n_resamples, rng)  # (n_resamples,)
    lo, hi = (float(v) for v in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    if method == "bootstrap":
        hits = int(_at_least(np.abs(boot - mean_d), abs(mean_d)).sum())
        p = (hits + 1) / (len(boot) + 1)
    else:
        null = _sign_flip_means(d, n_resamples, rng)
        hits = int(_at_least(np.abs(null), abs(mean_d)).sum())
        p = hits / len(null) if _exact_flips(n, n_resamples) else (hits + 1) / (len(null) + 1)
    return PairedTestResult(mean_a, mean_b, mean_d, rel, float(p), lo, hi, method, n)
