"""Adversarial robustness: attack (FGSM, PGD), evaluate honestly, train robust models, certify.

Every kernel is batched and device-agnostic. Attacks take gradients with respect to the
input only (``torch.autograd.grad``), never accumulate weight gradients, batch all
restarts into one forward pass, and never synchronize with the host inside the step loop.
The loss of each attack step is the batch-mean cross-entropy, as in torchattacks, so that
:func:`fgsm` and :func:`pgd` (``random_start=False``) reproduce torchattacks' ``FGSM``,
``PGD`` and ``PGDL2`` step for step.

References: Goodfellow et al. 2015 (FGSM); Madry et al. 2018 (PGD, PGD training); Wong,
Rice and Kolter 2020, "Fast is better than free" (FGSM with random start); Cohen, Rosenfeld
and Kolter 2019 (randomized smoothing, CERTIFY and PREDICT).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import as_tensor, check_in_range, check_positive, check_same_length, describe
from .models import fit

__all__ = [
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

def _check_int(value: int, name: str, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {describe(value)}")
    return value


def _check_clamp(clamp: tuple[float, float] | None) -> tuple[float, float] | None:
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise ValueError(f"clamp: expected a pair (low, high) or None, got {describe(clamp)}")
    low, high = (float(v) for v in clamp)
    if not low < high:
        raise ValueError(f"clamp: expected low < high, got {tuple(clamp)}")
    return low, high


def _model_device(model: nn.Module) -> torch.device:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _inputs(model: nn.Module, x, y, clamp: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert ``x`` (float) and ``y`` (int64 labels) to the model's device and check them."""
    device = _model_device(model)
    x = as_tensor(x, "x", device=device)
    if not x.is_floating_point():
        raise TypeError(f"x: expected floating-point inputs, got {describe(x)}")
    if x.ndim < 2:
        raise ValueError(f"x: expected a batch of shape (N, ...), got {describe(x)}")
    y = as_tensor(y, "y", dtype=torch.int64, device=device, ndim=1)
    check_same_length(x=x, y=y)
    if clamp is not None and len(x):
        low, high = float(x.min()), float(x.max())  # one host sync, at the edge
        if low < clamp[0] or high > clamp[1]:
            raise ValueError(f"x: expected values inside clamp={clamp}, got values in [{low:g}, {high:g}]")
    return x, y


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the model in eval mode (dropout off, batch-norm statistics frozen), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
    return direction * (radius.to(x.device) / _l2_norms(direction) * eps)


def _fgsm(model, x, y, eps: float, targeted: bool, clamp) -> torch.Tensor:
    return _clamp(x + eps * _input_grad(model, x, y, targeted).sign(), clamp).detach()


