"""trustml_lab.serve.rollback: from an alert to a rollback."""

from api_tables import Bad
from api_tables.serve import monitor, registry
from trustml_lab.serve import rollback

MODULE = rollback

VALID = {
    "check_live": lambda: ((registry(decisions=20), monitor()), {"rollback_on": ("fairness", "drift")}),
}

BAD = [
    Bad("check_live", lambda: ((registry(live=False), monitor()), {}), "no version is live", "nothing live",
        errors=(__import__("trustml_lab.serve.registry", fromlist=["x"]).NoHealthyVersionError,)),
    Bad("check_live", lambda: (("registry.db", monitor()), {}), "registry", "a path instead of a Registry"),
    Bad("check_live", lambda: ((registry(), "monitor"), {}), "monitor", "a text instead of a Monitor"),
    Bad("check_live", lambda: ((registry(), monitor()), {"rollback_on": "fairness"}), "rollback_on",
        "one string instead of a sequence"),
    Bad("check_live", lambda: ((registry(), monitor()), {"rollback_on": ("latency",)}), "rollback_on",
        "an unknown alert kind"),
]

EXEMPT = {"CheckResult": "a frozen record, returned by check_live"}

KNOWN_FAILURES = set()
