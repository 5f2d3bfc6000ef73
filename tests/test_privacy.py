"""trustml_lab.privacy against Opacus, SciPy and scikit-learn, on random and real data."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trustml_lab import checks
from trustml_lab import privacy as P
from trustml_lab.data import load_adult, load_mnist_split
from trustml_lab.models import MLP, SmallCNN, fit, load_reference

opacus = pytest.importorskip("opacus")
from opacus import GradSampleModule, PrivacyEngine  # noqa: E402
from opacus.accountants import PRVAccountant, RDPAccountant  # noqa: E402
from opacus.accountants.analysis.gdp import delta_eps_mu  # noqa: E402
from opacus.validators import ModuleValidator  # noqa: E402

SETTINGS = settings(max_examples=15, deadline=None)


# --------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def adult():
    """128 rows of the encoded Adult table and a fresh MLP of the chapter's shape."""
    data = load_adult(as_frame=False)
    torch.manual_seed(0)
    return MLP(data.features.shape[1], hidden=(64, 32)), data.features[:128], data.target[:128]


@pytest.fixture(scope="module")
def mnist():
    """The shipped non-private CNN and 32 training images."""
    x_train, _, y_train, _ = load_mnist_split()
    return load_reference(SmallCNN(), "mnist_cnn.safetensors"), x_train[:32], y_train[:32]


