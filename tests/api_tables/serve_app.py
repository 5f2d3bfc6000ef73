"""trustml_lab.serve.app: the HTTP service (built on the registry, the monitor and the rollback rule)."""

from types import SimpleNamespace as Spec

from _serve_standin import build_registry, german, load, make_model, save, schema_from

from api_tables import Bad
from api_tables.serve import folder, registry
from trustml_lab.serve import app

MODULE = app


def schema(kind="numeric"):
    return Spec(fields=(Spec(name="age", kind=kind, minimum=18.0, maximum=100.0, categories=(), protected=True),
                        Spec(name="sex", kind="categorical", categories=("f", "m"), protected=True)))


def service(**kwargs):
    frame = german()
    reg, _ = build_registry(folder(), frame=frame, versions=("v1",))
    return (reg,), {"reference": frame.iloc[:300], "load": load, **kwargs}


def bundle_files():
    frame = german()
    where = folder()
    stand_in = schema_from(frame)
    return save(where / "v9", make_model(stand_in, favour_men=False), stand_in, "# card")


VALID = {
    "request_model": lambda: ((schema(),), {"name": "Application", "example": {"age": 30.0, "sex": "f"}}),
    "create_app": lambda: service(check_every=10, threshold=0.5, background_size=8, explain_samples=64,
                                  dashboard_windows=5),
    "register_bundle": lambda: ((registry(live=False), "v9", bundle_files()), {"promote": True}),
}

BAD = [
    Bad("request_model", lambda: ((None,), {}), "schema", "no schema"),
    Bad("request_model", lambda: ((Spec(fields=()),), {}), "schema", "a schema without fields"),
    Bad("request_model", lambda: ((schema("text"),), {}), "schema", "an unknown field kind"),
    Bad("create_app", lambda: (("registry.db",), {"reference": german()}), "registry", "a path for a Registry"),
    Bad("create_app", lambda: ((registry(),), {"reference": None}), "reference", "no reference data"),
    Bad("create_app", lambda: service(monitor="monitor"), "monitor", "a text for a Monitor"),
    Bad("create_app", lambda: service(check_every=0), "check_every", "zero decisions between checks"),
    Bad("create_app", lambda: service(check_every=2.5), "check_every", "a float count"),
    Bad("create_app", lambda: service(threshold=1.5), "threshold", "a threshold above 1"),
    Bad("create_app", lambda: service(explain_samples=1), "explain_samples", "one coalition"),
    Bad("create_app", lambda: service(immutable="age"), "immutable", "one string for a sequence"),
    Bad("register_bundle", lambda: (("registry.db", "v9", {}), {}), "registry", "a path for a Registry"),
    Bad("register_bundle", lambda: ((registry(), "v 9", bundle_files()), {}), "version", "a version id with a space"),
]

EXEMPT = {
    "PredictResponse": "the response model of /predict (pydantic)",
    "ExplainResponse": "the response model of /explain (pydantic)",
    "ServedModel": "one loaded version, built by create_app",
}

KNOWN_FAILURES = set()
