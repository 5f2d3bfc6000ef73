"""Differential privacy: noise mechanisms, DP-SGD from its parts, attacks and audits.

Chapter 4's kernels, in the order the notebooks use them:

- :func:`laplace_mechanism`, :func:`gaussian_mechanism` (:func:`gaussian_sigma`): add noise
  calibrated to a query's sensitivity;
- :func:`per_sample_gradients`, :func:`clip_and_sum`, :func:`private_gradient`: the one
  computation of a DP-SGD step (per-example gradients, flat clipping as Opacus does it,
  Gaussian noise), with a ``"ghost"`` fast path for ``Linear`` and ``Conv2d`` layers that
  gets the clipped sum without per-example gradients of the linear layers;
- :func:`dp_fit`: DP-SGD with Poisson sampling, its privacy read from Opacus's accountants
  (:func:`epsilon_spent`, :func:`noise_multiplier_for_epsilon`; we do not re-implement
  accounting);
- :func:`membership_scores`, :func:`attack_metrics`, :func:`membership_inference`: the
  loss-threshold membership attack; :func:`clopper_pearson_upper` and
  :func:`audit_epsilon`: an empirical lower bound on epsilon from canaries.

Conventions: ``loss_fn(logits, y)`` returns one loss per example (``reduction="none"``;
default: cross-entropy), like :func:`trustml_lab.models.fit`. Gradients are dicts from
parameter name (as in ``model.named_parameters()``, trainable ones only) to tensors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ._validation import as_tensor, check_finite, check_in_range, check_positive, check_same_length, describe
from .models import progress_enabled

__all__ = [
    "AuditResult",
    "DPTrainingResult",
    "MembershipResult",
    "attack_metrics",
    "audit_epsilon",
    "clip_and_sum",
    "clopper_pearson_upper",
    "dp_fit",
    "epsilon_spent",
    "gaussian_mechanism",
    "gaussian_sigma",
    "laplace_mechanism",
    "membership_inference",
    "membership_scores",
    "noise_multiplier_for_epsilon",
    "per_sample_gradients",
    "private_gradient",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Gradients = dict[str, torch.Tensor]

#: Added to the per-example norm before dividing, exactly as Opacus's ``DPOptimizer``.
CLIP_EPS = 1e-6


# --------------------------------------------------------------------------- input checks

def _check_epsilon(epsilon: float) -> float:
    return check_positive(epsilon, "epsilon")


def _check_delta(delta: float) -> float:
    return check_in_range(delta, "delta", 0.0, 1.0, low_open=True, high_open=True)


def _check_noise_multiplier(noise_multiplier: float) -> float:
    return check_positive(noise_multiplier, "noise_multiplier", strict=False)


def _check_count(value: int, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {describe(value)}")
    return int(value)


def _noise_tensor(value, name: str) -> torch.Tensor:
    tensor = as_tensor(value, name)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return check_finite(tensor, name)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model: expected at least one parameter with requires_grad=True, got none")
    return params


def _batch(model: nn.Module, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    device = _device_of(model)
    x = as_tensor(x, "x", device=device)
    y = as_tensor(y, "y", device=device)
    if check_same_length(x=x, y=y) == 0:
        raise ValueError("x: expected at least one example, got an empty batch")
    return x, y


def _per_example_losses(loss_fn: LossFn | None, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    losses = F.cross_entropy(logits, y, reduction="none") if loss_fn is None else loss_fn(logits, y)
    if losses.shape != (len(y),):
        raise ValueError(
            f"loss_fn: expected one loss per example, shape ({len(y)},) (use reduction='none'), "
            f"got shape {tuple(losses.shape)}"
        )
    return losses


# --------------------------------------------------------------------------- mechanisms

def laplace_mechanism(value, *, sensitivity: float, epsilon: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Laplace noise of scale ``b = sensitivity / epsilon`` to every entry of ``value``.

    This is epsilon-DP for a query whose L1 sensitivity is ``sensitivity`` (Dwork,
    McSherry, Nissim and Smith 2006). The noise is drawn as ``b * (E1 - E2)`` with two
    standard exponentials, which is exactly ``Laplace(0, b)``: the distribution of
    numpy's ``np.random.laplace(0, b)`` and ``scipy.stats.laplace(scale=b)``. Integer
    inputs (counts) come back as floats on the input's device.

    >>> g = torch.Generator().manual_seed(0)
    >>> noisy = laplace_mechanism(torch.full((100_000,), 42.0), sensitivity=1.0, epsilon=0.5, generator=g)
    >>> round(float((noisy - 42).abs().mean()), 1)  # E|Laplace(b)| = b = 2
    2.0
    """
    value = _noise_tensor(value, "value")
    scale = check_positive(sensitivity, "sensitivity") / _check_epsilon(epsilon)
    exponentials = torch.empty((2, *value.shape), dtype=value.dtype, device=value.device)
    exponentials.exponential_(generator=generator)
    return value + scale * (exponentials[0] - exponentials[1])


