"""trustml_lab.report: the feature schema, the bundle, the trust report, the model card."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from trustml_lab import report as R
from trustml_lab.data import encode_tabular, load_adult, read_manifest

RECORD = {"age": 39, "workclass": "State-gov", "education_num": 13, "marital_status": "Never-married",
          "occupation": "Adm-clerical", "relationship": "Not-in-family", "capital_gain": 2174, "capital_loss": 0,
          "hours_per_week": 40, "native_country": "United-States", "sex": "Male", "race": "White"}


@pytest.fixture(scope="module")
def bundle():
    return R.load_credit_model()


def test_shipped_bundle_is_listed_in_the_manifest_and_loads(bundle):
    manifest = read_manifest()
    assert bundle.sha256["model.safetensors"] == manifest["credit_model_v1/model.safetensors"].sha256
    assert bundle.sha256["schema.json"] == manifest["credit_model_v1/schema.json"].sha256
    assert bundle.schema.protected == ("sex", "race") and bundle.schema.label == "income"
    assert not bundle.model.training
    assert all(f.kind in ("numeric", "categorical") for f in bundle.schema.fields)


def test_schema_encoder_equals_encode_tabular_fitted_on_the_training_rows(bundle):
    schema = bundle.schema
    frame = load_adult()
    frame = frame.dropna(subset=[f.name for f in schema.fields]).reset_index(drop=True)
    train = torch.from_numpy((frame["split"] == "train").to_numpy().copy())
    inputs = [f.name for f in schema.fields if not f.protected]
    reference = encode_tabular(frame[inputs + ["income"]], target="income", fit_on=train)
    ours = schema.encode_frame(frame)
    assert reference.feature_names == schema.feature_names
    torch.testing.assert_close(ours, reference.features, atol=1e-5, rtol=0)
    records = frame.iloc[:50][[f.name for f in schema.fields]].astype(object).to_dict("records")
    torch.testing.assert_close(schema.encode(records), ours[:50])


def test_protected_attributes_are_not_model_inputs(bundle):
    schema = bundle.schema
    assert not any(c.split("=")[0] in ("sex", "race") for c in schema.feature_names)
    a, b = dict(RECORD), dict(RECORD, sex="Female", race="Black")
    assert torch.equal(schema.encode([a]), schema.encode([b]))
    groups = schema.groups([a, b])
    assert groups["sex"].tolist() == [1, 0] and groups["race"].tolist() == [1, 0]


@pytest.mark.parametrize("change, match", [
    ({"age": 200}, r"records\[0\]\['age'\]: expected a number in \[17, 90\]"),
    ({"age": "39"}, r"records\[0\]\['age'\]: expected a number"),
    ({"age": True}, r"records\[0\]\['age'\]"),
    ({"age": float("nan")}, r"records\[0\]\['age'\]: expected a finite number"),
    ({"age": 39.5}, r"records\[0\]\['age'\]: expected a whole number"),
    ({"workclass": "Astronaut"}, r"records\[0\]\['workclass'\]: .*unknown category 'Astronaut'"),
    ({"workclass": 3}, r"records\[0\]\['workclass'\]"),
    ({"colour": "red"}, r"records\[0\]\['colour'\]: unknown field"),
    ({"sex": "Other"}, r"records\[0\]\['sex'\]: .*unknown category"),
])
def test_bad_records_are_refused_naming_the_field(bundle, change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bundle.schema.encode([dict(RECORD, **change)])


def test_missing_field_and_bad_containers_are_refused(bundle):
    record = dict(RECORD)
    del record["hours_per_week"]
    with pytest.raises(ValueError, match=r"records\[0\]\['hours_per_week'\]: missing field"):
        bundle.schema.encode([record])
    with pytest.raises(TypeError, match="records: .*one dict"):
        bundle.schema.encode(RECORD)
    with pytest.raises(ValueError, match="records: expected at least one"):
        bundle.schema.encode([])
    with pytest.raises(TypeError, match=r"records\[1\]"):
        bundle.schema.encode([RECORD, "x"])
    no_sex = {k: v for k, v in RECORD.items() if k != "sex"}
    assert bundle.schema.encode([no_sex]).shape == (1, len(bundle.schema.feature_names))
    with pytest.raises(ValueError, match=r"records\[0\]\['sex'\]: missing"):
        bundle.schema.groups([no_sex])


def test_schema_json_round_trip_and_malformed_schemas(bundle):
    text = bundle.schema.to_json()
    assert R.FeatureSchema.from_json(text) == bundle.schema
    payload = json.loads(text)
    for key in ("fields", "label", "model"):
        broken = {k: v for k, v in payload.items() if k != key}
        with pytest.raises(ValueError, match=f"^{key}: missing"):
            R.FeatureSchema.from_json(json.dumps(broken))
    payload["fields"][0]["std"] = float("nan")
    with pytest.raises(ValueError, match=r"fields\['age'\]"):
        R.FeatureSchema.from_json(json.dumps(payload))
    with pytest.raises(ValueError, match="text: not valid JSON"):
        R.FeatureSchema.from_json("{")


def test_bundle_round_trip_and_tampering(tmp_path, bundle):
    hashes = R.save_bundle(tmp_path, model=bundle.model, schema=bundle.schema, card="# card\n")
    assert sorted(hashes) == ["model.safetensors", "model_card.md", "schema.json"]
    loaded = R.load_bundle(tmp_path, sha256=hashes)
    assert loaded.card == "# card\n" and loaded.schema == bundle.schema and loaded.report is None
    x = bundle.schema.encode([RECORD])
    torch.testing.assert_close(loaded.model(x), bundle.model(x), rtol=0, atol=0)
    for name in hashes:
        path = tmp_path / name
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=f"directory: {name} has sha256 .* refusing to load it"):
            R.load_bundle(tmp_path, sha256=hashes)
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    (tmp_path / "schema.json").unlink()
    with pytest.raises(FileNotFoundError, match="schema.json"):
        R.load_bundle(tmp_path, sha256=hashes)


def test_load_bundle_needs_hashes_from_elsewhere(tmp_path, bundle):
    R.save_bundle(tmp_path, model=bundle.model, schema=bundle.schema)
    with pytest.raises(ValueError, match="sha256: expected the files' sha256"):
        R.load_bundle(tmp_path)
    with pytest.raises(ValueError, match="sha256: expected a hash for schema.json"):
        R.load_bundle(tmp_path, sha256={"model.safetensors": "0" * 64})
    with pytest.raises(ValueError, match=r"sha256\['schema.json'\]"):
        R.load_bundle(tmp_path, sha256={"model.safetensors": "0" * 64, "schema.json": "xyz"})


def test_save_bundle_refuses_a_model_of_another_shape(tmp_path, bundle):
    from trustml_lab.models import MLP

    with pytest.raises(ValueError, match="does not fit the model"):
        R.save_bundle(tmp_path, model=MLP(3), schema=bundle.schema)


def test_a_pickle_never_loads(tmp_path, bundle):
    """A weights file replaced by a pickle (with a matching hash) is refused as not safetensors."""
    import pickle

    hashes = R.save_bundle(tmp_path, model=bundle.model, schema=bundle.schema)
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps({"x": np.zeros(3)}))
    hashes["model.safetensors"] = R._sha256_bytes((tmp_path / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        R.load_bundle(tmp_path, sha256=hashes)


def test_encode_frame_refuses_unknown_categories(bundle):
    frame = pd.DataFrame([RECORD, dict(RECORD, workclass="Astronaut")])
    with pytest.raises(ValueError, match=r"frame\['workclass'\]: unknown category 'Astronaut' in row 1"):
        bundle.schema.encode_frame(frame)