def opacus_grad_samples(model, x, y):
    """Opacus's per-example gradients: GradSampleModule after a backward through the mean loss."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gsm = GradSampleModule(copy.deepcopy(model).train())  # Opacus records in train mode only
        F.cross_entropy(gsm(x), y).backward()
    return {name: p.grad_sample for name, p in gsm._module.named_parameters()}


def opacus_step(model, x, y, *, noise_multiplier, max_grad_norm, seed=0, lr=0.0):
    """One make_private step on the batch (x, y); the noised gradient times the expected batch size."""
    model = copy.deepcopy(model).train()  # Opacus records activations in train mode only
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))  # sample rate 1, expected batch len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine()
        private, optimizer, _ = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr), data_loader=loader,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
            noise_generator=torch.Generator().manual_seed(seed))
        optimizer.zero_grad()
        F.cross_entropy(private(x), y).backward()
        optimizer.step()
    scale = optimizer.expected_batch_size
    return {name: p.grad * scale for name, p in private._module.named_parameters()}, private._module


def assert_close(ours, reference, atol, rtol=0.0):
    assert list(ours) == list(reference)
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], atol=atol, rtol=rtol, msg=name)


def random_mlp(seed, n_in, hidden, classes, batch):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP(n_in, hidden=hidden, out_features=classes)
    return model, torch.randn(batch, n_in, generator=g) * 3, torch.randint(0, classes, (batch,), generator=g)


class Tokens(nn.Module):
    """A Linear layer on (B, T, d) inputs, a frozen layer, a bias-free conv: the ghost edge cases."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel_size=(3, 2), stride=(2, 1), dilation=(1, 2), padding=1, bias=False)
        self.mix = nn.Linear(20, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.weight.requires_grad_(False)
        self.head = nn.Linear(4 * 3, 3)

    def forward(self, x):
        h = self.conv(x)                       # (B, 3, 4, 5)
        h = torch.tanh(self.mix(h.flatten(2)))  # (B, 3, 4): Linear on a sequence
        h = self.frozen(h)
        return self.head(h.flatten(1))


class Twice(nn.Module):
    """One Linear layer applied twice: its per-example norm is not a sum over calls."""

    def __init__(self):
        super().__init__()
        self.layer, self.head = nn.Linear(104, 104), nn.Linear(104, 2)

    def forward(self, x):
        return self.head(self.layer(torch.relu(self.layer(x))))


# --------------------------------------------------------------------------- mechanisms

def test_laplace_noise_is_laplace_of_scale_sensitivity_over_epsilon():
    g = torch.Generator().manual_seed(0)
    noisy = P.laplace_mechanism(torch.zeros(20_000, dtype=torch.float64), sensitivity=2.0, epsilon=0.5, generator=g)
    result = stats.kstest(noisy.numpy(), stats.laplace(scale=4.0).cdf)
    assert result.pvalue > 0.01
    # numpy's sampler (the seeds' np.random.laplace) draws the same distribution
    seeds_noise = np.random.default_rng(0).laplace(0, 2.0 / 0.5, 20_000)
    assert stats.ks_2samp(noisy.numpy(), seeds_noise).pvalue > 0.01


@SETTINGS
@given(sensitivity=st.floats(0.1, 10), epsilon=st.floats(0.05, 10), seed=st.integers(0, 2**16))
def test_laplace_scale_on_random_settings(sensitivity, epsilon, seed):
    g = torch.Generator().manual_seed(seed)
    noise = P.laplace_mechanism(torch.zeros(20_000, dtype=torch.float64), sensitivity=sensitivity,
                                epsilon=epsilon, generator=g)
    scale = sensitivity / epsilon
    # E|noise| = b, and its estimate from 20,000 draws has relative sd 1/sqrt(20,000) < 1%
    assert abs(float(noise.abs().mean()) / scale - 1) < 0.05


def test_laplace_on_adult_counting_query_keeps_device_shape_and_is_seeded():
    counts = torch.tensor(load_adult().groupby("education", observed=True).size().to_numpy())
    first = P.laplace_mechanism(counts, sensitivity=1.0, epsilon=1.0, generator=torch.Generator().manual_seed(1))
    again = P.laplace_mechanism(counts, sensitivity=1.0, epsilon=1.0, generator=torch.Generator().manual_seed(1))
    assert first.shape == counts.shape and first.is_floating_point() and torch.equal(first, again)
    assert float((first - counts).abs().max()) < 30  # P(|Laplace(1)| > 30) = e^-30


@SETTINGS
@given(epsilon=st.floats(0.05, 8), delta=st.floats(1e-10, 1e-2), sensitivity=st.floats(0.1, 5))
def test_analytic_gaussian_sigma_meets_the_exact_condition_of_opacus_gdp(epsilon, delta, sensitivity):
    sigma = P.gaussian_sigma(sensitivity=sensitivity, epsilon=epsilon, delta=delta)
    assert delta_eps_mu(eps=epsilon, mu=sensitivity / sigma) == pytest.approx(delta, rel=1e-6)


@SETTINGS
@given(epsilon=st.floats(0.05, 0.99), delta=st.floats(1e-10, 1e-2))
def test_classic_gaussian_sigma_is_dwork_roth_and_above_the_analytic_one(epsilon, delta):
    classic = P.gaussian_sigma(sensitivity=1.0, epsilon=epsilon, delta=delta, calibration="classic")
    assert classic == pytest.approx(math.sqrt(2 * math.log(1.25 / delta)) / epsilon, rel=1e-12)
    assert classic > P.gaussian_sigma(sensitivity=1.0, epsilon=epsilon, delta=delta)


def test_gaussian_mechanism_draws_normal_noise_of_sigma():
    g = torch.Generator().manual_seed(0)
    noisy = P.gaussian_mechanism(torch.zeros(20_000, dtype=torch.float64), sensitivity=1.0, epsilon=1.0,
                                 delta=1e-5, generator=g)
    sigma = P.gaussian_sigma(sensitivity=1.0, epsilon=1.0, delta=1e-5)
    assert stats.kstest(noisy.numpy(), stats.norm(scale=sigma).cdf).pvalue > 0.01


# --------------------------------------------------------------------------- per-example gradients, clipping

def test_per_sample_gradients_equal_opacus_on_adult_mlp(adult):
    model, x, y = adult
    assert_close(P.per_sample_gradients(model, None, x, y), opacus_grad_samples(model, x, y), atol=1e-6)


def test_per_sample_gradients_equal_opacus_on_mnist_cnn(mnist):
    model, x, y = mnist
    # in float64: in float32 the two summation orders differ by more than 1e-6 on entries near 5
    model, x = copy.deepcopy(model).double(), x.double()
    assert_close(P.per_sample_gradients(model, None, x, y), opacus_grad_samples(model, x, y), atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**16), n_in=st.integers(1, 12), hidden=st.lists(st.integers(1, 16), max_size=2),
       classes=st.integers(2, 4), batch=st.integers(1, 16))
def test_per_sample_gradients_equal_opacus_on_random_mlps(seed, n_in, hidden, classes, batch):
    model, x, y = random_mlp(seed, n_in, hidden, classes, batch)
    assert_close(P.per_sample_gradients(model, None, x, y), opacus_grad_samples(model, x, y), atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 12), max_grad_norm=st.floats(0.01, 10))