def _pgd(model, x, y, *, eps, alpha, steps, norm, random_start, restarts, targeted, clamp, generator):
    """PGD on ``restarts`` stacked copies of the batch; returns (x_adv, y) of all the copies."""
    x_rep = x.repeat(restarts, *([1] * (x.ndim - 1)))
    y_rep = y.repeat(restarts)
    x_adv = x_rep.clone()
    if random_start:
        x_adv = _clamp(x_adv + _random_start(x_rep, eps, norm, generator), clamp)
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
    ``targeted=True``, the target labels (the loss toward them is lowered). The model
    runs in eval mode and is restored afterwards. Equals torchattacks' ``FGSM`` (and its
    ``set_mode_targeted_by_label``) exactly.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(5, 1, 2, 2); y = torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = fgsm(model, x, y, eps=0.1)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-7), bool(x_adv.min() >= 0)
    (True, True)
    """
    eps = check_positive(eps, "eps", strict=False)
    clamp = _check_clamp(clamp)
    x, y = _inputs(model, x, y, clamp)
    with _eval_mode(model):
        return _fgsm(model, x, y, eps, bool(targeted), clamp)


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
    one with the highest loss. ``targeted=True`` treats ``y`` as target labels.
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
    steps = _check_int(steps, "steps")
    restarts = _check_int(restarts, "restarts")
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {describe(generator)}")
    clamp = _check_clamp(clamp)
    x, y = _inputs(model, x, y, clamp)
    with _eval_mode(model):
        return _pgd_worst_case(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                               random_start=bool(random_start), restarts=restarts,
                               targeted=bool(targeted), clamp=clamp, generator=generator)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1) == y


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: Attack,
    eps: Sequence[float],
    batch_size: int = 256,
) -> dict[float, float]:
    """Accuracy under ``attack`` for each radius in ``eps``: ``{eps: accuracy}``, eps ascending.

    ``attack(model, x, y, eps=e)`` returns adversarial inputs, e.g. ``functools.partial(pgd,
    alpha=0.01, steps=10)``. The radii are visited in increasing order and only the examples
    still classified correctly are attacked again: an example broken at a smaller radius
    counts as broken at every larger one (the perturbation that broke it is still
    allowed). So the curve never increases, and each point is at most the accuracy of a
    separate run at that radius. ``eps = 0`` gives the clean accuracy.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x = torch.rand(64, 1, 2, 2); y = (x.flatten(1).sum(1) > 2).long()
    >>> curve = robust_accuracy(model, x, y, attack=fgsm, eps=[0.0, 0.1, 0.5])
    >>> list(curve) == [0.0, 0.1, 0.5], curve[0.5] <= curve[0.1] <= curve[0.0]
    (True, True)
    """
    if not callable(attack):
        raise TypeError(f"attack: expected a callable attack(model, x, y, eps=...), got {describe(attack)}")
    radii = sorted(check_positive(e, "eps", strict=False) for e in eps)
    if not radii:
        raise ValueError("eps: expected at least one radius, got an empty list")
    batch_size = _check_int(batch_size, "batch_size")
    x, y = _inputs(model, x, y, clamp=None)
    with _eval_mode(model):
        standing = torch.cat([_correct(model, x[i:i + batch_size], y[i:i + batch_size])
                              for i in range(0, len(x), batch_size)]) if len(x) else y.bool()
        counts = []
        for radius in radii:
            if radius > 0:
                index = standing.nonzero().squeeze(1)  # the examples still standing
                for chunk in index.split(batch_size):
                    x_adv = attack(model, x[chunk], y[chunk], eps=radius)
                    standing[chunk] = _correct(model, x_adv, y[chunk])
            counts.append(standing.sum())
    accuracies = (torch.stack(counts).double() / max(len(x), 1)).tolist()  # one host sync
    return dict(zip(radii, accuracies))


@dataclass(frozen=True)
class SanityCheck:
    """One evaluation-hygiene check: what was measured, what is expected, and the verdict."""

    name: str
    value: float
    expected: str
    passed: bool


@dataclass(frozen=True)
class SanityReport:
    """The checks of :func:`attack_sanity_checks`; ``passed`` is True when all pass."""

    checks: tuple[SanityCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def __str__(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{c.name:<{width}}  {c.value:7.4f}  {c.expected:<34}  {'pass' if c.passed else 'FAIL'}"
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
    generator: torch.Generator | None = None,
) -> SanityReport:
    """The L-inf PGD evaluation checks a reviewer asks for, each with pass/fail.

    Following Carlini et al. 2019 ("On evaluating adversarial robustness"): (1) eps = 0
    gives the clean accuracy; (2) accuracy does not increase with eps (separate runs per
    eps, step ``alpha * eps / max(eps)``); (3) twice the steps and (4) ``restarts`` random
    restarts do not increase the accuracy at ``max(eps)``; (5) PGD is at least as strong
    as FGSM; (6) an unbounded attack (``large_eps``) drives accuracy to about 0; (7) a
    targeted attack toward ``(y + 1) mod C`` succeeds on most examples at ``large_eps``.
    "Does not increase" allows ``tolerance``. Failing (2), (3), (6) or (7) is the usual
    sign of gradient masking or a broken attack.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(32, 1, 2, 2); y = model(x).argmax(1)
    >>> report = attack_sanity_checks(model, x, y, eps=[0.1, 0.3], alpha=0.05, steps=5,
    ...                               generator=torch.Generator().manual_seed(0))
    >>> report.checks[0].name, report.checks[0].passed
    ('eps=0 gives clean accuracy', True)
    """
    radii = sorted(check_positive(e, "eps", strict=False) for e in eps)
    if not radii or radii[-1] <= 0:
        raise ValueError(f"eps: expected a list with a positive radius, got {list(eps)!r}")
    alpha = check_positive(alpha, "alpha")
    steps = _check_int(steps, "steps")
    restarts = _check_int(restarts, "restarts")
    large_eps = check_positive(large_eps, "large_eps")
    tolerance = check_in_range(tolerance, "tolerance", 0.0, 1.0)
    clamp = _check_clamp(clamp)
    x, y = _inputs(model, x, y, clamp)
    top = radii[-1]

    def acc(x_adv: torch.Tensor, labels: torch.Tensor = y) -> torch.Tensor:
        return _correct(model, x_adv, labels).double().mean()

    def run(e: float, *, n_steps: int = steps, n_restarts: int = 1, step: float | None = None,
            targeted: bool = False, labels: torch.Tensor = y) -> torch.Tensor:
        return _pgd_worst_case(model, x, labels, eps=e, alpha=step or alpha * e / top, steps=n_steps,
                               norm="linf", random_start=e > 0, restarts=n_restarts, targeted=targeted,
                               clamp=clamp, generator=generator)

    with _eval_mode(model):
        clean = acc(x)
        at_zero = acc(run(0.0, step=alpha))
        curve = torch.stack([acc(run(e)) if e > 0 else clean for e in radii])
        more_steps = acc(run(top, n_steps=2 * steps))
        more_restarts = acc(run(top, n_restarts=restarts))
        with_fgsm = acc(_fgsm(model, x, y, top, False, clamp))
        unbounded = acc(run(large_eps, n_steps=2 * steps, step=large_eps / 4))
        n_classes = model(x[:1]).shape[1]
        target = (y + 1) % n_classes
        targeted = acc(run(large_eps, n_steps=2 * steps, step=large_eps / 4, targeted=True, labels=target), target)
    rises = float((curve[1:] - curve[:-1]).max()) if len(curve) > 1 else 0.0
    base = float(curve[-1])
    checks = (
        SanityCheck("eps=0 gives clean accuracy", float(at_zero), f"= clean {float(clean):.4f}",
                    abs(float(at_zero) - float(clean)) < 1e-12),
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

    ``method="fgsm"``: the seeds' recipe, ``x + eps * sign(grad)`` (Goodfellow et al.
    2015), prone to catastrophic overfitting; ``"fgsm_rs"``: one step of size ``alpha``
    (default ``1.25 * eps``) from a uniform random start (Wong et al. 2020); ``"pgd"``:
    ``steps`` steps of size ``alpha`` (default ``2.5 * eps / steps``) from a random start
    (Madry et al. 2018). Batches are drawn without replacement in an order from
    ``generator`` (which also draws the random starts). Returns the mean adversarial
    loss of each epoch; leaves the model in eval mode.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(64, 1, 2, 2); y = (x.flatten(1).sum(1) > 2).long()
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> losses = fit_adversarial(model, x, y, eps=0.05, epochs=5, batch_size=16, lr=0.05,
    ...                          generator=torch.Generator().manual_seed(0), progress=False)
    >>> len(losses), losses[-1] < losses[0]
    (5, True)
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    eps = check_positive(eps, "eps", strict=False)
    epochs = _check_int(epochs, "epochs")
    batch_size = _check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    steps = _check_int(steps, "steps")
    if alpha is None:
        alpha = 1.25 * eps if method == "fgsm_rs" else 2.5 * eps / steps
    if method != "fgsm":
        alpha = check_positive(alpha, "alpha")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {describe(generator)}")
    clamp = _check_clamp(clamp)
    x, y = _inputs(model, x, y, clamp)

    def perturb(model: nn.Module, x_batch: torch.Tensor, y_batch: torch.Tensor) -> torch.Tensor:
        return _adversarial_batch(model, x_batch, y_batch, method=method, eps=eps, alpha=alpha,
                                  steps=steps, clamp=clamp, generator=generator)

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

    The ``alpha`` quantile of Beta(k, n - k + 1) (0 where k = 0), computed with SciPy on the
    host; equals ``scipy.stats.binomtest(k, n).proportion_ci(1 - 2 * alpha, "exact").low``
    and statsmodels' ``proportion_confint(k, n, 2 * alpha, "beta")[0]``.

    >>> clopper_pearson_lower(torch.tensor([0, 50, 100]), 100, alpha=0.05)
    tensor([0.0000, 0.4136, 0.9705], dtype=torch.float64)
    """
    from scipy.stats import beta

    trials = _check_int(trials, "trials")
    alpha = check_in_range(alpha, "alpha", 0, 1, low_open=True, high_open=True)
    k = as_tensor(successes, "successes")
    if bool(((k < 0) | (k > trials)).any()):
        raise ValueError(f"successes: expected counts in [0, {trials}], got {describe(k)}")
    counts = k.detach().cpu().double().numpy()
    with_successes = counts > 0
    bound = beta.ppf(alpha, counts.clip(min=1), trials - counts + 1) * with_successes
    return torch.as_tensor(bound, dtype=torch.float64).to(k.device)


