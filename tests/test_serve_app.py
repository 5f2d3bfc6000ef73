"""trustml_lab.serve.app through httpx's ASGI transport: decisions, explanations, validation, rollback."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

from tests import _serve_bundles as bundles
from trustml_lab.report import load_bundle
from trustml_lab.serve import Monitor
from trustml_lab.serve.app import create_app, request_model


class Client:
    """A synchronous face on ``httpx.AsyncClient(transport=ASGITransport(app))``: one event loop per test."""

    def __init__(self, app):
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")

    def __getattr__(self, method):
        call = getattr(self.client, method)
        return lambda *args, **kwargs: self.loop.run_until_complete(call(*args, **kwargs))

    def close(self):
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def reference():
    return bundles.reference(5000)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The bundles of v1 and v2, saved once for the tests that do not alter them."""
    root = tmp_path_factory.mktemp("bundles")
    bundles.save_versions(root)
    return root


@pytest.fixture
def service(tmp_path, reference, saved):
    """v1 (the shipped model) then v2 (approves husbands only) promoted: v2 is live; checks every 50 decisions.

    The monitor judges a TPR with 5 known positives in a group (Adult's test part has about 6 women
    with income > 50K in 200 applicants)."""
    registry = bundles.build_registry(tmp_path, bundles=saved)
    monitor = Monitor(reference, group="sex", window=300, min_window=200, min_positives=5)
    app = create_app(registry, reference=reference, monitor=monitor, check_every=50, immutable=("age",))
    client = Client(app)
    yield client, registry, bundles.shipped().schema
    client.close()
    registry.close()


@pytest.fixture
def v1_service(tmp_path, reference, saved):
    """v1 alone: the shipped credit model."""
    registry = bundles.build_registry(tmp_path, versions=("v1",), bundles=saved)
    client = Client(create_app(registry, reference=reference, immutable=("age",)))
    yield client, registry, bundles.shipped().schema
    client.close()
    registry.close()


def applicant(i=0, **change):
    return {**bundles.test_records(i, 1)[0], **change}


#: The first row of Adult's training part (UCI's own example): denied by the shipped model.
CLERK = {"age": 39.0, "workclass": "State-gov", "education_num": 13.0, "marital_status": "Never-married",
         "occupation": "Adm-clerical", "relationship": "Not-in-family", "capital_gain": 2174.0, "capital_loss": 0.0,
         "hours_per_week": 40.0, "native_country": "United-States", "sex": "Male", "race": "White"}


def expected_score(registry, version, record):
    bundle = load_bundle(registry.get(version).directory,
                         sha256={Path(a.path).name: a.sha256 for a in registry.get(version).artefacts})
    with torch.no_grad():
        return float(torch.softmax(bundle.model(bundle.schema.encode([record])), dim=1)[0, 1])


def test_predict_decides_and_logs_every_decision(service):
    client, registry, schema = service
    body = applicant(3)
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["version"] == "v2"
    assert data["score"] == pytest.approx(expected_score(registry, "v2", body), abs=1e-6)
    assert data["decision"] == int(data["score"] >= 0.5) and data["approved"] == bool(data["decision"])
    (logged,) = registry.decisions()
    assert (logged.request_id, logged.version, logged.decision) == (data["request_id"], "v2", data["decision"])
    assert logged.inputs == body and logged.score == pytest.approx(data["score"])
    assert logged.time.endswith("+00:00")


def test_concurrent_decisions_are_batched_and_each_equals_its_own_score(service, monkeypatch):
    """100 requests at once: the decision worker scores the waiting ones together (batches of more than
    one), each answer equals the application's score alone, and each decision is logged once."""
    client, registry, _ = service
    state = client.client._transport.app.state.service
    sizes = []
    batch = state.decide_batch
    monkeypatch.setattr(state, "decide_batch", lambda records: sizes.append(len(records)) or batch(records))
    bodies = [applicant(i) for i in range(100)]

    async def send_all():
        return await asyncio.gather(*(client.client.post("/predict", json=body) for body in bodies))

    answers = [a.json() for a in client.loop.run_until_complete(send_all())]
    assert sum(sizes) == 100 and max(sizes) > 1 and max(sizes) <= 64  # MAX_BATCH
    for body, answer in zip(bodies, answers):
        assert answer["score"] == pytest.approx(expected_score(registry, answer["version"], body), abs=1e-6)
    logged = {d.request_id: d for d in registry.decisions()}
    assert len(logged) == 100 and all(logged[a["request_id"]].inputs == b for a, b in zip(answers, bodies))