def test_clip_and_sum_equals_opacus_clipped_sum(seed, batch, max_grad_norm):
    model, x, y = random_mlp(seed, 6, (8,), 3, batch)
    summed, norms = P.clip_and_sum(P.per_sample_gradients(model, None, x, y), max_grad_norm=max_grad_norm)
    reference, _ = opacus_step(model, x, y, noise_multiplier=0.0, max_grad_norm=max_grad_norm)
    assert_close(summed, reference, atol=1e-5)
    assert norms.shape == (batch,) and bool((norms >= 0).all())


def test_one_noise_free_step_equals_opacus_on_adult_mlp_and_mnist_cnn(adult, mnist):
    for model, x, y in (adult, mnist):
        reference, _ = opacus_step(model, x, y, noise_multiplier=0.0, max_grad_norm=1.0)
        for method in ("per_sample", "ghost"):
            ours = P.private_gradient(model, None, x, y, max_grad_norm=1.0, noise_multiplier=0.0, method=method)
            assert_close(ours, reference, atol=1e-5)


def test_noised_step_equals_opacus_with_the_same_generator(adult):
    model, x, y = adult
    reference, _ = opacus_step(model, x, y, noise_multiplier=1.2, max_grad_norm=1.0, seed=7)
    for method in ("per_sample", "ghost"):
        ours = P.private_gradient(model, None, x, y, max_grad_norm=1.0, noise_multiplier=1.2, method=method,
                                  generator=torch.Generator().manual_seed(7))
        assert_close(ours, reference, atol=1e-4)


def test_noise_has_standard_deviation_noise_multiplier_times_max_grad_norm(adult):
    model, x, y = adult
    clean = P.private_gradient(model, None, x, y, max_grad_norm=0.5, noise_multiplier=0.0)
    noisy = P.private_gradient(model, None, x, y, max_grad_norm=0.5, noise_multiplier=2.0,
                               generator=torch.Generator().manual_seed(0))
    noise = torch.cat([(noisy[k] - clean[k]).flatten() for k in clean]).double().numpy()
    assert len(noise) > 5000
    assert stats.kstest(noise, stats.norm(scale=1.0).cdf).pvalue > 0.01


@SETTINGS
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 10), max_grad_norm=st.floats(0.01, 10))
def test_ghost_equals_per_sample_on_conv_sequence_and_frozen_layers(seed, batch, max_grad_norm):
    torch.manual_seed(seed)
    model = Tokens()
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 2, 8, 5, generator=g), torch.randint(0, 3, (batch,), generator=g)
    slow = P.private_gradient(model, None, x, y, max_grad_norm=max_grad_norm, noise_multiplier=0.0)
    fast = P.private_gradient(model, None, x, y, max_grad_norm=max_grad_norm, noise_multiplier=0.0, method="ghost")
    assert "frozen.weight" not in fast and "frozen.bias" in fast
    assert_close(fast, slow, atol=1e-5)


def test_ghost_equals_per_sample_on_real_data_with_mse_loss(adult):
    model, x, y = adult

    def squared_error(logits, target):  # any per-example loss works
        return (logits[:, 1] - logits[:, 0] - (2 * target - 1)).square()

    slow = P.private_gradient(model, squared_error, x, y, max_grad_norm=0.3, noise_multiplier=0.0)
    fast = P.private_gradient(model, squared_error, x, y, max_grad_norm=0.3, noise_multiplier=0.0, method="ghost")
    assert_close(fast, slow, atol=1e-5)


# --------------------------------------------------------------------------- accounting and training

def test_dp_fit_epsilon_equals_opacus_rdp_accountant_for_the_same_history():
    torch.manual_seed(0)
    x, y = torch.randn(100, 4), torch.randint(0, 2, (100,))
    result = P.dp_fit(nn.Linear(4, 2), x, y, noise_multiplier=1.2, max_grad_norm=1.0, sample_rate=0.1,
                      epochs=2, lr=0.1, delta=1e-5, generator=torch.Generator().manual_seed(0), progress=False)
    accountant = RDPAccountant()
    for _ in range(result.steps):
        accountant.step(noise_multiplier=1.2, sample_rate=0.1)
    assert result.steps == 20
    assert result.epsilon == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-12)


