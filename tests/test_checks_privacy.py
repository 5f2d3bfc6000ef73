"""trustml_lab.checks.privacy: right answers pass (NumPy ones too); wrong, mutating, None and stub answers fail."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from trustml_lab import checks
from trustml_lab import privacy as P
from trustml_lab.checks import CheckFailed
from trustml_lab.checks import privacy as C


def stub(*args, **kwargs):
    raise NotImplementedError()


def returns_none(*args, **kwargs):
    return None


# --------------------------------------------------------------------------- Laplace noise

def laplace_right(data, *, sensitivity, epsilon, generator=None):
    return P.laplace_mechanism(data, sensitivity=sensitivity, epsilon=epsilon, generator=generator)


def test_laplace_noise_passes_a_right_answer_and_a_numpy_one(capsys):
    C.check_laplace_noise(laplace_right)
    assert "PASS laplace_noise" in capsys.readouterr().out

    def numpy_answer(data, *, sensitivity, epsilon, generator=None):
        return laplace_right(data, sensitivity=sensitivity, epsilon=epsilon, generator=generator).numpy()

    C.check_laplace_noise(numpy_answer)
    assert "PASS laplace_noise" in capsys.readouterr().out


def test_laplace_noise_explains_wrong_answers():
    def gaussian(data, *, sensitivity, epsilon, generator=None):
        return data + torch.normal(0.0, math.sqrt(math.pi / 2) * sensitivity / epsilon, data.shape,
                                   generator=generator, dtype=data.dtype)

    def scale_times_epsilon(data, *, sensitivity, epsilon, generator=None):
        return laplace_right(data, sensitivity=sensitivity, epsilon=1 / epsilon, generator=generator)

    def global_rng(data, *, sensitivity, epsilon, generator=None):
        return laplace_right(data, sensitivity=sensitivity, epsilon=epsilon)

    def noise_only(data, *, sensitivity, epsilon, generator=None):
        return laplace_right(torch.zeros_like(data), sensitivity=sensitivity, epsilon=epsilon, generator=generator)

    def in_place(data, *, sensitivity, epsilon, generator=None):
        return data.add_(laplace_right(torch.zeros_like(data), sensitivity=sensitivity, epsilon=epsilon,
                                       generator=generator))

    with pytest.raises(CheckFailed, match="kurtosis"):
        C.check_laplace_noise(gaussian)
    with pytest.raises(CheckFailed, match=r"case 2 .*sensitivity / epsilon = 4"):
        C.check_laplace_noise(scale_times_epsilon)
    with pytest.raises(CheckFailed, match="generator"):
        C.check_laplace_noise(global_rng)
    with pytest.raises(CheckFailed, match="centred on 0"):
        C.check_laplace_noise(noise_only)
    with pytest.raises(CheckFailed, match="in place"):
        C.check_laplace_noise(in_place)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_laplace_noise(returns_none)
    with pytest.raises(CheckFailed, match="NotImplementedError"):
        C.check_laplace_noise(stub)


# --------------------------------------------------------------------------- private mean

def mean_right(values, *, lower, upper, epsilon, generator=None):
    clipped = values.clamp(lower, upper)
    return P.laplace_mechanism(clipped.mean(), sensitivity=(upper - lower) / len(values), epsilon=epsilon,
                               generator=generator)


def test_private_mean_passes_right_answers_as_tensors_and_numpy_scalars(capsys):
    C.check_private_mean(mean_right)
    assert "PASS private_mean" in capsys.readouterr().out

    def numpy_scalar(values, *, lower, upper, epsilon, generator=None):
        return np.float64(mean_right(values, lower=lower, upper=upper, epsilon=epsilon, generator=generator))

    C.check_private_mean(numpy_scalar)
    assert "PASS private_mean" in capsys.readouterr().out


def test_private_mean_explains_wrong_answers():
    def unclipped(values, *, lower, upper, epsilon, generator=None):
        return P.laplace_mechanism(values.mean(), sensitivity=(upper - lower) / len(values), epsilon=epsilon,
                                   generator=generator)

    def too_little_noise(values, *, lower, upper, epsilon, generator=None):
        return P.laplace_mechanism(values.clamp(lower, upper).mean(), sensitivity=1.0 / len(values),
                                   epsilon=epsilon, generator=generator)

    def clips_in_place(values, *, lower, upper, epsilon, generator=None):
        values.clamp_(lower, upper)
        return mean_right(values, lower=lower, upper=upper, epsilon=epsilon, generator=generator)

    with pytest.raises(CheckFailed, match="Clip first"):
        C.check_private_mean(unclipped)
    with pytest.raises(CheckFailed, match="upper - lower"):
        C.check_private_mean(too_little_noise)
    with pytest.raises(CheckFailed, match="in place"):
        C.check_private_mean(clips_in_place)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_private_mean(returns_none)


# --------------------------------------------------------------------------- clipping

def clip_right(grads, max_grad_norm):
    return P.clip_and_sum(grads, max_grad_norm=max_grad_norm).summed


def test_clip_and_sum_passes_right_answers_and_numpy_ones(capsys):
    C.check_clip_and_sum(clip_right)
    assert "PASS clip_and_sum" in capsys.readouterr().out

    def by_hand(grads, max_grad_norm):  # the notebook's solution
        flat = torch.cat([g.flatten(1) for g in grads.values()], dim=1)
        factors = (max_grad_norm / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
        return {name: np.einsum("b,b...->...", factors.numpy(), g.numpy()) for name, g in grads.items()}

    C.check_clip_and_sum(by_hand)
    assert "PASS clip_and_sum" in capsys.readouterr().out


def test_clip_and_sum_explains_wrong_answers():
    def per_parameter(grads, max_grad_norm):
        return {k: P.clip_and_sum({k: g}, max_grad_norm=max_grad_norm).summed[k] for k, g in grads.items()}

    def unclipped(grads, max_grad_norm):
        return {k: g.sum(dim=0) for k, g in grads.items()}

    def mean_not_sum(grads, max_grad_norm):
        return {k: v / len(next(iter(grads.values()))) for k, v in clip_right(grads, max_grad_norm).items()}

    def no_batch_sum(grads, max_grad_norm):
        return dict(grads)

    def clips_in_place(grads, max_grad_norm):
        result = clip_right(grads, max_grad_norm)
        for g in grads.values():
            g.mul_(0)
        return result

    with pytest.raises(CheckFailed, match="ALL parameters"):
        C.check_clip_and_sum(per_parameter)
    with pytest.raises(CheckFailed, match="unclipped sum"):
        C.check_clip_and_sum(unclipped)
    with pytest.raises(CheckFailed, match=r"case 1, 'weight': the clipped sum is"):
        C.check_clip_and_sum(mean_not_sum)
    with pytest.raises(CheckFailed, match="dimension 0"):
        C.check_clip_and_sum(no_batch_sum)
    with pytest.raises(CheckFailed, match="in place"):
        C.check_clip_and_sum(clips_in_place)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_clip_and_sum(returns_none)
    with pytest.raises(CheckFailed, match="NotImplementedError"):
        C.check_clip_and_sum(stub)


# --------------------------------------------------------------------------- noise multiplier

@functools.lru_cache(maxsize=8)
def right_sigma(epsilon, delta, sample_rate, steps):
    """The notebook's solution: bisection on epsilon_spent (RDP), cached (each step asks the accountant)."""
    low, high = 0.3, 10.3
    for _ in range(14):  # to within 10 / 2^14: far finer than the 0.05 window of epsilon
        middle = (low + high) / 2
        spent = P.epsilon_spent(noise_multiplier=middle, sample_rate=sample_rate, steps=steps, delta=delta)
        low, high = (middle, high) if spent > epsilon else (low, middle)
    return high


