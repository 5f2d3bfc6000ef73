"""Self-checks for chapter 4, Differential privacy."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import privacy as P
from ._core import call_learner, passed, require

__all__ = [
    "check_attack_auc",
    "check_clip_and_sum",
    "check_epsilon_from_rates",
    "check_laplace_noise",
    "check_noise_multiplier",
    "check_private_mean",
]


def check_laplace_noise(add_laplace_noise: Callable[..., torch.Tensor]) -> None:
    """Check ``add_laplace_noise(data, *, sensitivity, epsilon, generator)``: Laplace(sensitivity/epsilon)."""
    name = "laplace_noise"
    data = torch.full((20_000,), 10.0, dtype=torch.float64)
    for sensitivity, epsilon in ((1.0, 1.0), (2.0, 0.5), (1.0, 4.0)):
        g = torch.Generator().manual_seed(0)
        noisy = call_learner(name, add_laplace_noise, data, sensitivity=sensitivity, epsilon=epsilon, generator=g)
        require(isinstance(noisy, torch.Tensor) and noisy.shape == data.shape, name,
                "return a tensor of the data's shape: data + noise")
        noise = (noisy - data).double()
        scale = sensitivity / epsilon
        require(abs(float(noise.median())) < 0.1 * scale, name,
                "the noise should be centred on 0: add it to the data, do not replace the data")
        got = float(noise.abs().mean())
        require(abs(got / scale - 1) < 0.05, name,
                f"with sensitivity {sensitivity} and epsilon {epsilon} the noise's mean absolute value "
                f"should be the scale b = sensitivity / epsilon = {scale:g}, got {got:.3f}")
        kurtosis = float(((noise - noise.mean()) ** 4).mean() / noise.var() ** 2)
        require(kurtosis > 4.5, name, f"the noise does not look Laplace (kurtosis {kurtosis:.2f}, Laplace has 6): "
                "draw it as b * (E1 - E2) with two standard exponentials, or use trustml_lab.privacy")
    passed(name, "noise of scale sensitivity / epsilon, Laplace-shaped, for three settings")


def check_private_mean(private_mean: Callable[..., torch.Tensor]) -> None:
    """Check ``private_mean(values, *, lower, upper, epsilon, generator)``: clip, mean, Laplace noise."""
    name = "private_mean"
    values = torch.tensor([-50.0, 10.0, 20.0, 30.0, 40.0, 500.0], dtype=torch.float64)
    exact = float(values.clamp(0, 100).mean())
    g = torch.Generator().manual_seed(0)
    nearly_exact = float(call_learner(name, private_mean, values, lower=0.0, upper=100.0, epsilon=1e6, generator=g))
    require(abs(nearly_exact - exact) < 1e-2, name,
            f"with a huge epsilon the answer should be the mean of the values clipped to [lower, upper], "
            f"{exact:.3f}; got {nearly_exact:.3f}. Clip first (values.clamp(lower, upper)), then average")
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([torch.as_tensor(call_learner(name, private_mean, values, lower=0.0, upper=100.0,
                                                      epsilon=1.0, generator=g), dtype=torch.float64)
                         for _ in range(3000)])
    scale = 100.0 / len(values)
    got = float((draws - exact).abs().mean())
    require(abs(got / scale - 1) < 0.1, name,
            f"the noise's scale should be sensitivity / epsilon with sensitivity (upper - lower) / n = "
            f"{scale:.3f}; your answers scatter by {got:.3f} on average")
    passed(name, "clipped mean with Laplace noise of scale (upper - lower) / (n epsilon)")


def check_clip_and_sum(clip_per_example: Callable[..., dict]) -> None:
    """Check ``clip_per_example(per_sample_grads, max_grad_norm)`` against :func:`privacy.clip_and_sum`."""
    name = "clip_and_sum"
    g = torch.Generator().manual_seed(0)
    grads = {"weight": torch.randn(16, 4, 3, generator=g) * torch.linspace(0.01, 3, 16)[:, None, None],
             "bias": torch.randn(16, 4, generator=g)}
    expected, _ = P.clip_and_sum(grads, max_grad_norm=1.0)
    got = call_learner(name, clip_per_example, {k: v.clone() for k, v in grads.items()}, 1.0)
    require(isinstance(got, dict) and set(got) == set(expected), name,
            f"return a dict with the same keys as the input, {sorted(expected)}")
    for key in expected:
        require(tuple(got[key].shape) == tuple(expected[key].shape), name,
                f"{key}: sum over the examples (dimension 0): expected shape {tuple(expected[key].shape)}, "
                f"got {tuple(got[key].shape)}")
    wrong_norm = any(not torch.allclose(got[k], expected[k], atol=1e-4) for k in expected)
    require(not wrong_norm, name,
            "the clipped sum differs: take each example's norm over ALL parameters together "
            "(sqrt of the sum of squared entries of weight and bias), scale the example by "
            "min(1, max_grad_norm / (norm + 1e-6)), then sum over examples")
    passed(name, "flat clipping and summing match Opacus's rule")


def check_noise_multiplier(answer: float, *, epsilon: float, delta: float, sample_rate: float, steps: int) -> None:
    """Check a noise multiplier that should spend at most ``epsilon`` (and not much less)."""
    name = "noise_multiplier"
    require(isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer > 0, name,
            f"give the noise multiplier as a positive number, got {answer!r}")
    spent = P.epsilon_spent(noise_multiplier=float(answer), sample_rate=sample_rate, steps=steps, delta=delta)
    require(spent <= epsilon + 1e-9, name,
            f"with noise multiplier {answer:.4f} training spends epsilon {spent:.3f} > {epsilon}: more noise")
    require(spent >= epsilon - 0.05, name,
            f"with noise multiplier {answer:.4f} training spends only epsilon {spent:.3f}: you can use less "
            f"noise (aim within 0.05 of {epsilon}); bisect on the noise multiplier")
    passed(name, f"epsilon {spent:.3f} <= {epsilon} with noise multiplier {answer:.3f}")


def check_attack_auc(loss_threshold_auc: Callable[..., float]) -> None:
    """Check ``loss_threshold_auc(member_losses, non_member_losses)`` against :func:`privacy.attack_metrics`."""
    name = "attack_auc"
    g = torch.Generator().manual_seed(0)
    member = torch.rand(300, generator=g).square() * 2
    non_member = torch.rand(200, generator=g) * 2
    tied_member, tied_non = torch.tensor([0.1, 0.5, 0.5, 0.9]), torch.tensor([0.5, 0.7, 0.9])
    for m, n in ((member, non_member), (tied_member, tied_non)):
        expected = P.attack_metrics(-m, -n).auc
        got = call_learner(name, loss_threshold_auc, m.clone(), n.clone())
        got = float(got)
        if abs(got - (1 - expected)) < 1e-6 and abs(expected - 0.5) > 1e-6:
            require(False, name, "your AUC is 1 - the right one: a LOW loss means member, so score = -loss")
        require(abs(got - expected) < 1e-6, name,
                f"expected AUC {expected:.4f}, got {got:.4f}: the AUC is the probability that a random "
                "member has a lower loss than a random non-member, ties counting one half")
    passed(name, "loss-threshold AUC matches, ties included")


def check_epsilon_from_rates(epsilon_from_rates: Callable[..., float]) -> None:
    """Check ``epsilon_from_rates(fpr, fnr, delta)``, the DP lower bound from one test's error rates."""
    name = "epsilon_from_rates"
    cases = ((0.01, 0.5, 1e-5), (0.2, 0.05, 1e-5), (0.3, 0.3, 0.0), (0.6, 0.6, 0.0), (0.05, 0.1, 0.01))
    for fpr, fnr, delta in cases:
        bounds = [(1 - delta - fnr) / fpr, (1 - delta - fpr) / fnr]
        expected = max(0.0, max(math.log(b) for b in bounds if b > 0))
        got = float(call_learner(name, epsilon_from_rates, fpr, fnr, delta))
        require(abs(got - expected) < 1e-6, name,
                f"fpr={fpr}, fnr={fnr}, delta={delta}: expected {expected:.4f}, got {got:.4f}. DP forces "
                "fpr + e^eps fnr >= 1 - delta and fnr + e^eps fpr >= 1 - delta; solve both for eps, "
                "take the larger, and never go below 0")
    passed(name, f"all {len(cases)} cases agree")