def seeds_training(model, x, y, accountant):
    """The seeds' code: ModuleValidator.fix, make_private(1.2, 1.0), get_epsilon(delta=1e-5)."""
    model = ModuleValidator.fix(copy.deepcopy(model))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=accountant)
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), data_loader=loader,
            noise_multiplier=1.2, max_grad_norm=1.0)
        for _ in range(2):
            for data, target in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(data), target).backward()
                optimizer.step()
    return engine.get_epsilon(delta=1e-5)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])  # Opacus 1.6's PrivacyEngine defaults to "prv"
def test_epsilon_equals_the_seeds_opacus_training(adult, accountant):
    model, x, y = adult
    reference = seeds_training(model, x, y, accountant)
    # 128 rows in batches of 32: sample rate 1/4, 4 steps per epoch, 2 epochs
    ours = P.epsilon_spent(noise_multiplier=1.2, sample_rate=1 / 4, steps=8, delta=1e-5, accountant=accountant)
    assert ours == pytest.approx(reference, rel=1e-12)


def test_epsilon_with_prv_equals_opacus_prv_and_is_tighter():
    accountant = PRVAccountant()
    for _ in range(500):
        accountant.step(noise_multiplier=1.0, sample_rate=0.02)
    prv = P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.02, steps=500, delta=1e-5, accountant="prv")
    rdp = P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.02, steps=500, delta=1e-5)
    assert prv == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-9)
    assert prv < rdp


def test_noise_multiplier_for_epsilon_hits_the_target():
    sigma = P.noise_multiplier_for_epsilon(epsilon=3.0, delta=1e-5, sample_rate=0.05, steps=200)
    spent = P.epsilon_spent(noise_multiplier=sigma, sample_rate=0.05, steps=200, delta=1e-5)
    assert 3.0 - 0.01 <= spent <= 3.0


def test_dp_fit_one_full_batch_step_equals_opacus_step(adult):
    model, x, y = adult
    for method in ("per_sample", "ghost"):
        ours = P.dp_fit(copy.deepcopy(model), x, y, noise_multiplier=0.0, max_grad_norm=1.0, sample_rate=1.0,
                        epochs=1, lr=0.5, delta=1e-5, method=method, progress=False)
        _, reference = opacus_step(model, x, y, noise_multiplier=0.0, max_grad_norm=1.0, lr=0.5)
        assert ours.steps == 1 and ours.epsilon == math.inf
        assert_close(dict(ours.model.named_parameters()), dict(reference.named_parameters()), atol=1e-5)


def test_dp_fit_learns_and_is_reproducible():
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] + x[:, 1] > 0).long()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        result = P.dp_fit(nn.Linear(3, 2), x, y, noise_multiplier=0.8, max_grad_norm=1.0, sample_rate=0.1,
                          epochs=3, lr=1.0, delta=1e-5, method="ghost",
                          generator=torch.Generator().manual_seed(1), progress=False)
        runs.append(result)
    assert torch.equal(runs[0].model.weight, runs[1].model.weight)
    accuracy = float((runs[0].model(x).argmax(1) == y).float().mean())
    assert accuracy > 0.85


def test_dp_fit_empty_poisson_batches_still_get_noise():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    quiet = P.dp_fit(nn.Linear(3, 2), x, y, noise_multiplier=0.0, max_grad_norm=1.0, sample_rate=0.01, epochs=1,
                     lr=0.1, delta=1e-5, generator=torch.Generator().manual_seed(0), progress=False)
    torch.manual_seed(0)
    start = nn.Linear(3, 2)
    noisy = P.dp_fit(copy.deepcopy(start), torch.zeros(1, 3), torch.tensor([0]), noise_multiplier=1.0,
                     max_grad_norm=1.0, sample_rate=1e-3, epochs=1, lr=0.1, delta=1e-5,
                     generator=torch.Generator().manual_seed(0), progress=False)
    assert quiet.steps == 100 and noisy.steps == 1000
    # with one example and q = 1e-3 nearly every batch is empty, yet every step adds noise
    assert not torch.equal(noisy.model.weight, start.weight)


# --------------------------------------------------------------------------- attacks and audits

@SETTINGS
@given(member=st.lists(st.integers(0, 6), min_size=1, max_size=30),
       non_member=st.lists(st.integers(0, 6), min_size=1, max_size=30))
