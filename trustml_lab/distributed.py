"""Private and adversarial training on several processes, data-parallel (torch.distributed).

The same two trainers as chapters 2 and 4, for a job that outgrows one process: every
process (a *rank*) holds a contiguous shard of the training rows (:func:`shard`), and the
ranks meet once per step in a collective operation of ``torch.distributed``.

- :func:`dp_fit`: DP-SGD (Abadi et al. 2016) as :func:`trustml_lab.privacy.dp_fit`, from
  the same parts. At each step every rank Poisson-samples its shard with the *global*
  sample rate ``q``; the ranks all-reduce the sums of their clipped per-example gradients,
  so every rank holds :math:`\\sum_{i \\in B} \\bar g_i` over the global batch :math:`B`; the
  Gaussian noise :math:`\\mathcal N(0, \\sigma^2 C^2 I)` is added to that sum **once**; the
  result is divided by the expected *global* batch ``int(q * N)`` (``N`` the rows of all
  shards). The accountant sees the global ``q`` and the steps, so epsilon is the one of a
  single-process run of the same configuration. Every rank draws the Poisson mask of all
  ``N`` rows and the noise from a generator in the same state on every rank, keeps its own
  shard's part of the mask, and adds the same noise: the noise enters the model once, and
  the ranks stay identical without a broadcast. With the same seeded ``generator`` the
  trained parameters equal :func:`trustml_lab.privacy.dp_fit`'s on the concatenated shards
  (to float rounding of the all-reduce), noise included. Opacus's ``DistributedDPOptimizer``
  gets the same sum another way: rank 0 alone adds the noise before the all-reduce.
- :func:`fit_adversarial`: adversarial training as :func:`trustml_lab.robustness.fit_adversarial`
  (Adam; ``fgsm``, ``fgsm_rs``, ``pgd``). Each global batch of ``batch_size`` rows is drawn
  from a permutation of all ``N`` rows, the same on every rank; each rank attacks and runs
  its own rows of it, and ``DistributedDataParallel`` averages the gradients. Each rank's
  loss is scaled by ``world_size / batch`` so that the average is the global batch's mean
  loss, as one process computes it.
- :func:`process_group`: a context manager that joins the job started by ``torchrun``
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment), with ``nccl`` on CUDA and
  ``gloo`` otherwise (:func:`default_backend`), one GPU per rank (``cuda:LOCAL_RANK``), and a
  timeout for every collective: a rank that fails makes the others fail too, after at most
  ``timeout`` seconds, instead of hanging. Without torchrun's environment it runs a
  one-process world, so the same script runs with ``python`` too.

Without an initialized process group every function here runs as one process (rank 0 of
1), and :func:`dp_fit` and :func:`fit_adversarial` then train exactly as their
single-process namesakes. Importing this module initializes nothing.

Launching. On one machine with 2 processes (2 CPU cores here, one thread each; or 2 GPUs)::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 scripts/distributed_train.py

On several machines, the same script and command on every node, with the node's number,
the node count and one rendezvous address that all nodes reach (c10d is torchrun's own
rendezvous, nothing else to install)::

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 \\
        --rdzv_backend c10d --rdzv_endpoint host0.example:29400 scripts/distributed_train.py

The code picks ``nccl`` when CUDA is available; this course tests the ``gloo`` path on
CPUs (the ``nccl`` path is written, not tested here).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from . import privacy as _privacy
from . import robustness as _robustness
from ._validation import (
    check_generator,
    check_int,
    check_model,
    check_positive,
    describe,
    eval_mode,
    train_mode,
)
from .models import progress_enabled

__all__ = ["Worker", "default_backend", "dp_fit", "fit_adversarial", "process_group", "shard"]

BACKENDS = ("gloo", "nccl")
#: torchrun's variables that say "this process is one rank of a job".
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------- the process group

@dataclass(frozen=True)
class Worker:
    """What :func:`process_group` yields: this process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def default_backend() -> str:
    """``"nccl"`` when CUDA is available (one GPU per rank), else ``"gloo"`` (CPUs).

    >>> default_backend() in ("gloo", "nccl")
    True
    """
    return "nccl" if torch.cuda.is_available() else "gloo"


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _environment_int(name: str) -> int:
    raw = os.environ[name]
    if not raw.isdigit():
        raise ValueError(f"{name}: expected a whole number in the environment (torchrun sets it), got {raw!r}")
    return int(raw)


