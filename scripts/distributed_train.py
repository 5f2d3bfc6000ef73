"""DP-SGD and adversarial training on several processes: ours and Opacus's, side by side.

Run it with torchrun (one thread per process on a CPU box)::

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        scripts/distributed_train.py --out results.json

or with plain ``python`` (a one-process world: the same code, ``world_size`` 1). On several
machines run the same command on every node with ``--nnodes N --node_rank K
--rdzv_backend c10d --rdzv_endpoint host0:29400`` instead of ``--standalone``; with GPUs the
ranks pick ``nccl`` and GPU ``LOCAL_RANK`` (see :mod:`trustml_lab.distributed`).

Every rank loads the same data and keeps its shard (:func:`trustml_lab.distributed.shard`):

- ``dp``: :func:`trustml_lab.distributed.dp_fit` on Adult (the MLP and recipe of notebook 4.2:
  noise multiplier 1.2, clipping norm 1.0, batches of 256 expected, SGD with momentum),
  one epoch; rank 0 saves the trained weights (safetensors) for the notebook to compare
  with a one-process run;
- ``opacus``: the same model and data with Opacus 1.6's distributed recipe,
  ``DifferentiallyPrivateDistributedDataParallel`` and ``PrivacyEngine.make_private``
  (Poisson sampling, a ``DistributedDPOptimizer`` that adds the noise on rank 0);
- ``adversarial``: :func:`trustml_lab.distributed.fit_adversarial` (FGSM with a random start,
  Wong et al. 2020, radius 0.1) on the course's MNIST split (4,000 training images) with an
  MLP, three epochs per ``--epochs``.

Rank 0 writes one JSON file: per trainer the world size, the seconds, epsilon, accuracies.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script; importing it (doctests) changes nothing
    sys.path.insert(0, str(ROOT))

TRAINERS = ("dp", "opacus", "adversarial")
#: Notebook 4.2's DP-SGD recipe.
SIGMA, CLIP, BATCH, LR, MOMENTUM, DELTA = 1.2, 1.0, 256, 0.5, 0.9, 1e-5


@functools.lru_cache(maxsize=1)
def adult(device):
    """Adult's official train and test parts, ``(x_train, y_train, x_test, y_test)``, loaded once."""
    import torch

    from trustml_lab.data import load_adult

    frame, data = load_adult(), load_adult(as_frame=False)

    is_train = torch.tensor((frame["split"] == "train").to_numpy())
    return (data.features[is_train].to(device), data.target[is_train].to(device),
            data.features[~is_train].to(device), data.target[~is_train].to(device))


def new_mlp(width: int, device, seed: int = 0):
    import torch

    from trustml_lab.models import MLP

    torch.manual_seed(seed)
    return MLP(width, hidden=(64, 32)).to(device)


def run_dp(worker, epochs: int, weights: str | None) -> dict:
    import torch

    from trustml_lab import distributed
    from trustml_lab.models import accuracy, save_weights

    x, y, x_test, y_test = adult(worker.device)
    rows = distributed.shard(len(x))
    sample_rate = 1 / math.ceil(len(x) / BATCH)  # Opacus's: one over the batches of an epoch
    model = new_mlp(x.shape[1], worker.device)
    start = time.perf_counter()
    result = distributed.dp_fit(model, x[rows], y[rows], noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                sample_rate=sample_rate, epochs=epochs, lr=LR, momentum=MOMENTUM, delta=DELTA,
                                method="ghost", generator=torch.Generator(device=worker.device).manual_seed(0),
                                progress=False)
    seconds = time.perf_counter() - start
    if weights and worker.rank == 0:
        save_weights(model, weights)
    return {"seconds": seconds, "epsilon": result.epsilon, "steps": result.steps, "sample_rate": sample_rate,
            "accuracy": accuracy(model, x_test, y_test), "rows_on_rank_0": rows.stop - rows.start}


def run_opacus(worker, epochs: int) -> dict:
    import torch
    import torch.nn.functional as F
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from torch.utils.data import DataLoader, TensorDataset

    from trustml_lab.models import accuracy

    x, y, x_test, y_test = adult(worker.device)
    model = DPDDP(new_mlp(x.shape[1], worker.device))  # copies rank 0's weights to every rank
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    engine = PrivacyEngine(accountant="rdp")
    # make_private: Poisson sampling over the whole data set, each rank its strided share
    model, optimizer, loader = engine.make_private(module=model, optimizer=optimizer,
                                                   data_loader=DataLoader(TensorDataset(x, y), batch_size=BATCH),
                                                   noise_multiplier=SIGMA, max_grad_norm=CLIP, poisson_sampling=True)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for data_x, data_y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(data_x), data_y).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "epsilon": engine.get_epsilon(delta=DELTA), "steps": len(loader) * epochs,
            "sample_rate": 1 / len(loader), "accuracy": accuracy(model._module.module, x_test, y_test)}


def run_adversarial(worker, epochs: int) -> dict:
    import torch
    from torch import nn

    from trustml_lab import distributed
    from trustml_lab.data import load_mnist_split
    from trustml_lab.models import MLP, accuracy
    from trustml_lab.robustness import fgsm

    x, x_test, y, y_test = (t.to(worker.device) for t in load_mnist_split())
    rows = distributed.shard(len(x))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), MLP(28 * 28, hidden=(128,), out_features=10)).to(worker.device)
    start = time.perf_counter()
    losses = distributed.fit_adversarial(model, x[rows], y[rows], method="fgsm_rs", eps=0.1, epochs=3 * epochs,
                                         batch_size=128, lr=2e-3,
                                         generator=torch.Generator(device=worker.device).manual_seed(0),
                                         progress=False)
    seconds = time.perf_counter() - start
    model.eval()
    x_adv = fgsm(model, x_test, y_test, eps=0.1)
    return {"seconds": seconds, "losses": losses, "clean_accuracy": accuracy(model, x_test, y_test),
            "fgsm_accuracy": accuracy(model, x_adv, y_test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file rank 0 writes")
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--weights", default=None, help="where rank 0 saves the DP model (safetensors)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a rank waits for the others")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                        help="default: nccl with CUDA (one GPU per rank), else gloo")
    args = parser.parse_args(argv)

    import torch

    import trustml_lab
    from trustml_lab import distributed

    trustml_lab.setup(seed=0, threads=int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore", module="opacus")  # secure RNG and the alpha range
    warnings.filterwarnings("ignore", message="Full backward hook")
    with distributed.process_group(backend=args.backend, timeout=args.timeout) as worker:
        results = {"world_size": worker.world_size, "backend": worker.backend, "threads": torch.get_num_threads()}
        for trainer in args.trainers:
            run = {"dp": lambda: run_dp(worker, args.epochs, args.weights),
                   "opacus": lambda: run_opacus(worker, args.epochs),
                   "adversarial": lambda: run_adversarial(worker, args.epochs)}[trainer]
            results[trainer] = run()
        if worker.rank == 0:
            Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
