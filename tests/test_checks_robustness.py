"""trustml_lab.checks.robustness: chapter 2's self-checks pass right answers and explain wrong ones.

For each check: the notebook's solution passes; a wrong answer, a stub, an answer that
returns None and an answer that changes its inputs in place fail with a hint; NumPy
results are accepted where a learner may return them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustml_lab import checks
from trustml_lab.checks import CheckFailed

R = checks.robustness


# --------------------------------------------------------------------------- the notebooks' solutions

def fgsm_attack(image, epsilon, data_grad):
    return torch.clamp(image + epsilon * data_grad.sign(), 0, 1)


def project_l2(delta, eps):
    norms = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))
    return delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)


def fgsm_rs(model, x, y, *, eps, alpha, generator):
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    start = (x + delta).clamp(0, 1).requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(start), y), start)[0]
    delta = (start.detach() + alpha * grad.sign() - x).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def adversarial_step(model, optimizer, x, y, epsilon):
    model.train()
    x = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]
    x_adv = torch.clamp(x.detach() + epsilon * grad.sign(), 0, 1)
    optimizer.zero_grad()
    F.cross_entropy(model(x_adv), y).backward()
    optimizer.step()


def certified_radius(p_lower, sigma):
    return torch.where(p_lower > 0.5, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))


def accuracy_at(certificate, y, r):
    right = (certificate.prediction == y) & (certificate.radius >= r)
    return float(right.double().mean())


RIGHT = {
    "check_fgsm_attack": fgsm_attack,
    "check_l2_projection": project_l2,
    "check_fgsm_rs": fgsm_rs,
    "check_adversarial_step": adversarial_step,
    "check_certified_radius": certified_radius,
    "check_certified_accuracy": accuracy_at,
}


# --------------------------------------------------------------------------- wrong answers, with the hint expected

def fgsm_rs_gradient_at_x(model, x, y, *, eps, alpha, generator):
    """The step's gradient taken at the clean image instead of the random start."""
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    x_grad = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x_grad), y), x_grad)[0]
    delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def adversarial_step_on_clean(model, optimizer, x, y, epsilon):
    """Trains on the clean batch: the weights move, but not as adversarial training moves them."""
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


WRONG = [
    ("check_fgsm_attack", lambda image, epsilon, grad: image + epsilon * grad.sign(), "leave \\[0, 1\\]"),
    ("check_fgsm_attack", lambda image, epsilon, grad: (image + epsilon * grad).clamp(0, 1), "sign"),
    ("check_l2_projection", lambda delta, eps: delta.clamp(-eps, eps), "longer than eps"),
    ("check_l2_projection", lambda delta, eps: delta * (eps / delta.flatten(1).norm(dim=1)).view(-1, 1, 1, 1),
     "NaN"),
    ("check_l2_projection", lambda delta, eps: delta * torch.clamp(eps / delta.norm(), max=1.0), "its own norm"),
    ("check_fgsm_rs", lambda model, x, y, *, eps, alpha, generator: x.clone(), "random start"),
    ("check_fgsm_rs", lambda model, x, y, *, eps, alpha, generator:
        (x + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps).clamp(0, 1), "not much above random noise"),
    ("check_fgsm_rs", fgsm_rs_gradient_at_x, "agrees with FGSM-RS on only"),
    ("check_adversarial_step", lambda model, optimizer, x, y, epsilon: None, "did not change"),
    ("check_adversarial_step", adversarial_step_on_clean, "differ from one FGSM"),
    ("check_certified_radius", lambda p, sigma: sigma * torch.special.ndtri(p), "abstains"),
    ("check_certified_radius", lambda p, sigma: sigma * torch.special.ndtri(p) * (p > 0.5), "NaN"),
    ("check_certified_radius", lambda p, sigma: torch.where(p > 0.5, torch.special.ndtri(p), 0 * p), "expected"),
    ("check_certified_accuracy", lambda certificate, y, r: float((certificate.prediction == y).double().mean()),
     "r=0.25"),
    ("check_certified_accuracy", lambda certificate, y, r:
        float(((certificate.prediction == y) & (certificate.radius > r)).double().mean()), "certificate 1 at r=0.9"),
]


@pytest.mark.parametrize("check", list(RIGHT))
def test_a_right_answer_passes(check, capsys):
    getattr(R, check)(RIGHT[check])
    assert capsys.readouterr().out.startswith(f"PASS {check.removeprefix('check_')}")


@pytest.mark.parametrize("check, wrong, hint", WRONG, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_a_wrong_answer_fails_with_a_hint(check, wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        getattr(R, check)(wrong)


@pytest.mark.parametrize("check", list(RIGHT))
def test_a_stub_is_told_to_write_its_code(check):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="NotImplementedError"):
        getattr(R, check)(stub)


@pytest.mark.parametrize("check", [c for c in RIGHT if c != "check_adversarial_step"])
def test_an_answer_that_returns_none_is_told_to_return(check):
    with pytest.raises(CheckFailed, match="returned None"):
        getattr(R, check)(lambda *args, **kwargs: None)


def _mutating(function, position):
    """The right answer, but it also writes into its argument ``position`` in place."""
    def answer(*args, **kwargs):
        result = function(*args, **kwargs)
        target = args[position]
        if hasattr(target, "prediction"):  # a Certificate: its tensors
            target = target.prediction
        with torch.no_grad():
            target.add_(1)
        return result
    return answer


@pytest.mark.parametrize("check, position", [
    ("check_fgsm_attack", 0), ("check_fgsm_attack", 2), ("check_l2_projection", 0),
    ("check_fgsm_rs", 1), ("check_adversarial_step", 2), ("check_certified_radius", 0),
    ("check_certified_accuracy", 0), ("check_certified_accuracy", 1),
])
def test_an_answer_that_changes_its_inputs_in_place_fails(check, position):
    with pytest.raises(CheckFailed, match="in place"):
        getattr(R, check)(_mutating(RIGHT[check], position))


def test_numpy_results_are_accepted(capsys):
    R.check_fgsm_attack(lambda image, epsilon, grad: fgsm_attack(image, epsilon, grad).numpy())
    R.check_certified_radius(lambda p, sigma: certified_radius(p, sigma).numpy())
    R.check_certified_accuracy(lambda certificate, y, r: np.float32(accuracy_at(certificate, y, r)))
    R.check_certified_accuracy(lambda certificate, y, r: torch.tensor(accuracy_at(certificate, y, r)))
    R.check_certified_accuracy(lambda certificate, y, r: np.array(accuracy_at(certificate, y, r)))
    assert capsys.readouterr().out.count("PASS") == 5


def test_a_result_of_the_wrong_kind_is_named():
    with pytest.raises(CheckFailed, match="return a torch.Tensor, got list"):
        R.check_certified_radius(lambda p, sigma: certified_radius(p, sigma).tolist())
    with pytest.raises(CheckFailed, match="expected shape"):
        R.check_l2_projection(lambda delta, eps: project_l2(delta, eps).flatten(1))
    with pytest.raises(CheckFailed, match="one number"):
        R.check_certified_accuracy(lambda certificate, y, r: [accuracy_at(certificate, y, r)])
