"""trustml_lab.serve.monitor: windowed fairness and drift, alerts on evidence."""

import math

import pandas as pd

from api_tables import Bad
from api_tables.serve import monitor, reference, rows
from trustml_lab.serve import monitor as M

MODULE = M


def _without(feature):
    out = rows()
    del out[3]["inputs"][feature]
    return out


def _with_input(feature, value):
    out = rows()
    out[2]["inputs"][feature] = value
    return out


VALID = {
    "Monitor": lambda: ((reference(),), {"group": "sex", "window": 20, "min_window": 10, "min_positives": 5,
                                         "confidence": 0.95, "min_ratio": 0.8, "max_difference": 0.1, "bins": 5,
                                         "floor": 1e-4, "psi_threshold": 0.1}),
    "Monitor.evaluate": lambda: ((monitor(), rows()), {"version": "v1"}),
    "Monitor.series": lambda: ((monitor(), rows(45)), {}),
}

BAD = [
    Bad("Monitor", lambda: ((reference().iloc[:0],), {"group": "sex"}), "reference", "an empty reference"),
    Bad("Monitor", lambda: ((reference().assign(age=math.nan),), {"group": "sex"}), "age",
        "a NaN in a numeric reference column"),
    Bad("Monitor", lambda: (([1, 2, 3],), {"group": "sex"}), "reference", "a list instead of a table"),
    Bad("Monitor", lambda: ((reference(),), {"group": "race"}), "group", "a group column the reference lacks"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "features": ["age", "income"]}), "features",
        "a feature the reference lacks"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "window": 0}), "window", "a window of no rows"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "window": 50.0}), "window", "a float window"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "window": 100, "min_window": 200}), "min_window",
        "a minimum window larger than the window"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "confidence": 1.0}), "confidence",
        "confidence 1: no test can alert"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "confidence": 0.0}), "confidence", "confidence 0"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "min_ratio": 1.5}), "min_ratio", "a ratio above 1"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "max_difference": 1.0}), "max_difference",
        "a gap of 1: the rule can never fail"),
    Bad("Monitor", lambda: ((reference(),), {"group": "sex", "psi_threshold": -0.1}), "psi_threshold",
        "a negative PSI threshold"),
    Bad("Monitor.evaluate", lambda: ((monitor(), _without("age")), {}), "age", "a feature missing from the traffic",
        match="missing from the traffic"),
    Bad("Monitor.evaluate", lambda: ((monitor(), _without("sex")), {}), "sex", "the group missing from the traffic"),
    Bad("Monitor.evaluate", lambda: ((monitor(), _with_input("age", "old")), {}), "age", "a text in a numeric field"),
    Bad("Monitor.evaluate", lambda: ((monitor(), _with_input("age", math.nan)), {}), "age", "a NaN input"),
    Bad("Monitor.evaluate", lambda: ((monitor(), rows(score=math.inf)), {}), "score", "an infinite score"),
    Bad("Monitor.evaluate", lambda: ((monitor(), rows(decision=2)), {}), "decision", "a decision of 2"),
    Bad("Monitor.evaluate", lambda: ((monitor(), rows(label=-1)), {}), "label", "a label of -1"),
    Bad("Monitor.evaluate", lambda: ((monitor(), pd.DataFrame({"inputs": [1]})), {}), "inputs",
        "a table instead of decision records"),
    Bad("Monitor.evaluate", lambda: ((monitor(), {"inputs": {}}), {}), "decisions", "one mapping, not a list"),
]

EXEMPT = {
    "Alert": "a frozen record, in WindowReport.alerts",
    "FeatureDrift": "a frozen record, in WindowReport.drift",
    "GroupRates": "a frozen record, in WindowReport.groups",
    "SeriesPoint": "a frozen record, returned by Monitor.series",
    "WindowReport": "a frozen record, returned by Monitor.evaluate",
}

KNOWN_FAILURES = set()
