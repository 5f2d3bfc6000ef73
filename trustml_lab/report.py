"""Chapter 6: the trust report, the model card, the release gate, and the shipped model's bundle.

A model version ships as one **bundle**, a folder of plain files, each with its sha256:

=====================  ==========================================================
file                   content
=====================  ==========================================================
``model.safetensors``  the weights (tensors only: loading them can never run code)
``schema.json``        the :class:`FeatureSchema`: fields, categories, ranges, the
                       encoder's means and standard deviations, the protected
                       attributes, the label, the architecture
``report.json``        the :class:`TrustReport` (optional)
``model_card.md``      the model card (optional)
=====================  ==========================================================

:func:`save_bundle` writes it and returns ``{filename: sha256}``; :func:`load_bundle`
checks every sha256 against hashes kept *elsewhere* (the registry, ``data/MANIFEST``)
before it parses a byte, and refuses a file that differs, naming it. Nothing is ever
unpickled. :func:`load_credit_model` loads the chapter's shipped model,
``data/credit_model_v1/``, against ``data/MANIFEST``.

Protected attributes (``sex``, ``race``) are fields of the schema, so a service receives,
logs and monitors them, but they are never inputs of the model: :meth:`FeatureSchema.encode`
leaves them out and :meth:`FeatureSchema.groups` returns them as group codes for audits.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._validation import check_model, describe

__all__ = [
    "Bundle",
    "Estimate",
    "FeatureSchema",
    "FieldSpec",
    "GateResult",
    "GroupRates",
    "Privacy",
    "ReleasePolicy",
    "Robustness",
    "Rule",
    "TrustReport",
    "bootstrap_metrics",
    "evaluate_gate",
    "load_bundle",
    "load_credit_model",
    "load_policy",
    "model_card",
    "model_card_html",
    "model_size_bytes",
    "parse_policy",
    "quantize",
    "report_figures",
    "save_bundle",
    "transfer_attack",
    "trust_report",
]

#: The files of a bundle: the two required ones first.
WEIGHTS_FILE, SCHEMA_FILE, REPORT_FILE, CARD_FILE = "model.safetensors", "schema.json", "report.json", "model_card.md"
BUNDLE_FILES = (WEIGHTS_FILE, SCHEMA_FILE, REPORT_FILE, CARD_FILE)
#: The chapter's shipped model: a version folder in ``data/``.
CREDIT_MODEL = "credit_model_v1"
SCHEMA_FORMAT = 1


# --------------------------------------------------------------------------- the feature schema


def _json_object(text: Any) -> Mapping:
    """``json.loads(text)`` of a JSON object; TypeError/ValueError naming ``text`` otherwise."""
    if not isinstance(text, (str, bytes)):
        raise TypeError(f"text: expected JSON text, got {describe(text)}")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"text: not valid JSON ({err})") from err
    if not isinstance(payload, Mapping):
        raise ValueError(f"text: expected a JSON object, got {describe(payload)}")
    return payload

@dataclass(frozen=True)
class FieldSpec:
    """One field of an applicant record, as a client sends it.

    ``kind`` is ``"numeric"`` (a finite number in ``[minimum, maximum]``, standardized
    as ``(v - mean) / std``; ``integer`` fields refuse fractions) or ``"categorical"`` (one
    of ``categories``, one-hot encoded in that order). A ``protected`` field is an
    attribute to audit, not a model input; ``privileged`` lists its values treated as
    privileged (group code 1), as aif360's ``privileged_classes``.
    """

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None
    integer: bool = False
    protected: bool = False
    privileged: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"fields[{self.name!r}]"
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"{where}.kind: expected 'numeric' or 'categorical', got {self.kind!r}")
        if self.kind == "categorical":
            if not self.categories or not all(isinstance(c, str) for c in self.categories):
                raise ValueError(f"{where}.categories: expected a non-empty list of strings, got {self.categories!r}")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"{where}.categories: expected distinct categories, got {self.categories!r}")
            unknown = [p for p in self.privileged if p not in self.categories]
            if unknown:
                raise ValueError(f"{where}.privileged: expected values among its categories, got {unknown}")
        else:
            values = (self.minimum, self.maximum, self.mean, self.std)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ValueError(f"{where}: expected finite minimum, maximum, mean and std, got {values}")
            if not self.minimum <= self.maximum or not self.std > 0:
                raise ValueError(f"{where}: expected minimum <= maximum and std > 0, got "
                                 f"[{self.minimum}, {self.maximum}], std {self.std}")
        if self.protected and self.kind == "categorical" and not self.privileged:
            raise ValueError(f"{where}.privileged: expected the privileged values of a protected field, got none")

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's columns for this field (none for a protected one)."""
        if self.protected:
            return ()
        if self.kind == "numeric":
            return (self.name,)
        return tuple(f"{self.name}={c}" for c in self.categories)

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is valid for this field, else a ``ValueError``/``TypeError`` naming ``where``."""
        if self.kind == "categorical":
            if not isinstance(value, str):
                raise TypeError(f"{where}: expected one of the {len(self.categories)} categories (a string), "
                                f"got {describe(value)}")
            if value not in self.categories:
                shown = ", ".join(repr(c) for c in self.categories[:8]) + (", ..." if len(self.categories) > 8 else "")
                raise ValueError(f"{where}: expected one of {shown}, got unknown category {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{where}: expected a number, got {describe(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        if self.integer and number != round(number):
            raise ValueError(f"{where}: expected a whole number, got {value!r}")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(f"{where}: expected a number in [{self.minimum:g}, {self.maximum:g}] (the range seen "
                             f"in training), got {value!r}")
        return number

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "protected": self.protected}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
            if self.protected:
                out["privileged"] = list(self.privileged)
        else:
            out.update(minimum=self.minimum, maximum=self.maximum, mean=self.mean, std=self.std,
                       integer=self.integer)
        return out

    @classmethod
    def from_dict(cls, item: Any, where: str) -> FieldSpec:
        if not isinstance(item, Mapping):
            raise TypeError(f"{where}: expected an object, got {describe(item)}")
        allowed = {"name", "kind", "protected", "categories", "privileged", "minimum", "maximum", "mean", "std",
                   "integer"}
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        for key in ("name", "kind"):
            if not isinstance(item.get(key), str):
                raise ValueError(f"{where}.{key}: expected a string, got {describe(item.get(key))}")
        return cls(name=item["name"], kind=item["kind"], categories=tuple(item.get("categories", ())),
                   minimum=item.get("minimum"), maximum=item.get("maximum"), mean=item.get("mean"),
                   std=item.get("std"), integer=bool(item.get("integer", False)),
                   protected=bool(item.get("protected", False)), privileged=tuple(item.get("privileged", ())))


@dataclass(frozen=True, kw_only=True)
class FeatureSchema:
    """The contract between a client and the model: which fields, which values, which columns.

    ``fields`` in the order a record is read; the model's columns are the non-protected
    fields' :attr:`FieldSpec.columns` in that order (:attr:`feature_names`). ``label`` is
    the target's name and ``favorable`` its favorable value (1: approve). ``hidden`` is
    the architecture, an :class:`trustml_lab.models.MLP` with these hidden widths and two
    outputs. The means and standard deviations are the training split's only. Equals
    :func:`trustml_lab.data.encode_tabular` with ``fit_on`` the training rows, on the
    non-protected columns (``tests/test_report.py`` compares them on Adult).

    >>> schema = FeatureSchema(fields=(
    ...     FieldSpec("age", "numeric", minimum=17, maximum=90, mean=40.0, std=10.0, integer=True),
    ...     FieldSpec("job", "categorical", categories=("a", "b")),
    ...     FieldSpec("sex", "categorical", categories=("Female", "Male"), protected=True, privileged=("Male",)),
    ... ), label="income")
    >>> schema.feature_names
    ('age', 'job=a', 'job=b')
    >>> schema.encode([{"age": 50, "job": "b", "sex": "Female"}])
    tensor([[1., 0., 1.]])
    >>> schema.groups([{"age": 50, "job": "b", "sex": "Female"}])["sex"]
    tensor([0])
    >>> schema.encode([{"age": 200, "job": "b", "sex": "Male"}])
    Traceback (most recent call last):
    ...
    ValueError: records[0]['age']: expected a number in [17, 90] (the range seen in training), got 200
    >>> FeatureSchema.from_json(schema.to_json()) == schema
    True
    """

    fields: tuple[FieldSpec, ...]
    label: str
    favorable: int = 1
    hidden: tuple[int, ...] = (64, 32)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.fields, tuple) or not all(isinstance(f, FieldSpec) for f in self.fields):
            raise TypeError(f"fields: expected a tuple of FieldSpec, got {describe(self.fields)}")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"fields: expected distinct names, got {names}")
        if not any(not f.protected for f in self.fields):
            raise ValueError("fields: expected at least one field that is a model input (not protected)")
        if not isinstance(self.label, str) or not self.label or self.label in names:
            raise ValueError(f"label: expected a name that is not a field, got {self.label!r}")
        if self.favorable not in (0, 1) or isinstance(self.favorable, bool):
            raise ValueError(f"favorable: expected 0 or 1, got {self.favorable!r}")
        if not self.hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer widths, got {self.hidden!r}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's columns, in order."""
        return tuple(c for f in self.fields for c in f.columns)

    @property
    def protected(self) -> tuple[str, ...]:
        """The names of the protected fields."""
        return tuple(f.name for f in self.fields if f.protected)

    def field_columns(self) -> dict[str, list[int]]:
        """The model's column indices of each input field (a field's one-hot columns together)."""
        out, start = {}, 0
        for spec in self.fields:
            if spec.columns:
                out[spec.name] = list(range(start, start + len(spec.columns)))
                start += len(spec.columns)
        return out

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise ValueError(f"name: expected one of the fields {[f.name for f in self.fields]}, got {name!r}")

    def build_model(self) -> nn.Module:
        """A fresh :class:`trustml_lab.models.MLP` of this schema's shape (load weights into it)."""
        from .models import MLP

        return MLP(len(self.feature_names), hidden=self.hidden, out_features=2)

    # ------------------------------------------------------------------ records in, tensors out

    def _check_records(self, records: Any, *, protected: bool) -> list[Mapping[str, Any]]:
        if isinstance(records, Mapping):
            raise TypeError("records: expected a list of records (dicts), got one dict; wrap it in a list")
        if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
            raise TypeError(f"records: expected a list of records (dicts), got {describe(records)}")
        if len(records) == 0:
            raise ValueError("records: expected at least one record, got an empty list")
        known = {f.name for f in self.fields}
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"records[{i}]: expected a dict of field values, got {describe(record)}")
            unknown = sorted(str(k) for k in record if k not in known)
            if unknown:
                raise ValueError(f"records[{i}][{unknown[0]!r}]: unknown field; expected only the schema's fields "
                                 f"{sorted(known)}")
            for spec in self.fields:
                if spec.protected and not protected:
                    if spec.name in record:
                        spec.check(record[spec.name], f"records[{i}][{spec.name!r}]")
                    continue
                if spec.name not in record:
                    raise ValueError(f"records[{i}][{spec.name!r}]: missing field ({spec.kind})")
                spec.check(record[spec.name], f"records[{i}][{spec.name!r}]")
        return list(records)

    def encode(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """The model's float32 feature matrix for a list of raw records (dicts a client sends).

        Every non-protected field is required and checked (type, category, range); a
        protected field may be present (it is checked, never encoded); an unknown key is
        refused. Errors name the record and the field, e.g. ``records[2]['age']``.
        """
        records = self._check_records(records, protected=False)
        out = np.zeros((len(records), len(self.feature_names)), dtype=np.float32)
        column = 0
        for spec in self.fields:
            if spec.protected:
                continue
            if spec.kind == "numeric":
                values = np.array([float(r[spec.name]) for r in records])
                out[:, column] = (values - spec.mean) / spec.std
                column += 1
            else:
                index = {c: k for k, c in enumerate(spec.categories)}
                out[np.arange(len(records)), column + np.array([index[r[spec.name]] for r in records])] = 1.0
                column += len(spec.categories)
        return torch.from_numpy(out)

    def groups(self, records: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """The protected attributes of ``records`` as int64 group codes, 1 = privileged."""
        records = self._check_records(records, protected=True)
        return {spec.name: torch.tensor([int(r[spec.name] in spec.privileged) for r in records])
                for spec in self.fields if spec.protected}

    def encode_frame(self, frame: pd.DataFrame) -> torch.Tensor:
        """:meth:`encode` for a DataFrame with a column per field (vectorized, same checks)."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame: expected a pandas DataFrame, got {describe(frame)}")
        blocks = []
        for spec in self.fields:
            if spec.protected:
                continue
            if spec.name not in frame.columns:
                raise ValueError(f"frame[{spec.name!r}]: missing column ({spec.kind})")
            series = frame[spec.name]
            if spec.kind == "numeric":
                values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = np.flatnonzero(~(np.isfinite(values) & (values >= spec.minimum) & (values <= spec.maximum)))
                if len(bad):
                    raise ValueError(f"frame[{spec.name!r}]: expected numbers in [{spec.minimum:g}, "
                                     f"{spec.maximum:g}], got {series.iloc[bad[0]]!r} in row {int(bad[0])}")
                blocks.append(((values - spec.mean) / spec.std)[:, None])
            else:
                codes = pd.Categorical(series.astype(object), categories=list(spec.categories)).codes
                bad = np.flatnonzero(codes < 0)
                if len(bad):
                    raise ValueError(f"frame[{spec.name!r}]: unknown category {series.iloc[bad[0]]!r} in row "
                                     f"{int(bad[0])}")
                one_hot = np.zeros((len(frame), len(spec.categories)))
                one_hot[np.arange(len(frame)), codes] = 1.0
                blocks.append(one_hot)
        return torch.from_numpy(np.concatenate(blocks, axis=1).astype(np.float32))

    def groups_frame(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """:meth:`groups` for a DataFrame: int64 codes, 1 = privileged."""
        out = {}
        for spec in self.fields:
            if spec.protected:
                if spec.name not in frame.columns:
                    raise ValueError(f"frame[{spec.name!r}]: missing column (protected attribute)")
                out[spec.name] = torch.from_numpy(frame[spec.name].astype(object).isin(spec.privileged)
                                                  .to_numpy().astype(np.int64))
        return out

    # ------------------------------------------------------------------ building and JSON

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, label: str, fields: Sequence[str], protected: Mapping[str, Any],
                   fit_on: Any, integer: Sequence[str] = (), hidden: Sequence[int] = (64, 32),
                   description: str = "") -> FeatureSchema:
        """Fit a schema on ``frame``'s rows marked by ``fit_on`` (a boolean mask: the training split).

        ``fields`` are the model inputs (numeric columns standardized, the others one-hot
        over their categories), ``protected`` maps each protected column to its privileged
        value(s). Ranges, means and standard deviations (population, as scikit-learn's
        ``StandardScaler``) come from the ``fit_on`` rows only.
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame: expected a pandas DataFrame, got {describe(frame)}")
        mask = np.asarray(fit_on, dtype=bool)
        if mask.shape != (len(frame),) or not mask.any():
            raise ValueError(f"fit_on: expected a boolean mask of the {len(frame)} rows with a True, got {mask.shape}")
        specs = []
        for name in list(fields) + list(protected):
            if name not in frame.columns:
                raise ValueError(f"fields: expected columns of frame, got unknown {name!r}")
            series = frame[name]
            is_protected = name in protected
            numeric = pd.api.types.is_numeric_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype)
            if numeric and not is_protected:
                values = series.to_numpy(dtype=np.float64)[mask]
                specs.append(FieldSpec(name, "numeric", minimum=float(values.min()), maximum=float(values.max()),
                                       mean=float(values.mean()), std=float(values.std()) or 1.0,
                                       integer=name in set(integer)))
            else:
                cats = (list(series.cat.categories) if isinstance(series.dtype, pd.CategoricalDtype)
                        else sorted(series.dropna().unique()))
                privileged = protected.get(name, ())
                privileged = (privileged,) if isinstance(privileged, str) else tuple(privileged)
                specs.append(FieldSpec(name, "categorical", categories=tuple(str(c) for c in cats),
                                       protected=is_protected, privileged=privileged))
        return cls(fields=tuple(specs), label=label, hidden=tuple(int(h) for h in hidden), description=description)

    def to_json(self) -> str:
        """The schema as JSON text (sorted keys, so the bytes are reproducible)."""
        payload = {"format": SCHEMA_FORMAT, "label": self.label, "favorable": self.favorable,
                   "model": {"class": "MLP", "hidden": list(self.hidden), "out_features": 2,
                             "columns": list(self.feature_names)},
                   "description": self.description, "fields": [f.to_dict() for f in self.fields]}
        return json.dumps(payload, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSchema:
        """Parse :meth:`to_json`'s text; refuses (``ValueError`` naming the key) a malformed schema."""
        payload = _json_object(text)
        if payload.get("format") != SCHEMA_FORMAT:
            raise ValueError(f"format: expected schema format {SCHEMA_FORMAT}, got {payload.get('format')!r}")
        for key in ("label", "fields", "model"):
            if key not in payload:
                raise ValueError(f"{key}: missing from the schema")
        fields = payload["fields"]
        if not isinstance(fields, list):
            raise ValueError(f"fields: expected a list, got {describe(fields)}")
        model = payload["model"]
        if not isinstance(model, Mapping) or model.get("class") != "MLP":
            raise ValueError(f"model: expected {{'class': 'MLP', 'hidden': [...]}}, got {model!r}")
        schema = cls(fields=tuple(FieldSpec.from_dict(item, f"fields[{i}]") for i, item in enumerate(fields)),
                     label=payload["label"], favorable=payload.get("favorable", 1),
                     hidden=tuple(model.get("hidden", ())), description=payload.get("description", ""))
        if "columns" in model and list(model["columns"]) != list(schema.feature_names):
            raise ValueError("model.columns: the listed columns differ from those the fields encode to")
        return schema


# --------------------------------------------------------------------------- the bundle

@dataclass(frozen=True)
class Bundle:
    """A loaded model version: the model (eval mode), its schema, report, card and file hashes."""

    model: nn.Module = field(repr=False)
    schema: FeatureSchema = field(repr=False)
    report: Any = field(default=None, repr=False)  # a TrustReport, or None
    card: str | None = field(default=None, repr=False)
    sha256: dict[str, str] = field(default_factory=dict)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_directory(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a folder path (str or pathlib.Path), got {describe(directory)}")
    return Path(directory)


def save_bundle(directory: str | os.PathLike, *, model: nn.Module, schema: FeatureSchema, report: Any = None,
                card: str | None = None) -> dict[str, str]:
    """Write a model version's files into ``directory``; return ``{filename: sha256}``.

    ``model.safetensors`` (the state dict; the model must have ``schema``'s shape),
    ``schema.json``, and ``report.json`` / ``model_card.md`` when given. Keep the
    returned hashes apart from the folder (a registry, a MANIFEST): :func:`load_bundle`
    checks the files against them.

    >>> import tempfile
    >>> schema = FeatureSchema(fields=(FieldSpec("x", "numeric", minimum=0, maximum=1, mean=0.5, std=0.5),),
    ...                        label="y", hidden=(4,))
    >>> hashes = save_bundle(tempfile.mkdtemp(), model=schema.build_model(), schema=schema)
    >>> sorted(hashes)
    ['model.safetensors', 'schema.json']
    """
    from .models import _check_fits, save_weights

    directory = _check_directory(directory)
    check_model(model)
    if not isinstance(schema, FeatureSchema):
        raise TypeError(f"schema: expected a FeatureSchema, got {describe(schema)}")
    _check_fits(schema.build_model(), model.state_dict(), "model")
    if report is not None and not hasattr(report, "to_json"):
        raise TypeError(f"report: expected a TrustReport or None, got {describe(report)}")
    if card is not None and not isinstance(card, str):
        raise TypeError(f"card: expected the model card's Markdown (str) or None, got {describe(card)}")
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {WEIGHTS_FILE: save_weights(model, directory / WEIGHTS_FILE)}
    texts = {SCHEMA_FILE: schema.to_json()}
    if report is not None:
        texts[REPORT_FILE] = report.to_json()
    if card is not None:
        texts[CARD_FILE] = card
    for name, text in texts.items():
        data = text.encode("utf-8")
        (directory / name).write_bytes(data)
        hashes[name] = _sha256_bytes(data)
    return hashes


def _expected_hashes(directory: Path, sha256: Any) -> dict[str, str]:
    from .data import data_dir, read_manifest
    from .models import _check_sha256

    if sha256 is None:
        try:
            relative = directory.resolve().relative_to(data_dir().resolve())
        except ValueError:
            raise ValueError(f"sha256: expected the files' sha256 ({{filename: hex digest}}, from save_bundle or "
                             f"the registry) for {directory}, which is not in data/; got None") from None
        manifest = read_manifest()
        prefix = f"{relative.as_posix()}/"
        sha256 = {k[len(prefix):]: e.sha256 for k, e in manifest.items() if k.startswith(prefix)}
    if not isinstance(sha256, Mapping):
        raise TypeError(f"sha256: expected a mapping filename -> sha256 or None, got {describe(sha256)}")
    unknown = sorted(set(sha256) - set(BUNDLE_FILES))
    if unknown:
        raise ValueError(f"sha256: expected keys among {list(BUNDLE_FILES)}, got unknown {unknown}")
    for required in (WEIGHTS_FILE, SCHEMA_FILE):
        if required not in sha256:
            raise ValueError(f"sha256: expected a hash for {required}, got keys {sorted(sha256)}")
    for name, digest in sha256.items():
        try:
            _check_sha256(digest)
        except (TypeError, ValueError) as err:
            raise type(err)(f"sha256[{name!r}]: {str(err).split(': ', 1)[1]}") from None
    return dict(sha256)


def load_bundle(directory: str | os.PathLike, *, sha256: Mapping[str, str] | None = None) -> Bundle:
    """Load a version folder written by :func:`save_bundle`, after checking every file's sha256.

    ``sha256`` maps each file to load to its expected digest (``save_bundle``'s return
    value, or a registry's); the weights and schema are required, the report and card
    are loaded when listed. ``None`` reads the digests from ``data/MANIFEST`` (for a
    folder inside ``data/``). Every file is read once, hashed, and refused with a
    ``ValueError`` naming it when its digest differs, before anything is parsed; the
    weights are safetensors (no pickle), the rest JSON and text. The model comes back in
    eval mode.

    >>> import tempfile
    >>> schema = FeatureSchema(fields=(FieldSpec("x", "numeric", minimum=0, maximum=1, mean=0.5, std=0.5),),
    ...                        label="y", hidden=(4,))
    >>> folder = tempfile.mkdtemp()
    >>> hashes = save_bundle(folder, model=schema.build_model(), schema=schema)
    >>> load_bundle(folder, sha256=hashes).model.training
    False
    >>> load_bundle(folder, sha256={**hashes, "schema.json": "0" * 64})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: directory: schema.json has sha256 ..., expected 0000...; refusing to load it
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from .models import _check_fits

    directory = _check_directory(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"directory: {directory} is not a folder")
    expected = _expected_hashes(directory, sha256)
    contents = {}
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"directory: {name} is missing from {directory}")
        data = path.read_bytes()
        actual = _sha256_bytes(data)
        if actual != digest:
            raise ValueError(f"directory: {name} has sha256 {actual}, expected {digest}; refusing to load it")
        contents[name] = data
    schema = FeatureSchema.from_json(contents[SCHEMA_FILE].decode("utf-8"))
    model = schema.build_model()
    try:
        state = load_safetensors(contents[WEIGHTS_FILE])
    except SafetensorError as err:
        raise ValueError(f"directory: {WEIGHTS_FILE} is not a valid safetensors file ({err})") from err
    _check_fits(model, state, WEIGHTS_FILE)
    model.load_state_dict(state, strict=True)
    report = None
    if REPORT_FILE in contents:
        report = TrustReport.from_json(contents[REPORT_FILE].decode("utf-8"))
    card = contents[CARD_FILE].decode("utf-8") if CARD_FILE in contents else None
    return Bundle(model=model.eval(), schema=schema, report=report, card=card, sha256=expected)


def load_credit_model() -> Bundle:
    """The chapter's shipped credit model (``data/credit_model_v1/``), checked against ``data/MANIFEST``.

    An MLP trained on UCI Adult (income > 50K as the favorable decision) by
    ``scripts/reference_models/production.py``; ``sex`` and ``race`` are its protected
    attributes. Returns a :class:`Bundle` with the model in eval mode.

    >>> bundle = load_credit_model()
    >>> bundle.schema.protected, bundle.model.training
    (('sex', 'race'), False)
    """
    from .data import data_dir

    return load_bundle(data_dir() / CREDIT_MODEL)



# --------------------------------------------------------------------------- the trust report

#: The fairness metrics a report carries per protected attribute (unprivileged vs privileged,
#: aif360's conventions, as :func:`trustml_lab.fairness.fairness_report`).
REPORT_METRICS = ("statistical_parity_difference", "disparate_impact", "equal_opportunity_difference",
                  "equal_opportunity_ratio", "average_odds_difference")


@dataclass(frozen=True)
class Estimate:
    """A measured number with its percentile-bootstrap confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupRates:
    """One group of one protected attribute: its size, selection rate, TPR, FPR and accuracy."""

    attribute: str
    group: str
    size: int
    selection_rate: float
    tpr: float
    fpr: float
    accuracy: float


@dataclass(frozen=True)
class Robustness:
    """Accuracy under ``attack`` at each L-inf radius ``eps`` (on the standardized features)."""

    attack: str
    eps: tuple[float, ...]
    accuracy: tuple[float, ...]
    rows: int

    def at(self, eps: float) -> float:
        """The accuracy at radius ``eps`` (one of the measured radii)."""
        for e, a in zip(self.eps, self.accuracy):
            if e == eps:
                return a
        raise ValueError(f"eps: expected one of the measured radii {list(self.eps)}, got {eps!r}")


@dataclass(frozen=True)
class Privacy:
    """The differential-privacy guarantee of a DP-SGD training (``trustml_lab.privacy.dp_fit``)."""

    epsilon: float
    delta: float
    accountant: str
    sample_rate: float
    noise_multiplier: float
    steps: int


@dataclass(frozen=True)
class TrustReport:
    """Measured facts about one model version: data, accuracy, fairness, robustness, explanations, privacy.

    Built by :func:`trust_report`; :meth:`to_json` / :meth:`from_json` round-trip it
    exactly (floats included: JSON writes the shortest text that reads back as the
    same double). ``fairness[attribute][metric]`` is an :class:`Estimate` with a
    percentile-bootstrap interval at ``confidence`` from ``n_bootstrap`` resamples of the
    evaluation rows (one draw of resamples shared by every metric and attribute);
    ``explanations`` maps each input field to its mean absolute exact Shapley value
    (fields as players, one-hot columns together) on the approval probability;
    ``privacy`` is ``None`` for a model trained without differential privacy.
    """

    model: str
    data: dict[str, str]
    evaluation: str
    rows: int
    accuracy: Estimate
    groups: tuple[GroupRates, ...]
    fairness: dict[str, dict[str, Estimate]]
    robustness: Robustness | None
    explanations: dict[str, float]
    privacy: Privacy | None
    artefacts: dict[str, str]
    versions: dict[str, str]
    confidence: float
    n_bootstrap: int
    seed: int
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists; a NaN or infinite number, e.g. the TPR of a group
        with no positives, becomes the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``: strict
        JSON has no such numbers)."""
        from dataclasses import asdict

        return _strict_json_numbers(asdict(self))

    def to_json(self) -> str:
        """The report as JSON text (keys in the record's order, so a reloaded report lists them alike)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TrustReport:
        """Read :meth:`to_json`'s text back (``ValueError`` naming the key for a malformed report)."""
        d = _json_object(text)
        missing = [k for k in cls.__dataclass_fields__ if k not in d and k != "notes"]
        if missing:
            raise ValueError(f"{missing[0]}: missing from the report")
        try:
            robustness = d["robustness"]
            privacy = d["privacy"]
            return cls(
                model=d["model"], data=dict(d["data"]), evaluation=d["evaluation"], rows=d["rows"],
                accuracy=_estimate(d["accuracy"]),
                groups=tuple(GroupRates(**_numbers(g, "selection_rate", "tpr", "fpr", "accuracy"))
                             for g in d["groups"]),
                fairness={a: {m: _estimate(e) for m, e in v.items()} for a, v in d["fairness"].items()},
                robustness=None if robustness is None else Robustness(
                    attack=robustness["attack"], eps=tuple(robustness["eps"]),
                    accuracy=tuple(_number(a) for a in robustness["accuracy"]), rows=robustness["rows"]),
                explanations={k: _number(v) for k, v in d["explanations"].items()},
                privacy=None if privacy is None else Privacy(**_numbers(privacy, "epsilon", "delta")),
                artefacts=dict(d["artefacts"]), versions=dict(d["versions"]), confidence=d["confidence"],
                n_bootstrap=d["n_bootstrap"], seed=d["seed"], notes=d.get("notes", ""))
        except (TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"text: malformed report ({err})") from err


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict_json_numbers(value: Any) -> Any:
    """``value`` with each NaN or infinite float replaced by ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _strict_json_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json_numbers(v) for v in value]
    return value


def _number(value: Any) -> Any:
    """The inverse of :func:`_strict_json_numbers` for one number field."""
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def _numbers(record: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: _number(v) if k in names else v for k, v in record.items()}


def _estimate(record: Mapping[str, Any]) -> Estimate:
    return Estimate(**_numbers(record, "value", "low", "high"))


def _one_hot(cells: torch.Tensor, count: int) -> torch.Tensor:
    """float64 one-hot rows of ``cells`` (values 0 .. count - 1)."""
    return torch.nn.functional.one_hot(cells, count).double()


def _side_metrics(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """The report's metrics from confusion tables ``(..., 2 groups, 2 true, 2 pred)``, group 1 privileged."""
    n = conf.sum(dim=(-1, -2))
    selection = (conf[..., 0, 1] + conf[..., 1, 1]) / n
    tpr = conf[..., 1, 1] / (conf[..., 1, 0] + conf[..., 1, 1])
    fpr = conf[..., 0, 1] / (conf[..., 0, 0] + conf[..., 0, 1])
    return {
        "statistical_parity_difference": selection[..., 0] - selection[..., 1],
        "disparate_impact": selection[..., 0] / selection[..., 1],
        "equal_opportunity_difference": tpr[..., 0] - tpr[..., 1],
        "equal_opportunity_ratio": tpr[..., 0] / tpr[..., 1],
        "average_odds_difference": 0.5 * ((fpr[..., 0] - fpr[..., 1]) + (tpr[..., 0] - tpr[..., 1])),
    }


def _multinomial_counts(sizes: torch.Tensor, n_bootstrap: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(n_bootstrap, m)`` float64 draws of how many of ``n = sizes.sum()`` rows drawn uniformly with
    replacement fall in each of ``m`` cells holding ``sizes`` rows: Multinomial(n, sizes / n), drawn
    as a binary tree of conditional binomials (a node's count splits into its halves with
    probability left size / node size), ``ceil(log2 m)`` vectorized ``torch.binomial`` calls on
    ``generator``'s device. Exact in distribution: it is how a multinomial factorizes."""
    where = generator.device if generator is not None else torch.device("cpu")
    leaves = 1 << (len(sizes) - 1).bit_length()  # a full binary tree: m cells padded with empty ones
    levels = [torch.nn.functional.pad(sizes.to(where, torch.float64), (0, leaves - len(sizes)))]
    while len(levels[-1]) > 1:
        levels.append(levels[-1].view(-1, 2).sum(dim=1))
    counts = levels[-1].expand(n_bootstrap, 1)
    for node, children in zip(levels[:0:-1], levels[-2::-1]):
        left = children[0::2]
        share = torch.where(node > 0, left / node.clamp_min(1), 0.0).expand_as(counts)
        # clamp: torch.binomial was once seen to return -1 (pytorch#42153); a no-op otherwise
        drawn = torch.minimum(torch.binomial(counts, share, generator=generator).clamp_min(0), counts)
        counts = torch.stack([drawn, counts - drawn], dim=2).flatten(1)
    return counts[:, :len(sizes)]


def _bootstrap_cells(keys: torch.Tensor, n_bootstrap: int,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cells of the rows' ``keys`` (one row of codes per data row) and ``n_bootstrap`` resamples' counts of them.

    Returns ``(cells, inverse, counts)``: the distinct key rows (``m`` x columns), each data row's
    cell, and ``counts[b, c]``, how many rows of cell ``c`` resample ``b`` holds (float64, on the
    keys' device). A resample of ``n`` rows drawn uniformly with replacement holds a
    Multinomial(n, sizes / n) number of rows of each cell, so these are the counts of an ordinary
    row bootstrap, drawn in O(m) per resample instead of O(n). :func:`_resampled_rows` draws
    rows that realize them."""
    cells, inverse, sizes = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    return cells, inverse, _multinomial_counts(sizes, n_bootstrap, generator).to(keys.device)


def _resampled_rows(inverse: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``(B, n)`` row indices with ``counts[b, c]`` rows of cell ``c`` (``inverse``: each row's cell), drawn
    uniformly within each cell: with :func:`_bootstrap_cells`' counts, an ordinary bootstrap
    resample of the rows (a uniform draw with replacement, grouped by cell). For references
    and tests: the metrics of ``bootstrap_metrics`` depend on the counts only."""
    order = torch.argsort(inverse, stable=True)
    sizes = torch.bincount(inverse, minlength=counts.shape[1])
    starts = torch.cumsum(sizes, 0) - sizes
    per_row = counts.long()
    every_cell = torch.arange(counts.shape[1], device=inverse.device).repeat(len(counts))
    cell = torch.repeat_interleave(every_cell, per_row.flatten()).view(len(counts), -1)
    u = torch.rand(cell.shape, dtype=torch.float64, generator=generator, device=inverse.device)
    return order[starts[cell] + torch.minimum((u * sizes[cell]).long(), sizes[cell] - 1)]


def bootstrap_metrics(y_true: Any, y_pred: Any, groups: Mapping[str, Any], *, n_bootstrap: int = 1000,
                      confidence: float = 0.95,
                      generator: torch.Generator | None = None) -> dict[str, dict[str, Estimate]]:
    r"""Percentile-bootstrap intervals of accuracy and of each fairness metric, batched.

    A resample's metrics depend only on how many of its rows fall in each cell: each distinct
    combination of the protected attributes' codes, the label and the prediction. Those counts
    of a bootstrap resample (``n`` rows drawn uniformly with replacement) are
    Multinomial(``n``, cell sizes / ``n``), so they are drawn directly, as a tree of conditional
    binomials on ``generator`` (:func:`_bootstrap_cells`): the same bootstrap distribution as
    drawing the ``(n_bootstrap, n)`` row indices, at O(cells) per resample instead of O(n).
    A resample's per-attribute confusion tables (the counts of ``4 g + 2 y + \hat y``, as in
    :func:`trustml_lab.fairness.group_confusion`) are then one matrix product of the
    ``(n_bootstrap, cells)`` counts with the cells' one-hot confusion cells: no Python loop over
    resamples, and exact (whole-number counts). Each metric's value is the full
    sample's; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of the finite resampled values (linear interpolation, numpy's default). Each
    resample's numbers equal :func:`trustml_lab.fairness.fairness_report` on rows that realize
    its counts (:func:`_resampled_rows`; ``tests/test_report.py`` and
    ``benchmarks/production.py`` compare them with a loop). ``groups`` maps each protected
    attribute to 0/1 codes (1 privileged).
    Returns ``{"accuracy": {"accuracy": ...}, attribute: {metric: Estimate}}``.

    >>> y = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0] * 25); p = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0] * 25)
    >>> sex = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0] * 25)
    >>> out = bootstrap_metrics(y, p, {"sex": sex}, n_bootstrap=200, generator=torch.Generator().manual_seed(0))
    >>> est = out["sex"]["equal_opportunity_difference"]
    >>> round(est.value, 4), est.low <= est.value <= est.high
    (0.3333, True)
    """
    from ._validation import as_tensor, check_binary, check_generator, check_in_range, check_int, check_same_length
    from .fairness import group_confusion

    y_true = check_binary(as_tensor(y_true, "y_true", ndim=1), "y_true").long()
    y_pred = check_binary(as_tensor(y_pred, "y_pred", ndim=1), "y_pred").long()
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"groups: expected a dict attribute -> 0/1 group codes, got {describe(groups)}")
    codes = {k: check_binary(as_tensor(v, f"groups[{k!r}]", ndim=1), f"groups[{k!r}]").long()
             for k, v in groups.items()}
    n = check_same_length(y_true=y_true, y_pred=y_pred, **{f"groups[{k!r}]": v for k, v in codes.items()})
    if n == 0:
        raise ValueError("y_true: expected at least one row, got none")
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", low=2)
    confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
    generator = check_generator(generator)
    correct = (y_true == y_pred).double()
    keys = torch.stack([*codes.values(), y_true, y_pred], dim=1)
    cells, _, counts = _bootstrap_cells(keys, n_bootstrap, generator)
    y_cell, p_cell = cells[:, -2], cells[:, -1]
    # (cells, 8 per attribute + 1): each cell's one-hot confusion cell of every attribute, then its correct flag
    onehot = torch.cat([_one_hot(4 * cells[:, k] + 2 * y_cell + p_cell, 8) for k in range(len(codes))]
                       + [(y_cell == p_cell).double()[:, None]], dim=1)
    counted = counts @ onehot
    sample = {"accuracy": {"accuracy": (correct.mean(), counted[:, -1] / n)}}
    for k, (name, code) in enumerate(codes.items()):
        full = _side_metrics(group_confusion(y_true, y_pred, code, num_groups=2))
        resampled = _side_metrics(counted[:, 8 * k:8 * (k + 1)].reshape(-1, 2, 2, 2))
        sample[name] = {m: (full[m], resampled[m]) for m in REPORT_METRICS}
    q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    out: dict[str, dict[str, Estimate]] = {}
    for name, metrics in sample.items():
        out[name] = {}
        for metric, (value, draws) in metrics.items():
            finite = draws[torch.isfinite(draws)]
            low, high = (torch.quantile(finite, q.to(finite.device)).tolist() if len(finite)
                         else [math.nan, math.nan])
            out[name][metric] = Estimate(float(value), low, high)
    return out


def trust_report(model: nn.Module, schema: FeatureSchema, frame: pd.DataFrame, *, model_name: str,
                 data: Mapping[str, str], evaluation: str, artefacts: Mapping[str, str] | None = None,
                 privacy: Privacy | None = None, robust_eps: Sequence[float] = (0.05, 0.1, 0.2),
                 robust_rows: int = 2000, explain_rows: int = 50, background_rows: int = 25,
                 n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
                 attack: Any = None, notes: str = "") -> TrustReport:
    """Build a :class:`TrustReport` for ``model`` on the evaluation rows ``frame`` (one call).

    ``frame`` holds the schema's fields and its label. Measured: accuracy and the
    :data:`REPORT_METRICS` of each protected attribute with bootstrap intervals
    (:func:`bootstrap_metrics`); per-group rates (:func:`trustml_lab.fairness.fairness_report`);
    accuracy under L-inf PGD (10 steps of eps / 4, random start; or ``attack(model, x, y, eps=e)``)
    at each of ``robust_eps`` on the first ``robust_rows`` rows
    (:func:`trustml_lab.robustness.robust_accuracy`, no clamp: standardized features);
    mean absolute exact Shapley values per input field of the approval probability on
    ``explain_rows`` rows against ``background_rows`` others
    (:func:`trustml_lab.interpret.shapley_values`). All randomness comes from ``seed``.
    ``data`` and ``artefacts`` map file names to sha256 (provenance); ``privacy`` is the
    DP guarantee, if any. Works for models without gradients (a quantized model) when
    ``attack`` is a transfer attack (see :func:`transfer_attack`).
    """
    from . import versions as _versions
    from ._validation import check_in_range, check_int, check_seed
    from .fairness import fairness_report
    from .interpret import shapley_values
    from .models import predict, predict_proba
    from .robustness import pgd, robust_accuracy

    if not isinstance(schema, FeatureSchema):
        raise TypeError(f"schema: expected a FeatureSchema, got {describe(schema)}")
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame: expected a pandas DataFrame of evaluation rows, got {describe(frame)}")
    if schema.label not in frame.columns:
        raise ValueError(f"frame: expected the label column {schema.label!r}, got columns {list(frame.columns)}")
    seed = check_seed(seed)
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", low=2)
    confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
    robust_rows, explain_rows = check_int(robust_rows, "robust_rows"), check_int(explain_rows, "explain_rows")
    background_rows = check_int(background_rows, "background_rows")
    x = schema.encode_frame(frame)
    y = torch.tensor(frame[schema.label].to_numpy(), dtype=torch.long)
    groups = schema.groups_frame(frame)
    y_pred = predict(model, x)
    estimates = bootstrap_metrics(y, y_pred, groups, n_bootstrap=n_bootstrap, confidence=confidence,
                                  generator=torch.Generator().manual_seed(seed))
    rates = []
    for name, code in groups.items():
        spec = schema.field(name)
        table = fairness_report(y, y_pred, code, privileged=1).groups
        for g, row in table.iterrows():
            label = "privileged (" + ", ".join(spec.privileged) + ")" if g == 1 else "unprivileged (others)"
            rates.append(GroupRates(name, label, int(row["size"]), float(row["selection_rate"]), float(row["tpr"]),
                                    float(row["fpr"]), float(row["accuracy"])))
    robustness = None
    if robust_eps:
        if attack is None:
            def attack(m, xb, yb, *, eps):
                return pgd(m, xb, yb, eps=eps, alpha=eps / 4, steps=10, clamp=None,
                           generator=torch.Generator().manual_seed(seed))
            attack_name = "L-inf PGD, 10 steps of eps/4, random start (standardized features)"
        else:
            attack_name = getattr(attack, "name", getattr(attack, "__name__", "custom attack"))
        rows = min(robust_rows, len(x))
        curve = robust_accuracy(model, x[:rows], y[:rows], attack=attack, eps=list(robust_eps), clamp=None)
        robustness = Robustness(attack_name, tuple(float(e) for e in curve), tuple(float(curve[e]) for e in curve),
                                rows)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    background = x[order[:background_rows]].double()
    explained = x[order[background_rows:background_rows + explain_rows]].double()
    columns = schema.field_columns()

    def approve(z: torch.Tensor) -> torch.Tensor:
        return predict_proba(model, z)[:, 1].double()

    values = shapley_values(approve, explained, background, groups=list(columns.values())).values
    mean_abs = values.abs().mean(dim=0).tolist()
    explanations = dict(sorted(zip(columns, mean_abs), key=lambda kv: -kv[1]))
    return TrustReport(
        model=model_name, data=dict(data), evaluation=evaluation, rows=len(x),
        accuracy=estimates.pop("accuracy")["accuracy"], groups=tuple(rates), fairness=estimates,
        robustness=robustness, explanations=explanations, privacy=privacy, artefacts=dict(artefacts or {}),
        versions=_versions(), confidence=confidence, n_bootstrap=n_bootstrap, seed=seed, notes=notes)


# --------------------------------------------------------------------------- the release gate

#: The policy file shipped with the package: the chapter's release gate.
DEFAULT_POLICY = Path(__file__).with_name("release_policy.toml")


@dataclass(frozen=True)
class Rule:
    """One rule of a release policy: its section name, thresholds, attributes, blocking or advisory."""

    name: str
    thresholds: dict[str, float]
    attributes: tuple[str, ...] = ()
    blocking: bool = True
    required: bool = False
    note: str = ""


@dataclass(frozen=True)
class ReleasePolicy:
    """A parsed release policy (:func:`load_policy`): the rules by section name."""

    rules: dict[str, Rule]
    source: str = ""


#: Each section of a policy and its numeric keys: (key, low, high) of the allowed range.
_POLICY_KEYS = {
    "accuracy": (("min", 0.0, 1.0),),
    "selection_rate_ratio": (("min", 0.0, 1.0),),
    "tpr_ratio": (("min", 0.0, 1.0),),
    "equal_opportunity_difference": (("max_abs", 0.0, 1.0),),
    "robust_accuracy": (("eps", 0.0, math.inf), ("min", 0.0, 1.0)),
    "privacy": (("max_epsilon", 0.0, math.inf),),
}
_ATTRIBUTE_RULES = ("selection_rate_ratio", "tpr_ratio", "equal_opportunity_difference")


def _policy_number(section: Mapping[str, Any], where: str, key: str, low: float, high: float) -> float:
    name = f"{where}.{key}"
    if key not in section:
        raise ValueError(f"{name}: missing from the policy")
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name}: expected a finite number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def parse_policy(text: str, *, source: str = "") -> ReleasePolicy:
    """Parse a release policy (TOML text); refuses a missing key, a wrong type or a NaN, naming the key.

    Sections (each optional, at least one): ``accuracy`` (``min``), ``selection_rate_ratio``
    and ``tpr_ratio`` (``min``, ``attributes``: the four-fifths rule, two-sided),
    ``equal_opportunity_difference`` (``max_abs``, ``attributes``: judged on the
    confidence interval), ``robust_accuracy`` (``eps``, ``min``), ``privacy``
    (``max_epsilon``, ``required``). Any section may set ``blocking = false`` (advisory)
    and a ``note``.

    >>> policy = parse_policy("[accuracy]\\nmin = 0.8\\n")
    >>> policy.rules["accuracy"].thresholds
    {'min': 0.8}
    >>> parse_policy("[accuracy]\\nmin = nan\\n")
    Traceback (most recent call last):
    ...
    ValueError: accuracy.min: expected a finite number in [0, 1], got nan
    """
    import tomllib

    if not isinstance(text, str):
        raise TypeError(f"text: expected the policy's TOML text, got {describe(text)}")
    try:
        payload = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"text: not valid TOML ({err})") from err
    unknown = sorted(set(payload) - set(_POLICY_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown policy section; expected some of {sorted(_POLICY_KEYS)}")
    if not payload:
        raise ValueError("text: expected at least one rule section, got an empty policy")
    rules = {}
    for name, section in payload.items():
        if not isinstance(section, Mapping):
            raise TypeError(f"{name}: expected a [section] table, got {describe(section)}")
        known = {k for k, _, _ in _POLICY_KEYS[name]} | {"blocking", "note"}
        known |= {"attributes"} if name in _ATTRIBUTE_RULES else set()
        known |= {"required"} if name == "privacy" else set()
        extra = sorted(set(section) - known)
        if extra:
            raise ValueError(f"{name}.{extra[0]}: unknown key; expected some of {sorted(known)}")
        thresholds = {k: _policy_number(section, name, k, lo, hi) for k, lo, hi in _POLICY_KEYS[name]}
        attributes: tuple[str, ...] = ()
        if name in _ATTRIBUTE_RULES:
            if "attributes" not in section:
                raise ValueError(f"{name}.attributes: missing from the policy")
            value = section["attributes"]
            if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
                raise TypeError(f"{name}.attributes: expected a non-empty list of attribute names, "
                                f"got {describe(value)}")
            attributes = tuple(value)
        flags = {}
        for key, default in (("blocking", True), ("required", False)):
            value = section.get(key, default)
            if not isinstance(value, bool):
                raise TypeError(f"{name}.{key}: expected true or false, got {describe(value)}")
            flags[key] = value
        note = section.get("note", "")
        if not isinstance(note, str):
            raise TypeError(f"{name}.note: expected a string, got {describe(note)}")
        rules[name] = Rule(name, thresholds, attributes, flags["blocking"], flags["required"], note)
    return ReleasePolicy(rules, source)


def load_policy(path: str | os.PathLike | None = None) -> ReleasePolicy:
    """Read a policy file (default: the chapter's, ``trustml_lab/release_policy.toml``).

    >>> sorted(load_policy().rules)[:3]
    ['accuracy', 'equal_opportunity_difference', 'privacy']
    """
    if path is None:
        path = DEFAULT_POLICY
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a policy file path (str or pathlib.Path) or None, got {describe(path)}")
    return parse_policy(Path(path).read_text(encoding="utf-8"), source=str(path))


@dataclass(frozen=True)
class GateResult:
    """The verdict of :func:`evaluate_gate`: ``passed`` and one reason per failed blocking rule.

    ``reasons`` and ``warnings`` (failed advisory rules) name the rule, the measured
    value and the threshold; ``failed`` lists the failed blocking rules' ids
    (``"tpr_ratio[sex]"``), ``checked`` every rule id judged.
    """

    passed: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    failed: tuple[str, ...]
    checked: tuple[str, ...]


def _two_sided(ratio: float) -> float:
    return min(ratio, 1 / ratio) if ratio > 0 and math.isfinite(ratio) else (0.0 if ratio == 0 else math.nan)


def evaluate_gate(report: TrustReport, policy: ReleasePolicy | None = None) -> GateResult:
    """Judge ``report`` against ``policy`` (default: :func:`load_policy`'s): one reason per failed rule.

    Rules: accuracy ``>= min``; the four-fifths rule two-sided on selection rate
    (``min(DI, 1/DI) >= min``) and on TPR (``min(r, 1/r) >= min``, ``r`` the
    equal-opportunity ratio), per attribute; ``|EOD| <= max_abs`` for the *whole*
    bootstrap interval (``-max_abs <= low`` and ``high <= max_abs``); accuracy under attack
    at ``eps`` ``>= min``; ``epsilon <= max_epsilon`` (a model without DP fails only when
    ``required``). A NaN measurement fails its rule; a metric the report lacks (an
    attribute, a radius) fails too, saying so.
    """
    if not isinstance(report, TrustReport):
        raise TypeError(f"report: expected a TrustReport, got {describe(report)}")
    if policy is None:
        policy = load_policy()
    if not isinstance(policy, ReleasePolicy):
        raise TypeError(f"policy: expected a ReleasePolicy (load_policy), got {describe(policy)}")
    reasons, warnings, failed, checked = [], [], [], []

    def judge(rule: Rule, rule_id: str, ok: bool, text: str) -> None:
        checked.append(rule_id)
        if not ok:
            (reasons if rule.blocking else warnings).append(f"{rule_id}: {text}")
            if rule.blocking:
                failed.append(rule_id)

    for name, rule in policy.rules.items():
        t = rule.thresholds
        if name == "accuracy":
            value = report.accuracy.value
            judge(rule, name, value >= t["min"], f"accuracy = {value:.4f} < min {t['min']:g}")
        elif name in _ATTRIBUTE_RULES:
            for attribute in rule.attributes:
                rule_id = f"{name}[{attribute}]"
                metrics = report.fairness.get(attribute)
                if metrics is None:
                    judge(rule, rule_id, False, f"the report has no attribute {attribute!r} "
                                                f"(it has {sorted(report.fairness)})")
                    continue
                if name == "equal_opportunity_difference":
                    e = metrics["equal_opportunity_difference"]
                    ok = -t["max_abs"] <= e.low and e.high <= t["max_abs"]
                    judge(rule, rule_id, ok, f"equal_opportunity_difference = {e.value:.4f}, "
                                             f"{report.confidence:.0%} CI [{e.low:.4f}, {e.high:.4f}] not inside "
                                             f"[-{t['max_abs']:g}, {t['max_abs']:g}]")
                else:
                    metric = "disparate_impact" if name == "selection_rate_ratio" else "equal_opportunity_ratio"
                    value = metrics[metric].value
                    two = _two_sided(value)
                    judge(rule, rule_id, two >= t["min"], f"{metric} = {value:.4f}, four-fifths rule "
                                                          f"min(r, 1/r) = {two:.4f} < min {t['min']:g}")
        elif name == "robust_accuracy":
            curve = report.robustness
            if curve is None or t["eps"] not in curve.eps:
                measured = [] if curve is None else list(curve.eps)
                judge(rule, name, False, f"no accuracy measured at eps {t['eps']:g} (measured at {measured})")
            else:
                value = curve.at(t["eps"])
                judge(rule, name, value >= t["min"], f"accuracy under {curve.attack} at eps {t['eps']:g} = "
                                                     f"{value:.4f} < min {t['min']:g}")
        elif name == "privacy":
            if report.privacy is None:
                judge(rule, name, not rule.required, "no differential-privacy guarantee (epsilon = inf), "
                                                     f"required with max_epsilon {t['max_epsilon']:g}")
            else:
                eps = report.privacy.epsilon
                judge(rule, name, eps <= t["max_epsilon"], f"epsilon = {eps:.4f} > max_epsilon "
                                                           f"{t['max_epsilon']:g} (delta {report.privacy.delta:g})")
    return GateResult(not reasons, tuple(reasons), tuple(warnings), tuple(failed), tuple(checked))


# --------------------------------------------------------------------------- the model card

def _ranked(explanations: Mapping[str, float]) -> list[tuple[str, float]]:
    """Fields by decreasing mean absolute SHAP value (ties by name), whatever order the mapping has."""
    return sorted(explanations.items(), key=lambda kv: (-kv[1], kv[0]))


def _card_sections(report: TrustReport, *, intended_use: str, limitations: str) -> list[tuple[str, list[str]]]:
    """The card's sections (Mitchell et al. 2019) as Markdown lines."""
    pct = f"{report.confidence:.0%}"
    acc = report.accuracy
    group_rows = ["| attribute | group | rows | selection rate | TPR | FPR | accuracy |",
                  "|---|---|---:|---:|---:|---:|---:|"]
    group_rows += [f"| {g.attribute} | {g.group} | {g.size} | {g.selection_rate:.3f} | {g.tpr:.3f} | {g.fpr:.3f} | "
                   f"{g.accuracy:.3f} |" for g in report.groups]
    metric_rows = [f"| attribute | metric | value | {pct} CI |", "|---|---|---:|---|"]
    metric_rows += [f"| {a} | {m} | {e.value:.4f} | [{e.low:.4f}, {e.high:.4f}] |"
                    for a, ms in sorted(report.fairness.items()) for m, e in sorted(ms.items())]
    robust = ["No robustness evaluation."] if report.robustness is None else [
        f"Attack: {report.robustness.attack}, on {report.robustness.rows} evaluation rows.", "",
        "| eps | accuracy |", "|---:|---:|",
        *[f"| {e:g} | {a:.4f} |" for e, a in zip(report.robustness.eps, report.robustness.accuracy)]]
    explain = ["| field | mean \\|SHAP\\| |", "|---|---:|",
               *[f"| {k} | {v:.4f} |" for k, v in _ranked(report.explanations)]]
    privacy = (["Trained without differential privacy: no privacy guarantee; membership inference "
                "(chapter 4) is the risk to audit."] if report.privacy is None else
               [f"DP-SGD: epsilon {report.privacy.epsilon:.3f} at delta {report.privacy.delta:g} "
                f"({report.privacy.accountant} accountant; sample rate {report.privacy.sample_rate:g}, "
                f"noise multiplier {report.privacy.noise_multiplier:g}, {report.privacy.steps} steps)."])
    files = [f"- `{k}`: sha256 `{v}`" for k, v in {**report.data, **report.artefacts}.items()]
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    return [
        ("Model details", [f"- Model: `{report.model}`", f"- Built with: {versions}",
                           f"- Report seed {report.seed}; {report.n_bootstrap} bootstrap resamples.",
                           *([f"- Notes: {report.notes}"] if report.notes else [])]),
        ("Intended use", [intended_use]),
        ("Factors", ["Protected attributes audited (never model inputs): "
                     + ", ".join(sorted(report.fairness)) + ". Groups are privileged vs all others, "
                     "as aif360's defaults."]),
        ("Metrics", [f"Accuracy; per group selection rate, TPR, FPR; statistical parity difference, disparate "
                     f"impact, equal-opportunity difference and ratio, average odds difference (unprivileged minus "
                     f"privileged, aif360's conventions), each with a {pct} percentile-bootstrap interval; accuracy "
                     f"under attack; mean absolute Shapley values per field."]),
        ("Evaluation data", [f"{report.evaluation} ({report.rows} rows)."]),
        ("Training data", ["Provenance (sha256 of every file):", "", *files]),
        ("Quantitative analyses", [f"Accuracy {acc.value:.4f} ({pct} CI [{acc.low:.4f}, {acc.high:.4f}]).", "",
                                   *group_rows, "", *metric_rows, "", "Robustness:", "", *robust, "",
                                   "Global explanations:", "", *explain, "", "Privacy:", "", *privacy]),
        ("Ethical considerations", [
            "Decisions about credit affect people's lives; the label (income > 50K in the 1994 census) carries "
            "historical inequality between the groups, which no metric removes. The model does not read the "
            "protected attributes, but other fields (relationship, marital status) act as proxies; the audit "
            "above measures the outcome, which is what matters."]),
        ("Caveats and recommendations", [limitations]),
    ]


def model_card(report: TrustReport, *, intended_use: str | None = None, limitations: str | None = None) -> str:
    """The model card of ``report`` as Markdown, with a Hugging Face YAML header.

    Sections of Mitchell et al. (2019), "Model Cards for Model Reporting": model details,
    intended use, factors, metrics, evaluation data, training data, quantitative analyses,
    ethical considerations, caveats and recommendations. The header is
    ``huggingface_hub.ModelCardData(...).to_yaml()`` with an ``EvalResult`` per measured
    number (accuracy, each fairness metric, robust accuracy), built offline: nothing is
    fetched or pushed, no Hub template is used.
    """
    from huggingface_hub import EvalResult, ModelCardData

    if not isinstance(report, TrustReport):
        raise TypeError(f"report: expected a TrustReport, got {describe(report)}")
    for name, value in (("intended_use", intended_use), ("limitations", limitations)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected text (str) or None, got {describe(value)}")
    intended_use = intended_use or ("A teaching model: the credit decision of the course's chapter 6, approve (1) "
                                    "or deny (0), from a census-style applicant record. Not for real credit "
                                    "decisions.")
    limitations = limitations or ("Trained and evaluated on the 1994 US census (UCI Adult); its populations and "
                                  "income levels differ from any lender's applicants today. Re-audit on your data, "
                                  "monitor per-group rates in production and gate every release.")

    def result(metric: str, value: float, name: str) -> Any:
        return EvalResult(task_type="tabular-classification", dataset_type="uci-adult", dataset_name="UCI Adult",
                          dataset_split="test", metric_type=metric, metric_value=round(value, 6), metric_name=name)

    results = [result("accuracy", report.accuracy.value, "accuracy")]
    for attribute, metrics in sorted(report.fairness.items()):
        results += [result(m, e.value, f"{m} ({attribute})") for m, e in sorted(metrics.items())
                    if math.isfinite(e.value)]
    if report.robustness is not None:
        results += [result("robust_accuracy", a, f"accuracy under attack at eps {e:g}")
                    for e, a in zip(report.robustness.eps, report.robustness.accuracy)]
    data = ModelCardData(license="mit", library_name="pytorch", model_name=report.model,
                         tags=["tabular-classification", "fairness", "trustworthy-ml"], eval_results=results)
    lines = ["---", data.to_yaml(), "---", "", f"# Model card: {report.model}", ""]
    for title, body in _card_sections(report, intended_use=intended_use, limitations=limitations):
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines)


def _figure_uri(fig: Any) -> str:
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def report_figures(report: TrustReport) -> dict[str, str]:
    """The report's plots as PNG data URIs: per-group rates, accuracy under attack, explanations."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures = {}
    fig, ax = plt.subplots(figsize=(7, 2.6))
    labels = [f"{g.attribute}: {g.group.split(' ')[0]}" for g in report.groups]
    xs = np.arange(len(labels))
    ax.bar(xs - 0.2, [g.selection_rate for g in report.groups], 0.4, label="selection rate")
    ax.bar(xs + 0.2, [g.tpr for g in report.groups], 0.4, label="TPR")
    ax.set_xticks(xs, labels)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Per-group rates")
    figures["groups"] = _figure_uri(fig)
    if report.robustness is not None:
        fig, ax = plt.subplots(figsize=(4, 2.6))
        ax.plot((0.0, *report.robustness.eps), (report.accuracy.value, *report.robustness.accuracy), marker="o")
        ax.set_xlabel("eps (L-inf, standardized)")
        ax.set_ylabel("accuracy")
        ax.set_title("Accuracy under attack")
        figures["robustness"] = _figure_uri(fig)
    fig, ax = plt.subplots(figsize=(5, 2.6))
    names = [k for k, _ in _ranked(report.explanations)][::-1]
    ax.barh(names, [report.explanations[n] for n in names])
    ax.set_xlabel("mean |SHAP| on P(approve)")
    ax.set_title("Global explanations")
    figures["explanations"] = _figure_uri(fig)
    return figures


def model_card_html(report: TrustReport, **card_options: Any) -> str:
    """The model card as one self-contained HTML page (plots embedded as PNG data URIs, works offline)."""
    import html

    if not isinstance(report, TrustReport):
        raise TypeError(f"report: expected a TrustReport, got {describe(report)}")
    sections = _card_sections(report, intended_use=card_options.get("intended_use") or
                              "A teaching model for the course's chapter 6; not for real credit decisions.",
                              limitations=card_options.get("limitations") or
                              "Trained on the 1994 US census; re-audit on your data and monitor in production.")
    figures = report_figures(report)
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>Model card: {html.escape(report.model)}</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
           f"<h1>Model card: {html.escape(report.model)}</h1>"]
    for title, body in sections:
        out.append(f"<h2>{html.escape(title)}</h2>")
        table: list[list[str]] = []
        for line in [*body, ""]:
            if line.startswith("|"):
                cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
                if not all(set(c) <= set("-:") for c in cells):
                    table.append(cells)
                continue
            if table:
                head, *rows = table
                out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                     for r in rows) + "</table>")
                table = []
            if line.startswith("- "):
                out.append(f"<ul><li>{html.escape(line[2:])}</li></ul>")
            elif line:
                out.append(f"<p>{html.escape(line)}</p>")
        if title == "Quantitative analyses":
            out += [f'<img alt="{name}" src="{uri}">' for name, uri in figures.items()]
    out.append("</body></html>")
    return "\n".join(out)


# --------------------------------------------------------------------------- compression

def quantize(model: nn.Module) -> nn.Module:
    """A dynamically quantized copy of ``model``: int8 weights in every ``nn.Linear`` (CPU inference).

    ``torch.ao.quantization.quantize_dynamic(copy, {nn.Linear}, dtype=torch.qint8)``, the
    common recipe; ``model`` itself is left unchanged. (torch 2.14 warns that its quantized
    tensor functions are deprecated; that one warning is silenced here.) The copy has no gradients through its
    quantized layers: attack it with :func:`transfer_attack` from the float model.
    """
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    check_model(model)
    float_copy = copy.deepcopy(model).cpu().float().eval()
    with warnings.catch_warnings():  # torch 2.14 announces that its quantized tensor functions are deprecated
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return quantize_dynamic(float_copy, {nn.Linear}, dtype=torch.qint8)


def transfer_attack(source: nn.Module, *, steps: int = 10, seed: int = 0) -> Any:
    """An attack that crafts L-inf PGD examples on ``source`` (a float model) and hands them to any model.

    ``attack(model, x, y, *, eps)``, for :func:`trustml_lab.robustness.robust_accuracy`: the
    examples are computed with ``source``'s gradients (10 steps of eps / 4, random start,
    no clamp), so a model without gradients (a quantized copy of ``source``) can be
    evaluated; an upper bound on its robust accuracy, since a white-box attack could do better.
    """
    from ._validation import check_int, check_seed
    from .robustness import pgd

    check_model(source, "source")
    steps, seed = check_int(steps, "steps"), check_seed(seed)

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float) -> torch.Tensor:
        return pgd(source, x, y, eps=eps, alpha=eps / 4, steps=steps, clamp=None,
                   generator=torch.Generator().manual_seed(seed))

    attack.name = f"transfer L-inf PGD from the float model, {steps} steps of eps/4, random start"
    return attack


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s serialized state (packed int8 weights count as stored), via ``torch.save`` to memory."""
    import io

    check_model(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
