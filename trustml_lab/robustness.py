"""Adversarial robustness: attack (FGSM, PGD), evaluate honestly, train robust models, certify.

Every kernel is batched and device-agnostic. Attacks take gradients with respect to the
input only (``torch.autograd.grad``), never accumulate weight gradients, batch all
restarts into one forward pass, and never synchronize with the host inside the step loop.
The loss of each attack step is the batch-mean cross-entropy, as in torchattacks, so that
:func:`fgsm` and :func:`pgd` (``random_start=False``) reproduce torchattacks' ``FGSM``,
``PGD`` and ``PGDL2`` step for step.

Inputs are checked once, at the edge: ``x`` must be a finite floating batch (converted to
the model's device and dtype), ``y`` whole-number labels inside the model's classes, and,
for the attacks, ``x`` inside the ``clamp`` range. Every function that runs the model
switches it to eval mode and restores the mode it found.

References: Goodfellow et al. 2015 (FGSM); Madry et al. 2018 (PGD, PGD training); Wong,
Rice and Kolter 2020, "Fast is better than free" (FGSM with random start); Carlini et al.
2019, "On evaluating adversarial robustness" (sanity checks); Cohen, Rosenfeld and Kolter
2019 (randomized smoothing, CERTIFY and PREDICT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._stats import clopper_pearson
from ._validation import (
    MAX_ELEMENTS,
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
from .models import fit

__all__ = [
    "AccuracyCurve",
    "Certificate",
    "SanityCheck",
    "SanityReport",
    "attack_sanity_checks",
    "certified_accuracy",
    "certify",
    "clopper_pearson_lower",
    "fgsm",
    "fit_adversarial",
    "pgd",
    "robust_accuracy",
    "smoothed_predict",
]

NORMS = ("linf", "l2")
METHODS = ("fgsm", "fgsm_rs", "pgd")
ABSTAIN = -1
_TINY = 1e-10  # guards the L2 normalizations, as torchattacks' ``eps_for_division``


class Attack(Protocol):
    """What :func:`robust_accuracy` calls: ``attack(model, x, y, eps=...) -> x_adv``."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float) -> torch.Tensor: ...


# --------------------------------------------------------------------------- input checks

def _flag(value: Any, name: str) -> bool:
    """A Python or NumPy bool (``targeted="no"`` would otherwise be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {describe(value)}")
    return bool(value)


def _check_norm(norm: Any, *, optional: bool = False) -> str | None:
    if norm is None and optional:
        return None
    if not isinstance(norm, str) or norm not in NORMS:
        allowed = NORMS + ((None,) if optional else ())
        raise ValueError(f"norm: expected one of {allowed}, got {describe(norm)}")
    return norm


def _check_clamp(clamp: Any) -> tuple[float, float] | None:
    """``None`` or a pair ``(low, high)`` of finite numbers with ``low < high``."""
    if clamp is None:
        return None
    if isinstance(clamp, (str, bytes)) or not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise TypeError(f"clamp: expected a pair (low, high) or None, got {describe(clamp)}")
    try:  # a string or None is a TypeError; NaN or infinity a ValueError
        low, high = (check_in_range(v, "clamp", -math.inf, math.inf) for v in clamp)
    except ValueError:
        raise ValueError(f"clamp: expected finite bounds (low, high), got {tuple(clamp)}") from None
    if not low < high:
        raise ValueError(f"clamp: expected low < high, got {tuple(clamp)}")
    return low, high


def _radii(value: Any, name: str) -> list[float]:
    """A non-empty list of finite radii >= 0 from a list, tuple, 1-d array or tensor.

    A single number is refused (``TypeError``): the functions that take radii return one
    value per radius, so ``eps=0.1`` must be written ``eps=[0.1]``."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise TypeError(f"{name}: expected a 1-d list of radii such as [0.0, 0.1], got {describe(value)}")
        value = value.tolist()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, set, frozenset, range)):
        raise TypeError(f"{name}: expected a list of radii such as [0.0, 0.1], got {describe(value)}")
    radii = [check_positive(v, name, strict=False) for v in value]
    if not radii:
        raise ValueError(f"{name}: expected at least one radius, got an empty list")
    return radii


def _logit_width(model: nn.Module, x: torch.Tensor) -> int:
    """The number of classes, from one forward pass on one example (run it in eval mode).

    A model that cannot take ``x``'s shape fails here, with a message naming ``x``,
    instead of deep inside a layer."""
    try:
        with torch.no_grad():
            logits = model(x[:1])
    except RuntimeError as err:
        raise ValueError(f"x: the model cannot take inputs of shape {tuple(x.shape[1:])} per example "
                         f"({describe(x)}): {err}") from err
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        raise ValueError(f"model: expected logits of shape (N, C) from a batch of N inputs, got "
                         f"{describe(logits)} for one input")
    return logits.shape[1]