def _analytic_delta(epsilon: float, mu: float) -> float:
    """delta(epsilon) of the Gaussian mechanism with sensitivity/sigma = mu (log-space)."""
    from scipy.special import log_ndtr

    first = math.exp(log_ndtr(-epsilon / mu + mu / 2))
    second = math.exp(epsilon + log_ndtr(-epsilon / mu - mu / 2))
    return first - second


def gaussian_sigma(*, sensitivity: float, epsilon: float, delta: float,
                   calibration: str = "analytic") -> float:
    """The noise standard deviation that makes the Gaussian mechanism (epsilon, delta)-DP.

    ``calibration="analytic"`` (default) is the smallest such sigma, from the exact
    condition of Balle and Wang (2018, Theorem 8)::

        Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) <= delta,   mu = sensitivity / sigma

    solved for ``mu`` by root finding; it is the dual that Opacus's
    ``opacus.accountants.analysis.gdp.delta_eps_mu`` evaluates. ``"classic"`` is the bound
    ``sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon`` of Dwork and Roth (2014,
    Theorem A.1), valid only for ``epsilon < 1`` and always larger.

    >>> round(gaussian_sigma(sensitivity=1.0, epsilon=0.5, delta=1e-5), 4)
    7.0318
    >>> round(gaussian_sigma(sensitivity=1.0, epsilon=0.5, delta=1e-5, calibration="classic"), 4)
    9.6896
    """
    sensitivity = check_positive(sensitivity, "sensitivity")
    epsilon, delta = _check_epsilon(epsilon), _check_delta(delta)
    if calibration == "classic":
        if epsilon >= 1:
            raise ValueError(
                f"epsilon: the classic Gaussian bound needs epsilon < 1, got {epsilon}; "
                "use calibration='analytic'"
            )
        return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    if calibration != "analytic":
        raise ValueError(f"calibration: expected 'analytic' or 'classic', got {calibration!r}")
    from scipy.optimize import brentq

    high = 1.0
    while _analytic_delta(epsilon, high) < delta:  # delta grows with mu; bracket the root
        high *= 2
    mu = brentq(lambda m: _analytic_delta(epsilon, m) - delta, 1e-12, high, xtol=1e-14, rtol=1e-12)
    return sensitivity / mu


