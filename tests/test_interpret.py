"""trustml_lab.interpret against captum, shap, scipy and scikit-learn, on random and real inputs."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from trustml_lab import data, interpret, models

captum_attr = pytest.importorskip("captum.attr")
shap = pytest.importorskip("shap")

FAST = settings(max_examples=12, deadline=None)


def mlp(features, outputs=3, *, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 8), nn.Tanh(), nn.Linear(8, outputs)).to(dtype).eval()


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 5, 4)).eval()


@pytest.fixture(scope="module")
def cnn():
    return models.load_reference(models.SmallCNN(), "mnist_cnn.safetensors")


@pytest.fixture(scope="module")
def digits():
    _, x_test, _, y_test = data.load_mnist_split()
    return x_test[:6], y_test[:6]


CREDIT_COLUMNS = ("duration_months", "credit_amount", "installment_rate", "residence_since",
                  "age", "existing_credits", "num_dependents", "checking_status=no account")


@pytest.fixture(scope="module")
def credit():
    """An MLP on 8 columns of German credit; returns (model, features, target)."""
    table = data.load_german_credit(as_frame=False)
    columns = [table.feature_names.index(c) for c in CREDIT_COLUMNS]
    x, y = table.features[:, columns], table.target
    torch.manual_seed(0)
    model = models.MLP(len(columns), hidden=(16,))
    models.fit(model, x, y, epochs=10, batch_size=64, lr=0.01, generator=torch.Generator().manual_seed(0),
               progress=False)
    return model, x, y


def as_numpy_function(f):
    return lambda array: f(torch.as_tensor(array, dtype=torch.float64)).detach().numpy()


# --------------------------------------------------------------------------- gradients vs captum

@FAST
@given(
    method=st.sampled_from(interpret.METHODS),
    steps=st.integers(2, 30),
    batch=st.one_of(st.none(), st.integers(3, 40)),
    baseline=st.sampled_from(["none", "number", "per-example", "shared"]),
    seed=st.integers(0, 1000),
)
def test_integrated_gradients_equals_captum(method, steps, batch, baseline, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, generator=g)
    base = {"none": None, "number": 0.3, "per-example": torch.randn(3, 5, generator=g),
            "shared": torch.randn(5, generator=g)}[baseline]
    target = torch.tensor([0, 2, 1])
    model = mlp(5, seed=seed)
    ours, delta = interpret.integrated_gradients(model, x, target, baseline=base, steps=steps, method=method,
                                                 internal_batch_size=batch, return_delta=True)
    ref_base = base[None].expand_as(x) if baseline == "shared" else base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, ref_delta = captum_attr.IntegratedGradients(model).attribute(
            x, baselines=ref_base, target=target, n_steps=steps, method=method,
            internal_batch_size=batch, return_convergence_delta=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(delta, ref_delta, atol=1e-5, rtol=1e-5)


def test_integrated_gradients_on_mnist_equals_captum_and_is_complete(cnn, digits):
    x, y = digits
    ours, delta = interpret.integrated_gradients(cnn, x, y, steps=50, internal_batch_size=100, return_delta=True)
    ref, ref_delta = captum_attr.IntegratedGradients(cnn).attribute(
        x, target=y, n_steps=50, internal_batch_size=100, return_convergence_delta=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(delta, ref_delta, atol=1e-5, rtol=1e-5)
    assert delta.abs().max() < 0.05 * ours.sum(dim=(1, 2, 3)).abs().max()


def test_integrated_gradients_completeness_with_many_steps():
    model = mlp(6, seed=3)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    attributions, delta = interpret.integrated_gradients(model, x, 1, steps=64, return_delta=True)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(attributions.sum(dim=1), gap, atol=1e-4, rtol=0)
    assert delta.abs().max() < 1e-4


@FAST
@given(absolute=st.booleans(), seed=st.integers(0, 1000))
def test_saliency_equals_captum(absolute, seed):
    model = tiny_cnn(seed)
    x = torch.randn(3, 2, 6, 5, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([3, 0, 1])
    ours = interpret.saliency(model, x, target, abs=absolute)
    ref = captum_attr.Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=absolute)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


def test_saliency_and_smoothgrad_on_mnist_equal_captum(cnn, digits):
    x, y = digits
    reference = captum_attr.Saliency(cnn).attribute(x.clone().requires_grad_(), target=y)
    torch.testing.assert_close(interpret.saliency(cnn, x, y), reference)
    ours = interpret.smoothgrad(cnn, x, y, samples=8, stdev=0.2, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(7)  # captum draws its noise from the global generator, in the same order
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(cnn)).attribute(
        x, target=y, nt_type="smoothgrad", nt_samples=8, stdevs=0.2)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_smoothgrad_is_seeded_and_chunking_does_not_change_it():
    model = mlp(4, seed=1)
    x = torch.randn(3, 4)
    one = interpret.smoothgrad(model, x, 0, samples=10, generator=torch.Generator().manual_seed(2))
    two = interpret.smoothgrad(model, x, 0, samples=10, internal_batch_size=7,
                               generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(one, two)
    assert not torch.equal(one, interpret.saliency(model, x, 0))


@FAST
@given(
    window=st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 5)),
    stride_fraction=st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 5)),
    baseline=st.floats(-1, 1),
    batch=st.one_of(st.none(), st.integers(3, 30)),
    seed=st.integers(0, 1000),
)
def test_occlusion_equals_captum(window, stride_fraction, baseline, batch, seed):
    stride = tuple(min(s, w) for s, w in zip(stride_fraction, window))
    model = tiny_cnn(seed)
    x = torch.randn(3, 2, 6, 5, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([1, 2, 3])
    ours = interpret.occlusion(model, x, target, window=window, stride=stride, baseline=baseline,
                               internal_batch_size=batch)
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride,
                                                 baselines=baseline, target=target)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_occlusion_on_mnist_equals_captum(cnn, digits):
    x, y = digits
    ours = interpret.occlusion(cnn, x, y, window=(1, 6, 6), stride=(1, 3, 3))
    ref = captum_attr.Occlusion(cnn).attribute(x, sliding_window_shapes=(1, 6, 6), strides=(1, 3, 3), target=y)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- Shapley values vs shap

def shap_exact(f, x, background):
    masker = shap.maskers.Independent(background.numpy(), max_samples=len(background))
    return shap.explainers.Exact(as_numpy_function(f), masker)(x.numpy())


@settings(max_examples=6, deadline=None)
@given(features=st.integers(2, 6), outputs=st.sampled_from([None, 2]), rows=st.integers(1, 8),
       seed=st.integers(0, 1000))
def test_shapley_values_equal_shap_exact_explainer(features, outputs, rows, seed):
    g = torch.Generator().manual_seed(seed)
    net = mlp(features, outputs or 1, seed=seed, dtype=torch.float64)
    f = (lambda z: net(z)) if outputs else (lambda z: net(z)[:, 0])
    x = torch.randn(2, features, generator=g, dtype=torch.float64)
    background = torch.randn(rows, features, generator=g, dtype=torch.float64)
    ours = interpret.shapley_values(f, x, background, batch_size=97)
    ref = shap_exact(f, x, background)
    np.testing.assert_allclose(ours.values.numpy(), ref.values, atol=1e-6)
    np.testing.assert_allclose(ours.base_values.numpy(), ref.base_values, atol=1e-6)


def test_shapley_values_on_credit_equal_shap(credit):
    model, x, _ = credit
    f = lambda z: torch.softmax(model(z.float()), dim=1)[:, 1].double()  # noqa: E731
    ours = interpret.shapley_values(f, x[:2].double(), x[100:120].double())
    ref = shap_exact(f, x[:2].double(), x[100:120].double())
    np.testing.assert_allclose(ours.values.numpy(), ref.values, atol=1e-6)
    np.testing.assert_allclose(ours.base_values.numpy(), ref.base_values, atol=1e-6)


@FAST
@given(seed=st.integers(0, 1000))
def test_shapley_axioms_completeness_symmetry_dummy(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, generator=g, dtype=torch.float64)

    def f(z):  # symmetric in features 0 and 1, feature 3 is a dummy
        return torch.tanh(a * (z[:, 0] + z[:, 1]) + b * z[:, 2]) * z[:, 0] * z[:, 1] + z[:, 2] ** 2

    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x[:, 1] = x[:, 0]
    background = torch.randn(5, 4, generator=g, dtype=torch.float64)
    background[:, 1] = background[:, 0]
    result = interpret.shapley_values(f, x, background)
    torch.testing.assert_close(result.values.sum(dim=1) + result.base_values, f(x))  # completeness
    torch.testing.assert_close(result.values[:, 0], result.values[:, 1])  # symmetry
    torch.testing.assert_close(result.values[:, 3], torch.zeros(3, dtype=torch.float64))  # dummy


def test_shapley_groups_of_one_equal_ungrouped_and_groups_add_up():
    net = mlp(5, 1, seed=4, dtype=torch.float64)
    f = lambda z: net(z)[:, 0]  # noqa: E731
    x, background = torch.randn(2, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    plain = interpret.shapley_values(f, x, background)
    singletons = interpret.shapley_values(f, x, background, groups=[[i] for i in range(5)])
    torch.testing.assert_close(plain.values, singletons.values)
    grouped = interpret.shapley_values(f, x, background, groups=[[0, 3], [1], [2, 4]])
    assert grouped.values.shape == (2, 3)
    torch.testing.assert_close(grouped.values.sum(1), plain.values.sum(1))


def test_kernel_shap_is_within_1e2_of_exact_at_2048_samples_on_8_features():
    net = mlp(8, 1, seed=5, dtype=torch.float64)
    f = lambda z: net(z)[:, 0]  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, generator=g, dtype=torch.float64)
    background = torch.randn(10, 8, generator=g, dtype=torch.float64)
    exact = interpret.shapley_values(f, x, background)
    approx = interpret.kernel_shap(f, x, background, nsamples=2048, generator=g)
    assert (approx.values - exact.values).abs().max() < 1e-2
    torch.testing.assert_close(approx.base_values, exact.base_values)
    reference = np.asarray(shap.KernelExplainer(as_numpy_function(f), background.numpy())
                           .shap_values(x.numpy(), nsamples=2048, l1_reg=False, silent=True))
    np.testing.assert_allclose(approx.values.numpy(), reference, atol=1e-6)


def test_kernel_shap_converges_when_sampling_and_on_credit(credit):
    model, x, _ = credit
    f = lambda z: model(z.float())[:, 1].double()  # noqa: E731
    x12 = torch.cat([x, x[:, :4] ** 2], dim=1)[:3].double()  # 12 players: the budget must sample
    f12 = lambda z: f(z[:, :8]) + 0.1 * z[:, 8:].sum(1)  # noqa: E731
    background = torch.cat([x, x[:, :4] ** 2], dim=1)[200:215].double()
    exact = interpret.shapley_values(f12, x12, background)
    errors = [float((interpret.kernel_shap(f12, x12, background, nsamples=n,
                                           generator=torch.Generator().manual_seed(1)).values
                     - exact.values).abs().max()) for n in (100, 2048)]
    assert errors[1] < 1e-2 and errors[1] < errors[0]
    result = interpret.kernel_shap(f12, x12, background, nsamples=500, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(result.values.sum(1) + result.base_values, f12(x12))  # completeness holds exactly


# --------------------------------------------------------------------------- sanity check

@FAST
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=20), st.integers(1, 3))
def test_rank_correlation_equals_scipy(pairs, rows):
    from scipy import stats

    a = torch.tensor([p[0] for p in pairs], dtype=torch.float64).repeat(rows, 1)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.float64).repeat(rows, 1)
    ours = interpret.rank_correlation(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant row: scipy warns and returns NaN
        ref = stats.spearmanr(a[0].numpy(), b[0].numpy()).statistic
    if np.isnan(ref):
        assert torch.isnan(ours).all()
    else:
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)


def test_randomization_check_separates_model_explanations_from_edge_detectors(cnn, digits):
    x, y = digits
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    check = interpret.model_randomization_check(cnn, interpret.saliency, x, y,
                                                generator=torch.Generator().manual_seed(0))
    assert check.layers == ("9", "7", "3", "0")
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())  # the model is untouched
    assert check.similarity.shape == (4, 6)
    assert check.similarity[-1].mean() < 0.5  # fully random model: a different explanation
    again = interpret.model_randomization_check(cnn, interpret.saliency, x, y,
                                                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(check.similarity, again.similarity)
    edges = interpret.model_randomization_check(cnn, lambda model, inputs, target: inputs, x, y, cascading=False)
    torch.testing.assert_close(edges.similarity, torch.ones(4, 6, dtype=torch.float64))  # ignores the model


# --------------------------------------------------------------------------- counterfactuals

@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), fixed=st.integers(0, 4))
def test_counterfactual_of_a_linear_model_is_the_closest_one(seed, fixed):
    g = torch.Generator().manual_seed(seed)
    w, scale = torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.5
    model = nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([torch.zeros(5), w]))
        model.bias.copy_(torch.tensor([0.0, -1.0]))
    x = torch.randn(40, 5, generator=g)
    logit = x @ w - 1
    x = x[logit < 0]
    result = interpret.counterfactual(model, x, target=1, immutable=[fixed], scale=scale, step_size=0.01, steps=400)
    strength = (w.abs() * scale)
    strength[fixed] = 0
    closest = -(x @ w - 1) / strength.max()  # all change on the strongest mutable feature
    reached = closest < 4  # within 400 steps of 0.01
    assert result.valid[reached].all()
    assert (result.distance[reached] >= closest[reached] - 1e-4).all()
    assert (result.distance[reached] <= closest[reached] + 0.01 + 1e-4).all()
    assert torch.equal(result.x[:, fixed], x[:, fixed])
    assert (models.predict(model, result.x[result.valid]) == 1).all()


def test_counterfactual_on_credit_keeps_age_fixed_and_stays_in_range(credit):
    model, x, _ = credit
    rejected = x[models.predict(model, x) == 0][:20]
    age = CREDIT_COLUMNS.index("age")
    low, high = x.min(dim=0).values, x.max(dim=0).values
    result = interpret.counterfactual(model, rejected, target=1, immutable=[age], lower=low, upper=high,
                                      scale=x.std(dim=0))
    assert result.valid.float().mean() > 0.8
    assert (models.predict(model, result.x[result.valid]) == 1).all()
    assert torch.equal(result.x[:, age], rejected[:, age])
    assert ((result.x >= low) & (result.x <= high)).all()
    assert torch.isinf(result.distance[~result.valid]).all()


# --------------------------------------------------------------------------- local surrogate

def test_local_surrogate_equals_sklearn_weighted_regression():
    from sklearn.linear_model import LinearRegression

    net = mlp(4, 1, seed=6)
    f = lambda z: net(z)[:, 0]  # noqa: E731
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    stdev = torch.tensor([0.5, 1.0, 2.0, 0.1])
    fit = interpret.local_surrogate(f, x, samples=300, stdev=stdev, generator=torch.Generator().manual_seed(3))
    noise = torch.randn((2, 300, 4), generator=torch.Generator().manual_seed(3))
    for i in range(2):
        offsets = noise[i] * stdev
        weight = torch.exp(-(noise[i].double() ** 2).sum(1) / (0.75 * 2) ** 2)
        reference = LinearRegression().fit(offsets.numpy(), f(x[i] + offsets).detach().numpy(),
                                           sample_weight=weight.numpy())
        np.testing.assert_allclose(fit.coef[i].numpy(), reference.coef_, atol=1e-5)
        np.testing.assert_allclose(fit.intercept[i].numpy(), reference.intercept_, atol=1e-5)
        assert abs(float(fit.score[i]) - reference.score(offsets.numpy(), f(x[i] + offsets).detach().numpy(),
                                                         sample_weight=weight.numpy())) < 1e-5


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_errors_naming_the_argument():
    model, x = mlp(4), torch.randn(2, 4)
    f, background = (lambda z: z.sum(1)), torch.zeros(3, 4)
    cases = [
        (ValueError, "target", lambda: interpret.saliency(model, x, 3)),
        (ValueError, "target", lambda: interpret.integrated_gradients(model, x, torch.tensor([0, -1]))),
        (ValueError, "target", lambda: interpret.saliency(model, x, torch.tensor([0, 1, 2]))),
        (TypeError, "target", lambda: interpret.saliency(model, x, torch.tensor([0.0, 1.0]))),
        (ValueError, "baseline", lambda: interpret.integrated_gradients(model, x, 0, baseline=torch.zeros(3))),
        (ValueError, "steps", lambda: interpret.integrated_gradients(model, x, 0, steps=0)),
        (ValueError, "steps", lambda: interpret.integrated_gradients(model, x, 0, steps=1, method="riemann_left")),
        (ValueError, "method", lambda: interpret.integrated_gradients(model, x, 0, method="simpson")),
        (ValueError, "internal_batch_size", lambda: interpret.integrated_gradients(model, x, 0, internal_batch_size=0)),
        (ValueError, "samples", lambda: interpret.smoothgrad(model, x, 0, samples=0)),
        (ValueError, "stdev", lambda: interpret.smoothgrad(model, x, 0, stdev=-1.0)),
        (ValueError, "window", lambda: interpret.occlusion(model, x, 0, window=(5,), stride=(1,))),
        (ValueError, "window", lambda: interpret.occlusion(model, x, 0, window=(1, 1), stride=(1,))),
        (ValueError, "stride", lambda: interpret.occlusion(model, x, 0, window=(2,), stride=(3,))),
        (ValueError, "x", lambda: interpret.saliency(model, torch.randn(4), 0)),
        (ValueError, "x", lambda: interpret.shapley_values(f, torch.zeros(1, 17), torch.zeros(2, 17))),
        (ValueError, "groups", lambda: interpret.shapley_values(f, x, background, groups=[[0, 1], [2]])),
        (ValueError, "background", lambda: interpret.shapley_values(f, x, torch.zeros(3, 5))),
        (TypeError, "f", lambda: interpret.shapley_values("model", x, background)),
        (ValueError, "nsamples", lambda: interpret.kernel_shap(f, x, background, nsamples=1)),
        (ValueError, "immutable", lambda: interpret.counterfactual(model, x, target=1, immutable=[4])),
        (ValueError, "scale", lambda: interpret.counterfactual(model, x, target=1, scale=torch.zeros(4))),
        (ValueError, "lower", lambda: interpret.counterfactual(model, x, target=1, lower=1.0, upper=0.0)),
        (ValueError, "target", lambda: interpret.counterfactual(model, x, target=5)),
        (TypeError, "explain", lambda: interpret.model_randomization_check(model, None, x, 0)),
        (ValueError, "b", lambda: interpret.rank_correlation(torch.zeros(2, 3), torch.zeros(2, 4))),
        (ValueError, "samples", lambda: interpret.local_surrogate(f, x, samples=3)),
    ]
    for error, name, call in cases:
        with pytest.raises(error, match=rf"^{name}:"):
            call()


# --------------------------------------------------------------------------- learner self-checks

def test_self_checks_pass_right_answers_and_explain_wrong_ones():
    from trustml_lab import checks

    def gradient_times_input(model, x, target):
        return interpret.saliency(model, x, target, abs=False) * x

    def riemann_ig(model, x, target, steps):
        alphas = torch.arange(1, steps + 1) / steps
        grads = [interpret.saliency(model, a * x, target, abs=False) for a in alphas]
        return torch.stack(grads).mean(dim=0) * x

    def shapley(v, n):
        weight = lambda s: math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)  # noqa: E731
        return [sum(weight(len(s)) * (v[s | {i}] - v[s]) for s in v if i not in s) for i in range(n)]

    def permutation_shapley(f, x, background, permutations, generator):
        n, m = x.shape
        phi = torch.zeros(n, m, dtype=torch.float64)
        for _ in range(permutations):
            order = torch.randperm(m, generator=generator)
            current = background[None].expand(n, -1, -1).clone()
            before = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
            for j in order.tolist():
                current[:, :, j] = x[:, None, j]
                after = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
                phi[:, j] += after - before
                before = after
        return phi / permutations

    def linear_counterfactual(w, b, x, scale):
        j = int((w.abs() * scale).argmax())
        out = x.clone()
        out[:, j] -= (x @ w + b) / w[j]
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks.interpret.check_gradient_times_input(gradient_times_input)
        checks.interpret.check_riemann_ig(riemann_ig)
        checks.interpret.check_shapley_formula(shapley)
        checks.interpret.check_permutation_shapley(permutation_shapley)
        checks.interpret.check_linear_counterfactual(linear_counterfactual)
    values = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    checks.interpret.check_sex_share(0.625, values, [1])

    with pytest.raises(checks.CheckFailed, match="signed gradient"):
        checks.interpret.check_gradient_times_input(lambda m, x, t: interpret.saliency(m, x, t) * x)
    with pytest.raises(checks.CheckFailed, match="alpha = k / steps"):
        checks.interpret.check_riemann_ig(lambda m, x, t, s: riemann_ig(m, x, t, s + 1 if s > 1 else s))
    with pytest.raises(checks.CheckFailed, match="add up"):
        checks.interpret.check_shapley_formula(lambda v, n: [1.0] * n)
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.interpret.check_permutation_shapley(lambda *args: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(checks.CheckFailed, match="largest"):
        checks.interpret.check_linear_counterfactual(
            lambda w, b, x, s: x - ((x @ w + b) / (w @ w))[:, None] * w)
    with pytest.raises(checks.CheckFailed, match="average"):
        checks.interpret.check_sex_share(0.75, values, [1])


def test_kernel_shap_with_a_tiny_budget_still_satisfies_efficiency():
    net = mlp(10, 1, seed=8, dtype=torch.float64)
    f = lambda z: net(z)[:, 0]  # noqa: E731
    x, background = torch.randn(3, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    result = interpret.kernel_shap(f, x, background, nsamples=4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.values).all()
    torch.testing.assert_close(result.values.sum(1) + result.base_values, f(x))
