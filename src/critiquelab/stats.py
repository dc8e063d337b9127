"""Statistics: every interval of the project, one bootstrap, one balanced accuracy, one Wilson interval.

`bootstrap` draws `REPS` resamples from one generator (`numpy.random.default_rng(seed)`): each
resample weights the items by how often their cluster was drawn (a cluster is a group key such as a
problem id; without keys every item is its own cluster) and, when asked, picks seeds with
replacement. The statistic is computed on every resample at once; the 95% interval is the 2.5th and
97.5th percentiles (resamples where the statistic is undefined, say one class missing, are left out).

Which clustering each table uses, and why (one choice per table):
- accuracy (report `summary`, `seed_means`): items and seeds. A benchmark item is one problem, so
  items are the clusters; seeds are resampled because the claim is about the method, not one run.
- paired comparisons (`paired_comparison`): items. Both methods answer the same items, an item's
  score is its mean over seeds, so the item is the unit and the pairing is kept.
- critics (`critic.critic_metrics`, the report's critics table) and critics compared
  (`critic_comparisons`, the paired table beside it): problems. A critic judges several sampled
  solutions of one problem, which are not independent (the same question is easy or hard for the
  critic), so a problem's solutions are resampled together; both tables use the same clustering so
  the interval of a critic and of a difference between critics mean the same thing. The paired
  table also resamples each method's seeds.
- plain accuracies of one run (eval's results.json, the critic's verdict accuracy, "names the first
  wrong step"): the Wilson score interval (`wilson_ci`), no resampling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["REPS", "balanced_accuracy", "bootstrap", "interval", "sign_flip_p", "weighted_mean", "wilson_ci"]

REPS = 5000  # resamples of every bootstrap (and sign flips of the permutation test)


def wilson_ci(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (a plain accuracy)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def interval(boots) -> list[float]:
    """The 95% percentile interval of bootstrap values (NaNs left out)."""
    boots = np.asarray(boots, dtype=float)
    return [float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975))]


def bootstrap(stat: Callable[..., np.ndarray], n_items: int, *, clusters: Sequence | None = None,
              seeds: Sequence[int] = (), reps: int = REPS, seed: int = 0) -> list[float]:
    """95% bootstrap interval of `stat(weights, *picks)`.

    `weights` is reps x n_items: how often each item's cluster was drawn (clusters drawn with
    replacement, as many as there are; `clusters` gives each item's key, default: the item itself).
    For each count k in `seeds`, `picks` gets a reps x k array of seed indices drawn with replacement.
    `stat` returns one value per resample."""
    rng = np.random.default_rng(seed)
    keys = list(range(n_items)) if clusters is None else list(clusters)
    where = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    member = np.array([where[k] for k in keys], dtype=int)
    m = len(where)
    weights = rng.multinomial(m, np.full(m, 1 / m), size=reps)[:, member].astype(float)
    picks = [rng.integers(0, k, size=(reps, k)) for k in seeds]
    with np.errstate(invalid="ignore", divide="ignore"):
        return interval(stat(weights, *picks))


def weighted_mean(x, weights: np.ndarray) -> np.ndarray:
    """Row-wise mean of x (... x items) under each resample's item weights: ... x reps."""
    return np.asarray(x, dtype=float) @ weights.T / weights.sum(axis=1)


def balanced_accuracy(hits, labels, weights: np.ndarray | None = None):
    """Mean recall of the two classes (a solution right / wrong): `hits` (... x items) says whether
    each verdict was right (a missing verdict is a miss), `labels` each item's class. A class absent
    from the data (or from a resample) is left out of the mean; with `weights` (reps x items, from
    `bootstrap`) the result has a last axis of reps."""
    h = np.asarray(hits, dtype=float)
    y = np.asarray(labels, dtype=float)
    if weights is None:
        recalls = [(h * cls).sum(axis=-1) / cls.sum() for cls in (y, 1 - y) if cls.sum()]
        return sum(recalls) / len(recalls) if recalls else 0.0
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without either class: NaN
        return np.nanmean(np.stack([(h * cls) @ weights.T / (cls @ weights.T) for cls in (y, 1 - y)]), axis=0)


def sign_flip_p(d, *, reps: int = REPS, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired differences d."""
    d = np.asarray(d, dtype=float)
    rng = np.random.default_rng(seed)
    flips = (rng.integers(0, 2, size=(reps, len(d))) * 2 - 1) * d
    return float((np.sum(np.abs(flips.mean(axis=1)) >= abs(d.mean()) - 1e-12) + 1) / (reps + 1))