def test_a_failing_application_in_a_batch_fails_alone_and_a_failed_check_stops_nothing(service, monkeypatch,
                                                                                        caplog):
    client, registry, _ = service
    state = client.client._transport.app.state.service
    batch = state.decide_batch

    def refuse_the_seventh(records):
        if any(r["age"] == 77.0 for r in records):
            raise RuntimeError("this application breaks the model")
        return batch(records)

    def broken_check():
        raise RuntimeError("the monitor is down")

    monkeypatch.setattr(state, "decide_batch", refuse_the_seventh)
    monkeypatch.setattr(state, "check", broken_check)
    bodies = [applicant(i, age=77.0 if i == 7 else 30.0 + i % 40) for i in range(120)]  # checks fall due
    transport = httpx.ASGITransport(app=client.client._transport.app, raise_app_exceptions=False)

    async def send_all():
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as plain:  # a 500, not a raise
            return await asyncio.gather(*(plain.post("/predict", json=body) for body in bodies))

    codes = [a.status_code for a in client.loop.run_until_complete(send_all())]
    assert codes[7] == 500 and codes[:7] + codes[8:] == [200] * 119
    assert registry.count_decisions() == 119
    assert client.post("/predict", json=applicant(1)).status_code == 200  # still deciding
    assert [r.message for r in caplog.records].count("the rollback check failed") >= 1  # one per 50 decisions


def test_explain_values_add_up_and_a_denial_gets_a_counterfactual(v1_service):
    client, registry, schema = v1_service
    data = client.post("/explain", json=CLERK).json()
    assert data["decision"] == 0 and not data["approved"] and data["version"] == "v1"
    assert data["score"] == pytest.approx(expected_score(registry, "v1", CLERK), abs=1e-6)
    inputs = {s.name for s in schema.fields if not s.protected}
    assert set(data["shap"]) == inputs  # sex and race are audited, never model inputs: no Shapley value
    assert sum(data["shap"].values()) == pytest.approx(data["score"] - data["base_value"], abs=1e-6)
    assert data["method"] == "exact Shapley values"  # ten inputs: all 1,024 coalitions
    assert [c["field"] for c in data["contributions"]][0] == "marital_status"
    cf = data["counterfactual"]
    assert cf["found"] and cf["score"] >= 0.5
    assert {"sex", "race", "age", "marital_status", "occupation"} <= set(cf["immutable"])
    changed = {c["field"] for c in cf["changes"]}
    assert changed and changed <= {"education_num", "capital_gain", "capital_loss", "hours_per_week"}
    for c in cf["changes"]:
        assert c["required"] == round(c["required"])  # integer fields get whole numbers
    flipped = {**CLERK, **{c["field"]: c["required"] for c in cf["changes"]}}
    assert client.post("/predict", json=flipped).json()["decision"] == 1
    assert expected_score(registry, "v1", flipped) == pytest.approx(cf["score"], abs=1e-6)
    assert data["reasons"][0].startswith("marital_status = Never-married lowered the score by")
    assert any("would have changed the decision" in r for r in data["reasons"])
    assert registry.count_decisions() == 1  # the explanation logged nothing; /predict logged one


def test_the_search_beside_the_shapley_values_gives_the_same_explanations(reference):
    """The service searches a denial's counterfactual on a second thread: byte-identical answers."""
    import concurrent.futures

    from trustml_lab.serve.app import ServedModel

    served = ServedModel("v1", bundles.shipped(), reference, threshold=0.5, background_size=32, explain_samples=512,
                         immutable=("age",))
    approved = {**CLERK, "relationship": "Husband", "marital_status": "Married-civ-spouse"}
    with concurrent.futures.ThreadPoolExecutor(1) as searcher:
        for record in (CLERK, approved, {**CLERK, "education_num": 16}):
            alone, beside = served.explain(record), served.explain(record, searcher=searcher)
            assert json.dumps(beside) == json.dumps(alone)
    assert alone["counterfactual"]["found"]
    with pytest.raises(TypeError, match="^searcher: expected a concurrent.futures.Executor"):
        served.explain(CLERK, searcher=lambda f, *a: f(*a))


