"""trustml_lab.serve.registry: versions, artefact checks, rollback, the decision log."""

import datetime as dt

from api_tables import Bad
from api_tables.serve import folder, registry, weights
from trustml_lab.serve import registry as R

MODULE = R


def _files():
    where = folder()
    return {"weights": weights(where), "model_card": weights(where, "card.md", b"# card")}


def _tampered():
    reg = registry()
    path = reg.get("v1").artefact("weights").path
    with open(path, "wb") as handle:
        handle.write(b"altered")
    return reg


def _decision(**change):
    return {"version": "v1", "inputs": {"age": 30}, "score": 0.5, "decision": 1, **change}


VALID = {
    "Registry": lambda: ((folder() / "r.db",), {"busy_timeout_s": 5.0}),
    "Registry.register": lambda: ((registry(live=False), "v2", _files()), {}),
    "Registry.get": lambda: ((registry(), "v1"), {}),
    "Registry.versions": lambda: ((registry(),), {}),
    "Registry.verify": lambda: ((registry(), "v1"), {}),
    "Registry.live": lambda: ((registry(),), {}),
    "Registry.verified_live": lambda: ((registry(),), {}),
    "Registry.promote": lambda: ((registry(live=False), "v1"), {}),
    "Registry.mark_healthy": lambda: ((registry(), "v1", "checked by hand"), {}),
    "Registry.history": lambda: ((registry(),), {}),
    "Registry.log_decision": lambda: ((registry(),), _decision()),
    "Registry.log_decisions": lambda: ((registry(), [_decision(), _decision()]), {}),
    "Registry.record_label": lambda: ((registry(decisions=2), "r1", 1), {}),
    "Registry.decisions": lambda: ((registry(decisions=4),), {"version": "v1", "after": 1, "last": 2}),
    "Registry.count_decisions": lambda: ((registry(decisions=2),), {"version": "v1"}),
}

BAD = [
    Bad("Registry.get", lambda: ((registry(), "v9"), {}), "version", "an unknown version", match="not registered"),
    Bad("Registry.promote", lambda: ((registry(), "v9"), {}), "version", "promoting an unknown version"),
    Bad("Registry.verify", lambda: ((_tampered(), "v1"), {}), "files", "a tampered artefact",
        errors=(R.ArtefactError,), match="refusing to serve"),
    Bad("Registry.promote", lambda: ((_tampered(), "v1"), {}), "files", "promoting a tampered artefact",
        errors=(R.ArtefactError,)),
    Bad("Registry.live", lambda: ((registry(live=False),), {}), "no version is live", "nothing promoted",
        errors=(R.NoHealthyVersionError,)),
    Bad("Registry.mark_unhealthy", lambda: ((registry(), "v1", "fairness alert"), {}), "no version is live",
        "the last healthy version rolled back", errors=(R.NoHealthyVersionError,)),
    Bad("Registry.mark_unhealthy", lambda: ((registry(), "v1", ""), {}), "reason", "an empty reason"),
    Bad("Registry.register", lambda: ((registry(), "v1", _files()), {}), "version", "a version registered twice"),
    Bad("Registry.register", lambda: ((registry(), "v 2", _files()), {}), "version", "a version id with a space"),
    Bad("Registry.register", lambda: ((registry(), "v2", {}), {}), "files", "no artefacts"),
    Bad("Registry.register", lambda: ((registry(), "v2", {"weights": folder() / "missing.safetensors"}), {}),
        "files", "a missing file"),
    Bad("Registry.register", lambda: ((registry(), "v2", {"weights": weights(folder(), "model.pt")}), {}), "files",
        "a pickle-based weights file", match="pickle"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(version="v9")), "version",
        "a decision of an unknown version"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(score=float("nan"))), "score", "a NaN score"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(score="high")), "score", "a text score"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(decision=3)), "decision", "a decision of 3"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(inputs={"age": float("inf")})), "inputs",
        "an infinite input"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(inputs={"when": dt.date(2025, 1, 1)})),
        "inputs", "an input that is not JSON"),
    Bad("Registry.log_decision", lambda: ((registry(),), _decision(time=dt.datetime(2025, 1, 1))), "time",
        "a naive time"),
    Bad("Registry.log_decisions", lambda: ((registry(), [_decision(request_id="a"), _decision(request_id="a")]),
                                           {}), "request_id", "a batch repeating a request id"),
    Bad("Registry.log_decisions", lambda: ((registry(), _decision()), {}), "decisions", "one mapping, not a list"),
    Bad("Registry.record_label", lambda: ((registry(decisions=2), "r9", 1), {}), "request_id",
        "a label for no decision"),
    Bad("Registry.record_label", lambda: ((registry(decisions=2), "r1", 0.5), {}), "y_true", "a label of 0.5"),
    Bad("Registry.decisions", lambda: ((registry(),), {"last": 0}), "last", "a window of no rows"),
    Bad("Registry.decisions", lambda: ((registry(),), {"after": -1}), "after", "a negative sequence number"),
    Bad("Registry", lambda: ((folder(),), {}), "path", "a folder instead of a file"),
    Bad("Registry", lambda: ((folder() / "no" / "such" / "r.db",), {}), "path", "a missing folder"),
    Bad("VersionRecord.artefact", lambda: ((registry().get("v1"), "schema"), {}), "name", "an unknown artefact"),
]

EXEMPT = {
    "Artefact": "a frozen record of VersionRecord",
    "ArtefactError": "an exception class",
    "DecisionRecord": "a frozen record, built by the decision log",
    "NoHealthyVersionError": "an exception class",
    "RegistryEvent": "a frozen record, built by Registry.history",
    "VersionRecord": "a frozen record, built by Registry.get and friends",
}

KNOWN_FAILURES = set()
