"""Chapter 6 benchmarks: the trust report's bootstrap intervals, batched, against a loop.

Target (issue 11): bootstrap confidence intervals for the report (1,000 resamples, the Adult
test split, two protected attributes) at least 20x faster than a loop of
``fairness_report`` calls on the same resampled rows, with the same numbers (every
interval bound equal to within 1e-12).

Both sides use the same 1,000 resamples of the 15,060 rows. ``bootstrap_metrics`` draws each
resample's counts of the 16 cells (sex x race x label x prediction): Multinomial(n, cell
sizes / n), which is how many rows of each cell n uniform draws with replacement pick
(``tests/test_report.py`` checks the distribution exactly). The loop gets rows that realize
those counts, each drawn uniformly within its cell (``report._resampled_rows``): together,
an ordinary row bootstrap. It then calls :func:`trustml_lab.fairness.fairness_report` once
per resample and attribute (and computes the accuracy), as a report built one resample at a
time would; the rows are drawn before the clock starts.

Measured on the quiet 2-core test machine, one thread (2026-12-01, see ``RESULTS.md``): ours
0.030 s, the loop 6.3 s, **210x**, the same intervals. The previous version drew the
``(1000, n)`` row indices (``torch.randint``, 0.2 s for 15 million indices, shared with the
loop) and counted them with a chunked ``scatter_add`` and a matrix product: 0.31 s, 19.0x.
Drawing the cell counts costs O(cells) per resample instead of O(n) and gives the same
bootstrap distribution; it is another draw, so the intervals moved by Monte Carlo error (the
shipped report was rebuilt).
"""

from __future__ import annotations

import numpy as np
import torch

from trustml_lab import fairness, report
from trustml_lab.models import predict

from ._harness import Case

RESAMPLES = 1000
CONFIDENCE = 0.95


def _adult_decisions(rows: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from reference_models.production import adult_frame

    bundle = report.load_credit_model()
    frame, train = adult_frame()
    test = frame[~train].reset_index(drop=True)
    if rows is not None:
        test = test.iloc[:rows]
    x = bundle.schema.encode_frame(test)
    y = torch.tensor(test["income"].to_numpy())
    return y, predict(bundle.model, x), bundle.schema.groups_frame(test)


def _resamples(y, p, groups, n_bootstrap):
    """The row indices ``(n_bootstrap, n)`` of the resamples ``bootstrap_metrics`` draws from seed 0."""
    keys = torch.stack([*groups.values(), y, p], dim=1)
    _, inverse, counts = report._bootstrap_cells(keys, n_bootstrap, torch.Generator().manual_seed(0))
    return report._resampled_rows(inverse, counts, torch.Generator().manual_seed(1))


def _loop(y, p, groups, index):
    """The reference: one fairness_report per resample and attribute, then the same percentiles."""
    draws = {"accuracy": {"accuracy": []}}
    draws.update({a: {m: [] for m in report.REPORT_METRICS} for a in groups})
    for i in index:
        yi, pi = y[i], p[i]
        draws["accuracy"]["accuracy"].append(float((yi == pi).double().mean()))
        for attribute, code in groups.items():
            r = fairness.fairness_report(yi, pi, code[i], privileged=1)
            for m in report.REPORT_METRICS:
                draws[attribute][m].append(getattr(r, m))
    q = [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]
    return {a: {m: tuple(np.quantile(np.array(v)[np.isfinite(v)], q)) for m, v in ms.items()}
            for a, ms in draws.items()}


def cases(*, smoke: bool = False) -> list[Case]:
    rows, resamples = (300, 20) if smoke else (None, RESAMPLES)
    y, p, groups = _adult_decisions(rows)
    index = _resamples(y, p, groups, resamples)

    def ours():
        return report.bootstrap_metrics(y, p, groups, n_bootstrap=resamples, confidence=CONFIDENCE,
                                        generator=torch.Generator().manual_seed(0))

    def same(batched, looped):
        for attribute, metrics in looped.items():
            for metric, (low, high) in metrics.items():
                est = batched[attribute][metric]
                np.testing.assert_allclose([est.low, est.high], [low, high], rtol=0, atol=1e-12,
                                           err_msg=f"{attribute} {metric}")

    n = len(y)
    return [Case(f"bootstrap CIs, {resamples} resamples x {n} Adult rows, sex and race", ours=ours,
                 reference=lambda: _loop(y, p, groups, index), reference_name="loop of fairness_report",
                 min_speedup=20.0, target=">= 20x faster than a loop of fairness_report, same intervals",
                 check=same, repeats=1 if smoke else 3)]


# --------------------------------------------------------------------------- the service's latency (part C)

def serving_latency(**options):
    """``/predict`` p50/p95 and ``/explain`` p95 (ms) under 50 concurrent clients against a real uvicorn
    process; targets ``/predict`` p95 <= 20 ms, ``/explain`` p95 <= 200 ms. Not a ratio against a
    reference, so not a :class:`Case`: run ``python -m benchmarks._serving`` (see ``benchmarks/_serving.py``)."""
    from ._serving import measure

    return measure(**options)