def test_a_denial_no_allowed_change_undoes_has_no_counterfactual(service):
    client, _, _ = service  # v2 approves husbands only: no numeric field can make the clerk one
    data = client.post("/explain", json=CLERK).json()
    assert data["decision"] == 0 and data["contributions"][0]["field"] == "relationship"
    assert data["counterfactual"]["found"] is False and data["counterfactual"]["changes"] == []
    assert data["reasons"][0].startswith("relationship = Not-in-family lowered the score")


def test_an_approval_has_no_counterfactual(service):
    client, _, _ = service
    data = client.post("/explain", json={**CLERK, "relationship": "Husband", "marital_status": "Married-civ-spouse"}
                       ).json()
    assert data["approved"] and data["counterfactual"] is None and data["reasons"] == []


BAD_BODIES = [
    ("education_num", {"education_num": None}, "missing"),
    ("sex", {"sex": None}, "a missing protected field"),
    ("occupation", {"occupation": "Astronaut"}, "unknown category"),
    ("age", {"age": "forty"}, "a string for a number"),
    ("hours_per_week", {"hours_per_week": True}, "a boolean for a number"),
    ("capital_loss", {"capital_loss": 1e9}, "above the maximum"),
    ("age", {"age": 3}, "below the minimum"),
    ("age", {"age": 39.5}, "a fraction for a whole number"),
    ("race", {"race": 1}, "a number for a category"),
    ("favourite_colour", {"favourite_colour": "blue"}, "an unknown field"),
]


@pytest.mark.parametrize(("field", "change", "what"), BAD_BODIES, ids=[b[2] for b in BAD_BODIES])
def test_a_bad_field_is_a_422_naming_it_and_nothing_is_logged(service, field, change, what):
    client, registry, _ = service
    body = {k: v for k, v in {**applicant(1), **change}.items() if v is not None}
    for path in ("/predict", "/explain"):
        answer = client.post(path, json=body)
        assert answer.status_code == 422, (what, answer.text)
        data = answer.json()
        assert data["message"].startswith(f"{field}:"), data
        assert [field] == data["detail"][0]["loc"][-1:], data
    assert registry.count_decisions() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(service, literal):
    client, registry, _ = service
    text = json.dumps({**applicant(1), "age": "X"}).replace('"X"', literal)
    answer = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["message"].startswith("age:"), answer.text
    assert registry.count_decisions() == 0


def test_openapi_has_an_example_for_each_post(service):
    client, _, schema = service
    spec = client.get("/openapi.json").json()
    posts = [p for p, item in spec["paths"].items() if "post" in item]
    assert sorted(posts) == ["/explain", "/outcome", "/predict"]
    examples = {}
    for path in posts:
        content = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        (example,) = content["examples"].values()
        examples[path] = example["value"]
    for path in ("/predict", "/explain"):
        assert set(examples[path]) == {s.name for s in schema.fields}
        assert client.post(path, json=examples[path]).status_code == 200
    assert set(examples["/outcome"]) == {"request_id", "label"}


def test_outcomes_are_recorded_once_for_logged_decisions(service):
    client, registry, _ = service
    decided = client.post("/predict", json=applicant(0)).json()
    answer = client.post("/outcome", json={"request_id": decided["request_id"], "label": 1})
    assert answer.status_code == 200 and answer.json()["label"] == 1
    assert registry.decisions()[0].label == 1
    again = client.post("/outcome", json={"request_id": decided["request_id"], "label": 0})
    assert again.status_code == 409 and "already has a label" in again.json()["message"]
    unknown = client.post("/outcome", json={"request_id": "no-such-id", "label": 1})
    assert unknown.status_code == 404
    for bad, field in [({"request_id": decided["request_id"], "label": 2}, "label"), ({"label": 1}, "request_id")]:
        answer = client.post("/outcome", json=bad)
        assert answer.status_code == 422 and answer.json()["message"].startswith(f"{field}:")
    assert registry.decisions()[0].label == 1


def test_model_card_in_markdown_or_html(service):
    client, _, _ = service
    markdown = client.get("/model-card")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("---\nlicense: mit") and "# Model card: v2" in markdown.text
    page = client.get("/model-card", headers={"accept": "text/html,application/xhtml+xml;q=0.9"})
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Model card: v2</h1>" in page.text and "<table>" in page.text and "license: mit" not in page.text
    plain = client.get("/model-card", headers={"accept": "text/markdown, text/html;q=0.5"})
    assert plain.headers["content-type"].startswith("text/markdown")


