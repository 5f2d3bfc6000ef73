"""Fairness chapter: our one-pass report and reweighing against aif360 and fairlearn.

Synthetic credit decisions with a biased base rate (30% vs 50% approvals) and an 80%
accurate classifier. aif360 is timed as its users run it: build the
``BinaryLabelDataset`` pair from a DataFrame, then ask the ``ClassificationMetric`` for
the same seven metrics. fairlearn is timed as a ``MetricFrame`` of the same per-group
rates. Reweighing is timed without dataset construction on aif360's side (its
``fit_transform`` on a ready dataset), the comparison least favourable to us.

At 10M rows aif360 still copes (about 30 s and 3 GB per report), so it stays the
reference there, without a target; fairlearn's ``MetricFrame`` is timed at 1M rows
only (about 40 s there, so several minutes per call at 10M). The last case uses the
group codes 0 and 50,000,000: our kernels re-index such codes with a sort instead of
counting by code (no target; it shows what the re-indexing costs).

Audits at scale (issue 13): the same report computed out of core, by
``fair.audit_parquet`` (DuckDB's ``GROUP BY`` over Parquet files, or a Polars lazy query),
against the in-memory kernel on the same rows: the tensors already in memory (the kernel's
own speed), and the files read into memory first with pyarrow (what an audit without an
engine has to do). 10M generated rows in 10 files in the regular run; rows/s is the row
count over the time. The 100-million-row run, with its peak resident memory, is a separate
command (it writes about 1 GB of Parquet to a temporary folder and takes minutes)::

    python -m benchmarks.fairness --audit-rows 100000000

It measures each engine in a fresh process (peak RSS from ``/usr/bin/time -f %M``) and writes its
table to the ``fairness_audit_at_scale`` section of ``benchmarks/RESULTS.md``.

``cases(smoke=True)`` gives the same cases at 2,000 and 5,000 rows, for the test suite.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from trustml_lab import fairness as fair

from ._harness import Case

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aif360.algorithms.preprocessing import Reweighing
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import ClassificationMetric

from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

PRIVILEGED, UNPRIVILEGED = [{"g": 1}], [{"g": 0}]
SPARSE_CODE = 50_000_000  # a group code far above the number of groups
RATES = ("selection_rate", "tpr", "fpr")


def _table(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n, dtype=np.int64)
    y_true = (rng.random(n) < 0.3 + 0.2 * group).astype(np.int64)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    return {"y_true": y_true, "y_pred": y_pred, "group": group}


def _ours_report(t: dict[str, torch.Tensor]) -> fair.FairnessReport:
    return fair.fairness_report(t["y_true"], t["y_pred"], t["group"], privileged=1)


def _aif_dataset(a: dict[str, np.ndarray]) -> BinaryLabelDataset:
    frame = pd.DataFrame({"g": a["group"].astype(np.float64), "y": a["y_true"].astype(np.float64)})
    return BinaryLabelDataset(df=frame, label_names=["y"], protected_attribute_names=["g"],
                              favorable_label=1, unfavorable_label=0)


def _aif_report(a: dict[str, np.ndarray], privileged: int = 1) -> dict[str, float]:
    truth = _aif_dataset(a)
    predicted = truth.copy(deepcopy=True)
    predicted.labels = a["y_pred"].astype(np.float64).reshape(-1, 1)
    m = ClassificationMetric(truth, predicted, unprivileged_groups=UNPRIVILEGED,
                             privileged_groups=[{"g": privileged}])
    return {
        "statistical_parity_difference": m.statistical_parity_difference(),
        "disparate_impact": m.disparate_impact(),
        "equal_opportunity_difference": m.equal_opportunity_difference(),
        "equal_opportunity_ratio": m.ratio(m.true_positive_rate),
        "average_odds_difference": m.average_odds_difference(),
        "equalized_odds_difference": m.equalized_odds_difference(),
        "predictive_parity_difference": m.difference(m.positive_predictive_value),
    }


def _fairlearn_frame(a: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = MetricFrame(
        metrics={"size": count, "selection_rate": selection_rate, "tpr": true_positive_rate,
                 "fpr": false_positive_rate},
        y_true=a["y_true"], y_pred=a["y_pred"], sensitive_features=a["group"],
    )
    return frame.by_group


def _check_scalars(ours: fair.FairnessReport, reference: dict[str, float]) -> None:
    for name, value in reference.items():
        np.testing.assert_allclose(getattr(ours, name), value, rtol=1e-9, err_msg=name)


def _check_table(ours: fair.FairnessReport, reference: pd.DataFrame) -> None:
    for column in ("size", *RATES):
        np.testing.assert_allclose(ours.groups[column].to_numpy(), reference[column].to_numpy(dtype=np.float64),
                                   rtol=1e-9, err_msg=column)


def _check_weights(ours: torch.Tensor, reference: BinaryLabelDataset) -> None:
    np.testing.assert_allclose(ours.cpu().numpy(), reference.instance_weights, rtol=1e-9)


def _reweighing_case(size: str, a: dict[str, np.ndarray], t: dict[str, torch.Tensor]) -> Case:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = _aif_dataset(a)
    reweighing = Reweighing(unprivileged_groups=UNPRIVILEGED, privileged_groups=PRIVILEGED)
    return Case(
        f"reweighing_weights, {size} rows", reference_name="aif360 Reweighing.fit_transform",
        ours=lambda: fair.reweighing_weights(t["y_true"], t["group"], privileged=1),
        reference=lambda: reweighing.fit_transform(dataset),
        check=_check_weights, min_speedup=20.0, target=">= 20x aif360", repeats=3,
    )


# --------------------------------------------------------------------------- audits at scale

AUDIT_COLUMNS = {"label": "y_true", "prediction": "y_pred", "group": "group", "weight": "weight"}
AUDIT_PRIVILEGED = [2, 3]


def _decision_log(n: int, seed: int) -> dict[str, np.ndarray]:
    """A generated decision log: four groups, group-dependent base rates and errors, census-like weights."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n, dtype=np.uint8)
    y_true = (rng.random(n, dtype=np.float32) < np.array([0.2, 0.3, 0.4, 0.5], np.float32)[group]).astype(np.int8)
    wrong = rng.random(n, dtype=np.float32) < np.array([0.25, 0.2, 0.15, 0.1], np.float32)[group]
    y_pred = np.where(wrong, 1 - y_true, y_true).astype(np.int8)
    return {"y_true": y_true, "y_pred": y_pred, "group": group, "weight": rng.gamma(2.0, 1.5, n)}


