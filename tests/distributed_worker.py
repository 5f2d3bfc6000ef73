"""The ranks of ``tests/test_distributed.py`` (not collected by pytest; no test of its own).

Each rank joins the job with :func:`trustml_lab.distributed.process_group` from the variables
torchrun sets (``RANK``, ``WORLD_SIZE``, ...). The tests fork the ranks from the test process
(``torch.multiprocessing``, so that they inherit its imports: a fresh interpreter spends
seconds importing torch and Opacus on this machine); ``python -m torch.distributed.run
--standalone --nproc_per_node 2 tests/distributed_worker.py --case train --out r.json`` runs
the same job by hand.

``train`` runs every measurement the tests assert on, in one job, and rank 0 writes them to
``out`` as JSON: the gaps between the 2-process trainers and the single-process ones, the
measured noise, epsilon, the errors of mismatched launches. ``crash`` and ``stall`` make
rank 1 fail in the middle of DP-SGD (an exception; a hang): the job must end with an error.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from trustml_lab import distributed as D
from trustml_lab import privacy as P
from trustml_lab import robustness as R

DP = dict(noise_multiplier=1.0, max_grad_norm=0.5, sample_rate=0.1, epochs=2, lr=0.3, delta=1e-5, momentum=0.5,
          progress=False)


def tabular(n: int = 301, d: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0).long()


def mlp(d: int = 5) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 2))


def gap(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def rank_gap(model: nn.Module) -> float:
    """The largest difference between this rank's parameters and rank 0's."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return float((D._gather(flat) - flat).abs().max())


def error_of(call) -> str:
    try:
        call()
    except (ValueError, TypeError) as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def dp_gaps(x, y, rows) -> dict:
    out = {}
    for label, sigma in (("noise0", 0.0), ("noise1", 1.0)):
        for method in ("per_sample", "ghost"):
            kw = {**DP, "noise_multiplier": sigma, "method": method}
            ours = D.dp_fit(mlp(), x[rows], y[rows], generator=torch.Generator().manual_seed(3), **kw)
            single = P.dp_fit(mlp(), x, y, generator=torch.Generator().manual_seed(3), **kw)
            out[f"{label}_{method}"] = {"gap": gap(ours.model, single.model), "rank_gap": rank_gap(ours.model),
                                        "epsilon": ours.epsilon, "single_epsilon": single.epsilon,
                                        "steps": ours.steps, "single_steps": single.steps}
    out["epsilon_spent"] = P.epsilon_spent(noise_multiplier=1.0, sample_rate=DP["sample_rate"],
                                           steps=out["noise1_per_sample"]["steps"], delta=DP["delta"])
    return out


def measured_noise(rank: int) -> dict:
    """The noise per step, read from the parameters of a model whose gradients are all zero.

    With zero gradients SGD moves each parameter by ``-lr / B * (sum of the T steps' noise)``:
    ``-(after - before) * B / (lr * sqrt(T))`` are draws of the per-step noise.
    """
    n, d, classes, sigma, clip = 64, 250, 20, 1.5, 0.8
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(4))
    y = torch.zeros(n, dtype=torch.long)
    torch.manual_seed(5)
    model = nn.Linear(d, classes)
    before = [p.detach().clone() for p in model.parameters()]
    rows = D.shard(n)
    result = D.dp_fit(model, x[rows], y[rows], noise_multiplier=sigma, max_grad_norm=clip, sample_rate=0.5,
                      epochs=10, lr=1.0, delta=1e-5, loss_fn=lambda logits, y: logits.sum(1) * 0.0,
                      generator=torch.Generator().manual_seed(6), progress=False)
    expected_batch = int(0.5 * n)
    draws = torch.cat([(-(p.detach() - b) * expected_batch / math.sqrt(result.steps)).reshape(-1)
                       for p, b in zip(model.parameters(), before)]).double()
    return {"std": float(draws.std()), "mean": float(draws.mean()), "count": draws.numel(),
            "expected_std": sigma * clip, "rank_gap": rank_gap(model), "steps": result.steps}


