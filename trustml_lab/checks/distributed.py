"""Self-checks for chapter 4.4, Beyond one process.

Each check runs the learner's function (:func:`~._core.call_learner`) on several cases and
compares it with the rule :func:`trustml_lab.distributed.dp_fit` follows, naming the case and
the learner's value when they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._core import as_number, call_learner, passed, require_close

__all__ = ["check_expected_global_batch", "check_noise_share_std"]


def check_noise_share_std(noise_share_std: Callable[..., Any]) -> None:
    """Check ``noise_share_std(noise_multiplier, max_grad_norm, world_size) -> number``.

    Another way to add DP-SGD's noise once: every rank adds an independent share before the
    all-reduce, and the shares must sum to :math:`\\mathcal N(0, \\sigma^2 C^2)`: each share
    has std :math:`\\sigma C / \\sqrt{W}` (variances add). The check compares three cases,
    then sums ``W`` seeded shares of the learner's std and measures the std of the sum.
    """
    name = "noise_share_std"
    cases = [(1.2, 1.0, 2, "sigma 1.2, C 1, 2 ranks"), (0.8, 2.0, 8, "sigma 0.8, C 2, 8 ranks"),
             (1.0, 0.5, 1, "one rank: the whole noise")]
    for sigma, clip, world_size, case in cases:
        got = as_number(call_learner(name, noise_share_std, sigma, clip, world_size), name)
        require_close(got, sigma * clip / math.sqrt(world_size), name, case=case, tol=1e-9,
                      hint="the shares are independent: their variances add up to (sigma C)^2, not their stds")
    sigma, clip, world_size = 1.5, 1.0, 4
    share = as_number(call_learner(name, noise_share_std, sigma, clip, world_size), name)
    draws = torch.randn(world_size, 200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    measured = float((share * draws).sum(0).std())
    passed(name, f"{world_size} shares of std {share:.4f} sum to noise of std {measured:.4f} "
                 f"(sigma C = {sigma * clip})")


def check_expected_global_batch(expected_global_batch: Callable[..., Any]) -> None:
    """Check ``expected_global_batch(shard_sizes, sample_rate) -> int``: what DP-SGD divides by.

    ``shard_sizes`` lists the rows of each rank; the answer is ``max(1, int(q * N))`` with
    ``N`` the rows of all ranks, as :func:`trustml_lab.distributed.dp_fit` and Opacus's
    ``make_private`` compute it, not a rank's own expected batch, nor a sum of per-rank
    roundings.
    """
    name = "expected_global_batch"
    cases = [([16_280, 16_281], 1 / 128, "Adult on 2 ranks, q = 1/128"),
             ([15, 15], 0.1, "2 ranks of 15 rows, q = 0.1: int(3.0), not int(1.5) + int(1.5)"),
             ([1000, 1000, 1000, 999], 0.05, "4 uneven ranks"),
             ([5, 5, 5], 0.01, "a tiny data set: at least 1")]
    for sizes, rate, case in cases:
        got = as_number(call_learner(name, expected_global_batch, list(sizes), rate), name)
        require_close(got, max(1, int(rate * sum(sizes))), name, case=case, tol=0,
                      hint="divide by the expected batch of the whole job: max(1, int(q * N)), N all the rows")
    passed(name, f"all {len(cases)} cases agree")
