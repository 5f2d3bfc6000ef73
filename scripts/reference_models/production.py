"""Chapter 6's credit model: UCI Adult, sex and race protected, carried through the whole workflow.

Data -> audit -> fairness (chapter 1) -> robustness (chapter 2) in one training run:

- data: :func:`trustml_lab.data.load_adult`, rows with a missing value dropped (45,222 of
  48,842, as aif360's ``AdultDataset``), the census ``train`` part to train on, ``test`` to
  evaluate; ten fields are model inputs, ``sex`` and ``race`` are protected attributes
  (audited, never fed to the model); :class:`trustml_lab.report.FeatureSchema` is fitted
  on the training rows only;
- fairness: Kamiran and Calders' reweighing by race (:func:`trustml_lab.fairness.reweighing_weights`)
  and an equal-opportunity penalty (:func:`trustml_lab.fairness.demographic_parity_penalty`
  on the scores of the positive examples, by sex, weight 0.5), which aims at equal TPR;
- robustness: every batch replaced by its FGSM-RS adversarial version (Wong et al. 2020:
  one step of 1.25 eps from a uniform random start) at L-inf eps = 0.1 on the
  standardized features;
- 8 epochs of Adam (lr 1e-3, batch 256) on an MLP (hidden 64, 32); about 20 s on one thread.

The bundle ``data/credit_model_v1/`` (weights, schema, trust report, model card) is written
here and its files are listed in ``data/MANIFEST``; ``trustml_lab.report.load_credit_model``
loads it. Run with ``python scripts/train_reference_models.py production``.
"""

from __future__ import annotations

import torch

from trustml_lab.data import ManifestEntry, data_dir, load_adult, read_manifest, update_manifest
from trustml_lab.fairness import demographic_parity_penalty, reweighing_weights
from trustml_lab.models import accuracy, fit
from trustml_lab.report import CREDIT_MODEL, FeatureSchema, evaluate_gate, model_card, save_bundle, trust_report
from trustml_lab.robustness import pgd

FIELDS = ("age", "workclass", "education_num", "marital_status", "occupation", "relationship", "capital_gain",
          "capital_loss", "hours_per_week", "native_country")
INTEGER = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
PROTECTED = {"sex": "Male", "race": "White"}
EPS, PENALTY, EPOCHS, BATCH, LR, HIDDEN = 0.1, 0.5, 8, 256, 1e-3, (64, 32)
LICENSE = "MIT (trained by this repository)"


def adult_frame():
    """Adult without rows that miss a value, and the boolean mask of its training rows."""
    frame = load_adult()
    frame = frame.dropna(subset=list(FIELDS) + list(PROTECTED)).reset_index(drop=True)
    return frame, (frame["split"] == "train").to_numpy()


def credit_schema(frame, train) -> FeatureSchema:
    return FeatureSchema.from_frame(
        frame, label="income", fields=FIELDS, protected=PROTECTED, fit_on=train, integer=INTEGER, hidden=HIDDEN,
        description="UCI Adult: income > 50K (1, the favorable decision) from ten census fields; "
                    "sex and race are protected attributes, audited and never model inputs")


def train_credit_model(frame, train, schema: FeatureSchema, *, epochs: int = EPOCHS, seed: int = 0):
    """The recipe: reweighing by race, an equal-opportunity penalty by sex, FGSM-RS at eps 0.1."""
    torch.manual_seed(seed)
    mask = torch.from_numpy(train.copy())
    x = schema.encode_frame(frame)[mask]
    y = torch.tensor(frame["income"].to_numpy())[mask]
    groups = {k: v[mask] for k, v in schema.groups_frame(frame).items()}
    weights = reweighing_weights(y, groups["race"]).float()
    generator = torch.Generator().manual_seed(seed)
    sex = groups["sex"]

    def equal_opportunity_penalty(logits, index):
        positive = y[index] == 1
        scores = torch.softmax(logits, dim=1)[positive, 1]
        return PENALTY * demographic_parity_penalty(scores, sex[index][positive], num_groups=2)

    def fgsm_rs(model, x_batch, y_batch):
        return pgd(model, x_batch, y_batch, eps=EPS, alpha=1.25 * EPS, steps=1, clamp=None, generator=generator)

    model = schema.build_model()
    fit(model, x, y, epochs=epochs, batch_size=BATCH, lr=LR, sample_weight=weights,
        penalty=equal_opportunity_penalty, perturb=fgsm_rs, generator=generator, progress=False)
    return model.eval()


def train() -> dict:
    frame, train_rows = adult_frame()
    schema = credit_schema(frame, train_rows)
    model = train_credit_model(frame, train_rows, schema)
    test = torch.from_numpy(~train_rows)
    x_test = schema.encode_frame(frame)[test]
    y_test = torch.tensor(frame["income"].to_numpy())[test]
    acc = accuracy(model, x_test, y_test)
    print(f"{CREDIT_MODEL}: test accuracy {acc:.3f} on {len(y_test)} rows")
    folder = data_dir() / CREDIT_MODEL
    artefacts = save_bundle(folder, model=model, schema=schema)
    report = credit_report(model, schema, frame, train_rows, artefacts)
    gate = evaluate_gate(report)
    print(f"{CREDIT_MODEL}: release gate passed={gate.passed}; reasons {list(gate.reasons)}; "
          f"warnings {list(gate.warnings)}")
    hashes = save_bundle(folder, model=model, schema=schema, report=report, card=model_card(report))
    source = (f"Adult credit MLP {HIDDEN}, reweighing by race, equal-opportunity penalty {PENALTY} by sex, "
              f"FGSM-RS eps {EPS} on standardized features, {EPOCHS} epochs Adam lr {LR} batch {BATCH}; "
              f"test accuracy {acc:.3f}")
    n_params = sum(t.numel() for t in model.state_dict().values())
    fields = len(schema.fields)
    update_manifest([
        ManifestEntry(f"{CREDIT_MODEL}/schema.json", hashes["schema.json"], fields, 1,
                      f"feature schema of {CREDIT_MODEL}: {fields} fields, {len(schema.feature_names)} model columns",
                      LICENSE),
        ManifestEntry(f"{CREDIT_MODEL}/report.json", hashes["report.json"], 1, 1,
                      f"trust report of {CREDIT_MODEL} (trustml_lab.report.trust_report on the Adult test split)",
                      LICENSE),
        ManifestEntry(f"{CREDIT_MODEL}/model_card.md", hashes["model_card.md"], 1, 1,
                      f"model card of {CREDIT_MODEL} (trustml_lab.report.model_card)", LICENSE),
    ], data_dir=data_dir())
    print(f"{CREDIT_MODEL}: {n_params} parameters; files {hashes}")
    return {f"{CREDIT_MODEL}/model.safetensors": (model, source)}


def credit_report(model, schema, frame, train_rows, artefacts, *, name: str = CREDIT_MODEL, **options):
    """The trust report of a credit model on the Adult test split (provenance: the Adult files' sha256)."""
    manifest = read_manifest()
    data = {f: manifest[f].sha256 for f in ("adult.data.gz", "adult.test.gz")}
    test = frame[~train_rows].reset_index(drop=True)
    return trust_report(model, schema, test, model_name=name, data=data, artefacts=artefacts,
                        evaluation="UCI Adult test split (census 'test' part), rows without missing values",
                        notes=f"reweighing by race, equal-opportunity penalty {PENALTY} by sex, FGSM-RS "
                              f"adversarial training at eps {EPS}", **options)
