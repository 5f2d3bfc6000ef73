"""What every self-check shares: a clear pass line, or a hint raised as CheckFailed.

The rules a check follows (so that a wrong answer cannot pass and a right one is never
refused):

- compute the reference first, then call the learner's function on copies of the inputs
  (:func:`call_learner` copies tensors, arrays and pandas objects and fails an answer that
  changes its inputs in place);
- accept the number types a learner may return: Python and NumPy scalars, 0-d arrays and
  tensors (:func:`as_number`, :func:`as_array`);
- try more than one case and say which case failed and what the learner's value was
  (:func:`require_close`);
- check in the order that names the real cause first (``None``, then type and shape, then
  NaN, then values).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["CheckFailed", "as_array", "as_number", "call_learner", "passed", "require", "require_close"]


class CheckFailed(AssertionError):
    """The learner's answer is not right yet; the message says what to look at."""


def passed(name: str, detail: str = "") -> None:
    """Print the pass line of check ``name``.

    >>> passed("demo", "all 3 cases agree")
    PASS demo: all 3 cases agree
    """
    print(f"PASS {name}" + (f": {detail}" if detail else ""))


def require(condition: bool, name: str, hint: str) -> None:
    """Raise :class:`CheckFailed` with ``hint`` unless ``condition`` holds.

    >>> require(1 + 1 == 3, "demo", "1 + 1 is 2")
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. 1 + 1 is 2
    """
    if not condition:
        raise CheckFailed(f"{name}: not yet. {hint}")


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        # a tensor that requires grad is passed as is: the check differentiates through it,
        # and autograd refuses an in-place change of it anyway
        return value if value.requires_grad else value.detach().clone()
    if isinstance(value, torch.nn.Module):
        return value  # a model is the learner's to load into or train (the check says when)
    if isinstance(value, (np.ndarray, list, dict, tuple)) or hasattr(value, "copy") and hasattr(value, "iloc"):
        return copy.deepcopy(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if hasattr(a, "equals") and hasattr(a, "iloc"):  # pandas
        return bool(a.equals(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


def call_learner(name: str, function: Callable[..., Any], *args: Any, allow_none: bool = False,
                 **kwargs: Any) -> Any:
    """Call the learner's function on copies of the inputs, turning a stub or a crash into a hint.

    Fails (:class:`CheckFailed`) when the function is a stub, crashes, returns ``None``
    (unless ``allow_none``: a function that only acts, such as loading weights) or
    changes one of its array inputs in place.

    >>> call_learner("demo", lambda x: x.add_(1), torch.zeros(2))
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. your function changed its argument 1 in place; \
work on a copy (x = x.clone()) or use out-of-place operations (x + 1, not x.add_(1))
    >>> call_learner("demo", lambda x: None, torch.zeros(2))
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. your function returned None; did you forget `return`?
    """
    if not callable(function):
        raise CheckFailed(f"{name}: expected a function, got {type(function).__name__}")
    copies = [_copy(a) for a in args]
    kwcopies = {k: _copy(v) for k, v in kwargs.items()}
    try:
        result = function(*copies, **kwcopies)
    except NotImplementedError as err:
        raise CheckFailed(
            f"{name}: your function still raises NotImplementedError; replace "
            "`raise NotImplementedError()` with your code"
        ) from err
    except CheckFailed:
        raise
    except Exception as err:  # the learner's code crashed: say where, keep the cause
        raise CheckFailed(f"{name}: your function raised {type(err).__name__}: {err}") from err
    for position, (original, passed_copy) in enumerate(zip(args, copies), start=1):
        require(_same(original, passed_copy), name,
                f"your function changed its argument {position} in place; work on a copy (x = x.clone()) "
                "or use out-of-place operations (x + 1, not x.add_(1))")
    for key, original in kwargs.items():
        require(_same(original, kwcopies[key]), name, f"your function changed its argument {key!r} in place")
    if result is None and not allow_none:
        raise CheckFailed(f"{name}: not yet. your function returned None; did you forget `return`?")
    return result


def as_number(value: Any, name: str, what: str = "the result") -> float:
    """A learner's scalar as float: Python or NumPy numbers, 0-d arrays and one-element tensors.

    >>> as_number(np.float32(0.5), "demo"), as_number(torch.tensor(2), "demo"), as_number(np.array(3.0), "demo")
    (0.5, 2.0, 3.0)
    >>> as_number([1, 2], "demo")
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. return the result as one number, got list [1, 2]
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.detach().cpu().reshape(()).item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        text = repr(value)
        raise CheckFailed(f"{name}: not yet. return {what} as one number, got {type(value).__name__} "
                          f"{text[:60]}")
    return float(value)


def as_array(value: Any, name: str, what: str = "the result") -> np.ndarray:
    """A learner's array (tensor, NumPy array, list, pandas) as a float64 NumPy array.

    >>> as_array(torch.tensor([1, 2]), "demo")
    array([1., 2.])
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{name}: not yet. return {what} as numbers (a tensor or an array), got "
                          f"{type(value).__name__}") from err


def require_close(got: Any, expected: Any, name: str, *, case: str = "", what: str = "the result",
                  tol: float = 1e-6, hint: str = "") -> None:
    """Fail unless ``got`` equals ``expected`` within ``tol``, reporting shapes, NaNs and values.

    >>> require_close(torch.tensor([1.0, 2.0]), np.array([1.0, 2.5]), "demo", case="case 2")
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. case 2: the result is [1. 2.], expected [1.  2.5]
    """
    where = f"{case}: " if case else ""
    if got is None:
        raise CheckFailed(f"{name}: not yet. {where}{what} is None; did you forget `return`?")
    expected_arr = as_array(expected, name)
    if expected_arr.ndim == 0:
        got_arr = np.asarray(as_number(got, name, what))
    else:
        got_arr = as_array(got, name, what)
        require(got_arr.shape == expected_arr.shape, name,
                f"{where}{what} has shape {got_arr.shape}, expected {expected_arr.shape}")
    require(not np.isnan(got_arr).any() or np.isnan(expected_arr).any(), name,
            f"{where}{what} contains NaN: look for a division by zero or a log of 0")
    close = np.allclose(got_arr, expected_arr, rtol=tol, atol=tol, equal_nan=True)
    if not close:
        shown = np.array2string(got_arr, precision=4, threshold=8)
        wanted = np.array2string(expected_arr, precision=4, threshold=8)
        raise CheckFailed(f"{name}: not yet. {where}{what} is {shown}, expected {wanted}"
                          + (f". {hint}" if hint else ""))