def _noise_counts(model, x, *, sigma, num, batch_size, generator) -> torch.Tensor:
    """Class counts of ``model(x_i + N(0, sigma^2 I))`` over ``num`` draws per example: (N, C) int64.

    (example, draw) pairs are flattened and processed ``batch_size`` at a time, so a
    batch mixes examples and every forward pass is full."""
    where = generator.device if generator is not None else x.device
    with torch.no_grad():
        counts = torch.zeros(len(x), model(x[:1]).shape[1], dtype=torch.int64, device=x.device)
        for start in range(0, len(x) * num, batch_size):
            owner = torch.arange(start, min(start + batch_size, len(x) * num), device=x.device) // num
            inputs = x[owner]
            noise = torch.randn(inputs.shape, generator=generator, device=where, dtype=x.dtype)
            predicted = model(inputs + sigma * noise.to(x.device)).argmax(dim=1)
            counts.view(-1).scatter_add_(0, owner * counts.shape[1] + predicted, torch.ones_like(predicted))
    return counts


def _smoothing_inputs(model, x, sigma, num, num_name, alpha, batch_size, generator):
    sigma = check_positive(sigma, "sigma")
    num = _check_int(num, num_name)
    alpha = check_in_range(alpha, "alpha", 0, 1, low_open=True, high_open=True)
    batch_size = _check_int(batch_size, "batch_size")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {describe(generator)}")
    x = as_tensor(x, "x", device=_model_device(model))
    if not x.is_floating_point() or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x: expected a non-empty float batch of shape (N, ...), got {describe(x)}")
    return x, sigma, num, alpha, batch_size


def certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> Certificate:
    """Randomized smoothing's CERTIFY (Cohen, Rosenfeld and Kolter 2019, Algorithm 1).

    The smoothed classifier ``g(x) = argmax_c P(model(x + N(0, sigma^2 I)) = c)``: ``n0``
    noise draws pick the guess ``c_A``; ``n`` fresh draws give the one-sided ``(1 - alpha)``
    Clopper-Pearson lower bound ``p_A`` of its probability. Where ``p_A > 1/2`` the class
    is certified within L2 radius ``sigma * Phi^{-1}(p_A)``; elsewhere it abstains
    (prediction -1, radius 0). Noise is drawn in batches of ``batch_size`` on x's device.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(2, 2)
    >>> cert = certify(model, torch.zeros(3, 2), sigma=0.5, n0=10, n=200, alpha=0.01,
    ...                batch_size=400, generator=torch.Generator().manual_seed(0))
    >>> cert.prediction.shape, bool((cert.radius >= 0).all())
    (torch.Size([3]), True)
    """
    x, sigma, n, alpha, batch_size = _smoothing_inputs(model, x, sigma, n, "n", alpha, batch_size, generator)
    n0 = _check_int(n0, "n0")
    with _eval_mode(model):
        guess = _noise_counts(model, x, sigma=sigma, num=n0, batch_size=batch_size, generator=generator).argmax(1)
        counts = _noise_counts(model, x, sigma=sigma, num=n, batch_size=batch_size, generator=generator)
    p_lower = clopper_pearson_lower(counts.gather(1, guess[:, None]).squeeze(1), n, alpha=alpha)
    certified = p_lower > 0.5
    radius = torch.where(certified, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))
    prediction = torch.where(certified, guess, torch.full_like(guess, ABSTAIN))
    return Certificate(prediction, radius, p_lower)


