"""Input checks shared by every chapter module.

Each helper converts or checks one argument and, on bad input, raises a
``ValueError``/``TypeError`` whose message names the argument, what was expected
and what came: ``TypeError`` for the wrong kind of thing (a string where a number
goes, a float where an int goes), ``ValueError`` for the wrong value (NaN, infinity,
out of range, wrong shape). Kernels call these once at their edge, never inside a
hot loop.

The classes of bad input handled here, once for every chapter:

- numbers: :func:`check_int`, :func:`check_positive`, :func:`check_in_range` accept
  Python and NumPy scalars alike and refuse booleans, NaN and infinity;
- arrays: :func:`as_tensor` converts once at the edge and refuses NaN and infinity in
  floating inputs (``finite=False`` opts out), :func:`check_labels` refuses labels that
  are not whole numbers, not 1-d or outside the classes;
- models: :func:`model_device`, :func:`model_dtype`, :func:`as_model_input` (floating
  inputs converted to the model's device and dtype), :func:`eval_mode` and
  :func:`train_mode` (run in a mode, then restore the mode found);
- randomness: :func:`check_generator`;
- API changes: :func:`renamed_arguments` keeps an old keyword working for a while.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = [
    "as_model_input",
    "as_tensor",
    "check_binary",
    "check_finite",
    "check_generator",
    "check_in_range",
    "check_int",
    "check_labels",
    "check_model",
    "check_positive",
    "check_same_length",
    "describe",
    "eval_mode",
    "model_device",
    "model_dtype",
    "renamed_arguments",
    "train_mode",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Largest number of elements a kernel may allocate for one intermediate (2**31); a
#: knob that would need more is refused up front instead of exhausting memory.
MAX_ELEMENTS = 1 << 31


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
    finite: bool = True,
) -> torch.Tensor:
    """Convert a tensor, numpy array, pandas Series/DataFrame or list to a tensor.

    Tensors keep their device unless ``device`` is given; everything else lands on
    ``device`` (default CPU). ``ndim`` checks the number of dimensions. Floating
    values must be finite (NaN or infinity raise ``ValueError``) unless
    ``finite=False``.

    >>> as_tensor([1, 0, 1], "y_true", dtype=torch.int64)
    tensor([1, 0, 1])
    >>> as_tensor([[1, 2]], "x", ndim=1)
    Traceback (most recent call last):
    ...
    ValueError: x: expected a 1-d array, got tensor of shape (1, 2) and dtype torch.int64
    >>> as_tensor([0.5, float("nan")], "scores")
    Traceback (most recent call last):
    ...
    ValueError: scores: expected finite values, got 1 NaN or infinite entries
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
    if finite:
        check_finite(tensor, name)
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
    if tensor.is_floating_point() or tensor.is_complex():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{name}: expected finite values, got {bad} NaN or infinite entries")
    return tensor


def _as_real(value: Any, name: str) -> float:
    """A Python or NumPy real scalar (or a 0-d tensor/array) as float; TypeError otherwise."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        is_bool = value.dtype == torch.bool if isinstance(value, torch.Tensor) else value.dtype == np.bool_
        if not is_bool:
            value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    return float(value)


def check_positive(value: float, name: str, *, strict: bool = True) -> float:
    """Check a finite real number is > 0 (or >= 0 with ``strict=False``); return it as float.

    NaN and infinity are refused: every knob of the package is a finite number.

    >>> check_positive(0.1, "epsilon")
    0.1
    >>> check_positive(0, "epsilon")
    Traceback (most recent call last):
    ...
    ValueError: epsilon: expected a number > 0, got 0
    >>> check_positive(float("inf"), "lr")
    Traceback (most recent call last):
    ...
    ValueError: lr: expected a finite number > 0, got inf
    """
    number = _as_real(value, name)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number {'>' if strict else '>='} 0, got {number}")
    ok = number > 0 if strict else number >= 0
    if not ok:
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} 0, got {value}")
    return number


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
    number = _as_real(value, name)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below) or not math.isfinite(number):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value}")
    return number


def check_int(value: Any, name: str, *, low: int | None = 1, high: int | None = None) -> int:
    """Check a whole number (Python or NumPy integer, not bool) in ``[low, high]``; return it as int.

    A float, even ``10.0``, is a ``TypeError``: counts and sizes are integers.

    >>> check_int(np.int64(3), "steps")
    3
    >>> check_int(0, "steps")
    Traceback (most recent call last):
    ...
    ValueError: steps: expected an int >= 1, got 0
    >>> check_int(2.5, "epochs")
    Traceback (most recent call last):
    ...
    TypeError: epochs: expected an int, got float 2.5
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {describe(value)}")
    number = int(value)
    if low is not None and number < low:
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {bound}, got {number}")
    if high is not None and number > high:
        bound = f"<= {high}" if low is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {bound}, got {number}")
    return number


