"""trustml_lab.report: the feature schema, the bundle, the trust report, the model card."""

import collections
import json
import math

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


# --------------------------------------------------------------------------- the trust report


def test_shipped_report_round_trips_exactly(bundle):
    report = bundle.report
    assert isinstance(report, R.TrustReport)
    again = R.TrustReport.from_json(report.to_json())
    assert again == report and again.to_json() == report.to_json()
    assert again.accuracy.value.hex() == report.accuracy.value.hex()


def test_undefined_metrics_round_trip_as_strict_json(bundle):
    """A group with no positives has a NaN TPR and a zero selection rate an infinite ratio: the report
    still saves (strict JSON: "NaN", "Infinity") and reads back the same numbers; a group named "NaN"
    stays a name."""
    from dataclasses import replace

    report = bundle.report
    sex = dict(report.fairness["sex"])
    sex["disparate_impact"] = R.Estimate(math.inf, 0.5, math.inf)
    sex["equal_opportunity_ratio"] = R.Estimate(math.nan, math.nan, -math.inf)
    groups = (replace(report.groups[0], group="NaN", tpr=math.nan),) + report.groups[1:]
    odd = replace(report, fairness={**report.fairness, "sex": sex}, groups=groups,
                  explanations={**report.explanations, "age": math.nan})
    text = odd.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    again = R.TrustReport.from_json(text)
    assert again.to_json() == text
    assert again.fairness["sex"]["disparate_impact"] == R.Estimate(math.inf, 0.5, math.inf)
    ratio = again.fairness["sex"]["equal_opportunity_ratio"]
    assert math.isnan(ratio.value) and math.isnan(ratio.low) and ratio.high == -math.inf
    assert again.groups[0].group == "NaN" and math.isnan(again.groups[0].tpr)
    assert math.isnan(again.explanations["age"]) and again.groups[1:] == report.groups[1:]


def test_report_json_refuses_a_missing_key(bundle):
    payload = json.loads(bundle.report.to_json())
    del payload["accuracy"]
    with pytest.raises(ValueError, match="^accuracy: missing"):
        R.TrustReport.from_json(json.dumps(payload))


def _case(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.4).long()
    p = torch.where(torch.rand(n, generator=g) < 0.8, y, 1 - y)
    group = (torch.rand(n, generator=g) < 0.6).long()
    return y, p, group


def test_bootstrap_resamples_equal_fairness_report_on_the_same_rows():
    """Each resample's metric equals fairness_report on rows that realize its cell counts (same draw)."""
    from trustml_lab.fairness import fairness_report

    y, p, group = _case(300, 1)
    out = R.bootstrap_metrics(y, p, {"g": group}, n_bootstrap=50, generator=torch.Generator().manual_seed(3))
    _, inverse, counts = R._bootstrap_cells(torch.stack([group, y, p], dim=1), 50, torch.Generator().manual_seed(3))
    index = R._resampled_rows(inverse, counts, torch.Generator().manual_seed(4))
    assert index.shape == (50, 300)
    assert torch.equal(torch.stack([torch.bincount(inverse[i], minlength=counts.shape[1]) for i in index]),
                       counts.long())
    draws = np.array([fairness_report(y[i], p[i], group[i], privileged=1).equal_opportunity_difference
                      for i in index])
    expected = np.quantile(draws, [0.025, 0.975])
    est = out["g"]["equal_opportunity_difference"]
    assert (est.low, est.high) == pytest.approx(tuple(expected), abs=1e-12)
    full = fairness_report(y, p, group, privileged=1)
    assert est.value == pytest.approx(full.equal_opportunity_difference, abs=1e-12)
    assert out["accuracy"]["accuracy"].value == pytest.approx(float((y == p).double().mean()), abs=1e-12)


