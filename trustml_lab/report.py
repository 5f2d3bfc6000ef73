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
    "FeatureSchema",
    "FieldSpec",
    "load_bundle",
    "load_credit_model",
    "save_bundle",
]

#: The files of a bundle: the two required ones first.
WEIGHTS_FILE, SCHEMA_FILE, REPORT_FILE, CARD_FILE = "model.safetensors", "schema.json", "report.json", "model_card.md"
BUNDLE_FILES = (WEIGHTS_FILE, SCHEMA_FILE, REPORT_FILE, CARD_FILE)
#: The chapter's shipped model: a version folder in ``data/``.
CREDIT_MODEL = "credit_model_v1"
SCHEMA_FORMAT = 1


# --------------------------------------------------------------------------- the feature schema

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
        if not isinstance(text, (str, bytes)):
            raise TypeError(f"text: expected JSON text, got {describe(text)}")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"text: not valid JSON ({err})") from err
        if not isinstance(payload, Mapping):
            raise ValueError(f"text: expected a JSON object, got {describe(payload)}")
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


class TrustReport:  # replaced below by the full record
    @classmethod
    def from_json(cls, text: str) -> TrustReport:
        raise NotImplementedError
