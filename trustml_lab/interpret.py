"""Chapter 3, interpretability: attributions, Shapley values, sanity checks, counterfactuals.

Every kernel is batched over examples (and over integration steps, occlusion windows,
coalitions or optimization steps), runs unchanged on any device, and matches a
reference where one exists:

=================================  ==============================================================
kernel                             reference
=================================  ==============================================================
:func:`saliency`                   captum ``Saliency``
:func:`integrated_gradients`       captum ``IntegratedGradients`` (same method and steps)
:func:`smoothgrad`                 captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``
:func:`occlusion`                  captum ``Occlusion``
:func:`shapley_values`             shap ``ExactExplainer`` with an ``Independent`` masker
:func:`kernel_shap`                shap ``KernelExplainer`` (its coalition sampling scheme)
:func:`rank_correlation`           scipy ``stats.spearmanr``, one row at a time
:func:`model_randomization_check`  Adebayo et al. (2018), cascading randomization
:func:`counterfactual`             Wachter et al. (2018), with an L1 (sparse) distance
:func:`local_surrogate`            LIME's tabular surrogate (Ribeiro et al., 2016): its kernel
=================================  ==============================================================

Explainers that take a ``model`` (a ``torch.nn.Module``, or any function of a batch)
run it in eval mode and then restore the mode they found (a train-mode batch norm would
mix the path points or noisy copies of different examples), convert ``x`` to the model's
device and dtype at the edge, take ``target`` by keyword, and take gradients with respect
to the input only, so no weight gradient is ever accumulated.

The integration rules of :func:`integrated_gradients` are :func:`_quadrature`'s, a small
function other chapters reuse (token attributions on embeddings).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ._validation import (
    MAX_ELEMENTS,
    as_model_input,
    as_tensor,
    check_generator,
    check_int,
    check_model,
    check_positive,
    describe,
    eval_mode,
    renamed_arguments,
)

__all__ = [
    "Counterfactuals",
    "LocalSurrogate",
    "RandomizationCheck",
    "ShapleyValues",
    "counterfactual",
    "integrated_gradients",
    "kernel_shap",
    "local_surrogate",
    "model_randomization_check",
    "occlusion",
    "rank_correlation",
    "saliency",
    "shapley_values",
    "smoothgrad",
]

Model = Callable[[torch.Tensor], torch.Tensor]
_F = TypeVar("_F", bound=Callable[..., Any])

#: Integration rules of :func:`integrated_gradients`, named as in captum.
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")

#: The most features :func:`shapley_values` enumerates (2**16 coalitions).
MAX_EXACT_FEATURES = 16

#: The most points :func:`_quadrature` builds (46,340): Newton's method for the
#: Gauss-Legendre nodes costs about ``steps**2`` operations, kept within ``MAX_ELEMENTS``.
MAX_STEPS = math.isqrt(MAX_ELEMENTS)

#: Default chunk, in input elements, for model evaluations that do not change the result
#: (``internal_batch_size=None``): cache-sized on a CPU (about 80 MNIST digits or 4,096
#: rows of 16 features at once, where a CPU is fastest), large on an accelerator.
CPU_CHUNK_ELEMENTS = 1 << 16
ACCELERATOR_CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- input checks

def _positional_target(function: _F) -> _F:
    """Let ``target`` (keyword-only now) still come positionally, right after the positional
    arguments, for one release, with a ``FutureWarning``."""
    parameters = inspect.signature(function).parameters.values()
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) == positional + 1:
            if "target" in kwargs:
                raise TypeError(f"{function.__name__}: got target both by position and by keyword")
            warnings.warn(f"{function.__name__}: pass target by keyword ({function.__name__}(..., target=...)); "
                          "a positional target will stop working in a future release", FutureWarning, stacklevel=2)
            *args, kwargs["target"] = args
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _model_input(model: object, x: object) -> tuple[torch.Tensor, contextlib.AbstractContextManager]:
    """``x`` ready for ``model`` (its device and dtype), and a context that runs ``model`` in eval mode.

    A ``torch.nn.Module`` gets :func:`as_model_input` and :func:`eval_mode` (its mode is
    restored afterwards); a plain function of a batch gets ``x`` as it is, checked.
    """
    if isinstance(model, nn.Module):
        return as_model_input(x, "x", model), eval_mode(model)
    if not callable(model):
        raise TypeError(f"model: expected a torch.nn.Module or a function of a batch, got {describe(model)}")
    x = as_tensor(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x: expected floating-point inputs, got {describe(x)}")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x: expected a non-empty batch of shape (N, ...), got {describe(x)}")
    return x, contextlib.nullcontext()


def _as_target(target: object, n: int, device: torch.device) -> torch.Tensor:
    """``target`` (an int, or one int per example) as an int64 tensor of length ``n``.

    Its range is checked against the model's outputs at the first model call
    (:func:`_check_target_range`).
    """
    if isinstance(target, (bool, np.bool_)) or isinstance(target, (float, np.floating)):
        raise TypeError(f"target: expected an int or a 1-d array of class indices, got {describe(target)}")
    if isinstance(target, (int, np.integer)):
        if target < 0:
            raise ValueError(f"target: expected a class index >= 0, got {int(target)}")
        return torch.full((n,), int(target), dtype=torch.long, device=device)
    target = as_tensor(target, "target", device=device)
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target: expected integer class indices, got {describe(target)}")
    if target.ndim == 0:
        target = target.expand(n)
    if target.ndim != 1 or len(target) != n:
        raise ValueError(f"target: expected an int or {n} ints (one per example), got {describe(target)}")
    return target.long()


def _check_target_range(target: torch.Tensor, outputs: torch.Tensor) -> None:
    if outputs.ndim != 2:
        raise ValueError(f"model: expected outputs of shape (N, classes), got {describe(outputs)}")
    classes = outputs.shape[1]
    low, high = int(target.min()), int(target.max())  # one host sync, at the edge
    if low < 0 or high >= classes:
        raise ValueError(f"target: expected class indices in [0, {classes - 1}] (the model's {classes} "
                         f"outputs), got values in [{low}, {high}]")


def _as_baseline(baseline: object, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """A baseline broadcast to ``x``'s shape: None (zeros), a number, or a tensor."""
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float, np.integer, np.floating)) and not isinstance(baseline, (bool, np.bool_)):
        value = float(baseline)
        if not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number or tensor, got {value}")
        return torch.full_like(x, value)
    baseline = as_tensor(baseline, name)
    if not (baseline.is_floating_point() or baseline.dtype in (torch.int64, torch.int32, torch.int16,
                                                                torch.int8, torch.uint8)):
        raise TypeError(f"{name}: expected a number or a real tensor, got {describe(baseline)}")
    baseline = baseline.to(dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(baseline, x.shape).clone()
    except RuntimeError as err:
        raise ValueError(
            f"{name}: expected a number or a tensor broadcastable to x's shape {tuple(x.shape)}, "
            f"got {describe(baseline)}"
        ) from err


def _chunk_rows(internal_batch_size: object, x: torch.Tensor, name: str = "internal_batch_size") -> int:
    """Rows per model call: ``internal_batch_size``, else a cache-sized default for ``x``'s rows.

    The default is :data:`CPU_CHUNK_ELEMENTS` input elements on a CPU (where batches
    larger than the cache are slower) and :data:`ACCELERATOR_CHUNK_ELEMENTS` elsewhere.
    """
    if internal_batch_size is not None:
        return check_int(internal_batch_size, name, low=1)
    budget = CPU_CHUNK_ELEMENTS if x.device.type == "cpu" else ACCELERATOR_CHUNK_ELEMENTS
    return max(1, budget // max(1, x[0].numel()))


def _check_size(elements: int, name: str, what: str) -> None:
    if elements > MAX_ELEMENTS:
        raise ValueError(f"{name}: {what} would hold {elements:,} elements, more than the {MAX_ELEMENTS:,} "
                         "a kernel allocates at once; ask for less")


def _input_gradient(model: Model, inputs: torch.Tensor, target: torch.Tensor, *, check: bool = False) -> torch.Tensor:
    """d model(inputs)[i, target[i]] / d inputs[i], for every row ``i`` at once."""
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = model(inputs)
        if check:
            _check_target_range(target, outputs)
        selected = outputs.gather(1, target[:, None]).sum()
        (gradient,) = torch.autograd.grad(selected, inputs)
    return gradient


@torch.no_grad()
def _target_output(model: Model, inputs: torch.Tensor, target: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([model(inputs[i:i + rows]).gather(1, target[i:i + rows, None])[:, 0]
                      for i in range(0, len(inputs), rows)])


# --------------------------------------------------------------------------- gradients

@_positional_target
def saliency(model: Model, x: torch.Tensor, *, target: int | torch.Tensor, abs: bool = True) -> torch.Tensor:
    """The gradient of the target logit with respect to the input (Simonyan et al., 2014).

    ``S(x) = |d f_target(x) / d x|`` (the signed gradient with ``abs=False``), for every
    example at once. ``target`` is one class for all examples or one class per example.
    Equals captum's ``Saliency(model).attribute(x, target=target, abs=abs)`` (on a model
    in eval mode: this function runs it in eval mode).

    >>> model = nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]))
    >>> saliency(model, torch.zeros(1, 3), target=0, abs=False)
    tensor([[ 1.0000, -2.0000,  0.5000]])
    """
    x, mode = _model_input(model, x)
    target = _as_target(target, len(x), x.device)
    with mode:
        gradient = _input_gradient(model, x, target, check=True)
    return gradient.abs() if abs else gradient


def _legendre(degree: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_degree(x)`` and its derivative, by the three-term recurrence (O(degree) per point)."""
    previous, current = np.ones_like(x), x.copy()
    for k in range(2, degree + 1):
        previous, current = current, ((2 * k - 1) * x * current - (k - 1) * previous) / k
    return current, degree * (x * current - previous) / (x * x - 1)


def _gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (ascending, in (-1, 1)) and weights of the ``steps``-point Gauss-Legendre rule.

    The same rule as numpy's ``leggauss`` (to about 1e-14), which captum calls, but by
    Newton's method on the Legendre recurrence from Tricomi's initial guesses: about
    ``steps**2`` operations and O(steps) memory, where ``leggauss`` takes the
    eigenvalues of a ``steps x steps`` matrix (``steps**3`` operations).
    """
    if steps == 1:
        return np.zeros(1), np.full(1, 2.0)
    half = (steps + 1) // 2  # the nodes are symmetric: find the non-positive half
    k = np.arange(1, half + 1)
    x = -np.cos(np.pi * (4 * k - 1) / (4 * steps + 2)) * (1 - (steps - 1) / (8 * steps ** 3))
    for _ in range(100):
        value, derivative = _legendre(steps, x)
        step = value / derivative
        x = x - step
        if np.abs(step).max() < 1e-14:
            break
    _, derivative = _legendre(steps, x)
    weights = 2 / ((1 - x * x) * derivative * derivative)
    if steps % 2:
        x[-1] = 0.0
    nodes = np.concatenate([x, -x[::-1][steps % 2:]])
    weights = np.concatenate([weights, weights[::-1][steps % 2:]])
    return nodes, weights * (2 / weights.sum())


@functools.lru_cache(maxsize=64)
def _cached_quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    if method == "gausslegendre":
        nodes, weights = _gauss_legendre(steps)
        alphas, weights = 0.5 * (1 + nodes), 0.5 * weights
    else:
        weights = np.full(steps, 1.0 / steps)
        if method == "riemann_trapezoid":
            weights[[0, -1]] /= 2
            alphas = np.linspace(0, 1, steps)
        elif method == "riemann_left":
            alphas = np.linspace(0, 1 - 1 / steps, steps)
        elif method == "riemann_middle":
            alphas = np.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps)
        else:
            alphas = np.linspace(1 / steps, 1, steps)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


def _quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alphas`` in [0, 1] and weights of an integration rule on [0, 1], as captum builds them.

    ``integral_0^1 g(a) da ~ sum_k weights[k] g(alphas[k])``. ``method`` is one of
    :data:`METHODS` (captum's names): ``"gausslegendre"`` (exact for polynomials of degree
    ``2 steps - 1``; weights sum to 1), or a Riemann rule with ``steps >= 2`` points and
    weights ``1 / steps``: ``riemann_left`` (``a = 0, 1/n, ..``), ``riemann_right``
    (``a = 1/n, .., 1``), ``riemann_middle`` (midpoints) and ``riemann_trapezoid``
    (``a = linspace(0, 1, n)``, the two end weights halved, as captum does, so its weights
    sum to ``(n - 1) / n``, not 1: it underestimates a constant integrand by ``1 / n``).
    At most :data:`MAX_STEPS` points (46,340). Float64 arrays, fresh copies of a cached rule.

    >>> alphas, weights = _quadrature("riemann_trapezoid", 4)
    >>> alphas.round(4).tolist(), weights.tolist(), float(weights.sum())
    ([0.0, 0.3333, 0.6667, 1.0], [0.125, 0.25, 0.25, 0.125], 0.75)
    >>> alphas, weights = _quadrature("gausslegendre", 3)
    >>> round(float(weights @ alphas ** 5), 12)  # exact up to degree 2 * 3 - 1
    0.166666666667
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    steps = check_int(steps, "steps", low=1, high=MAX_STEPS)
    if method != "gausslegendre" and steps < 2:
        raise ValueError(f"steps: the Riemann rules need at least 2 steps, got {steps}")
    alphas, weights = _cached_quadrature(method, steps)
    return alphas.copy(), weights.copy()


@_positional_target
def integrated_gradients(
    model: Model,
    x: torch.Tensor,
    *,
    target: int | torch.Tensor,
    baseline: float | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients (Sundararajan et al., 2017) along the straight path from ``baseline``.

    ``IG_i(x) = (x_i - x'_i) * integral_0^1 d f(x' + a (x - x')) / d x_i da``, the
    integral approximated by ``method`` with ``steps`` points (:func:`_quadrature`,
    captum's rules: ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
    ``"riemann_middle"``, ``"riemann_trapezoid"``; captum's trapezoid weights sum to
    ``(steps - 1) / steps``, so its attributions fall short of completeness by about
    ``(f(x) - f(x')) / steps``). The ``steps x N`` path points go through the model in
    chunks of whole steps, about ``internal_batch_size`` rows each (default: a
    cache-sized chunk of about 65,536 input elements on a CPU, where larger batches are
    slower, and 16 million elsewhere). Chunking does not change the result beyond float
    rounding, with one exception: with oneDNN off (as :func:`trustml_lab.setup` has it),
    PyTorch's CPU max-pooling breaks ties in its gradient differently for different batch
    sizes, so a network with max-pooling gets slightly different attributions for a
    different ``internal_batch_size`` (as in captum). ``baseline``: None (zeros), a
    number, or a tensor broadcastable to ``x``.
    With ``return_delta`` also returns the completeness error per example,
    ``sum_i IG_i - (f(x) - f(x'))``. At most 46,340 steps (:data:`MAX_STEPS`).

    Equals captum's ``IntegratedGradients(model).attribute(x, baselines=baseline,
    target=target, n_steps=steps, method=method, internal_batch_size=...,
    return_convergence_delta=return_delta)``.

    >>> model = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
    >>> x = torch.ones(3, 4)
    >>> attributions, delta = integrated_gradients(model, x, target=1, return_delta=True)
    >>> attributions.shape, bool(delta.abs().max() < 1e-4)
    (torch.Size([3, 4]), True)
    """
    x, mode = _model_input(model, x)
    alphas, weights = _quadrature(method, steps)
    steps = len(alphas)
    rows = _chunk_rows(internal_batch_size, x)
    target = _as_target(target, len(x), x.device)
    baseline = _as_baseline(baseline, x)
    alphas_t = torch.tensor(alphas, dtype=x.dtype, device=x.device)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device)
    n = len(x)
    chunk = max(1, rows // n)  # whole steps per model call, as captum splits them
    difference = x - baseline
    shape = (-1,) + (1,) * x.ndim
    total = torch.zeros_like(x)
    with mode:
        for start in range(0, steps, chunk):
            a, w = alphas_t[start:start + chunk], weights_t[start:start + chunk]
            path = (baseline + a.view(shape) * difference).reshape(-1, *x.shape[1:])
            gradient = _input_gradient(model, path, target.repeat(len(a)), check=start == 0)
            total += (gradient.view(len(a), *x.shape) * w.view(shape)).sum(dim=0)
        attributions = total * difference
        if not return_delta:
            return attributions
        ends = _target_output(model, torch.cat([x, baseline]), target.repeat(2), max(rows, 1))
    delta = attributions.reshape(n, -1).sum(dim=1) - (ends[:n] - ends[n:])
    return attributions, delta


@renamed_arguments(samples="n_samples")
@_positional_target
def smoothgrad(
    model: Model,
    x: torch.Tensor,
    *,
    target: int | torch.Tensor,
    n_samples: int = 50,
    stdev: float = 0.15,
    abs: bool = True,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): the saliency map averaged over noisy copies of ``x``.

    ``mean_k saliency(x + e_k)`` with ``e_k ~ N(0, stdev^2)`` (``stdev`` in input
    units), ``n_samples`` copies per example (``samples`` before; the old name still
    works, with a ``FutureWarning``), evaluated in chunks of about
    ``internal_batch_size`` rows (default as in :func:`integrated_gradients`). Equals
    captum's ``NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad",
    nt_samples=n_samples, stdevs=stdev, target=...)`` when both draw the same noise:
    captum draws from the global RNG, so a generator seeded with ``s`` here matches
    ``torch.manual_seed(s)`` before captum's call.

    >>> model = nn.Linear(3, 2)
    >>> g = torch.Generator().manual_seed(0)
    >>> smooth = smoothgrad(model, torch.zeros(2, 3), target=1, n_samples=8, generator=g)
    >>> torch.allclose(smooth, saliency(model, torch.zeros(2, 3), target=1))  # a linear model's gradient is constant
    True
    """
    x, mode = _model_input(model, x)
    n_samples = check_int(n_samples, "n_samples", low=1)
    stdev = check_positive(stdev, "stdev", strict=False)
    rows = _chunk_rows(internal_batch_size, x)
    generator = check_generator(generator)
    target = _as_target(target, len(x), x.device)
    n = len(x)
    _check_size(n * n_samples * x[0].numel(), "n_samples", f"{n_samples} noisy copies of {n} examples")
    noise = torch.randn((n, n_samples, *x.shape[1:]), generator=generator,
                        device=generator.device if generator is not None else x.device)
    noisy = (x[:, None] + stdev * noise.to(device=x.device, dtype=x.dtype)).reshape(n * n_samples, *x.shape[1:])
    repeated = target.repeat_interleave(n_samples)
    with mode:
        gradient = torch.cat([
            _input_gradient(model, noisy[i:i + rows], repeated[i:i + rows], check=i == 0)
            for i in range(0, n * n_samples, rows)
        ])
    gradient = gradient.abs() if abs else gradient
    return gradient.view(n, n_samples, *x.shape[1:]).mean(dim=1)


# --------------------------------------------------------------------------- occlusion

def _as_window(value: object, name: str, ndim: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (int(value),) * ndim
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name}: expected an int or {ndim} ints (one per input dimension), got {describe(value)}")
    if len(value) != ndim:
        raise ValueError(f"{name}: expected an int or {ndim} ints (one per input dimension), got {describe(value)}")
    return tuple(check_int(v, name, low=1) for v in value)


def _occlusion_masks(shape: Sequence[int], window: Sequence[int], stride: Sequence[int],
                     device: torch.device) -> torch.Tensor:
    """All window positions as 0/1 masks of shape (windows, prod(shape)), captum's positions.

    Along a dimension of size ``d`` the window starts at ``0, s, 2s, ...``,
    ``ceil((d - w) / s) + 1`` times; a last window that runs past the edge is cut.
    """
    masks = torch.ones((1, 1), device=device)
    for size, width, step in zip(shape, window, stride):
        count = math.ceil((size - width) / step) + 1
        starts = torch.arange(count, device=device)[:, None] * step
        index = torch.arange(size, device=device)[None, :]
        along = ((index >= starts) & (index < starts + width)).float()  # (count, size)
        masks = (masks[:, None, :, None] * along[None, :, None, :]).reshape(masks.shape[0] * count, -1)
    return masks


@_positional_target
def occlusion(
    model: Model,
    x: torch.Tensor,
    *,
    target: int | torch.Tensor,
    window: int | Sequence[int],
    stride: int | Sequence[int],
    baseline: float | torch.Tensor = 0.0,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Occlusion (Zeiler and Fergus, 2014): how much the target output drops when a patch is hidden.

    A ``window`` (one size per input dimension after the batch one, e.g. ``(1, 4, 4)``
    for images ``(N, 1, 28, 28)``) slides with ``stride``; each position is replaced
    by ``baseline`` and the drop ``f(x) - f(x_occluded)`` is credited to the covered
    elements, averaged over the windows covering each:
    ``O_i = mean_{w covers i} [f_target(x) - f_target(x with w hidden)]``. The occluded
    copies go through the model in chunks of about ``internal_batch_size`` rows (default
    as in :func:`integrated_gradients`). Equals captum's ``Occlusion(model).attribute(x,
    sliding_window_shapes=window, strides=stride, baselines=baseline, target=target)``.

    >>> model = nn.Linear(4, 1)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> occlusion(model, torch.ones(1, 4), target=0, window=(1,), stride=(1,)).round(decimals=4)  # w_i x_i
    tensor([[1., 2., 3., 4.]])
    """
    x, mode = _model_input(model, x)
    shape = tuple(x.shape[1:])
    window = _as_window(window, "window", len(shape))
    stride = _as_window(stride, "stride", len(shape))
    for size, width, step in zip(shape, window, stride):
        if width > size:
            raise ValueError(f"window: expected sizes at most the input's {shape}, got {window}")
        if step > width and width < size:
            raise ValueError(f"stride: expected steps no larger than the window {window}, got {stride}")
    rows = _chunk_rows(internal_batch_size, x)
    target = _as_target(target, len(x), x.device)
    baseline = _as_baseline(baseline, x)
    windows = math.prod(math.ceil((size - width) / step) + 1 for size, width, step in zip(shape, window, stride))
    _check_size(windows * x[0].numel(), "window", f"the masks of {windows:,} window positions")
    n = len(x)
    masks = _occlusion_masks(shape, window, stride, x.device).to(x.dtype)  # (W, P)
    flat_x, flat_baseline = x.reshape(n, -1), baseline.reshape(n, -1)
    with mode, torch.no_grad():
        outputs = model(x)
        _check_target_range(target, outputs)
        original = outputs.gather(1, target[:, None])[:, 0]
        chunk = max(1, rows // n)
        total = torch.zeros_like(flat_x)
        for start in range(0, len(masks), chunk):
            m = masks[start:start + chunk, None, :]  # (w, 1, P)
            hidden = flat_x * (1 - m) + flat_baseline * m  # (w, N, P)
            covered = _target_output(model, hidden.reshape(-1, *shape), target.repeat(len(m)), len(m) * n)
            total += (original - covered.view(len(m), n)).T @ masks[start:start + chunk]
    return (total / masks.sum(dim=0)).view_as(x)


# --------------------------------------------------------------------------- Shapley values

@dataclass(frozen=True)
class ShapleyValues:
    """Shapley values ``values`` (N, features[, outputs]) and the base value ``E f(background)``.

    Completeness (efficiency): ``values.sum(1) + base_values == f(x)``.
    """

    values: torch.Tensor
    base_values: torch.Tensor


def _tabular_inputs(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: object,
    background: object,
    groups: Sequence[Sequence[int]] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check ``x`` (N, M) and ``background`` (B, M); return them and the (players, M) membership."""
    if not callable(f):
        raise TypeError(f"f: expected a function of a (rows, features) tensor, got {describe(f)}")
    x = as_tensor(x, "x")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"x: expected real numbers, got {describe(x)}")
    if not x.is_floating_point():
        x = x.double()
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected a non-empty (N, features) table, got {describe(x)}")
    background = as_tensor(background, "background")
    if background.dtype == torch.bool or background.is_complex():
        raise TypeError(f"background: expected real numbers, got {describe(background)}")
    background = background.to(dtype=x.dtype, device=x.device)
    if background.ndim != 2 or background.shape[1] != x.shape[1] or background.shape[0] == 0:
        raise ValueError(f"background: expected a (rows, {x.shape[1]}) table like x, got {describe(background)}")
    m = x.shape[1]
    if groups is None:
        return x, background, torch.eye(m, dtype=torch.bool, device=x.device)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups: expected a list of lists of column indices, got {describe(groups)}")
    columns = []
    for g in groups:
        if isinstance(g, (str, bytes)) or not isinstance(g, (Sequence, np.ndarray, torch.Tensor)):
            raise TypeError(f"groups: expected a list of lists of column indices, got {describe(groups)}")
        columns.append([check_int(c.item() if isinstance(c, (torch.Tensor, np.ndarray)) else c, "groups",
                                  low=0, high=m - 1) for c in g])
    flat = sorted(c for g in columns for c in g)
    if flat != list(range(m)) or any(not g for g in columns):
        raise ValueError(f"groups: expected non-empty groups that split the columns 0..{m - 1} "
                         f"(each once), got {describe(groups)}")
    membership = torch.zeros((len(columns), m), dtype=torch.bool, device=x.device)
    for player, g in enumerate(columns):
        membership[player, g] = True
    return x, background, membership


def _coalition_values(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    coalitions: torch.Tensor,
    rows: int,
) -> torch.Tensor:
    """``v(S) = mean_b f(x_S, b_rest)`` for every coalition row (C, M) and example: (C, N[, K]), float64.

    Present features come from ``x``, absent ones from each background row (the
    interventional value function of shap's ``Independent`` masker). About ``rows``
    model rows per call of ``f`` (at least one background set).
    """
    n, b, m = len(x), len(background), x.shape[1]
    examples = max(1, min(n, rows // b))  # explained rows per call
    per_call = max(1, rows // (examples * b))  # coalitions per call
    present = coalitions.to(x.dtype)
    blocks = []
    with torch.no_grad():
        for first in range(0, n, examples):
            xs = x[first:first + examples, None, :].expand(-1, b, -1).contiguous()  # (n, B, M)
            parts = []
            for start in range(0, len(coalitions), per_call):
                keep = present[start:start + per_call, None, None, :]
                absent = background * (1 - keep)  # (c, 1, B, M): the background part of each row
                # absent + keep * x: exactly x where keep is 1 and the background row where it is 0
                # (a product by 0 or 1 and a sum with 0 round nothing), faster than torch.where
                batch = torch.addcmul(absent, keep, xs[None]).reshape(-1, m)
                out = _as_scores(f(batch), len(batch))
                parts.append(out.double().reshape(len(keep), len(xs), b, *out.shape[1:]).mean(dim=2))
            blocks.append(torch.cat(parts))
    return _check_values(torch.cat(blocks, dim=1))


def _as_scores(out: object, rows: int) -> torch.Tensor:
    """``f``'s output for ``rows`` rows, checked: (rows,) or (rows, outputs), real."""
    if not isinstance(out, torch.Tensor):
        out = as_tensor(out, "f", finite=False)
    if out.ndim not in (1, 2) or len(out) != rows:
        raise ValueError(f"f: expected one score (or one row of scores) per input row, shape ({rows},) or "
                         f"({rows}, outputs), got {describe(out)}")
    if out.dtype == torch.bool or out.is_complex():
        raise TypeError(f"f: expected real scores, got {describe(out)}")
    return out


def _check_values(value: torch.Tensor) -> torch.Tensor:
    """Coalition values are finite unless ``f`` returned NaN or infinity (one check, at the end)."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError("f: returned NaN or infinite scores for some coalitions")
    return value


def _end_values(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, background: torch.Tensor,
                rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``v(empty) = E f(background)`` and ``v(all) - v(empty) = f(x) - E f(background)``, (N[, K]) float64,
    from one pass over the background rows and one over ``x`` (not ``N x B`` rows each)."""
    with torch.no_grad():
        outputs = []
        for table in (background, x):
            parts = [_as_scores(f(table[i:i + rows]), len(table[i:i + rows])) for i in range(0, len(table), rows)]
            outputs.append(torch.cat(parts).double())
    base = _check_values(outputs[0].mean(dim=0)).expand(len(x), *outputs[0].shape[1:])
    return base, _check_values(outputs[1]) - base


def _all_coalitions(players: int, device: torch.device) -> torch.Tensor:
    """All 2**players coalitions as bool rows, coalition ``c`` holding player ``i`` iff bit ``i`` of ``c``."""
    bits = torch.arange(players, device=device)
    return (torch.arange(2 ** players, device=device)[:, None] >> bits) & 1 == 1


def _shapley_weights(coalitions: torch.Tensor) -> torch.Tensor:
    """The (players, coalitions) matrix ``W`` with ``phi = W v`` (float64).

    ``phi_i = sum_{S not i} |S|! (M-|S|-1)! / M! (v(S + i) - v(S))``: coalition ``T``
    gets ``+w(|T|-1)`` in row ``i`` when it holds ``i``, ``-w(|T|)`` when it does not.
    """
    m = coalitions.shape[1]
    size = coalitions.sum(dim=1)
    sizes = torch.arange(m, dtype=torch.float64, device=coalitions.device)
    weight = torch.exp(torch.lgamma(sizes + 1) + torch.lgamma(m - sizes) - math.lgamma(m + 1))  # w(s), s < m
    with_i = weight[(size - 1).clamp_min(0)][None, :]
    without_i = weight[size.clamp_max(m - 1)][None, :]
    return torch.where(coalitions.T, with_i, -without_i)


def _default_tabular_rows(internal_batch_size: object, x: torch.Tensor) -> int:
    """Rows per call of ``f``: ``internal_batch_size``, else 8,192 on a CPU and 262,144 elsewhere."""
    if internal_batch_size is not None:
        return check_int(internal_batch_size, "internal_batch_size", low=1)
    return 1 << 13 if x.device.type == "cpu" else 1 << 18


@renamed_arguments(batch_size="internal_batch_size")
def shapley_values(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    *,
    groups: Sequence[Sequence[int]] | None = None,
    internal_batch_size: int | None = None,
) -> ShapleyValues:
    """Exact Shapley values of ``f`` at each row of ``x``, absent features drawn from ``background``.

    The value of a coalition ``S`` is ``v(S) = mean_b f(x_S, b_rest)`` over the
    background rows ``b``; ``phi_i = sum_S |S|! (M-|S|-1)! / M! (v(S + i) - v(S))``.
    All ``2**M`` coalitions are evaluated, about ``internal_batch_size`` model rows at a
    time (``batch_size`` before; the old name still works, with a ``FutureWarning``;
    default: 8,192 on a CPU, where cache-sized batches are fastest, 262,144 on an
    accelerator), so ``M`` (the number of features, or of ``groups`` of columns that enter
    and leave together, e.g. the one-hot columns of one attribute) is at most 16. ``f``
    maps a (rows, M) tensor to (rows,) or (rows, outputs). Values are float64.

    Equals shap's ``ExactExplainer(f, shap.maskers.Independent(background,
    max_samples=len(background)))(x)`` (``.values``, ``.base_values``).

    >>> f = lambda z: 2 * z[:, 0] + z[:, 1] * z[:, 2]
    >>> result = shapley_values(f, torch.ones(1, 3), torch.zeros(1, 3))
    >>> result.values
    tensor([[2.0000, 0.5000, 0.5000]], dtype=torch.float64)
    >>> round(float(result.values.sum() + result.base_values.sum()), 6)  # = f(x)
    3.0
    """
    x, background, membership = _tabular_inputs(f, x, background, groups)
    rows = _default_tabular_rows(internal_batch_size, x)
    players = len(membership)
    if players > MAX_EXACT_FEATURES:
        what = "groups" if groups is not None else "x"
        raise ValueError(f"{what}: exact Shapley values enumerate 2**M coalitions and take at most "
                         f"{MAX_EXACT_FEATURES} features, got {players}; group columns or use kernel_shap")
    _check_size((2 ** players) * len(x), "x", f"the values of 2**{players} coalitions for {len(x)} rows")
    coalitions = _all_coalitions(players, x.device)
    columns = (coalitions.float() @ membership.float()) > 0
    value = _coalition_values(f, x, background, columns, rows)  # (C, N[, K])
    phi = torch.tensordot(_shapley_weights(coalitions), value, dims=([1], [0]))  # (M, N[, K])
    return ShapleyValues(phi.movedim(0, 1), value[0])


# --------------------------------------------------------------------------- KernelSHAP

@functools.lru_cache(maxsize=256)
def _cpu_subsets(players: int, size: int) -> torch.Tensor:
    index = torch.tensor(list(itertools.combinations(range(players), size)), dtype=torch.long).view(-1, size)
    return torch.zeros((len(index), players), dtype=torch.bool).scatter_(1, index, True)


def _subsets(players: int, size: int, device: torch.device) -> torch.Tensor:
    """All subsets of ``size`` of ``players`` players as bool rows, (C(players, size), players)."""
    return _cpu_subsets(players, size).to(device, copy=True)


def _kernel_coalitions(players: int, n_samples: int, generator: torch.Generator | None,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions (C, M) and their weights, by shap ``KernelExplainer``'s scheme (shap 0.51).

    The budget is ``min(n_samples, 2**M - 2)`` coalitions (all but the empty and the
    full one, whose values are fixed). Size ``s`` and its complement size ``M - s`` share
    the Shapley kernel's weight ``(M - 1) / (s (M - s))`` each (the middle size of an
    even ``M`` is its own complement and counts once). From the smallest size up, a size
    pair is enumerated in full while the budget left times its share of the weight left
    covers its count; each enumerated coalition gets its size's kernel weight divided by
    the count. The rest of the budget goes to paired sampling from the remaining sizes:
    a size ``s`` is drawn with probability proportional to its kernel weight (a pair's
    weight halved, since it brings two coalitions: a random subset of size ``s`` and its
    complement; a middle size brings one), a coalition drawn again adds one to its count
    and does not use the budget, so ``C`` distinct coalitions are evaluated, up to
    ``4 x`` the budget left in draws, as shap. The counts are scaled to the kernel weight
    of the sampled sizes.
    """
    m = players
    budget = min(n_samples, 2 ** m - 2) if m <= 30 else n_samples
    sizes = np.arange(1, math.ceil((m - 1) / 2) + 1)
    paired = sizes <= (m - 1) // 2
    weight = (m - 1) / (sizes * (m - sizes)) * np.where(paired, 2.0, 1.0)
    weight /= weight.sum()
    rows, weights = [], []
    left, remaining, full = budget, weight.copy(), 0
    for s, is_paired, share in zip(sizes, paired, weight):
        count = math.comb(m, int(s)) * (2 if is_paired else 1)
        if left * remaining[full] / count < 1 - 1e-8:
            break
        left -= count
        if remaining[full] < 1:
            remaining = remaining / (1 - remaining[full])
        subsets = _subsets(m, int(s), device)
        block = torch.cat([subsets, ~subsets]) if is_paired else subsets
        rows.append(block)
        weights.append(torch.full((len(block),), share / count, dtype=torch.float64, device=device))
        full += 1
    if full < len(sizes) and left > 0:
        where = generator.device if generator is not None else device
        probability = weight[full:] / np.where(paired[full:], 2.0, 1.0)
        draws = 4 * left
        size_index = torch.multinomial(torch.as_tensor(probability / probability.sum(), device=where), draws,
                                       replacement=True, generator=generator)
        size = torch.as_tensor(sizes[full:], device=where)[size_index]
        pair = torch.as_tensor(paired[full:], device=where)[size_index]
        keys = torch.rand((draws, m), generator=generator, device=where, dtype=torch.float64)
        threshold = keys.sort(dim=1).values.gather(1, size[:, None] - 1)
        drawn = keys <= threshold  # the players with the `size` smallest keys: a uniformly random subset
        if m <= 62:  # one int64 code per coalition: a 1-d unique, much faster than unique(dim=0)
            codes = (drawn.long() << torch.arange(m, device=where)).sum(dim=1)
            unique_codes, inverse = torch.unique(codes, return_inverse=True)
            unique = (unique_codes[:, None] >> torch.arange(m, device=where)) & 1 == 1
        else:
            unique, inverse = torch.unique(drawn, dim=0, return_inverse=True)
        order = torch.arange(draws, device=where)
        first = torch.full((len(unique),), draws, device=where).scatter_reduce(0, inverse, order, "amin")
        new = first[inverse] == order
        slots = new.long() * (1 + pair.long())  # budget a draw uses: 0 if seen before
        used_before = slots.cumsum(0) - slots
        active = used_before < left  # the draws made until the budget is spent
        counts = torch.bincount(inverse[active], minlength=len(unique)).double()
        added = new & active
        ids = inverse[added]
        complement = ids[pair[added] & (used_before[added] + 1 < left)]
        sampled_weight = torch.cat([counts[ids], counts[complement]])
        rows.append(torch.cat([unique[ids], ~unique[complement]]).to(device))
        weights.append((sampled_weight * (weight[full:].sum() / sampled_weight.sum())).to(device))
    return torch.cat(rows), torch.cat(weights)


@renamed_arguments(nsamples="n_samples", batch_size="internal_batch_size")
def kernel_shap(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    *,
    n_samples: int = 2048,
    groups: Sequence[Sequence[int]] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> ShapleyValues:
    """KernelSHAP (Lundberg and Lee, 2017): Shapley values from ``n_samples`` weighted coalitions.

    Fits ``v(S) - v(empty) ~ sum_{i in S} phi_i`` by least squares weighted with the
    Shapley kernel ``pi(S) = (M - 1) / (C(M, |S|) |S| (M - |S|))``, subject to
    ``sum_i phi_i = f(x) - E f(background)`` (so the values always add up: that is the
    constraint, not evidence of accuracy). The coalitions are chosen by shap
    ``KernelExplainer``'s scheme (:func:`_kernel_coalitions`: the smallest and largest
    sizes enumerated while the budget allows, then paired sampling of the remaining sizes
    with ``generator``, a repeated draw adding weight instead of a row), the same
    coalitions for every row of ``x``, all evaluated in batches of about
    ``internal_batch_size`` model rows (default as in :func:`shapley_values`).
    ``n_samples`` is shap's ``nsamples`` (this function's old name for it, like
    ``batch_size`` for ``internal_batch_size``: both still work, with a
    ``FutureWarning``); shap's default is ``2 M + 2048``.

    What holds: when ``n_samples`` covers all ``2**M - 2`` coalitions the result is the
    exact Shapley value (it equals :func:`shapley_values`, and shap's
    ``KernelExplainer(f, background).shap_values(x, nsamples=n_samples, l1_reg=False)``
    to float rounding). When the budget forces sampling, each sampled size gets its share
    of the kernel weight (the middle size of an even ``M`` included) and the error falls
    as ``n_samples`` grows, to zero once every coalition is enumerated; but the fit is a
    ratio of random sums, so not exactly unbiased. On a 10-feature network at a budget of
    300 of its 1,022 coalitions the mean over 400 seeds is within 4 standard errors of
    the exact values (over 2,000 seeds a bias of about 0.1 standard deviation of one
    estimate shows, as it does for shap's ``KernelExplainer``), and the mean squared error
    equals shap's at the same budget within its standard error (``tests/test_interpret.py``).
    shap's default ``l1_reg`` keeps only 10 features; and unlike shap, features equal to
    every background row are not dropped first (that would give each row its own
    coalitions), so on one-hot data, where many are, shap enumerates fewer players and
    its budget goes further.

    >>> f = lambda z: 2 * z[:, 0] + z[:, 1] * z[:, 2]
    >>> kernel_shap(f, torch.ones(1, 3), torch.zeros(1, 3), n_samples=64).values
    tensor([[2.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    x, background, membership = _tabular_inputs(f, x, background, groups)
    players = len(membership)
    n_samples = check_int(n_samples, "n_samples", low=2)
    rows = _default_tabular_rows(internal_batch_size, x)
    generator = check_generator(generator)
    budget = min(n_samples, 2 ** players - 2) if players <= 30 else n_samples
    _check_size(4 * budget * players, "n_samples", f"the draws of {budget:,} coalitions of {players} players")
    base, total = _end_values(f, x, background, rows)  # E f(background) and f(x) - E f(background): (N[, K])
    if players == 1:
        return ShapleyValues(total[:, None], base)
    coalitions, weight = _kernel_coalitions(players, n_samples, generator, x.device)
    value = _coalition_values(f, x, background, (coalitions.float() @ membership.float()) > 0, rows)
    z = coalitions.double()
    design = z[:, :-1] - z[:, -1:]  # the last player's value is fixed by the total
    response = (value - base) - z[:, -1].view(-1, *[1] * total.ndim) * total  # (C, N[, K])
    weighted = design * weight[:, None]
    rhs = weighted.T @ response.reshape(len(response), -1)
    # pinv: the minimum-norm solution when a tiny budget leaves the system singular
    beta = (torch.linalg.pinv(design.T @ weighted, hermitian=True) @ rhs).reshape(players - 1, *total.shape)
    phi = torch.cat([beta, (total - beta.sum(dim=0))[None]])  # (M, N[, K])
    return ShapleyValues(phi.movedim(0, 1), base)


# --------------------------------------------------------------------------- sanity check

def _as_rows(value: object, name: str) -> torch.Tensor:
    rows = as_tensor(value, name)
    if rows.dtype == torch.bool or rows.is_complex():
        raise TypeError(f"{name}: expected real numbers, got {describe(rows)}")
    if rows.ndim < 2 or rows.shape[0] == 0 or rows[0].numel() < 2:
        raise ValueError(f"{name}: expected rows of shape (N, ...) with N >= 1 and at least 2 elements per row "
                         f"(for two vectors pass a[None], b[None]), got {describe(rows)}")
    return rows


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation between ``a[i]`` and ``b[i]`` (flattened), for every row ``i``.

    ``rho_i = corr(rank(a_i), rank(b_i))``, ties sharing their average rank. Equals
    ``scipy.stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic`` for each ``i``,
    including scipy's convention for a constant row (no ranking to correlate): NaN for
    that row, with a ``RuntimeWarning`` (scipy's ``ConstantInputWarning`` is one too).
    NaN or infinite inputs are refused (scipy would propagate or mis-rank them).

    >>> rank_correlation(torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
    ...                  torch.tensor([[10.0, 20.0, 30.0], [3.0, 2.0, 2.0]]))
    tensor([ 1.0000, -0.8660], dtype=torch.float64)
    """
    a, b = _as_rows(a, "a"), _as_rows(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a, {tuple(a.shape)}, got {describe(b)}")
    b = b.to(a.device)
    ranks_a, ranks_b = _average_ranks(a.reshape(len(a), -1)), _average_ranks(b.reshape(len(b), -1))
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    spread = ranks_a.norm(dim=1) * ranks_b.norm(dim=1)
    constant = spread == 0
    if bool(constant.any()):  # one host sync, at the edge
        warnings.warn(f"rank_correlation: {int(constant.sum())} constant row(s) of a or b have no ranking; "
                      "their correlation is NaN (as scipy's spearmanr)", RuntimeWarning, stacklevel=2)
    return (ranks_a * ranks_b).sum(1) / spread


def _average_ranks(rows: torch.Tensor) -> torch.Tensor:
    """Ranks 1..P within each row, ties sharing their average rank (float64)."""
    n, p = rows.shape
    ordered, order = (rows if rows.is_floating_point() else rows.double()).sort(dim=1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    tie_group = starts.long().cumsum(dim=1) - 1 + p * torch.arange(n, device=rows.device)[:, None]
    position = torch.arange(1, p + 1, dtype=torch.float64, device=rows.device).expand(n, p).flatten()
    zeros = torch.zeros(n * p, dtype=torch.float64, device=rows.device)
    sums = zeros.index_add(0, tie_group.flatten(), position)  # integer sums: exact in any order
    counts = zeros.index_add(0, tie_group.flatten(), torch.ones_like(position))
    ranked = (sums / counts.clamp_min(1))[tie_group]
    return torch.empty_like(ranked).scatter_(1, order, ranked)


@dataclass(frozen=True)
class RandomizationCheck:
    """Similarity of explanations after randomizing the model, top layer first.

    ``layers[k]`` names the last layer randomized at step ``k`` (cascading: all layers
    above it are random too); ``similarity[k, i]`` is the rank correlation between the
    original and the randomized explanation of example ``i``.
    """

    layers: tuple[str, ...]
    similarity: torch.Tensor


def _parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))]


def _reinitialize(module: nn.Module, generator: torch.Generator | None) -> None:
    """Redraw the module's own parameters from PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    weight = getattr(module, "weight", None)
    fan_in = weight[0].numel() if isinstance(weight, torch.Tensor) and weight.ndim > 1 else 1
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            fresh = torch.rand(parameter.shape, generator=generator,
                               device=generator.device if generator is not None else parameter.device)
            parameter.copy_((2 * fresh - 1) * bound)


def _explainer(explain: Callable[..., torch.Tensor]) -> Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                                                  torch.Tensor]:
    """``explain`` called as ``explain(model, x, target=target)`` when it takes a ``target``
    keyword (every explainer here does), else as ``explain(model, x, target)``."""
    try:
        parameters = inspect.signature(explain).parameters.values()
    except (TypeError, ValueError):  # no signature to read: use the keyword
        parameters = None
    if parameters is None or any(p.kind is p.VAR_KEYWORD or (p.name == "target" and p.kind is not p.POSITIONAL_ONLY)
                                 for p in parameters):
        return lambda model, x, target: explain(model, x, target=target)
    return lambda model, x, target: explain(model, x, target)


@_positional_target
def model_randomization_check(
    model: nn.Module,
    explain: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    target: int | torch.Tensor,
    cascading: bool = True,
    absolute: bool = True,
    generator: torch.Generator | None = None,
) -> RandomizationCheck:
    """The model parameter randomization test of Adebayo et al. (2018), "Sanity checks for saliency maps".

    Randomizes the layers of a copy of ``model`` (the modules holding parameters, taken
    in definition order as the forward order, as in ``nn.Sequential``) from the top
    (output) layer down,
    cumulatively (``cascading=True``) or one at a time, redrawing weights from
    PyTorch's default initialization with ``generator``, and compares each new
    explanation ``explain(model, x, target=target)`` (or ``explain(model, x, target)``
    for a function without a ``target`` keyword, such as ``lambda m, x, t: ...``) with
    the original by Spearman rank correlation (:func:`rank_correlation`, of absolute
    values with ``absolute=True``), per example. An explanation that stays similar while
    the model is destroyed does not explain the model. The models run in eval mode;
    ``model`` itself is left unchanged, its mode included.

    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    >>> check = model_randomization_check(net, saliency, torch.randn(5, 4), target=0,
    ...                                   generator=torch.Generator().manual_seed(0))
    >>> check.layers, tuple(check.similarity.shape)
    (('2', '0'), (2, 5))
    """
    check_model(model)
    if not callable(explain):
        raise TypeError(f"explain: expected a function (model, x, target) -> attributions, got {describe(explain)}")
    x, mode = _model_input(model, x)
    target = _as_target(target, len(x), x.device)
    generator = check_generator(generator)
    layers = _parameter_layers(model)
    if not layers:
        raise ValueError("model: expected a model with parameters to randomize, got none")
    call = _explainer(explain)
    similarities = []
    with mode:
        original = _as_explanation(call(model, x, target), x)
        randomized = copy.deepcopy(model)
        random_layers = dict(_parameter_layers(randomized))
        for name, _ in reversed(layers):
            if not cascading:
                randomized = copy.deepcopy(model)
                random_layers = dict(_parameter_layers(randomized))
            _reinitialize(random_layers[name], generator)
            changed = _as_explanation(call(randomized, x, target), x)
            if absolute:
                similarities.append(rank_correlation(original.abs(), changed.abs()))
            else:
                similarities.append(rank_correlation(original, changed))
    return RandomizationCheck(tuple(name for name, _ in reversed(layers)), torch.stack(similarities))


def _as_explanation(value: object, x: torch.Tensor) -> torch.Tensor:
    explanation = as_tensor(value, "explain", finite=False)
    if explanation.shape != x.shape:
        raise ValueError(f"explain: expected attributions of x's shape {tuple(x.shape)}, got {describe(explanation)}")
    if explanation.is_floating_point() and not bool(torch.isfinite(explanation).all()):
        raise ValueError("explain: returned NaN or infinite attributions")
    return explanation.detach()


# --------------------------------------------------------------------------- counterfactuals

@dataclass(frozen=True)
class Counterfactuals:
    """Counterfactual rows ``x`` (N, M), whether each reached the target (``valid``),
    and its weighted L1 distance from the original (``distance``; inf where not valid)."""

    x: torch.Tensor
    valid: torch.Tensor
    distance: torch.Tensor


def _as_bound(value: object, name: str, x: torch.Tensor, default: float) -> torch.Tensor:
    """None (``default``), a finite number, or one finite number per feature, as a (M,) tensor."""
    if value is None:
        return torch.full_like(x[0], default)
    bound = as_tensor(value, name)
    if bound.dtype == torch.bool or bound.is_complex():
        raise TypeError(f"{name}: expected real numbers, got {describe(bound)}")
    bound = bound.to(dtype=x.dtype, device=x.device)
    if bound.ndim > 1 or bound.numel() not in (1, x.shape[1]):
        raise ValueError(f"{name}: expected a number or {x.shape[1]} numbers (one per feature), got {describe(bound)}")
    return bound.expand(x.shape[1]).clone()


def counterfactual(
    model: Model,
    x: torch.Tensor,
    *,
    target: int | torch.Tensor,
    immutable: Sequence[int] = (),
    lower: float | torch.Tensor | None = None,
    upper: float | torch.Tensor | None = None,
    scale: float | torch.Tensor | None = None,
    margin: float = 0.0,
    step_size: float = 0.02,
    steps: int = 300,
) -> Counterfactuals:
    """A small, sparse change to each row of ``x`` that makes ``model`` predict ``target``.

    Searches for ``x'`` with ``z_target - max_{j != target} z_j > margin`` (``z``: the
    logits) at a small distance ``||(x' - x) / scale||_1``, in the spirit of Wachter et
    al. (2018) with the sparse (L1) distance: each step is a steepest-descent step in
    that distance, which moves only the one feature buying the most logit margin per
    unit of ``scale``, by ``step_size * scale``. For a linear model this walks straight
    to the closest counterfactual (to within one step). Features in ``immutable``
    (column indices, e.g. age or sex) never change; every feature stays within
    ``[lower, upper]`` (None: unbounded; e.g. the data's range, so the answer stays plausible);
    ``scale`` (per feature, default 1; e.g. the standard deviations) makes features
    comparable. All rows move together for ``steps`` steps (``steps * step_size``
    bounds the distance); the result is the closest valid point reached, and
    ``valid`` is False for rows that never reached the target. The model runs in eval
    mode (its mode is restored).

    >>> model = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 3.0]])); _ = model.bias.zero_()
    >>> result = counterfactual(model, torch.tensor([[-1.0, -1.0]]), target=1, immutable=[1])
    >>> bool(result.valid[0]), float(result.x[0, 1])  # feature 1 may not move
    (True, -1.0)
    >>> round(float(result.x[0, 0]), 2)  # feature 0 moves from -1 to just past 3, in steps of 0.02
    3.02
    """
    x, mode = _model_input(model, x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a (N, features) table, got {describe(x)}")
    target = _as_target(target, len(x), x.device)
    m = x.shape[1]
    movable = torch.ones(m, dtype=torch.bool, device=x.device)
    if isinstance(immutable, (str, bytes)) or not isinstance(immutable, (Sequence, np.ndarray, torch.Tensor)):
        raise TypeError(f"immutable: expected a sequence of column indices, got {describe(immutable)}")
    for index in immutable:
        index = index.item() if isinstance(index, (torch.Tensor, np.ndarray)) else index
        if check_int(index, "immutable", low=None) not in range(-m, m):
            raise ValueError(f"immutable: expected column indices in [0, {m - 1}], got {describe(immutable)}")
        movable[int(index)] = False
    low, high = _as_bound(lower, "lower", x, -math.inf), _as_bound(upper, "upper", x, math.inf)
    if bool((low > high).any()):
        raise ValueError("lower: expected lower <= upper for every feature")
    scale = _as_bound(scale, "scale", x, 1.0)
    if bool((scale <= 0).any()):
        raise ValueError(f"scale: expected positive numbers, got {describe(scale)}")
    margin = check_positive(margin, "margin", strict=False)
    step_size = check_positive(step_size, "step_size")
    steps = check_int(steps, "steps", low=1)
    with mode:
        return _counterfactual_search(model, x, target, movable, low, high, scale, margin, step_size, steps)


def _counterfactual_search(model: Model, x: torch.Tensor, target: torch.Tensor, movable: torch.Tensor,
                           low: torch.Tensor, high: torch.Tensor, scale: torch.Tensor, margin: float,
                           step_size: float, steps: int) -> Counterfactuals:
    """The steepest-descent search of :func:`counterfactual`, on checked inputs."""
    current = torch.clamp(x, low, high)
    best = x.clone()
    best_distance = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
    rows = torch.arange(len(x), device=x.device)
    for step in range(steps + 1):
        gain, gradient = _margin_and_gradient(model, current, target, check=step == 0)
        distance = ((current - x).abs() / scale).sum(dim=1)
        better = (gain > margin) & (distance < best_distance)
        best = torch.where(better[:, None], current, best)
        best_distance = torch.where(better, distance, best_distance)
        # steepest ascent of the margin in the scaled L1 geometry: one coordinate per row, the one with
        # the largest |gradient * scale| among those with room to move, in the gradient's direction
        room = torch.where(gradient > 0, current < high, current > low) & movable
        signed = torch.where(room & (gain <= margin)[:, None], gradient * scale, 0.0)
        top, best_feature = signed.abs().max(dim=1)
        if not bool(top.any()):
            # no row moves (each has flipped, or has no room left): every later step would see the
            # same point and change nothing, so stopping here returns exactly what the full loop would
            break
        direction = signed.gather(1, best_feature[:, None])[:, 0].sign()  # 0 for a row that cannot move
        current = current.index_put((rows, best_feature), direction * step_size * scale[best_feature], accumulate=True)
        current = torch.clamp(current, low, high)
    return Counterfactuals(best, torch.isfinite(best_distance), best_distance)


def _margin_and_gradient(model: Model, inputs: torch.Tensor, target: torch.Tensor, *,
                         check: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``z_target - max_{j != target} z_j`` per row, and its gradient with respect to the row."""
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        if check:
            _check_target_range(target, logits)
        if logits.shape[1] == 2:
            # the one rival class: z_t - z_(1-t) = logits . w with w = +1 at t and -1 at the other, so the
            # gradient is one vector-Jacobian product with w (the same numbers, in half the operations)
            sign = target.to(logits.dtype) * 2 - 1
            w = torch.stack((-sign, sign), dim=1)
            (gradient,) = torch.autograd.grad(logits, inputs, grad_outputs=w)
            return (logits.detach() * w).sum(dim=1), gradient
        chosen = logits.gather(1, target[:, None])[:, 0]
        gain = chosen - logits.scatter(1, target[:, None], -math.inf).amax(dim=1)
        (gradient,) = torch.autograd.grad(gain.sum(), inputs)
    return gain.detach(), gradient


# --------------------------------------------------------------------------- local surrogate

@dataclass(frozen=True)
class LocalSurrogate:
    """A weighted linear fit ``f(z) ~ intercept + coef . (z - x)`` around each row of ``x``,
    with its weighted R^2 (``score``): how well a straight line describes the model there."""

    coef: torch.Tensor
    intercept: torch.Tensor
    score: torch.Tensor


@renamed_arguments(samples="n_samples")
def local_surrogate(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    n_samples: int = 500,
    stdev: float | torch.Tensor = 1.0,
    kernel_width: float | None = None,
    generator: torch.Generator | None = None,
) -> LocalSurrogate:
    """A local linear surrogate around each row of ``x``: LIME's tabular surrogate (Ribeiro et al., 2016).

    Draws ``n_samples`` points ``z = x + e``, ``e ~ N(0, stdev^2)`` per feature
    (``samples`` before; the old name still works, with a ``FutureWarning``), weights
    them by LIME's kernel ``pi(z) = sqrt(exp(-d^2 / kernel_width^2)) = exp(-d^2 / (2
    kernel_width^2))`` of the scaled distance ``d = ||(z - x) / stdev||`` (default width
    ``0.75 sqrt(M)``, LIME's; the kernel equals captum's
    ``get_exp_kernel_similarity_function("euclidean", kernel_width)`` on ``z / stdev``),
    and fits ``f(z)`` (a scalar per row) by weighted least squares, all rows at once.
    This is LIME's ``LimeTabularExplainer`` with ``sample_around_instance=True`` and
    ``discretize_continuous=False``, fitted without the ridge penalty LIME adds. Equals
    scikit-learn's ``LinearRegression().fit(e, f(z), sample_weight=pi)`` on the same
    points, ``score`` its weighted R^2. A ``kernel_width`` so small that fewer than
    ``M + 1`` points keep a weight above zero is refused.

    >>> f = lambda z: 3 * z[:, 0] - z[:, 1]
    >>> fit = local_surrogate(f, torch.zeros(1, 2), generator=torch.Generator().manual_seed(0))
    >>> fit.coef.round(decimals=4)
    tensor([[ 3., -1.]], dtype=torch.float64)
    """
    if not callable(f):
        raise TypeError(f"f: expected a function of a (rows, features) tensor, got {describe(f)}")
    x = as_tensor(x, "x")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"x: expected real numbers, got {describe(x)}")
    if not x.is_floating_point():
        x = x.double()
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected a non-empty (N, features) table, got {describe(x)}")
    n, m = x.shape
    n_samples = check_int(n_samples, "n_samples", low=m + 1)
    stdev = _as_bound(stdev, "stdev", x, 1.0)
    if bool((stdev <= 0).any()):
        raise ValueError(f"stdev: expected positive numbers, got {describe(stdev)}")
    width = 0.75 * math.sqrt(m) if kernel_width is None else check_positive(kernel_width, "kernel_width")
    generator = check_generator(generator)
    _check_size(n * n_samples * m, "n_samples", f"{n_samples} samples around {n} rows")
    noise = torch.randn((n, n_samples, m), generator=generator,
                        device=generator.device if generator is not None else x.device).to(x.device, x.dtype)
    offsets = noise * stdev
    log_weight = -(noise.double() ** 2).sum(dim=2) / (2 * width ** 2)  # log of LIME's kernel
    weight = torch.exp(log_weight - log_weight.amax(dim=1, keepdim=True))  # (N, S), scaled: the fit is the same
    if int((weight > 0).sum(dim=1).min()) <= m:
        raise ValueError(f"kernel_width: {width} is too narrow for stdev units: fewer than {m + 1} of the "
                         f"{n_samples} points keep a weight above 0")
    with torch.no_grad():
        points = (x[:, None] + offsets).reshape(-1, m)
        response = _as_scores(f(points), len(points))
    if response.ndim == 2 and response.shape[1] != 1:
        raise ValueError(f"f: expected one score per row, got {describe(response)}")
    response = _check_values(response.double()).reshape(n, n_samples)
    design = torch.cat([torch.ones_like(weight)[..., None], offsets.double()], dim=2)  # (N, S, 1+M)
    normal = (design * weight[..., None]).transpose(1, 2)  # X^T W
    beta = torch.linalg.solve(normal @ design, normal @ response[..., None])[..., 0]
    fitted = (design @ beta[..., None])[..., 0]
    mean = (weight * response).sum(1, keepdim=True) / weight.sum(1, keepdim=True)
    residual = (weight * (response - fitted) ** 2).sum(1)
    spread = (weight * (response - mean) ** 2).sum(1)
    return LocalSurrogate(beta[:, 1:], beta[:, 0], 1 - residual / spread.clamp_min(1e-300))
