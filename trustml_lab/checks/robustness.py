"""Self-checks for chapter 2, Adversarial robustness.

Every check computes its reference first, then calls the learner's function on copies of
the inputs (:func:`~trustml_lab.checks._core.call_learner`: an answer that returns ``None``
or changes its inputs in place fails), tries more than one case, and says which case
failed and what the learner's values were, checking type and shape, then NaN, then values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm

from ..data import load_mnist_split
from ..models import SmallCNN, load_reference
from ..robustness import Certificate, certified_accuracy, fgsm, fit_adversarial, pgd
from ._core import CheckFailed, as_number, call_learner, passed, require

__all__ = [
    "check_adversarial_step",
    "check_certified_accuracy",
    "check_certified_radius",
    "check_fgsm_attack",
    "check_fgsm_rs",
    "check_l2_projection",
]


def _mnist(n: int, start: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    _, x_test, _, y_test = load_mnist_split()
    return load_reference(SmallCNN(), "mnist_cnn.safetensors"), x_test[start:start + n], y_test[start:start + n]


def _input_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]


def _tensor(name: str, value: Any, shape: torch.Size, case: str) -> torch.Tensor:
    """The learner's result as a CPU tensor of ``shape`` (a NumPy array is accepted), NaN-free."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    require(isinstance(value, torch.Tensor), name, f"{case}: return a torch.Tensor, got {type(value).__name__}")
    require(value.shape == shape, name, f"{case}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
    value = value.detach().cpu()
    if value.is_floating_point():
        bad = int(torch.isnan(value).sum())
        require(bad == 0, name, f"{case}: your result has {bad} NaN entries; look for 0 / 0 or inf * 0")
    return value


def _shown(t: torch.Tensor) -> str:
    return np.array2string(t.double().numpy(), precision=4, threshold=8)


def check_fgsm_attack(fgsm_attack: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fgsm_attack(image, epsilon, data_grad)`` (the FGSM function of PyTorch's
    adversarial-example tutorial) against :func:`trustml_lab.robustness.fgsm` at three radii
    (0, 0.05 and 0.3) on 32 MNIST digits, whose pixels reach both ends of [0, 1]."""
    name = "fgsm_attack"
    model, x, y = _mnist(32)
    grad = _input_grad(model, x, y)
    radii = (0.0, 0.05, 0.3)
    expected = {eps: fgsm(model, x, y, eps=eps) for eps in radii}
    for eps in radii:
        case = f"at epsilon={eps}"
        got = _tensor(name, call_learner(name, fgsm_attack, x, eps, grad), x.shape, case).to(x.dtype)
        require(float(got.min()) >= 0 and float(got.max()) <= 1, name,
                f"{case} some pixels leave [0, 1] (from {float(got.min()):.3f} to {float(got.max()):.3f}): "
                "clamp the perturbed image with torch.clamp(..., 0, 1)")
        gap = float((got - expected[eps]).abs().max())
        require(gap <= 1e-6, name,
                f"{case} your image differs from image + epsilon * sign(data_grad) clamped to [0, 1] "
                f"(largest difference {gap:.3g}); use the gradient's sign, not the gradient")
    passed(name, "equals trustml_lab.robustness.fgsm at three radii")


def check_l2_projection(project_l2: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``project_l2(delta, eps)``: each example's perturbation scaled into the L2 ball.

    Two cases: eps = 1 on six single-channel perturbations whose norms are 0 (it must stay
    0, not NaN), 0.1, 0.5, exactly 1, 2 and 8; and eps = 0.5 on four three-channel ones."""
    name = "l2_projection"
    g = torch.Generator().manual_seed(0)
    first = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    first = first / first.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    first = (first * torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 8.0], dtype=torch.float64).view(-1, 1, 1, 1)).float()
    second = torch.randn(4, 3, 2, 2, generator=g) * 0.4
    cases = []
    for label, delta, eps in (("case 1 (eps=1, one channel, a zero perturbation)", first, 1.0),
                              ("case 2 (eps=0.5, three channels)", second, 0.5)):
        norms = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))
        cases.append((label, delta, eps, delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0), norms.flatten()))
    for label, delta, eps, expected, norms in cases:
        got = _tensor(name, call_learner(name, project_l2, delta, eps), delta.shape, label).to(delta.dtype)
        got_norms = got.flatten(1).norm(dim=1)
        require(bool((got_norms <= eps + 1e-5).all()), name,
                f"{label}: some perturbations are longer than eps={eps} after projection: norms "
                f"{_shown(got_norms)}; compute one norm per example (flatten all but the first dimension)")
        inside = norms <= eps
        require(torch.allclose(got[inside], delta[inside], atol=1e-6), name,
                f"{label}: perturbations already inside the ball must stay unchanged (norm <= eps: factor 1; "
                "scale each example by its own norm); "
                f"input norms {_shown(norms)}, yours {_shown(got_norms)}")
        require(torch.allclose(got, expected, atol=1e-5), name,
                f"{label}: project by scaling each example (not the whole batch) by min(1, eps / ||delta||_2); "
                f"the direction must not change. Norms expected {_shown(expected.flatten(1).norm(dim=1))}, "
                f"yours {_shown(got_norms)}")
    passed(name, "each example is scaled into the ball, direction kept (two cases)")