def test_bootstrap_cell_counts_follow_the_multinomial_exactly():
    """The cell counts of 6 rows in 3 cells (sizes 3, 2, 1), over 20,000 resamples, against the exact
    Multinomial(6, (1/2, 1/3, 1/6)) probabilities of all 28 outcomes: Pearson's chi-square test.

    This is what drawing 6 row indices uniformly with replacement gives. The test is set at the
    0.001 level (a fixed seed, so it either always passes or always fails; a wrong split
    probability, an off-by-one or a biased sampler shifts many outcomes and fails it by far).
    """
    from scipy import stats

    sizes, n, draws = torch.tensor([3, 2, 1]), 6, 20_000
    counts = R._multinomial_counts(sizes, draws, torch.Generator().manual_seed(0)).long()
    assert torch.equal(counts.sum(dim=1), torch.full((draws,), n))
    outcomes = [(a, b, n - a - b) for a in range(n + 1) for b in range(n + 1 - a)]
    seen = collections.Counter(map(tuple, counts.tolist()))
    assert set(seen) <= set(outcomes)
    expected = np.array([stats.multinomial.pmf(o, n, [1 / 2, 1 / 3, 1 / 6]) for o in outcomes]) * draws
    observed = np.array([seen[o] for o in outcomes])
    keep = expected >= 5  # the chi-square approximation's usual condition; the rest pooled
    observed = np.append(observed[keep], observed[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_bootstrap_cell_counts_of_many_cells_have_the_multinomial_moments():
    """37 cells of unequal sizes (a tree of depth 6, with padding): mean n p and covariance
    n (diag p - p p^T) of the counts over 40,000 resamples, within 4.5 standard errors."""
    sizes = torch.arange(1, 38)
    n, draws = int(sizes.sum()), 40_000
    counts = R._multinomial_counts(sizes, draws, torch.Generator().manual_seed(1))
    prob = sizes.double() / n
    mean_se = (n * prob * (1 - prob) / draws).sqrt()
    assert ((counts.mean(0) - n * prob).abs() <= 4.5 * mean_se).all()
    cov = torch.cov(counts.T)
    truth = n * (torch.diag(prob) - torch.outer(prob, prob))
    # the sample covariance's standard error is about sqrt((s_ii s_jj + s_ij^2) / draws)
    se = ((truth.diag()[:, None] * truth.diag()[None, :] + truth**2) / draws).sqrt()
    assert ((cov - truth).abs() <= 4.5 * se).all()


def test_bootstrap_resampled_rows_are_uniform_within_each_cell():
    """Every row is drawn as often as the others of its cell: over 2,000 resamples of 200 rows, each
    row's total count is about Binomial(2000 * 200, 1/200) around 2,000."""
    y, p, group = _case(200, 2)
    _, inverse, counts = R._bootstrap_cells(torch.stack([group, y, p], dim=1), 2000, torch.Generator().manual_seed(5))
    index = R._resampled_rows(inverse, counts, torch.Generator().manual_seed(6))
    total = torch.bincount(index.flatten(), minlength=200).double()
    sd = (2000 * 200 * (1 / 200) * (1 - 1 / 200)) ** 0.5
    assert ((total - 2000).abs() <= 4.5 * sd).all()


@pytest.mark.slow
def test_bootstrap_interval_covers_the_truth_at_its_level():
    """Coverage of the 90% percentile interval of a TPR gap, over 200 simulated data sets with a known truth.

    The truth is the population gap (TPRs 0.8 and 0.7 by construction). With 200 trials the
    coverage's standard error is about 0.021; the percentile bootstrap is slightly liberal at this
    size, so we require coverage within 3 standard errors of 0.90.
    """
    trials, covered = 200, 0
    for seed in range(trials):
        g = torch.Generator().manual_seed(seed)
        n = 400
        group = (torch.rand(n, generator=g) < 0.5).long()
        y = (torch.rand(n, generator=g) < 0.5).long()
        tpr = torch.where(group == 1, 0.8, 0.7)
        p = torch.where(y == 1, (torch.rand(n, generator=g) < tpr).long(), (torch.rand(n, generator=g) < 0.2).long())
        est = R.bootstrap_metrics(y, p, {"g": group}, n_bootstrap=300, confidence=0.9,
                                  generator=torch.Generator().manual_seed(10_000 + seed))["g"]
        e = est["equal_opportunity_difference"]
        covered += e.low <= -0.1 <= e.high
    se = (0.9 * 0.1 / trials) ** 0.5
    assert abs(covered / trials - 0.9) <= 3 * se, covered


def test_bootstrap_refuses_bad_input():
    y, p, group = _case(50, 0)
    with pytest.raises(ValueError, match="^y_pred: expected binary"):
        R.bootstrap_metrics(y, p * 2, {"g": group})
    with pytest.raises(ValueError, match="^confidence"):
        R.bootstrap_metrics(y, p, {"g": group}, confidence=float("nan"))
    with pytest.raises(TypeError, match="^n_bootstrap"):
        R.bootstrap_metrics(y, p, {"g": group}, n_bootstrap=10.0)
    with pytest.raises(ValueError, match=r"^groups\['g'\]"):
        R.bootstrap_metrics(y, p, {"g": group[:10]})


def test_model_card_has_mitchell_sections_and_a_hugging_face_header(bundle):
    from huggingface_hub import ModelCard

    card = bundle.card
    assert card == R.model_card(bundle.report)
    for section in ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
                    "Quantitative analyses", "Ethical considerations", "Caveats and recommendations"):
        assert f"## {section}\n" in card
    parsed = ModelCard(card)  # parses the YAML header offline
    results = parsed.data.eval_results
    assert results[0].metric_type == "accuracy"
    assert results[0].metric_value == pytest.approx(bundle.report.accuracy.value, abs=1e-6)


def test_model_card_html_embeds_its_plots(bundle):
    page = R.model_card_html(bundle.report)
    assert page.count('src="data:image/png;base64,') == 3
    assert 'src="http' not in page and "<script" not in page  # offline: nothing fetched
    assert "<table>" in page and "Caveats and recommendations" in page


def test_quantized_model_is_smaller_and_close_and_leaves_the_original(bundle):
    from trustml_lab.models import predict

    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    small = R.quantize(bundle.model)
    assert all(torch.equal(v, bundle.model.state_dict()[k]) for k, v in before.items())
    assert R.model_size_bytes(small) < R.model_size_bytes(bundle.model)
    frame = load_adult().dropna().reset_index(drop=True)
    x = bundle.schema.encode_frame(frame.iloc[:2000])
    agree = float((predict(small, x) == predict(bundle.model, x)).double().mean())
    assert agree > 0.97
