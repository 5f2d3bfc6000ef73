"""Self-checks for chapter 3, Interpretability.

Each check computes the reference first, calls the learner's function on copies of the
inputs (:func:`~trustml_lab.checks._core.call_learner`: a stub, a crash, a ``None`` or an
in-place change of an input is reported as such), tries more than one case, and reports
which case failed and the learner's values.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..interpret import integrated_gradients, saliency, shapley_values
from ._core import CheckFailed, as_array, as_number, call_learner, passed, require, require_close

__all__ = [
    "check_gradient_times_input",
    "check_linear_counterfactual",
    "check_permutation_shapley",
    "check_riemann_ig",
    "check_sex_share",
    "check_shapley_formula",
]


def _small_net(seed: int, features: int = 5, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 7), nn.Tanh(), nn.Linear(7, classes)).eval()


def _as_values(name: str, got: Any, shape: tuple[int, ...], case: str, what: str) -> np.ndarray:
    """The learner's array: numbers of the expected shape, without NaN (reported in that order)."""
    array = as_array(got, name, what)
    require(array.shape == shape, name, f"{case}: {what} has shape {array.shape}, expected {shape} "
            "(one value per input element)")
    require(not np.isnan(array).any(), name, f"{case}: {what} contains NaN")
    return array


def check_gradient_times_input(gradient_times_input: Callable[..., Any]) -> None:
    """Check ``gradient_times_input(model, x, target) -> tensor like x``: the signed gradient of the
    target logit (one target class per row) times the input, element by element."""
    name = "gradient_times_input"
    cases = []
    for seed, rows, target in ((0, 4, [0, 1, 2, 1]), (5, 3, [2, 2, 0])):
        x = torch.randn(rows, 5, generator=torch.Generator().manual_seed(seed))
        target = torch.tensor(target)
        model = _small_net(seed)
        expected = saliency(model, x, target=target, abs=False) * x
        unsigned = saliency(model, x, target=target) * x
        cases.append((seed, x, target, expected, unsigned))
    for index, (seed, x, target, expected, unsigned) in enumerate(cases, start=1):
        case = f"case {index} ({len(x)} rows, targets {target.tolist()})"
        got = call_learner(name, gradient_times_input, _small_net(seed), x, target)
        values = _as_values(name, got, tuple(x.shape), case, "the result")
        require(not np.allclose(values, unsigned.numpy(), atol=1e-5) or np.allclose(values, expected.numpy()),
                name, f"{case}: use the signed gradient (saliency with abs=False), not its absolute value")
        require_close(values, expected, name, case=case, tol=1e-5,
                      hint="multiply the gradient of each row's target logit by x, element by element")
    passed(name, "equals the signed gradient times the input in 2 cases")


def check_riemann_ig(riemann_ig: Callable[..., Any]) -> None:
    """Check ``riemann_ig(model, x, target, steps) -> tensor like x``: integrated gradients from a
    black baseline with the right Riemann sum, ``x * mean_k grad f(k / steps * x)``, for 1 and 8 steps."""
    name = "riemann_ig"
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([2, 0, 1])
    expected = {steps: integrated_gradients(_small_net(1), x, target=target, steps=steps, method="riemann_right")
                for steps in (2, 8)}
    expected[1] = saliency(_small_net(1), x, target=target, abs=False) * x
    for steps in (1, 8, 2):
        case = f"steps={steps}"
        got = call_learner(name, riemann_ig, _small_net(1), x, target, steps)
        values = _as_values(name, got, tuple(x.shape), case, "the result")
        hint = ("with one step the right Riemann sum evaluates the gradient at alpha = 1 only: it must equal "
                "gradient times input" if steps == 1 else
                f"use alpha = k / {steps} for k = 1..{steps}, average the gradients at alpha * x, multiply by x")
        require_close(values, expected[steps], name, case=case, tol=1e-5, hint=hint)
    passed(name, "equals integrated_gradients(method='riemann_right') for 1, 2 and 8 steps")


def _random_game(players: int, seed: int) -> dict[frozenset, float]:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(2 ** players, generator=generator, dtype=torch.float64).tolist()
    game = {}
    for index, coalition in enumerate(itertools.chain.from_iterable(
            itertools.combinations(range(players), k) for k in range(players + 1))):
        game[frozenset(coalition)] = 0.0 if not coalition else values[index]
    return game


