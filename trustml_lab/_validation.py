"""Input checks shared by every chapter module.

Each helper converts or checks one argument and, on bad input, raises a
``ValueError``/``TypeError`` whose message names the argument, what was expected
and what came. Kernels call these once at their edge, never inside a hot loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_binary",
    "check_finite",
    "check_in_range",
    "check_positive",
    "check_same_length",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages.

    >>> describe(torch.zeros(2, 3))
    'tensor of shape (2, 3) and dtype torch.float32'
    >>> describe(3)
    'int 3'
    """
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def as_tensor(
    value: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ndim: int | None = None,
) -> torch.Tensor:
    """Convert a tensor, numpy array, pandas Series/DataFrame or list to a tensor.

    Tensors keep their device unless ``device`` is given; everything else lands on
    ``device`` (default CPU). ``ndim`` checks the number of dimensions.

    >>> as_tensor([1, 0, 1], "y_true", dtype=torch.int64)
    tensor([1, 0, 1])
    >>> as_tensor([[1, 2]], "x", ndim=1)
    Traceback (most recent call last):
    ...
    ValueError: x: expected a 1-d array, got tensor of shape (1, 2) and dtype torch.int64
    """
    if value is None:
        raise TypeError(f"{name}: expected an array or tensor, got None")
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        if hasattr(value, "to_numpy"):  # pandas Series / DataFrame / Categorical
            value = value.to_numpy()
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise TypeError(f"{name}: expected numbers, got {describe(value)}")
        try:
            array = np.asarray(value)
            if not array.flags.writeable:  # pandas hands out read-only views
                array = array.copy()
            tensor = torch.as_tensor(array)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected an array or tensor, got {describe(value)}") from err
    if dtype is not None or device is not None:
        tensor = tensor.to(dtype=dtype or tensor.dtype, device=device or tensor.device)
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got {describe(tensor)}")
    return tensor


def check_same_length(**arrays: torch.Tensor | None) -> int:
    """Check that all given (non-None) arrays have the same first dimension.

    >>> check_same_length(y_true=torch.zeros(3), y_pred=torch.zeros(3))
    3
    >>> check_same_length(y_true=torch.zeros(3), y_pred=torch.zeros(4))
    Traceback (most recent call last):
    ...
    ValueError: y_pred: expected length 3 (the length of y_true), got 4
    """
    first_name, first_len = None, None
    for name, array in arrays.items():
        if array is None:
            continue
        length = len(array)
        if first_name is None:
            first_name, first_len = name, length
        elif length != first_len:
            raise ValueError(
                f"{name}: expected length {first_len} (the length of {first_name}), got {length}"
            )
    return 0 if first_len is None else first_len


def check_binary(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Check that ``tensor`` holds only 0 and 1 (or booleans); return it as int64.

    >>> check_binary(torch.tensor([0, 1, 1]), "y_pred")
    tensor([0, 1, 1])
    >>> check_binary(torch.tensor([0, 2]), "y_pred")
    Traceback (most recent call last):
    ...
    ValueError: y_pred: expected binary labels in {0, 1}, got values [0, 2]
    """
    if tensor.dtype == torch.bool:
        return tensor.long()
    if tensor.is_floating_point() and torch.isnan(tensor).any():
        raise ValueError(f"{name}: expected binary labels in {{0, 1}}, got NaN")
    bad = (tensor != 0) & (tensor != 1)
    if bool(bad.any()):
        values = torch.unique(tensor)[:6].tolist()
        shown = [int(v) if float(v).is_integer() else v for v in values]
        raise ValueError(f"{name}: expected binary labels in {{0, 1}}, got values {shown}")
    return tensor.long()


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Check that a floating tensor has no NaN or infinity.

    >>> check_finite(torch.tensor([0.5, float("nan")]), "scores")
    Traceback (most recent call last):
    ...
    ValueError: scores: expected finite values, got 1 NaN or infinite entries
    """
    if tensor.is_floating_point():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{name}: expected finite values, got {bad} NaN or infinite entries")
    return tensor


def check_positive(value: float, name: str, *, strict: bool = True) -> float:
    """Check a real number is > 0 (or >= 0 with ``strict=False``); return it as float.

    >>> check_positive(0.1, "epsilon")
    0.1
    >>> check_positive(0, "epsilon")
    Traceback (most recent call last):
    ...
    ValueError: epsilon: expected a number > 0, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    ok = value > 0 if strict else value >= 0
    if not ok or math.isnan(value):
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} 0, got {value}")
    return float(value)


def check_in_range(
    value: float,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check ``low <= value <= high`` (with open ends where asked); return it as float.

    >>> check_in_range(1e-5, "delta", 0, 1, low_open=True, high_open=True)
    1e-05
    >>> check_in_range(1.0, "delta", 0, 1, low_open=True, high_open=True)
    Traceback (most recent call last):
    ...
    ValueError: delta: expected a number in (0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below) or math.isnan(value):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value}")
    return float(value)