def _inputs(model: nn.Module, x: Any, y: Any, clamp: tuple[float, float] | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as a finite, non-empty batch in the model's device and dtype (inside ``clamp``),
    ``y`` as int64 labels inside the model's classes. Call it with the model in eval mode."""
    check_model(model)
    x = as_model_input(x, "x", model)
    classes = _logit_width(model, x)
    y = check_labels(y, "y", num_classes=classes, device=x.device)
    check_same_length(x=x, y=y)
    if clamp is not None:
        low, high = torch.stack([x.min(), x.max()]).tolist()  # one host sync, at the edge
        if low < clamp[0] or high > clamp[1]:
            raise ValueError(f"x: expected values inside clamp={clamp}, got values in [{low:g}, {high:g}]")
    return x, y


def _budget_tolerance(dtype: torch.dtype, eps: float) -> float:
    """Float slack when checking ``||x_adv - x|| <= eps`` (the projection rounds)."""
    tiny = torch.finfo(dtype).eps
    return max(1e-5, 100 * tiny) * eps + max(1e-6, 10 * tiny)


def _perturbation_sizes(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(p=2, dim=1)


def _check_attack_output(x_adv: Any, x: torch.Tensor) -> torch.Tensor:
    """The contract of an attack: a finite tensor of the inputs' shape, dtype and device."""
    if not isinstance(x_adv, torch.Tensor):
        raise TypeError(f"attack: expected it to return a tensor of adversarial inputs, got {describe(x_adv)}")
    if x_adv.shape != x.shape:
        raise ValueError(f"attack: returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}; "
                         "expected the inputs' shape")
    if x_adv.dtype != x.dtype or x_adv.device != x.device:
        raise ValueError(f"attack: returned {x_adv.dtype} on {x_adv.device}; expected {x.dtype} on {x.device}, "
                         "the inputs' dtype and device")
    x_adv = x_adv.detach()
    if not bool(torch.isfinite(x_adv).all()):
        raise ValueError(f"attack: returned {int((~torch.isfinite(x_adv)).sum())} NaN or infinite values")
    return x_adv


def _check_attack_budget(x_adv: torch.Tensor, x: torch.Tensor, *, eps: float, norm: str | None,
                         clamp: tuple[float, float] | None) -> None:
    """Refuse an attack output outside ``clamp`` or, when ``norm`` is given, outside the eps ball."""
    if clamp is not None:
        low, high = torch.stack([x_adv.min(), x_adv.max()]).tolist()
        if low < clamp[0] or high > clamp[1]:
            raise ValueError(f"attack: returned values in [{low:g}, {high:g}], outside clamp={clamp}")
    if norm is not None:
        largest = float(_perturbation_sizes(x_adv, x, norm).max())
        if largest > eps + _budget_tolerance(x.dtype, eps):
            raise ValueError(f"attack: returned a perturbation of {norm} size {largest:.6g} at eps={eps:g}; "
                             "expected at most eps")


# --------------------------------------------------------------------------- attack steps

def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool, groups: int) -> torch.Tensor:
    """Batch-mean cross-entropy per group of ``len(x) // groups`` (minus it when targeted), summed.

    Each group (restart) gets the gradient a batch of its own would get."""
    if groups == 1:
        loss = F.cross_entropy(model(x), y)
    else:
        loss = F.cross_entropy(model(x), y, reduction="none").view(groups, -1).mean(dim=1).sum()
    return -loss if targeted else loss


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool, groups: int = 1) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_loss(model, x, y, targeted, groups), x)
    return grad