def check_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """Check an optional ``torch.Generator``; return it (or ``None``).

    >>> check_generator(None) is None
    True
    >>> check_generator(0)
    Traceback (most recent call last):
    ...
    TypeError: generator: expected a torch.Generator or None, got int 0
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {describe(generator)}")
    return generator


def check_labels(
    value: Any,
    name: str,
    *,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Class labels as a 1-d int64 tensor; whole-valued floats are accepted and converted.

    Refuses a 2-d array such as shape ``(N, 1)`` (which would broadcast against
    ``(N,)`` predictions into a wrong number), fractional or non-finite values, and, when
    ``num_classes`` is given, labels outside ``0 .. num_classes - 1``.

    >>> check_labels(np.array([0.0, 2.0]), "y", num_classes=3)
    tensor([0, 2])
    >>> check_labels([[0], [1]], "y")
    Traceback (most recent call last):
    ...
    ValueError: y: expected a 1-d array of class labels, got tensor of shape (2, 1) and dtype torch.int64
    >>> check_labels([0, 3], "y", num_classes=3)
    Traceback (most recent call last):
    ...
    ValueError: y: expected labels in 0..2 (the model's 3 classes), got values in [0, 3]
    """
    labels = as_tensor(value, name, device=device)
    if labels.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array of class labels, got {describe(labels)}")
    if labels.dtype == torch.bool:
        labels = labels.long()
    elif labels.is_floating_point():
        if bool((labels != labels.round()).any()):
            raise ValueError(f"{name}: expected whole-number class labels, got fractional values")
        labels = labels.long()
    elif labels.is_complex() or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{name}: expected integer class labels, got {describe(labels)}")
    labels = labels.long()
    if len(labels):
        low, high = int(labels.min()), int(labels.max())  # one host sync, at the edge
        if low < 0 or (num_classes is not None and high >= num_classes):
            expected = "non-negative labels" if num_classes is None else \
                f"labels in 0..{num_classes - 1} (the model's {num_classes} classes)"
            raise ValueError(f"{name}: expected {expected}, got values in [{low}, {high}]")
    return labels


# --------------------------------------------------------------------------- models

