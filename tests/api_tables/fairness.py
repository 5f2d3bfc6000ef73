"""trustml_lab.fairness: group metrics, the report and its gate, reweighing, the penalty, the
adversarial debiaser and group thresholds.

Small tables (a few dozen rows), so the whole table runs in seconds. Several valid calls
use a group code of 50,000,000: the kernels re-index codes, so they must answer within
the timeout without allocating by the largest code.
"""

import numpy as np
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

EXEMPT = {
    "FairnessReport": "a frozen record, built by fairness_report (its methods have rows here)",
    "METRICS": "a constant: the report's metric names and their short names",
}

CONVENTION_EXCEPTIONS = {}

KNOWN_FAILURES = set()
