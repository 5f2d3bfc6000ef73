"""Self-checks for chapter 2, Adversarial robustness."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import norm

from ..data import load_mnist_split
from ..models import SmallCNN, load_reference
from ..robustness import Certificate, certified_accuracy, fgsm, fit_adversarial
from ._core import call_learner, passed, require

__all__ = [
    "check_adversarial_step",
    "check_certified_accuracy",
    "check_certified_radius",
    "check_fgsm_attack",
    "check_fgsm_rs",
    "check_l2_projection",
]


def _mnist(n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    _, x_test, _, y_test = load_mnist_split()
    return load_reference(SmallCNN(), "mnist_cnn.safetensors"), x_test[:n], y_test[:n]


def _input_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]


def _tensor(name: str, value: Any, shape: torch.Size) -> torch.Tensor:
    require(isinstance(value, torch.Tensor), name, f"return a torch.Tensor, got {type(value).__name__}")
    require(value.shape == shape, name, f"expected shape {tuple(shape)}, got {tuple(value.shape)}")
    return value.detach()


def check_fgsm_attack(fgsm_attack: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]) -> None:
    """Check the seeds' ``fgsm_attack(image, epsilon, data_grad)`` against :func:`fgsm`."""
    name = "fgsm_attack"
    model, x, y = _mnist(32)
    grad = _input_grad(model, x, y)
    for eps in (0.0, 0.05, 0.3):
        got = _tensor(name, call_learner(name, fgsm_attack, x.clone(), eps, grad.clone()), x.shape)
        require(float(got.min()) >= 0 and float(got.max()) <= 1, name,
                "some pixels leave [0, 1]: clamp the perturbed image with torch.clamp(..., 0, 1)")
        expected = fgsm(model, x, y, eps=eps)
        require(torch.equal(got, expected), name,
                f"at epsilon={eps} your image differs from image + epsilon * sign(grad) clamped to "
                f"[0, 1] (largest difference {float((got - expected).abs().max()):.3g}); use the "
                "gradient's sign, not the gradient")
    passed(name, "equals trustml_lab.robustness.fgsm at three radii")


def check_l2_projection(project_l2: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``project_l2(delta, eps)``: each example's perturbation scaled into the L2 ball."""
    name = "l2_projection"
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(6, 1, 4, 4, generator=g) * torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 8.0]).view(-1, 1, 1, 1)
    eps = 1.0
    got = _tensor(name, call_learner(name, project_l2, delta.clone(), eps), delta.shape)
    norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)
    got_norms = got.flatten(1).norm(dim=1)
    require(bool((got_norms <= eps + 1e-5).all()), name,
            f"some perturbations are longer than eps={eps} after projection: {got_norms.tolist()}")
    inside = norms.flatten() <= eps
    require(torch.allclose(got[inside], delta[inside], atol=1e-6), name,
            "perturbations already inside the ball must stay unchanged (norm <= eps: factor 1)")
    require(torch.allclose(got, expected, atol=1e-5), name,
            "project by scaling each example (not the whole batch) by min(1, eps / ||delta||_2); "
            "the direction must not change")
    require(bool(torch.isfinite(got).all()), name, "a zero perturbation must stay zero, not NaN")
    passed(name, "each example is scaled into the ball, direction kept")


def check_fgsm_rs(fgsm_rs: Callable[..., torch.Tensor]) -> None:
    """Check ``fgsm_rs(model, x, y, *, eps, alpha, generator) -> x_adv`` (Wong et al. 2020).

    The result must lie in the eps ball and in [0, 1], depend on the generator, and raise
    the loss more than its random start alone does."""
    name = "fgsm_rs"
    model, x, y = _mnist(64)
    eps, alpha = 0.2, 0.25
    runs = [_tensor(name, call_learner(name, fgsm_rs, model, x, y, eps=eps, alpha=alpha,
                                       generator=torch.Generator().manual_seed(seed)), x.shape)
            for seed in (0, 0, 1)]
    require(torch.equal(runs[0], runs[1]), name, "the same generator seed must give the same result: "
            "draw the random start with torch.rand(..., generator=generator)")
    require(not torch.equal(runs[0], runs[2]), name, "the random start must come from the generator")
    gap = float((runs[0] - x).abs().max())
    require(gap <= eps + 1e-6, name, f"the perturbation reaches {gap:.3f} > eps={eps}: clamp delta to [-eps, eps]")
    require(float(runs[0].min()) >= 0 and float(runs[0].max()) <= 1, name, "clamp the image to [0, 1]")
    with torch.no_grad():
        attacked = F.cross_entropy(model(runs[0]), y)
        noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * eps
        noisy = F.cross_entropy(model((x + noise).clamp(0, 1)), y)
    require(float(attacked) > 2 * float(noisy), name,
            f"the loss after your step ({float(attacked):.3f}) is not much above random noise "
            f"({float(noisy):.3f}): step alpha * sign(grad) from the random start, with the gradient "
            "taken at the random start")
    passed(name, f"inside the ball, reproducible, loss {float(attacked):.2f} vs noise {float(noisy):.2f}")