def certified_accuracy(certificate: Certificate, y: torch.Tensor, *, radii: Sequence[float]) -> torch.Tensor:
    """Certified accuracy at each radius ``r``: the share of examples whose certified class
    is ``y`` with certified radius at least ``r`` (Cohen et al. 2019, Figure 1 and Table 1).

    >>> cert = Certificate(torch.tensor([1, 0, -1]), torch.tensor([0.5, 0.2, 0.0]), torch.zeros(3))
    >>> certified_accuracy(cert, torch.tensor([1, 1, 0]), radii=[0.0, 0.3, 1.0])
    tensor([0.3333, 0.3333, 0.0000], dtype=torch.float64)
    """
    if not isinstance(certificate, Certificate):
        raise TypeError(f"certificate: expected a Certificate from certify(), got {describe(certificate)}")
    y = as_tensor(y, "y", dtype=torch.int64, device=certificate.prediction.device, ndim=1)
    check_same_length(certificate=certificate.prediction, y=y)
    r = as_tensor([check_positive(v, "radii", strict=False) for v in radii], "radii",
                  dtype=torch.float64, device=y.device)
    right = certificate.prediction == y
    covered = certificate.radius.double()[None, :] >= r[:, None]
    return (right[None, :] & covered).double().mean(dim=1)


def smoothed_predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomized smoothing's PREDICT (Cohen et al. 2019): the smoothed class, or -1 (abstain).

    Counts the classes of ``n`` noisy copies of each example; returns the top class when a
    two-sided binomial test of top against runner-up counts rejects "equally likely" at
    level ``alpha`` (the p-value of ``scipy.stats.binomtest(n_A, n_A + n_B, 0.5)``), else -1.
    The prediction is wrong with probability at most ``alpha``.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(2, 2)
    >>> smoothed_predict(model, 5 * torch.randn(4, 2), sigma=0.1, n=100, alpha=0.001,
    ...                  batch_size=400, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4])
    """
    from scipy.stats import binom

    x, sigma, n, alpha, batch_size = _smoothing_inputs(model, x, sigma, n, "n", alpha, batch_size, generator)
    with _eval_mode(model):
        counts = _noise_counts(model, x, sigma=sigma, num=n, batch_size=batch_size, generator=generator)
    top2 = counts.topk(2, dim=1) if counts.shape[1] > 1 else None
    if top2 is None:
        return torch.zeros(len(x), dtype=torch.int64, device=x.device)
    n_a, n_b = top2.values.cpu().numpy().T
    p_value = (2 * binom.cdf(n_b, n_a + n_b, 0.5)).clip(max=1.0)  # symmetric two-sided test
    confident = torch.as_tensor(p_value <= alpha, device=x.device)
    return torch.where(confident, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))