def _clamp(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(*clamp)


def _clamp_(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    return x if clamp is None else x.clamp_(*clamp)


def _l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def _project_(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project each example's perturbation onto the eps ball, in place."""
    if norm == "linf":
        return delta.clamp_(-eps, eps)
    factor = torch.clamp(eps / _l2_norms(delta).clamp_min(_TINY), max=1.0)  # no 0 / 0 at eps = 0
    return delta.mul_(factor)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random point of the eps ball: uniform per coordinate (L-inf); a uniform radius on a
    random direction (L2), the initializations of torchattacks' PGD and PGDL2."""
    where = generator.device if generator is not None else x.device
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=where, dtype=x.dtype) * (2 * eps) - eps
        return noise.to(x.device)
    direction = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
    radius = torch.rand((len(x),) + (1,) * (x.ndim - 1), generator=generator, device=where, dtype=x.dtype)
    return direction * (radius.to(x.device) / _l2_norms(direction).clamp_min(_TINY) * eps)


def _fgsm(model, x, y, eps: float, targeted: bool, clamp) -> torch.Tensor:
    return _clamp(x + eps * _input_grad(model, x, y, targeted).sign(), clamp).detach()


def _pgd(model, x, y, *, eps, alpha, steps, norm, random_start, restarts, targeted, clamp, generator):
    """PGD on ``restarts`` stacked copies of the batch; returns (x_adv, y) of all the copies."""
    x_rep = x if restarts == 1 else x.repeat(restarts, *([1] * (x.ndim - 1)))
    y_rep = y if restarts == 1 else y.repeat(restarts)
    x_adv = x_rep.clone()
    if random_start:
        x_adv = _clamp_(x_adv.add_(_random_start(x_rep, eps, norm, generator)), clamp)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y_rep, targeted, restarts)
        step = grad.sign_() if norm == "linf" else grad.div_(_l2_norms(grad) + _TINY)
        # in place, on buffers autograd no longer needs: x_adv <- clamp(x + P(x_adv + alpha step - x))
        delta = _project_(x_adv.add_(step.mul_(alpha)).sub_(x_rep), eps, norm)
        x_adv = _clamp_(delta.add_(x_rep), clamp)
    return x_adv, y_rep


def _pgd_worst_case(model, x, y, *, restarts, targeted, **kwargs) -> torch.Tensor:
    """PGD with all restarts in one batch, then the worst case of each example."""
    x_adv, y_rep = _pgd(model, x, y, restarts=restarts, targeted=targeted, **kwargs)
    return x_adv if restarts == 1 else _worst_restart(model, x_adv, y_rep, restarts, targeted)


@torch.no_grad()
def _worst_restart(model, x_adv: torch.Tensor, y_rep: torch.Tensor, restarts: int, targeted: bool) -> torch.Tensor:
    """For each example, the restart that succeeds (else the one with the worst loss)."""
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y_rep, reduction="none")
    hit = logits.argmax(dim=1) == y_rep
    success = hit if targeted else ~hit
    score = torch.where(success, torch.inf, -loss if targeted else loss).view(restarts, -1)
    best = score.argmax(dim=0)  # (N,)
    n = score.shape[1]
    return x_adv.view(restarts, n, *x_adv.shape[1:])[best, torch.arange(n, device=best.device)]


# --------------------------------------------------------------------------- public attacks

def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool = False,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Fast gradient sign method: ``clamp(x + eps * sign(grad_x loss))`` (Goodfellow et al. 2015).

    ``y`` holds the true labels (untargeted: the loss is raised) or, with
    ``targeted=True``, the target labels (the loss toward them is lowered). ``x`` must
    lie inside ``clamp``; it is converted to the model's device and dtype, and so is the
    result. The model runs in eval mode and its mode is restored afterwards. Equals
    torchattacks' ``FGSM`` (and its ``set_mode_targeted_by_label``) exactly.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(5, 1, 2, 2); y = torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = fgsm(model, x, y, eps=0.1)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-7), bool(x_adv.min() >= 0)
    (True, True)
    """
    eps = check_positive(eps, "eps", strict=False)
    targeted = _flag(targeted, "targeted")
    clamp = _check_clamp(clamp)
    with eval_mode(check_model(model)):
        x, y = _inputs(model, x, y, clamp)
        return _fgsm(model, x, y, eps, targeted, clamp)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent in the L-inf or L2 ball of radius ``eps`` (Madry et al. 2018).

    Each of ``steps`` steps moves ``alpha`` along the sign of the input gradient (L-inf)
    or along the gradient scaled to unit L2 norm (L2), then projects onto the ball and
    the ``clamp`` range. All ``restarts`` (random starts drawn from ``generator``) run as
    one batch; for each example the result is a restart that fools the model, else the
    one with the highest loss. ``targeted=True`` treats ``y`` as target labels. Inputs
    are checked as in :func:`fgsm`; the model's mode is restored.
    With ``random_start=False`` it equals torchattacks' ``PGD`` (``norm="linf"``) and
    ``PGDL2`` (``norm="l2"``) to float rounding.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(5, 1, 2, 2); y = torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = pgd(model, x, y, eps=0.5, alpha=0.1, steps=10, norm="l2", restarts=3,
    ...             generator=torch.Generator().manual_seed(0))
    >>> bool((x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-6)
    True
    """
    eps = check_positive(eps, "eps", strict=False)
    alpha = check_positive(alpha, "alpha")
    steps = check_int(steps, "steps")
    restarts = check_int(restarts, "restarts")
    norm = _check_norm(norm)
    random_start = _flag(random_start, "random_start")
    targeted = _flag(targeted, "targeted")
    generator = check_generator(generator)
    clamp = _check_clamp(clamp)
    with eval_mode(check_model(model)):
        x, y = _inputs(model, x, y, clamp)
        return _pgd_worst_case(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                               random_start=random_start, restarts=restarts,
                               targeted=targeted, clamp=clamp, generator=generator)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1) == y


def _correct_in_chunks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([_correct(model, x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)])