def check_adversarial_step(step: Callable[..., Any]) -> None:
    """Check ``step(model, optimizer, x, y, epsilon)``: the seeds' training step for one batch.

    FGSM examples from the current weights, then one optimizer step on their loss; compared
    with :func:`fit_adversarial` (``method="fgsm"``, one epoch of one batch)."""
    name = "adversarial_step"
    _, x, y = _mnist(48)
    torch.manual_seed(0)
    theirs = SmallCNN()
    ours = copy.deepcopy(theirs)
    optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    call_learner(name, step, theirs, optimizer, x.clone(), y.clone(), 0.1, allow_none=True)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    fit_adversarial(ours, x[order], y[order], method="fgsm", eps=0.1, epochs=1, batch_size=len(x), lr=1e-3,
                    generator=torch.Generator().manual_seed(0), progress=False)
    moved = any(not torch.equal(a, b) for a, b in zip(theirs.parameters(), SmallCNN().parameters()))
    require(moved, name, "the weights did not change: call optimizer.step()")
    same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(theirs.parameters(), ours.parameters()))
    require(same, name, "your weights differ from one FGSM adversarial-training step: make the FGSM "
            "example from the gradient of the loss w.r.t. the input, then optimizer.zero_grad(), "
            "loss on the adversarial batch, backward, step")
    passed(name, "one step of the seeds' FGSM training, as fit_adversarial does it")


def check_certified_radius(certified_radius: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``certified_radius(p_lower, sigma)``: sigma * Phi^-1(p_lower) where p_lower > 1/2, else 0."""
    name = "certified_radius"
    p_lower = torch.tensor([0.2, 0.5, 0.51, 0.75, 0.9, 0.999], dtype=torch.float64)
    for sigma in (0.25, 1.0):
        got = _tensor(name, call_learner(name, certified_radius, p_lower.clone(), sigma), p_lower.shape)
        expected = torch.as_tensor(sigma * norm.ppf(p_lower.numpy())).clamp_min(0)
        expected[p_lower <= 0.5] = 0.0
        require(bool((got[p_lower <= 0.5] == 0).all()), name,
                "where p_lower <= 1/2 the smoothed classifier abstains: radius 0")
        require(torch.allclose(got.double(), expected, atol=1e-6), name,
                f"with sigma={sigma} expected {expected.tolist()}, got {got.tolist()}: "
                "use torch.special.ndtri (the inverse of the normal CDF)")
    passed(name, "sigma * Phi^-1(p_lower), 0 where it abstains")


def check_certified_accuracy(accuracy_at: Callable[[Certificate, torch.Tensor, float], float]) -> None:
    """Check ``accuracy_at(certificate, y, r)`` against :func:`certified_accuracy`."""
    name = "certified_accuracy"
    certificate = Certificate(prediction=torch.tensor([3, 3, 1, -1, 0, 2]),
                              radius=torch.tensor([0.9, 0.2, 0.5, 0.0, 1.5, 0.3], dtype=torch.float64),
                              p_lower=torch.zeros(6, dtype=torch.float64))
    y = torch.tensor([3, 3, 2, 0, 0, 2])
    for r in (0.0, 0.25, 0.9, 2.0):
        got = call_learner(name, accuracy_at, certificate, y, r)
        expected = float(certified_accuracy(certificate, y, radii=[r])[0])
        require(abs(float(got) - expected) < 1e-9, name,
                f"at r={r} expected {expected:.4f}, got {float(got):.4f}: count examples whose "
                "prediction equals y AND whose radius is >= r, over all examples (abstentions count as wrong)")
    passed(name, "matches certified_accuracy at four radii")