def write_decision_log(folder: Path, n: int, *, files: int, seed: int = 0) -> None:
    """``n`` generated rows in ``files`` Parquet files, one file generated at a time (bounded memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, files + 1).astype(np.int64)
    for part, (low, high) in enumerate(zip(bounds, bounds[1:])):
        table = pa.table(_decision_log(int(high - low), seed + part))
        pq.write_table(table, folder / f"part-{part:04d}.parquet", row_group_size=1 << 20)


def _read_decision_log(folder: Path) -> dict[str, torch.Tensor]:
    table = pq.read_table(folder)
    return {name: torch.from_numpy(table.column(name).to_numpy()) for name in AUDIT_COLUMNS.values()}


def _in_memory_report(t: dict[str, torch.Tensor]) -> fair.FairnessReport:
    return fair.fairness_report(t["y_true"], t["y_pred"], t["group"], privileged=AUDIT_PRIVILEGED,
                                sample_weight=t["weight"])


def _parquet_report(folder: Path, engine: str) -> fair.FairnessReport:
    return fair.audit_parquet(str(folder / "*.parquet"), **AUDIT_COLUMNS, privileged=AUDIT_PRIVILEGED,
                              engine=engine)


def _check_reports(ours: fair.FairnessReport, reference: fair.FairnessReport) -> None:
    np.testing.assert_allclose(ours.metrics().to_numpy(), reference.metrics().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(ours.groups.to_numpy(), reference.groups.to_numpy(), rtol=1e-9)


def _audit_cases(n: int, files: int, size: str) -> list[Case]:
    folder = Path(tempfile.mkdtemp(prefix="trustml-bench-audit-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_decision_log(folder, n, files=files, seed=2)
    in_memory = _read_decision_log(folder)
    where = f"{size} rows in {files} Parquet files"
    return [
        Case(f"audit_parquet (DuckDB), {where}", reference_name="fairness_report on tensors in memory",
             ours=lambda: _parquet_report(folder, "duckdb"), reference=lambda: _in_memory_report(in_memory),
             check=_check_reports, repeats=3),
        Case(f"audit_parquet (Polars), {where}", reference_name="fairness_report on tensors in memory",
             ours=lambda: _parquet_report(folder, "polars"), reference=lambda: _in_memory_report(in_memory),
             check=_check_reports, repeats=3),
        Case(f"audit_parquet (DuckDB), {where}", reference_name="pyarrow read_table + fairness_report",
             ours=lambda: _parquet_report(folder, "duckdb"),
             reference=lambda: _in_memory_report(_read_decision_log(folder)),
             check=_check_reports, repeats=3),
    ]


def cases(*, smoke: bool = False) -> list[Case]:
    """The cases at their sizes (1M and 10M rows), or at tiny sizes with ``smoke=True``."""
    n_small, n_large = (2_000, 5_000) if smoke else (1_000_000, 10_000_000)
    small = _table(n_small)
    small_t = {k: torch.from_numpy(v) for k, v in small.items()}
    large = _table(n_large, seed=1)
    large_t = {k: torch.from_numpy(v) for k, v in large.items()}
    sparse = {**small, "group": small["group"] * SPARSE_CODE}  # re-indexed with a sort, not a bincount
    sparse_t = {k: torch.from_numpy(v) for k, v in sparse.items()}
    size, big = ("2k", "5k") if smoke else ("1M", "10M")
    return [
        Case(f"fairness_report, {size} rows", reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: _ours_report(small_t), reference=lambda: _aif_report(small),
             check=_check_scalars, min_speedup=50.0, target=">= 50x aif360", repeats=3),
        Case(f"fairness_report, {size} rows", reference_name="fairlearn MetricFrame",
             ours=lambda: _ours_report(small_t), reference=lambda: _fairlearn_frame(small),
             check=_check_table, min_speedup=100.0, target=">= 100x fairlearn", repeats=1),
        _reweighing_case(size, small, small_t),
        Case(f"fairness_report, {big} rows", reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: _ours_report(large_t), reference=lambda: _aif_report(large),
             check=_check_scalars, repeats=1),
        _reweighing_case(big, large, large_t),
        Case(f"fairness_report, {size} rows, codes 0 and {SPARSE_CODE:,}",
             reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: fair.fairness_report(sparse_t["y_true"], sparse_t["y_pred"], sparse_t["group"],
                                               privileged=SPARSE_CODE),
             reference=lambda: _aif_report(sparse, privileged=SPARSE_CODE),
             check=_check_scalars, repeats=1),
        *_audit_cases(n_large, 2 if smoke else 10, big),
    ]


# --------------------------------------------------------------------------- 100M rows, peak memory

TIME = "/usr/bin/time"
#: What a fresh process runs for one measurement: only trustml_lab.fairness and the engine
#: imported (not this module, whose aif360 import alone takes about 1 GB), then one audit.
_CHILD = """
import json, sys, time
from trustml_lab import fairness as fair
engine, folder, columns, privileged = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
if engine != "none":
    __import__(engine)
    started = time.perf_counter()
    report = fair.audit_parquet(folder + "/*.parquet", **columns, privileged=privileged, engine=engine)
    print(json.dumps({"seconds": time.perf_counter() - started, "metrics": report.metrics().to_dict()}))