@dataclass(frozen=True, eq=False)
class AccuracyCurve(Mapping):
    """Accuracy under an attack at each radius, radii ascending: what :func:`robust_accuracy` returns.

    ``eps`` and ``accuracy`` are tuples of the same length. The curve also reads like the
    ``{eps: accuracy}`` dict earlier versions returned: ``curve[0.1]``, ``list(curve)``
    (the radii), ``curve.values()``, ``curve.items()``, ``dict(curve)``, and it compares
    equal to that dict.

    >>> curve = AccuracyCurve(eps=(0.0, 0.1), accuracy=(0.97, 0.5))
    >>> curve[0.1], list(curve), curve == {0.0: 0.97, 0.1: 0.5}
    (0.5, [0.0, 0.1], True)
    """

    eps: tuple[float, ...]
    accuracy: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.eps) != len(self.accuracy):
            raise ValueError(f"accuracy: expected one value per radius ({len(self.eps)}), got {len(self.accuracy)}")

    def __getitem__(self, radius: float) -> float:
        for e, value in zip(self.eps, self.accuracy):
            if e == radius:
                return value
        raise KeyError(radius)

    def __iter__(self) -> Iterator[float]:
        return iter(self.eps)

    def __len__(self) -> int:
        return len(self.eps)

    def __repr__(self) -> str:
        return f"AccuracyCurve(eps={self.eps}, accuracy={self.accuracy})"


@renamed_arguments(batch_size="internal_batch_size")
def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: Attack,
    eps: Sequence[float],
    norm: str | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    internal_batch_size: int = 256,
) -> AccuracyCurve:
    """Accuracy under ``attack`` at each radius in ``eps`` (ascending, duplicates merged).

    ``attack(model, x, y, eps=e)`` returns adversarial inputs, e.g. ``functools.partial(pgd,
    alpha=0.01, steps=10)``. The radii are visited in increasing order and only the examples
    still classified correctly are attacked again: an example broken at a smaller radius
    counts as broken at every larger one (the perturbation that broke it is still
    allowed). So each point is the share of examples that no attack run at a radius up to
    it broke: at most the accuracy of a separate run at that radius, usually cheaper.
    ``eps = 0`` gives the clean accuracy. ``eps`` is a list (``eps=[0.1]``, not ``0.1``).

    Every output of ``attack`` is checked: a tensor of its input's shape, dtype and
    device, finite, inside ``clamp``, and, when ``norm`` (``"linf"`` or ``"l2"``) is
    given, inside the eps ball (to float rounding); else the budget is the attack's
    responsibility. A bad output raises ``ValueError`` naming ``attack``.
    ``internal_batch_size`` rows are attacked at once (a memory knob: for an attack
    without randomness it does not change the result; formerly ``batch_size``).

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x = torch.rand(64, 1, 2, 2); y = (x.flatten(1).sum(1) > 2).long()
    >>> curve = robust_accuracy(model, x, y, attack=fgsm, eps=[0.0, 0.1, 0.5], norm="linf")
    >>> curve.eps, curve[0.5] <= curve[0.1] <= curve[0.0]
    ((0.0, 0.1, 0.5), True)
    """
    if not callable(attack):
        raise TypeError(f"attack: expected a callable attack(model, x, y, eps=...), got {describe(attack)}")
    radii = sorted(set(_radii(eps, "eps")))
    norm = _check_norm(norm, optional=True)
    clamp = _check_clamp(clamp)
    size = check_int(internal_batch_size, "internal_batch_size")
    with eval_mode(check_model(model)):
        x, y = _inputs(model, x, y, clamp)
        standing = _correct_in_chunks(model, x, y, size)
        counts = []
        for radius in radii:
            if radius > 0:
                index = standing.nonzero().squeeze(1)  # the examples still standing
                for chunk in index.split(size) if len(index) else ():
                    x_adv = _check_attack_output(attack(model, x[chunk], y[chunk], eps=radius), x[chunk])
                    _check_attack_budget(x_adv, x[chunk], eps=radius, norm=norm, clamp=clamp)
                    standing[chunk] = _correct(model, x_adv, y[chunk])
            counts.append(standing.sum())
    accuracies = (torch.stack(counts).double() / len(x)).tolist()  # one host sync
    return AccuracyCurve(eps=tuple(radii), accuracy=tuple(accuracies))


@dataclass(frozen=True)
class SanityCheck:
    """One evaluation-hygiene check: what was measured, what is expected, and the verdict."""

    name: str
    value: float
    expected: str
    passed: bool