def check_fgsm_rs(fgsm_rs: Callable[..., torch.Tensor]) -> None:
    """Check ``fgsm_rs(model, x, y, *, eps, alpha, generator) -> x_adv`` (Wong et al. 2020).

    Two cases on 64 MNIST digits (eps 0.2 with alpha 0.25; eps 0.1 with alpha 0.125). The
    result must lie in the eps ball and in [0, 1], repeat with the same generator seed and
    change with another, raise the loss well above its random start alone, and agree with
    :func:`trustml_lab.robustness.pgd` (one step from a random start) on 98% of pixels."""
    name = "fgsm_rs"
    model, x, y = _mnist(64)
    for eps, alpha in ((0.2, 0.25), (0.1, 0.125)):
        case = f"at eps={eps}, alpha={alpha}"
        reference = pgd(model, x, y, eps=eps, alpha=alpha, steps=1, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * eps
            noisy = float(F.cross_entropy(model((x + noise).clamp(0, 1)), y))
        runs = [_tensor(name, call_learner(name, fgsm_rs, model, x, y, eps=eps, alpha=alpha,
                                           generator=torch.Generator().manual_seed(seed)), x.shape, case)
                for seed in (0, 0, 1)]
        require(torch.equal(runs[0], runs[1]), name, f"{case}: the same generator seed must give the same result: "
                "draw the random start with torch.rand(..., generator=generator)")
        require(not torch.equal(runs[0], runs[2]), name, f"{case}: the random start must come from the generator")
        gap = float((runs[0] - x).abs().max())
        require(gap <= eps + 1e-6, name,
                f"{case}: the perturbation reaches {gap:.3f} > eps={eps}: clamp delta to [-eps, eps]")
        require(float(runs[0].min()) >= 0 and float(runs[0].max()) <= 1, name, f"{case}: clamp the image to [0, 1]")
        with torch.no_grad():
            attacked = float(F.cross_entropy(model(runs[0].to(x.dtype)), y))
        require(attacked > 2 * noisy, name,
                f"{case}: the loss after your step ({attacked:.3f}) is not much above random noise "
                f"({noisy:.3f}): step alpha * sign(grad) from the random start, with the gradient "
                "taken at the random start")
        agree = float(((runs[0] - reference).abs() <= 1e-5).double().mean())
        require(agree >= 0.98, name,
                f"{case}: your result agrees with FGSM-RS on only {agree:.1%} of pixels: take the gradient at "
                "the clamped random start x + delta, then clip x + delta + alpha * sign(grad) - x to "
                "[-eps, eps]")
    passed(name, "inside the ball, reproducible, loss raised, as trustml_lab.robustness.pgd (two cases)")


def check_adversarial_step(step: Callable[..., Any]) -> None:
    """Check ``step(model, optimizer, x, y, epsilon)``: one FGSM adversarial-training step.

    FGSM examples from the current weights, then one optimizer step on their loss (the
    common recipe); compared with :func:`fit_adversarial` (``method="fgsm"``, one epoch of
    one batch) in two cases (epsilon 0.1 and 0.25, two batches of 48 digits). The function
    acts on the model and need not return anything."""
    name = "adversarial_step"
    for seed, epsilon in ((0, 0.1), (1, 0.25)):
        case = f"case {seed + 1} (epsilon={epsilon})"
        _, x, y = _mnist(48, start=48 * seed)
        torch.manual_seed(seed)
        theirs = SmallCNN()
        start = copy.deepcopy(theirs)
        ours = copy.deepcopy(theirs)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        fit_adversarial(ours, x[order], y[order], method="fgsm", eps=epsilon, epochs=1, batch_size=len(x),
                        lr=1e-3, generator=torch.Generator().manual_seed(0), progress=False)
        optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3)
        call_learner(name, step, theirs, optimizer, x, y, epsilon, allow_none=True)
        moved = any(not torch.equal(a, b) for a, b in zip(theirs.parameters(), start.parameters()))
        require(moved, name, f"{case}: the weights did not change: call optimizer.step()")
        same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(theirs.parameters(), ours.parameters()))
        require(same, name, f"{case}: your weights differ from one FGSM adversarial-training step: make the FGSM "
                "example from the gradient of the loss w.r.t. the input, then optimizer.zero_grad(), "
                "loss on the adversarial batch, backward, step")
    passed(name, "one step of FGSM adversarial training, as fit_adversarial does it (two cases)")


