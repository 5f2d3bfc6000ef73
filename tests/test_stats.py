"""trustml_lab._stats: the one Clopper-Pearson implementation, against scipy."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from trustml_lab._stats import clopper_pearson


@given(n=st.integers(1, 500), data=st.data(), confidence=st.floats(0.5, 0.999),
       alternative=st.sampled_from(["two-sided", "greater", "less"]))
def test_equals_scipy_binomtest(n, data, confidence, alternative):
    k = data.draw(st.integers(0, n))
    ours = clopper_pearson(k, n, confidence=confidence, alternative=alternative)
    theirs = binomtest(k, n, alternative=alternative).proportion_ci(confidence, method="exact")
    assert float(ours.low) == pytest.approx(theirs.low, abs=1e-10)
    assert float(ours.high) == pytest.approx(theirs.high, abs=1e-10)


def test_vectorized_over_successes_and_trials():
    k, n = torch.tensor([0, 3, 7]), torch.tensor([5, 10, 7])
    ci = clopper_pearson(k, n, confidence=0.9)
    for i in range(3):
        ref = binomtest(int(k[i]), int(n[i])).proportion_ci(0.9, method="exact")
        assert float(ci.low[i]) == pytest.approx(ref.low, abs=1e-12)
        assert float(ci.high[i]) == pytest.approx(ref.high, abs=1e-12)


def test_coverage_holds_at_the_stated_level_by_simulation():
    # a true p, many binomial draws: the two-sided 90% interval misses at most ~10%
    rng = np.random.default_rng(0)
    p, n, draws = 0.3, 40, 4000
    k = rng.binomial(n, p, size=draws)
    ci = clopper_pearson(k, n, confidence=0.9)
    miss = float(((ci.low > p) | (ci.high < p)).double().mean())
    assert miss <= 0.10 + 3 * (0.1 * 0.9 / draws) ** 0.5


@pytest.mark.parametrize("successes, trials, match", [
    (2.5, 10, "successes: expected whole-number"),
    (float("nan"), 10, "successes: expected finite"),
    (11, 10, r"successes: expected counts in \[0, trials\]"),
    (-1, 10, "successes"),
    (1, 0, "trials: expected at least 1"),
    (1, 10.5, "trials: expected whole-number"),
])
def test_bad_counts_are_refused_naming_the_argument(successes, trials, match):
    with pytest.raises(ValueError, match=match):
        clopper_pearson(successes, trials)


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson(1, 10, confidence=float("nan"))
    with pytest.raises(ValueError, match="alternative"):
        clopper_pearson(1, 10, alternative="two_sided")
    with pytest.raises(TypeError, match="successes"):
        clopper_pearson(torch.tensor([True]), 10)
