"""trustml_lab.robustness against torchattacks, SciPy, closed forms and a common FGSM training loop.

Bad inputs of every public name are in ``tests/api_tables/robustness.py`` (run by
``tests/test_bad_inputs.py``); the self-checks of chapter 2 in ``tests/test_checks_robustness.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks  # a test dependency (Makefile: pip install --no-deps); never skipped
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binom, binomtest, norm
from torch import nn

from trustml_lab import robustness as R
from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, load_reference

SETTINGS = settings(max_examples=15, deadline=None)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def mnist():
    """The reference CNN and 128 test images (the chapter's real data)."""
    _, x_test, _, y_test = load_mnist_split()
    return load_reference(SmallCNN(), "mnist_cnn.safetensors"), x_test[:128], y_test[:128]


def random_problem(seed: int, n: int, classes: int = 3):
    """A small random conv-ReLU-linear model, n inputs of shape (1, 3, 3) in [0, 1], labels."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, classes))
    x = torch.rand(n, 1, 3, 3, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return model.eval(), x, y


def torchattacks_run(attack, x, y, *, targeted=False):
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(x, y)


def correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


# --------------------------------------------------------------------------- fgsm, pgd = torchattacks

@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12), eps=st.floats(0.0, 0.5), targeted=st.booleans())
def test_fgsm_equals_torchattacks_on_random_inputs(seed, n, eps, targeted):
    model, x, y = random_problem(seed, n)
    ours = R.fgsm(model, x, y, eps=eps, targeted=targeted)
    reference = torchattacks_run(torchattacks.FGSM(model, eps=eps), x, y, targeted=targeted)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_torchattacks_on_mnist(mnist, targeted):
    model, x, y = mnist
    labels = (y + 1) % 10 if targeted else y
    ours = R.fgsm(model, x, labels, eps=0.1, targeted=targeted)
    reference = torchattacks_run(torchattacks.FGSM(model, eps=0.1), x, labels, targeted=targeted)
    assert torch.equal(ours, reference)


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12), eps=st.floats(0.01, 0.5),
       steps=st.integers(1, 6), norm_name=st.sampled_from(["linf", "l2"]), targeted=st.booleans())
def test_pgd_equals_torchattacks_on_random_inputs(seed, n, eps, steps, norm_name, targeted):
    model, x, y = random_problem(seed, n)
    alpha = eps / 3
    ours = R.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm_name,
                 random_start=False, targeted=targeted)
    cls = torchattacks.PGD if norm_name == "linf" else torchattacks.PGDL2
    reference = torchattacks_run(cls(model, eps=eps, alpha=alpha, steps=steps, random_start=False),
                                 x, y, targeted=targeted)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm_name, eps, alpha", [("linf", 0.1, 0.02), ("l2", 1.5, 0.3)])
def test_pgd_equals_torchattacks_on_mnist(mnist, norm_name, eps, alpha):
    model, x, y = mnist
    ours = R.pgd(model, x, y, eps=eps, alpha=alpha, steps=10, norm=norm_name, random_start=False)
    cls = torchattacks.PGD if norm_name == "linf" else torchattacks.PGDL2
    reference = cls(model, eps=eps, alpha=alpha, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_inputs_of_another_precision_are_converted_to_the_models_dtype(mnist):
    """float64 and float16 images into the float32 CNN: converted at the edge, no dtype error."""
    model, x, y = mnist
    x = x[:16]
    reference = R.fgsm(model, x, y[:16], eps=0.1)
    from_double = R.fgsm(model, x.double(), y[:16], eps=0.1)
    assert from_double.dtype == torch.float32 and torch.equal(from_double, reference)
    from_half = R.pgd(model, x.half(), y[:16], eps=0.1, alpha=0.05, steps=2, random_start=False)
    expected = R.pgd(model, x.half().float(), y[:16], eps=0.1, alpha=0.05, steps=2, random_start=False)
    assert from_half.dtype == torch.float32 and torch.equal(from_half, expected)
    labels_as_floats = R.fgsm(model, x, y[:16].double(), eps=0.1)  # whole-valued float labels are labels
    assert torch.equal(labels_as_floats, reference)


# --------------------------------------------------------------------------- properties

@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 10), eps=st.floats(0.0, 2.0),
       norm_name=st.sampled_from(["linf", "l2"]), restarts=st.integers(1, 3),
       random_start=st.booleans(), targeted=st.booleans())
def test_pgd_stays_in_the_ball_and_the_clamp_range(seed, n, eps, norm_name, restarts, random_start, targeted):
    model, x, y = random_problem(seed, n)
    x_adv = R.pgd(model, x, y, eps=eps, alpha=max(eps, 0.01) / 4, steps=3, norm=norm_name,
                  restarts=restarts, random_start=random_start, targeted=targeted,
                  generator=torch.Generator().manual_seed(seed))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm_name == "linf" else delta.norm(dim=1)
    assert x_adv.shape == x.shape
    assert bool((size <= eps * (1 + 1e-5) + 1e-6).all())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 10), eps=st.floats(1e-4, 1e-3))
def test_targeted_fgsm_moves_toward_the_target(seed, n, eps):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 4)).eval()
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(n, 1, 2, 4, generator=g)  # interior: no clamping
    target = torch.randint(0, 4, (n,), generator=g)
    x_adv = R.fgsm(model, x, target, eps=eps, targeted=True)
    with torch.no_grad():
        before = F.cross_entropy(model(x), target, reduction="none")
        after = F.cross_entropy(model(x_adv), target, reduction="none")
    assert bool((after <= before + 1e-6).all())


def test_targeted_pgd_reaches_the_target_on_mnist(mnist):
    model, x, y = mnist
    target = (y + 1) % 10
    x_adv = R.pgd(model, x, target, eps=0.3, alpha=0.05, steps=20, targeted=True,
                  generator=torch.Generator().manual_seed(0))
    assert float(correct(model, x, target).float().mean()) < 0.05
    assert float(correct(model, x_adv, target).float().mean()) > 0.9


def test_restarts_keep_the_worst_case_per_example(mnist):
    model, x, y = mnist
    kwargs = dict(eps=0.08, alpha=0.02, steps=5)
    best = R.pgd(model, x, y, restarts=3, generator=torch.Generator().manual_seed(0), **kwargs)
    # the stacked restarts draw their starts from one stream: three single runs replay them
    g = torch.Generator().manual_seed(0)
    singles = torch.stack([R.pgd(model, x, y, generator=g, **kwargs) for _ in range(3)])
    with torch.no_grad():
        broken = torch.stack([model(s).argmax(1) != y for s in singles])
        losses = torch.stack([F.cross_entropy(model(s), y, reduction="none") for s in singles])
        best_broken = model(best).argmax(1) != y
        best_loss = F.cross_entropy(model(best), y, reduction="none")
    assert torch.equal(best_broken, broken.any(dim=0))
    standing = ~broken.any(dim=0)
    torch.testing.assert_close(best_loss[standing], losses.amax(dim=0)[standing])
    assert 0 < int(broken.any(dim=0).sum()) and int(broken.sum(dim=0).min()) == 0  # restarts matter


# --------------------------------------------------------------------------- robust_accuracy

def chained(runs: list[torch.Tensor], clean: torch.Tensor) -> list[float]:
    """Share of examples correct without attack and in every run up to each one: the curve
    robust_accuracy defines (a misclassified example counts as broken at every radius)."""
    standing = clean.clone()
    out = []
    for run in runs:
        standing = standing & run
        out.append(float(standing.double().mean()))
    return out


def test_robust_accuracy_equals_per_eps_torchattacks_runs_chained(mnist):
    """Each point equals the share of examples that no torchattacks PGD run at a radius
    up to it breaks, and is at most the accuracy of the separate run at that radius: the
    work reuse changes the cost, not the answer."""
    model, x, y = mnist
    radii = [0.0, 0.03, 0.06, 0.1]  # five steps of 0.02 reach 0.1
    attack = functools.partial(R.pgd, alpha=0.02, steps=5, random_start=False)
    curve = R.robust_accuracy(model, x, y, attack=attack, eps=radii[::-1], norm="linf", internal_batch_size=50)
    assert curve.eps == tuple(radii)
    runs = [correct(model, x if r == 0 else torchattacks.PGD(model, eps=r, alpha=0.02, steps=5,
                                                             random_start=False)(x, y), y) for r in radii]
    separate = [float(run.double().mean()) for run in runs]
    np.testing.assert_allclose(curve.accuracy, chained(runs, correct(model, x, y)), rtol=0, atol=1e-12)
    assert all(c <= s + 1e-12 for c, s in zip(curve.accuracy, separate))
    assert len(set(curve.accuracy)) == len(radii)  # the radii matter: the comparison is not vacuous


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 20), size=st.integers(1, 8),
       radii=st.lists(st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.2, 0.4]), min_size=1, max_size=5))
def test_robust_accuracy_equals_chained_torchattacks_fgsm_runs_at_any_chunk_size(seed, n, size, radii):
    """An independent computation: torchattacks' FGSM once per radius on every example."""
    model, x, y = random_problem(seed, n)
    curve = R.robust_accuracy(model, x, y, attack=R.fgsm, eps=radii, norm="linf", internal_batch_size=size)
    assert curve.eps == tuple(sorted(set(radii)))
    runs = [correct(model, x if r == 0 else torchattacks.FGSM(model, eps=r)(x, y), y) for r in curve.eps]
    assert list(curve.accuracy) == pytest.approx(chained(runs, correct(model, x, y)), abs=1e-12)


def test_accuracy_curve_still_reads_like_the_dict_robust_accuracy_used_to_return(mnist):
    model, x, y = mnist
    curve = R.robust_accuracy(model, x[:32], y[:32], attack=R.fgsm, eps=np.array([0.1, 0.0, 0.1]))
    assert isinstance(curve, R.AccuracyCurve) and curve.eps == (0.0, 0.1)  # sorted, duplicates merged
    as_dict = dict(zip(curve.eps, curve.accuracy))
    assert curve == as_dict and dict(curve) == as_dict and len(curve) == 2
    assert curve[0.1] == as_dict[0.1] and list(curve) == [0.0, 0.1] and 0.1 in curve and 0.3 not in curve
    assert list(curve.values()) == list(curve.accuracy) and list(curve.items()) == list(as_dict.items())
    with pytest.raises(KeyError):
        curve[0.3]
    with pytest.raises(dataclasses.FrozenInstanceError):
        curve.eps = (1.0,)


def test_robust_accuracy_keeps_the_old_batch_size_keyword_with_a_warning(mnist):
    model, x, y = mnist
    new = R.robust_accuracy(model, x[:20], y[:20], attack=R.fgsm, eps=[0.1], internal_batch_size=7)
    with pytest.warns(FutureWarning, match="internal_batch_size"):
        old = R.robust_accuracy(model, x[:20], y[:20], attack=R.fgsm, eps=[0.1], batch_size=7)
    assert old == new
    with pytest.raises(TypeError, match="both"):
        R.robust_accuracy(model, x[:20], y[:20], attack=R.fgsm, eps=[0.1], batch_size=7, internal_batch_size=7)


def test_robust_accuracy_checks_the_budget_only_when_the_norm_is_known(mnist):
    """Without ``norm`` the budget is the attack's responsibility (documented); with it, an
    attack that exceeds its radius is refused instead of reporting a too-low accuracy."""
    model, x, y = mnist

    def cheating(model, x, y, *, eps):
        return R.fgsm(model, x, y, eps=2 * eps)

    honest = R.robust_accuracy(model, x, y, attack=R.fgsm, eps=[0.1])
    unchecked = R.robust_accuracy(model, x, y, attack=cheating, eps=[0.1])
    assert unchecked[0.1] < honest[0.1]
    with pytest.raises(ValueError, match=r"^attack: .*linf size 0\.2"):
        R.robust_accuracy(model, x, y, attack=cheating, eps=[0.1], norm="linf")
    l2 = functools.partial(R.pgd, alpha=0.5, steps=5, norm="l2", generator=torch.Generator().manual_seed(0))
    l2_curve = R.robust_accuracy(model, x, y, attack=l2, eps=[0.0, 2.0], norm="l2")
    assert l2_curve[2.0] < l2_curve[0.0]


# --------------------------------------------------------------------------- sanity checks

class ScaledLogits(nn.Module):
    """Multiplies the logits by a huge factor: softmax saturates, input gradients vanish."""

    def __init__(self, model: nn.Module, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


class NoisyInput(nn.Module):
    """A randomized "defence": Gaussian noise on every input, so one input gets different answers."""

    def __init__(self, model: nn.Module, sigma: float):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x + self.sigma * torch.randn_like(x))


class GridDetector(nn.Module):
    """A discontinuous "defence": an input off the 1/255 pixel grid is answered with class 0."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        on_grid = ((x * 255 - (x * 255).round()).abs().flatten(1).amax(dim=1) < 1e-3)[:, None]
        rejected = F.one_hot(torch.zeros(len(x), dtype=torch.long), 10).to(x.dtype) * 100
        return torch.where(on_grid, self.model(x), rejected)


def weak_at_large_eps(model, x, y, *, eps, alpha, **kwargs):
    """A broken attack whose step does not grow with the radius beyond 0.15."""
    return R.pgd(model, x, y, eps=eps, alpha=alpha if eps < 0.15 else alpha * 1e-3, **kwargs)


def steps_capped(model, x, y, *, steps, **kwargs):
    """A broken attack that runs one step when asked for more than 5."""
    return R.pgd(model, x, y, steps=1 if steps > 5 else steps, **kwargs)


def restarts_return_the_input(model, x, y, *, restarts, **kwargs):
    """A broken restart loop that returns the clean images."""
    return x.clone() if restarts > 1 else R.pgd(model, x, y, restarts=1, **kwargs)


def descends_the_loss(model, x, y, *, targeted, **kwargs):
    """A broken attack with the sign of its step flipped."""
    return R.pgd(model, x, y, targeted=not targeted, **kwargs)


def ignores_targeted(model, x, y, *, targeted, **kwargs):
    """A broken attack that is always untargeted."""
    return R.pgd(model, x, y, targeted=False, **kwargs)


def no_projection(model, x, y, *, eps, **kwargs):
    """A broken attack that projects onto twice its radius."""
    return R.pgd(model, x, y, eps=2 * eps, **kwargs)


SANITY = dict(eps=[0.0, 0.1, 0.2], alpha=0.05, steps=5, restarts=2)
#: the position of each check in the report
CHECK = {"tiny eps": 0, "rise": 1, "more steps": 2, "restarts": 3, "fgsm": 4, "unbounded": 5, "targeted": 6,
         "budget": 7}


def sanity_report(model, x, y, attack=None):
    return R.attack_sanity_checks(model, x, y, attack=attack, generator=torch.Generator().manual_seed(0), **SANITY)


@pytest.fixture(scope="module")
def honest(mnist):
    model, x, y = mnist
    return sanity_report(model, x[:32], y[:32])


def test_sanity_checks_pass_on_the_reference_cnn(honest):
    assert honest.passed, str(honest)
    assert len(honest.checks) == len(CHECK) and honest.failed == ()
    assert honest.checks[0].name == "tiny eps=0.002 keeps clean results"
    assert honest[honest.checks[5].name] is honest.checks[5]


@pytest.mark.parametrize("check, wrap, attack", [
    ("tiny eps", lambda m: NoisyInput(m, 0.6), None),
    ("tiny eps", GridDetector, None),
    ("rise", None, weak_at_large_eps),
    ("more steps", None, steps_capped),
    ("restarts", None, restarts_return_the_input),
    ("fgsm", None, descends_the_loss),
    ("targeted", None, ignores_targeted),
    ("budget", None, no_projection),
], ids=["randomized model", "discontinuous model", "attack weak at large eps", "steps capped",
        "restarts return the input", "attack descends the loss", "targeted ignored",
        "no projection"])
def test_each_sanity_check_fails_for_a_model_or_attack_built_to_fail_it(mnist, honest, check, wrap, attack):
    model, x, y = mnist
    report = sanity_report(wrap(model) if wrap else model, x[:32], y[:32], attack)
    index = CHECK[check]
    assert honest.checks[index].passed  # it is this model or attack that fails it
    assert not report.checks[index].passed, str(report)
    assert not report.passed and report.checks[index].name in report.failed


def test_gradient_masking_keeps_the_decisions_and_fails_only_the_unbounded_attack(mnist, honest):
    model, x, y = mnist
    report = sanity_report(ScaledLogits(model, 1e4), x[:32], y[:32])
    assert honest.checks[CHECK["unbounded"]].passed
    assert report.failed == (report.checks[CHECK["unbounded"]].name,)
    assert torch.equal(correct(ScaledLogits(model, 1e4), x, y), correct(model, x, y))


# --------------------------------------------------------------------------- adversarial training

def common_fgsm_training_loop(model, batches, optimizer, epsilon):
    """The common FGSM adversarial-training recipe (plain FGSM examples, then a step on them)."""
    model.train()
    for data, target in batches:
        data = data.clone()
        data.requires_grad = True
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        perturbed_data = torch.clamp(data + epsilon * data.grad.data.sign(), 0, 1)
        optimizer.zero_grad()
        loss_adv = F.cross_entropy(model(perturbed_data), target)
        loss_adv.backward()
        optimizer.step()


def test_fit_adversarial_fgsm_reproduces_the_common_training_loop(mnist):
    _, x, y = mnist
    torch.manual_seed(0)
    ours = SmallCNN()
    theirs = SmallCNN()
    theirs.load_state_dict(ours.state_dict())
    R.fit_adversarial(ours, x, y, method="fgsm", eps=0.1, epochs=1, batch_size=32, lr=1e-3,
                      generator=torch.Generator().manual_seed(3), progress=False)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    common_fgsm_training_loop(theirs, [(x[i], y[i]) for i in order.split(32)],
                              torch.optim.Adam(theirs.parameters(), lr=1e-3), 0.1)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd"])
def test_fit_adversarial_lowers_the_adversarial_loss(method):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.rand(96, 1, 2, 4, generator=g)
    y = (x.flatten(1)[:, :4].sum(1) > x.flatten(1)[:, 4:].sum(1)).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    losses = R.fit_adversarial(model, x, y, method=method, eps=0.02, epochs=8, batch_size=32, lr=0.05,
                               steps=3, generator=g, progress=False)
    assert len(losses) == 8 and losses[-1] < losses[0]


def test_fit_adversarial_restores_the_mode_of_every_submodule():
    """It trains in train mode and puts back what it found: a mixed model stays mixed."""
    x, y = torch.rand(16, 1, 2, 4), torch.randint(0, 2, (16,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    for training in (True, False):
        model.train(training)
        model[2].train(not training)
        R.fit_adversarial(model, x, y, eps=0.05, epochs=1, batch_size=8, lr=0.01, progress=False)
        assert model.training == training and model[2].training == (not training)


# --------------------------------------------------------------------------- inputs with NaN or infinity

ENTRY_POINTS = {
    "fgsm": lambda m, x, y: R.fgsm(m, x, y, eps=0.1),
    "pgd": lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.05, steps=1),
    "robust_accuracy": lambda m, x, y: R.robust_accuracy(m, x, y, attack=R.fgsm, eps=[0.1]),
    "attack_sanity_checks": lambda m, x, y: R.attack_sanity_checks(m, x, y, eps=[0.1], alpha=0.05, steps=1),
    "fit_adversarial": lambda m, x, y: R.fit_adversarial(m, x, y, eps=0.1, epochs=1, batch_size=4, lr=0.1,
                                                         progress=False),
    "certify": lambda m, x, y: R.certify(m, x, sigma=0.25, n0=5, n=20, alpha=0.1),
    "smoothed_predict": lambda m, x, y: R.smoothed_predict(m, x, sigma=0.25, n=20, alpha=0.1),
}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_refuses_non_finite_images_naming_x(entry, value):
    """Before, NaN passed the clamp-range check: certify certified NaN images, attacks returned NaN."""
    model, x, y = random_problem(0, 6)
    x = x.clone()
    x[2, 0, 1, 1] = value
    with pytest.raises(ValueError, match=r"^x: expected finite values"):
        ENTRY_POINTS[entry](model, x, y)


# --------------------------------------------------------------------------- randomized smoothing

class LinearBinary(nn.Module):
    """Class 1 where w.x + b > 0: logits (0, w.x + b)."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], dim=1)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), sigma=st.sampled_from([0.25, 0.5, 1.0]))
def test_certify_matches_the_closed_form_radius_of_a_linear_classifier(seed, sigma):
    """For f(x) = 1[w.x + b > 0], p_A = Phi(|w.x + b| / (sigma |w|)) exactly, so the
    certified radius tends to the distance to the hyperplane (Cohen et al., Example 1)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, generator=g)
    model = LinearBinary(w, 0.3)
    x = torch.randn(12, 5, generator=g)
    n, alpha = 20_000, 1e-6  # a bound that fails with probability 1e-6 per example
    cert = R.certify(model, x, sigma=sigma, n0=100, n=n, alpha=alpha, internal_batch_size=40_000, generator=g)
    with torch.no_grad():
        score = x @ w + 0.3
    distance = (score.abs() / w.norm()).double()
    p_exact = torch.as_tensor(norm.cdf(distance.numpy() / sigma))
    # the radius from the count's 1e-6 quantile, with SciPy's Clopper-Pearson bound
    k_low = binom.ppf(1e-6, n, p_exact.numpy())
    p_low = beta.ppf(alpha, np.maximum(k_low, 1), n - k_low + 1)
    lowest = sigma * torch.as_tensor(norm.ppf(np.maximum(p_low, 0.5)))
    certified = cert.prediction >= 0
    assert torch.equal(cert.prediction[certified], (score[certified] > 0).long())
    assert bool((cert.radius[certified] <= distance[certified] + 1e-9).all())
    assert bool((cert.radius[certified] >= lowest[certified] - 1e-9).all())
    assert bool(certified[distance > 0.5 * sigma].all())  # p_A >= 0.69: n0 = 100 picks it, n = 20k certifies
    assert bool((cert.radius[~certified] == 0).all())


def binomial_error(rate: float, trials: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / trials)


def test_certify_is_wrong_at_most_alpha_of_the_time_on_a_linear_classifier():
    """Cohen et al.'s guarantee, by simulation where the truth is known: for a linear
    classifier the smoothed classifier's exact robust radius is the distance d to the
    hyperplane. Certifying 2,000 independent copies of a point with p_A = 0.8, the share of
    certificates that name the wrong class or a radius above d is at most alpha (within
    three binomial standard errors)."""
    sigma, p_a, alpha, copies = 0.5, 0.8, 0.1, 2000
    w = torch.tensor([3.0, 4.0, 0.0])
    d = sigma * float(norm.ppf(p_a))
    x = (w / w.norm() * d).repeat(copies, 1)  # w.x = 5 d: distance d, class 1
    cert = R.certify(LinearBinary(w, 0.0), x, sigma=sigma, n0=20, n=100, alpha=alpha,
                     internal_batch_size=40_000, generator=torch.Generator().manual_seed(0))
    certified = cert.prediction >= 0
    wrong = certified & ((cert.prediction != 1) | (cert.radius > d + 1e-9))
    rate = float(wrong.double().mean())
    assert rate <= alpha + binomial_error(alpha, copies)
    assert 0.5 < float(certified.double().mean())  # the guarantee is not met by abstaining


def test_smoothed_predict_returns_the_wrong_class_at_most_alpha_of_the_time():
    """Cohen et al.'s PREDICT guarantee, by simulation: with p_A = 0.53 (the smoothed class
    is 1 but barely), the share of 2,000 independent copies answered 0 is at most alpha."""
    sigma, alpha, copies = 0.5, 0.2, 2000
    w = torch.tensor([1.0, 0.0])
    x = torch.tensor([[sigma * float(norm.ppf(0.53)), 0.0]]).repeat(copies, 1)
    predicted = R.smoothed_predict(LinearBinary(w, 0.0), x, sigma=sigma, n=100, alpha=alpha,
                                   internal_batch_size=50_000, generator=torch.Generator().manual_seed(0))
    rate = float((predicted == 0).double().mean())
    assert rate <= alpha + binomial_error(alpha, copies)
    assert float((predicted == 1).double().mean()) > rate  # it does answer, and mostly right


@SETTINGS
@given(k=st.integers(0, 500), extra=st.integers(0, 500), alpha=st.floats(1e-4, 0.2))
def test_clopper_pearson_lower_equals_scipy(k, extra, alpha):
    n = max(k + extra, 1)
    k = min(k, n)
    ours = float(R.clopper_pearson_lower(torch.tensor([k]), n, alpha=alpha)[0])
    reference = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert ours == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_clopper_pearson_lower_holds_at_its_level(p, alpha):
    """Over 20,000 binomial draws with known p, the bound exceeds p at most alpha of the time."""
    draws = 20_000
    counts = torch.from_numpy(np.random.default_rng(0).binomial(50, p, size=draws))
    bound = R.clopper_pearson_lower(counts, 50, alpha=alpha)
    assert bound.dtype == torch.float64 and bound.shape == (draws,)
    assert float((bound > p).double().mean()) <= alpha + binomial_error(alpha, draws)


def test_smoothed_predict_abstains_exactly_where_scipys_binomial_test_does(mnist):
    model, x, _ = mnist
    kwargs = dict(sigma=0.75, n=60, internal_batch_size=500)
    predicted = R.smoothed_predict(model, x[:48], alpha=0.01, generator=torch.Generator().manual_seed(0), **kwargs)
    counts = R._noise_counts(model, x[:48], sigma=0.75, num=60, internal_batch_size=500,
                             generator=torch.Generator().manual_seed(0))
    top2 = counts.topk(2, dim=1)
    p_values = np.array([binomtest(int(a), int(a + b), 0.5).pvalue for a, b in top2.values.tolist()])
    expected = torch.where(torch.as_tensor(p_values <= 0.01), top2.indices[:, 0], -1)
    assert torch.equal(predicted, expected)
    assert 0 < int((predicted == -1).sum()) < len(predicted)  # both outcomes occur


def test_certify_on_mnist_is_reproducible_and_consistent(mnist):
    model, x, y = mnist
    run = functools.partial(R.certify, model, sigma=0.25, n0=20, n=200, alpha=0.001, internal_batch_size=1000)
    first = run(x[:16], generator=torch.Generator().manual_seed(0))
    second = run(x[:16].double(), generator=torch.Generator().manual_seed(0))  # converted to float32
    assert torch.equal(first.prediction, second.prediction) and torch.equal(first.radius, second.radius)
    certified = first.prediction >= 0
    assert float((first.prediction[certified] == y[:16][certified]).double().mean()) > 0.9
    expected = 0.25 * torch.as_tensor(norm.ppf(first.p_lower[certified].numpy()))
    torch.testing.assert_close(first.radius[certified], expected)


@pytest.mark.parametrize("function", ["certify", "smoothed_predict"])
def test_smoothing_keeps_the_old_batch_size_keyword_with_a_warning(mnist, function):
    model, x, _ = mnist
    kwargs = dict(sigma=0.25, n=30, alpha=0.01, **({"n0": 5} if function == "certify" else {}))
    call = getattr(R, function)
    new = call(model, x[:8], internal_batch_size=64, generator=torch.Generator().manual_seed(0), **kwargs)
    with pytest.warns(FutureWarning, match="'batch_size' is renamed 'internal_batch_size'"):
        old = call(model, x[:8], batch_size=64, generator=torch.Generator().manual_seed(0), **kwargs)
    same = (torch.equal(old.radius, new.radius) and torch.equal(old.prediction, new.prediction)) \
        if function == "certify" else torch.equal(old, new)
    assert same


def test_the_chunk_size_of_smoothing_does_not_change_the_counts(mnist):
    model, x, _ = mnist
    counts = [R._noise_counts(model, x[:6], sigma=0.5, num=40, internal_batch_size=size,
                              generator=torch.Generator().manual_seed(0)) for size in (240, 7)]
    assert torch.equal(counts[0], counts[1]) and int(counts[0].sum()) == 6 * 40


def test_attacks_accept_numpy_inputs_and_restore_the_model_mode():
    model, x, y = random_problem(0, 4)
    model.train()
    x_adv = R.pgd(model, x.numpy(), y.numpy(), eps=0.1, alpha=0.05, steps=2,
                  generator=torch.Generator().manual_seed(0))
    assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape and model.training


def test_certified_accuracy_counts_right_and_far_enough(mnist):
    model, x, y = mnist
    cert = R.certify(model, x[:32], sigma=0.25, n0=10, n=100, alpha=0.01, internal_batch_size=1600,
                     generator=torch.Generator().manual_seed(0))
    radii = [0.0, 0.1, 0.3, 10.0]
    got = R.certified_accuracy(cert, y[:32], radii=radii)
    prediction, radius = cert.prediction.numpy(), cert.radius.numpy()
    expected = [np.mean((prediction == y[:32].numpy()) & (radius >= r)) for r in radii]
    np.testing.assert_allclose(got.numpy(), expected)
    assert float(got[-1]) == 0.0 and float(got[0]) > 0.5
    np.testing.assert_allclose(R.certified_accuracy(cert, y[:32], radii=np.array(radii)).numpy(), expected)