def test_attack_metrics_equal_scikit_learn_with_ties(member, non_member):
    ours = P.attack_metrics(torch.tensor(member, dtype=torch.float64), torch.tensor(non_member, dtype=torch.float64))
    labels = [1] * len(member) + [0] * len(non_member)
    scores = member + non_member
    assert ours.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert ours.advantage == pytest.approx(max(0.0, float(np.max(tpr - fpr))), abs=1e-12)
    if ours.advantage > 0:
        s_in, s_out = np.array(member), np.array(non_member)
        gap = (s_in >= ours.threshold).mean() - (s_out >= ours.threshold).mean()
        assert gap == pytest.approx(ours.advantage, abs=1e-12)


def test_membership_inference_on_an_overfit_adult_model_equals_scikit_learn():
    data = load_adult(as_frame=False)
    x, y = data.features[:400], data.target[:400]
    torch.manual_seed(0)
    model = MLP(x.shape[1], hidden=(128,))
    fit(model, x[:200], y[:200], epochs=60, batch_size=50, lr=1e-2, generator=torch.Generator().manual_seed(0),
        progress=False)
    result = P.membership_inference(model, (x[:200], y[:200]), (x[200:], y[200:]))
    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none").numpy()
    labels = np.r_[np.ones(200), np.zeros(200)]
    assert result.auc == pytest.approx(roc_auc_score(labels, -losses), abs=1e-9)
    assert result.auc > 0.5 and 0 < result.advantage < 1


@SETTINGS
@given(k=st.integers(0, 60), extra=st.integers(0, 60), confidence=st.floats(0.5, 0.999))
def test_clopper_pearson_equals_scipy_exact_interval(k, extra, confidence):
    n = max(1, k + extra)
    k = min(k, n)
    ours = float(P.clopper_pearson_upper(torch.tensor([k]), n, confidence=confidence)[0])
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact").high
    assert ours == pytest.approx(reference, abs=1e-9)


def brute_force_audit(s_in, s_out, delta, confidence):
    """The audit bound by its definition, one threshold at a time, with scipy's intervals."""
    best = 0.0
    for t in np.unique(np.r_[s_in, s_out]):
        fp, fn = int((s_out >= t).sum()), int((s_in < t).sum())
        fpr = stats.binomtest(fp, len(s_out)).proportion_ci(confidence, method="exact").high
        fnr = stats.binomtest(fn, len(s_in)).proportion_ci(confidence, method="exact").high
        for num, den in ((1 - delta - fnr, fpr), (1 - delta - fpr, fnr)):
            if num > 0 and den > 0:
                best = max(best, math.log(num / den))
    return best


@SETTINGS
@given(s_in=st.lists(st.integers(-5, 5), min_size=1, max_size=25),
       s_out=st.lists(st.integers(-5, 5), min_size=1, max_size=25))
def test_audit_epsilon_equals_its_definition(s_in, s_out):
    ours = P.audit_epsilon(torch.tensor(s_in, dtype=torch.float64), torch.tensor(s_out, dtype=torch.float64),
                           delta=1e-5)
    assert ours.epsilon_lower_bound == pytest.approx(brute_force_audit(np.array(s_in), np.array(s_out), 1e-5, 0.95),
                                                     abs=1e-9)


def test_audit_of_a_gaussian_mechanism_stays_below_its_epsilon():
    """Outputs of the mechanism on neighbouring counts (canary in: count + 1) give a valid bound."""
    g = torch.Generator().manual_seed(0)
    count = torch.full((2000,), 100.0, dtype=torch.float64)
    s_out = P.gaussian_mechanism(count, sensitivity=1.0, epsilon=2.0, delta=1e-5, generator=g)
    s_in = P.gaussian_mechanism(count + 1, sensitivity=1.0, epsilon=2.0, delta=1e-5, generator=g)
    audit = P.audit_epsilon(s_in, s_out, delta=1e-5)
    assert 0.3 < audit.epsilon_lower_bound < 2.0


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, name", [
    ({"sensitivity": 1.0, "epsilon": 0.0}, "epsilon"),
    ({"sensitivity": 1.0, "epsilon": -1.0}, "epsilon"),
    ({"sensitivity": 0.0, "epsilon": 1.0}, "sensitivity"),
    ({"sensitivity": float("nan"), "epsilon": 1.0}, "sensitivity"),
])
def test_laplace_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        P.laplace_mechanism(torch.zeros(3), **kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"epsilon": 1.0, "delta": 0.0}, "delta"),
    ({"epsilon": 1.0, "delta": 1.0}, "delta"),
    ({"epsilon": 0.0, "delta": 1e-5}, "epsilon"),
    ({"epsilon": 1.5, "delta": 1e-5, "calibration": "classic"}, "epsilon"),
    ({"epsilon": 0.5, "delta": 1e-5, "calibration": "exact"}, "calibration"),
])
def test_gaussian_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        P.gaussian_mechanism(torch.zeros(3), sensitivity=1.0, **kwargs)
    with pytest.raises(TypeError, match="value"):
        P.gaussian_mechanism(None, sensitivity=1.0, epsilon=1.0, delta=1e-5)


