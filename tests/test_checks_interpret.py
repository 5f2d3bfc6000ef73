"""trustml_lab.checks.interpret: right answers pass (NumPy answers too); wrong, mutating, None and
stub answers fail with a message that names the cause and the case."""

import math
import warnings

import numpy as np
import pytest
import torch

from trustml_lab import checks, interpret

check = checks.interpret


def gradient_times_input(model, x, target):
    return interpret.saliency(model, x, target=target, abs=False) * x


def riemann_ig(model, x, target, steps):
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        total += interpret.saliency(model, (k / steps) * x, target=target, abs=False)
    return total / steps * x


def shapley(v, n):
    weight = lambda s: math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)  # noqa: E731
    return [sum(weight(len(s)) * (v[s | {i}] - v[s]) for s in v if i not in s) for i in range(n)]


def permutation_shapley(f, x, background, permutations, generator):
    n, m = x.shape
    phi = torch.zeros(n, m, dtype=torch.float64)
    for _ in range(permutations):
        current = background[None].expand(n, -1, -1).clone()
        before = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
        for j in torch.randperm(m, generator=generator).tolist():
            current[:, :, j] = x[:, None, j]
            after = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
            phi[:, j] += after - before
            before = after
    return phi / permutations


def one_order_shapley(f, x, background, permutations, generator):
    """A wrong answer that still adds up: features always join in the order 0, 1, ..., m - 1."""
    n, m = x.shape
    phi = torch.zeros(n, m, dtype=torch.float64)
    current = background[None].expand(n, -1, -1).clone()
    before = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
    for j in range(m):
        current[:, :, j] = x[:, None, j]
        after = f(current.reshape(-1, m)).reshape(n, -1).mean(1)
        phi[:, j] += after - before
        before = after
    return phi


def linear_counterfactual(w, b, x, scale):
    j = int((w.abs() * scale).argmax())
    out = x.clone()
    out[:, j] -= (x @ w + b) / w[j]
    return out


def sex_share(values, columns):
    magnitude = values.abs()
    return float((magnitude[:, columns].sum(dim=1) / magnitude.sum(dim=1)).mean())


RIGHT = {
    "check_gradient_times_input": gradient_times_input,
    "check_riemann_ig": riemann_ig,
    "check_shapley_formula": shapley,
    "check_permutation_shapley": permutation_shapley,
    "check_linear_counterfactual": linear_counterfactual,
    "check_sex_share": sex_share,
}


def as_numpy(function):
    """The same answer, returned as NumPy (arrays, or a NumPy scalar)."""
    def wrapped(*args):
        out = function(*args)
        if isinstance(out, torch.Tensor):
            return out.detach().numpy()
        if isinstance(out, float):
            return np.float64(out)
        return np.asarray(out)
    return wrapped


def mutating(function):
    """The same answer, after changing its first tensor argument in place."""
    def wrapped(*args):
        out = function(*args)
        first = next(a for a in args if isinstance(a, torch.Tensor) and not a.requires_grad)
        first.add_(1.0)
        return out
    return wrapped


def test_every_check_has_a_right_answer_here():
    assert set(RIGHT) == set(check.__all__)


@pytest.mark.parametrize("name", RIGHT)
def test_right_answers_pass(name, capsys):
    getattr(check, name)(RIGHT[name])
    assert f"PASS {name.removeprefix('check_')}" in capsys.readouterr().out


@pytest.mark.parametrize("name", RIGHT)
def test_numpy_answers_pass(name, capsys):
    getattr(check, name)(as_numpy(RIGHT[name]))
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("name", RIGHT)
def test_none_answers_fail(name):
    with pytest.raises(checks.CheckFailed, match="returned None"):
        getattr(check, name)(lambda *args: None)


@pytest.mark.parametrize("name", RIGHT)
def test_stubs_fail(name):
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        getattr(check, name)(stub)


@pytest.mark.parametrize("name", [n for n in RIGHT if n != "check_shapley_formula"])
def test_answers_that_change_their_inputs_fail(name):
    with pytest.raises(checks.CheckFailed, match="in place"):
        getattr(check, name)(mutating(RIGHT[name]))


def test_a_game_changed_in_place_fails():
    def clears(v, n):
        values = shapley(v, n)
        v.clear()
        return values

    with pytest.raises(checks.CheckFailed, match="in place"):
        check.check_shapley_formula(clears)


WRONG = [
    ("check_gradient_times_input", lambda m, x, t: interpret.saliency(m, x, target=t) * x, "signed gradient"),
    ("check_gradient_times_input", lambda m, x, t: interpret.saliency(m, x, target=0, abs=False) * x,
     r"case 1 \(4 rows, targets \[0, 1, 2, 1\]\)"),
    ("check_gradient_times_input", lambda m, x, t: (interpret.saliency(m, x, target=t, abs=False) * x)[:, :4],
     "shape"),
    ("check_riemann_ig", lambda m, x, t, s: riemann_ig(m, x, t, s + 1 if s > 1 else s), "steps=8"),
    ("check_riemann_ig", lambda m, x, t, s: riemann_ig(m, x, t, 2), "(?s)steps=1.*alpha = 1 only"),
    ("check_riemann_ig", lambda m, x, t, s: riemann_ig(m, x, t, s) * float("nan"), "NaN"),
    ("check_shapley_formula", lambda v, n: [1.0] * n, "add up"),
    ("check_shapley_formula", lambda v, n: shapley(v, n)[:-1], "shape"),
    ("check_shapley_formula", lambda v, n: shapley(v, n)[::-1] if n == 3 else shapley(v, n),
     "a random game of 3 players"),
    ("check_permutation_shapley", lambda f, x, b, p, g: permutation_shapley(f, x, b[:1], p, g),
     r"mean f\(background\)"),  # one background row instead of all
    ("check_permutation_shapley", one_order_shapley, "away from the exact"),
    ("check_permutation_shapley", lambda f, x, b, p, g: permutation_shapley(f, x, b, p, g) * 0.5, "adds up"),
    ("check_permutation_shapley", lambda f, x, b, p, g: permutation_shapley(f, x, b, p, g).T, "shape"),
    ("check_linear_counterfactual", lambda w, b, x, s: x - ((x @ w + b) / (w @ w))[:, None] * w, "largest"),
    ("check_linear_counterfactual", lambda w, b, x, s: x, "decision boundary"),
    ("check_sex_share", lambda v, c: float((v[:, c].sum(1) / v.sum(1)).mean()), "case 1"),
    ("check_sex_share", lambda v, c: float(v.abs()[:, c].sum() / v.abs().sum()), "average over rows"),
    ("check_sex_share", lambda v, c: [0.5, 0.5], "one number"),
]


@pytest.mark.parametrize("name, answer, message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answers_fail_naming_the_cause(name, answer, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(checks.CheckFailed, match=message):
            getattr(check, name)(answer)


def test_old_sex_share_form_still_works_with_a_warning(capsys):
    values = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    with pytest.warns(FutureWarning, match="sex_share"):
        check.check_sex_share(0.625, values, [1])
    assert "PASS sex_share" in capsys.readouterr().out
    with pytest.warns(FutureWarning), pytest.raises(checks.CheckFailed, match="average"):
        check.check_sex_share(0.75, values, [1])
    with pytest.warns(FutureWarning):
        check.check_sex_share(np.float32(0.625), values, [1])
