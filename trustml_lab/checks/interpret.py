"""Self-checks for chapter 3, Interpretability."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..interpret import integrated_gradients, saliency, shapley_values
from ._core import call_learner, passed, require

__all__ = [
    "check_gradient_times_input",
    "check_linear_counterfactual",
    "check_permutation_shapley",
    "check_riemann_ig",
    "check_shapley_formula",
    "check_sex_share",
]


def _small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()


def _as_result(name: str, got: Any, shape: tuple[int, ...]) -> torch.Tensor:
    require(isinstance(got, torch.Tensor), name, f"return a tensor, got {type(got).__name__}")
    require(tuple(got.shape) == shape, name, f"return one value per input element, shape {shape}, "
            f"got {tuple(got.shape)}")
    return got.detach()


def check_gradient_times_input(gradient_times_input: Callable[..., torch.Tensor]) -> None:
    """Check ``gradient_times_input(model, x, target)``: the signed gradient times the input."""
    name = "gradient_times_input"
    model, x = _small_net(0), torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 1])
    got = _as_result(name, call_learner(name, gradient_times_input, model, x, target), tuple(x.shape))
    expected = saliency(model, x, target, abs=False) * x
    require(not torch.allclose(got, saliency(model, x, target) * x) or torch.allclose(got, expected), name,
            "use the signed gradient (saliency with abs=False), not its absolute value")
    require(torch.allclose(got, expected, atol=1e-5), name,
            "multiply the gradient of the target logit (one target per row) by x, element by element")
    passed(name, "equals the signed gradient times the input on 4 examples")


def check_riemann_ig(riemann_ig: Callable[..., torch.Tensor]) -> None:
    """Check ``riemann_ig(model, x, target, steps)``: IG from a right Riemann sum, zero baseline."""
    name = "riemann_ig"
    model, x = _small_net(1), torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([2, 0, 1])
    for steps in (1, 8):
        got = _as_result(name, call_learner(name, riemann_ig, model, x, target, steps), tuple(x.shape))
        if steps == 1:
            require(torch.allclose(got, saliency(model, x, target, abs=False) * x, atol=1e-5), name,
                    "with one step the right Riemann sum evaluates the gradient at alpha = 1 only: "
                    "it must equal gradient times input")
            continue
        expected = integrated_gradients(model, x, target, steps=steps, method="riemann_right")
        require(torch.allclose(got, expected, atol=1e-5), name,
                f"with {steps} steps use alpha = k / steps for k = 1..steps, average the gradients "
                "at x * alpha and multiply by x")
    passed(name, "equals integrated_gradients(method='riemann_right') for 1 and 8 steps")


def _random_game(players: int, seed: int) -> dict[frozenset, float]:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(2 ** players, generator=generator, dtype=torch.float64).tolist()
    game = {}
    for index, coalition in enumerate(itertools.chain.from_iterable(
            itertools.combinations(range(players), k) for k in range(players + 1))):
        game[frozenset(coalition)] = 0.0 if not coalition else values[index]
    return game


def check_shapley_formula(shapley: Callable[[dict, int], Any]) -> None:
    """Check ``shapley(v, n) -> list of n values`` for a game ``v`` (frozenset -> value)."""
    name = "shapley_formula"
    for players, seed in ((2, 0), (3, 1), (4, 2)):
        game = _random_game(players, seed)
        got = call_learner(name, shapley, game, players)
        require(len(list(got)) == players, name, f"return one value per player ({players}), got {len(list(got))}")
        expected = [
            sum(math.factorial(len(s)) * math.factorial(players - len(s) - 1) / math.factorial(players)
                * (game[s | {i}] - game[s]) for s in game if i not in s)
            for i in range(players)
        ]
        require(abs(sum(got) - game[frozenset(range(players))]) < 1e-9, name,
                "the values must add up to v(all players) - v(empty): check the weights "
                "|S|! (n - |S| - 1)! / n!")
        require(all(abs(a - b) < 1e-9 for a, b in zip(got, expected)), name,
                f"for {players} players the values differ: sum over coalitions S without i of "
                "weight(|S|) * (v(S + i) - v(S))")
    passed(name, "exact for random games of 2, 3 and 4 players")


def check_permutation_shapley(permutation_shapley: Callable[..., torch.Tensor]) -> None:
    """Check ``permutation_shapley(f, x, background, permutations, generator)``, Monte Carlo."""
    name = "permutation_shapley"
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double().eval()
    f = lambda z: net(z)[:, 0]  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    background = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    exact = shapley_values(f, x, background)
    got = call_learner(name, permutation_shapley, f, x, background, 200, torch.Generator().manual_seed(1))
    got = _as_result(name, torch.as_tensor(got, dtype=torch.float64), (2, 4))
    with torch.no_grad():
        total = f(x) - f(background).mean()
    require(torch.allclose(got.sum(dim=1), total, atol=1e-6), name,
            "each permutation's contributions add up to f(x) - mean f(background): add a feature's "
            "marginal contribution as it joins, in permutation order")
    error = float((got - exact.values).abs().max())
    require(error < 0.05, name, f"the estimate is {error:.3f} away from the exact values: average over "
            "permutations, with absent features taken from each background row")
    passed(name, f"within {error:.3f} of the exact Shapley values with 200 permutations")


def check_linear_counterfactual(linear_counterfactual: Callable[..., torch.Tensor]) -> None:
    """Check ``linear_counterfactual(w, b, x, scale)``: the closest point with ``w . x' + b = 0``.

    Closest in the scaled L1 distance ``sum |x'_j - x_j| / scale_j``: all of the
    change goes to the feature with the largest ``|w_j| * scale_j``.
    """
    name = "linear_counterfactual"
    generator = torch.Generator().manual_seed(4)
    w, scale = torch.randn(5, generator=generator, dtype=torch.float64), torch.rand(5, generator=generator,
                                                                                 dtype=torch.float64) + 0.5
    b = -1.0
    x = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    got = call_learner(name, linear_counterfactual, w, b, x, scale)
    got = _as_result(name, torch.as_tensor(got, dtype=torch.float64), tuple(x.shape))
    require(torch.allclose(got @ w + b, torch.zeros(6, dtype=torch.float64), atol=1e-6), name,
            "the counterfactual must lie on the decision boundary, w . x' + b = 0")
    best = int((w.abs() * scale).argmax())
    moved = (got - x).abs() > 1e-9
    require(not moved[:, [j for j in range(5) if j != best]].any(), name,
            "change only the feature with the largest |w_j| * scale_j: it buys the most margin per "
            "unit of scaled distance")
    passed(name, "moves the single best feature exactly to the boundary")


def check_sex_share(share: float, values: torch.Tensor, columns: list[int]) -> None:
    """Check the share of total |Shapley value| that falls on ``columns``, averaged over rows."""
    name = "sex_share"
    require(isinstance(share, (float, int)) or (isinstance(share, torch.Tensor) and share.numel() == 1),
            name, f"return one number, got {type(share).__name__}")
    magnitude = values.abs()
    expected = float((magnitude[:, columns].sum(dim=1) / magnitude.sum(dim=1)).mean())
    require(abs(float(share) - expected) < 1e-4, name,
            "for each applicant take sum(|phi| over the columns) / sum(|phi| over all), then average "
            f"over applicants; got {float(share):.4f}")
    passed(name, f"{expected:.3f} of the attribution mass falls on these columns")