def test_gradient_bad_input(adult):
    model, x, y = adult
    with pytest.raises(ValueError, match="max_grad_norm"):
        P.private_gradient(model, None, x, y, max_grad_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="noise_multiplier"):
        P.private_gradient(model, None, x, y, max_grad_norm=1.0, noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="method"):
        P.private_gradient(model, None, x, y, max_grad_norm=1.0, noise_multiplier=1.0, method="fast")
    with pytest.raises(ValueError, match="y"):
        P.private_gradient(model, None, x, y[:-1], max_grad_norm=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="loss_fn"):
        P.private_gradient(model, F.cross_entropy, x, y, max_grad_norm=1.0, noise_multiplier=1.0, method="ghost")
    with pytest.raises(ValueError, match="model: method='ghost'"):
        P.private_gradient(nn.Sequential(nn.Linear(104, 4), nn.LayerNorm(4)), None, x, y,
                           max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    shared = nn.Linear(104, 104)
    with pytest.raises(ValueError, match="shares parameters"):
        P.private_gradient(nn.Sequential(shared, shared, nn.Linear(104, 2)), None, x, y,
                           max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    with pytest.raises(ValueError, match="runs twice"):
        P.private_gradient(Twice(), None, x, y, max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    idle = Tokens()
    idle.spare = nn.Linear(3, 3)  # trainable, never called
    with pytest.raises(ValueError, match="do not run"):
        P.private_gradient(idle, None, torch.randn(4, 2, 8, 5), torch.zeros(4, dtype=torch.long),
                           max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    with pytest.raises(ValueError, match="max_grad_norm"):
        P.clip_and_sum({"w": torch.zeros(2, 3)}, max_grad_norm=-1.0)
    with pytest.raises(TypeError, match="per_sample_grads"):
        P.clip_and_sum({}, max_grad_norm=1.0)
    with pytest.raises(TypeError, match="model"):
        P.per_sample_gradients("not a model", None, x, y)


@pytest.mark.parametrize("kwargs, name", [
    ({"sample_rate": 0.0}, "sample_rate"),
    ({"sample_rate": 1.5}, "sample_rate"),
    ({"delta": 1.0}, "delta"),
    ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"epochs": 0}, "epochs"),
    ({"method": "fast"}, "method"),
])
def test_dp_fit_bad_input(kwargs, name):
    settings_ = dict(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, epochs=1, lr=0.1, delta=1e-5,
                     progress=False)
    settings_.update(kwargs)
    with pytest.raises(ValueError, match=name):
        P.dp_fit(nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), **settings_)


def test_accounting_and_audit_bad_input():
    with pytest.raises(ValueError, match="sample_rate"):
        P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.0, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="accountant"):
        P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=1e-5, accountant="gdp")
    with pytest.raises(ValueError, match="epsilon"):
        P.noise_multiplier_for_epsilon(epsilon=0.0, delta=1e-5, sample_rate=0.1, steps=10)
    with pytest.raises(ValueError, match="delta"):
        P.audit_epsilon(torch.zeros(3), torch.zeros(3), delta=0.0)
    with pytest.raises(ValueError, match="scores_out"):
        P.audit_epsilon(torch.zeros(3), torch.zeros(0), delta=1e-5)
    with pytest.raises(ValueError, match="member_scores"):
        P.attack_metrics(torch.tensor([float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="successes"):
        P.clopper_pearson_upper(torch.tensor([11]), 10)
    with pytest.raises(TypeError, match="members"):
        P.membership_inference(nn.Linear(2, 2), torch.zeros(3, 2), (torch.zeros(3, 2), torch.zeros(3)))


# --------------------------------------------------------------------------- learner self-checks

def test_check_laplace_noise(capsys):
    def right(data, *, sensitivity, epsilon, generator=None):
        return P.laplace_mechanism(data, sensitivity=sensitivity, epsilon=epsilon, generator=generator)

    def gaussian(data, *, sensitivity, epsilon, generator=None):
        return data + torch.normal(0.0, math.sqrt(math.pi / 2) * sensitivity / epsilon, data.shape,
                                   generator=generator, dtype=data.dtype)

    def scale_times_epsilon(data, *, sensitivity, epsilon, generator=None):
        return P.laplace_mechanism(data, sensitivity=sensitivity, epsilon=1 / epsilon, generator=generator)

    checks.privacy.check_laplace_noise(right)
    assert "PASS laplace_noise" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="Laplace"):
        checks.privacy.check_laplace_noise(gaussian)
    with pytest.raises(checks.CheckFailed, match="sensitivity / epsilon"):
        checks.privacy.check_laplace_noise(scale_times_epsilon)


def test_check_private_mean(capsys):
    def right(values, *, lower, upper, epsilon, generator=None):
        clipped = values.clamp(lower, upper)
        return P.laplace_mechanism(clipped.mean(), sensitivity=(upper - lower) / len(values), epsilon=epsilon,
                                   generator=generator)

    def unclipped(values, *, lower, upper, epsilon, generator=None):
        return P.laplace_mechanism(values.mean(), sensitivity=(upper - lower) / len(values), epsilon=epsilon,
                                   generator=generator)

    def too_little_noise(values, *, lower, upper, epsilon, generator=None):
        return P.laplace_mechanism(values.clamp(lower, upper).mean(), sensitivity=1.0 / len(values),
                                   epsilon=epsilon, generator=generator)

    checks.privacy.check_private_mean(right)
    assert "PASS private_mean" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="Clip first"):
        checks.privacy.check_private_mean(unclipped)
    with pytest.raises(checks.CheckFailed, match="upper - lower"):
        checks.privacy.check_private_mean(too_little_noise)


