"""The release gate (trustml_lab.report.evaluate_gate) on the shipped credit model and a biased one."""

import sys
from pathlib import Path

import pytest
import torch

from trustml_lab import report as R
from trustml_lab.fairness import fairness_report
from trustml_lab.models import accuracy, fit, predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from reference_models import production  # noqa: E402


@pytest.fixture(scope="module")
def adult():
    frame, train = production.adult_frame()
    return frame, train


@pytest.fixture(scope="module")
def shipped():
    return R.load_credit_model()


def test_the_shipped_model_passes_the_release_gate(shipped):
    assert shipped.report is not None and shipped.card is not None
    gate = R.evaluate_gate(shipped.report)
    assert gate.passed, gate.reasons
    assert gate.reasons == () and gate.failed == ()
    assert set(gate.checked) == {"accuracy", "selection_rate_ratio[sex]", "selection_rate_ratio[race]",
                                 "tpr_ratio[sex]", "tpr_ratio[race]", "equal_opportunity_difference[sex]",
                                 "equal_opportunity_difference[race]", "robust_accuracy", "privacy"}
    # the advisory four-fifths rule on selection rates is reported, not blocking
    assert [w.split(":")[0] for w in gate.warnings] == ["selection_rate_ratio[sex]", "selection_rate_ratio[race]"]


def test_the_shipped_report_describes_the_shipped_files_and_its_numbers_recompute(shipped, adult):
    report = shipped.report
    assert report.artefacts == {k: shipped.sha256[k] for k in ("model.safetensors", "schema.json")}
    frame, train = adult
    test = frame[~train].reset_index(drop=True)
    x = shipped.schema.encode_frame(test)
    y = torch.tensor(test["income"].to_numpy())
    assert report.rows == len(y)
    y_pred = predict(shipped.model, x)
    assert float((y_pred == y).double().mean()) == pytest.approx(report.accuracy.value, abs=1e-12)
    assert accuracy(shipped.model, x, y) == pytest.approx(report.accuracy.value, abs=1e-6)
    for attribute, code in shipped.schema.groups_frame(test).items():
        ours = fairness_report(y, y_pred, code, privileged=1)
        for metric in R.REPORT_METRICS:
            assert report.fairness[attribute][metric].value == pytest.approx(getattr(ours, metric), abs=1e-12)


@pytest.fixture(scope="module")
def biased_report(adult, shipped):
    """A model trained on history in which women's positive labels were erased, without adversarial training."""
    frame, train = adult
    schema = shipped.schema
    mask = torch.from_numpy(train.copy())
    x = schema.encode_frame(frame)[mask]
    y = torch.tensor(frame["income"].to_numpy())[mask]
    women = schema.groups_frame(frame)["sex"][mask] == 0
    y_biased = torch.where(women, torch.zeros_like(y), y)
    torch.manual_seed(0)
    model = schema.build_model()
    fit(model, x, y_biased, epochs=3, batch_size=256, lr=1e-3, generator=torch.Generator().manual_seed(0),
        progress=False)
    return production.credit_report(model.eval(), schema, frame, train, {}, name="biased", n_bootstrap=300,
                                    robust_rows=1000, robust_eps=(0.1,), explain_rows=10, background_rows=10)


def test_a_biased_model_fails_exactly_the_rules_it_breaks(biased_report):
    gate = R.evaluate_gate(biased_report)
    assert not gate.passed
    # Erasing women's positive labels breaks equal opportunity by sex (the TPR ratio and the EOD
    # interval); for race the point EOD (about -0.07) is inside the bound but its interval is not:
    # the rule judges the interval. No adversarial training: robust accuracy fails. Accuracy passes.
    assert set(gate.failed) == {"tpr_ratio[sex]", "equal_opportunity_difference[sex]",
                                "equal_opportunity_difference[race]", "robust_accuracy"}
    race = biased_report.fairness["race"]["equal_opportunity_difference"]
    assert abs(race.value) <= 0.1 < abs(race.low)
    assert len(gate.reasons) == len(gate.failed)
    by_rule = dict(reason.split(": ", 1) for reason in gate.reasons)
    tpr = biased_report.fairness["sex"]["equal_opportunity_ratio"].value
    assert f"equal_opportunity_ratio = {tpr:.4f}" in by_rule["tpr_ratio[sex]"]
    assert "< min 0.8" in by_rule["tpr_ratio[sex]"]
    assert "not inside [-0.1, 0.1]" in by_rule["equal_opportunity_difference[sex]"]
    assert f"= {biased_report.robustness.at(0.1):.4f} < min 0.75" in by_rule["robust_accuracy"]


def test_requiring_privacy_fails_a_model_trained_without_it(shipped):
    text = R.DEFAULT_POLICY.read_text().replace("required = false", "required = true")
    gate = R.evaluate_gate(shipped.report, R.parse_policy(text))
    assert gate.failed == ("privacy",) and "no differential-privacy guarantee" in gate.reasons[0]


def test_an_advisory_rule_made_blocking_fails(shipped):
    text = R.DEFAULT_POLICY.read_text().replace("blocking = false", "blocking = true")
    gate = R.evaluate_gate(shipped.report, R.parse_policy(text))
    assert gate.failed == ("selection_rate_ratio[sex]", "selection_rate_ratio[race]") and not gate.warnings


@pytest.mark.parametrize("text, error, match", [
    ("[accuracy]\n", ValueError, r"^accuracy\.min: missing"),
    ("[accuracy]\nmin = 'high'\n", TypeError, r"^accuracy\.min: expected a number"),
    ("[accuracy]\nmin = nan\n", ValueError, r"^accuracy\.min: expected a finite number"),
    ("[accuracy]\nmin = 1.5\n", ValueError, r"^accuracy\.min: expected a finite number in \[0, 1\]"),
    ("[robust_accuracy]\nmin = 0.7\neps = inf\n", ValueError, r"^robust_accuracy\.eps"),
    ("[tpr_ratio]\nmin = 0.8\n", ValueError, r"^tpr_ratio\.attributes: missing"),
    ("[tpr_ratio]\nmin = 0.8\nattributes = 'sex'\n", TypeError, r"^tpr_ratio\.attributes"),
    ("[accuracy]\nmin = 0.8\nblocking = 'yes'\n", TypeError, r"^accuracy\.blocking"),
    ("[accuracy]\nmin = 0.8\nmax = 0.9\n", ValueError, r"^accuracy\.max: unknown key"),
    ("[fairness]\nmin = 0.8\n", ValueError, r"^fairness: unknown policy section"),
    ("", ValueError, r"^text: expected at least one rule"),
    ("[accuracy\n", ValueError, r"^text: not valid TOML"),
])
def test_bad_policies_are_refused_naming_the_key(text, error, match):
    with pytest.raises(error, match=match):
        R.parse_policy(text)


def test_a_missing_attribute_or_radius_fails_saying_so(shipped):
    policy = R.parse_policy("[tpr_ratio]\nmin = 0.8\nattributes = ['age']\n[robust_accuracy]\neps = 0.3\nmin = 0.5\n")
    gate = R.evaluate_gate(shipped.report, policy)
    assert gate.failed == ("tpr_ratio[age]", "robust_accuracy")
    assert "no attribute 'age'" in gate.reasons[0] and "no accuracy measured at eps 0.3" in gate.reasons[1]