def gaussian_mechanism(value, *, sensitivity: float, epsilon: float, delta: float,
                       calibration: str = "analytic",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise ``N(0, sigma^2)``, sigma from :func:`gaussian_sigma`, to ``value``.

    (epsilon, delta)-DP for a query whose L2 sensitivity is ``sensitivity``; see
    :func:`gaussian_sigma` for the two calibrations. The noise is ``torch.normal``'s,
    drawn from ``generator``.

    >>> g = torch.Generator().manual_seed(0)
    >>> noisy = gaussian_mechanism(torch.zeros(100_000), sensitivity=1.0, epsilon=0.5, delta=1e-5, generator=g)
    >>> round(float(noisy.std()), 1)
    7.0
    """
    value = _noise_tensor(value, "value")
    sigma = gaussian_sigma(sensitivity=sensitivity, epsilon=epsilon, delta=delta, calibration=calibration)
    noise = torch.normal(0.0, sigma, size=value.shape, generator=generator,
                         dtype=value.dtype, device=value.device)
    return value + noise


# --------------------------------------------------------------------------- gradients

def per_sample_gradients(model: nn.Module, loss_fn: LossFn | None, x, y) -> Gradients:
    """The gradient of each example's loss, ``{name: tensor (B, *param.shape)}``.

    Vectorized with ``torch.func`` (``vmap`` of ``grad`` of a ``functional_call``), no
    loop over examples. Equals the ``grad_sample`` that Opacus's ``GradSampleModule``
    stores after a backward through the mean loss (Opacus rescales by the batch size, so
    both are gradients of the per-example loss). ``loss_fn(logits, y)`` returns one loss
    per example; ``None`` means cross-entropy.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(3, 2)
    >>> grads = per_sample_gradients(model, None, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    >>> {name: tuple(g.shape) for name, g in grads.items()}
    {'weight': (5, 2, 3), 'bias': (5, 2)}
    """
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in _trainable(model).items()}
    buffers = dict(model.named_buffers())
    x, y = _batch(model, x, y)

    def example_loss(params: Mapping[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        return _per_example_losses(loss_fn, logits, yi.unsqueeze(0)).sum()

    return vmap(grad(example_loss), in_dims=(None, 0, 0), randomness="error")(params, x, y)


def _clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    return (max_grad_norm / (norms + CLIP_EPS)).clamp(max=1.0)


def clip_and_sum(per_sample_grads: Mapping[str, torch.Tensor], *,
                 max_grad_norm: float) -> tuple[Gradients, torch.Tensor]:
    """Clip each example's whole gradient to L2 norm ``max_grad_norm`` and sum over examples.

    Flat clipping, as Opacus's ``DPOptimizer.clip_and_accumulate``: the norm is taken over
    all parameters together, each example is scaled by
    ``min(1, max_grad_norm / (norm + 1e-6))``. Returns the summed clipped gradient (a dict
    like the input, without the batch dimension) and the per-example norms before clipping.

    >>> grads = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]])}
    >>> summed, norms = clip_and_sum(grads, max_grad_norm=1.0)
    >>> norms
    tensor([5.0000, 0.5000])
    >>> summed["w"]
    tensor([0.9000, 1.2000])
    """
    max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    if not isinstance(per_sample_grads, Mapping) or not per_sample_grads:
        raise TypeError(f"per_sample_grads: expected a non-empty dict of tensors, got {describe(per_sample_grads)}")
    grads = {name: as_tensor(g, f"per_sample_grads[{name!r}]") for name, g in per_sample_grads.items()}
    check_same_length(**{f"per_sample_grads[{name!r}]": g for name, g in grads.items()})
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)
    factors = _clip_factors(norms, max_grad_norm)
    summed = {name: torch.einsum("b,b...->...", factors.to(g.dtype), g) for name, g in grads.items()}
    return summed, norms


def _ghost_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers holding trainable parameters; each must be Linear or a plain Conv2d."""
    layers, seen = {}, set()
    for name, module in model.named_modules(remove_duplicate=False):
        # the module's own parameters (parameters(recurse=False) is slower, and this is per step)
        own = [p for p in module._parameters.values() if p is not None and p.requires_grad]
        if not own:
            continue
        plain_conv = (isinstance(module, nn.Conv2d) and module.groups == 1
                      and module.padding_mode == "zeros" and not isinstance(module.padding, str))
        if not (isinstance(module, nn.Linear) or plain_conv):
            raise ValueError(
                f"model: method='ghost' handles Linear and Conv2d (groups=1, numeric zero padding) "
                f"layers, got {type(module).__name__} at {name or 'the top level'!r}; "
                "use method='per_sample'"
            )
        if any(id(p) in seen for p in own):
            raise ValueError(f"model: layer {name!r} shares parameters with another layer; use method='per_sample'")
        seen.update(id(p) for p in own)
        layers[name] = module
    if not layers:
        raise ValueError("model: expected at least one parameter with requires_grad=True, got none")
    return layers