def bisect(*, epsilon, delta, sample_rate, steps):
    return right_sigma(epsilon, delta, sample_rate, steps)


def test_noise_multiplier_passes_a_right_function_and_a_numpy_number(capsys):
    C.check_noise_multiplier(bisect)
    out = capsys.readouterr().out
    assert "PASS noise_multiplier" in out and "RDP" in out
    setting = dict(epsilon=2.0, delta=1e-5, sample_rate=1 / 128, steps=384)
    C.check_noise_multiplier(np.float64(bisect(**setting)), **setting)  # the old call, with a number
    assert "PASS noise_multiplier" in capsys.readouterr().out


def test_noise_multiplier_explains_wrong_answers():
    def too_little(**budget):
        return bisect(**budget) / 2

    def too_much(**budget):
        return bisect(**budget) * 2

    def only_the_exercise_budget(**budget):
        return bisect(epsilon=2.0, delta=1e-5, sample_rate=1 / 128, steps=384)

    with pytest.raises(CheckFailed, match=r"case 1 .*read with RDP, Opacus's RDPAccountant.*more noise"):
        C.check_noise_multiplier(too_little)
    with pytest.raises(CheckFailed, match=r"case 1 .*less noise"):
        C.check_noise_multiplier(too_much)
    with pytest.raises(CheckFailed, match=r"case 2 \(epsilon 1"):
        C.check_noise_multiplier(only_the_exercise_budget)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_noise_multiplier(returns_none)
    with pytest.raises(CheckFailed, match="None"):
        C.check_noise_multiplier(None, epsilon=2.0, delta=1e-5, sample_rate=1 / 128, steps=384)
    with pytest.raises(CheckFailed, match="give the budget"):
        C.check_noise_multiplier(1.0)
    with pytest.raises(CheckFailed, match="far more noise"):
        C.check_noise_multiplier(1e9, epsilon=2.0, delta=1e-5, sample_rate=1 / 128, steps=384)


