"""trustml_lab.report: the feature schema, the bundle, the trust report, the gate."""

from __future__ import annotations

import functools
import tempfile

from api_tables import Bad
from trustml_lab import report as R

MODULE = R

RECORD = {"age": 39, "workclass": "State-gov", "education_num": 13, "marital_status": "Never-married",
          "occupation": "Adm-clerical", "relationship": "Not-in-family", "capital_gain": 2174, "capital_loss": 0,
          "hours_per_week": 40, "native_country": "United-States", "sex": "Male", "race": "White"}


@functools.lru_cache(maxsize=1)
def bundle() -> R.Bundle:
    return R.load_credit_model()


def _saved() -> tuple[str, dict[str, str]]:
    folder = tempfile.mkdtemp(prefix="trustml-report-table-")
    return folder, R.save_bundle(folder, model=bundle().model, schema=bundle().schema)


def _load_tampered():
    folder, hashes = _saved()
    return (folder,), {"sha256": {**hashes, "schema.json": "0" * 64}}


VALID = {
    "FieldSpec": lambda: (("age", "numeric"), {"minimum": 17, "maximum": 90, "mean": 38.0, "std": 13.0}),
    "FeatureSchema": lambda: ((), {"fields": bundle().schema.fields, "label": "income"}),
    "FeatureSchema.encode": lambda: ((bundle().schema, [RECORD]), {}),
    "FeatureSchema.groups": lambda: ((bundle().schema, [RECORD]), {}),
    "FeatureSchema.from_json": lambda: ((bundle().schema.to_json(),), {}),
    "save_bundle": lambda: ((tempfile.mkdtemp(),), {"model": bundle().model, "schema": bundle().schema}),
    "load_bundle": lambda: ((_saved()[0],), {"sha256": _saved()[1]}),
    "load_credit_model": lambda: ((), {}),
}

EXEMPT = {
    "Bundle": "a result record, returned by load_bundle",
}

BAD = [
    Bad("FeatureSchema.encode", lambda: ((bundle().schema, [dict(RECORD, age=200)]), {}), "records[0]['age']",
        "an age outside the training range"),
    Bad("FeatureSchema.encode", lambda: ((bundle().schema, [dict(RECORD, age=float("nan"))]), {}),
        "records[0]['age']", "a NaN field"),
    Bad("FeatureSchema.encode", lambda: ((bundle().schema, [dict(RECORD, workclass="Astronaut")]), {}),
        "records[0]['workclass']", "an unknown category"),
    Bad("FeatureSchema.encode", lambda: ((bundle().schema, [{"age": 39}]), {}), "records[0]['workclass']",
        "a missing field"),
    Bad("FeatureSchema.encode", lambda: ((bundle().schema, RECORD), {}), "records", "one dict, not a list"),
    Bad("FeatureSchema.groups", lambda: ((bundle().schema, [dict(RECORD, sex="x")]), {}), "records[0]['sex']",
        "an unknown protected value"),
    Bad("FeatureSchema.from_json", lambda: (("{",), {}), "text", "malformed JSON"),
    Bad("FeatureSchema.from_json", lambda: (('{"format": 1, "fields": [], "model": {"class": "MLP"}}',), {}),
        "label", "a schema without its label"),
    Bad("FieldSpec", lambda: (("age", "numeric"), {"minimum": 0, "maximum": 1, "mean": 0.5,
                                                   "std": float("nan")}), "fields['age']", "a NaN std"),
    Bad("FieldSpec", lambda: (("age", "text"), {}), "fields['age'].kind", "an unknown kind"),
    Bad("load_bundle", _load_tampered, "directory", "a file whose sha256 differs", match="schema.json"),
    Bad("load_bundle", lambda: ((_saved()[0],), {}), "sha256", "a folder outside data/ without hashes"),
    Bad("load_bundle", lambda: ((42,), {}), "directory", "not a path"),
    Bad("save_bundle", lambda: ((tempfile.mkdtemp(),), {"model": bundle().model, "schema": "schema"}), "schema",
        "a schema that is not a FeatureSchema"),
]

CONVENTION_EXCEPTIONS = {
    "FeatureSchema[convention: names]": "label is the name of the label column (a schema's field, as in "
                                        "Hugging Face datasets and pandera), not a target class to explain",
    "save_bundle[convention: results]": "a mapping filename -> sha256 (the shape Registry.register and "
                                        "data/MANIFEST take), like read_manifest's lookup table",
}

KNOWN_FAILURES: set[str] = set()
