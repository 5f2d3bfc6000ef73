"""trustml_lab.robustness against torchattacks, SciPy, closed forms and the seeds' code."""

from __future__ import annotations

import functools

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
    with torch.no_grad():
        assert float((model(x).argmax(1) == target).float().mean()) < 0.05
        assert float((model(x_adv).argmax(1) == target).float().mean()) > 0.9


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

def test_robust_accuracy_equals_per_eps_torchattacks_runs_chained(mnist):
    """Each point equals the share of examples that no torchattacks PGD run at a radius
    up to it breaks: the work reuse changes the cost, not the answer."""
    model, x, y = mnist
    radii = [0.0, 0.05, 0.1, 0.15]
    attack = functools.partial(R.pgd, alpha=0.02, steps=5, random_start=False)
    curve = R.robust_accuracy(model, x, y, attack=attack, eps=radii[::-1], batch_size=50)
    assert list(curve) == radii
    standing = torch.ones(len(x), dtype=torch.bool)
    for radius in radii:
        x_adv = x if radius == 0 else torchattacks.PGD(model, eps=radius, alpha=0.02, steps=5,
                                                       random_start=False)(x, y)
        with torch.no_grad():
            correct = model(x_adv).argmax(1) == y
        assert curve[radius] <= float(correct.double().mean())  # never above a separate run
        standing &= correct
        assert curve[radius] == pytest.approx(float(standing.double().mean()), abs=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 20), batch_size=st.integers(1, 8))
def test_robust_accuracy_starts_at_clean_accuracy_and_never_rises(seed, n, batch_size):
    model, x, y = random_problem(seed, n)
    curve = R.robust_accuracy(model, x, y, attack=R.fgsm, eps=[0.2, 0.0, 0.05], batch_size=batch_size)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).double().mean())
    values = list(curve.values())
    assert values[0] == pytest.approx(clean)
    assert values == sorted(values, reverse=True)


# --------------------------------------------------------------------------- sanity checks