def adversarial_gaps() -> dict:
    xi = torch.rand(130, 1, 3, 3, generator=torch.Generator().manual_seed(7))
    yi = (xi.flatten(1).sum(1) > 4.5).long()
    rows = D.shard(len(xi))

    def conv() -> nn.Module:
        torch.manual_seed(8)
        return nn.Sequential(nn.Conv2d(1, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))

    out = {}
    for method in ("fgsm", "fgsm_rs", "pgd"):
        ours, single = conv(), conv()
        kw = dict(method=method, eps=0.1, epochs=3, batch_size=32, lr=0.02, steps=3, progress=False)
        losses = D.fit_adversarial(ours, xi[rows], yi[rows], generator=torch.Generator().manual_seed(9), **kw)
        single_losses = R.fit_adversarial(single, xi, yi, generator=torch.Generator().manual_seed(9), **kw)
        out[method] = {"gap": gap(ours, single), "rank_gap": rank_gap(ours), "losses": losses,
                       "single_losses": single_losses, "training": ours.training}
    return out


def mismatches(rank: int, x, y, rows) -> dict:
    return {
        "sample_rate": error_of(lambda: D.dp_fit(mlp(), x[rows], y[rows], generator=torch.Generator().manual_seed(3),
                                                 **{**DP, "sample_rate": 0.1 + 0.1 * rank})),
        "generator": error_of(lambda: D.dp_fit(mlp(), x[rows], y[rows],
                                               generator=torch.Generator().manual_seed(rank), **DP)),
        "row_shape": error_of(lambda: D.fit_adversarial(nn.Linear(3 + rank, 2), torch.rand(8, 3 + rank),
                                                        torch.zeros(8, dtype=torch.long),
                                                        eps=0.1, epochs=1, batch_size=4, lr=0.1, progress=False)),
        "world_size": error_of(lambda: D.shard(10, world_size=3)),
    }


def train(out: str) -> None:
    with D.process_group(timeout=30) as worker:
        start = time.perf_counter()
        x, y = tabular()
        rows = D.shard(len(x))
        results = {"world_size": worker.world_size, "backend": worker.backend, "rows": [rows.start, rows.stop],
                   "dp": dp_gaps(x, y, rows), "noise": measured_noise(worker.rank),
                   "adversarial": adversarial_gaps(), "mismatch": mismatches(worker.rank, x, y, rows)}
        results["seconds"] = time.perf_counter() - start
        if worker.rank == 0:
            with open(out, "w") as file:
                json.dump(results, file, indent=1)


def fail(case: str, timeout: float) -> None:
    with D.process_group(timeout=timeout) as worker:
        x, y = tabular()
        rows = D.shard(len(x))
        calls = 0

        def loss_fn(logits, target):
            nonlocal calls
            calls += 1
            if worker.rank == 1 and calls == 3:
                if case == "crash":
                    raise RuntimeError("rank 1 fails on purpose")
                print(f"rank 1 stalls at {time.time():.1f}", flush=True)
                time.sleep(3600)  # stall: rank 0 waits in the all-reduce until the timeout
            return nn.functional.cross_entropy(logits, target, reduction="none")

        # no noise and the ghost path: no Opacus accountant and no torch.func to import, a quick start
        D.dp_fit(mlp(), x[rows], y[rows], loss_fn=loss_fn, generator=torch.Generator().manual_seed(3),
                 **{**DP, "epochs": 20, "noise_multiplier": 0.0, "method": "ghost"})


def run(case: str, out: str = "", timeout: float = 5.0) -> None:
    torch.set_num_threads(1)
    if case == "train":
        train(out)
    else:
        fail(case, timeout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("train", "crash", "stall"), required=True)
    parser.add_argument("--out", default="")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    run(args.case, args.out, args.timeout)