def check_shapley_formula(shapley: Callable[[dict, int], Any]) -> None:
    """Check ``shapley(v, n) -> n numbers`` (a list, array or tensor) for a game ``v`` (a dict
    from frozenset coalitions of players ``0..n-1`` to their worth), on random games of 2, 3 and 4
    players."""
    name = "shapley_formula"
    cases = []
    for players, seed in ((2, 0), (3, 1), (4, 2)):
        game = _random_game(players, seed)
        expected = [
            sum(math.factorial(len(s)) * math.factorial(players - len(s) - 1) / math.factorial(players)
                * (game[s | {i}] - game[s]) for s in game if i not in s)
            for i in range(players)
        ]
        cases.append((players, game, expected))
    for players, game, expected in cases:
        case = f"a random game of {players} players"
        got = call_learner(name, shapley, game, players)
        values = _as_values(name, got, (players,), case, "the list of values")
        require(abs(values.sum() - game[frozenset(range(players))]) < 1e-9, name,
                f"{case}: the values add up to {values.sum():.4f}, not v(all players) - v(empty) = "
                f"{game[frozenset(range(players))]:.4f}: check the weights |S|! (n - |S| - 1)! / n!")
        require_close(values, expected, name, case=case, tol=1e-9,
                      hint="phi_i = sum over coalitions S without i of weight(|S|) * (v(S + i) - v(S))")
    passed(name, "exact for random games of 2, 3 and 4 players")


def check_permutation_shapley(permutation_shapley: Callable[..., Any]) -> None:
    """Check ``permutation_shapley(f, x, background, permutations, generator) -> (N, M) tensor``,
    Monte Carlo over random feature orders: with 200 permutations each row's values add up to
    ``f(x) - mean f(background)`` and lie within 0.05 of the exact Shapley values (2 cases)."""
    name = "permutation_shapley"
    cases = []
    for seed, features, rows in ((3, 4, 2), (4, 3, 3)):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(features, 6), nn.Tanh(), nn.Linear(6, 1)).double().eval()

        def f(z: torch.Tensor, net: nn.Module = net) -> torch.Tensor:
            with torch.no_grad():
                return net(z)[:, 0]

        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(rows, features, generator=generator, dtype=torch.float64)
        background = torch.randn(6, features, generator=generator, dtype=torch.float64)
        exact = shapley_values(f, x, background).values
        cases.append((f, x, background, exact, f(x) - f(background).mean()))
    worst = 0.0
    for index, (f, x, background, exact, total) in enumerate(cases, start=1):
        case = f"case {index} ({x.shape[0]} rows, {x.shape[1]} features)"
        got = call_learner(name, permutation_shapley, f, x, background, 200, torch.Generator().manual_seed(1))
        values = _as_values(name, got, tuple(x.shape), case, "the (N, M) values")
        require(np.allclose(values.sum(axis=1), total.numpy(), atol=1e-6), name,
                f"{case}: each row adds up to {np.round(values.sum(axis=1), 4)}, expected f(x) - mean "
                f"f(background) = {np.round(total.numpy(), 4)}: in each permutation credit every feature with "
                "the change of the mean output as it joins")
        error = float(np.abs(values - exact.numpy()).max())
        require(error < 0.05, name, f"{case}: the estimate is {error:.3f} away from the exact values "
                f"{np.round(exact.numpy(), 3).tolist()}: average over permutations, with absent features "
                "taken from each background row")
        worst = max(worst, error)
    passed(name, f"within {worst:.3f} of the exact Shapley values with 200 permutations, in 2 cases")