class ScaledLogits(nn.Module):
    """Multiplies the logits by a huge factor: softmax saturates, input gradients vanish."""

    def __init__(self, model: nn.Module, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


def test_sanity_checks_pass_on_the_reference_cnn_and_catch_gradient_masking(mnist):
    model, x, y = mnist
    kwargs = dict(eps=[0.0, 0.1, 0.2], alpha=0.05, steps=5, restarts=2)
    honest = R.attack_sanity_checks(model, x[:64], y[:64], generator=torch.Generator().manual_seed(0), **kwargs)
    assert honest.passed, str(honest)
    masked = R.attack_sanity_checks(ScaledLogits(model, 1e4), x[:64], y[:64],
                                    generator=torch.Generator().manual_seed(0), **kwargs)
    assert not masked.passed
    verdicts = {c.name: c.passed for c in masked.checks}
    assert verdicts["eps=0 gives clean accuracy"] and not verdicts["accuracy at eps=1"]


# --------------------------------------------------------------------------- adversarial training

def seeds_train_adversarial(model, batches, optimizer, epsilon):
    """The seeds' ``train_adversarial`` (plain FGSM examples, then a step on them), on CPU."""
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


def test_fit_adversarial_fgsm_reproduces_the_seeds_training_loop(mnist):
    _, x, y = mnist
    torch.manual_seed(0)
    ours = SmallCNN()
    theirs = SmallCNN()
    theirs.load_state_dict(ours.state_dict())
    R.fit_adversarial(ours, x, y, method="fgsm", eps=0.1, epochs=1, batch_size=32, lr=1e-3,
                      generator=torch.Generator().manual_seed(3), progress=False)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    seeds_train_adversarial(theirs, [(x[i], y[i]) for i in order.split(32)],
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
    assert len(losses) == 8 and losses[-1] < losses[0] and model.training  # fit restores the mode it found


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
    cert = R.certify(model, x, sigma=sigma, n0=100, n=n, alpha=alpha, batch_size=40_000, generator=g)
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


@SETTINGS
@given(k=st.integers(0, 500), extra=st.integers(0, 500), alpha=st.floats(1e-4, 0.2))
def test_clopper_pearson_lower_equals_scipy(k, extra, alpha):
    n = max(k + extra, 1)
    k = min(k, n)
    ours = float(R.clopper_pearson_lower(torch.tensor([k]), n, alpha=alpha)[0])
    reference = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert ours == pytest.approx(reference, abs=1e-9)


def test_smoothed_predict_abstains_exactly_where_scipys_binomial_test_does(mnist):
    model, x, _ = mnist
    kwargs = dict(sigma=0.75, n=60, batch_size=500)
    predicted = R.smoothed_predict(model, x[:48], alpha=0.01, generator=torch.Generator().manual_seed(0), **kwargs)
    counts = R._noise_counts(model, x[:48], sigma=0.75, num=60, batch_size=500,
                             generator=torch.Generator().manual_seed(0))
    top2 = counts.topk(2, dim=1)
    p_values = np.array([binomtest(int(a), int(a + b), 0.5).pvalue for a, b in top2.values.tolist()])
    expected = torch.where(torch.as_tensor(p_values <= 0.01), top2.indices[:, 0], -1)
    assert torch.equal(predicted, expected)
    assert 0 < int((predicted == -1).sum()) < len(predicted)  # both outcomes occur


def test_certify_on_mnist_is_reproducible_and_consistent(mnist):
    model, x, y = mnist
    run = functools.partial(R.certify, model, x[:16], sigma=0.25, n0=20, n=200, alpha=0.001, batch_size=1000)
    first = run(generator=torch.Generator().manual_seed(0))
    second = run(generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.prediction, second.prediction) and torch.equal(first.radius, second.radius)
    certified = first.prediction >= 0
    assert float((first.prediction[certified] == y[:16][certified]).double().mean()) > 0.9
    expected = 0.25 * torch.as_tensor(norm.ppf(first.p_lower[certified].numpy()))
    torch.testing.assert_close(first.radius[certified], expected)


# --------------------------------------------------------------------------- bad input

def _tiny():
    model, x, y = random_problem(0, 4)
    return model, x, y


@pytest.mark.parametrize("call, name", [
    (lambda m, x, y: R.fgsm(m, x, y, eps=-0.1), "eps"),
    (lambda m, x, y: R.pgd(m, x, y, eps=-1.0, alpha=0.1, steps=1), "eps"),
    (lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.0, steps=1), "alpha"),
    (lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.1, steps=0), "steps"),
    (lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.1, steps=1, restarts=0), "restarts"),
    (lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.1, steps=1, norm="l1"), "norm"),
    (lambda m, x, y: R.fgsm(m, x + 2, y, eps=0.1), "x"),
    (lambda m, x, y: R.fgsm(m, x, y[:3], eps=0.1), "y"),
    (lambda m, x, y: R.fgsm(m, x, y, eps=0.1, clamp=(1.0, 0.0)), "clamp"),
    (lambda m, x, y: R.robust_accuracy(m, x, y, attack=R.fgsm, eps=[]), "eps"),
    (lambda m, x, y: R.robust_accuracy(m, x, y, attack=R.fgsm, eps=[0.1], batch_size=0), "batch_size"),
    (lambda m, x, y: R.attack_sanity_checks(m, x, y, eps=[0.0], alpha=0.1, steps=1), "eps"),
    (lambda m, x, y: R.fit_adversarial(m, x, y, method="free", eps=0.1, epochs=1, batch_size=2, lr=0.1), "method"),
    (lambda m, x, y: R.fit_adversarial(m, x, y, eps=0.1, epochs=0, batch_size=2, lr=0.1), "epochs"),
    (lambda m, x, y: R.certify(m, x, sigma=0.0, n0=1, n=1, alpha=0.1, batch_size=1), "sigma"),
    (lambda m, x, y: R.certify(m, x, sigma=0.1, n0=1, n=1, alpha=1.5, batch_size=1), "alpha"),
    (lambda m, x, y: R.certify(m, x, sigma=0.1, n0=0, n=1, alpha=0.1, batch_size=1), "n0"),
    (lambda m, x, y: R.smoothed_predict(m, x, sigma=0.1, n=0, alpha=0.1, batch_size=1), "n"),
    (lambda m, x, y: R.clopper_pearson_lower(torch.tensor([5]), 4, alpha=0.1), "successes"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    model, x, y = _tiny()
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call(model, x, y)


@pytest.mark.parametrize("call, name", [
    (lambda m, x, y: R.fgsm("model", x, y, eps=0.1), "model"),
    (lambda m, x, y: R.fgsm(m, x, y, eps="0.1"), "eps"),
    (lambda m, x, y: R.fgsm(m, x.long(), y, eps=0.1), "x"),
    (lambda m, x, y: R.pgd(m, x, y, eps=0.1, alpha=0.1, steps=1, generator=0), "generator"),
    (lambda m, x, y: R.robust_accuracy(m, x, y, attack="pgd", eps=[0.1]), "attack"),
])
def test_bad_types_raise_type_error_naming_the_argument(call, name):
    model, x, y = _tiny()
    with pytest.raises(TypeError, match=rf"^{name}:"):
        call(model, x, y)


def test_attacks_accept_numpy_inputs_and_restore_the_model_mode():
    model, x, y = _tiny()
    model.train()
    x_adv = R.pgd(model, x.numpy(), y.numpy(), eps=0.1, alpha=0.05, steps=2,
                  generator=torch.Generator().manual_seed(0))
    assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape and model.training


def test_certified_accuracy_counts_right_and_far_enough(mnist):
    model, x, y = mnist
    cert = R.certify(model, x[:32], sigma=0.25, n0=10, n=100, alpha=0.01, batch_size=1600,
                     generator=torch.Generator().manual_seed(0))
    radii = [0.0, 0.1, 0.3, 10.0]
    got = R.certified_accuracy(cert, y[:32], radii=radii)
    prediction, radius = cert.prediction.numpy(), cert.radius.numpy()
    expected = [np.mean((prediction == y[:32].numpy()) & (radius >= r)) for r in radii]
    np.testing.assert_allclose(got.numpy(), expected)
    assert float(got[-1]) == 0.0 and float(got[0]) > 0.5


# --------------------------------------------------------------------------- self-checks

def solution_fgsm_attack(image, epsilon, data_grad):
    return torch.clamp(image + epsilon * data_grad.sign(), 0, 1)


def solution_project_l2(delta, eps):
    norms = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))
    return delta * torch.clamp(eps / norms, max=1.0)


