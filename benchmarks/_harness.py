"""Side-by-side timing: our kernel against its reference, in one process.

A chapter file (``benchmarks/<chapter>.py``) defines ``cases() -> list[Case]``.
Each case times ``ours`` and ``reference`` the same way (warm-up calls, then
``repeats`` timed calls, median), checks that both give the same values, and
reports the speedup ``reference_time / ours_time`` against the case's target.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["Case", "Result", "machine_description", "median_time", "run_case"]


@dataclass(frozen=True)
class Case:
    """One comparison. ``min_speedup`` is the target for reference_time / ours_time.

    A target such as "PGD-10 at most 1.15 x 10 x FGSM" is written as ``ours=pgd10``,
    ``reference=fgsm`` and ``min_speedup=1 / 11.5``; ``target`` says it in words.
    ``check(ours_output, reference_output)`` raises if the two disagree.
    """

    name: str
    ours: Callable[[], Any]
    reference: Callable[[], Any]
    reference_name: str
    min_speedup: float | None = None
    target: str = ""
    check: Callable[[Any, Any], None] | None = None
    repeats: int = 5
    warmup: int = 1


@dataclass(frozen=True)
class Result:
    case: str
    reference_name: str
    ours_s: float
    reference_s: float
    speedup: float
    min_speedup: float | None
    target: str
    same_values: bool | None

    @property
    def meets_target(self) -> bool | None:
        return None if self.min_speedup is None else self.speedup >= self.min_speedup


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs; and its output."""
    output = None
    for _ in range(warmup):
        output = fn()
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


def run_case(case: Case) -> Result:
    ours_s, ours_out = median_time(case.ours, repeats=case.repeats, warmup=case.warmup)
    ref_s, ref_out = median_time(case.reference, repeats=case.repeats, warmup=case.warmup)
    same = None
    if case.check is not None:
        case.check(ours_out, ref_out)  # raises when the values differ
        same = True
    return Result(case.name, case.reference_name, ours_s, ref_s, ref_s / ours_s,
                  case.min_speedup, case.target, same)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {device}; "
            f"python {platform.python_version()}, torch {torch.__version__}")