# --------------------------------------------------------------------------- attack AUC

def auc_right(member_losses, non_member_losses):
    return roc_auc_score(np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))],
                         -np.r_[member_losses.numpy(), non_member_losses.numpy()])


def test_attack_auc_passes_right_answers_and_numpy_ones(capsys):
    C.check_attack_auc(auc_right)
    assert "PASS attack_auc" in capsys.readouterr().out

    def pairs_as_0d_array(member_losses, non_member_losses):  # the notebook's solution, as a 0-d array
        lower = (member_losses[:, None] < non_member_losses[None, :]).double()
        ties = (member_losses[:, None] == non_member_losses[None, :]).double()
        return np.asarray((lower + 0.5 * ties).mean().item())

    C.check_attack_auc(pairs_as_0d_array)
    assert "PASS attack_auc" in capsys.readouterr().out


def test_attack_auc_explains_wrong_answers():
    def flipped(member_losses, non_member_losses):
        return 1 - auc_right(member_losses, non_member_losses)

    def ties_ignored(member_losses, non_member_losses):
        return float((member_losses[:, None] < non_member_losses[None, :]).double().mean())

    def sorts_in_place(member_losses, non_member_losses):
        member_losses.copy_(member_losses.sort().values)
        return auc_right(member_losses, non_member_losses)

    with pytest.raises(CheckFailed, match="-loss"):
        C.check_attack_auc(flipped)
    with pytest.raises(CheckFailed, match=r"case 2 \(tied losses\): the AUC is"):
        C.check_attack_auc(ties_ignored)
    with pytest.raises(CheckFailed, match="in place"):
        C.check_attack_auc(sorts_in_place)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_attack_auc(returns_none)
    with pytest.raises(CheckFailed, match="one number"):
        C.check_attack_auc(lambda m, n: [0.5])


# --------------------------------------------------------------------------- epsilon from rates

def rates_right(fpr, fnr, delta):
    bounds = [math.log(n / d) for n, d in ((1 - delta - fnr, fpr), (1 - delta - fpr, fnr)) if n > 0]
    return max([0.0] + bounds)


def test_epsilon_from_rates_passes_right_answers_and_numpy_ones(capsys):
    C.check_epsilon_from_rates(rates_right)
    assert "PASS epsilon_from_rates" in capsys.readouterr().out
    C.check_epsilon_from_rates(lambda fpr, fnr, delta: np.float32(rates_right(fpr, fnr, delta)))
    assert "PASS epsilon_from_rates" in capsys.readouterr().out


def test_epsilon_from_rates_explains_wrong_answers():
    def one_sided(fpr, fnr, delta):
        return math.log((1 - delta - fnr) / fpr)

    def not_floored(fpr, fnr, delta):
        return max(math.log((1 - delta - fnr) / fpr), math.log((1 - delta - fpr) / fnr))

    def nan_for_negative(fpr, fnr, delta):
        return float("nan") if fpr + fnr > 1 else rates_right(fpr, fnr, delta)

    with pytest.raises(CheckFailed, match=r"case 2 \(fpr=0.2, fnr=0.05.*take the larger"):
        C.check_epsilon_from_rates(one_sided)
    with pytest.raises(CheckFailed, match=r"case 4 .*never go below 0"):
        C.check_epsilon_from_rates(not_floored)
    with pytest.raises(CheckFailed, match=r"case 4 .*NaN"):
        C.check_epsilon_from_rates(nan_for_negative)
    with pytest.raises(CheckFailed, match="returned None"):
        C.check_epsilon_from_rates(returns_none)
    with pytest.raises(CheckFailed, match="NotImplementedError"):
        C.check_epsilon_from_rates(stub)


def test_the_checks_are_reachable_from_the_package():
    assert checks.privacy.check_attack_auc is C.check_attack_auc
    assert set(C.__all__) == {name for name in dir(C) if name.startswith("check_")}
