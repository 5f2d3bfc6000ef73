"""Model versions for the service's tests: the shipped credit model and a biased successor.

``v1`` is the chapter's shipped model (``data/credit_model_v1/``, with its trust report and
model card, re-saved into a test folder with ``save_bundle`` so a test may tamper with it).
``v2`` has the same schema but a model that learned a proxy of sex: it approves exactly the
applicants whose ``relationship`` is ``Husband`` (the Adult census has no female husbands),
so its traffic trips the monitor's four-fifths rule on selection rates by sex.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import torch

from trustml_lab.data import load_adult
from trustml_lab.report import FeatureSchema, load_credit_model, save_bundle


@functools.lru_cache(maxsize=1)
def shipped():
    return load_credit_model()


@functools.lru_cache(maxsize=1)
def adult() -> pd.DataFrame:
    """Adult without rows that miss a schema field (45,222 rows), with its ``split`` column."""
    names = [spec.name for spec in shipped().schema.fields]
    return load_adult().dropna(subset=names).reset_index(drop=True)


def reference(rows: int | None = 5000) -> pd.DataFrame:
    """Raw training rows (the schema's fields), the first ``rows`` of them."""
    names = [spec.name for spec in shipped().schema.fields]
    train = adult()[adult()["split"] == "train"][names].reset_index(drop=True)
    return train if rows is None else train.iloc[:rows]


def test_records(start: int = 0, count: int = 200) -> list[dict]:
    """Applicants of the census ``test`` part as a client would send them (JSON values)."""
    schema = shipped().schema
    test = adult()[adult()["split"] == "test"].iloc[start:start + count]
    out = []
    for row in test.to_dict("records"):
        out.append({spec.name: (float(row[spec.name]) if spec.kind == "numeric" else str(row[spec.name]))
                    for spec in schema.fields})
    return out


def test_labels(start: int = 0, count: int = 200) -> list[int]:
    """The outcomes (income > 50K: 1) of :func:`test_records`' applicants."""
    return [int(v) for v in adult()[adult()["split"] == "test"]["income"].iloc[start:start + count]]


def husband_model(schema: FeatureSchema) -> torch.nn.Module:
    """An MLP of the schema's shape whose favorable logit is 8 * [relationship=Husband] - 4."""
    model = schema.build_model()
    column = schema.feature_names.index("relationship=Husband")
    first, second, head = model[0], model[2], model[4]
    with torch.no_grad():
        for layer in (first, second, head):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0, column] = 1.0
        second.weight[0, 0] = 1.0
        head.weight[1, 0] = 8.0
        head.bias[1] = -4.0
    return model.eval()


def card(version: str) -> str:
    return (f"---\nlicense: mit\n---\n# Model card: {version}\n\n"
            f"| field | value |\n|---|---|\n| version | {version} |\n")


def save_versions(root: Path, versions=("v1", "v2")) -> dict[str, dict[str, str]]:
    """Save the bundles of ``versions`` under ``root / version``; return each one's ``{file: sha256}``."""
    bundle = shipped()
    hashes = {}
    for version in versions:
        if version == "v1":  # the shipped model with its trust report and model card
            hashes[version] = save_bundle(root / version, model=bundle.model, schema=bundle.schema,
                                          report=bundle.report, card=bundle.card)
        else:
            hashes[version] = save_bundle(root / version, model=husband_model(bundle.schema), schema=bundle.schema,
                                          card=card(version))
    return hashes


def build_registry(root: Path, versions=("v1", "v2"), *, bundles: Path | None = None):
    """A registry at ``root / 'registry.db'`` with ``versions`` registered and promoted in order.

    The bundles are saved under ``root``, or taken from ``bundles`` (a folder ``save_versions``
    filled: tests that do not alter the files may share it)."""
    from trustml_lab.serve import Registry
    from trustml_lab.serve.app import register_bundle

    registry = Registry(root / "registry.db")
    if bundles is None:
        save_versions(root, versions)
    for version in versions:
        register_bundle(registry, version, (bundles or root) / version)
    return registry
