"""trustml_lab.distributed: 2 processes (gloo, one thread each) against one.

The ranks are forked from the test process with ``torch.multiprocessing`` and join with
:func:`trustml_lab.distributed.process_group` from torchrun's variables (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), which the launcher sets as torchrun does;
forked, they inherit this process's imports (torch, Opacus, torch.func), where a fresh
interpreter per rank spends seconds on them here. One job (``tests/distributed_worker.py``'s
``train``) runs every measurement and writes JSON; the tests assert on it. Two more jobs
make rank 1 fail mid-run (an exception, a hang): the job must end with an error. Every job
runs under a wall-clock bound, so a hang fails the test instead of blocking the suite.
The shipped script runs under torchrun itself in notebook 4.4.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.multiprocessing.spawn import ProcessException

from trustml_lab import distributed as D
from trustml_lab import privacy as P

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributed_worker  # noqa: E402

pytestmark = pytest.mark.xdist_group("distributed")  # one worker runs the module's jobs once

JOB_TIMEOUT = 90  # seconds: a 2-process job still running by then hangs
GLOO_TIMEOUT = 5  # seconds: how long a rank waits for a stalled peer in a collective


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world_size: int, port: int, case: str, out: str, timeout: float) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed_worker.run(case, out, timeout)


def start(case: str, out: str = "") -> tuple[mp.ProcessContext, float]:
    """Fork the 2 ranks of ``case``; they run while the caller goes on."""
    context = mp.start_processes(_rank, args=(2, _free_port(), case, out, GLOO_TIMEOUT), nprocs=2, join=False,
                                 start_method="fork")
    return context, time.monotonic()


def finish(context: mp.ProcessContext, started: float) -> str:
    """``""`` when both ranks exit cleanly, else the error that ended the job (the other rank
    is then stopped). A job still running ``JOB_TIMEOUT`` s after its start is killed and
    fails the test: it hangs."""
    try:
        while not context.join(timeout=0.2):
            if time.monotonic() - started > JOB_TIMEOUT:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the 2-process job did not finish within {JOB_TIMEOUT} s: it hangs")
    except ProcessException as err:
        return f"{type(err).__name__}: {err}"
    return ""


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The module's three jobs, started together (two of them mostly wait: a timeout, a crash)."""
    # import Opacus's accountant and torch.func here, once, for the forked ranks to inherit
    P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.1, steps=20, delta=1e-5)
    P.per_sample_gradients(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    out = tmp_path_factory.mktemp("distributed") / "results.json"
    started = {"train": start("train", str(out)), "crash": start("crash"), "stall": start("stall")}
    yield out, started
    for context, _ in started.values():  # a test that failed early leaves no rank behind
        for process in context.processes:
            if process.is_alive():
                process.kill()


@pytest.fixture(scope="module")
def results(jobs):
    out, started = jobs
    error = finish(*started["train"])
    assert error == "", error[-3000:]
    return json.loads(out.read_text())


def test_distributed_runs_two_gloo_ranks(results):
    assert results["world_size"] == 2 and results["backend"] == "gloo"
    assert results["rows"] == [0, 301 // 2]  # rank 0's shard


@pytest.mark.parametrize("case", ["noise0_per_sample", "noise0_ghost"])
def test_distributed_dp_fit_without_noise_equals_one_process(results, case):
    """Same sampled batches (one mask over all rows), noise 0: parameters equal to 1e-6."""
    run = results["dp"][case]
    assert run["gap"] < 1e-6, run
    assert run["rank_gap"] == 0.0, "the ranks' models differ"
    assert run["steps"] == run["single_steps"] == 20


@pytest.mark.parametrize("case", ["noise1_per_sample", "noise1_ghost"])
def test_distributed_dp_fit_with_noise_equals_one_process(results, case):
    """With the same generator the noise is the same draws as one process adds: added once."""
    run = results["dp"][case]
    assert run["gap"] < 1e-6, run
    assert run["rank_gap"] == 0.0


def test_distributed_noise_per_step_has_std_sigma_c(results):
    """Zero gradients: the parameters move by the noise alone. Its measured std is sigma * C
    within 4 standard errors (the std of a sample std of m normal draws is about
    std / sqrt(2 (m - 1))), and far from what noise on each rank (sqrt(2) sigma C), summed
    copies (2 sigma C) or a division by the world size (sigma C / 2) would give."""
    noise = results["noise"]
    expected, m = noise["expected_std"], noise["count"]
    standard_error = expected / math.sqrt(2 * (m - 1))
    assert abs(noise["std"] - expected) < 4 * standard_error, noise
    assert abs(noise["mean"]) < 4 * expected / math.sqrt(m), noise
    for wrong in (math.sqrt(2) * expected, 2 * expected, expected / 2):
        assert abs(noise["std"] - wrong) > 20 * standard_error
    assert noise["rank_gap"] == 0.0, "the ranks added different noise"


def test_distributed_epsilon_equals_the_single_process_accountant(results):
    for case in ("noise1_per_sample", "noise1_ghost"):
        run = results["dp"][case]
        assert run["epsilon"] == run["single_epsilon"] == results["dp"]["epsilon_spent"]
    assert results["dp"]["epsilon_spent"] == P.epsilon_spent(noise_multiplier=1.0, sample_rate=0.1, steps=20,
                                                             delta=1e-5)
    assert math.isinf(results["dp"]["noise0_per_sample"]["epsilon"])


def test_distributed_fgsm_training_equals_one_process(results):
    """FGSM has no random start: 2 ranks with DDP train as one process on the same batches."""
    run = results["adversarial"]["fgsm"]
    assert run["gap"] < 1e-6, run
    assert run["losses"] == pytest.approx(run["single_losses"], abs=1e-6)
    assert run["rank_gap"] == 0.0 and run["training"]


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd"])
def test_distributed_adversarial_training_keeps_the_ranks_in_sync(results, method):
    """Random starts differ per rank (their own generator), so the run differs from one process's;
    DDP keeps both ranks' models identical, and the losses are those of the same recipe."""
    run = results["adversarial"][method]
    assert run["rank_gap"] == 0.0
    assert len(run["losses"]) == 3 and all(0 < v < 2 for v in run["losses"])
    assert run["losses"][0] == pytest.approx(run["single_losses"][0], abs=0.01)


@pytest.mark.parametrize("argument", ["sample_rate", "generator", "row_shape", "world_size"])
def test_distributed_refuses_a_mismatched_launch(results, argument):
    names = {"row_shape": "x (row dimension 0)"}
    message = results["mismatch"][argument]
    assert message.startswith(f"ValueError: {names.get(argument, argument)}"), message


@pytest.mark.parametrize("case", ["crash", "stall"])
def test_distributed_a_failing_rank_ends_the_job_with_an_error(jobs, case):
    """Rank 1 raises (crash) or hangs (stall) at its 3rd step: the job ends with an error, in time.

    A stalled rank is the hard case: rank 0 waits in the all-reduce until the gloo timeout
    (``GLOO_TIMEOUT`` s), raises, and the launcher then stops rank 1, as torchrun does.
    ``finish`` fails the test if the job still runs ``JOB_TIMEOUT`` s after its start."""
    error = finish(*jobs[1][case])
    # whichever rank the launcher hears from first: rank 1's own error, or rank 0 losing its peer
    expected = ("rank 1 fails on purpose", "by peer") if case == "crash" else ("timed out",)
    assert any(text in error.lower() for text in expected), error[-3000:]


# --------------------------------------------------------------------------- one process

def test_distributed_one_process_dp_fit_equals_privacy_dp_fit():
    torch.manual_seed(0)
    x = torch.randn(120, 4)
    y = (x[:, 0] > 0).long()
    kwargs = dict(noise_multiplier=1.0, max_grad_norm=0.5, sample_rate=0.2, epochs=2, lr=0.3, delta=1e-5,
                  momentum=0.5, progress=False)
    models = []
    for trainer in (P.dp_fit, D.dp_fit):
        torch.manual_seed(1)
        models.append(trainer(nn.Linear(4, 2), x, y, generator=torch.Generator().manual_seed(2), **kwargs).model)
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))


def test_distributed_shard_covers_the_rows_once():
    for n in (0, 1, 7, 100):
        for world_size in (1, 2, 3, 8):
            rows = [shard for rank in range(world_size)
                    for shard in range(n)[D.shard(n, rank=rank, world_size=world_size)]]
            assert rows == list(range(n))


def test_distributed_process_group_refuses_a_partial_environment(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    for name in D.ENVIRONMENT[1:]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="^process_group: the environment sets"):
        with D.process_group():
            pass