def solution_fgsm_rs(model, x, y, *, eps, alpha, generator):
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    start = (x + delta).clamp(0, 1).requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(start), y), start)[0]
    delta = (start.detach() + alpha * grad.sign() - x).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def solution_adversarial_step(model, optimizer, x, y, epsilon):
    model.train()
    x = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]
    x_adv = torch.clamp(x.detach() + epsilon * grad.sign(), 0, 1)
    optimizer.zero_grad()
    F.cross_entropy(model(x_adv), y).backward()
    optimizer.step()


def solution_certified_radius(p_lower, sigma):
    return torch.where(p_lower > 0.5, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))


def solution_accuracy_at(certificate, y, r):
    return float(((certificate.prediction == y) & (certificate.radius >= r)).double().mean())


@pytest.mark.parametrize("check, right, wrong", [
    ("check_fgsm_attack", solution_fgsm_attack, lambda image, epsilon, grad: image + epsilon * grad),
    ("check_l2_projection", solution_project_l2, lambda delta, eps: delta.clamp(-eps, eps)),
    ("check_fgsm_rs", solution_fgsm_rs, lambda model, x, y, *, eps, alpha, generator: x),
    ("check_adversarial_step", solution_adversarial_step, lambda model, optimizer, x, y, epsilon: None),
    ("check_certified_radius", solution_certified_radius, lambda p, sigma: sigma * torch.special.ndtri(p)),
    ("check_certified_accuracy", solution_accuracy_at,
     lambda certificate, y, r: float((certificate.prediction == y).double().mean())),
])
def test_self_checks_pass_a_right_answer_and_explain_a_wrong_one(check, right, wrong, capsys):
    from trustml_lab import checks
    from trustml_lab.checks import CheckFailed

    function = getattr(checks.robustness, check)
    function(right)
    assert capsys.readouterr().out.startswith("PASS ")
    with pytest.raises(CheckFailed, match="not yet"):
        function(wrong)

    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="NotImplementedError"):
        function(stub)