def _linear_terms(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor, train_weight: bool, train_bias: bool):
    """A Linear layer on (B, in): example b's gradients are ``g_b a_b^T`` and ``g_b``.

    The squared norm factorizes, ``|g_b|^2 (|a_b|^2 + 1)`` with the bias, so nothing of
    size (B, out, in) is ever formed.
    """
    g_sq = torch.linalg.vecdot(g, g)
    if train_weight:
        a_sq = torch.linalg.vecdot(a, a)
        norms_sq = g_sq * (a_sq + 1) if train_bias else g_sq * a_sq
    else:
        norms_sq = g_sq

    def clipped_sums(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        g_t = g.T
        sums = {"weight": (g_t * factors) @ a} if train_weight else {}
        if train_bias:
            sums["bias"] = g_t @ factors
        return sums

    return norms_sq, clipped_sums


def _general_terms(layer: nn.Module, inputs: torch.Tensor, grad_out: torch.Tensor, train_weight: bool,
                   train_bias: bool):
    """A Conv2d layer, or a Linear layer on (B, ..., in): L positions share the weight.

    With ``a`` (B, in, L) the layer's inputs (a convolution's unfolded patches) and ``g``
    (B, out, L) its output gradients, example b's weight gradient is ``g_b a_b^T``. Its norm
    comes from the ghost identity ``|g_b a_b^T|^2 = sum((a_b^T a_b) * (g_b^T g_b))``
    (Goodfellow 2015; Li et al. 2021) when ``L^2 (in + out) < L in out``, else from that one
    layer's per-example gradients, then reused for the sum (mixed ghost clipping, Bu et al. 2022).
    """
    batch = len(inputs)
    if isinstance(layer, nn.Conv2d):
        a = F.unfold(inputs, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        g = grad_out.flatten(2)
    else:
        a = inputs.reshape(batch, -1, inputs.shape[-1]).transpose(1, 2)
        g = grad_out.reshape(batch, -1, grad_out.shape[-1]).transpose(1, 2)
    length, n_in, n_out = a.shape[2], a.shape[1], g.shape[1]
    norms_sq = torch.zeros(batch, dtype=g.dtype, device=g.device)
    per_example = None
    if train_weight and length * (n_in + n_out) < n_in * n_out:
        norms_sq += (torch.bmm(a.transpose(1, 2), a) * torch.bmm(g.transpose(1, 2), g)).sum(dim=(1, 2))
    elif train_weight:
        per_example = torch.bmm(g, a.transpose(1, 2))  # (B, out, in)
        norms_sq += per_example.square().sum(dim=(1, 2))
    bias_grads = g.sum(dim=2) if train_bias else None  # (B, out)
    if train_bias:
        norms_sq += bias_grads.square().sum(dim=1)

    def clipped_sums(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        sums = {}
        if train_weight:
            sums["weight"] = (torch.einsum("boi,b->oi", per_example, factors) if per_example is not None
                              else torch.einsum("bol,bil,b->oi", g, a, factors)).reshape(layer.weight.shape)
        if train_bias:
            sums["bias"] = bias_grads.T @ factors
        return sums

    return norms_sq, clipped_sums


Records = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _plain_sequential(model: nn.Module, layers: Mapping[str, nn.Module]) -> bool:
    """Whether ``model`` is an ``nn.Sequential`` we may run child by child, without hooks."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return False
    children = list(model._modules.items())
    return set(layers) <= {name for name, _ in children} and len({id(c) for _, c in children}) == len(children)


def _forward_recording(model: nn.Module, layers: Mapping[str, nn.Module], x: torch.Tensor
                       ) -> tuple[torch.Tensor, Records]:
    """Run ``model`` on ``x``, recording each layer's input (detached) and output."""
    records: Records = {}
    if _plain_sequential(model, layers):  # what Sequential.forward does, minus the hooks' overhead
        h = x
        for name, child in model._modules.items():
            out = child(h)
            if name in layers:
                records[name] = (h.detach(), out)
            h = out
        return h, records

    def recorder(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if name in records:
                raise ValueError(f"model: layer {name!r} runs twice in one forward; use method='per_sample'")
            records[name] = (inputs[0].detach(), output)
        return hook

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        return model(x), records
    finally:
        for handle in handles:
            handle.remove()


def _ghost_clipped_sum(model: nn.Module, loss_fn: LossFn | None, x: torch.Tensor, y: torch.Tensor,
                       max_grad_norm: float) -> Gradients:
    layers = _ghost_layers(model)
    logits, records = _forward_recording(model, layers, x)
    idle = [name for name in layers if name not in records]
    if idle:
        raise ValueError(f"model: trainable layers {idle} do not run in forward; "
                         "freeze them or use method='per_sample'")
    losses = _per_example_losses(loss_fn, logits, y)
    # one backward to the layers' outputs only: no weight gradient is formed here
    grad_outs = torch.autograd.grad(losses.sum(), [records[name][1] for name in layers])
    norms_sq, summers = None, {}
    for (name, layer), grad_out in zip(layers.items(), grad_outs):
        inputs = records[name][0]
        train_weight = layer.weight.requires_grad
        train_bias = layer.bias is not None and layer.bias.requires_grad
        terms = _linear_terms if isinstance(layer, nn.Linear) and inputs.ndim == 2 else _general_terms
        layer_norms_sq, summers[name] = terms(layer, inputs, grad_out, train_weight, train_bias)
        norms_sq = layer_norms_sq if norms_sq is None else norms_sq + layer_norms_sq
    factors = _clip_factors(norms_sq.sqrt(), max_grad_norm)
    # module by module, weight then bias: the order of model.named_parameters()
    return {(f"{name}.{kind}" if name else kind): total
            for name, summer in summers.items() for kind, total in summer(factors).items()}


def _add_noise(summed: Gradients, std: float, generator: torch.Generator | None) -> Gradients:
    if std == 0:
        return summed
    # torch.normal(mean, std) draws N(0, std^2) as torch.normal(0, std, size) does, and adds it
    return {name: torch.normal(s, std, generator=generator) for name, s in summed.items()}


def private_gradient(model: nn.Module, loss_fn: LossFn | None, x, y, *, max_grad_norm: float,
                     noise_multiplier: float, method: str = "per_sample",
                     generator: torch.Generator | None = None) -> Gradients:
    """One DP-SGD gradient: per-example gradients clipped to ``max_grad_norm``, summed, noised.

    Returns ``{name: sum_b clip(g_b) + N(0, (noise_multiplier * max_grad_norm)^2)}``. Divide
    by the expected batch size (``sample_rate * n``) to get the averaged gradient an
    optimizer steps with, as Opacus's ``DPOptimizer`` does. The noise is drawn parameter by
    parameter with ``torch.normal`` from ``generator``, in the order Opacus draws it, so
    with the same seeded generator the result equals Opacus's noised gradient times its
    expected batch size.

    ``method="per_sample"`` clips :func:`per_sample_gradients` with :func:`clip_and_sum`.
    ``method="ghost"`` accepts models whose trainable layers are ``Linear`` and ``Conv2d``.
    One backward gives each layer's output gradients; per-example norms follow from the
    layers' inputs and output gradients (ghost clipping, Lee and Kifer 2020; Li et al.
    2021), so a ``Linear`` layer's per-example gradients are never formed (a convolution's
    are, for that one layer, when that is cheaper than its ghost norm: Bu et al. 2022).
    The clipped sum is then assembled from the same inputs and the output gradients
    reweighted by the clipping factors, which gives what the second, reweighted backward
    of ghost clipping gives without running it (book-keeping, Bu et al. 2023). Both
    methods return the same tensors (to float rounding).

    >>> _ = torch.manual_seed(0)
    >>> model, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> a = private_gradient(model, None, x, y, max_grad_norm=0.1, noise_multiplier=0.0)
    >>> b = private_gradient(model, None, x, y, max_grad_norm=0.1, noise_multiplier=0.0, method="ghost")
    >>> all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    True
    """
    max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    noise_multiplier = _check_noise_multiplier(noise_multiplier)
    x, y = _batch(model, x, y)
    if method == "per_sample":
        summed, _ = clip_and_sum(per_sample_gradients(model, loss_fn, x, y), max_grad_norm=max_grad_norm)
    elif method == "ghost":
        summed = _ghost_clipped_sum(model, loss_fn, x, y, max_grad_norm)
    else:
        raise ValueError(f"method: expected 'per_sample' or 'ghost', got {method!r}")
    return _add_noise(summed, noise_multiplier * max_grad_norm, generator)


# --------------------------------------------------------------------------- accounting and training

def _check_sample_rate(sample_rate: float) -> float:
    return check_in_range(sample_rate, "sample_rate", 0.0, 1.0, low_open=True)


def epsilon_spent(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` DP-SGD steps, read from Opacus's accountant (``"rdp"``, ``"prv"``).

    A thin, checked wrapper: it gives the accountant the history
    ``[(noise_multiplier, sample_rate, steps)]`` and returns its ``get_epsilon(delta)``, so it
    equals ``PrivacyEngine(accountant=...).get_epsilon(delta)`` after the same training.
    ``"prv"`` (Gopi et al. 2021) is tighter than ``"rdp"`` (Mironov 2017). No noise means no
    privacy: ``noise_multiplier=0`` gives ``inf``.

    >>> round(epsilon_spent(noise_multiplier=1.2, sample_rate=0.01, steps=1000, delta=1e-5), 3)  # doctest: +NUMBER
    1.455
    """
    noise_multiplier = _check_noise_multiplier(noise_multiplier)
    sample_rate, delta = _check_sample_rate(sample_rate), _check_delta(delta)
    steps = _check_count(steps, "steps", minimum=0)
    if accountant not in ("rdp", "prv"):
        raise ValueError(f"accountant: expected 'rdp' or 'prv', got {accountant!r}")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return _accountant_epsilon(noise_multiplier, sample_rate, steps, delta, accountant)


@functools.lru_cache(maxsize=256)
def _accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                        accountant: str) -> float:
    """Opacus's answer, cached: it is a pure function of the history, and costs ~0.1 s."""
    from opacus.accountants import create_accountant

    book = create_accountant(mechanism=accountant)
    book.history = [(noise_multiplier, sample_rate, steps)]
    return float(book.get_epsilon(delta=delta))


def noise_multiplier_for_epsilon(*, epsilon: float, delta: float, sample_rate: float, steps: int,
                                 accountant: str = "rdp", tolerance: float = 0.01) -> float:
    """The noise multiplier that spends ``epsilon`` (within ``tolerance``) in ``steps`` steps.

    Opacus's ``opacus.accountants.utils.get_noise_multiplier``, with our input checks.

    >>> sigma = noise_multiplier_for_epsilon(epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=1000)
    >>> epsilon_spent(noise_multiplier=sigma, sample_rate=0.01, steps=1000, delta=1e-5) <= 3.0
    True
    """
    epsilon, delta = _check_epsilon(epsilon), _check_delta(delta)
    sample_rate = _check_sample_rate(sample_rate)
    steps = _check_count(steps, "steps")
    tolerance = check_positive(tolerance, "tolerance")
    if accountant not in ("rdp", "prv"):
        raise ValueError(f"accountant: expected 'rdp' or 'prv', got {accountant!r}")
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant=accountant, epsilon_tolerance=tolerance))


@dataclass(frozen=True)
class DPTrainingResult:
    """What :func:`dp_fit` returns: the trained model and the privacy it spent."""

    model: nn.Module
    epsilon: float
    delta: float
    steps: int
    noise_multiplier: float
    sample_rate: float
    accountant: str


def dp_fit(model: nn.Module, x, y, *, noise_multiplier: float, max_grad_norm: float, sample_rate: float,
           epochs: int, lr: float, delta: float, momentum: float = 0.0, method: str = "per_sample",
           loss_fn: LossFn | None = None, accountant: str = "rdp",
           generator: torch.Generator | None = None, progress: bool = True) -> DPTrainingResult:
    """Train ``model`` with DP-SGD (Abadi et al. 2016) and report the epsilon it spent.

    Each step draws a Poisson batch (every example independently with probability
    ``sample_rate``), takes :func:`private_gradient`, divides it by the expected batch
    size ``int(sample_rate * n)`` and takes an SGD step, exactly as Opacus's
    ``make_private`` with Poisson sampling does; an epoch is ``round(1 / sample_rate)``
    steps. Epsilon comes from :func:`epsilon_spent` (Opacus's accountant) for that
    history. Batches and noise come from ``generator`` (on the model's device). A Poisson
    batch has a random size, so each step syncs with the device once to gather it.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(200, 4); y = (x[:, 0] > 0).long()
    >>> result = dp_fit(nn.Linear(4, 2), x, y, noise_multiplier=1.0, max_grad_norm=1.0,
    ...                 sample_rate=0.1, epochs=5, lr=0.5, delta=1e-5, progress=False)
    >>> result.steps, round(result.epsilon, 2)  # doctest: +NUMBER
    (50, 5.88)
    """
    noise_multiplier = _check_noise_multiplier(noise_multiplier)
    max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    sample_rate, delta = _check_sample_rate(sample_rate), _check_delta(delta)
    epochs = _check_count(epochs, "epochs")
    lr = check_positive(lr, "lr")
    momentum = check_positive(momentum, "momentum", strict=False)
    if method not in ("per_sample", "ghost"):
        raise ValueError(f"method: expected 'per_sample' or 'ghost', got {method!r}")
    params = _trainable(model)
    x, y = _batch(model, x, y)
    n = len(x)
    expected_batch = max(1, int(sample_rate * n))
    steps = epochs * max(1, round(1 / sample_rate))
    optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    model.train()
    for _ in tqdm(range(steps), desc="DP-SGD steps", disable=not progress_enabled(progress), leave=False):
        chosen = torch.rand(n, generator=generator, device=x.device) < sample_rate
        index = chosen.nonzero().squeeze(1)
        if len(index):
            grads = private_gradient(model, loss_fn, x[index], y[index], max_grad_norm=max_grad_norm,
                                     noise_multiplier=noise_multiplier, method=method, generator=generator)
        else:  # an empty Poisson batch still gets its noise
            zeros = {name: torch.zeros_like(p) for name, p in params.items()}
            grads = _add_noise(zeros, noise_multiplier * max_grad_norm, generator)
        for name, p in params.items():
            p.grad = grads[name] / expected_batch
        optimizer.step()
    model.eval()
    epsilon = epsilon_spent(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                            delta=delta, accountant=accountant)
    return DPTrainingResult(model, epsilon, delta, steps, noise_multiplier, sample_rate, accountant)


# --------------------------------------------------------------------------- attacks and audits

@dataclass(frozen=True)
class MembershipResult:
    """A membership attack's success: ROC AUC, advantage ``max(TPR - FPR)`` and its threshold.

    ``threshold`` is on the attack score: "member" when ``score >= threshold``.
    """

    auc: float
    advantage: float
    threshold: float


@torch.no_grad()
def membership_scores(model: nn.Module, x, y, *, loss_fn: LossFn | None = None,
                      batch_size: int = 4096) -> torch.Tensor:
    """The loss-threshold attack's score of each example: minus its loss (higher = "member").

    Yeom et al. (2018): a model fits its training examples better, so a low loss hints
    that an example was trained on. Computed in eval mode, in batches.

    >>> model = nn.Linear(2, 2)
    >>> membership_scores(model, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).shape
    torch.Size([3])
    """
    x, y = _batch(model, x, y)
    batch_size = _check_count(batch_size, "batch_size")
    model.eval()
    parts = [-_per_example_losses(loss_fn, model(x[i:i + batch_size]), y[i:i + batch_size])
             for i in range(0, len(x), batch_size)]
    return torch.cat(parts)


def attack_metrics(member_scores, non_member_scores) -> MembershipResult:
    """ROC AUC and advantage of an attack that calls ``score >= t`` a member.

    The AUC equals scikit-learn's ``roc_auc_score`` (ties count one half, the Mann-Whitney
    statistic); the advantage ``max_t (TPR - FPR)`` is the maximum of ``tpr - fpr`` over
    scikit-learn's ``roc_curve`` (0 when no threshold beats guessing).

    >>> result = attack_metrics(torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.1, 0.4, 0.2, 0.35]))
    >>> round(result.auc, 4), round(result.advantage, 4), round(result.threshold, 4)
    (0.8333, 0.6667, 0.8)
    """
    s_in = check_finite(as_tensor(member_scores, "member_scores", dtype=torch.float64, ndim=1), "member_scores")
    s_out = check_finite(as_tensor(non_member_scores, "non_member_scores", dtype=torch.float64,
                                   device=s_in.device, ndim=1), "non_member_scores")
    for name, s in (("member_scores", s_in), ("non_member_scores", s_out)):
        if len(s) == 0:
            raise ValueError(f"{name}: expected at least one score, got none")
    scores = torch.cat([s_in, s_out])
    is_member = torch.cat([torch.ones_like(s_in), torch.zeros_like(s_out)])
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)  # ascending
    # average ranks (1-based) of tied groups, then the Mann-Whitney U statistic
    ends = torch.cumsum(counts, 0).to(torch.float64)
    average_rank = ends - (counts.to(torch.float64) - 1) / 2
    n_in, n_out = len(s_in), len(s_out)
    u = average_rank[inverse][is_member == 1].sum() - n_in * (n_in + 1) / 2
    auc = float(u / (n_in * n_out))
    # threshold at each distinct score, from the highest down: TPR and FPR of "score >= t"
    members_at = torch.zeros_like(values).index_add_(0, inverse, is_member)
    tpr = torch.cumsum(members_at.flip(0), 0) / n_in
    fpr = torch.cumsum((counts - members_at).flip(0), 0) / n_out
    gaps = tpr - fpr
    best = int(torch.argmax(gaps))
    if float(gaps[best]) <= 0:
        return MembershipResult(auc, 0.0, math.inf)
    return MembershipResult(auc, float(gaps[best]), float(values.flip(0)[best]))


def membership_inference(model: nn.Module, members, non_members, *, loss_fn: LossFn | None = None,
                         batch_size: int = 4096) -> MembershipResult:
    """The loss-threshold membership attack (Yeom et al. 2018) on ``(x, y)`` pairs.

    Scores both sets with :func:`membership_scores` and measures the attack with
    :func:`attack_metrics`: AUC 0.5 and advantage 0 mean the attacker learns nothing.
    A model that is epsilon-DP bounds the advantage by ``(e^eps - 1) / (e^eps + 1)``
    (plus delta), whatever the attack.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(2, 2)
    >>> x, y = torch.randn(20, 2), torch.randint(0, 2, (20,))
    >>> result = membership_inference(model, (x[:10], y[:10]), (x[10:], y[10:]))
    >>> 0.0 <= result.auc <= 1.0
    True
    """
    scores = []
    for name, pair in (("members", members), ("non_members", non_members)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"{name}: expected a pair (x, y), got {describe(pair)}")
        scores.append(membership_scores(model, pair[0], pair[1], loss_fn=loss_fn, batch_size=batch_size))
    return attack_metrics(scores[0], scores[1])


def clopper_pearson_upper(successes, trials, *, confidence: float = 0.95) -> torch.Tensor:
    """The upper end of the two-sided Clopper-Pearson interval for a binomial proportion.

    Equals ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="exact").high``:
    the ``1 - (1 - confidence) / 2`` quantile of ``Beta(k + 1, n - k)`` (1 when ``k = n``).
    Vectorized over ``successes`` (float64 tensor out).

    >>> clopper_pearson_upper(torch.tensor([0, 5]), 10)
    tensor([0.3085, 0.8129], dtype=torch.float64)
    """
    from scipy.special import betaincinv

    trials = _check_count(trials, "trials")
    confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
    k = as_tensor(successes, "successes", dtype=torch.float64)
    if bool(((k < 0) | (k > trials) | (k != k.round())).any()):
        raise ValueError(f"successes: expected whole numbers in [0, {trials}], got {describe(successes)}")
    k_np = k.cpu().numpy()
    quantile = 1 - (1 - confidence) / 2
    with np.errstate(all="ignore"):
        upper = np.where(k_np >= trials, 1.0, betaincinv(k_np + 1, np.maximum(trials - k_np, 1), quantile))
    return torch.from_numpy(np.asarray(upper, dtype=np.float64)).to(k.device)


@dataclass(frozen=True)
class AuditResult:
    """An empirical lower bound on epsilon and the threshold that gave it.

    ``fpr_upper`` and ``fnr_upper`` are the Clopper-Pearson upper bounds at that threshold.
    """

    epsilon_lower_bound: float
    threshold: float
    fpr_upper: float
    fnr_upper: float
    confidence: float


def audit_epsilon(scores_in, scores_out, *, delta: float, confidence: float = 0.95) -> AuditResult:
    """A lower bound on epsilon from canaries' scores in runs with and without them.

    Jagielski, Ullman and Oprea (2020): a distinguisher that calls ``score >= t`` "canary
    was in the training set" has false positive rate FPR (on ``scores_out``) and false
    negative rate FNR (on ``scores_in``). An (epsilon, delta)-DP training forces
    ``FPR + e^eps FNR >= 1 - delta`` and the symmetric inequality, so with
    Clopper-Pearson upper bounds on both rates, with probability ``confidence``::

        epsilon >= max(log((1 - delta - FNR_up) / FPR_up), log((1 - delta - FPR_up) / FNR_up))

    The bound is maximized over all thresholds (as Jagielski et al. do; pick ``t`` on
    separate runs for a strictly valid confidence level) and floored at 0. A bound above
    the accountant's epsilon would mean a bug in the training or the accounting.

    >>> g = torch.Generator().manual_seed(0)
    >>> s_out, s_in = torch.randn(1000, generator=g), torch.randn(1000, generator=g) + 1.0
    >>> round(audit_epsilon(s_in, s_out, delta=1e-5).epsilon_lower_bound, 3)  # doctest: +NUMBER
    1.54
    """
    delta = _check_delta(delta)
    confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
    s_in = check_finite(as_tensor(scores_in, "scores_in", dtype=torch.float64, ndim=1), "scores_in")
    s_out = check_finite(as_tensor(scores_out, "scores_out", dtype=torch.float64, device=s_in.device, ndim=1),
                         "scores_out")
    for name, s in (("scores_in", s_in), ("scores_out", s_out)):
        if len(s) == 0:
            raise ValueError(f"{name}: expected at least one score, got none")
    thresholds = torch.unique(torch.cat([s_in, s_out]))
    sorted_in, sorted_out = torch.sort(s_in).values, torch.sort(s_out).values
    false_negatives = torch.searchsorted(sorted_in, thresholds, side="left")  # in-scores below t
    false_positives = len(s_out) - torch.searchsorted(sorted_out, thresholds, side="left")  # out-scores >= t
    fnr_up = clopper_pearson_upper(false_negatives, len(s_in), confidence=confidence)
    fpr_up = clopper_pearson_upper(false_positives, len(s_out), confidence=confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound_a = torch.log((1 - delta - fnr_up).clamp_min(0) / fpr_up)
        bound_b = torch.log((1 - delta - fpr_up).clamp_min(0) / fnr_up)
    bounds = torch.nan_to_num(torch.maximum(bound_a, bound_b), nan=-math.inf)
    best = int(torch.argmax(bounds))
    return AuditResult(max(0.0, float(bounds[best])), float(thresholds[best]), float(fpr_up[best]),
                       float(fnr_up[best]), confidence)