@dataclass(frozen=True)
class SanityReport:
    """The checks of :func:`attack_sanity_checks`; ``passed`` is True when all pass.

    ``report["accuracy at eps=1"]`` looks a check up by name."""

    checks: tuple[SanityCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the checks that failed."""
        return tuple(c.name for c in self.checks if not c.passed)

    def __getitem__(self, name: str) -> SanityCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"{name!r}: expected one of {[c.name for c in self.checks]}")

    def __str__(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{c.name:<{width}}  {c.value:7.4f}  {c.expected:<32}  {'pass' if c.passed else 'FAIL'}"
                 for c in self.checks]
        return "\n".join(lines)


def attack_sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Sequence[float],
    alpha: float,
    steps: int,
    restarts: int = 3,
    large_eps: float = 1.0,
    tolerance: float = 0.01,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    attack: Callable[..., torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> SanityReport:
    """The L-inf evaluation checks a reviewer asks for, each with pass or fail.

    Following Carlini et al. 2019 ("On evaluating adversarial robustness"), with ``top =
    max(eps)`` and PGD steps of ``alpha * e / top`` at radius ``e``:

    1. ``tiny eps keeps clean results``: at ``eps = top / 100`` the share of examples whose
       correctness differs from the clean run is at most ``tolerance`` (the "eps = 0 gives
       clean accuracy" check, at a radius where it can fail: it catches a randomized or
       discontinuous model, or an attack that changes its input beyond the budget);
    2. accuracy does not rise with eps (a separate run per radius);
    3. twice the steps do not raise the accuracy at ``top``;
    4. ``restarts`` random restarts do not raise it either;
    5. PGD is at least as strong as FGSM at ``top``;
    6. an unbounded attack (``large_eps``, 2 x steps of ``large_eps / 4``) drives accuracy to
       at most 0.05;
    7. the same, targeted toward ``(y + 1) mod C``, succeeds on at least 90% of examples;
    8. every attack output stays in its eps ball (to float rounding) and in ``clamp``.

    "Does not rise" allows ``tolerance``. Failing 2, 3, 4, 6 or 7 is the usual sign of
    gradient masking or a broken attack; failing 1 or 8 of a broken evaluation.

    ``attack`` (default :func:`pgd`) is the attack under review, called with pgd's keywords:
    ``attack(model, x, y, eps=, alpha=, steps=, restarts=, random_start=, targeted=, clamp=,
    generator=)``; pass your own L-inf PGD to check it. Its outputs must be finite tensors of
    the input's shape, dtype and device (else ``ValueError`` naming ``attack``).

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(32, 1, 2, 2); y = model(x).argmax(1)
    >>> report = attack_sanity_checks(model, x, y, eps=[0.1, 0.3], alpha=0.05, steps=5,
    ...                               generator=torch.Generator().manual_seed(0))
    >>> report.checks[0].name, report.checks[0].passed
    ('tiny eps=0.003 keeps clean results', True)
    """
    radii = sorted(set(_radii(eps, "eps")))
    if radii[-1] <= 0:
        raise ValueError(f"eps: expected a list with a positive radius, got {radii}")
    alpha = check_positive(alpha, "alpha")
    steps = check_int(steps, "steps")
    restarts = check_int(restarts, "restarts")
    large_eps = check_positive(large_eps, "large_eps")
    tolerance = check_in_range(tolerance, "tolerance", 0.0, 1.0)
    clamp = _check_clamp(clamp)
    generator = check_generator(generator)
    if attack is None:
        attack = pgd
    elif not callable(attack):
        raise TypeError(f"attack: expected a callable with pgd's keywords or None, got {describe(attack)}")
    top = radii[-1]
    tiny = top / 100
    sizes: list[float] = []  # largest perturbation / eps of every bounded run
    in_clamp: list[bool] = []

    with eval_mode(check_model(model)):
        x, y = _inputs(model, x, y, clamp)
        n_classes = _logit_width(model, x)

        def run(e: float, *, n_steps: int = steps, n_restarts: int = 1, step: float | None = None,
                targeted: bool = False, labels: torch.Tensor = y) -> torch.Tensor:
            x_adv = _check_attack_output(
                attack(model, x, labels, eps=e, alpha=step or alpha * e / top, steps=n_steps,
                       restarts=n_restarts, random_start=True, targeted=targeted, clamp=clamp,
                       generator=generator), x)
            largest = float(_perturbation_sizes(x_adv, x, "linf").max())
            over = largest > e + _budget_tolerance(x.dtype, e)  # beyond float rounding
            sizes.append(largest / e if over else min(1.0, largest / e))
            in_clamp.append(clamp is None or bool(((x_adv >= clamp[0]) & (x_adv <= clamp[1])).all()))
            return x_adv

        clean = _correct(model, x, y)
        at_tiny = _correct(model, run(tiny), y)
        curve = torch.stack([_correct(model, run(e), y).double().mean() if e > 0 else clean.double().mean()
                             for e in radii])
        more_steps = _correct(model, run(top, n_steps=2 * steps), y).double().mean()
        more_restarts = _correct(model, run(top, n_restarts=restarts), y).double().mean()
        with_fgsm = _correct(model, _fgsm(model, x, y, top, False, clamp), y).double().mean()
        unbounded = _correct(model, run(large_eps, n_steps=2 * steps, step=large_eps / 4), y).double().mean()
        target = (y + 1) % n_classes
        targeted = _correct(model, run(large_eps, n_steps=2 * steps, step=large_eps / 4, targeted=True,
                                       labels=target), target).double().mean()
    changed = float((clean != at_tiny).double().mean())
    rises = float((curve[1:] - curve[:-1]).max()) if len(curve) > 1 else 0.0
    base = float(curve[-1])
    largest = max(sizes)
    inside = largest <= 1.0 and all(in_clamp)
    checks = (
        SanityCheck(f"tiny eps={tiny:g} keeps clean results", changed, f"<= {tolerance:g} of examples change",
                    changed <= tolerance),
        SanityCheck("largest rise of accuracy with eps", rises, f"<= {tolerance:g}", rises <= tolerance),
        SanityCheck(f"accuracy with {2 * steps} steps", float(more_steps),
                    f"<= {steps} steps {base:.4f}", float(more_steps) <= base + tolerance),
        SanityCheck(f"accuracy with {restarts} restarts", float(more_restarts),
                    f"<= 1 restart {base:.4f}", float(more_restarts) <= base + tolerance),
        SanityCheck("PGD accuracy vs FGSM", base, f"<= FGSM {float(with_fgsm):.4f}",
                    base <= float(with_fgsm) + tolerance),
        SanityCheck(f"accuracy at eps={large_eps:g}", float(unbounded), "about 0 (<= 0.05)",
                    float(unbounded) <= 0.05),
        SanityCheck(f"targeted success at eps={large_eps:g}", float(targeted), ">= 0.9",
                    float(targeted) >= 0.9),
        SanityCheck("largest perturbation / eps", largest,
                    "<= 1, inside clamp" if clamp is not None else "<= 1", inside),
    )
    return SanityReport(checks)


# --------------------------------------------------------------------------- adversarial training

def _adversarial_batch(model, x, y, *, method: str, eps: float, alpha: float, steps: int,
                       clamp, generator) -> torch.Tensor:
    if method == "fgsm":
        return _fgsm(model, x, y, eps, False, clamp)
    n_steps = 1 if method == "fgsm_rs" else steps
    return _pgd(model, x, y, eps=eps, alpha=alpha, steps=n_steps, norm="linf", random_start=True,
                restarts=1, targeted=False, clamp=clamp, generator=generator)[0]


def fit_adversarial(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "fgsm_rs",
    eps: float,
    epochs: int,
    batch_size: int,
    lr: float,
    alpha: float | None = None,
    steps: int = 7,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> list[float]:
    """Adversarial training with Adam: each batch is replaced by its L-inf adversarial version.

    ``method="fgsm"``: the common FGSM recipe (as in PyTorch's FGSM tutorial),
    ``x + eps * sign(grad)`` (Goodfellow et al. 2015), prone to catastrophic overfitting;
    ``"fgsm_rs"``: one step of size ``alpha`` (default ``1.25 * eps``) from a uniform
    random start (Wong et al. 2020); ``"pgd"``: ``steps`` steps of size ``alpha`` (default
    ``2.5 * eps / steps``) from a random start (Madry et al. 2018). The model trains in
    train mode (the adversarial examples are made in it too, as in Wong et al.'s code), and
    afterwards every submodule is back in the mode it had. Batches are drawn without
    replacement in an order from ``generator`` (which also draws the random starts).
    Returns the mean adversarial loss of each epoch.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(64, 1, 2, 2); y = (x.flatten(1).sum(1) > 2).long()
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> losses = fit_adversarial(model, x, y, eps=0.05, epochs=5, batch_size=16, lr=0.05,
    ...                          generator=torch.Generator().manual_seed(0), progress=False)
    >>> len(losses), losses[-1] < losses[0], model.training
    (5, True, True)
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {describe(method)}")
    eps = check_positive(eps, "eps", strict=False)
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    steps = check_int(steps, "steps")
    if alpha is None:
        alpha = 1.25 * eps if method == "fgsm_rs" else 2.5 * eps / steps
    alpha = check_positive(alpha, "alpha", strict=False)
    if method != "fgsm" and alpha == 0 and eps > 0:
        raise ValueError(f"alpha: expected a step size > 0 for method={method!r}, got {alpha}")
    generator = check_generator(generator)
    clamp = _check_clamp(clamp)
    progress = _flag(progress, "progress")
    with eval_mode(check_model(model)):
        x, y = _inputs(model, x, y, clamp)

    def perturb(model: nn.Module, x_batch: torch.Tensor, y_batch: torch.Tensor) -> torch.Tensor:
        return _adversarial_batch(model, x_batch, y_batch, method=method, eps=eps, alpha=alpha,
                                  steps=steps, clamp=clamp, generator=generator)

    with train_mode(model):  # restores every submodule's mode, whatever fit leaves
        return fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, perturb=perturb,
                   generator=generator, progress=progress, desc=f"{method} epochs")


# --------------------------------------------------------------------------- randomized smoothing

@dataclass(frozen=True)
class Certificate:
    """Output of :func:`certify`: per example the class (``-1`` = abstain) and the certified
    L2 radius (0 where it abstains), plus the Clopper-Pearson lower bound ``p_lower``."""

    prediction: torch.Tensor
    radius: torch.Tensor
    p_lower: torch.Tensor


def clopper_pearson_lower(successes: torch.Tensor, trials: int, *, alpha: float) -> torch.Tensor:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound of a binomial proportion.

    The ``alpha`` quantile of Beta(k, n - k + 1) (0 where k = 0): the lower end of
    ``trustml_lab._stats.clopper_pearson(k, n, confidence=1 - alpha, alternative="greater")``,
    the package's one Clopper-Pearson implementation. Equals
    ``scipy.stats.binomtest(k, n).proportion_ci(1 - 2 * alpha, "exact").low`` and
    statsmodels' ``proportion_confint(k, n, 2 * alpha, "beta")[0]``. ``successes`` are whole
    counts in ``[0, trials]`` (NaN, fractions and out-of-range counts are refused);
    ``alpha`` is the significance level, as in Cohen et al. The result is float64 on
    ``successes``' device.

    >>> clopper_pearson_lower(torch.tensor([0, 50, 100]), 100, alpha=0.05)
    tensor([0.0000, 0.4136, 0.9705], dtype=torch.float64)
    """
    trials = check_int(trials, "trials")
    alpha = check_in_range(alpha, "alpha", 0, 1, low_open=True, high_open=True)
    return clopper_pearson(successes, trials, confidence=1 - alpha, alternative="greater").low


def _noise_counts(model, x, *, sigma, num, internal_batch_size, generator) -> torch.Tensor:
    """Class counts of ``model(x_i + N(0, sigma^2 I))`` over ``num`` draws per example: (N, C) int64.

    (example, draw) pairs are flattened and processed ``internal_batch_size`` at a time, so
    a batch mixes examples and every forward pass is full."""
    where = generator.device if generator is not None else x.device
    total = len(x) * num
    with torch.no_grad():
        counts = torch.zeros(len(x), _logit_width(model, x), dtype=torch.int64, device=x.device)
        for start in range(0, total, internal_batch_size):
            owner = torch.arange(start, min(start + internal_batch_size, total), device=x.device) // num
            inputs = x[owner]
            noise = torch.randn(inputs.shape, generator=generator, device=where, dtype=x.dtype)
            predicted = model(inputs + sigma * noise.to(x.device)).argmax(dim=1)
            counts.view(-1).scatter_add_(0, owner * counts.shape[1] + predicted, torch.ones_like(predicted))
    return counts


def _smoothing_inputs(model, x, sigma, num, num_name, alpha, internal_batch_size, generator):
    sigma = check_positive(sigma, "sigma")
    num = check_int(num, num_name)
    alpha = check_in_range(alpha, "alpha", 0, 1, low_open=True, high_open=True)
    size = check_int(internal_batch_size, "internal_batch_size")
    generator = check_generator(generator)
    x = as_model_input(x, "x", check_model(model))
    size = min(size, len(x) * num)  # no batch larger than the work
    if size * x[0].numel() > MAX_ELEMENTS:
        raise ValueError(f"internal_batch_size: {size} noisy copies of {x[0].numel()} values each exceed "
                         f"{MAX_ELEMENTS} elements; use a smaller internal_batch_size")
    return x, sigma, num, alpha, size, generator


@renamed_arguments(batch_size="internal_batch_size")
def certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    internal_batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> Certificate:
    """Randomized smoothing's CERTIFY (Cohen, Rosenfeld and Kolter 2019, Algorithm 1).

    The smoothed classifier ``g(x) = argmax_c P(model(x + N(0, sigma^2 I)) = c)``: ``n0``
    noise draws pick the guess ``c_A``; ``n`` fresh draws give the one-sided ``(1 - alpha)``
    Clopper-Pearson lower bound ``p_A`` of its probability. Where ``p_A > 1/2`` the class
    is certified within L2 radius ``sigma * Phi^{-1}(p_A)``; elsewhere it abstains
    (prediction -1, radius 0). ``x`` must be a finite floating batch (NaN and infinity
    are refused); noise is drawn ``internal_batch_size`` copies at a time on x's device
    (formerly ``batch_size``), from ``generator``. The model's mode is restored.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(2, 2)
    >>> cert = certify(model, torch.zeros(3, 2), sigma=0.5, n0=10, n=200, alpha=0.01,
    ...                internal_batch_size=400, generator=torch.Generator().manual_seed(0))
    >>> cert.prediction.shape, bool((cert.radius >= 0).all())
    (torch.Size([3]), True)
    """
    x, sigma, n, alpha, size, generator = _smoothing_inputs(model, x, sigma, n, "n", alpha,
                                                            internal_batch_size, generator)
    n0 = check_int(n0, "n0")
    with eval_mode(model):
        guess = _noise_counts(model, x, sigma=sigma, num=n0, internal_batch_size=size,
                              generator=generator).argmax(1)
        counts = _noise_counts(model, x, sigma=sigma, num=n, internal_batch_size=size, generator=generator)
    p_lower = clopper_pearson_lower(counts.gather(1, guess[:, None]).squeeze(1), n, alpha=alpha)
    certified = p_lower > 0.5
    radius = torch.where(certified, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))
    prediction = torch.where(certified, guess, torch.full_like(guess, ABSTAIN))
    return Certificate(prediction, radius, p_lower)


def certified_accuracy(certificate: Certificate, y: torch.Tensor, *, radii: Sequence[float]) -> torch.Tensor:
    """Certified accuracy at each radius ``r``: the share of examples whose certified class
    is ``y`` with certified radius at least ``r`` (Cohen et al. 2019, Figure 1 and Table 1).

    ``radii`` is a list (``radii=[0.5]``, not ``0.5``); the result has one float64 value
    per radius, in the order given.

    >>> cert = Certificate(torch.tensor([1, 0, -1]), torch.tensor([0.5, 0.2, 0.0]), torch.zeros(3))
    >>> certified_accuracy(cert, torch.tensor([1, 1, 0]), radii=[0.0, 0.3, 1.0])
    tensor([0.3333, 0.3333, 0.0000], dtype=torch.float64)
    """
    if not isinstance(certificate, Certificate):
        raise TypeError(f"certificate: expected a Certificate from certify(), got {describe(certificate)}")
    prediction = as_tensor(certificate.prediction, "certificate.prediction", ndim=1)
    radius = as_tensor(certificate.radius, "certificate.radius", ndim=1, device=prediction.device)
    if prediction.is_floating_point() or prediction.dtype == torch.bool or not radius.is_floating_point():
        raise TypeError(f"certificate: expected integer predictions and floating radii, got "
                        f"{describe(prediction)} and {describe(radius)}")
    check_same_length(**{"certificate.prediction": prediction, "certificate.radius": radius})
    if len(prediction) == 0:
        raise ValueError("certificate: expected at least one example, got an empty certificate")
    if bool((radius < 0).any()) or bool((prediction < ABSTAIN).any()):
        raise ValueError("certificate: expected radii >= 0 and predictions >= -1 (abstain)")
    y = check_labels(y, "y", device=prediction.device)
    check_same_length(certificate=prediction, y=y)
    r = torch.tensor(_radii(radii, "radii"), dtype=torch.float64, device=y.device)
    right = prediction == y
    covered = radius.double()[None, :] >= r[:, None]
    return (right[None, :] & covered).double().mean(dim=1)


@renamed_arguments(batch_size="internal_batch_size")
def smoothed_predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    alpha: float,
    internal_batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomized smoothing's PREDICT (Cohen et al. 2019): the smoothed class, or -1 (abstain).

    Counts the classes of ``n`` noisy copies of each example; returns the top class when a
    two-sided binomial test of top against runner-up counts rejects "equally likely" at
    level ``alpha`` (the p-value of ``scipy.stats.binomtest(n_A, n_A + n_B, 0.5)``), else -1.
    The prediction is wrong with probability at most ``alpha``. ``x`` is checked as in
    :func:`certify` (finite, floating); ``internal_batch_size`` was ``batch_size``.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(2, 2)
    >>> smoothed_predict(model, 5 * torch.randn(4, 2), sigma=0.1, n=100, alpha=0.001,
    ...                  internal_batch_size=400, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4])
    """
    from scipy.stats import binom

    x, sigma, n, alpha, size, generator = _smoothing_inputs(model, x, sigma, n, "n", alpha,
                                                            internal_batch_size, generator)
    with eval_mode(model):
        counts = _noise_counts(model, x, sigma=sigma, num=n, internal_batch_size=size, generator=generator)
    if counts.shape[1] == 1:
        return torch.zeros(len(x), dtype=torch.int64, device=x.device)
    top2 = counts.topk(2, dim=1)
    n_a, n_b = top2.values.cpu().numpy().T
    p_value = (2 * binom.cdf(n_b, n_a + n_b, 0.5)).clip(max=1.0)  # symmetric two-sided test
    confident = torch.as_tensor(p_value <= alpha, device=x.device)
    return torch.where(confident, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))
