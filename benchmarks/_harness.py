"""Side-by-side timing: our kernel against its reference, in one process.

A chapter file (``benchmarks/<chapter>.py``) defines ``cases(*, smoke=False) -> list[Case]``;
``smoke=True`` gives the same cases at a tiny size, which the test suite runs once each
(values compared, no timing target) so that a benchmark can never rot unnoticed.
Each case times ``ours`` and ``reference`` the same way (warm-up calls, then
``repeats`` timed calls of each, alternating, medians), checks that both give the same values, and
reports the speedup ``reference_time / ours_time`` against the case's target.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

__all__ = ["Case", "Result", "machine_description", "run_case"]


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


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    output = fn()
    _sync()
    return time.perf_counter() - start, output


def run_case(case: Case, *, smoke: bool = False) -> Result:
    """Time ours and the reference alternately (after warm-up), so that a change in the
    machine's load between the two does not bias the ratio; compare medians.

    ``smoke=True`` runs each side once, without warm-up, to check values only."""
    if smoke:
        case = replace(case, repeats=1, warmup=0)
    for _ in range(case.warmup):
        case.ours()
        case.reference()
    ours_times, ref_times = [], []
    ours_out = ref_out = None
    for _ in range(case.repeats):
        seconds, ours_out = _timed(case.ours)
        ours_times.append(seconds)
        seconds, ref_out = _timed(case.reference)
        ref_times.append(seconds)
    ours_s, ref_s = statistics.median(ours_times), statistics.median(ref_times)
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