else:
    print(json.dumps({"seconds": 0.0}))
"""


def _measure(engine: str, folder: Path) -> dict:
    """One audit in a fresh process: its output and its peak resident memory.

    ``/usr/bin/time -f %M`` starts the process and reports its peak RSS: a process forked
    from this one directly would count this process's memory too (the peak survives
    ``exec``). ``engine="none"`` measures the baseline: Python, torch and trustml_lab
    imported, nothing run."""
    root = Path(__file__).resolve().parents[1]
    if not Path(TIME).exists():
        raise RuntimeError(f"{TIME} (GNU time) is needed to measure the peak memory of the audit")
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [TIME, "-f", "%M", sys.executable, "-c", _CHILD, engine, str(folder), json.dumps(AUDIT_COLUMNS),
               json.dumps(AUDIT_PRIVILEGED)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode:
        raise RuntimeError(f"the {engine} audit failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    result["peak_rss_mib"] = int(done.stderr.strip().splitlines()[-1]) / 1024  # kilobytes
    return result


def audit_at_scale(rows: int, folder: Path, *, files: int, keep: bool) -> str:
    """Write ``rows`` generated rows to ``folder`` (unless there already), audit them with each engine in a fresh
    process, time the in-memory kernel on 10M rows; return the RESULTS.md section."""
    marker = folder / "ROWS"
    if not (marker.exists() and marker.read_text() == str(rows)):
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        write_decision_log(folder, rows, files=files, seed=10)
        marker.write_text(str(rows))
        print(f"wrote {rows:,} rows in {files} files in {time.perf_counter() - started:.0f} s", flush=True)
    size_mib = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 2**20
    results = {engine: _measure(engine, folder) for engine in ("none", "duckdb", "polars")}
    duck, polars = results["duckdb"]["metrics"], results["polars"]["metrics"]
    if not np.allclose([duck[k] for k in duck], [polars[k] for k in duck], rtol=1e-8, atol=1e-9):
        raise AssertionError(f"the engines disagree: {results['duckdb']['metrics']} {results['polars']['metrics']}")
    sample = {k: torch.from_numpy(v) for k, v in _decision_log(10_000_000, 99).items()}
    times = []
    for _ in range(3):
        started = time.perf_counter()
        _in_memory_report(sample)
        times.append(time.perf_counter() - started)
    kernel_s = sorted(times)[1]
    lines = [
        "<!-- chapter:fairness_audit_at_scale -->",
        "## fairness: audits at scale",
        "",
        f"{datetime.date.today().isoformat()}; `python -m benchmarks.fairness --audit-rows {rows}`: {rows:,} generated "
        f"rows in {files} Parquet files ({size_mib:,.0f} MiB), each engine in a fresh process with its default "
        "settings (DuckDB: as many threads as cores); peak RSS of that process (`/usr/bin/time -f %M`), which includes "
        f"{results['none']['peak_rss_mib']:,.0f} MiB for Python, torch and trustml_lab alone.",
        "",
        "| engine | rows | seconds | rows/s | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for engine, name in (("duckdb", "audit_parquet, DuckDB"), ("polars", "audit_parquet, Polars")):
        seconds = results[engine]["seconds"]
        lines.append(f"| {name} | {rows:,} | {seconds:.2f} | {rows / seconds:,.0f} | "
                     f"{results[engine]['peak_rss_mib']:,.0f} |")
    lines.append(f"| fairness_report on tensors in memory (10M rows, median of 3) | 10,000,000 | {kernel_s:.3f} | "
                 f"{10_000_000 / kernel_s:,.0f} | - |")
    lines.append("<!-- end:fairness_audit_at_scale -->")
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the 100-million-row Parquet audit, with peak memory")
    parser.add_argument("--audit-rows", type=int, default=100_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "trustml-audit-at-scale")
    parser.add_argument("--keep", action="store_true", help="keep the Parquet files for the next run")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = parser.parse_args(argv)
    import trustml_lab

    from .__main__ import update_results

    trustml_lab.setup(seed=0)
    section = audit_at_scale(args.audit_rows, args.folder, files=args.files, keep=args.keep)
    print(section)
    if not args.no_write:
        update_results({"fairness_audit_at_scale": section})
    return 0


if __name__ == "__main__":
    sys.exit(main())