def check_model(model: Any, name: str = "model") -> nn.Module:
    """Check that ``model`` is a ``torch.nn.Module``; return it.

    >>> check_model("resnet")
    Traceback (most recent call last):
    ...
    TypeError: model: expected a torch.nn.Module, got str 'resnet'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {describe(model)}")
    return model


def model_device(model: nn.Module, name: str = "model") -> torch.device:
    """The device of a model's first parameter (or buffer); CPU for a model with neither.

    >>> model_device(nn.Linear(2, 1))
    device(type='cpu')
    """
    check_model(model, name)
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module, name: str = "model") -> torch.dtype:
    """The dtype of a model's first floating parameter (torch's default dtype if none).

    >>> model_dtype(nn.Linear(2, 1).double())
    torch.float64
    """
    check_model(model, name)
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def as_model_input(value: Any, name: str, model: nn.Module, *, min_ndim: int = 2,
                   allow_empty: bool = False) -> torch.Tensor:
    """A batch of model inputs on the model's device, in the model's floating dtype.

    Floating inputs of another precision (float64 or float16 into a float32 model) are
    converted at this edge, so torch never raises a dtype mismatch deep inside a layer.
    Integer inputs are refused (``TypeError``): they are token ids or labels, not
    features. Values must be finite; the batch needs at least ``min_ndim`` dimensions
    and, unless ``allow_empty``, at least one row.

    >>> as_model_input(np.zeros((3, 2)), "x", nn.Linear(2, 1)).dtype
    torch.float32
    >>> as_model_input(torch.zeros(0, 2), "x", nn.Linear(2, 1))
    Traceback (most recent call last):
    ...
    ValueError: x: expected at least one example, got tensor of shape (0, 2) and dtype torch.float32
    """
    device, dtype = model_device(model), model_dtype(model)
    tensor = as_tensor(value, name)
    if not tensor.is_floating_point():
        raise TypeError(f"{name}: expected floating-point inputs, got {describe(tensor)}")
    if tensor.ndim < min_ndim:
        raise ValueError(f"{name}: expected a batch with at least {min_ndim} dimensions (N, ...), "
                         f"got {describe(tensor)}")
    if not allow_empty and len(tensor) == 0:
        raise ValueError(f"{name}: expected at least one example, got {describe(tensor)}")
    return tensor.to(device=device, dtype=dtype)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode (dropout off, batch-norm frozen), then restore its mode.

    The package's policy: a function that changes a model's mode puts back the mode it
    found, so calling a kernel never changes how the caller's model behaves next.

    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    >>> with eval_mode(model):
    ...     model.training
    False
    >>> model.training
    True
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in train mode, then restore the mode of every submodule.

    >>> model = nn.Linear(2, 2).eval()
    >>> with train_mode(model):
    ...     model.training
    True
    >>> model.training
    False
    """
    modes = {module: module.training for module in model.modules()}
    model.train()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


# --------------------------------------------------------------------------- API changes

def renamed_arguments(**renames: str) -> Callable[[_F], _F]:
    """Keep old keyword names working: ``@renamed_arguments(nsamples="n_samples")``.

    A call with the old name gets a ``FutureWarning`` that names the new one and is
    forwarded to it; passing both is a ``TypeError``. Keep an alias for one minor
    release, then remove it.

    >>> @renamed_arguments(nsamples="n_samples")
    ... def draw(*, n_samples=10):
    ...     return n_samples
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     draw(nsamples=5), caught[0].category.__name__
    (5, 'FutureWarning')
    """
    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{function.__name__}: got both {old!r} and its new name {new!r}; "
                                        f"pass {new!r} only")
                    warnings.warn(f"{function.__name__}: {old!r} is renamed {new!r}; the old name will be "
                                  "removed in a future release", FutureWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        wrapper.__renamed_arguments__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


# --------------------------------------------------------------------------- seeds (appended for issue 9, core)

#: The largest seed: seeds are unsigned 32-bit integers, the range NumPy's global generator and
#: scikit-learn's ``random_state`` accept, so one seed works with every library of the course.
MAX_SEED = 2**32 - 1


def check_seed(value: Any, name: str = "seed") -> int:
    """Check a seed: an int (Python or NumPy, not bool) in ``[0, 2**32 - 1]``; return it as int.

    >>> check_seed(np.int64(7))
    7
    >>> check_seed(2**32)
    Traceback (most recent call last):
    ...
    ValueError: seed: expected an int in [0, 4294967295], got 4294967296
    >>> check_seed(float("nan"))
    Traceback (most recent call last):
    ...
    TypeError: seed: expected an int, got float nan
    """
    return check_int(value, name, low=0, high=MAX_SEED)
