"""trustml_lab.fairness: group metrics, the report and its gate, reweighing, the penalty, the
adversarial debiaser, group thresholds, and the audits at scale (confusion counts, their
report, the SQL, the Parquet audits on DuckDB and Polars).

Small tables (a few dozen rows), so the whole table runs in seconds. Several valid calls
use a group code of 50,000,000: the kernels re-index codes, so they must answer within
the timeout without allocating by the largest code. The Parquet calls read small files
written once per process to a temporary folder (removed at exit).
"""

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from api_tables import Bad
from trustml_lab import fairness as fair

MODULE = fair

BIG = 50_000_000  # a group code far above the number of groups


def _table(n=24, big=False):
    """Labels, predictions, group codes (0/1, or 0/BIG), weights: every cell occupied."""
    g = torch.Generator().manual_seed(0)
    group = torch.arange(n) % 2
    y_true = (torch.arange(n) // 2) % 2
    flip = torch.rand(n, generator=g) < 0.3
    y_pred = torch.where(flip, 1 - y_true, y_true)
    weights = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return y_true, y_pred, group * BIG if big else group, weights


def _metric(big=False, float_group=False):
    y_true, y_pred, group, weights = _table(big=big)
    if float_group:
        group = group.double()
    return lambda: ((y_true, y_pred, group), {"privileged": BIG if big else 1, "sample_weight": weights})


def _report():
    y_true, y_pred, group, _ = _table()
    return fair.fairness_report(y_true, y_pred, group, privileged=1)


def _xyg(n=32, big=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    group = (x[:, 0] > 0).long()
    return x, (x[:, 1] + x[:, 0] > 0).long(), group * BIG if big else group


_DEBIASER = dict(hidden=(4,), adversary_hidden=(4,), alpha=1.0, warmup_epochs=1, epochs=np.int64(1),
                 batch_size=8, lr=0.01, seed=0, progress=False)


def _fitted():
    return fair.AdversarialDebiaser(**_DEBIASER).fit(*_xyg())


def _scores():
    y_true, _, group, weights = _table()
    return weights / 2, y_true, group


def _counts():
    y_true, y_pred, group, weights = _table(big=True)
    return fair.group_confusion_counts(y_true, y_pred, group, sample_weight=weights)


def _raw_counts(**changes):
    """The fields of a small ConfusionCounts (codes 0 and 3), with ``changes``."""
    counts = torch.tensor([[[1.0, 2.0], [0.5, 3.0]], [[2.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)
    fields = {"codes": torch.tensor([0, 3]), "counts": counts, "rows": torch.tensor([4, 3])}
    return (), {**fields, **changes}


def _empty_counts():
    nothing = torch.zeros(0, dtype=torch.long)
    return fair.ConfusionCounts(nothing, torch.zeros(0, 2, 2), nothing)


@cache
def _parquet_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="trustml-api-table-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    y_true, y_pred, group, weights = _table()
    good = {"y": y_true.numpy().astype(np.int8), "p": y_pred.numpy().astype(bool), "g": group.numpy() * BIG,
            "w": weights.numpy()}
    for part in range(2):
        pq.write_table(pa.table({k: v[part::2] for k, v in good.items()}), folder / f"part-{part}.parquet")
    bad = {
        "label_2": {**good, "y": np.where(good["y"] == 1, 2, 0)},
        "null_prediction": {**good, "p": pa.array([None] + good["p"][1:].tolist())},
        "nan_weight": {**good, "w": np.concatenate([[np.nan], good["w"][1:]])},
        "negative_weight": {**good, "w": -good["w"]},
        "string_group": {**good, "g": np.array(["a", "b"] * 12)},
        "null_group": {**good, "g": pa.array([None] + good["g"][1:].tolist())},
        "one_group": {**good, "g": np.zeros(24, dtype=np.int64)},
        "empty": {k: v[:0] for k, v in good.items()},
    }
    for name, table in bad.items():
        pq.write_table(pa.table(table), folder / f"bad-{name}.parquet")
    return folder


_COLUMNS = {"label": "y", "prediction": "p", "group": "g"}


def _parquet(which="part-*", **changes):
    def build():
        return (str(_parquet_folder() / f"{which}.parquet"),), {**_COLUMNS, "privileged": BIG, **changes}
    return build


def _parquet_counts(which="part-*", **changes):
    def build():
        return (str(_parquet_folder() / f"{which}.parquet"),), {**_COLUMNS, **changes}
    return build


VALID = {
    "statistical_parity_difference": _metric(float_group=True),
    "disparate_impact": _metric(),
    "equal_opportunity_difference": _metric(),
    "equal_opportunity_ratio": _metric(),
    "average_odds_difference": _metric(big=True),
    "equalized_odds_difference": _metric(big=True),
    "predictive_parity_difference": _metric(),
    "group_confusion": lambda: (_table()[:3], {"sample_weight": _table()[3], "num_groups": 3}),
    "fairness_report": lambda: (_table(big=True)[:3], {"privileged": BIG, "sample_weight": _table()[3],
                                                        "group_names": {0: "a", BIG: "b"}}),
    "FairnessReport.failures": lambda: ((_report(),), {"max_abs_spd": 0.1, "min_di": 0.8, "max_abs_eod": 0.1,
                                                       "min_eo_ratio": 0.8, "max_abs_aod": 0.1,
                                                       "max_eq_odds": 0.1, "max_abs_ppd": 0.1}),
    "FairnessReport.passes": lambda: ((_report(),), {"max_abs_spd": 0.1, "min_di": 0.8}),
    "FairnessReport.metrics": lambda: ((_report(),), {}),
    "reweighing_weights": lambda: ((_table(big=True)[0], _table(big=True)[2]),
                                   {"privileged": BIG, "sample_weight": _table()[3]}),
    "demographic_parity_penalty": lambda: ((_table()[3], _table(big=True)[2]), {"num_groups": BIG + 1}),
    "group_thresholds": lambda: (_scores(), {"criterion": "equal_opportunity", "target_rate": 0.5,
                                             "num_groups": 2}),
    "AdversarialDebiaser": lambda: ((), dict(_DEBIASER)),
    "AdversarialDebiaser.fit": lambda: ((fair.AdversarialDebiaser(**_DEBIASER), *_xyg(big=True)), {}),
    "AdversarialDebiaser.predict_proba": lambda: ((_fitted(), _xyg()[0]), {}),
    "AdversarialDebiaser.predict": lambda: ((_fitted(), _xyg()[0].double()), {}),
    "AdversarialDebiaser.alpha_at": lambda: ((_fitted(), 2), {}),
    "ConfusionCounts": lambda: _raw_counts(is_mask=False),
    "ConfusionCounts.to_frame": lambda: ((_counts(),), {}),
    "ConfusionCounts.from_frame": lambda: ((_counts().to_frame(),), {"is_mask": False}),
    "group_confusion_counts": lambda: (_table(big=True)[:3], {"sample_weight": _table()[3]}),
    "fairness_report_from_counts": lambda: ((_counts(),), {"privileged": BIG, "unprivileged": [0],
                                                           "group_names": {0: "a", BIG: "b"}}),
    "audit_sql": lambda: (("read_parquet('logs/*.parquet')",), {**_COLUMNS, "weight": "w"}),
    "parquet_confusion_counts": _parquet_counts(weight="w", engine="polars"),
    "audit_parquet": _parquet(weight="w", unprivileged=0, group_names={0: "a", BIG: "b"}, engine="duckdb"),
}

_Y, _P, _G, _W = _table()


def _m(name, arg, case_id, **changes):
    """A bad call of metric ``name``: a valid call with ``changes``."""
    def build():
        return (), {"y_true": _Y, "y_pred": _P, "group": _G, "privileged": 1, **changes}
    return Bad(name, build, arg, case_id)


BAD = [
    _m("statistical_parity_difference", "y_pred", "predictions of the wrong length", y_pred=_P[:-1]),
    _m("disparate_impact", "y_true", "labels outside {0, 1}", y_true=_Y + 1),
    _m("equal_opportunity_difference", "y_pred", "fractional predictions", y_pred=_P * 0.5),
    _m("equal_opportunity_difference", "y_pred", "predictions of shape (N, 1)", y_pred=_P[:, None]),
    _m("equal_opportunity_difference", "y_true", "no labels for a rate that needs them", y_true=None),
    _m("equal_opportunity_ratio", "group", "a single group: no unprivileged rows", group=torch.ones_like(_G)),
    _m("average_odds_difference", "group", "a negative group code", group=_G - 1),
    _m("equalized_odds_difference", "group", "fractional group codes", group=_G * 0.5),
    _m("equalized_odds_difference", "group", "complex group codes", group=_G.to(torch.complex64)),
    _m("predictive_parity_difference", "privileged", "privileged missing for integer codes", privileged=None),
    _m("predictive_parity_difference", "privileged", "a float privileged code", privileged=1.0),
    _m("predictive_parity_difference", "privileged", "a negative privileged code", privileged=[-1]),
    _m("statistical_parity_difference", "unprivileged", "a code on both sides", unprivileged=[1]),
    _m("statistical_parity_difference", "sample_weight", "a negative weight", sample_weight=_W - 1.0),
    _m("statistical_parity_difference", "sample_weight", "boolean weights", sample_weight=_W > 1),
    _m("disparate_impact", "sample_weight", "weights of the wrong length", sample_weight=_W[:3]),
    _m("disparate_impact", "y_pred", "strings as predictions", y_pred=np.array(["a", "b"] * 12, dtype=object)),
    _m("disparate_impact", "group", "no group", group=None),
    _m("disparate_impact", "y_pred", "empty input", y_true=_Y[:0], y_pred=_P[:0], group=_G[:0]),
    _m("disparate_impact", "group", "a code above 2**62", group=_G * 2**62),
    Bad("group_confusion", lambda: ((_Y, _P, _G * BIG), {}), "group",
        "a code of 50,000,000 without num_groups (a table of 50M rows)", match="num_groups"),
    Bad("group_confusion", lambda: ((_Y, _P, _G * 3), {"num_groups": 2}), "num_groups", "num_groups too small"),
    Bad("group_confusion", lambda: ((_Y, _P, _G), {"num_groups": 2**40}), "num_groups", "num_groups of 2**40"),
    Bad("group_confusion", lambda: ((_Y, _P, _G), {"num_groups": 2.0}), "num_groups", "a float num_groups"),
    Bad("group_confusion", lambda: ((None, _P, _G), {}), "y_true", "no labels"),
    Bad("fairness_report", lambda: ((_Y, _P, _G), {"privileged": 1, "group_names": ["only one"]}), "group_names",
        "too few group names"),
    Bad("fairness_report", lambda: ((_Y, _P, _G), {"privileged": 1, "group_names": "ab"}), "group_names",
        "a string as group names"),
    Bad("fairness_report", lambda: ((_Y, _P, _G * BIG), {"privileged": BIG, "group_names": {0: "a"}}),
        "group_names", "a mapping without a present code"),
    Bad("fairness_report", lambda: ((None, _P, _G), {"privileged": 1}), "y_true", "no labels"),
    Bad("FairnessReport.failures", lambda: ((_report(),), {"max_abs_spd": -1.0}), "max_abs_spd",
        "a negative bound"),
    Bad("FairnessReport.failures", lambda: ((_report(),), {"min_di": 1.25}), "min_di",
        "a ratio bound above 1 (min(DI, 1/DI) is at most 1)"),
    Bad("FairnessReport.failures", lambda: ((_report(),), {"min_eo_ratio": "0.8"}), "min_eo_ratio",
        "a string bound"),
    Bad("FairnessReport.passes", lambda: ((_report(),), {"max_eq_odds": float("nan")}), "max_eq_odds",
        "a NaN bound"),
    Bad("reweighing_weights", lambda: ((_Y, torch.ones_like(_G)), {}), "group", "one group only"),
    Bad("reweighing_weights", lambda: ((_Y + 2, _G), {}), "y", "labels outside {0, 1}"),
    Bad("reweighing_weights", lambda: ((_Y[:0], _G[:0]), {}), "y", "empty input"),
    Bad("demographic_parity_penalty", lambda: ((_W[:0], _G[:0]), {}), "scores", "empty scores"),
    Bad("demographic_parity_penalty", lambda: ((_Y, _G), {}), "scores", "integer scores"),
    Bad("demographic_parity_penalty", lambda: ((_W, _G[:3]), {}), "group", "group of the wrong length"),
    Bad("demographic_parity_penalty", lambda: ((_W, _G * 5), {"num_groups": 2}), "num_groups",
        "a code above num_groups"),
    Bad("group_thresholds", lambda: ((_W, _Y, _G * BIG), {}), "group",
        "a code of 50,000,000: 49,999,999 codes without positives", match="more"),
    Bad("group_thresholds", lambda: ((_W, _Y, _G), {"criterion": "calibration"}), "criterion", "unknown criterion"),
    Bad("group_thresholds", lambda: ((_W, _Y, _G), {"target_rate": 1.5}), "target_rate", "a rate above 1"),
    Bad("group_thresholds", lambda: ((_W, None, _G), {}), "y_true", "no labels for equal opportunity"),
    Bad("group_thresholds", lambda: ((_W[:0], _Y[:0], _G[:0]), {}), "scores", "empty scores"),
    Bad("group_thresholds", lambda: ((_Y, _Y, _G), {}), "scores", "integer scores"),
    Bad("group_thresholds", lambda: ((_W, torch.zeros_like(_Y), _G), {}), "group", "no positives at all"),
    Bad("group_thresholds", lambda: ((_W, _Y, _G), {"target": 2.0}), "target_rate",
        "the old keyword target, out of range"),
    Bad("AdversarialDebiaser", lambda: ((), {"method": "magic"}), "method", "unknown method"),
    Bad("AdversarialDebiaser", lambda: ((), {"alpha": -1.0}), "alpha", "a negative alpha"),
    Bad("AdversarialDebiaser", lambda: ((), {"epochs": 2.0}), "epochs", "float epochs"),
    Bad("AdversarialDebiaser", lambda: ((), {"batch_size": 0}), "batch_size", "zero batch size"),
    Bad("AdversarialDebiaser", lambda: ((), {"seed": -1}), "seed", "a negative seed"),
    Bad("AdversarialDebiaser", lambda: ((), {"hidden": 16}), "hidden", "an int where a sequence of sizes goes"),
    Bad("AdversarialDebiaser", lambda: ((), {"adversary_hidden": (4, 0)}), "adversary_hidden",
        "a layer of size 0"),
    Bad("AdversarialDebiaser", lambda: ((), {"device": "nonsense"}), "device", "an unknown device"),
    Bad("AdversarialDebiaser", lambda: ((), {"progress": "yes"}), "progress", "a string for progress"),
    Bad("AdversarialDebiaser.fit", lambda: ((fair.AdversarialDebiaser(**_DEBIASER), _xyg()[0], _xyg()[1],
                                             torch.zeros(32, dtype=torch.long)), {}), "group", "one group only"),
    Bad("AdversarialDebiaser.fit", lambda: ((fair.AdversarialDebiaser(**_DEBIASER), _xyg()[0], _xyg()[1] + 1,
                                             _xyg()[2]), {}), "y", "labels outside {0, 1}"),
    Bad("AdversarialDebiaser.fit", lambda: ((fair.AdversarialDebiaser(**_DEBIASER), _xyg()[0][:, 0], _xyg()[1],
                                             _xyg()[2]), {}), "x", "1-d features"),
    Bad("AdversarialDebiaser.fit", lambda: ((fair.AdversarialDebiaser(**_DEBIASER), _xyg()[0][:0], _xyg()[1][:0],
                                             _xyg()[2][:0]), {}), "x", "empty input"),
    Bad("AdversarialDebiaser.fit", lambda: ((fair.AdversarialDebiaser(**_DEBIASER), *_xyg()[:2], _xyg()[2][:5]),
                                            {}), "group", "group of the wrong length"),
    Bad("AdversarialDebiaser.predict_proba", lambda: ((_fitted(), _xyg()[0][:, :2]), {}), "x",
        "the wrong number of features"),
    Bad("AdversarialDebiaser.predict", lambda: ((_fitted(), _xyg()[0][:0]), {}), "x", "empty input"),
    Bad("AdversarialDebiaser.alpha_at", lambda: ((_fitted(), 1.5), {}), "epoch", "a fractional epoch"),
]

def _parquet_bad(which, arg, case_id, name="audit_parquet", match=None, **changes):
    """Bad data for the Parquet audits, once on each engine; ``match``: what the message must also say."""
    build = _parquet if name == "audit_parquet" else _parquet_counts
    return [Bad(name, build(which, engine=engine, **changes), arg, f"{case_id} ({engine})", match=match)
            for engine in ("duckdb", "polars")]


BAD += [
    *_parquet_bad("part-*", "label", "a missing label column", label="income", match="'income'"),
    *_parquet_bad("part-*", "prediction", "a missing prediction column", prediction="approved", match="'approved'"),
    *_parquet_bad("part-*", "group", "a missing group column", group="sex", match="'sex'"),
    *_parquet_bad("part-*", "weight", "a missing weight column", weight="fnlwgt", match="'fnlwgt'"),
    *_parquet_bad("bad-label_2", "label", "a label of 2", match="column 'y'"),
    *_parquet_bad("bad-null_prediction", "prediction", "a NULL prediction", match="column 'p'"),
    *_parquet_bad("bad-nan_weight", "weight", "a NaN weight", weight="w", match="column 'w'"),
    *_parquet_bad("bad-negative_weight", "weight", "negative weights", weight="w", match="column 'w'"),
    *_parquet_bad("bad-string_group", "group", "a group column of strings", match="'g'"),
    *_parquet_bad("bad-null_group", "group", "a NULL group", name="parquet_confusion_counts", match="column 'g'"),
    *_parquet_bad("bad-one_group", "group", "an unprivileged group with no rows", privileged=0, match="column 'g'"),
    *_parquet_bad("part-*", "group", "a privileged group with no rows", privileged=7, match="column 'g'"),
    *_parquet_bad("bad-empty", "path_or_glob", "an empty table", match="no(ne)? "),
    *_parquet_bad("nothing-*", "path_or_glob", "a glob that matches no file"),
    Bad("audit_parquet", lambda: (([],), {**_COLUMNS, "privileged": 1}), "path_or_glob", "an empty list of paths"),
    Bad("audit_parquet", lambda: ((3,), {**_COLUMNS, "privileged": 1}), "path_or_glob", "a number as the path"),
    Bad("audit_parquet", _parquet(engine="spark"), "engine", "an unknown engine"),
    Bad("audit_parquet", _parquet(connection="duckdb"), "connection", "a string as the connection"),
    Bad("parquet_confusion_counts", _parquet_counts(label=None), "label", "no label column"),
    Bad("audit_sql", lambda: ((None,), _COLUMNS), "source", "no source"),
    Bad("audit_sql", lambda: (("t",), {**_COLUMNS, "group": ""}), "group", "an empty column name"),
    Bad("audit_sql", lambda: (("t",), {**_COLUMNS, "weight": 1.0}), "weight", "a number as the weight column"),
    Bad("group_confusion_counts", lambda: ((None, _P, _G), {}), "y_true", "no labels"),
    Bad("group_confusion_counts", lambda: ((_Y + 1, _P, _G), {}), "y_true", "labels outside {0, 1}"),
    Bad("group_confusion_counts", lambda: ((_Y, _P, _G - 1), {}), "group", "a negative group code"),
    Bad("group_confusion_counts", lambda: ((_Y, _P, _G), {"sample_weight": -_W}), "sample_weight",
        "negative weights"),
    Bad("group_confusion_counts", lambda: ((_Y[:0], _P[:0], _G[:0]), {}), "y_pred", "empty input"),
    Bad("fairness_report_from_counts", lambda: ((fair.group_confusion(_Y, _P, _G),), {"privileged": 1}), "counts",
        "a confusion tensor instead of ConfusionCounts"),
    Bad("fairness_report_from_counts", lambda: ((_counts(),), {"privileged": 7}), "group",
        "a privileged code with no rows"),
    Bad("fairness_report_from_counts", lambda: ((_counts(),), {}), "privileged", "privileged missing for codes"),
    Bad("fairness_report_from_counts", lambda: ((_empty_counts(),), {"privileged": 1}), "counts", "empty counts"),
    Bad("ConfusionCounts", lambda: _raw_counts(codes=torch.tensor([3, 0])), "codes", "codes out of order"),
    Bad("ConfusionCounts", lambda: _raw_counts(codes=torch.tensor([0.0, 3.0])), "codes", "float codes"),
    Bad("ConfusionCounts", lambda: _raw_counts(codes=torch.tensor([-1, 3])), "codes", "a negative code"),
    Bad("ConfusionCounts", lambda: _raw_counts(counts=torch.ones(2, 4, dtype=torch.float64)), "counts",
        "counts of shape (G, 4)"),
    Bad("ConfusionCounts", lambda: _raw_counts(counts=-torch.ones(2, 2, 2)), "counts", "negative counts"),
    Bad("ConfusionCounts", lambda: _raw_counts(rows=torch.tensor([4, 0])), "rows", "a listed code with no rows"),
    Bad("ConfusionCounts", lambda: _raw_counts(rows=torch.tensor([4.0, 3.0])), "rows", "float row counts"),
    Bad("ConfusionCounts", lambda: _raw_counts(rows=torch.tensor([4])), "rows", "one row count for two codes"),
    Bad("ConfusionCounts", lambda: _raw_counts(is_mask="yes"), "is_mask", "a string for is_mask"),
    Bad("ConfusionCounts.from_frame", lambda: (({"group_code": [0]},), {}), "frame", "a dict, not a table"),
    Bad("ConfusionCounts.from_frame", lambda: ((_counts().to_frame().drop(columns="tp"),), {}), "frame",
        "a table without the tp column"),
    Bad("ConfusionCounts.from_frame", lambda: ((_counts().to_frame().assign(invalid_label=[0, 2]),), {}), "frame",
        "a result that reports invalid labels", match="invalid_label"),
]

EXEMPT = {
    "FairnessReport": "a frozen record, built by fairness_report (its methods have rows here)",
    "METRICS": "a constant: the report's metric names and their short names",
    "COUNT_COLUMNS": "a constant: the columns of audit_sql's result and of ConfusionCounts.to_frame",
}

_COLUMN_NAMES = ("label, prediction and weight name the columns of a table, the names of Spark ML's labelCol and "
                 "predictionCol and of aif360's label_names and instance_weights_name (the issue's API), not the class "
                 "to explain or attack (target)")
CONVENTION_EXCEPTIONS = {
    "audit_parquet[convention: names]": _COLUMN_NAMES,
    "parquet_confusion_counts[convention: names]": _COLUMN_NAMES,
    "audit_sql[convention: names]": _COLUMN_NAMES,
}

KNOWN_FAILURES = set()