def test_check_clip_and_sum(capsys):
    def right(grads, max_grad_norm):
        return P.clip_and_sum(grads, max_grad_norm=max_grad_norm)[0]

    def per_parameter(grads, max_grad_norm):
        return {k: P.clip_and_sum({k: g}, max_grad_norm=max_grad_norm)[0][k] for k, g in grads.items()}

    def stub(grads, max_grad_norm):
        raise NotImplementedError()

    checks.privacy.check_clip_and_sum(right)
    assert "PASS clip_and_sum" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="ALL parameters"):
        checks.privacy.check_clip_and_sum(per_parameter)
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.privacy.check_clip_and_sum(stub)


def test_check_noise_multiplier(capsys):
    setting = dict(delta=1e-5, sample_rate=0.05, steps=200)
    sigma = P.noise_multiplier_for_epsilon(epsilon=2.0, **setting)
    checks.privacy.check_noise_multiplier(sigma, epsilon=2.0, **setting)
    assert "PASS noise_multiplier" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="more noise"):
        checks.privacy.check_noise_multiplier(sigma / 2, epsilon=2.0, **setting)
    with pytest.raises(checks.CheckFailed, match="less"):
        checks.privacy.check_noise_multiplier(sigma * 2, epsilon=2.0, **setting)


def test_check_attack_auc(capsys):
    def right(member_losses, non_member_losses):
        return roc_auc_score(np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))],
                             -np.r_[member_losses.numpy(), non_member_losses.numpy()])

    def flipped(member_losses, non_member_losses):
        return 1 - right(member_losses, non_member_losses)

    checks.privacy.check_attack_auc(right)
    assert "PASS attack_auc" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="-loss"):
        checks.privacy.check_attack_auc(flipped)


def test_check_epsilon_from_rates(capsys):
    def right(fpr, fnr, delta):
        bounds = [math.log(n / d) for n, d in ((1 - delta - fnr, fpr), (1 - delta - fpr, fnr)) if n > 0]
        return max([0.0] + bounds)

    def one_sided(fpr, fnr, delta):
        return math.log((1 - delta - fnr) / fpr)

    checks.privacy.check_epsilon_from_rates(right)
    assert "PASS epsilon_from_rates" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="take the larger"):
        checks.privacy.check_epsilon_from_rates(one_sided)