def process_group(*, backend: str | None = None, timeout: float = 300.0) -> AbstractContextManager[Worker]:
    """Join the job ``torchrun`` started: ``with process_group() as worker:``; leave it on exit.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from
    the environment (torchrun sets them) and calls ``torch.distributed.init_process_group``
    with ``backend`` (default :func:`default_backend`) and ``timeout`` seconds for every
    collective: if a rank dies or stalls, the others raise after at most that long instead
    of waiting forever (torchrun also stops the job as soon as one rank exits with an
    error). With ``nccl`` the rank uses GPU ``LOCAL_RANK``; with ``gloo``, the CPU. Without
    torchrun's environment it runs a one-process world (rank 0 of 1, a ``HashStore``, no
    network), so a script written for torchrun also runs with plain ``python``. The
    arguments and the environment are checked when it is called; the group is joined when
    the ``with`` block starts and left when it ends. Yields this rank's :class:`Worker`.

    >>> with process_group(timeout=30) as worker:
    ...     worker.rank, worker.world_size, worker.backend
    (0, 1, 'gloo')
    """
    if backend is None:
        backend = default_backend()
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {describe(backend)}")
    timeout = check_positive(timeout, "timeout")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend: 'nccl' needs CUDA, which is not available here; use 'gloo'")
    if not dist.is_available():
        raise ValueError("backend: this build of PyTorch has no torch.distributed")
    present = [name for name in ENVIRONMENT if name in os.environ]
    if present and len(present) < len(ENVIRONMENT):
        missing = [name for name in ENVIRONMENT if name not in os.environ]
        raise ValueError(f"process_group: the environment sets {present} but not {missing}; launch with torchrun")
    if present:
        rank, world_size = _environment_int("RANK"), _environment_int("WORLD_SIZE")
        local_rank = _environment_int("LOCAL_RANK")
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK: expected a rank in [0, WORLD_SIZE={world_size}), got {rank}")
    else:
        rank, world_size, local_rank = 0, 1, 0
    if backend == "nccl" and local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK: expected a GPU index below {torch.cuda.device_count()}, got {local_rank}")
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return _joined(Worker(rank, world_size, local_rank, device, backend), bool(present),
                   datetime.timedelta(seconds=timeout))