def check_linear_counterfactual(linear_counterfactual: Callable[..., Any]) -> None:
    """Check ``linear_counterfactual(w, b, x, scale) -> tensor like x``: for each row the closest point
    with ``w . x' + b = 0`` in the scaled L1 distance ``sum |x'_j - x_j| / scale_j``, which moves only
    the feature with the largest ``|w_j| * scale_j`` (2 cases)."""
    name = "linear_counterfactual"
    cases = []
    for seed, b in ((4, -1.0), (6, 0.5)):
        generator = torch.Generator().manual_seed(seed)
        w = torch.randn(5, generator=generator, dtype=torch.float64)
        scale = torch.rand(5, generator=generator, dtype=torch.float64) + 0.5
        x = torch.randn(6, 5, generator=generator, dtype=torch.float64)
        best = int((w.abs() * scale).argmax())
        expected = x.clone()
        expected[:, best] -= (x @ w + b) / w[best]
        cases.append((w, b, x, scale, best, expected))
    for index, (w, b, x, scale, best, expected) in enumerate(cases, start=1):
        case = f"case {index}"
        got = call_learner(name, linear_counterfactual, w, b, x, scale)
        values = _as_values(name, got, tuple(x.shape), case, "the counterfactuals")
        margin = values @ w.numpy() + b
        require(np.allclose(margin, 0, atol=1e-6), name,
                f"{case}: w . x' + b is {np.round(margin, 4).tolist()}; the counterfactual must lie on the "
                "decision boundary, w . x' + b = 0")
        moved = np.abs(values - x.numpy()) > 1e-9
        require(not moved[:, [j for j in range(5) if j != best]].any(), name,
                f"{case}: change only feature {best}, the one with the largest |w_j| * scale_j: it buys the most "
                "margin per unit of scaled distance")
        require_close(values, expected, name, case=case, tol=1e-6)
    passed(name, "moves the single best feature exactly to the boundary, in 2 cases")


def _sex_share_cases() -> list[tuple[torch.Tensor, list[int], float]]:
    cases = []
    for seed, rows, features, columns in ((0, 5, 6, [1, 4]), (1, 3, 4, [2]), (2, 8, 10, [0, 3, 9])):
        values = torch.randn(rows, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        magnitude = values.abs()
        expected = float((magnitude[:, columns].sum(dim=1) / magnitude.sum(dim=1)).mean())
        cases.append((values, columns, expected))
    return cases


def check_sex_share(sex_share: Callable[..., Any], values: torch.Tensor | None = None,
                    columns: list[int] | None = None) -> None:
    """Check ``sex_share(values, columns) -> float``: for each row of the Shapley values ``values``
    (N, M), the share ``sum_{i in columns} |phi_i| / sum_i |phi_i|``, averaged over rows, on 3 random
    tables of values (positive and negative) and column lists.

    The old form, ``check_sex_share(share, values, columns)`` with the number itself, still works for
    one release, with a ``FutureWarning``.
    """
    name = "sex_share"
    if not callable(sex_share) and values is not None and columns is not None:
        warnings.warn("check_sex_share(share, values, columns) is deprecated: write a function "
                      "sex_share(values, columns) and call check_sex_share(sex_share)", FutureWarning, stacklevel=2)
        magnitude = torch.as_tensor(values).abs()
        expected = float((magnitude[:, columns].sum(dim=1) / magnitude.sum(dim=1)).mean())
        require_close(as_number(sex_share, name), expected, name, tol=1e-4,
                      hint="for each applicant take sum(|phi| over the columns) / sum(|phi| over all), then "
                           "average over applicants")
        passed(name, f"{expected:.3f} of the attribution mass falls on these columns")
        return
    if not callable(sex_share):
        raise CheckFailed(f"{name}: expected a function sex_share(values, columns), got {type(sex_share).__name__}")
    for index, (table, cols, expected) in enumerate(_sex_share_cases(), start=1):
        case = f"case {index} ({table.shape[0]} rows, {table.shape[1]} attributes, columns {cols})"
        got = call_learner(name, sex_share, table, cols)
        share = as_number(got, name, "the share")
        require(not math.isnan(share), name, f"{case}: the share is NaN")
        require(0 <= share <= 1, name, f"{case}: the share is {share:.4f}, outside [0, 1]: take absolute values "
                "before summing")
        require_close(share, expected, name, case=case, what="the share", tol=1e-6,
                      hint="for each row take sum(|phi| over the columns) / sum(|phi| over all), then average "
                           "over rows (not the ratio of the totals)")
    passed(name, "equals the mean per-row share of |phi| in 3 cases")
