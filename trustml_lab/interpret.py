"""Chapter 3, interpretability: attributions, Shapley values, sanity checks, counterfactuals.

Every kernel is batched over examples (and over integration steps, occlusion windows,
coalitions or optimization steps), runs unchanged on any device, and matches a
reference where one exists:

===========================  ==========================================================
kernel                       reference
===========================  ==========================================================
:func:`saliency`             captum ``Saliency``
:func:`integrated_gradients` captum ``IntegratedGradients`` (same method and steps)
:func:`smoothgrad`           captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``
:func:`occlusion`            captum ``Occlusion``
:func:`shapley_values`       shap ``ExactExplainer`` with an ``Independent`` masker
:func:`kernel_shap`          shap ``KernelExplainer`` (same sampling scheme)
:func:`rank_correlation`     scipy ``stats.spearmanr``, one row at a time
:func:`model_randomization_check`  Adebayo et al. (2018), cascading randomization
:func:`counterfactual`       Wachter et al. (2018), with an L1 (sparse) distance
:func:`local_surrogate`      the idea of LIME (Ribeiro et al., 2016)
===========================  ==========================================================

Models are called as they are (put them in eval mode first); gradients are taken
with respect to the input only, so no weight gradient is ever accumulated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._validation import as_tensor, check_finite, check_positive, describe

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

#: Integration rules of :func:`integrated_gradients`, named as in captum.
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")

#: The most features :func:`shapley_values` enumerates (2**16 coalitions).
MAX_EXACT_FEATURES = 16


# --------------------------------------------------------------------------- input checks

def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _check_batch_size(value: int | None, name: str) -> int | None:
    return None if value is None else _check_int(value, name, minimum=1)


def _model_rows(batch_size: int | None, device: torch.device) -> int:
    """Rows per model call: ``batch_size``, else 8,192 on a CPU (cache-sized) and 262,144 elsewhere."""
    if batch_size is None:
        return 1 << 13 if device.type == "cpu" else 1 << 18
    return _check_int(batch_size, "batch_size", minimum=1)


def _as_input(x: object) -> torch.Tensor:
    x = as_tensor(x, "x")
    if not x.is_floating_point():
        x = x.float()
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x: expected a non-empty batch of shape (N, ...), got {describe(x)}")
    return check_finite(x, "x")


def _as_target(target: object, n: int, device: torch.device) -> torch.Tensor:
    """``target`` (an int, or one int per example) as an int64 tensor of length ``n``."""
    if isinstance(target, bool):
        raise TypeError(f"target: expected an int or a 1-d tensor of ints, got {describe(target)}")
    if isinstance(target, (int, np.integer)):
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
        raise ValueError(f"target: expected class indices in [0, {classes - 1}], got values in [{low}, {high}]")


def _as_baseline(baseline: object, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """A baseline broadcast to ``x``'s shape: None (zeros), a number, or a tensor."""
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    baseline = as_tensor(baseline, name, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(baseline, x.shape).clone()
    except RuntimeError as err:
        raise ValueError(
            f"{name}: expected a number or a tensor broadcastable to x's shape {tuple(x.shape)}, "
            f"got {describe(baseline)}"
        ) from err


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
def _target_output(model: Model, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return model(inputs).gather(1, target[:, None])[:, 0]


# --------------------------------------------------------------------------- gradients

def saliency(model: Model, x: torch.Tensor, target: int | torch.Tensor, *, abs: bool = True) -> torch.Tensor:
    """The gradient of the target logit with respect to the input (Simonyan et al., 2014).

    ``target`` is one class for all examples or one class per example. With
    ``abs=True`` (the default) returns the gradient's absolute value. Equals captum's
    ``Saliency(model).attribute(x, target=target, abs=abs)``.

    >>> model = nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]))
    >>> saliency(model, torch.zeros(1, 3), 0, abs=False)
    tensor([[ 1.0000, -2.0000,  0.5000]])
    """
    x = _as_input(x)
    target = _as_target(target, len(x), x.device)
    gradient = _input_gradient(model, x, target, check=True)
    return gradient.abs() if abs else gradient


def _quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alphas`` in [0, 1] and weights of an integration rule, as captum builds them."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if steps < 2:
        raise ValueError(f"steps: the Riemann rules need at least 2 steps, got {steps}")
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        alphas = torch.linspace(0, 1, steps)
    elif method == "riemann_left":
        alphas = torch.linspace(0, 1 - 1 / steps, steps)
    elif method == "riemann_middle":
        alphas = torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps)
    else:
        alphas = torch.linspace(1 / steps, 1, steps)
    return alphas.double().numpy(), weights


def integrated_gradients(
    model: Model,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    baseline: float | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients (Sundararajan et al., 2017) along the straight path from ``baseline``.

    ``IG_i(x) = (x_i - x'_i) * integral_0^1 d f(x' + a (x - x')) / d x_i da``, the
    integral approximated by ``method`` (captum's names: ``"gausslegendre"``,
    ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``,
    ``"riemann_trapezoid"``) with ``steps`` points. All ``steps x N`` path points go
    through the model in one batch, or in chunks of about ``internal_batch_size`` rows
    (whole steps, as captum splits them). ``baseline``: None (zeros), a number, or a
    tensor broadcastable to ``x``. With ``return_delta`` also returns the completeness
    error per example, ``sum_i IG_i - (f(x) - f(x'))``.

    Equals captum's ``IntegratedGradients(model).attribute(x, baselines=baseline,
    target=target, n_steps=steps, method=method, internal_batch_size=...,
    return_convergence_delta=return_delta)``.

    >>> model = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
    >>> x = torch.ones(3, 4)
    >>> attributions, delta = integrated_gradients(model, x, 1, return_delta=True)
    >>> attributions.shape, bool(delta.abs().max() < 1e-4)
    (torch.Size([3, 4]), True)
    """
    x = _as_input(x)
    steps = _check_int(steps, "steps", minimum=1)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    internal_batch_size = _check_batch_size(internal_batch_size, "internal_batch_size")
    target = _as_target(target, len(x), x.device)
    baseline = _as_baseline(baseline, x)
    alphas, weights = _quadrature(method, steps)
    alphas_t = torch.tensor(alphas, dtype=x.dtype, device=x.device)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device)
    n = len(x)
    chunk = steps if internal_batch_size is None else max(1, internal_batch_size // n)
    difference = x - baseline
    shape = (-1,) + (1,) * x.ndim
    total = torch.zeros_like(x)
    for start in range(0, steps, chunk):
        a, w = alphas_t[start:start + chunk], weights_t[start:start + chunk]
        path = (baseline + a.view(shape) * difference).reshape(-1, *x.shape[1:])
        gradient = _input_gradient(model, path, target.repeat(len(a)), check=start == 0)
        total += (gradient.view(len(a), *x.shape) * w.view(shape)).sum(dim=0)
    attributions = total * difference
    if not return_delta:
        return attributions
    ends = _target_output(model, torch.cat([x, baseline]), target.repeat(2))
    delta = attributions.reshape(n, -1).sum(dim=1) - (ends[:n] - ends[n:])
    return attributions, delta


def smoothgrad(
    model: Model,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    samples: int = 50,
    stdev: float = 0.15,
    abs: bool = True,
    internal_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): the saliency map averaged over noisy copies of ``x``.

    ``mean_k saliency(x + e_k)`` with ``e_k ~ N(0, stdev^2)`` (``stdev`` in input
    units), ``samples`` copies per example, evaluated in one batch (or chunks of about
    ``internal_batch_size`` rows). Equals captum's ``NoiseTunnel(Saliency(model))
    .attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=...)``
    when both draw the same noise: captum draws from the global RNG, so a generator
    seeded with ``s`` here matches ``torch.manual_seed(s)`` before captum's call.

    >>> model = nn.Linear(3, 2)
    >>> g = torch.Generator().manual_seed(0)
    >>> smooth = smoothgrad(model, torch.zeros(2, 3), 1, samples=8, generator=g)
    >>> torch.allclose(smooth, saliency(model, torch.zeros(2, 3), 1))  # a linear model's gradient is constant
    True
    """
    x = _as_input(x)
    samples = _check_int(samples, "samples", minimum=1)
    stdev = check_positive(stdev, "stdev", strict=False)
    internal_batch_size = _check_batch_size(internal_batch_size, "internal_batch_size")
    target = _as_target(target, len(x), x.device)
    n = len(x)
    noise = torch.randn((n, samples, *x.shape[1:]), generator=generator,
                        device=generator.device if generator is not None else x.device)
    noisy = (x[:, None] + stdev * noise.to(device=x.device, dtype=x.dtype)).reshape(n * samples, *x.shape[1:])
    rows = n * samples if internal_batch_size is None else internal_batch_size
    repeated = target.repeat_interleave(samples)
    gradient = torch.cat([
        _input_gradient(model, noisy[i:i + rows], repeated[i:i + rows], check=i == 0)
        for i in range(0, n * samples, rows)
    ])
    gradient = gradient.abs() if abs else gradient
    return gradient.view(n, samples, *x.shape[1:]).mean(dim=1)


# --------------------------------------------------------------------------- occlusion

def _as_window(value: object, name: str, ndim: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * ndim
    if not isinstance(value, (tuple, list)) or len(value) != ndim:
        raise ValueError(f"{name}: expected an int or {ndim} ints (one per input dimension), got {describe(value)}")
    return tuple(_check_int(v, name, minimum=1) for v in value)


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


def occlusion(
    model: Model,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    window: int | Sequence[int],
    stride: int | Sequence[int],
    baseline: float | torch.Tensor = 0.0,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Occlusion (Zeiler and Fergus, 2014): how much the target output drops when a patch is hidden.

    A ``window`` (one size per input dimension after the batch one, e.g. ``(1, 4, 4)``
    for images ``(N, 1, 28, 28)``) slides with ``stride``; each position is replaced
    by ``baseline`` and the drop ``f(x) - f(x_occluded)`` is credited to the covered
    elements, averaged over the windows covering each. All windows are evaluated in one
    batch (or chunks of about ``internal_batch_size`` rows). Equals captum's
    ``Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride,
    baselines=baseline, target=target)``.

    >>> model = nn.Linear(4, 1)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> occlusion(model, torch.ones(1, 4), 0, window=(1,), stride=(1,)).round(decimals=4)  # w_i x_i
    tensor([[1., 2., 3., 4.]])
    """
    x = _as_input(x)
    shape = tuple(x.shape[1:])
    window = _as_window(window, "window", len(shape))
    stride = _as_window(stride, "stride", len(shape))
    for size, width, step in zip(shape, window, stride):
        if width > size:
            raise ValueError(f"window: expected sizes at most the input's {shape}, got {window}")
        if step > width and width < size:
            raise ValueError(f"stride: expected steps no larger than the window {window}, got {stride}")
    internal_batch_size = _check_batch_size(internal_batch_size, "internal_batch_size")
    target = _as_target(target, len(x), x.device)
    baseline = _as_baseline(baseline, x)
    n = len(x)
    masks = _occlusion_masks(shape, window, stride, x.device).to(x.dtype)  # (W, P)
    flat_x, flat_baseline = x.reshape(n, -1), baseline.reshape(n, -1)
    with torch.no_grad():
        outputs = model(x)
        _check_target_range(target, outputs)
        original = outputs.gather(1, target[:, None])[:, 0]
        chunk = len(masks) if internal_batch_size is None else max(1, internal_batch_size // n)
        total = torch.zeros_like(flat_x)
        for start in range(0, len(masks), chunk):
            m = masks[start:start + chunk, None, :]  # (w, 1, P)
            hidden = flat_x * (1 - m) + flat_baseline * m  # (w, N, P)
            drop = original - _target_output(model, hidden.reshape(-1, *shape), target.repeat(len(m))).view(len(m), n)
            total += drop.T @ masks[start:start + chunk]
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
    if not x.is_floating_point():
        x = x.double()
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x: expected a (N, features) table, got {describe(x)}")
    background = as_tensor(background, "background", dtype=x.dtype, device=x.device)
    if background.ndim != 2 or background.shape[1] != x.shape[1] or background.shape[0] == 0:
        raise ValueError(f"background: expected a (rows, {x.shape[1]}) table like x, got {describe(background)}")
    check_finite(x, "x")
    check_finite(background, "background")
    m = x.shape[1]
    if groups is None:
        membership = torch.eye(m, dtype=torch.bool, device=x.device)
    else:
        columns = [list(map(int, g)) for g in groups]
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
    batch_size: int,
) -> torch.Tensor:
    """``v(S) = mean_b f(x_S, b_rest)`` for every coalition row (C, M) and example: (C, N[, K]), float64.

    Present features come from ``x``, absent ones from each background row (the
    interventional value function of shap's ``Independent`` masker).
    """
    n, b = len(x), len(background)
    per_chunk = max(1, batch_size // (n * b))
    parts = []
    with torch.no_grad():
        for start in range(0, len(coalitions), per_chunk):
            keep = coalitions[start:start + per_chunk, None, None, :]
            rows = torch.where(keep, x[None, :, None, :], background[None, None, :, :])
            out = as_tensor(f(rows.reshape(-1, x.shape[1])), "f(x)")
            parts.append(out.double().reshape(len(keep), n, b, *out.shape[1:]).mean(dim=2))
    return torch.cat(parts)


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


def shapley_values(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    *,
    groups: Sequence[Sequence[int]] | None = None,
    batch_size: int | None = None,
) -> ShapleyValues:
    """Exact Shapley values of ``f`` at each row of ``x``, absent features drawn from ``background``.

    The value of a coalition ``S`` is ``v(S) = mean_b f(x_S, b_rest)`` over the
    background rows ``b``; ``phi_i = sum_S |S|! (M-|S|-1)! / M! (v(S + i) - v(S))``.
    All ``2**M`` coalitions are evaluated, ``batch_size`` model rows at a time (default:
    8,192 on a CPU, where cache-sized batches are fastest, 262,144 on an accelerator), so
    ``M`` (the number of features, or of ``groups`` of columns that enter and leave
    together, e.g. the one-hot columns of one attribute) is at most 16. ``f`` maps a
    (rows, M) tensor to (rows,) or (rows, outputs). Values are float64.

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
    batch_size = _model_rows(batch_size, x.device)
    players = len(membership)
    if players > MAX_EXACT_FEATURES:
        what = "groups" if groups is not None else "x"
        raise ValueError(f"{what}: exact Shapley values enumerate 2**M coalitions and take at most "
                         f"{MAX_EXACT_FEATURES} features, got {players}; group columns or use kernel_shap")
    coalitions = _all_coalitions(players, x.device)
    columns = (coalitions.float() @ membership.float()) > 0
    value = _coalition_values(f, x, background, columns, batch_size)  # (C, N[, K])
    phi = torch.tensordot(_shapley_weights(coalitions), value, dims=([1], [0]))  # (M, N[, K])
    return ShapleyValues(phi.movedim(0, 1), value[0])


# --------------------------------------------------------------------------- KernelSHAP

def _kernel_coalitions(players: int, nsamples: int, generator: torch.Generator | None,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions (C, M) and their weights, by shap ``KernelExplainer``'s scheme.

    Subset sizes ``s`` and ``M - s`` share the Shapley kernel weight
    ``(M - 1) / (s (M - s))``. Sizes are enumerated in full, from the smallest,
    while the budget covers them; the rest of the budget draws coalitions from the
    remaining sizes in proportion to their weight, each with its complement; repeated
    draws add weight instead of rows.
    """
    m = players
    sizes = np.arange(1, m // 2 + 1)  # s and m - s are handled together
    paired = sizes != m - sizes
    weight = (m - 1) / (sizes * (m - sizes)) * np.where(paired, 2.0, 1.0)
    weight /= weight.sum()
    rows, weights = [], []
    left, remaining = nsamples, weight.copy()
    full = 0
    for s, is_paired, share in zip(sizes, paired, weight):
        count = math.comb(m, s) * (2 if is_paired else 1)
        if left * remaining[full] / count < 1 - 1e-8:
            break
        left -= count
        if remaining[full] < 1:
            remaining = remaining / (1 - remaining[full])
        subsets = torch.zeros((math.comb(m, s), m), dtype=torch.bool, device=device)
        subsets.scatter_(1, torch.combinations(torch.arange(m, device=device), int(s)).view(-1, int(s)), True)
        block = torch.cat([subsets, ~subsets]) if is_paired else subsets
        rows.append(block)
        weights.append(torch.full((len(block),), share / count, dtype=torch.float64, device=device))
        full += 1
    if full < len(sizes) and left > 1:
        rest = weight[full:] * np.where(paired[full:], 1.0, 0.5)
        draws = left // 2
        where = generator.device if generator is not None else device
        probability = torch.tensor(rest / rest.sum(), device=where)
        size_index = torch.multinomial(probability, draws, replacement=True, generator=generator)
        size = torch.as_tensor(sizes[full:], device=where)[size_index]
        order = torch.rand((draws, m), generator=generator, device=where).argsort(dim=1).argsort(dim=1)
        drawn = (order < size[:, None]).to(device)
        drawn, counts = torch.unique(torch.cat([drawn, ~drawn]), dim=0, return_counts=True)
        rows.append(drawn)
        weights.append(counts.double() * (weight[full:].sum() / counts.sum()))
    return torch.cat(rows), torch.cat(weights)


def kernel_shap(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    *,
    nsamples: int = 2048,
    groups: Sequence[Sequence[int]] | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> ShapleyValues:
    """KernelSHAP (Lundberg and Lee, 2017): Shapley values from ``nsamples`` weighted coalitions.

    Fits ``v(S) - v(empty) ~ sum_{i in S} phi_i`` by least squares weighted with the
    Shapley kernel, subject to ``sum_i phi_i = f(x) - E f(background)``; coalitions are
    chosen as shap's ``KernelExplainer`` chooses them (sizes enumerated while the budget
    allows, then sampled with ``generator``), the same coalitions for every row of
    ``x``, all evaluated in batches of ``batch_size`` model rows (default as in
    :func:`shapley_values`). When ``nsamples``
    covers all ``2**M - 2`` coalitions, the result is the exact Shapley value.
    Matches shap's ``KernelExplainer(f, background).shap_values(x, nsamples=nsamples,
    l1_reg=False)`` up to sampling noise (exactly when both enumerate every coalition;
    shap's default ``l1_reg`` keeps only 10 features). Unlike shap, features equal to every
    background row are not dropped first (that would give each row its own coalitions), so
    on one-hot data, where many are, shap enumerates fewer players and its budget goes further.

    >>> f = lambda z: 2 * z[:, 0] + z[:, 1] * z[:, 2]
    >>> kernel_shap(f, torch.ones(1, 3), torch.zeros(1, 3), nsamples=64).values
    tensor([[2.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    x, background, membership = _tabular_inputs(f, x, background, groups)
    nsamples = _check_int(nsamples, "nsamples", minimum=2)
    batch_size = _model_rows(batch_size, x.device)
    players = len(membership)
    ends = torch.tensor([[False] * players, [True] * players], device=x.device)
    end_values = _coalition_values(f, x, background, (ends.float() @ membership.float()) > 0, batch_size)
    base, total = end_values[0], end_values[1] - end_values[0]  # (N[, K])
    if players == 1:
        return ShapleyValues(total[:, None], base)
    coalitions, weight = _kernel_coalitions(players, nsamples, generator, x.device)
    value = _coalition_values(f, x, background, (coalitions.float() @ membership.float()) > 0, batch_size)
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

def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation between ``a[i]`` and ``b[i]`` (flattened), for every row ``i``.

    Ties get their average rank; a constant row gives NaN. Equals
    ``scipy.stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic`` for each ``i``.

    >>> rank_correlation(torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
    ...                  torch.tensor([[10.0, 20.0, 30.0], [3.0, 2.0, 2.0]]))
    tensor([ 1.0000, -0.8660], dtype=torch.float64)
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"b: expected the shape of a, {tuple(a.shape)}, got {describe(b)}")
    ranks_a, ranks_b = _average_ranks(a.reshape(len(a), -1)), _average_ranks(b.reshape(len(b), -1))
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    return (ranks_a * ranks_b).sum(1) / (ranks_a.norm(dim=1) * ranks_b.norm(dim=1))


def _average_ranks(rows: torch.Tensor) -> torch.Tensor:
    """Ranks 1..P within each row, ties sharing their average rank (float64)."""
    n, p = rows.shape
    ordered, order = rows.sort(dim=1)
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


def model_randomization_check(
    model: nn.Module,
    explain: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
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
    explanation ``explain(model, x, target)`` with the original by Spearman rank
    correlation (of absolute values with ``absolute=True``), per example. An
    explanation that stays similar while the model is destroyed does not explain the
    model. ``model`` itself is left unchanged.

    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    >>> check = model_randomization_check(net, saliency, torch.randn(5, 4), 0,
    ...                                   generator=torch.Generator().manual_seed(0))
    >>> check.layers, tuple(check.similarity.shape)
    (('2', '0'), (2, 5))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    if not callable(explain):
        raise TypeError(f"explain: expected a function (model, x, target) -> attributions, got {describe(explain)}")
    x = _as_input(x)
    target = _as_target(target, len(x), x.device)
    original = explain(model, x, target)
    layers = _parameter_layers(model)
    if not layers:
        raise ValueError("model: expected a model with parameters to randomize, got none")
    similarities = []
    randomized = copy.deepcopy(model)
    random_layers = dict(_parameter_layers(randomized))
    for name, _ in reversed(layers):
        if not cascading:
            randomized = copy.deepcopy(model)
            random_layers = dict(_parameter_layers(randomized))
        _reinitialize(random_layers[name], generator)
        changed = explain(randomized, x, target)
        if absolute:
            similarities.append(rank_correlation(original.abs(), changed.abs()))
        else:
            similarities.append(rank_correlation(original, changed))
    return RandomizationCheck(tuple(name for name, _ in reversed(layers)), torch.stack(similarities))


# --------------------------------------------------------------------------- counterfactuals

@dataclass(frozen=True)
class Counterfactuals:
    """Counterfactual rows ``x`` (N, M), whether each reached the target (``valid``),
    and its weighted L1 distance from the original (``distance``; inf where not valid)."""

    x: torch.Tensor
    valid: torch.Tensor
    distance: torch.Tensor


def _as_bound(value: object, name: str, x: torch.Tensor, default: float) -> torch.Tensor:
    if value is None:
        return torch.full_like(x[0], default)
    bound = as_tensor(value, name, dtype=x.dtype, device=x.device)
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
    ``[lower, upper]`` (e.g. the data's range, so the answer stays plausible);
    ``scale`` (per feature, default 1; e.g. the standard deviations) makes features
    comparable. All rows move together for ``steps`` steps (``steps * step_size``
    bounds the distance); the result is the closest valid point reached, and
    ``valid`` is False for rows that never reached the target.

    >>> model = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 3.0]])); _ = model.bias.zero_()
    >>> result = counterfactual(model, torch.tensor([[-1.0, -1.0]]), target=1, immutable=[1])
    >>> bool(result.valid[0]), float(result.x[0, 1])  # feature 1 may not move
    (True, -1.0)
    >>> round(float(result.x[0, 0]), 2)  # feature 0 moves from -1 to just past 3, in steps of 0.02
    3.02
    """
    x = _as_input(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a (N, features) table, got {describe(x)}")
    target = _as_target(target, len(x), x.device)
    m = x.shape[1]
    movable = torch.ones(m, dtype=torch.bool, device=x.device)
    for index in immutable:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -m <= index < m:
            raise ValueError(f"immutable: expected column indices in [0, {m - 1}], got {describe(immutable)}")
        movable[index] = False
    low, high = _as_bound(lower, "lower", x, -math.inf), _as_bound(upper, "upper", x, math.inf)
    if bool((low > high).any()):
        raise ValueError("lower: expected lower <= upper for every feature")
    scale = _as_bound(scale, "scale", x, 1.0)
    if bool((scale <= 0).any()) or not bool(torch.isfinite(scale).all()):
        raise ValueError(f"scale: expected positive finite numbers, got {describe(scale)}")
    margin = check_positive(margin, "margin", strict=False)
    step_size = check_positive(step_size, "step_size")
    steps = _check_int(steps, "steps", minimum=1)
    current = torch.minimum(torch.maximum(x, low), high)
    best = x.clone()
    best_distance = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
    rows = torch.arange(len(x), device=x.device)
    for step in range(steps + 1):
        gain, gradient = _margin_and_gradient(model, current, target, check=step == 0)
        distance = ((current - x).abs() / scale).sum(dim=1)
        better = (gain > margin) & (distance < best_distance)
        best = torch.where(better[:, None], current, best)
        best_distance = torch.where(better, distance, best_distance)
        # steepest ascent of the margin in the scaled L1 geometry: one coordinate per row
        room = torch.where(gradient > 0, current < high, current > low) & movable
        score = torch.where(room & (gain <= margin)[:, None], (gradient * scale).abs(), 0.0)
        best_feature = score.argmax(dim=1)
        direction = gradient[rows, best_feature].sign() * (score[rows, best_feature] > 0)
        current = current.index_put((rows, best_feature), direction * step_size * scale[best_feature], accumulate=True)
        current = torch.minimum(torch.maximum(current, low), high)
    return Counterfactuals(best, torch.isfinite(best_distance), best_distance)


def _margin_and_gradient(model: Model, inputs: torch.Tensor, target: torch.Tensor, *,
                         check: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``z_target - max_{j != target} z_j`` per row, and its gradient with respect to the row."""
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        if check:
            _check_target_range(target, logits)
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


def local_surrogate(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    samples: int = 500,
    stdev: float | torch.Tensor = 1.0,
    kernel_width: float | None = None,
    generator: torch.Generator | None = None,
) -> LocalSurrogate:
    """A local linear surrogate around each row of ``x``, the idea behind LIME (Ribeiro et al., 2016).

    Draws ``samples`` points ``z = x + e``, ``e ~ N(0, stdev^2)`` per feature, weights
    them by the kernel ``exp(-||e / stdev||^2 / kernel_width^2)`` (default width
    ``0.75 sqrt(M)``, LIME's), and fits ``f(z)`` (a scalar per row) by weighted least
    squares. All rows are fitted at once. Equals scikit-learn's
    ``LinearRegression().fit(e, f(z), sample_weight=kernel)`` on the same points.

    >>> f = lambda z: 3 * z[:, 0] - z[:, 1]
    >>> fit = local_surrogate(f, torch.zeros(1, 2), generator=torch.Generator().manual_seed(0))
    >>> fit.coef.round(decimals=4)
    tensor([[ 3., -1.]], dtype=torch.float64)
    """
    if not callable(f):
        raise TypeError(f"f: expected a function of a (rows, features) tensor, got {describe(f)}")
    x = _as_input(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a (N, features) table, got {describe(x)}")
    samples = _check_int(samples, "samples", minimum=x.shape[1] + 1)
    n, m = x.shape
    stdev = _as_bound(stdev, "stdev", x, 1.0)
    if bool((stdev <= 0).any()):
        raise ValueError(f"stdev: expected positive numbers, got {describe(stdev)}")
    width = 0.75 * math.sqrt(m) if kernel_width is None else check_positive(kernel_width, "kernel_width")
    noise = torch.randn((n, samples, m), generator=generator,
                        device=generator.device if generator is not None else x.device).to(x.device, x.dtype)
    offsets = noise * stdev
    with torch.no_grad():
        response = as_tensor(f((x[:, None] + offsets).reshape(-1, m)), "f(x)").double().reshape(n, samples)
    weight = torch.exp(-(noise.double() ** 2).sum(dim=2) / width ** 2)  # (N, S)
    design = torch.cat([torch.ones_like(weight)[..., None], offsets.double()], dim=2)  # (N, S, 1+M)
    normal = (design * weight[..., None]).transpose(1, 2)  # X^T W
    beta = torch.linalg.solve(normal @ design, normal @ response[..., None])[..., 0]
    fitted = (design @ beta[..., None])[..., 0]
    mean = (weight * response).sum(1, keepdim=True) / weight.sum(1, keepdim=True)
    residual = (weight * (response - fitted) ** 2).sum(1)
    spread = (weight * (response - mean) ** 2).sum(1)
    return LocalSurrogate(beta[:, 1:], beta[:, 0], 1 - residual / spread.clamp_min(1e-300))