def test_metrics_report_the_live_versions_window(service):
    client, registry, _ = service
    for body in bundles.test_records(0, 20):
        assert client.post("/predict", json=body).status_code == 200
    data = client.get("/metrics").json()
    assert data["live"] == "v2" and data["decisions"] == 20
    assert data["window"]["rows"] == 20 and not data["window"]["judged"]  # below min_window: no alert yet
    assert {g["group"] for g in data["window"]["groups"]} == {"Female", "Male"}
    json.dumps(data, allow_nan=False)


def test_fairness_alert_rolls_back_to_v1_end_to_end(service):
    """v2 approves husbands only: no woman with income > 50K is approved (TPR 0 against about 0.9 for
    men). Outcomes arrive with each decision; the check after 200+ decisions rolls v2 back."""
    client, registry, _ = service
    answers = []
    for body, label in zip(bundles.test_records(0, 330), bundles.test_labels(0, 330)):
        answers.append(client.post("/predict", json=body).json())
        outcome = {"request_id": answers[-1]["request_id"], "label": label}
        assert client.post("/outcome", json=outcome).status_code == 200
    served = [a["version"] for a in answers]
    switch = served.index("v1")
    assert 200 <= switch <= 300 and set(served[:switch]) == {"v2"} and set(served[switch:]) == {"v1"}
    v2 = registry.get("v2")
    assert v2.status == "unhealthy" and "tpr_ratio Female vs Male" in v2.reason
    assert registry.live().version == "v1"
    log = registry.decisions()
    assert [d.version for d in log] == served and [d.request_id for d in log] == [a["request_id"] for a in answers]
    events = [(e.version, e.event) for e in registry.history()]
    assert events[-2:] == [("v2", "unhealthy"), ("v1", "rollback")]
    metrics = client.get("/metrics").json()
    assert metrics["live"] == "v1" and metrics["last_check"]["live"] == "v1"
    assert {v["version"]: v["status"] for v in metrics["versions"]} == {"v1": "healthy", "v2": "unhealthy"}
    assert client.get("/model-card").text == bundles.shipped().card  # v1's own card
    page = client.get("/model-card", headers={"accept": "text/html"}).text
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page  # the report's plots


def test_a_tampered_live_version_is_not_served(tmp_path, reference):
    registry = bundles.build_registry(tmp_path)
    (tmp_path / "v2" / "model.safetensors").write_bytes(b"tampered")
    client = Client(create_app(registry, reference=reference))
    try:
        assert client.post("/predict", json=applicant()).json()["version"] == "v1"
        assert "artefact check failed" in registry.get("v2").reason
    finally:
        client.close()
        registry.close()


def test_no_healthy_version_is_a_503(service):
    client, registry, _ = service
    registry.mark_unhealthy("v1", "retired")
    with pytest.raises(Exception, match="no version is live"):
        registry.mark_unhealthy("v2", "retired too")
    for i in range(51):  # the 50th decision's check finds nothing live: the 51st request is refused
        answer = client.post("/predict", json=applicant(i))
        if answer.status_code != 200:
            break
    assert answer.status_code == 503 and "no version is live" in answer.json()["message"]


def test_dashboard_is_offline_html_with_plots(service):
    client, _, _ = service
    for body in bundles.test_records(0, 60):
        client.post("/predict", json=body)
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<img class='plot'") == 2 and page.text.count("data:image/svg+xml;base64,") == 2
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "<script" not in page.text


def test_request_model_refuses_a_schema_without_fields():
    with pytest.raises(TypeError, match="^schema:"):
        request_model(None)
    with pytest.raises(ValueError, match="^schema:"):
        request_model(SimpleNamespace(fields=()))


def test_create_app_checks_its_arguments(tmp_path, reference, saved):
    registry = bundles.build_registry(tmp_path, versions=("v1",), bundles=saved)
    try:
        with pytest.raises(TypeError, match="^registry:"):
            create_app(None, reference=reference)
        with pytest.raises(TypeError, match="^reference:"):
            create_app(registry, reference=reference.to_dict("records"))
        for name, value in [("check_every", 0), ("threshold", math.nan), ("explain_samples", 1)]:
            with pytest.raises(ValueError, match=f"^{name}:"):
                create_app(registry, reference=reference, **{name: value})
    finally:
        registry.close()
