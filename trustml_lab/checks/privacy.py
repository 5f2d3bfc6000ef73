"""Self-checks for chapter 4, Differential privacy.

Each check computes its reference first, then calls the learner's function on copies of
its inputs (:func:`~trustml_lab.checks._core.call_learner`), tries several cases, accepts
NumPy scalars and arrays, and names the case and the learner's value when it fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import privacy as P
from ._core import CheckFailed, as_array, as_number, call_learner, passed, require, require_close

__all__ = [
    "check_attack_auc",
    "check_clip_and_sum",
    "check_epsilon_from_rates",
    "check_laplace_noise",
    "check_noise_multiplier",
    "check_private_mean",
]

#: How the chapter reads epsilon: ``privacy.epsilon_spent``'s default accountant.
ACCOUNTANT = "read with RDP, Opacus's RDPAccountant, privacy.epsilon_spent's default"


def _finite(values: np.ndarray, name: str, where: str, what: str) -> None:
    require(not np.isnan(values).any(), name, f"{where}{what} contains NaN: look for a division by zero or a log of 0")


def check_laplace_noise(add_laplace_noise: Callable[..., Any]) -> None:
    """Check ``add_laplace_noise(data, *, sensitivity, epsilon, generator)``: Laplace(sensitivity/epsilon).

    Three settings; in each, the returned ``data + noise`` must have the data's shape, noise
    centred on 0 whose mean absolute value is the scale ``b = sensitivity / epsilon``, with
    Laplace's heavy tails, drawn from ``generator`` (the same seed gives the same noise).
    """
    name = "laplace_noise"
    data = torch.full((20_000,), 10.0, dtype=torch.float64)
    settings = ((1.0, 1.0), (2.0, 0.5), (1.0, 4.0))
    for number, (sensitivity, epsilon) in enumerate(settings, start=1):
        where = f"case {number} (sensitivity {sensitivity:g}, epsilon {epsilon:g}): "
        scale = sensitivity / epsilon  # the reference, known before the learner runs
        noisy = call_learner(name, add_laplace_noise, data, sensitivity=sensitivity, epsilon=epsilon,
                             generator=torch.Generator().manual_seed(number))
        got = as_array(noisy, name, "data + noise")
        require(got.shape == tuple(data.shape), name,
                f"{where}return data + noise, of the data's shape {tuple(data.shape)}; got shape {got.shape}")
        _finite(got, name, where, "data + noise")
        noise = got - 10.0
        require(abs(float(np.median(noise))) < 0.1 * scale, name,
                f"{where}the noise should be centred on 0 (median {float(np.median(noise)):.3f}): add it to the "
                "data, do not replace the data")
        mean_abs = float(np.abs(noise).mean())
        require(abs(mean_abs / scale - 1) < 0.05, name,
                f"{where}the noise's mean absolute value should be the scale b = sensitivity / epsilon = "
                f"{scale:g}, got {mean_abs:.3f}")
        centred = noise - noise.mean()
        kurtosis = float((centred ** 4).mean() / centred.var() ** 2)
        require(kurtosis > 4.5, name,
                f"{where}the noise does not look Laplace (kurtosis {kurtosis:.2f}, Laplace has 6): draw it as "
                "b * (E1 - E2) with two standard exponentials, or use trustml_lab.privacy")
        again = as_array(call_learner(name, add_laplace_noise, data, sensitivity=sensitivity, epsilon=epsilon,
                                      generator=torch.Generator().manual_seed(number)), name)
        require(np.array_equal(again, got), name,
                f"{where}two calls with generators seeded alike gave different noise: draw every random "
                "number from `generator` (e.g. tensor.exponential_(generator=generator))")
    passed(name, "noise of scale sensitivity / epsilon, Laplace-shaped, drawn from the generator, in three settings")


def check_private_mean(private_mean: Callable[..., Any]) -> None:
    """Check ``private_mean(values, *, lower, upper, epsilon, generator)``: clip, mean, Laplace noise.

    Two data sets: with a huge epsilon the answer must be the mean of the values clipped to
    ``[lower, upper]``; and with epsilon 1, 2,000 answers on the first data set must scatter
    with the Laplace scale ``(upper - lower) / (n epsilon)``.
    """
    name = "private_mean"
    cases = (
        (torch.tensor([-50.0, 10.0, 20.0, 30.0, 40.0, 500.0], dtype=torch.float64), 0.0, 100.0),
        (torch.linspace(10, 100, 20, dtype=torch.float64), 17.0, 90.0),
    )
    for number, (values, lower, upper) in enumerate(cases, start=1):
        where = f"case {number} ({len(values)} values, [lower, upper] = [{lower:g}, {upper:g}]): "
        exact = float(values.clamp(lower, upper).mean())
        scale = (upper - lower) / len(values)
        g = torch.Generator().manual_seed(0)
        nearly_exact = as_number(call_learner(name, private_mean, values, lower=lower, upper=upper, epsilon=1e6,
                                              generator=g), name, "the private mean")
        require(not math.isnan(nearly_exact), name, f"{where}your answer is NaN")
        require(abs(nearly_exact - exact) < 1e-2, name,
                f"{where}with a huge epsilon the answer should be the mean of the values clipped to "
                f"[lower, upper], {exact:.3f}; got {nearly_exact:.3f}. Clip first (values.clamp(lower, upper)), "
                "then average")
        if number > 1:
            continue
        g = torch.Generator().manual_seed(number)
        draws = np.array([as_number(call_learner(name, private_mean, values, lower=lower, upper=upper, epsilon=1.0,
                                                 generator=g), name, "the private mean") for _ in range(2000)])
        got = float(np.abs(draws - exact).mean())
        require(abs(got / scale - 1) < 0.1, name,
                f"{where}the noise's scale should be sensitivity / epsilon with sensitivity (upper - lower) / n = "
                f"{scale:.3f}; your answers scatter by {got:.3f} on average")
    passed(name, "the clipped mean of two data sets, with Laplace noise of scale (upper - lower) / (n epsilon)")


def _per_parameter(grads: dict[str, torch.Tensor], max_grad_norm: float) -> dict[str, torch.Tensor]:
    return {k: P.clip_and_sum({k: g}, max_grad_norm=max_grad_norm).summed[k] for k, g in grads.items()}


def check_clip_and_sum(clip_per_example: Callable[..., dict]) -> None:
    """Check ``clip_per_example(per_sample_grads, max_grad_norm)`` against :func:`privacy.clip_and_sum`.

    Three cases: a batch where some examples are clipped, one with three parameters and a
    smaller ``max_grad_norm``, and one where no example needs clipping.
    """
    name = "clip_and_sum"
    g = torch.Generator().manual_seed(0)
    cases = [
        ({"weight": torch.randn(16, 4, 3, generator=g) * torch.linspace(0.01, 3, 16)[:, None, None],
          "bias": torch.randn(16, 4, generator=g)}, 1.0),
        ({"conv": torch.randn(8, 2, 3, 3, generator=g), "weight": torch.randn(8, 5, generator=g),
          "bias": torch.randn(8, 1, generator=g) * 4}, 0.5),
        ({"weight": torch.randn(6, 3, generator=g) * 0.01, "bias": torch.randn(6, 1, generator=g) * 0.01}, 10.0),
    ]
    for number, (grads, max_grad_norm) in enumerate(cases, start=1):
        where = f"case {number} (max_grad_norm {max_grad_norm:g}, parameters {sorted(grads)}): "
        expected = P.clip_and_sum(grads, max_grad_norm=max_grad_norm).summed
        per_parameter = _per_parameter(grads, max_grad_norm)
        unclipped = {k: v.sum(dim=0) for k, v in grads.items()}
        got = call_learner(name, clip_per_example, grads, max_grad_norm)
        require(isinstance(got, dict) and set(got) == set(expected), name,
                f"{where}return a dict with the same keys as the input, {sorted(expected)}; got "
                f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
        arrays = {key: as_array(got[key], name, f"the sum for {key!r}") for key in expected}
        for key, value in arrays.items():
            require(value.shape == tuple(expected[key].shape), name,
                    f"{where}{key}: sum over the examples (dimension 0): expected shape "
                    f"{tuple(expected[key].shape)}, got {value.shape}")
            _finite(value, name, where, f"the sum for {key!r}")

        def matches(reference: dict[str, torch.Tensor], arrays: dict[str, np.ndarray] = arrays) -> bool:
            return all(np.allclose(arrays[k], reference[k].numpy(), atol=1e-4, rtol=1e-4) for k in reference)

        if not matches(expected):
            if number < 3 and matches(per_parameter):
                raise CheckFailed(f"{name}: not yet. {where}you clipped each parameter separately: take each "
                                  "example's norm over ALL parameters together (sqrt of the sum of squared entries "
                                  "of every tensor), scale the example by min(1, max_grad_norm / (norm + 1e-6)), "
                                  "then sum over examples")
            if number < 3 and matches(unclipped):
                raise CheckFailed(f"{name}: not yet. {where}your sum is the unclipped sum: scale each example by "
                                  "min(1, max_grad_norm / (norm + 1e-6)) before summing")
            for key in expected:
                require_close(arrays[key], expected[key], name, case=f"case {number}, {key!r}", tol=1e-4,
                              what="the clipped sum",
                              hint="take each example's norm over ALL parameters together, scale the example by "
                                   "min(1, max_grad_norm / (norm + 1e-6)), then sum over examples")
    passed(name, "flat clipping and summing match Opacus's rule in three cases")


def _noise_multiplier_case(answer: float, name: str, where: str, *, epsilon: float, delta: float,
                           sample_rate: float, steps: int) -> float:
    require(answer > 0 and math.isfinite(answer), name,
            f"{where}give the noise multiplier as a finite positive number, got {answer!r}")
    require(answer <= P.MAX_NOISE_MULTIPLIER, name,
            f"{where}a noise multiplier of {answer:g} is far more noise than any budget needs; bisect on the "
            "noise multiplier between about 0.3 and 100")
    spent = P.epsilon_spent(noise_multiplier=answer, sample_rate=sample_rate, steps=steps, delta=delta)
    require(spent <= epsilon + 1e-9, name,
            f"{where}with noise multiplier {answer:.4f} training spends epsilon {spent:.3f} > {epsilon} "
            f"({ACCOUNTANT}): more noise")
    require(spent >= epsilon - 0.05, name,
            f"{where}with noise multiplier {answer:.4f} training spends only epsilon {spent:.3f} ({ACCOUNTANT}): "
            f"you can use less noise (aim within 0.05 below {epsilon}); bisect on the noise multiplier")
    return spent


#: The budgets the function form of :func:`check_noise_multiplier` tries: the exercise's, then one more.
NOISE_CASES = (dict(epsilon=2.0, delta=1e-5, sample_rate=1 / 128, steps=384),
               dict(epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=500))


def check_noise_multiplier(answer: Any, *, epsilon: float | None = None, delta: float | None = None,
                           sample_rate: float | None = None, steps: int | None = None) -> None:
    """Check a noise multiplier that spends at most ``epsilon`` (and not more than 0.05 less).

    ``answer`` is either a function ``smallest_noise_multiplier(*, epsilon, delta,
    sample_rate, steps)``, tried on the exercise's budget (epsilon 2, delta 1e-5, sample
    rate 1/128, 384 steps) and on a second one (epsilon 1, delta 1e-5, sample rate 0.01,
    500 steps), or a number, checked for the budget given as keywords. Epsilon is read as
    the chapter reads it: ``privacy.epsilon_spent`` with its default accountant, RDP
    (Opacus's ``RDPAccountant``).
    """
    name = "noise_multiplier"
    if not callable(answer):
        if answer is None:
            raise CheckFailed(f"{name}: not yet. the answer is None; did you forget `return`?")
        budget = dict(epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=steps)
        require(None not in budget.values(), name,
                "with a number as the answer, give the budget too: epsilon=..., delta=..., sample_rate=..., steps=...")
        value = as_number(answer, name, "the noise multiplier")
        spent = _noise_multiplier_case(value, name, "", **budget)
        passed(name, f"epsilon {spent:.3f} <= {epsilon} with noise multiplier {value:.3f} ({ACCOUNTANT})")
        return
    results = []
    for number, budget in enumerate(NOISE_CASES, start=1):
        where = (f"case {number} (epsilon {budget['epsilon']:g}, delta {budget['delta']:g}, sample_rate "
                 f"{budget['sample_rate']:.4g}, {budget['steps']} steps): ")
        value = as_number(call_learner(name, answer, **budget), name, "the noise multiplier")
        results.append((value, _noise_multiplier_case(value, name, where, **budget)))
    shown = ", ".join(f"{sigma:.3f} (epsilon {spent:.3f})" for sigma, spent in results)
    passed(name, f"noise multipliers {shown} spend just under each budget, {ACCOUNTANT}")


def check_attack_auc(loss_threshold_auc: Callable[..., Any]) -> None:
    """Check ``loss_threshold_auc(member_losses, non_member_losses)`` against :func:`privacy.attack_metrics`.

    Four cases: random losses, losses with ties (which count one half), two identical sets
    (AUC 0.5) and perfectly separated sets (AUC 1).
    """
    name = "attack_auc"
    g = torch.Generator().manual_seed(0)
    cases = [
        ("random losses", torch.rand(300, generator=g).square() * 2, torch.rand(200, generator=g) * 2),
        ("tied losses", torch.tensor([0.1, 0.5, 0.5, 0.9]), torch.tensor([0.5, 0.7, 0.9])),
        ("identical sets", torch.tensor([0.2, 0.4, 0.6]), torch.tensor([0.2, 0.4, 0.6])),
        ("separated sets", torch.tensor([0.01, 0.02]), torch.tensor([1.0, 2.0, 3.0])),
    ]
    for number, (label, member, non_member) in enumerate(cases, start=1):
        where = f"case {number} ({label})"
        expected = P.attack_metrics(-member, -non_member).auc
        got = as_number(call_learner(name, loss_threshold_auc, member, non_member), name, "the AUC")
        require(not math.isnan(got), name, f"{where}: your AUC is NaN")
        if abs(got - (1 - expected)) < 1e-6 and abs(expected - 0.5) > 1e-6:
            raise CheckFailed(f"{name}: not yet. {where}: your AUC {got:.4f} is 1 - the right one: a LOW loss "
                              "means member, so score = -loss")
        require_close(got, expected, name, case=where, what="the AUC",
                      hint="the AUC is the probability that a random member has a lower loss than a random "
                           "non-member, ties counting one half")
    passed(name, f"loss-threshold AUC matches in {len(cases)} cases, ties included")


def check_epsilon_from_rates(epsilon_from_rates: Callable[..., Any]) -> None:
    """Check ``epsilon_from_rates(fpr, fnr, delta)``, the DP lower bound from one test's error rates."""
    name = "epsilon_from_rates"
    cases = ((0.01, 0.5, 1e-5), (0.2, 0.05, 1e-5), (0.3, 0.3, 0.0), (0.6, 0.6, 0.0), (0.05, 0.1, 0.01))
    for number, (fpr, fnr, delta) in enumerate(cases, start=1):
        bounds = [(1 - delta - fnr) / fpr, (1 - delta - fpr) / fnr]
        expected = max(0.0, max(math.log(b) for b in bounds if b > 0))
        where = f"case {number} (fpr={fpr}, fnr={fnr}, delta={delta})"
        got = as_number(call_learner(name, epsilon_from_rates, fpr, fnr, delta), name, "the bound")
        require(not math.isnan(got), name, f"{where}: your bound is NaN")
        require_close(got, expected, name, case=where, what="the bound",
                      hint="DP forces fpr + e^eps fnr >= 1 - delta and fnr + e^eps fpr >= 1 - delta; solve both "
                           "for eps, take the larger, and never go below 0")
    passed(name, f"all {len(cases)} cases agree")