def check_certified_radius(certified_radius: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``certified_radius(p_lower, sigma)``: sigma * Phi^-1(p_lower) where p_lower > 1/2, else 0.

    The bounds include 0 (where Phi^-1 is -inf) and exactly 1/2, at sigma 0.25 and 1."""
    name = "certified_radius"
    p_lower = torch.tensor([0.0, 0.2, 0.5, 0.51, 0.75, 0.9, 0.999], dtype=torch.float64)
    expected = {}
    for sigma in (0.25, 1.0):
        radius = torch.as_tensor(sigma * norm.ppf(p_lower.numpy()))
        expected[sigma] = torch.where(p_lower > 0.5, radius, torch.zeros_like(radius))
    for sigma in (0.25, 1.0):
        case = f"with sigma={sigma} and p_lower={_shown(p_lower)}"
        got = _tensor(name, call_learner(name, certified_radius, p_lower, sigma), p_lower.shape, case).double()
        require(bool((got[p_lower <= 0.5] == 0).all()), name,
                f"{case}: where p_lower <= 1/2 the smoothed classifier abstains: radius 0 (yours {_shown(got)}; "
                "torch.where(p_lower > 0.5, ..., 0) avoids -inf * 0)")
        require(torch.allclose(got, expected[sigma], atol=1e-6), name,
                f"{case}: expected {_shown(expected[sigma])}, got {_shown(got)}: "
                "use torch.special.ndtri (the inverse of the normal CDF)")
    passed(name, "sigma * Phi^-1(p_lower), 0 where it abstains")


def check_certified_accuracy(accuracy_at: Callable[[Certificate, torch.Tensor, float], float]) -> None:
    """Check ``accuracy_at(certificate, y, r) -> float`` against :func:`certified_accuracy`.

    Two certificates (one with an abstention, one where two radii equal ``r``), four radii
    each; a Python float, a NumPy scalar or a one-element tensor are all accepted."""
    name = "certified_accuracy"
    certificates = [
        (Certificate(prediction=torch.tensor([3, 3, 1, -1, 0, 2]),
                     radius=torch.tensor([0.9, 0.2, 0.5, 0.0, 1.5, 0.3], dtype=torch.float64),
                     p_lower=torch.zeros(6, dtype=torch.float64)), torch.tensor([3, 3, 2, 0, 0, 2])),
        (Certificate(prediction=torch.tensor([1, 1, 0, 0]),
                     radius=torch.tensor([0.25, 0.25, 0.6, 0.1], dtype=torch.float64),
                     p_lower=torch.zeros(4, dtype=torch.float64)), torch.tensor([1, 0, 0, 0])),
    ]
    radii = (0.0, 0.25, 0.9, 2.0)
    expected = [certified_accuracy(c, y, radii=list(radii)).tolist() for c, y in certificates]
    for number, ((certificate, y), values) in enumerate(zip(certificates, expected), start=1):
        for r, want in zip(radii, values):
            case = f"certificate {number} at r={r}"
            given = Certificate(*(t.clone() for t in (certificate.prediction, certificate.radius,
                                                      certificate.p_lower)))
            got = call_learner(name, accuracy_at, given, y, r)
            require(all(torch.equal(a, b) for a, b in zip(
                (given.prediction, given.radius, given.p_lower),
                (certificate.prediction, certificate.radius, certificate.p_lower))), name,
                f"{case}: your function changed the certificate in place; work on copies")
            try:
                value = as_number(got, name, "the certified accuracy")
            except CheckFailed as err:
                raise CheckFailed(f"{err} ({case})") from None
            require(not np.isnan(value), name, f"{case}: your result is NaN")
            require(abs(value - want) < 1e-6, name,
                    f"{case}: expected {want:.4f}, got {value:.4f}: count examples whose "
                    "prediction equals y AND whose radius is >= r, over all examples (abstentions count as wrong)")
    passed(name, "matches certified_accuracy on two certificates at four radii")
