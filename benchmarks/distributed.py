"""Chapter 4.4 benchmarks: 2 processes against 1 at the same global batch.

``ours`` trains with :mod:`trustml_lab.distributed` on 2 ranks (gloo, one thread each),
``reference`` with the single-process trainer on one thread, on the same rows, seed and
global batch; the speedup is the throughput ratio of 2 processes to 1. The ranks are
forked from the benchmark's process (``torch.multiprocessing``, so they inherit its
imports) and join with ``trustml_lab.distributed.process_group`` as under torchrun; the
timing includes the fork and the joining (a fraction of a second), not an interpreter
start. Both sides end with the same weights, which ``check`` compares: to float rounding
for DP-SGD (the all-reduce sums in another order), to a few ``lr`` for Adam (see
``ADAM_TOLERANCE``).

- DP-SGD: :func:`trustml_lab.distributed.dp_fit` vs :func:`trustml_lab.privacy.dp_fit` on
  Adult's MLP (notebook 4.2's recipe, per-example gradients), batches of 512 expected;
- FGSM adversarial training: :func:`trustml_lab.distributed.fit_adversarial` vs
  :func:`trustml_lab.robustness.fit_adversarial` (``method="fgsm"``: no random start, so the
  two give the same weights) on the MNIST split with an MLP, batches of 256.

The caveat: this is a 2-core machine, shared, so 2 processes can at best be 2x faster
(expect about 1.6-1.9x: the all-reduce, and the Python work each rank repeats, do not
shrink), and less when other jobs take a core. No target is set: the ratio describes the
machine, not the code. ``cases(smoke=True)``: the same cases on a few rows and steps.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

from trustml_lab import distributed, privacy, robustness
from trustml_lab.data import load_adult, load_mnist_split
from trustml_lab.models import MLP, load_weights, save_weights

from ._harness import Case

SEED = 0
#: Adam divides by the root of its second moment, so the all-reduce's rounding, on a weight
#: whose gradient is near 0, can move it by up to ``lr`` (1e-3) in a step: weights agree to
#: a few ``lr``, not to float rounding, after many steps.
ADAM_TOLERANCE = 5e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, train, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.process_group(backend="gloo", timeout=120):
        model = train(distributed.shard)
        if rank == 0:
            save_weights(model, out)


def _two_processes(train, new_model) -> dict[str, torch.Tensor]:
    """``train(shard) -> model`` on 2 forked ranks; rank 0's trained weights."""
    import opacus.accountants  # noqa: F401 - imported once here, for both ranks to inherit
    import torch.func  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "model.safetensors")
        mp.start_processes(_rank, args=(_free_port(), train, out), nprocs=2, join=True, start_method="fork")
        return load_weights(new_model(), out).state_dict()


def _one_process(train) -> dict[str, torch.Tensor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(lambda n: slice(0, n)).state_dict()
    finally:
        torch.set_num_threads(threads)


def _same_weights(tol: float):
    def check(ours: dict, reference: dict) -> None:
        gap = max(float((ours[k] - reference[k]).abs().max()) for k in reference)
        if gap > tol:
            raise AssertionError(f"2 processes and 1 trained different weights: largest gap {gap:.2e} > {tol:g}")
    return check


def _dp_case(smoke: bool) -> Case:
    frame, data = load_adult(), load_adult(as_frame=False)
    is_train = torch.tensor((frame["split"] == "train").to_numpy())
    x, y = data.features[is_train], data.target[is_train]
    if smoke:
        x, y = x[:400], y[:400]
    batch = 32 if smoke else 512
    rate = batch / len(x)
    epochs = 1

    def new_model() -> nn.Module:
        torch.manual_seed(SEED)
        return MLP(x.shape[1], hidden=(64, 32))

    def train(trainer):
        def run(shard) -> nn.Module:
            rows = shard(len(x))
            model = new_model()
            trainer(model, x[rows], y[rows], noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=rate,
                    epochs=epochs, lr=0.5, momentum=0.9, delta=1e-5,
                    generator=torch.Generator().manual_seed(SEED), progress=False)
            return model
        return run

    steps = epochs * round(1 / rate)
    return Case(f"DP-SGD, Adult MLP, {steps} steps of {batch} expected: 2 processes vs 1",
                ours=lambda: _two_processes(train(distributed.dp_fit), new_model),
                reference=lambda: _one_process(train(privacy.dp_fit)),
                reference_name="privacy.dp_fit, 1 process", target="about 1.6-1.9x on 2 free cores (no target)",
                check=_same_weights(1e-4), repeats=1 if smoke else 3)


def _adversarial_case(smoke: bool) -> Case:
    x, _, y, _ = load_mnist_split()
    if smoke:
        x, y = x[:64], y[:64]
    batch = 16 if smoke else 256

    def new_model() -> nn.Module:
        torch.manual_seed(SEED)
        return nn.Sequential(nn.Flatten(), MLP(28 * 28, hidden=(256, 128), out_features=10))

    def train(trainer):
        def run(shard) -> nn.Module:
            rows = shard(len(x))
            model = new_model()
            trainer(model, x[rows], y[rows], method="fgsm", eps=0.1, epochs=2, batch_size=batch, lr=1e-3,
                    generator=torch.Generator().manual_seed(SEED), progress=False)
            return model
        return run

    return Case(f"FGSM adversarial training, MNIST MLP, 2 epochs of {len(x)} in batches of {batch}: "
                "2 processes vs 1",
                ours=lambda: _two_processes(train(distributed.fit_adversarial), new_model),
                reference=lambda: _one_process(train(robustness.fit_adversarial)),
                reference_name="robustness.fit_adversarial, 1 process",
                target="about 1.6-1.9x on 2 free cores (no target)", check=_same_weights(ADAM_TOLERANCE),
                repeats=1 if smoke else 3)


def cases(*, smoke: bool = False) -> list[Case]:
    return [_dp_case(smoke), _adversarial_case(smoke)]
