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


@functools.lru_cache(maxsize=1)
def _frame():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from reference_models.production import adult_frame

    frame, train = adult_frame()
    return frame[~train].iloc[:200].reset_index(drop=True)


def _binary():
    import torch

    g = torch.Generator().manual_seed(0)
    return (torch.rand(80, generator=g) < 0.5).long(), (torch.rand(80, generator=g) < 0.5).long(), \
        (torch.rand(80, generator=g) < 0.5).long()


def _report_call():
    return ((bundle().model, bundle().schema, _frame()),
            {"model_name": "t", "data": {}, "evaluation": "200 test rows", "robust_eps": (0.1,), "robust_rows": 40,
             "explain_rows": 4, "background_rows": 4, "n_bootstrap": 20, "confidence": 0.9})


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
    "TrustReport.from_json": lambda: ((bundle().report.to_json(),), {}),
    "bootstrap_metrics": lambda: ((_binary()[0], _binary()[1], {"g": _binary()[2]}),
                                  {"n_bootstrap": 30, "confidence": 0.9}),
    "trust_report": _report_call,
    "model_card": lambda: ((bundle().report,), {}),
    "model_card_html": lambda: ((bundle().report,), {}),
    "report_figures": lambda: ((bundle().report,), {}),
    "parse_policy": lambda: (("[accuracy]\nmin = 0.8\n",), {}),
    "load_policy": lambda: ((), {}),
    "evaluate_gate": lambda: ((bundle().report,), {}),
    "quantize": lambda: ((bundle().model,), {}),
    "transfer_attack": lambda: ((bundle().model,), {"steps": 3, "seed": 0}),
    "model_size_bytes": lambda: ((bundle().model,), {}),
}

EXEMPT = {
    "Bundle": "a result record, returned by load_bundle",
    "Estimate": "a result record (a value and its interval)",
    "GroupRates": "a result record, part of TrustReport",
    "Robustness": "a result record, part of TrustReport",
    "Privacy": "a result record, part of TrustReport",
    "TrustReport": "a result record, built by trust_report and read by TrustReport.from_json",
    "GateResult": "a result record, returned by evaluate_gate",
    "Rule": "a result record, part of ReleasePolicy",
    "ReleasePolicy": "a result record, returned by parse_policy and load_policy",
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
    "trust_report[convention: names]": "a procedure that owns its randomness (bootstrap, attack starts, Shapley "
                                       "rows) and records its seed in the report, so the report can be rebuilt",
    "transfer_attack[convention: names]": "the attack is called once per radius; each call starts a fresh "
                                          "generator from seed, so every radius sees the same random starts",
    "bootstrap_metrics[convention: results]": "the attribute -> metric -> Estimate mapping TrustReport.fairness "
                                              "holds (a lookup table of result records)",
    "report_figures[convention: results]": "a lookup table plot name -> PNG data URI, for an HTML page",
    "FeatureSchema[convention: names]": "label is the name of the label column (a schema's field, as in "
                                        "Hugging Face datasets and pandera), not a target class to explain",
    "save_bundle[convention: results]": "a mapping filename -> sha256 (the shape Registry.register and "
                                        "data/MANIFEST take), like read_manifest's lookup table",
}

BAD += [
    Bad("parse_policy", lambda: (("[accuracy]\nmin = nan\n",), {}), "accuracy.min", "a NaN threshold"),
    Bad("parse_policy", lambda: (("[accuracy]\n",), {}), "accuracy.min", "a missing threshold"),
    Bad("parse_policy", lambda: (("[tpr_ratio]\nmin = 'x'\nattributes = ['sex']\n",), {}), "tpr_ratio.min",
        "a threshold of the wrong type"),
    Bad("evaluate_gate", lambda: (({"accuracy": 0.9},), {}), "report", "a dict, not a TrustReport"),
    Bad("evaluate_gate", lambda: ((bundle().report, "policy.toml"), {}), "policy", "a path, not a ReleasePolicy"),
    Bad("model_card", lambda: ((None,), {}), "report", "no report"),
    Bad("TrustReport.from_json", lambda: (('{"model": "x"}',), {}), "data", "a report missing its keys"),
    Bad("bootstrap_metrics", lambda: ((_binary()[0], _binary()[1] * 2, {"g": _binary()[2]}), {}), "y_pred",
        "non-binary predictions"),
    Bad("trust_report", lambda: ((bundle().model, bundle().schema, _frame().drop(columns=["income"])),
                                 {"model_name": "t", "data": {}, "evaluation": "e"}), "frame", "no label column"),
]

KNOWN_FAILURES: set[str] = set()
