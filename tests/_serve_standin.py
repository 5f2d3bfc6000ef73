"""Test-only stand-in of trustml_lab.report's bundle interface, for the service's tests.

``StandInSchema`` has the shape of ``report.FeatureSchema`` (``fields`` with ``name``,
``kind``, ``categories`` / ``minimum`` / ``maximum``, ``protected``; ``encode``;
``to_json``/``from_json``; ``label``) over six German credit columns: numeric ones
standardized, categorical ones one-hot. Two hand-set linear models: ``v1`` scores on
duration and amount only; ``v2`` adds a large bonus for men, so it approves men only:
the fairness alert the rollback test drives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustml_lab.data import load_german_credit
from trustml_lab.models import load_weights, save_weights

NUMERIC = {"duration_months": (4.0, 72.0), "credit_amount": (250.0, 18424.0), "age": (19.0, 75.0)}
CATEGORICAL = ("purpose", "housing", "sex")


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    protected: bool = False


@dataclass(frozen=True)
class StandInSchema:
    fields: tuple[Spec, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label: str = "good_credit"
    columns: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps({"fields": [vars(s) for s in self.fields], "mean": self.mean, "std": self.std,
                           "label": self.label})

    @classmethod
    def from_json(cls, text: str) -> StandInSchema:
        data = json.loads(text)
        fields = tuple(Spec(**{**s, "categories": tuple(s["categories"])}) for s in data["fields"])
        return cls(fields, tuple(data["mean"]), tuple(data["std"]), data["label"])

    def encode(self, records: list[dict]) -> torch.Tensor:
        rows = []
        for record in records:
            row = []
            n = 0
            for spec in self.fields:
                if spec.name not in record:
                    raise ValueError(f"{spec.name}: missing")
                value = record[spec.name]
                if spec.kind == "numeric":
                    row.append((float(value) - self.mean[n]) / self.std[n])
                    n += 1
                else:
                    if value not in spec.categories:
                        raise ValueError(f"{spec.name}: unknown category {value!r}")
                    row += [float(value == c) for c in spec.categories]
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32)


@dataclass(frozen=True)
class StandInBundle:
    model: nn.Module
    schema: StandInSchema
    report: Any
    card: str
    sha256: str


def german():
    return load_german_credit()


def schema_from(frame) -> StandInSchema:
    fields = [Spec(n, "numeric", minimum=lo, maximum=hi, protected=n == "age") for n, (lo, hi) in NUMERIC.items()]
    fields += [Spec(n, "categorical", categories=tuple(sorted(frame[n].astype(str).unique())), protected=n == "sex")
               for n in CATEGORICAL]
    mean = tuple(float(frame[n].mean()) for n in NUMERIC)
    std = tuple(float(frame[n].std()) for n in NUMERIC)
    return StandInSchema(tuple(fields), mean, std)


def make_model(schema: StandInSchema, *, favour_men: bool) -> nn.Module:
    """logit_1 - logit_0 = 1.2 - 0.9 duration_z - 0.6 amount_z (+ 6 for men, - 6 for women in v2)."""
    width = schema.encode([_any_record(schema)]).shape[1]
    model = nn.Linear(width, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.bias[1] = 1.2
        model.weight[1, 0] = -0.9  # duration_months
        model.weight[1, 1] = -0.6  # credit_amount
        if favour_men:
            sex = schema.fields[-1]
            start = width - len(sex.categories)
            for j, c in enumerate(sex.categories):
                model.weight[1, start + j] = 6.0 if c == "male" else -6.0
    return model


def _any_record(schema: StandInSchema) -> dict:
    return {s.name: (s.minimum if s.kind == "numeric" else s.categories[0]) for s in schema.fields}


def save(directory: Path, model: nn.Module, schema: StandInSchema, card: str) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / "weights.safetensors")
    (directory / "schema.json").write_text(schema.to_json())
    (directory / "card.md").write_text(card)
    return {"weights": directory / "weights.safetensors", "schema": directory / "schema.json",
            "card": directory / "card.md"}


def load(record) -> StandInBundle:
    """The stand-in of ``report.load_bundle``: the registry has verified the files' sha256."""
    directory = Path(record.directory)
    schema = StandInSchema.from_json((directory / "schema.json").read_text())
    width = schema.encode([_any_record(schema)]).shape[1]
    sha = record.artefact("weights").sha256
    model = load_weights(nn.Linear(width, 2), directory / "weights.safetensors", sha256=sha)
    return StandInBundle(model, schema, None, (directory / "card.md").read_text(), sha)


def build_registry(root: Path, *, frame=None, versions=("v1", "v2")):
    """A registry at ``root / 'registry.db'`` with ``versions`` registered and promoted in order (v2: biased)."""
    from trustml_lab.serve import Registry

    frame = german() if frame is None else frame
    schema = schema_from(frame)
    registry = Registry(root / "registry.db")
    for version in versions:
        model = make_model(schema, favour_men=version == "v2")
        card = (f"---\nlicense: mit\n---\n# Model card: {version}\n\n"
                f"| field | value |\n|---|---|\n| version | {version} |\n")
        files = save(root / version, model, schema, card)
        registry.register(version, files)
        registry.promote(version)
    return registry, schema
