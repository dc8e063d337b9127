import numpy as np
import pytest

from critiquelab.stats import balanced_accuracy, bootstrap, weighted_mean, wilson_ci


def test_balanced_accuracy_is_the_mean_recall_of_both_classes():
    labels = [True, True, True, False]
    hits = [True, True, False, False]
    assert balanced_accuracy(hits, labels) == pytest.approx((2 / 3 + 0) / 2)
    assert balanced_accuracy(hits[:3], labels[:3]) == pytest.approx(2 / 3)  # one class: its recall
    w = np.ones((1, 4))
    assert balanced_accuracy(hits, labels, w)[0] == pytest.approx((2 / 3 + 0) / 2)


def test_bootstrap_is_reproducible_and_clusters_widen_the_interval():
    x = np.repeat(np.random.default_rng(0).random(20) > 0.5, 5).astype(float)  # 20 problems x 5 identical items
    items = bootstrap(lambda w: weighted_mean(x, w), len(x))
    problems = bootstrap(lambda w: weighted_mean(x, w), len(x), clusters=np.repeat(range(20), 5))
    assert items == bootstrap(lambda w: weighted_mean(x, w), len(x))
    assert problems[1] - problems[0] > 1.5 * (items[1] - items[0])


def test_bootstrap_resamples_seeds():
    m = np.array([[1.0] * 10, [0.0] * 10])  # two seeds that disagree on every item
    lo, hi = bootstrap(lambda w, picks: np.take_along_axis(weighted_mean(m, w).T, picks, axis=1).mean(axis=1),
                       10, seeds=[2])
    assert lo == 0.0 and hi == 1.0


def test_wilson_interval():
    lo, hi = wilson_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson_ci(0, 0) == (0.0, 0.0)
