"""trustml_lab._validation: conversions and argument checks."""

import numpy as np
import pandas as pd
import pytest
import torch

from trustml_lab._validation import (
    as_tensor,
    check_binary,
    check_finite,
    check_in_range,
    check_positive,
    check_same_length,
)


def test_as_tensor_accepts_numpy_pandas_lists_and_keeps_device():
    expected = torch.tensor([1, 0, 1])
    for value in (np.array([1, 0, 1]), pd.Series([1, 0, 1]), [1, 0, 1], expected):
        assert torch.equal(as_tensor(value, "y"), expected)
    t = torch.zeros(2)
    assert as_tensor(t, "x") is t


@pytest.mark.parametrize("value", [None, np.array(["a", "b"], dtype=object), {"a": 1}])
def test_as_tensor_rejects_non_numbers_naming_the_argument(value):
    with pytest.raises(TypeError, match="y_true"):
        as_tensor(value, "y_true")


def test_checks_name_the_argument():
    with pytest.raises(ValueError, match="y_pred: expected length 2"):
        check_same_length(y_true=[0, 1], y_pred=[0, 1, 1])
    with pytest.raises(ValueError, match="labels: expected binary"):
        check_binary(torch.tensor([0.0, 0.5]), "labels")
    with pytest.raises(ValueError, match="labels: .*NaN"):
        check_binary(torch.tensor([0.0, float("nan")]), "labels")
    with pytest.raises(ValueError, match="scores: expected finite"):
        check_finite(torch.tensor([float("inf")]), "scores")
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        check_positive(-0.1, "eps", strict=False)
    with pytest.raises(ValueError, match="eps"):
        check_positive(float("nan"), "eps")
    with pytest.raises(TypeError, match="eps: expected a number"):
        check_positive("0.1", "eps")
    with pytest.raises(ValueError, match=r"sample_rate: expected a number in \(0, 1\]"):
        check_in_range(0.0, "sample_rate", 0, 1, low_open=True)


def test_check_binary_accepts_bools_and_returns_int64():
    out = check_binary(torch.tensor([True, False]), "y")
    assert out.dtype == torch.int64 and out.tolist() == [1, 0]


@pytest.mark.parametrize("value, error", [(-1, ValueError), (2**32, ValueError), (1.0, TypeError),
                                          (True, TypeError), (float("nan"), TypeError), ("0", TypeError)])
def test_check_seed_refuses_what_numpy_and_torch_would_not_take_alike(value, error):
    from trustml_lab._validation import check_seed

    with pytest.raises(error, match="^seed: "):
        check_seed(value)


def test_check_seed_accepts_the_whole_range_that_numpy_accepts():
    from trustml_lab._validation import MAX_SEED, check_seed

    for value in (0, np.int64(5), np.uint32(MAX_SEED), MAX_SEED):
        seed = check_seed(value)
        assert isinstance(seed, int) and seed == int(value)
        np.random.default_rng(seed)  # a seed check_seed accepts, numpy accepts too
        np.random.RandomState(seed)  # noqa: NPY002 - the legacy generator has the narrowest range
        torch.Generator().manual_seed(seed)