@contextmanager
def _joined(worker: Worker, from_environment: bool, timeout: datetime.timedelta) -> Iterator[Worker]:
    if dist.is_initialized():
        raise ValueError("process_group: a process group is initialized already; leave it first "
                         "(torch.distributed.destroy_process_group())")
    if worker.device.type == "cuda":
        torch.cuda.set_device(worker.device)
    if from_environment:
        dist.init_process_group(worker.backend, timeout=timeout)  # env:// from torchrun's variables
    else:
        dist.init_process_group(worker.backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    try:
        yield worker
    finally:
        dist.destroy_process_group()


def shard(n: int, *, rank: int | None = None, world_size: int | None = None) -> slice:
    """The rows ``[rank * n // world_size, (rank + 1) * n // world_size)`` of ``n``: rank's shard.

    Contiguous shards in rank order, which :func:`dp_fit` and :func:`fit_adversarial`
    expect (their sizes differ by at most one row). ``rank`` and ``world_size`` default to
    the process group's (0 and 1 without one); a ``world_size`` that disagrees with an
    initialized group's is refused.

    >>> [shard(10, rank=r, world_size=3) for r in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    n = check_int(n, "n", low=0)
    group_rank, group_size = _world()
    if world_size is None:
        world_size = group_size
    world_size = check_int(world_size, "world_size")
    if dist.is_available() and dist.is_initialized() and world_size != group_size:
        raise ValueError(f"world_size: expected the process group's size {group_size}, got {world_size}")
    if rank is None:
        rank = group_rank
    rank = check_int(rank, "rank", low=0, high=world_size - 1)
    return slice(rank * n // world_size, (rank + 1) * n // world_size)


# --------------------------------------------------------------------------- collectives

def _gather(values: torch.Tensor) -> torch.Tensor:
    """Every rank's ``values`` stacked, ``(world_size, *values.shape)``, on every rank."""
    _, world_size = _world()
    if world_size == 1:
        return values.unsqueeze(0)
    parts = [torch.empty_like(values) for _ in range(world_size)]
    dist.all_gather(parts, values.contiguous())
    return torch.stack(parts)


def _all_reduce_sum(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sum over ranks of every tensor, in one all-reduce of their concatenation."""
    if _world()[1] == 1:
        return dict(tensors)
    flat = torch.cat([t.reshape(-1) for t in tensors.values()])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, start = {}, 0
    for name, t in tensors.items():
        out[name] = flat[start:start + t.numel()].view_as(t)
        start += t.numel()
    return out


def _same_on_every_rank(settings: Mapping[str, float], device: torch.device) -> None:
    """Refuse settings that differ between ranks (a launch with mismatched arguments)."""
    if _world()[1] == 1:
        return
    values = torch.tensor(list(settings.values()), dtype=torch.float64, device=device)
    seen = _gather(values).cpu()
    for column, name in enumerate(settings):
        if not bool((seen[:, column] == seen[0, column]).all()):
            raise ValueError(f"{name}: expected the same value on every rank, got {seen[:, column].tolist()} "
                             "(rank 0, 1, ...)")


def _row_settings(x: torch.Tensor, model: nn.Module) -> dict[str, float]:
    """The shape of a row and the model's parameter count, as settings that must agree."""
    shape = list(x.shape[1:]) + [-1] * (8 - (x.ndim - 1))
    settings = {f"x (row dimension {i})": float(d) for i, d in enumerate(shape[:8])}
    settings["model (parameter count)"] = float(sum(p.numel() for p in model.parameters()))
    return settings


def _shard_sizes(n: int, device: torch.device) -> tuple[int, int]:
    """(rows on all ranks, this rank's first global row)."""
    rank, _ = _world()
    sizes = _gather(torch.tensor([n], dtype=torch.int64, device=device)).flatten().tolist()
    return sum(sizes), sum(sizes[:rank])


def _state_fingerprint(generator: torch.Generator) -> torch.Tensor:
    state = generator.get_state().to(torch.int64)
    return torch.stack([state.sum(), (state * torch.arange(len(state))).sum()]).to(torch.float64)


def _shared_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator in the same state on every rank: ``generator`` (checked), or a new one
    seeded by rank 0 from torch's global RNG."""
    if generator is None:
        seed = torch.randint(0, 2**62, (1,), dtype=torch.int64).to(device)
        if _world()[1] > 1:
            dist.broadcast(seed, src=0)
        return torch.Generator(device=device).manual_seed(int(seed))
    fingerprints = _gather(_state_fingerprint(generator).to(device)).cpu()
    if not bool((fingerprints == fingerprints[0]).all()):
        raise ValueError("generator: expected a generator in the same state on every rank (seed it alike on "
                         "every rank), got different states")
    return generator


def _broadcast_parameters(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (what DistributedDataParallel does at start)."""
    if _world()[1] == 1:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


# --------------------------------------------------------------------------- DP-SGD

def dp_fit(model: nn.Module, x, y, *, noise_multiplier: float, max_grad_norm: float, sample_rate: float,
           epochs: int, lr: float, delta: float, momentum: float = 0.0, method: str = "per_sample",
           loss_fn: _privacy.LossFn | None = None, accountant: str = "rdp",
           generator: torch.Generator | None = None, progress: bool = True) -> _privacy.DPTrainingResult:
    """DP-SGD on every rank's shard ``x, y``: :func:`trustml_lab.privacy.dp_fit`, data-parallel.

    Call it on every rank with the same arguments and that rank's rows (:func:`shard`);
    ``N`` is the number of rows of all shards. Each of the ``epochs * round(1 / q)`` steps:

    1. every rank draws the Poisson mask of all ``N`` rows (each in with probability
       ``q = sample_rate``) and keeps its shard's part;
    2. each rank takes the sum of its rows' clipped per-example gradients
       (``method="per_sample"`` or ``"ghost"``, as :func:`trustml_lab.privacy.private_gradient`);
    3. one all-reduce sums them over the ranks;
    4. the noise :math:`\\mathcal N(0, \\sigma^2 C^2)`, ``sigma = noise_multiplier``,
       ``C = max_grad_norm``, is added once, the same draw on every rank;
    5. the sum is divided by the expected global batch ``max(1, int(q * N))`` and every
       rank takes the same SGD step.

    The mask and the noise come from ``generator``, which must be in the same state on every
    rank (seed it alike; ``None``: rank 0 seeds one and sends the seed), so with the same
    seed the result equals :func:`trustml_lab.privacy.dp_fit` on the concatenated shards in
    rank order. Epsilon is Opacus's accountant's for the global ``q`` and the steps, the
    same as a single-process run. Rank 0's parameters are copied to every rank first (as
    ``DistributedDataParallel`` does). Refused before the first step: knobs, row shapes or
    parameter counts that differ between ranks, and generators in different states.
    Returns a :class:`trustml_lab.privacy.DPTrainingResult` (the same on every rank).

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(200, 4); y = (x[:, 0] > 0).long()
    >>> rows = shard(len(x))  # one process: all the rows
    >>> result = dp_fit(nn.Linear(4, 2), x[rows], y[rows], noise_multiplier=1.0, max_grad_norm=1.0,
    ...                 sample_rate=0.1, epochs=5, lr=0.5, delta=1e-5, progress=False)
    >>> result.steps, round(result.epsilon, 2)  # doctest: +NUMBER
    (50, 5.88)
    """
    noise_multiplier = _privacy._check_noise_multiplier(noise_multiplier)
    max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    sample_rate, delta = _privacy._check_sample_rate(sample_rate), _privacy._check_delta(delta)
    epochs = check_int(epochs, "epochs")
    lr = check_positive(lr, "lr")
    momentum = check_positive(momentum, "momentum", strict=False)
    _privacy._check_method(method)
    _privacy._check_accountant(accountant)
    params = _privacy._trainable(model)
    _privacy._check_no_batch_mixing(model, training=True)
    x, y = _privacy._model_batch(model, x, y, loss_fn)
    generator = check_generator(generator)
    _privacy._generator_on(generator, x.device)
    if method == "ghost":
        _privacy._ghost_layers(model)
    steps = _privacy._planned_steps(sample_rate, epochs)
    epsilon = _privacy.epsilon_spent(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                                     delta=delta, accountant=accountant)
    _same_on_every_rank({"noise_multiplier": noise_multiplier, "max_grad_norm": max_grad_norm,
                         "sample_rate": sample_rate, "epochs": epochs, "lr": lr, "delta": delta,
                         "momentum": momentum, "method": _privacy.METHODS.index(method),
                         "accountant": _privacy.ACCOUNTANTS.index(accountant), **_row_settings(x, model)}, x.device)
    n = len(x)
    total, offset = _shard_sizes(n, x.device)
    generator = _shared_generator(generator, x.device)
    _broadcast_parameters(model)
    expected_batch = max(1, int(sample_rate * total))
    std = noise_multiplier * max_grad_norm
    optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    with train_mode(model):
        for _ in tqdm(range(steps), desc="DP-SGD steps", disable=not progress_enabled(progress), leave=False):
            chosen = torch.rand(total, generator=generator, device=x.device)[offset:offset + n] < sample_rate
            index = chosen.nonzero().squeeze(1)
            if len(index):
                local = _privacy._clipped_sum(model, x[index], y[index], loss_fn, max_grad_norm, method)
            else:  # no row of this shard in the batch: it adds nothing to the sum
                local = {name: torch.zeros_like(p) for name, p in params.items()}
            summed = _all_reduce_sum(local)
            noised = _privacy._add_noise(summed, std, generator)  # once: the same draw on every rank
            _privacy._apply_private_gradient(params, noised, expected_batch)
            optimizer.step()
    return _privacy.DPTrainingResult(model, epsilon, delta, steps, noise_multiplier, sample_rate, accountant)


# --------------------------------------------------------------------------- adversarial training

def _attack_generator(generator: torch.Generator, rank: int) -> torch.Generator:
    """A generator for this rank's random starts, apart from the shared batch order."""
    seed = (generator.initial_seed() * 1_000_003 + rank + 1) % 2**63
    return torch.Generator(device=generator.device).manual_seed(seed)


def fit_adversarial(model: nn.Module, x, y, *, method: str = "fgsm_rs", eps: float, epochs: int, batch_size: int,
                    lr: float, alpha: float | None = None, steps: int = 7,
                    clamp: tuple[float, float] | None = (0.0, 1.0), generator: torch.Generator | None = None,
                    progress: bool = True) -> list[float]:
    """Adversarial training on every rank's shard: :func:`trustml_lab.robustness.fit_adversarial`
    with ``DistributedDataParallel``.

    Call it on every rank with the same arguments and that rank's rows (:func:`shard`).
    ``batch_size`` is the *global* batch. Each epoch, every rank draws the same permutation
    of all ``N`` rows from ``generator`` (in the same state on every rank; ``None``: rank 0
    seeds one) and cuts it into batches of ``batch_size``; each rank makes the adversarial
    examples of its own rows of the batch (``method``, ``eps``, ``alpha``, ``steps`` as in
    the single-process trainer; random starts from a generator of its own), and
    ``DistributedDataParallel`` averages the gradients of the losses
    ``sum(rank's losses) * world_size / batch``, which is the gradient of the global batch's
    mean loss; every rank then takes the same Adam step. Returns the mean adversarial loss
    of each epoch over all ``N`` rows (the same list on every rank). With one process and
    ``method="fgsm"`` (no random start) it trains exactly as the single-process trainer with
    the same generator. A BatchNorm computes its statistics per rank
    (``nn.SyncBatchNorm.convert_sync_batchnorm`` shares them). The model is left in the mode
    it came in, with rank 0's initial parameters trained on every rank.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(64, 1, 2, 2); y = (x.flatten(1).sum(1) > 2).long()
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> with process_group(timeout=30):
    ...     losses = fit_adversarial(model, x, y, eps=0.05, epochs=5, batch_size=16, lr=0.05,
    ...                              generator=torch.Generator().manual_seed(0), progress=False)
    >>> len(losses), losses[-1] < losses[0]
    (5, True)
    """
    eps, epochs, batch_size, lr, alpha, steps, clamp, progress = _robustness._adversarial_knobs(
        method, eps=eps, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, steps=steps, clamp=clamp,
        progress=progress)
    generator = check_generator(generator)
    with eval_mode(check_model(model)):
        x, y = _robustness._inputs(model, x, y, clamp)
    if generator is not None and generator.device != x.device and generator.device.type != "cpu":
        raise ValueError(f"generator: expected a generator on the CPU or on {x.device}, got one on {generator.device}")
    rank, world_size = _world()
    _same_on_every_rank({"method": _robustness.METHODS.index(method), "eps": eps, "epochs": epochs,
                         "batch_size": batch_size, "lr": lr, "alpha": alpha, "steps": steps,
                         "clamp (low)": -1.0 if clamp is None else clamp[0],
                         "clamp (high)": -1.0 if clamp is None else clamp[1], **_row_settings(x, model)}, x.device)
    n = len(x)
    total, offset = _shard_sizes(n, x.device)
    where = generator.device if generator is not None else torch.device("cpu")
    generator = _shared_generator(generator, where)
    attack_generator = generator if world_size == 1 else _attack_generator(generator, rank)
    if attack_generator.device != x.device:
        attack_generator = torch.Generator(device=x.device).manual_seed(attack_generator.initial_seed())
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [x.device.index] if x.device.type == "cuda" else None
        trained: nn.Module = DistributedDataParallel(model, device_ids=device_ids)  # broadcasts rank 0's weights
    else:
        trained = model
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[float] = []
    bar = tqdm(range(epochs), desc=f"{method} epochs", disable=not progress_enabled(progress), leave=False)
    with train_mode(model):
        for _ in bar:
            order = torch.randperm(total, generator=generator, device=where).to(x.device)
            epoch_loss = torch.zeros((), device=x.device)
            for batch in order.split(batch_size):
                mine = batch[(batch >= offset) & (batch < offset + n)] - offset
                x_batch, y_batch = x[mine], y[mine]
                if len(mine):  # the attack runs on the plain module: no gradient sync
                    x_batch = _robustness._adversarial_batch(model, x_batch, y_batch, method=method, eps=eps,
                                                             alpha=alpha, steps=steps, clamp=clamp,
                                                             generator=attack_generator)
                losses = F.cross_entropy(trained(x_batch), y_batch, reduction="none")
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() * (world_size / len(batch))).backward()  # DDP averages over the ranks
                optimizer.step()
                epoch_loss += losses.detach().sum()
            if world_size > 1:
                dist.all_reduce(epoch_loss, op=dist.ReduceOp.SUM)
            history.append(float(epoch_loss) / total)  # one host sync per epoch
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return history
