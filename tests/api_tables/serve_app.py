"""trustml_lab.serve.app: the HTTP service (built on the registry, the monitor and the rollback rule)."""

from types import SimpleNamespace as Spec

from _serve_bundles import build_registry, reference, save_versions

from api_tables import Bad
from api_tables.serve import folder, registry
from trustml_lab.serve import app

MODULE = app


def schema(kind="numeric"):
    return Spec(fields=(Spec(name="age", kind=kind, minimum=18.0, maximum=100.0, categories=(), protected=False),
                        Spec(name="sex", kind="categorical", categories=("f", "m"), protected=True)))


def service(**kwargs):
    return (build_registry(folder(), versions=("v1",)),), {"reference": reference(500), **kwargs}


def saved():
    where = folder()
    return where / "v1", save_versions(where, ("v1",))["v1"]


def register(**kwargs):
    directory, hashes = saved()
    return (registry(live=False), "v9", directory), {"sha256": hashes, **kwargs}


VALID = {
    "request_model": lambda: ((schema(),), {"name": "Application", "example": {"age": 30.0, "sex": "f"}}),
    "create_app": lambda: service(check_every=10, threshold=0.5, background_size=8, explain_samples=64,
                                  dashboard_windows=5, immutable=("age",)),
    "register_bundle": lambda: register(promote=True),
}

BAD = [
    Bad("request_model", lambda: ((None,), {}), "schema", "no schema"),
    Bad("request_model", lambda: ((Spec(fields=()),), {}), "schema", "a schema without fields"),
    Bad("request_model", lambda: ((schema("text"),), {}), "schema", "an unknown field kind"),
    Bad("create_app", lambda: (("registry.db",), {"reference": reference(50)}), "registry", "a path for a Registry"),
    Bad("create_app", lambda: ((registry(),), {"reference": None}), "reference", "no reference data"),
    Bad("create_app", lambda: service(monitor="monitor"), "monitor", "a text for a Monitor"),
    Bad("create_app", lambda: service(check_every=0), "check_every", "zero decisions between checks"),
    Bad("create_app", lambda: service(check_every=2.5), "check_every", "a float count"),
    Bad("create_app", lambda: service(threshold=1.5), "threshold", "a threshold above 1"),
    Bad("create_app", lambda: service(explain_samples=1), "explain_samples", "one coalition"),
    Bad("create_app", lambda: service(immutable="age"), "immutable", "one string for a sequence"),
    Bad("create_app", lambda: service(rollback_on=("latency",)), "rollback_on", "an unknown alert kind"),
    Bad("create_app", lambda: service(rollback_on="drift"), "rollback_on", "one string for a sequence"),
    Bad("register_bundle", lambda: (("registry.db", "v9", folder()), {}), "registry", "a path for a Registry"),
    Bad("register_bundle", lambda: ((registry(), "v9", folder()), {}), "directory", "a folder without a bundle"),
    Bad("register_bundle", lambda: ((registry(), "v9", 42), {}), "directory", "a number for a folder"),
    Bad("register_bundle", lambda: register(sha256={"model.safetensors": "0" * 64}), "sha256",
        "a file that changed since it was saved"),
    Bad("register_bundle", lambda: register(sha256=["model.safetensors"]), "sha256", "a list for the digests"),
    Bad("register_bundle", lambda: (lambda args: ((args[0][0], "v 9", args[0][2]), args[1]))(register()), "version",
        "a version id with a space"),
]

EXEMPT = {
    "PredictResponse": "the response model of /predict (pydantic)",
    "ExplainResponse": "the response model of /explain (pydantic)",
    "ServedModel": "one loaded version, built by create_app",
    "BackgroundService": "starts a child process: tested by tests/test_serve_process.py",
}

KNOWN_FAILURES = set()
