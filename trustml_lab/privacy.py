"""Differential privacy: noise mechanisms, DP-SGD from its parts, attacks and audits.

Chapter 4's kernels, in the order the notebooks use them:

- :func:`laplace_mechanism`, :func:`gaussian_mechanism` (:func:`gaussian_sigma`): add noise
  calibrated to a query's sensitivity;
- :func:`per_sample_gradients`, :func:`clip_and_sum`, :func:`private_gradient`: the one
  computation of a DP-SGD step (per-example gradients, flat clipping as Opacus does it,
  Gaussian noise), with a ``"ghost"`` fast path for ``Linear``, ``Conv2d``, ``Embedding``
  and ``LayerNorm`` layers (MLPs, CNNs and the chapter-5 BERT) that gets the clipped sum
  without per-example gradients of the linear layers and embeddings;
- :func:`dp_fit`: DP-SGD with Poisson sampling, its privacy read from Opacus's accountants
  (:func:`epsilon_spent`, :func:`noise_multiplier_for_epsilon`; we do not re-implement
  accounting);
- :func:`membership_scores`, :func:`attack_metrics`, :func:`membership_inference`: the
  loss-threshold membership attack; :func:`audit_epsilon` and :func:`audit_epsilon_at`: an
  empirical lower bound on epsilon from canaries, valid at its stated confidence.

Conventions: ``model, x, y`` first, then keyword-only ``loss_fn(logits, y)``, which returns
one loss per example (``reduction="none"``; default: cross-entropy, and then ``y`` holds
class labels inside the model's classes), like :func:`trustml_lab.models.fit`. Gradients are
dicts from parameter name (as in ``model.named_parameters()``, trainable ones only) to
tensors. A function that changes a model's mode puts back the mode it found.

One DP-SGD step is four parts, kept apart so that other trainers (a distributed one that
adds the noise once across ranks, a transformer's) can reuse them: Poisson sampling
(``_poisson_batch``), the clipped sum (``_clipped_sum``), the noise (``_add_noise``) and
the scaling by the expected batch size (``_apply_private_gradient``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ._stats import clopper_pearson
from ._validation import (
    as_model_input,
    as_tensor,
    check_generator,
    check_in_range,
    check_int,
    check_labels,
    check_model,
    check_positive,
    check_same_length,
    describe,
    eval_mode,
    renamed_arguments,
    train_mode,
)
from .models import progress_enabled

__all__ = [
    "AuditResult",
    "ClippedSum",
    "DPTrainingResult",
    "MembershipResult",
    "attack_metrics",
    "audit_epsilon",
    "audit_epsilon_at",
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
#: The most DP-SGD steps :func:`dp_fit` plans (``epochs * round(1 / sample_rate)``); a
#: tiny ``sample_rate`` that would need more is refused before training starts.
MAX_STEPS = 1_000_000
#: The largest noise multiplier the accountants are asked about (Opacus's own search stops
#: at ``opacus.accountants.utils.MAX_SIGMA = 1e6``; beyond it its RDP analysis fails or
#: takes seconds, and epsilon no longer changes).
MAX_NOISE_MULTIPLIER = 1e6
#: The largest discretization grid Opacus's PRV accountant may build (points); more would
#: need gigabytes. Long runs at a large sample rate exceed it: use ``accountant="rdp"``.
MAX_PRV_GRID = 20_000_000
#: :func:`noise_multiplier_for_epsilon` refuses a ``tolerance`` below this fraction of
#: ``epsilon``: finer than the accountants' own numerical accuracy.
MIN_RELATIVE_TOLERANCE = 1e-6
ACCOUNTANTS = ("rdp", "prv")
METHODS = ("per_sample", "ghost")
AUDIT_METHODS = ("split", "bonferroni", "in_sample")


# --------------------------------------------------------------------------- input checks

def _check_epsilon(epsilon: float) -> float:
    return check_positive(epsilon, "epsilon")


def _check_delta(delta: float) -> float:
    return check_in_range(delta, "delta", 0.0, 1.0, low_open=True, high_open=True)


def _check_confidence(confidence: float) -> float:
    return check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)


def _check_sample_rate(sample_rate: float) -> float:
    return check_in_range(sample_rate, "sample_rate", 0.0, 1.0, low_open=True)


def _check_noise_multiplier(noise_multiplier: float) -> float:
    sigma = check_positive(noise_multiplier, "noise_multiplier", strict=False)
    if sigma > MAX_NOISE_MULTIPLIER:
        raise ValueError(f"noise_multiplier: expected at most {MAX_NOISE_MULTIPLIER:g} (beyond it the "
                         f"accountants fail and epsilon no longer changes), got {noise_multiplier}")
    return sigma


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """Check an optional generator, and that it draws on ``device`` (torch cannot mix them)."""
    check_generator(generator)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator: expected a generator on {device} (the data's device), got one on "
                         f"{generator.device}; create it with torch.Generator(device=...)")
    return generator


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    check_model(model)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model: expected at least one parameter with requires_grad=True, got none")
    return params


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _refuse_batch_mixing(name: str, module: nn.Module) -> None:
    """Raise for a normalization layer that, in train mode, mixes the examples of a batch.

    A train-mode BatchNorm normalizes every example with its batch's statistics, so one
    example changes the others' gradients and per-example clipping no longer bounds its
    influence: not differentially private (Opacus's ``ModuleValidator`` refuses it too).
    """
    where = f"{type(module).__name__} at {name or 'the top level'!r}"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        raise ValueError(
            f"model: {where} runs in train mode, where it normalizes each example with statistics of "
            "the whole batch: examples are mixed and per-example clipping no longer bounds one "
            "example's influence (not differentially private). Replace it by GroupNorm or LayerNorm, "
            "as Opacus's ModuleValidator.fix does, or put it in eval mode")
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats:
        raise ValueError(
            f"model: {where} tracks running statistics in train mode, updated from every example "
            "of the batch; set track_running_stats=False (as Opacus's ModuleValidator.fix does) "
            "or put it in eval mode")


def _check_no_batch_mixing(model: nn.Module, *, training: bool | None = None) -> None:
    """Refuse layers that mix examples in train mode; ``training``: the mode the model will run in
    (``None``: each module's own mode)."""
    for name, module in model.named_modules():
        if (module.training if training is None else training) and isinstance(module, _NORMS):
            _refuse_batch_mixing(name, module)


def _run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, a failure to run on ``x`` (a wrong shape) reported as a ValueError on ``x``."""
    try:
        return model(x)
    except (RuntimeError, IndexError) as err:
        raise ValueError(f"x: the model cannot run on a batch of {describe(x)}: {err}") from err


def _check_logits(logits: torch.Tensor, loss_fn: LossFn | None) -> int | None:
    """The number of classes when the loss is the default cross-entropy (``None`` otherwise)."""
    if loss_fn is not None:
        return None
    if logits.ndim != 2:
        raise ValueError(f"model: cross-entropy (loss_fn=None) needs logits of shape (N, classes), got "
                         f"{describe(logits)}; pass a loss_fn for other outputs")
    return logits.shape[1]


def _output_classes(model: nn.Module, x: torch.Tensor, loss_fn: LossFn | None) -> int | None:
    """Run the model on one example (no gradients, eval mode) to learn its number of classes."""
    with torch.no_grad(), eval_mode(model):
        logits = _run_model(model, x[:1])
    return _check_logits(logits, loss_fn)


def _targets(y: Any, loss_fn: LossFn | None, device: torch.device, num_classes: int | None) -> torch.Tensor:
    """Class labels for the default cross-entropy; any finite tensor for a custom ``loss_fn``."""
    if loss_fn is None:
        return check_labels(y, "y", num_classes=num_classes, device=device)
    return as_tensor(y, "y", device=device)


def _check_loss_fn(loss_fn: Any) -> None:
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a function loss_fn(logits, y) or None, got {describe(loss_fn)}")


def _first_embedding(model: nn.Module) -> nn.Embedding | None:
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


def _model_input(x: Any, model: nn.Module) -> torch.Tensor:
    """``x`` at the model's edge: floating features (``as_model_input``), or token ids.

    Integer ``x`` is accepted only by a model with an ``nn.Embedding`` (a text model such as
    :class:`trustml_lab.text.TokenIdsClassifier`): ids of shape ``(N, L)``, inside the first
    embedding's vocabulary, moved to the model's device and kept integer.
    """
    if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.dtype == torch.bool or x.is_complex()):
        return as_model_input(x, "x", model)  # features: checked once (this is per step)
    tensor = as_tensor(x, "x")
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.is_complex():
        return as_model_input(tensor, "x", model)
    embedding = _first_embedding(model)
    if embedding is None:
        return as_model_input(tensor, "x", model)  # its TypeError: integer inputs are not features
    if tensor.ndim < 2 or len(tensor) == 0 or tensor[0].numel() == 0:
        raise ValueError(f"x: expected a non-empty batch of token ids (N, L), got {describe(tensor)}")
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= embedding.num_embeddings:
        raise ValueError(f"x: expected token ids in 0..{embedding.num_embeddings - 1} (the model's vocabulary), "
                         f"got values in [{low}, {high}]")
    return tensor.to(device=embedding.weight.device, dtype=torch.long)


def _model_batch(model: nn.Module, x: Any, y: Any, loss_fn: LossFn | None, *,
                 probe: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` in the model's device and dtype, ``y`` checked against the model's classes.

    ``probe=False`` leaves the class check of ``y`` to the caller, who runs the model anyway
    (the ghost path checks it against the logits of its one forward).
    """
    x = _model_input(x, model)
    _check_loss_fn(loss_fn)
    if probe:
        y = _targets(y, loss_fn, x.device, _output_classes(model, x, loss_fn))
    else:
        y = as_tensor(y, "y", device=x.device)
    check_same_length(x=x, y=y)
    return x, y


def _per_example_losses(loss_fn: LossFn | None, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    losses = F.cross_entropy(logits, y, reduction="none") if loss_fn is None else loss_fn(logits, y)
    if not isinstance(losses, torch.Tensor) or losses.shape != (len(y),):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else describe(losses)
        raise ValueError(
            f"loss_fn: expected one loss per example, shape ({len(y)},) (use reduction='none'), got {shape}"
        )
    return losses


def _loss_fn_was_second(function: Callable) -> Callable:
    """Keep the old call ``f(model, loss_fn, x, y, ...)`` working for one release, with a FutureWarning.

    ``loss_fn`` is keyword-only now, after ``x, y``, as in :func:`trustml_lab.models.fit`.
    An old call is recognised by three positional arguments after ``model``, or by a
    first one that is ``None`` or a function while ``x``/``y`` come by keyword.
    """
    @functools.wraps(function)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        old = len(args) == 3 or (len(args) in (1, 2) and (args[0] is None or callable(args[0]))
                                 and ("x" in kwargs or "y" in kwargs))
        if old:
            if "loss_fn" in kwargs:
                raise TypeError(f"{function.__name__}: got loss_fn both by position and by keyword")
            warnings.warn(f"{function.__name__}(model, loss_fn, x, y, ...) is deprecated: call "
                          f"{function.__name__}(model, x, y, loss_fn=...); the old order will be removed "
                          "in a future release", FutureWarning, stacklevel=2)
            loss_fn, *rest = args
            return function(model, *rest, loss_fn=loss_fn, **kwargs)
        return function(model, *args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- mechanisms

def _noise_tensor(value: Any, name: str) -> torch.Tensor:
    tensor = as_tensor(value, name)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name}: expected real numbers, got {describe(tensor)}")
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _finite_scale(scale: float, names: str) -> float:
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{names}: the noise scale {scale} is not a finite positive number; "
                         "choose values of a sensible magnitude")
    return scale


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
    scale = _finite_scale(check_positive(sensitivity, "sensitivity") / _check_epsilon(epsilon),
                          "sensitivity, epsilon")
    _generator_on(generator, value.device)
    exponentials = torch.empty((2, *value.shape), dtype=value.dtype, device=value.device)
    exponentials.exponential_(generator=generator)
    return value + scale * (exponentials[0] - exponentials[1])


def _analytic_delta(epsilon: float, mu: float) -> float:
    """delta(epsilon) of the Gaussian mechanism with sensitivity/sigma = mu (log-space)."""
    from scipy.special import log_ndtr

    first = math.exp(log_ndtr(-epsilon / mu + mu / 2))
    log_second = epsilon + log_ndtr(-epsilon / mu - mu / 2)
    second = math.exp(log_second) if log_second < 700 else math.inf
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
    _check_choice(calibration, "calibration", ("analytic", "classic"))
    if calibration == "classic":
        if epsilon >= 1:
            raise ValueError(
                f"epsilon: the classic Gaussian bound needs epsilon < 1, got {epsilon}; "
                "use calibration='analytic'"
            )
        sigma = sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
        return _finite_scale(sigma, "sensitivity, epsilon")
    from scipy.optimize import brentq

    high = 1.0
    while _analytic_delta(epsilon, high) < delta:  # delta grows with mu, to 1; bracket the root
        high *= 2
        if not math.isfinite(high):
            raise ValueError(f"epsilon, delta: found no noise level for epsilon={epsilon}, delta={delta}")
    mu = brentq(lambda m: _analytic_delta(epsilon, m) - delta, 1e-12, high, xtol=1e-14, rtol=1e-12)
    return _finite_scale(sensitivity / mu, "sensitivity, epsilon")


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
    _generator_on(generator, value.device)
    noise = torch.normal(0.0, sigma, size=value.shape, generator=generator,
                         dtype=value.dtype, device=value.device)
    return value + noise


# --------------------------------------------------------------------------- gradients

def _per_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None) -> Gradients:
    """Per-example gradients of checked inputs: ``vmap`` of ``grad`` of a ``functional_call``."""
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def example_loss(params: Mapping[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        return _per_example_losses(loss_fn, logits, yi.unsqueeze(0)).sum()

    # randomness="different": each example its own dropout mask, drawn from torch's global RNG
    # in the order a batched forward draws it (so the gradients equal Opacus's, seed for seed)
    return vmap(grad(example_loss), in_dims=(None, 0, 0), randomness="different")(params, x, y)


@_loss_fn_was_second
def per_sample_gradients(model: nn.Module, x, y, *, loss_fn: LossFn | None = None) -> Gradients:
    """The gradient of each example's loss, ``{name: tensor (B, *param.shape)}``.

    Vectorized with ``torch.func`` (``vmap`` of ``grad`` of a ``functional_call``), no
    loop over examples. Equals the ``grad_sample`` that Opacus's ``GradSampleModule``
    stores after a backward through the mean loss (Opacus rescales by the batch size, so
    both are gradients of the per-example loss). ``loss_fn(logits, y)`` returns one loss
    per example; ``None`` means cross-entropy. The model runs in the mode it is in:
    Dropout draws one mask per example from torch's global RNG (the masks a batched
    forward would draw), a train-mode BatchNorm is refused (it mixes examples).

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(3, 2)
    >>> grads = per_sample_gradients(model, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    >>> {name: tuple(g.shape) for name, g in grads.items()}
    {'weight': (5, 2, 3), 'bias': (5, 2)}
    """
    _trainable(model)
    _check_no_batch_mixing(model)
    x, y = _model_batch(model, x, y, loss_fn)
    return _per_sample(model, x, y, loss_fn)


@dataclass(frozen=True)
class ClippedSum:
    """What :func:`clip_and_sum` returns: the summed clipped gradient and the norms before clipping.

    Unpacks like the pair it used to be: ``summed, norms = clip_and_sum(...)``.
    """

    summed: Gradients
    norms: torch.Tensor

    def __iter__(self) -> Iterator[Any]:
        return iter((self.summed, self.norms))

    def __getitem__(self, index: int) -> Any:
        return (self.summed, self.norms)[index]

    def __len__(self) -> int:
        return 2


def _clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    return (max_grad_norm / (norms + CLIP_EPS)).clamp(max=1.0)


def _clip(grads: Mapping[str, torch.Tensor], max_grad_norm: float) -> tuple[Gradients, torch.Tensor]:
    norms = torch.stack([g.reshape(len(g), -1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)
    factors = _clip_factors(norms, max_grad_norm)
    summed = {name: torch.einsum("b,b...->...", factors.to(g.dtype), g) for name, g in grads.items()}
    return summed, norms


def clip_and_sum(per_sample_grads: Mapping[str, torch.Tensor], *, max_grad_norm: float) -> ClippedSum:
    """Clip each example's whole gradient to L2 norm ``max_grad_norm`` and sum over examples.

    Flat clipping, as Opacus's ``DPOptimizer.clip_and_accumulate``: the norm is taken over
    all parameters together, each example is scaled by
    ``min(1, max_grad_norm / (norm + 1e-6))``. Returns a :class:`ClippedSum`: the summed
    clipped gradient (a dict like the input, without the batch dimension) and the
    per-example norms before clipping; it unpacks as ``(summed, norms)``.

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
    grads = {}
    for name, g in per_sample_grads.items():
        label = f"per_sample_grads[{name!r}]"
        g = as_tensor(g, label)
        if not g.is_floating_point():
            raise TypeError(f"{label}: expected floating-point gradients, got {describe(g)}")
        if g.ndim < 1 or len(g) == 0:
            raise ValueError(f"{label}: expected one gradient per example, shape (B, ...) with B >= 1, "
                             f"got {describe(g)}")
        grads[name] = g
    device = next(iter(grads.values())).device
    for name, g in grads.items():
        if g.device != device:
            raise ValueError(f"per_sample_grads[{name!r}]: expected tensors on one device ({device}), got {g.device}")
    check_same_length(**{f"per_sample_grads[{name!r}]": g for name, g in grads.items()})
    return ClippedSum(*_clip(grads, max_grad_norm))


def _check_ghost_embedding(name: str, module: nn.Embedding) -> None:
    """Refuse the Embedding options whose gradient is not a sum of one row per token."""
    where = f"Embedding at {name or 'the top level'!r}"
    if module.scale_grad_by_freq:
        raise ValueError(f"model: {where} has scale_grad_by_freq=True: it divides each row's gradient by the "
                         "token's count in the whole batch, which mixes examples (not differentially private)")
    if module.max_norm is not None:
        raise ValueError(f"model: {where} has max_norm={module.max_norm}: it renormalizes the looked-up rows in "
                         "place at every forward; method='ghost' handles plain lookups only")


def _ghost_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers holding trainable parameters: Linear, a plain Conv2d, Embedding or LayerNorm.

    One walk over the modules, per step: it also refuses train-mode layers that mix examples.
    """
    layers, seen = {}, set()
    for name, module in model.named_modules(remove_duplicate=False):
        if module.training and isinstance(module, _NORMS):
            _refuse_batch_mixing(name, module)
        # the module's own parameters (parameters(recurse=False) is slower, and this is per step)
        own = [p for p in module._parameters.values() if p is not None and p.requires_grad]
        if not own:
            continue
        plain_conv = (isinstance(module, nn.Conv2d) and module.groups == 1
                      and module.padding_mode == "zeros" and not isinstance(module.padding, str))
        if not (type(module) in _GHOST_TYPES or isinstance(module, nn.Linear) or plain_conv):
            raise ValueError(
                f"model: method='ghost' handles Linear, Conv2d (groups=1, numeric zero padding), Embedding "
                f"and LayerNorm layers, got {type(module).__name__} at {name or 'the top level'!r}; "
                "use method='per_sample'"
            )
        if type(module) is nn.Embedding:
            _check_ghost_embedding(name, module)
        if any(id(p) in seen for p in own):
            raise ValueError(f"model: layer {name!r} shares parameters with another layer; use method='per_sample'")
        seen.update(id(p) for p in own)
        layers[name] = module
    if not layers:
        raise ValueError("model: expected at least one parameter with requires_grad=True, got none")
    return layers


#: Layers whose per-example gradient norms method="ghost" computes (besides a plain Conv2d).
#: Exact types: a subclass may change what the forward computes.
_GHOST_TYPES = (nn.Linear, nn.Embedding, nn.LayerNorm)


def _linear_terms(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor, train_weight: bool, train_bias: bool):
    """A Linear layer on (B, in): example b's gradients are ``g_b a_b^T`` and ``g_b``.

    The squared norm factorizes, ``|g_b|^2 (|a_b|^2 + 1)`` with the bias, so nothing of
    size (B, out, in) is ever formed.
    """
    g_sq = torch.linalg.vecdot(g, g)
    if train_weight:
        a_sq = torch.linalg.vecdot(a, a)
        norms_sq = torch.addcmul(g_sq, g_sq, a_sq) if train_bias else g_sq * a_sq  # one op: |g|^2 (|a|^2 + 1)
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


#: A Linear layer on (N, L, in) groups the examples by active length (see
#: ``_sequence_linear_terms``) into at most this many groups.
SEQUENCE_GROUPS = 8


def _length_groups(g: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """Examples grouped by active length: ``[(indices, length)]``, longest first.

    An example's active length is one past its last position with a nonzero output
    gradient (a padded token, or a position no later layer reads, has none). The examples,
    sorted by it, are cut into at most :data:`SEQUENCE_GROUPS` groups of equal count, each
    padded only to its own longest; groups of equal length merge, examples with no
    gradient at all are dropped (they add nothing).
    """
    batch, length = g.shape[:2]
    positions = torch.arange(1, length + 1, device=g.device)
    # a row is nonzero iff its max or its min is (exact; torch.aminmax is some 4x slower on CPU)
    lengths = (((g.amax(dim=2) != 0) | (g.amin(dim=2) != 0)) * positions).amax(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    size = -(-batch // SEQUENCE_GROUPS)
    groups: list[tuple[int, int, int]] = []  # (start, stop, length) in the sorted order
    for start in range(0, batch, size):
        top = sorted_lengths[start]
        if top == 0:
            break
        stop = min(start + size, batch)
        if groups and groups[-1][2] == top:
            groups[-1] = (groups[-1][0], stop, top)
        else:
            groups.append((start, stop, top))
    return [(order[start:stop], top) for start, stop, top in groups]


def _sequence_linear_terms(layer: nn.Linear, inputs: torch.Tensor, grad_out: torch.Tensor, train_weight: bool,
                           train_bias: bool):
    """A Linear layer on (B, L, in) (a transformer's tokens): the L positions share the weight.

    Example b's weight gradient is ``g_b^T a_b`` (``a_b`` its (L, in) inputs, ``g_b`` its
    (L, out) output gradients). Per group of examples of similar active length ``l``
    (:func:`_length_groups`: padded and unread positions carry no gradient and are cut
    off), its squared norm comes from whichever is cheaper (Li et al. 2022): the ghost norm
    ``sum((a_b a_b^T) * (g_b g_b^T))``, ``O(l^2 (in + out))``, when
    ``l (in + out) < in out``, else the group's per-example gradients, ``O(l in out)``,
    then reused for the sum. The clipped sum reweights the output gradients
    (book-keeping, Bu et al. 2023).
    """
    batch = len(inputs)
    a = inputs.reshape(batch, -1, inputs.shape[-1])
    g = grad_out.reshape(batch, -1, grad_out.shape[-1])
    n_in, n_out = a.shape[2], g.shape[2]
    norms_sq = g.new_zeros(batch)
    parts = []  # (indices, a, g, per-example gradients or None)
    if train_weight:
        for index, length in _length_groups(g):
            a_part, g_part = a[index, :length], g[index, :length]
            if length * (n_in + n_out) < n_in * n_out:
                part_sq = (torch.bmm(a_part, a_part.transpose(1, 2))
                           * torch.bmm(g_part, g_part.transpose(1, 2))).sum(dim=(1, 2))
                parts.append((index, a_part, g_part, None))
            else:
                per_example = torch.bmm(g_part.transpose(1, 2), a_part)  # (n, out, in)
                part_sq = per_example.square().sum(dim=(1, 2))
                parts.append((index, None, None, per_example))
            norms_sq.index_add_(0, index, part_sq)
    bias_grads = g.sum(dim=1) if train_bias else None  # (B, out)
    if train_bias:
        norms_sq += torch.linalg.vecdot(bias_grads, bias_grads)

    def clipped_sums(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        sums = {}
        if train_weight:
            weight = g.new_zeros(n_out, n_in)
            for index, a_part, g_part, per_example in parts:
                f = factors[index]
                if per_example is None:
                    weight += (g_part * f[:, None, None]).reshape(-1, n_out).T @ a_part.reshape(-1, n_in)
                else:
                    weight += (per_example.reshape(len(f), -1).T @ f).reshape(n_out, n_in)
            sums["weight"] = weight
        if train_bias:
            sums["bias"] = bias_grads.T @ factors
        return sums

    return norms_sq, clipped_sums


def _embedding_terms(layer: nn.Embedding, ids: torch.Tensor, grad_out: torch.Tensor, train_weight: bool,
                     train_bias: bool):
    """An Embedding: example b's gradient adds ``g_bt`` to row ``ids_bt`` for each of its tokens t.

    Its squared norm is ``sum_v |sum_{t: ids_bt = v} g_bt|^2``: the output gradients summed
    per (example, token) pair (tokens repeated in an example add up), then squared, in
    ``O(L d)`` per example; the ``(vocabulary, d)`` per-example gradient is never formed.
    (It equals the ghost norm ``sum_{t,s} [ids_bt = ids_bs] g_bt . g_bs`` without its
    ``O(L^2 d)``.) Tokens at ``padding_idx`` get no gradient, as in
    ``torch.nn.functional.embedding``. The clipped sum adds each token's reweighted output
    gradient to its row (``index_add_``).
    """
    batch = len(ids)
    ids = ids.reshape(batch, -1)
    g = grad_out.reshape(batch, ids.shape[1], -1)
    if layer.padding_idx is not None:
        g = g.masked_fill((ids == layer.padding_idx)[:, :, None], 0)
    rows = torch.arange(batch, device=ids.device)
    pairs = (rows[:, None] * layer.num_embeddings + ids).reshape(-1)
    unique, which = torch.unique(pairs, return_inverse=True)
    per_pair = g.new_zeros(len(unique), g.shape[2]).index_add_(0, which, g.reshape(-1, g.shape[2]))
    norms_sq = g.new_zeros(batch).index_add_(0, torch.div(unique, layer.num_embeddings, rounding_mode="floor"),
                                             torch.linalg.vecdot(per_pair, per_pair))

    def clipped_sums(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        reweighted = (g * factors[:, None, None]).reshape(-1, g.shape[2])
        return {"weight": torch.zeros_like(layer.weight).index_add_(0, ids.reshape(-1), reweighted)}

    return norms_sq, clipped_sums


def _layer_norm_terms(layer: nn.LayerNorm, inputs: torch.Tensor, grad_out: torch.Tensor, train_weight: bool,
                      train_bias: bool):
    """A LayerNorm ``y = x_hat * weight + bias``: example b's gradients are ``sum_t g_bt * x_hat_bt``
    and ``sum_t g_bt`` (over its positions t), formed per example: they are ``normalized_shape``
    small. ``x_hat`` is recomputed from the layer's input, as the forward computed it.
    """
    batch, dims = len(inputs), len(layer.normalized_shape)
    positions = tuple(range(1, inputs.ndim - dims))  # the dimensions between the batch and the normalized ones
    per_example = {}
    if train_weight:
        x_hat = F.layer_norm(inputs, layer.normalized_shape, eps=layer.eps)
        per_example["weight"] = (grad_out * x_hat).sum(dim=positions) if positions else grad_out * x_hat
    if train_bias:
        per_example["bias"] = grad_out.sum(dim=positions) if positions else grad_out
    norms_sq = sum(p.reshape(batch, -1).square().sum(dim=1) for p in per_example.values())

    def clipped_sums(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        return {kind: torch.einsum("b...,b->...", p, factors) for kind, p in per_example.items()}

    return norms_sq, clipped_sums


def _layer_terms(layer: nn.Module, inputs: torch.Tensor):
    """The function that gives a layer's squared per-example norms and clipped sums."""
    if isinstance(layer, nn.Linear):
        return _linear_terms if inputs.ndim == 2 else _sequence_linear_terms
    if isinstance(layer, nn.Embedding):
        return _embedding_terms
    if isinstance(layer, nn.LayerNorm):
        return _layer_norm_terms
    return _general_terms


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


def _ghost_clipped_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None,
                       max_grad_norm: float, *, check_targets: bool = False) -> Gradients:
    """Ghost clipping of checked inputs; ``check_targets`` checks ``y`` against the logits first."""
    layers = _ghost_layers(model)
    if check_targets:
        try:
            logits, records = _forward_recording(model, layers, x)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"x: the model cannot run on a batch of {describe(x)}: {err}") from err
        classes = _check_logits(logits, loss_fn)
        if loss_fn is None:
            y = check_labels(y, "y", num_classes=classes)
    else:
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
        if len(inputs) != len(x):
            rows = f"{len(inputs)} row{'s' if len(inputs) != 1 else ''}"
            raise ValueError(
                f"model: layer {name!r} ran on {rows} for a batch of {len(x)} examples, not one row per "
                "example: its per-example gradients would be mixed. For a Hugging Face BERT pass position_ids "
                "and token_type_ids of shape (N, L), contiguous (Opacus issue #841), as "
                "trustml_lab.text.TokenIdsClassifier does")
        train_weight = layer.weight is not None and layer.weight.requires_grad
        train_bias = getattr(layer, "bias", None) is not None and layer.bias.requires_grad
        layer_norms_sq, summers[name] = _layer_terms(layer, inputs)(layer, inputs, grad_out, train_weight, train_bias)
        norms_sq = layer_norms_sq if norms_sq is None else norms_sq + layer_norms_sq
    factors = _clip_factors(norms_sq.sqrt(), max_grad_norm)
    # module by module, weight then bias: the order of model.named_parameters()
    return {(f"{name}.{kind}" if name else kind): total
            for name, summer in summers.items() for kind, total in summer(factors).items()}


def _clipped_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None,
                 max_grad_norm: float, method: str) -> Gradients:
    """Part 2 of a DP-SGD step: the sum of the per-example gradients clipped to ``max_grad_norm``.

    Inputs already checked (the model, ``x`` on its device and dtype, ``y`` its targets).
    """
    if method == "ghost":
        return _ghost_clipped_sum(model, x, y, loss_fn, max_grad_norm)
    return _clip(_per_sample(model, x, y, loss_fn), max_grad_norm)[0]


def _add_noise(summed: Gradients, std: float, generator: torch.Generator | None) -> Gradients:
    """Part 3 of a DP-SGD step: ``N(0, std^2)`` on every entry, parameter by parameter (Opacus's order)."""
    if std == 0:
        return summed
    # torch.normal(mean, std) draws N(0, std^2) as torch.normal(0, std, size) does, and adds it
    return {name: torch.normal(s, std, generator=generator) for name, s in summed.items()}


def _check_method(method: str) -> str:
    return _check_choice(method, "method", METHODS)


@_loss_fn_was_second
def private_gradient(model: nn.Module, x, y, *, loss_fn: LossFn | None = None, max_grad_norm: float,
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
    ``method="ghost"`` accepts models whose trainable layers are ``Linear``, ``Conv2d``,
    ``Embedding`` and ``LayerNorm`` (anything else is refused, named). One backward gives
    each layer's output gradients; per-example norms follow from the layers' inputs and
    output gradients (ghost clipping, Lee and Kifer 2020; Li et al. 2021). A ``Linear``
    layer on ``(N, in)`` never forms its per-example gradients; on ``(N, L, in)``
    (a transformer's tokens) or a convolution's patches it takes, layer by layer, whichever
    is cheaper: the ghost norm, ``O(L^2 (in + out))`` per example, or that one layer's
    per-example gradients, ``O(L in out)`` (Li et al. 2022; Bu et al. 2022). An
    ``Embedding``'s norm is the ghost norm over token ids (rows of repeated tokens add up;
    ``padding_idx`` gets no gradient), never the ``(vocabulary, d)`` per-example gradient;
    a ``LayerNorm``'s per-example gradients are formed (they are ``normalized_shape``
    small). Integer ``x`` are token ids, for a model with an ``Embedding``: with a Hugging
    Face BERT, wrap it in :class:`trustml_lab.text.TokenIdsClassifier`, which passes
    ``position_ids`` and ``token_type_ids`` with a batch dimension (Opacus issue #841; a
    layer that sees one row for the whole batch is refused, not summed wrongly).
    The clipped sum is then assembled from the same inputs and the output gradients
    reweighted by the clipping factors, which gives what the second, reweighted backward
    of ghost clipping gives without running it (book-keeping, Bu et al. 2023). Both
    methods return the same tensors (to float rounding). The model runs in the mode it
    is in (Dropout supported, train-mode BatchNorm refused: it mixes examples).

    >>> _ = torch.manual_seed(0)
    >>> model, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> a = private_gradient(model, x, y, max_grad_norm=0.1, noise_multiplier=0.0)
    >>> b = private_gradient(model, x, y, max_grad_norm=0.1, noise_multiplier=0.0, method="ghost")
    >>> all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    True
    """
    max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    noise_multiplier = _check_noise_multiplier(noise_multiplier)
    _check_method(method)
    ghost = method == "ghost"
    if ghost:
        check_model(model)  # _ghost_layers checks the layers, in its one walk over the modules
    else:
        _trainable(model)
        _check_no_batch_mixing(model)
    x, y = _model_batch(model, x, y, loss_fn, probe=not ghost)
    _generator_on(generator, x.device)
    if ghost:
        summed = _ghost_clipped_sum(model, x, y, loss_fn, max_grad_norm, check_targets=True)
    else:
        summed = _clip(_per_sample(model, x, y, loss_fn), max_grad_norm)[0]
    return _add_noise(summed, noise_multiplier * max_grad_norm, generator)


# --------------------------------------------------------------------------- accounting

def _check_accountant(accountant: str) -> str:
    return _check_choice(accountant, "accountant", ACCOUNTANTS)


def _prv_grid_points(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The size of the grid Opacus's PRV accountant would discretize on (its own formulas)."""
    from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV, compute_safe_domain_size

    eps_error, delta_error = 0.01, delta / 1000  # PRVAccountant.get_epsilon's defaults
    half_width = compute_safe_domain_size(prvs=[PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)],
                                          max_self_compositions=[steps], eps_error=eps_error,
                                          delta_error=delta_error)
    mesh = eps_error / math.sqrt(steps * math.log(12 / delta_error) / 2)
    return 2 * half_width / mesh


@functools.lru_cache(maxsize=256)
def _accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                        accountant: str) -> float:
    """Opacus's answer, cached: it is a pure function of the history, and costs ~0.1 s.

    Inputs already checked. Failures of the accountant (its numerics, its memory) come
    back as a ValueError naming the arguments.
    """
    from opacus.accountants import create_accountant

    setting = (f"noise_multiplier={noise_multiplier}, sample_rate={sample_rate}, steps={steps}, "
               f"delta={delta}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")  # RDP's alpha-range hint
            if accountant == "prv":
                points = _prv_grid_points(noise_multiplier, sample_rate, steps, delta)
                if not points <= MAX_PRV_GRID:
                    raise ValueError(f"accountant: the PRV accountant would discretize on {points:.3g} points "
                                     f"(more than {MAX_PRV_GRID:,}) for {setting}; use accountant='rdp', "
                                     "fewer steps or a smaller sample_rate")
            book = create_accountant(mechanism=accountant)
            book.history = [(noise_multiplier, sample_rate, steps)]
            epsilon = float(book.get_epsilon(delta=delta))
    except ValueError as err:
        if str(err).startswith("accountant:"):
            raise
        raise ValueError(f"accountant: Opacus's {accountant.upper()} accountant cannot compute epsilon for "
                         f"{setting}: {err}") from err
    except (RuntimeError, ArithmeticError, MemoryError) as err:
        raise ValueError(f"accountant: Opacus's {accountant.upper()} accountant cannot compute epsilon for "
                         f"{setting}: {type(err).__name__}: {err}") from err
    if math.isnan(epsilon):
        raise ValueError(f"accountant: Opacus's {accountant.upper()} accountant returned NaN for {setting}")
    return epsilon


def epsilon_spent(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` DP-SGD steps, read from Opacus's accountant (``"rdp"``, ``"prv"``).

    A thin, checked wrapper: it gives the accountant the history
    ``[(noise_multiplier, sample_rate, steps)]`` and returns its ``get_epsilon(delta)``, so it
    equals ``PrivacyEngine(accountant=...).get_epsilon(delta)`` after the same training.
    ``"prv"`` (Gopi et al. 2021) is tighter than ``"rdp"`` (Mironov 2017). No noise means no
    privacy: ``noise_multiplier=0`` gives ``inf``. Refused up front rather than left to
    hang or exhaust memory: ``noise_multiplier`` above :data:`MAX_NOISE_MULTIPLIER`, and
    for ``"prv"`` a history whose discretization grid exceeds :data:`MAX_PRV_GRID` points.

    >>> round(epsilon_spent(noise_multiplier=1.2, sample_rate=0.01, steps=1000, delta=1e-5), 3)  # doctest: +NUMBER
    1.455
    """
    noise_multiplier = _check_noise_multiplier(noise_multiplier)
    sample_rate, delta = _check_sample_rate(sample_rate), _check_delta(delta)
    steps = check_int(steps, "steps", low=0)
    _check_accountant(accountant)
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return _accountant_epsilon(noise_multiplier, sample_rate, steps, delta, accountant)


def noise_multiplier_for_epsilon(*, epsilon: float, delta: float, sample_rate: float, steps: int,
                                 accountant: str = "rdp", tolerance: float = 0.01) -> float:
    """The noise multiplier that spends ``epsilon`` (within ``tolerance``) in ``steps`` steps.

    Opacus's search, ``opacus.accountants.utils.get_noise_multiplier`` (double the noise
    from 20 until epsilon drops below the target, then bisect until the spent epsilon is
    within ``tolerance`` below it), step for step, so the two return the same number; with
    two guards Opacus lacks. ``tolerance`` must be at least
    ``MIN_RELATIVE_TOLERANCE * epsilon`` (1e-6 epsilon) and below ``epsilon``: finer
    tolerances cannot be met in floating point. And the bisection stops when the noise
    multiplier reaches float resolution (where the accountant's epsilon jumps over the
    target window) with a ValueError, where Opacus's loop would run forever.

    >>> sigma = noise_multiplier_for_epsilon(epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=1000)
    >>> epsilon_spent(noise_multiplier=sigma, sample_rate=0.01, steps=1000, delta=1e-5) <= 3.0
    True
    """
    epsilon, delta = _check_epsilon(epsilon), _check_delta(delta)
    sample_rate = _check_sample_rate(sample_rate)
    steps = check_int(steps, "steps")
    tolerance = check_positive(tolerance, "tolerance")
    _check_accountant(accountant)
    if not MIN_RELATIVE_TOLERANCE * epsilon <= tolerance < epsilon:
        raise ValueError(f"tolerance: expected a number in [{MIN_RELATIVE_TOLERANCE:g} * epsilon, epsilon) = "
                         f"[{MIN_RELATIVE_TOLERANCE * epsilon:.3g}, {epsilon:g}), got {tolerance}")

    def spent(sigma: float) -> float:
        return _accountant_epsilon(sigma, sample_rate, steps, delta, accountant)

    from opacus.accountants.utils import MAX_SIGMA

    sigma_low, sigma_high, eps_high = 0.0, 10.0, math.inf
    while eps_high > epsilon:
        sigma_high = 2 * sigma_high
        if sigma_high > MAX_SIGMA:
            raise ValueError(f"epsilon: {epsilon} is out of reach in {steps} steps at sample_rate {sample_rate}, "
                             f"delta {delta}: even noise multiplier {MAX_SIGMA:g} spends more")
        eps_high = spent(sigma_high)
    while epsilon - eps_high > tolerance:
        sigma = (sigma_low + sigma_high) / 2
        if sigma in (sigma_low, sigma_high):
            raise ValueError(f"tolerance: {tolerance} cannot be met: at noise multiplier {sigma_high!r} (float "
                             f"resolution) the {accountant.upper()} accountant's epsilon jumps from above "
                             f"{epsilon} to {eps_high}; use a larger tolerance")
        eps = spent(sigma)
        if eps < epsilon:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
    return sigma_high


# --------------------------------------------------------------------------- DP-SGD training

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


def _planned_steps(sample_rate: float, epochs: int) -> int:
    steps = epochs * max(1, round(1 / sample_rate))
    if steps > MAX_STEPS:
        raise ValueError(f"sample_rate, epochs: {epochs} epochs at sample_rate {sample_rate:g} plan {steps:,} "
                         f"DP-SGD steps (an epoch is round(1 / sample_rate) steps), more than MAX_STEPS = "
                         f"{MAX_STEPS:,}; raise sample_rate or train fewer epochs")
    return steps


def _poisson_batch(n: int, sample_rate: float, generator: torch.Generator | None,
                   device: torch.device) -> torch.Tensor:
    """Part 1 of a DP-SGD step: the indices of a Poisson batch (each row in with prob. ``sample_rate``)."""
    chosen = torch.rand(n, generator=generator, device=device) < sample_rate
    return chosen.nonzero().squeeze(1)


def _apply_private_gradient(params: Mapping[str, nn.Parameter], noised: Gradients, expected_batch: int) -> None:
    """Part 4 of a DP-SGD step: the noised sum divided by the expected batch size, as ``.grad``."""
    for name, p in params.items():
        p.grad = noised[name] / expected_batch


def dp_fit(model: nn.Module, x, y, *, noise_multiplier: float, max_grad_norm: float, sample_rate: float,
           epochs: int, lr: float, delta: float, momentum: float = 0.0, method: str = "per_sample",
           loss_fn: LossFn | None = None, accountant: str = "rdp",
           generator: torch.Generator | None = None, progress: bool = True) -> DPTrainingResult:
    """Train ``model`` with DP-SGD (Abadi et al. 2016) and report the epsilon it spent.

    Each step draws a Poisson batch (every example independently with probability
    ``sample_rate``), takes its clipped sum (as :func:`private_gradient` does) and noise,
    divides by the expected batch size ``int(sample_rate * n)`` and takes an SGD step,
    exactly as Opacus's ``make_private`` with Poisson sampling does; an epoch is
    ``round(1 / sample_rate)`` steps (at most :data:`MAX_STEPS` in all). Epsilon comes from
    :func:`epsilon_spent` (Opacus's accountant) for that history; it is computed, and every
    argument checked, before the first step. Batches and noise come from ``generator``
    (on the model's device; Dropout masks from torch's global RNG). The model trains in
    train mode (a BatchNorm is refused: it mixes examples) and is left in the mode it
    came in. A Poisson batch has a random size, so each step syncs with the device once.

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
    epochs = check_int(epochs, "epochs")
    lr = check_positive(lr, "lr")
    momentum = check_positive(momentum, "momentum", strict=False)
    _check_method(method)
    _check_accountant(accountant)
    params = _trainable(model)
    _check_no_batch_mixing(model, training=True)
    x, y = _model_batch(model, x, y, loss_fn)
    _generator_on(generator, x.device)
    steps = _planned_steps(sample_rate, epochs)
    epsilon = epsilon_spent(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                            delta=delta, accountant=accountant)
    if method == "ghost":
        _ghost_layers(model)  # refuse unsupported layers now, not at the first step
    n = len(x)
    expected_batch = max(1, int(sample_rate * n))
    std = noise_multiplier * max_grad_norm
    optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    with train_mode(model):
        for _ in tqdm(range(steps), desc="DP-SGD steps", disable=not progress_enabled(progress), leave=False):
            index = _poisson_batch(n, sample_rate, generator, x.device)
            if len(index):
                summed = _clipped_sum(model, x[index], y[index], loss_fn, max_grad_norm, method)
            else:  # an empty Poisson batch still gets its noise
                summed = {name: torch.zeros_like(p) for name, p in params.items()}
            _apply_private_gradient(params, _add_noise(summed, std, generator), expected_batch)
            optimizer.step()
    return DPTrainingResult(model, epsilon, delta, steps, noise_multiplier, sample_rate, accountant)


# --------------------------------------------------------------------------- membership inference

@dataclass(frozen=True)
class MembershipResult:
    """A membership attack's success: ROC AUC, advantage ``TPR - FPR`` and its threshold.

    ``threshold`` is on the attack score: "member" when ``score >= threshold``. With
    ``held_out=False`` the advantage is the maximum over thresholds on the scores it is
    measured on: optimistic (biased up; above 0 even when nothing leaks). With
    ``held_out=True`` the threshold was chosen on one half of the scores and the
    advantage measured on the other half: unbiased, and negative as often as positive
    when nothing leaks.
    """

    auc: float
    advantage: float
    threshold: float
    held_out: bool = False


@renamed_arguments(batch_size="internal_batch_size")
def membership_scores(model: nn.Module, x, y, *, loss_fn: LossFn | None = None,
                      internal_batch_size: int = 4096) -> torch.Tensor:
    """The loss-threshold attack's score of each example: minus its loss (higher = "member").

    Yeom et al. (2018): a model fits its training examples better, so a low loss hints
    that an example was trained on. Computed without gradients, in eval mode (the model's
    mode is restored afterwards), ``internal_batch_size`` rows at a time (a memory knob:
    the scores do not depend on it; ``batch_size`` is its old name).

    >>> model = nn.Linear(2, 2)
    >>> membership_scores(model, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).shape
    torch.Size([3])
    """
    check_model(model)
    size = check_int(internal_batch_size, "internal_batch_size")
    x = _model_input(x, model)
    _check_loss_fn(loss_fn)
    y = as_tensor(y, "y", device=x.device)
    check_same_length(x=x, y=y)
    with torch.no_grad(), eval_mode(model):
        first = _run_model(model, x[:size])
        y = _targets(y, loss_fn, x.device, _check_logits(first, loss_fn))
        parts = [-_per_example_losses(loss_fn, first, y[:size])]
        parts += [-_per_example_losses(loss_fn, model(x[i:i + size]), y[i:i + size])
                  for i in range(size, len(x), size)]
    return torch.cat(parts)


def _scores(value: Any, name: str, device: torch.device | None = None, minimum: int = 1) -> torch.Tensor:
    scores = as_tensor(value, name, dtype=torch.float64, device=device, ndim=1)
    if len(scores) < minimum:
        raise ValueError(f"{name}: expected at least {minimum} score{'s' if minimum > 1 else ''}, got {len(scores)}")
    return scores


def _roc_auc(s_in: torch.Tensor, s_out: torch.Tensor) -> float:
    """The Mann-Whitney statistic: P(member score > non-member score), ties counting one half."""
    scores = torch.cat([s_in, s_out])
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)  # ascending
    ends = torch.cumsum(counts, 0).to(torch.float64)
    average_rank = ends - (counts.to(torch.float64) - 1) / 2  # average 1-based ranks of tied groups
    n_in, n_out = len(s_in), len(s_out)
    u = average_rank[inverse[:n_in]].sum() - n_in * (n_in + 1) / 2
    return float(u / (n_in * n_out))


def _best_gap(s_in: torch.Tensor, s_out: torch.Tensor) -> tuple[float, float]:
    """``max_t (TPR - FPR)`` of "member when score >= t" over the observed scores, and its ``t``.

    ``(0, inf)`` when no threshold beats guessing (flag nobody).
    """
    values, inverse, counts = torch.unique(torch.cat([s_in, s_out]), return_inverse=True, return_counts=True)
    is_member = torch.zeros(len(inverse), dtype=torch.float64, device=values.device)
    is_member[:len(s_in)] = 1
    members_at = torch.zeros_like(values).index_add_(0, inverse, is_member)
    # thresholds at each distinct score, from the highest down
    tpr = torch.cumsum(members_at.flip(0), 0) / len(s_in)
    fpr = torch.cumsum((counts - members_at).flip(0), 0) / len(s_out)
    gaps = tpr - fpr
    best = int(torch.argmax(gaps))
    if float(gaps[best]) <= 0:
        return 0.0, math.inf
    return float(gaps[best]), float(values.flip(0)[best])


def _halves(n: int, generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random split of ``range(n)`` into a selection half (``n // 2``) and an evaluation half."""
    order = torch.randperm(n, generator=generator,
                           device=generator.device if generator is not None else "cpu").to(device)
    return order[:n // 2], order[n // 2:]


def attack_metrics(member_scores, non_member_scores, *, held_out: bool = False,
                   generator: torch.Generator | None = None) -> MembershipResult:
    """ROC AUC and advantage of an attack that calls ``score >= t`` a member.

    The AUC equals scikit-learn's ``roc_auc_score`` (ties count one half, the Mann-Whitney
    statistic), an unbiased estimate of the attack's true AUC. The advantage:

    - ``held_out=False`` (default): ``max_t (TPR - FPR)`` over the scores themselves, the
      maximum of ``tpr - fpr`` over scikit-learn's ``roc_curve`` (0 when no threshold beats
      guessing). Optimistic: the threshold is fitted to the very scores it is judged on, so
      even scores that carry no signal give an advantage above 0 (of order ``1 / sqrt(n)``);
    - ``held_out=True``: ``t`` chosen that way on a random half of each set (drawn from
      ``generator``), ``TPR - FPR`` at ``t`` measured on the other halves. Unbiased: for
      scores that carry no signal it is centred on 0, and it may be negative.

    >>> result = attack_metrics(torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.1, 0.4, 0.2, 0.35]))
    >>> round(result.auc, 4), round(result.advantage, 4), round(result.threshold, 4)
    (0.8333, 0.6667, 0.8)
    """
    minimum = 2 if held_out else 1
    s_in = _scores(member_scores, "member_scores", minimum=minimum)
    s_out = _scores(non_member_scores, "non_member_scores", device=s_in.device, minimum=minimum)
    if not isinstance(held_out, (bool, np.bool_)):
        raise TypeError(f"held_out: expected True or False, got {describe(held_out)}")
    auc = _roc_auc(s_in, s_out)
    if not held_out:
        check_generator(generator)
        return MembershipResult(auc, *_best_gap(s_in, s_out))
    check_generator(generator)  # it draws the split on its own device
    pick_in, judge_in = _halves(len(s_in), generator, s_in.device)
    pick_out, judge_out = _halves(len(s_out), generator, s_in.device)
    _, threshold = _best_gap(s_in[pick_in], s_out[pick_out])
    gap = float((s_in[judge_in] >= threshold).double().mean() - (s_out[judge_out] >= threshold).double().mean())
    return MembershipResult(auc, gap, threshold, held_out=True)


@renamed_arguments(batch_size="internal_batch_size")
def membership_inference(model: nn.Module, members, non_members, *, loss_fn: LossFn | None = None,
                         internal_batch_size: int = 4096, held_out: bool = False,
                         generator: torch.Generator | None = None) -> MembershipResult:
    """The loss-threshold membership attack (Yeom et al. 2018) on ``(x, y)`` pairs.

    Scores both sets with :func:`membership_scores` and measures the attack with
    :func:`attack_metrics`: AUC 0.5 and advantage 0 mean the attacker learns nothing. The
    default advantage is the best threshold's on these very scores, an optimistic figure;
    ``held_out=True`` picks the threshold on half of each set and measures it on the other
    half (unbiased). A model that is epsilon-DP bounds the advantage by
    ``(e^eps - 1) / (e^eps + 1)`` (plus delta), whatever the attack.

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
        try:
            scores.append(membership_scores(model, pair[0], pair[1], loss_fn=loss_fn,
                                            internal_batch_size=internal_batch_size))
        except (ValueError, TypeError) as err:
            raise type(err)(f"{name}: {err}") from err
    return attack_metrics(scores[0], scores[1], held_out=held_out, generator=generator)


# --------------------------------------------------------------------------- audits

def clopper_pearson_upper(successes, trials, *, confidence: float = 0.95) -> torch.Tensor:
    """The upper end of the two-sided Clopper-Pearson interval for a binomial proportion.

    A thin wrapper of :func:`trustml_lab._stats.clopper_pearson` (the package's one
    implementation): equals ``scipy.stats.binomtest(k, n).proportion_ci(confidence,
    method="exact").high``, the ``1 - (1 - confidence) / 2`` quantile of
    ``Beta(k + 1, n - k)`` (1 when ``k = n``). Vectorized over ``successes`` (float64 out).

    >>> clopper_pearson_upper(torch.tensor([0, 5]), 10)
    tensor([0.3085, 0.8129], dtype=torch.float64)
    """
    trials = check_int(trials, "trials")
    return clopper_pearson(successes, trials, confidence=_check_confidence(confidence)).high


@dataclass(frozen=True)
class AuditResult:
    """An empirical lower bound on epsilon, and the threshold test that gave it.

    ``fpr_upper`` and ``fnr_upper`` are the Clopper-Pearson upper bounds on that test's
    error rates; ``method`` says how the threshold was chosen (see :func:`audit_epsilon`):
    ``"bonferroni"``, ``"split"`` and ``"fixed"`` (:func:`audit_epsilon_at`) hold with
    probability ``confidence``; ``"in_sample"`` is optimistic.
    """

    epsilon_lower_bound: float
    threshold: float
    fpr_upper: float
    fnr_upper: float
    confidence: float
    method: str = "bonferroni"


@functools.lru_cache(maxsize=64)
def _upper_bounds(trials: int, level: float) -> torch.Tensor:
    """One-sided Clopper-Pearson upper bounds at ``level`` for every count ``0..trials``."""
    return clopper_pearson(torch.arange(trials + 1), trials, confidence=level, alternative="less").high


def _audit_scores(scores_in: Any, scores_out: Any, minimum: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    s_in = _scores(scores_in, "scores_in", minimum=minimum)
    return s_in, _scores(scores_out, "scores_out", device=s_in.device, minimum=minimum)


def _bounds(false_negatives: torch.Tensor, false_positives: torch.Tensor, n_in: int, n_out: int, delta: float,
            level_in: float, level_out: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The epsilon bound of threshold tests with these error counts, and their rate bounds.

    DP forces ``FPR + e^eps FNR >= 1 - delta`` and the symmetric inequality; with upper
    bounds on both rates, ``eps >= max(log((1 - delta - FNR_up) / FPR_up),
    log((1 - delta - FPR_up) / FNR_up))``.
    """
    device = false_negatives.device
    fnr_up = _upper_bounds(n_in, level_in).to(device)[false_negatives]
    fpr_up = _upper_bounds(n_out, level_out).to(device)[false_positives]
    return torch.maximum(_log_ratio(1 - delta - fnr_up, fpr_up), _log_ratio(1 - delta - fpr_up, fnr_up)), \
        fpr_up, fnr_up


def _log_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``log(numerator / denominator)``, ``-inf`` where the numerator is not positive.

    (Upper bounds are never 0. ``torch.log`` of float64 zeros is some fifty times slower
    than of positive numbers on common CPUs, so zeros never reach it.)
    """
    positive = numerator > 0
    return torch.where(positive, torch.log(numerator.clamp_min(1e-300) / denominator), -math.inf)


def _errors_at_every_threshold(s_in: torch.Tensor, s_out: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each distinct score ``t`` and the errors of "in when score >= t": #in-scores < t, #out-scores >= t."""
    values, inverse, counts = torch.unique(torch.cat([s_in, s_out]), return_inverse=True, return_counts=True)
    in_at = torch.zeros(len(values), dtype=torch.long, device=values.device).index_add_(
        0, inverse[:len(s_in)], torch.ones(len(s_in), dtype=torch.long, device=values.device))
    out_at = counts - in_at
    false_negatives = torch.cumsum(in_at, 0) - in_at  # strictly below t
    false_positives = len(s_out) - (torch.cumsum(out_at, 0) - out_at)  # at or above t
    return values, false_negatives, false_positives


def _best_bound(s_in: torch.Tensor, s_out: torch.Tensor, delta: float, level_in: float,
                level_out: float) -> tuple[float, float, float, float]:
    thresholds, false_negatives, false_positives = _errors_at_every_threshold(s_in, s_out)
    bounds, fpr_up, fnr_up = _bounds(false_negatives, false_positives, len(s_in), len(s_out), delta,
                                     level_in, level_out)
    best = int(torch.argmax(bounds))
    return float(bounds[best]), float(thresholds[best]), float(fpr_up[best]), float(fnr_up[best])


def _bound_at(s_in: torch.Tensor, s_out: torch.Tensor, threshold: float, delta: float,
              level: float) -> tuple[float, float, float]:
    false_negatives = (s_in < threshold).sum().reshape(1)
    false_positives = (s_out >= threshold).sum().reshape(1)
    bounds, fpr_up, fnr_up = _bounds(false_negatives, false_positives, len(s_in), len(s_out), delta, level, level)
    return float(bounds[0]), float(fpr_up[0]), float(fnr_up[0])


def audit_epsilon_at(scores_in, scores_out, *, threshold: float, delta: float,
                     confidence: float = 0.95) -> AuditResult:
    """A lower bound on epsilon from canaries' scores, for a threshold chosen in advance.

    Jagielski, Ullman and Oprea (2020): a distinguisher that calls ``score >= threshold``
    "canary was in the training set" has false positive rate FPR (on ``scores_out``, runs
    without the canary) and false negative rate FNR (on ``scores_in``, runs with it). An
    (epsilon, delta)-DP training forces ``FPR + e^eps FNR >= 1 - delta`` and the symmetric
    inequality, so with one-sided Clopper-Pearson upper bounds on both rates, each at
    level ``1 - (1 - confidence) / 2``, with probability at least ``confidence``::

        epsilon >= max(log((1 - delta - FNR_up) / FPR_up), log((1 - delta - FPR_up) / FNR_up))

    floored at 0. Valid only if ``threshold`` did not look at these scores: choose it on
    other runs (:func:`audit_epsilon` with ``method="split"`` does that within one set of
    runs; its default ``"bonferroni"`` corrects for choosing it on the same runs). A bound
    above the accountant's epsilon means a bug in the training or the accounting.

    >>> g = torch.Generator().manual_seed(0)
    >>> s_out, s_in = torch.randn(1000, generator=g), torch.randn(1000, generator=g) + 1.0
    >>> round(audit_epsilon_at(s_in, s_out, threshold=2.0, delta=1e-5).epsilon_lower_bound, 3)  # doctest: +NUMBER
    1.182
    """
    delta, confidence = _check_delta(delta), _check_confidence(confidence)
    threshold = check_in_range(threshold, "threshold", -math.inf, math.inf)
    s_in, s_out = _audit_scores(scores_in, scores_out)
    bound, fpr_up, fnr_up = _bound_at(s_in, s_out, threshold, delta, 1 - (1 - confidence) / 2)
    return AuditResult(max(0.0, bound), threshold, fpr_up, fnr_up, confidence, "fixed")


def audit_epsilon(scores_in, scores_out, *, delta: float, confidence: float = 0.95, method: str = "bonferroni",
                  generator: torch.Generator | None = None) -> AuditResult:
    """A lower bound on epsilon from canaries' scores, the threshold chosen from the scores.

    The bound of :func:`audit_epsilon_at` (Jagielski, Ullman and Oprea 2020), with the
    threshold ``t`` of the test "canary in when score >= t" chosen from the data.
    Maximizing the bound over thresholds on the same scores that give the Clopper-Pearson
    bounds is a search: the best of many bounds exceeds the truth more often than each
    one does, so that maximum is *not* a lower bound at level ``confidence`` (on a
    Laplace mechanism of known epsilon it exceeds epsilon in about 10% of audits at 95%).
    ``method`` says how the search is paid for:

    - ``"bonferroni"`` (default): maximize over all thresholds, every rate bound at level
      ``1 - (1 - confidence) / (2 n)`` for the ``n`` scores of its set. Valid at level
      ``confidence`` whatever threshold wins: a threshold can only fall between two of the
      ``n`` order statistics, the ``k``-th of which is Beta-distributed exactly as the
      Clopper-Pearson bound assumes, so a union bound over the ``n`` of them pays for the
      search. Deterministic, and uses all runs;
    - ``"split"``: choose ``t`` on a random half of each set of scores (drawn from
      ``generator``), bound epsilon at ``t`` on the other halves (:func:`audit_epsilon_at`).
      Valid at level ``confidence``; tighter when the scores take few values (randomized
      response), noisier otherwise (the chosen ``t`` may not carry over);
    - ``"in_sample"``: maximize over all thresholds with the bounds of a single test, as
      Jagielski et al. report it. Optimistic; for comparison only.

    The result is floored at 0.

    >>> g = torch.Generator().manual_seed(0)
    >>> s_out, s_in = torch.randn(1000, generator=g), torch.randn(1000, generator=g) + 1.0
    >>> round(audit_epsilon(s_in, s_out, delta=1e-5).epsilon_lower_bound, 3)  # doctest: +NUMBER
    1.064
    >>> split = audit_epsilon(s_in, s_out, delta=1e-5, method="split", generator=torch.Generator().manual_seed(0))
    >>> round(split.epsilon_lower_bound, 3)  # doctest: +NUMBER
    1.125
    >>> round(audit_epsilon(s_in, s_out, delta=1e-5, method="in_sample").epsilon_lower_bound, 3)  # optimistic
    1.54
    """
    delta, confidence = _check_delta(delta), _check_confidence(confidence)
    _check_choice(method, "method", AUDIT_METHODS)
    s_in, s_out = _audit_scores(scores_in, scores_out, minimum=2 if method == "split" else 1)
    if method == "split":
        check_generator(generator)  # it draws the split on its own device
        pick_in, judge_in = _halves(len(s_in), generator, s_in.device)
        pick_out, judge_out = _halves(len(s_out), generator, s_in.device)
        level = 1 - (1 - confidence) / 2
        _, threshold, _, _ = _best_bound(s_in[pick_in], s_out[pick_out], delta, level, level)
        bound, fpr, fnr = _bound_at(s_in[judge_in], s_out[judge_out], threshold, delta, level)
    else:
        check_generator(generator)
        alpha = (1 - confidence) / 2
        level_in, level_out = (1 - alpha / len(s_in), 1 - alpha / len(s_out)) if method == "bonferroni" else \
            (1 - alpha, 1 - alpha)
        bound, threshold, fpr, fnr = _best_bound(s_in, s_out, delta, level_in, level_out)
    return AuditResult(max(0.0, bound), threshold, fpr, fnr, confidence, method)
