"""The HTTP service: decisions, explanations, the model card, the monitor and the dashboard.

A thin FastAPI layer over the pieces of :mod:`trustml_lab.serve` and
:mod:`trustml_lab.report`; no trust rule lives only here:

``POST /predict``
    validates one application against the data schema of the live model, scores it
    (``score``: the model's probability of the favorable class; ``decision``: 1 when
    ``score >= threshold``), appends the decision to the registry's decision log (model
    version, inputs, score, decision, UTC time) and answers with its ``request_id``;
``POST /explain``
    the same decision (not logged: an explanation is not a decision) with its Shapley
    values per field (:func:`trustml_lab.interpret.kernel_shap`, or the exact
    :func:`~trustml_lab.interpret.shapley_values` for at most 16 fields, the columns of a
    field entering and leaving together, absent fields drawn from a background sample
    of the reference data): ``sum(shap) == score - base_value``; for a denial a
    counterfactual (:func:`trustml_lab.interpret.counterfactual`: the smallest sparse
    change of the numeric, non-protected fields that flips it) and the adverse-action
    reasons (the fields that lowered the score most);
``POST /outcome``
    records what happened for a logged decision (``{"request_id": ..., "label": 0 or 1}``,
    once per decision: 404 for an unknown id, 409 for a second outcome); the monitor's TPR
    and error rates use the decisions whose outcome is known;
``GET /model-card``
    the live version's model card: Markdown, or HTML when the ``Accept`` header prefers
    ``text/html`` (:func:`trustml_lab.report.model_card_html` of the bundle's trust report,
    with its plots; the Markdown rendered as HTML when the bundle has no report);
``GET /metrics``
    the monitor's report (:meth:`~trustml_lab.serve.monitor.Monitor.evaluate`) of the live
    version's recent traffic, as JSON;
``GET /dashboard``
    an HTML page, offline (inline SVG images, no script, stylesheet or font from
    elsewhere): per-group approval and error rates over consecutive windows of the log;
``GET /docs``, ``GET /redoc``, ``GET /openapi.json``
    the OpenAPI document (an example body for each POST) and its two browsable renderings,
    whose scripts and styles the service serves itself (fastapi-offline), so they work offline.

**Validation.** The request body is a pydantic model generated from the bundle's
:class:`~trustml_lab.report.FeatureSchema` (:func:`request_model`): every field
required, numeric fields finite numbers (not strings, not booleans) within the schema's
range, categorical fields one of the schema's categories, no unknown field. A body that
fails gets a 422 whose ``detail`` lists each error's field (``loc``) and whose
``message`` names the first (``"capital_gain: Input should be ..."``); malformed JSON
gets a 422 too, a body over 64 KiB a 413. A rejected request logs nothing.

**Versions and rollback.** The model is the registry's live version, loaded after
:meth:`~trustml_lab.serve.registry.Registry.verified_live` has checked every artefact's
sha256 against the registry (no pickle anywhere: weights are safetensors). Every
``check_every`` decisions (default: one monitor window) the service applies
:func:`~trustml_lab.serve.rollback.check_live`: on a fairness or drift alert of the monitor
the registry marks the version unhealthy and the previous healthy version is served from
the next request on (and the log shows it).
A version whose schema differs from the one the service validates against is refused
(marked unhealthy). With no healthy version left, ``/predict`` answers 503.

**Concurrency.** The event loop only parses, validates and answers; the model runs on two
worker threads of its own, one for decisions and one for explanations, so a slow
explanation never delays a decision and torch never runs in more threads than there are
workers (a threadpool of 40 handlers each running torch fights over the GIL and the cores,
and throughput falls as clients are added). Decisions that arrive while the decision worker is busy wait
for it and are then scored in one forward pass and logged in one SQLite transaction (at
most ``MAX_BATCH`` at a time), so throughput rises with the number of clients instead of
falling; a single client still gets a batch of one, scored and logged before its answer.
A denial's counterfactual search (many small gradient steps) runs on a third thread while
the explanation worker computes the Shapley values (a few large matrix products), so an
explanation takes about as long as the longer of the two, not their sum.

Start it with ``python -m trustml_lab.serve --port 8000`` (see
:mod:`trustml_lab.serve.__main__`), or build the app in Python:

>>> import tempfile, pathlib
>>> from trustml_lab.serve import Registry
>>> registry = Registry(pathlib.Path(tempfile.mkdtemp()) / "registry.db")
>>> create_app(registry, reference=None)
Traceback (most recent call last):
...
TypeError: reference: expected a pandas DataFrame of raw model inputs (the training data), got NoneType None
>>> registry.close()
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, and
# the request models are classes built at run time inside create_app.

import asyncio
import base64
import concurrent.futures
import html
import io
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.exceptions import StarletteHTTPException as HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, create_model

from .._validation import check_in_range, check_int, describe
from ..interpret import MAX_EXACT_FEATURES, counterfactual, kernel_shap, shapley_values
from .monitor import Monitor
from .registry import NoHealthyVersionError, Registry, VersionRecord
from .rollback import _check_triggers, check_live

__all__ = [
    "BackgroundService",
    "ExplainResponse",
    "PredictResponse",
    "ServedModel",
    "create_app",
    "register_bundle",
    "request_model",
]

#: The largest request body accepted (bytes); a larger one gets a 413.
MAX_BODY_BYTES = 64 * 1024
_LOG = logging.getLogger(__name__)
#: The most decisions scored in one forward pass and logged in one transaction.
MAX_BATCH = 64
#: The counterfactual search: at most this many steps of ``COUNTERFACTUAL_STEP`` standard
#: deviations of one feature each (changes of up to 8 standard deviations in all). The search
#: stops as soon as the decision flips, so a near flip costs a few steps.
COUNTERFACTUAL_STEPS = 80
COUNTERFACTUAL_STEP = 0.1
#: The alerts that roll a version back by default: the release policy blocks on equal opportunity
#: (TPR ratio and difference) and treats the selection-rate ratio as advisory (Adult's base rates
#: differ by sex); drift always (the model was not tested on such traffic).
ROLLBACK_ON = ("tpr_ratio", "tpr_difference", "drift")
#: A field is an adverse-action reason when it lowered the score by more than this.
REASON_MIN_SHAP = 1e-3
#: The deepest JSON nesting accepted; deeper bodies get a 422 before they are parsed.
MAX_JSON_DEPTH = 32


# --------------------------------------------------------------------------- request models

def _example(schema: Any, reference: pd.DataFrame | None) -> dict[str, Any]:
    """A valid application: the first reference row that fits the schema, else mid-range values."""
    if reference is not None:
        for record in reference.head(50).to_dict("records"):
            candidate = {spec.name: _plain(record.get(spec.name)) for spec in schema.fields}
            if all(_fits(spec, candidate[spec.name]) for spec in schema.fields):
                return candidate
    example = {}
    for spec in schema.fields:
        if spec.kind == "numeric":
            low, high = spec.minimum, spec.maximum
            middle = (low + high) / 2 if low is not None and high is not None else low or high or 0
            example[spec.name] = float(round(middle) if getattr(spec, "integer", False) else middle)
        else:
            example[spec.name] = list(spec.categories)[0]
    return example


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fits(spec: Any, value: Any) -> bool:
    if spec.kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if getattr(spec, "integer", False) and value != round(value):
            return False
        return ((spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum))
    return value in tuple(spec.categories)


def request_model(schema: Any, *, name: str = "Application", example: Mapping[str, Any] | None = None
                  ) -> type[BaseModel]:
    """A pydantic model of one request body, generated from a :class:`~trustml_lab.report.FeatureSchema`.

    One required field per schema field (protected ones included: the monitor audits
    them), under its own name (an alias, so any name works): a numeric field is a finite
    number (an int or a float, not a string or a boolean: pydantic's strict mode) within
    ``[minimum, maximum]``, a whole number when the field is ``integer``; a categorical field
    is one of its ``categories`` (a ``Literal``); unknown fields are refused. The
    ``example`` (default: mid-range values, the first category) goes into the JSON
    schema, and so into the OpenAPI document.

    >>> from types import SimpleNamespace as Spec
    >>> schema = Spec(fields=(Spec(name="age", kind="numeric", minimum=18, maximum=100, protected=True),
    ...                       Spec(name="housing", kind="categorical", categories=("own", "rent"), protected=False)))
    >>> Application = request_model(schema)
    >>> Application.model_validate({"age": 30, "housing": "own"}).model_dump(by_alias=True)
    {'age': 30.0, 'housing': 'own'}
    >>> from pydantic import ValidationError
    >>> try:
    ...     Application.model_validate({"age": 12, "housing": "own"})
    ... except ValidationError as err:
    ...     print(err.errors()[0]["loc"], err.errors()[0]["type"])
    ('age',) greater_than_equal
    """
    fields = getattr(schema, "fields", None)
    if fields is None or isinstance(fields, (str, bytes)):
        raise TypeError(f"schema: expected a FeatureSchema (with .fields), got {describe(schema)}")
    if not fields:
        raise ValueError("schema: expected at least one field, got none")
    definitions: dict[str, Any] = {}
    for i, spec in enumerate(fields):
        if spec.kind == "numeric":
            whole = 1.0 if getattr(spec, "integer", False) else None
            constraint = Field(alias=spec.name, strict=True, allow_inf_nan=False, ge=spec.minimum, le=spec.maximum,
                               multiple_of=whole, description=_describe_numeric(spec))
            definitions[f"field_{i}"] = (Annotated[float, constraint], ...)
        elif spec.kind == "categorical":
            categories = tuple(spec.categories)
            if not categories:
                raise ValueError(f"schema: field {spec.name!r} has no categories")
            definitions[f"field_{i}"] = (Literal[categories], Field(alias=spec.name, description=(
                f"one of {len(categories)} categories" + (" (protected attribute)" if spec.protected else ""))))
        else:
            raise ValueError(f"schema: field {spec.name!r} has kind {spec.kind!r}; expected 'numeric' or "
                             "'categorical'")
    example = dict(example) if example is not None else _example(schema, None)
    config = ConfigDict(extra="forbid", populate_by_name=False, json_schema_extra={"examples": [example]})
    return create_model(name, __config__=config, **definitions)


def _describe_numeric(spec: Any) -> str:
    bounds = f"in [{spec.minimum:g}, {spec.maximum:g}]" if spec.minimum is not None and spec.maximum is not None \
        else "finite"
    whole = "a whole number" if getattr(spec, "integer", False) else "a number"
    return f"{whole} {bounds}" + (" (protected attribute)" if spec.protected else "")


# --------------------------------------------------------------------------- responses

class PredictResponse(BaseModel):
    """The answer of ``/predict``: the decision, its score, and the model version that made it."""

    request_id: str
    version: str
    score: float = Field(description="the model's probability of the favorable outcome")
    threshold: float
    decision: int = Field(description="1: approved (score >= threshold), 0: denied")
    approved: bool


class Outcome(BaseModel):
    """The body of ``/outcome``: a logged decision's request id and what happened (0 or 1)."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    label: Literal[0, 1]


class OutcomeResponse(BaseModel):
    """The decision an outcome was recorded for."""

    request_id: str
    version: str
    decision: int
    label: int


class Contribution(BaseModel):
    """One field's Shapley value: how much it moved the score from the base value."""

    field: str
    value: Any
    shap: float


class Change(BaseModel):
    """One field of a counterfactual: its value now and the value that would flip the decision."""

    field: str
    current: float
    required: float


class CounterfactualAnswer(BaseModel):
    """The smallest change found (numeric, non-protected fields only) and the score it reaches."""

    found: bool
    changes: list[Change]
    score: float | None
    immutable: list[str]


class ExplainResponse(BaseModel):
    """The answer of ``/explain``: the decision, its Shapley values and, for a denial, a counterfactual."""

    version: str
    score: float
    threshold: float
    decision: int
    approved: bool
    base_value: float = Field(description="the mean score over the background sample; "
                                          "base_value + sum(shap) == score")
    shap: dict[str, float]
    contributions: list[Contribution] = Field(description="fields by |shap|, largest first")
    method: str
    reasons: list[str] = Field(description="adverse-action reasons for a denial: the fields that lowered the "
                                           "score most, and the changes that would flip it")
    counterfactual: CounterfactualAnswer | None


# --------------------------------------------------------------------------- a loaded version

@dataclass(frozen=True)
class _Layout:
    """Which encoded columns each field drives, and for single-column numeric fields the affine map."""

    groups: tuple[tuple[int, ...], ...]  # per field, its columns (none for a field that is not a model input)
    affine: dict[int, tuple[int, float, float]]  # field index -> (column, slope, intercept): column = slope*v + b
    lower: torch.Tensor
    upper: torch.Tensor


def _probe_layout(schema: Any, base: dict[str, Any]) -> _Layout:
    """Find each field's columns by encoding ``base`` with that field changed (works for any ``encode``)."""
    reference = schema.encode([base])[0]
    width = reference.numel()
    groups, affine = [], {}
    lower, upper = reference.clone(), reference.clone()
    owner = torch.full((width,), -1, dtype=torch.long)
    for i, spec in enumerate(schema.fields):
        if spec.kind == "numeric":
            values = [spec.minimum, spec.maximum]
            values = [v for v in values if v is not None] or [base[spec.name] - 1.0, base[spec.name] + 1.0]
            if len(values) == 1 or values[0] == values[1]:
                values = [values[0], values[0] + 1.0]
            middle = (values[0] + values[1]) / 2
            values = [float(values[0]), float(values[1]), float(math.floor(middle))]
            if values[2] in values[:2]:  # a range of one step: no third point to test linearity with
                values = values[:2]
        else:
            values = list(spec.categories)
        rows = schema.encode([{**base, spec.name: v} for v in values])
        changed = (rows != reference).any(dim=0)
        columns = tuple(int(c) for c in torch.nonzero(changed & (owner < 0)).flatten())
        owner[list(columns)] = i
        groups.append(columns)
        if spec.kind == "numeric" and len(columns) == 1:
            (c,) = columns
            low_v, high_v = values[:2]
            slope = float(rows[1, c] - rows[0, c]) / (high_v - low_v)
            intercept = float(rows[0, c]) - slope * low_v
            linear = len(values) < 3 or abs(slope * values[2] + intercept - float(rows[2, c])) <= \
                1e-4 * (1 + abs(float(rows[2, c])))
            if slope != 0 and linear:
                affine[i] = (c, slope, intercept)
                lower[c], upper[c] = min(rows[0, c], rows[1, c]), max(rows[0, c], rows[1, c])
    orphans = torch.nonzero(owner < 0).flatten().tolist()
    if orphans:  # columns no field moved (constant): give them to the first input so every column has a player
        first = next(i for i, g in enumerate(groups) if g)
        groups[first] = tuple(sorted(groups[first] + tuple(orphans)))
    return _Layout(tuple(groups), affine, lower, upper)


class ServedModel:
    """One loaded model version: its bundle, how its fields map to columns, its background sample.

    ``score(records)`` is the probability of the favorable class (the model's logit 1)
    for raw records; the explanations are built on it.
    """

    def __init__(self, version: str, bundle: Any, reference: pd.DataFrame, *, threshold: float,
                 background_size: int, explain_samples: int, immutable: Sequence[str]) -> None:
        self.version = version
        self.bundle = bundle
        self.schema = bundle.schema
        self.model = bundle.model.eval()
        self.threshold = threshold
        self.explain_samples = explain_samples
        self.names = [spec.name for spec in self.schema.fields]
        self.example = _example(self.schema, reference)
        self.layout = _probe_layout(self.schema, self.example)
        records = _fitting_records(self.schema, reference.sample(n=min(len(reference), 4000), random_state=0)
                                   if len(reference) > 4000 else reference)
        generator = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(records), generator=generator)[:background_size].sort().values.tolist()
        with torch.no_grad():
            self.background = self.schema.encode([records[i] for i in pick]).to(torch.float32)
        self.scale = self.schema.encode(records[:2000]).std(dim=0).clamp_min(1e-6)
        protected = {spec.name for spec in self.schema.fields if getattr(spec, "protected", False)}
        self.immutable = sorted(protected | set(immutable) | {spec.name for spec in self.schema.fields
                                                              if spec.kind != "numeric"})
        self.movable = [i for i in self.layout.affine if self.names[i] not in self.immutable]

    def _probability(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.to(torch.float32))
        return torch.softmax(logits, dim=1)[:, 1]

    def score(self, records: list[dict[str, Any]]) -> torch.Tensor:
        with torch.no_grad():
            return self._probability(self.schema.encode(records))

    def explain(self, record: dict[str, Any], *,
                searcher: concurrent.futures.Executor | None = None) -> dict[str, Any]:
        """SHAP values of ``record``'s score and, for a denial, a counterfactual and the reasons.

        With ``searcher`` (an executor), a denial's counterfactual search runs there while the
        Shapley values are computed here: the same answer, sooner on a machine with a core to
        spare (the search is a sequence of small gradient steps, the Shapley values a few large
        matrix products, and both release the GIL inside torch)."""
        if searcher is not None and not isinstance(searcher, concurrent.futures.Executor):
            raise TypeError(f"searcher: expected a concurrent.futures.Executor or None, got {describe(searcher)}")
        x = self.schema.encode([record]).to(torch.float32)
        with torch.no_grad():
            score = float(self._probability(x)[0])
        decision = int(score >= self.threshold)
        search = None
        if not decision and searcher is not None:
            search = searcher.submit(self._counterfactual, record, x)

        def f(z: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self._probability(z).double()

        players = [i for i, g in enumerate(self.layout.groups) if g]  # protected fields are not model inputs
        groups = [list(self.layout.groups[i]) for i in players]
        if len(groups) <= MAX_EXACT_FEATURES:
            result, method = shapley_values(f, x, self.background, groups=groups), "exact Shapley values"
        else:
            result = kernel_shap(f, x, self.background, groups=groups, n_samples=self.explain_samples,
                                 generator=torch.Generator().manual_seed(0))
            method = f"KernelSHAP ({self.explain_samples} coalitions)"
        values = [0.0] * len(self.names)
        for i, value in zip(players, result.values[0].tolist()):
            values[i] = value
        base = float(result.base_values[0])
        shap = {self.names[i]: values[i] for i in players}
        order = sorted(players, key=lambda i: -abs(values[i]))
        contributions = [{"field": self.names[i], "value": record[self.names[i]], "shap": values[i]} for i in order]
        answer = {"version": self.version, "score": score, "threshold": self.threshold, "decision": decision,
                  "approved": bool(decision), "base_value": base, "shap": shap, "contributions": contributions,
                  "method": method, "reasons": [], "counterfactual": None}
        if not decision:
            lowered = [i for i in order if values[i] < -REASON_MIN_SHAP][:4]
            answer["reasons"] = [f"{self.names[i]} = {_show(record[self.names[i]])} lowered the score by "
                                 f"{-values[i]:.3f}" for i in lowered]
            answer["counterfactual"] = self._counterfactual(record, x) if search is None else search.result()
            for change in answer["counterfactual"]["changes"]:
                answer["reasons"].append(f"{change['field']} of {_show(change['required'])} instead of "
                                         f"{_show(change['current'])} would have changed the decision")
        return answer

    def _counterfactual(self, record: dict[str, Any], x: torch.Tensor) -> dict[str, Any]:
        empty = {"found": False, "changes": [], "score": None, "immutable": self.immutable}
        if not self.movable:
            return empty
        movable_columns = {self.layout.affine[i][0] for i in self.movable}
        fixed = [c for c in range(x.shape[1]) if c not in movable_columns]
        # aim a little past the threshold, in logit units: log(t / (1 - t)) is the margin at score t
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        margin = max(math.log(t / (1 - t)), 0.0) + 0.05
        found = counterfactual(self.model, x, target=1, immutable=fixed, lower=self.layout.lower,
                               upper=self.layout.upper, scale=self.scale, margin=margin,
                               step_size=COUNTERFACTUAL_STEP, steps=COUNTERFACTUAL_STEPS)
        if not bool(found.valid[0]):
            return empty
        changed = dict(record)
        changes = []
        for i in self.movable:
            column, slope, intercept = self.layout.affine[i]
            if abs(float(found.x[0, column] - x[0, column])) <= 1e-6:
                continue
            spec = self.schema.fields[i]
            value = (float(found.x[0, column]) - intercept) / slope
            current = float(record[self.names[i]])
            if getattr(spec, "integer", False):  # a whole number, rounded away from the current value
                value = float(math.ceil(value - 1e-9) if value > current else math.floor(value + 1e-9))
            value = min(max(value, spec.minimum), spec.maximum) if spec.minimum is not None else value
            if value == current:
                continue
            changed[self.names[i]] = value
            changes.append({"field": self.names[i], "current": current, "required": value})
        new_score = float(self.score([changed])[0])
        if new_score < self.threshold:
            return {**empty, "score": new_score}
        return {"found": True, "changes": changes, "score": new_score, "immutable": self.immutable}


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _fitting_records(schema: Any, reference: pd.DataFrame) -> list[dict[str, Any]]:
    names = [spec.name for spec in schema.fields]
    missing = [n for n in names if n not in reference.columns]
    if missing:
        raise ValueError(f"reference: expected a column for every schema field, {missing[0]!r} is missing")
    records = [{k: _plain(v) for k, v in r.items()} for r in reference[names].to_dict("records")]
    fitting = [r for r in records if all(_fits(spec, r[spec.name]) for spec in schema.fields)]
    if not fitting:
        raise ValueError("reference: no row fits the schema (values out of range or unknown categories)")
    return fitting


# --------------------------------------------------------------------------- registering a bundle

def register_bundle(registry: Registry, version: str, directory: Any, *, sha256: Mapping[str, str] | None = None,
                    promote: bool = True) -> VersionRecord:
    """Register the bundle saved in ``directory`` as ``version`` and promote it unless ``promote=False``.

    The files are those of :func:`trustml_lab.report.save_bundle` present in the folder
    (``model.safetensors`` as the artefact ``weights``, ``schema.json`` as ``schema``,
    ``report.json``, ``model_card.md``). ``sha256``: ``save_bundle``'s ``{filename: sha256}``;
    when given, a file that changed since it was saved is refused (``ArtefactError``)
    before it is registered.
    """
    from pathlib import Path

    from ..data import sha256_file
    from .registry import ArtefactError

    if not isinstance(registry, Registry):
        raise TypeError(f"registry: expected a trustml_lab.serve.Registry, got {describe(registry)}")
    if not isinstance(directory, (str, Path)) or not Path(directory).is_dir():
        raise ValueError(f"directory: expected the folder of a saved bundle, got {describe(directory)}")
    folder = Path(directory)
    files = {artefact: folder / name for name, artefact in ARTEFACTS.items() if (folder / name).is_file()}
    if "weights" not in files or "schema" not in files:
        raise ValueError(f"directory: {str(folder)!r} lacks model.safetensors or schema.json")
    if sha256 is not None:
        if not isinstance(sha256, Mapping):
            raise TypeError(f"sha256: expected save_bundle's {{filename: sha256}} or None, got {describe(sha256)}")
        for name, digest in sha256.items():
            path = folder / str(name)
            if not path.is_file() or sha256_file(path) != digest:
                raise ArtefactError(f"sha256: {name} in {folder} differs from the digest save_bundle returned")
    record = registry.register(version, files)
    return registry.promote(version) if promote else record


# --------------------------------------------------------------------------- the app

#: The registry's artefact name of each bundle file (trustml_lab.report's file names).
ARTEFACTS = {"model.safetensors": "weights", "schema.json": "schema", "report.json": "report",
             "model_card.md": "card"}


def _default_loader(record: VersionRecord) -> Any:
    """:func:`trustml_lab.report.load_bundle` of the version's folder, checked against the registry's sha256."""
    from pathlib import Path

    from ..report import load_bundle

    hashes = {Path(a.path).name: a.sha256 for a in record.artefacts if Path(a.path).name in ARTEFACTS}
    return load_bundle(record.directory, sha256=hashes)


def _json_depth_ok(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests brackets at most ``limit`` deep (strings skipped), without parsing it."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case: cannot be deeper than the brackets
        return True
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


async def _reply(send: Callable[..., Any], status: int, message: str, error_type: str) -> None:
    body = json.dumps({"detail": [{"loc": ["body"], "msg": message, "type": error_type}],
                       "message": f"body: {message}"}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _BodyGuard:
    """ASGI middleware: a POST body over :data:`MAX_BODY_BYTES` gets a 413, JSON nested deeper than
    :data:`MAX_JSON_DEPTH` a 422, before anything parses it (Python's json recursion would fail)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _reply(send, 413, f"larger than {MAX_BODY_BYTES} bytes", "too_large")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _reply(send, 413, f"larger than {MAX_BODY_BYTES} bytes", "too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not _json_depth_ok(body, MAX_JSON_DEPTH):
            await _reply(send, 422, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "json_depth")
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _error_message(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    return f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid')}"


def _safe_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Errors as JSON-safe dicts (a NaN or a huge input echoed back must not break the answer)."""
    safe = []
    for error in errors:
        item = {"loc": [str(p) if not isinstance(p, int) else p for p in error.get("loc", ())],
                "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
        safe.append(item)
    return safe


def create_app(registry: Registry, *, reference: pd.DataFrame, monitor: Monitor | None = None,
               group: str | None = None, check_every: int | None = None, threshold: float = 0.5,
               background_size: int = 32, explain_samples: int = 512, immutable: Sequence[str] = (),
               dashboard_windows: int = 20, rollback_on: Sequence[str] = ROLLBACK_ON,
               load: Callable[[VersionRecord], Any] | None = None) -> FastAPI:
    """The FastAPI app serving ``registry``'s live version (see the module docstring).

    ``reference``: raw model inputs (the training data; a column per schema field): the
    background sample of the explanations (``background_size`` rows, seeded), the
    example body of the OpenAPI document, and the monitor's reference. ``monitor``:
    default a :class:`~trustml_lab.serve.monitor.Monitor` of ``reference``'s schema
    fields with ``group`` (default: the schema's first categorical protected field) as the group.
    ``check_every``: decisions between two rollback checks (default: the monitor's
    ``window``, so that each check judges new traffic: checking overlapping windows more
    often looks at the same evidence again and raises the chance of a false alarm above the
    monitor's stated rate). ``threshold``: the score
    at or above which an application is approved. ``explain_samples``: KernelSHAP's
    coalitions when there are more than 16 fields. ``immutable``: fields a
    counterfactual may not change (besides the protected and categorical ones).
    ``rollback_on``: the monitor's alerts that roll a version back
    (:func:`~trustml_lab.serve.rollback.check_live`); default :data:`ROLLBACK_ON`, the
    release policy's blocking rules (equal opportunity: the TPR rules) and drift, while a
    selection-rate alert is advisory (reported by ``/metrics``), as in
    ``trustml_lab/release_policy.toml``.
    ``load``: how a verified version record becomes a bundle (default:
    :func:`trustml_lab.report.load_bundle` of its directory).
    """
    if not isinstance(registry, Registry):
        raise TypeError(f"registry: expected a trustml_lab.serve.Registry, got {describe(registry)}")
    if not isinstance(reference, pd.DataFrame):
        raise TypeError(f"reference: expected a pandas DataFrame of raw model inputs (the training data), "
                        f"got {describe(reference)}")
    if monitor is not None and not isinstance(monitor, Monitor):
        raise TypeError(f"monitor: expected a trustml_lab.serve.Monitor or None, got {describe(monitor)}")
    if check_every is not None:
        check_every = check_int(check_every, "check_every")
    threshold = check_in_range(threshold, "threshold", 0.0, 1.0)
    background_size = check_int(background_size, "background_size")
    explain_samples = check_int(explain_samples, "explain_samples", low=2)
    dashboard_windows = check_int(dashboard_windows, "dashboard_windows")
    if isinstance(immutable, (str, bytes)) or not isinstance(immutable, Sequence):
        raise TypeError(f"immutable: expected a sequence of field names, got {describe(immutable)}")
    loader = load or _default_loader
    options = {"threshold": threshold, "background_size": background_size, "explain_samples": explain_samples,
               "immutable": tuple(immutable)}

    state = _State(registry, reference, loader, options)
    served = state.load_live()  # raises NoHealthyVersionError when nothing may be served
    names = served.names
    if monitor is None:
        if group is None:
            protected = [spec.name for spec in served.schema.fields
                         if getattr(spec, "protected", False) and spec.kind == "categorical"]
            if not protected:
                raise ValueError("group: the schema marks no categorical protected field; pass group= or monitor=")
            group = protected[0]
        monitor = Monitor(reference[names], group=group)
    state.monitor = monitor
    state.rollback_on = _check_triggers(rollback_on)
    state.check_every = monitor.window if check_every is None else check_every
    _warm_up(served, monitor)

    Application = request_model(served.schema, example=served.example)
    examples = {"applicant": {"summary": "an applicant from the reference data", "value": served.example}}
    Body_ = Annotated[Application, Body(openapi_examples=examples)]

    # fastapi-offline: FastAPI with the /docs (Swagger UI) and /redoc pages served from the package's own
    # files, where plain FastAPI's load their scripts from a CDN (no page needs a network)
    app = FastAPIOffline(title="trustml-lab credit decisions",
                         description="Decisions, explanations, the model card and the monitor of the chapter's "
                                     "credit model (trustml_lab.serve.app).", version="1")
    app.state.service = state

    app.add_middleware(_BodyGuard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = _safe_errors(err.errors())
        return JSONResponse({"detail": errors, "message": _error_message(errors)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        where = "body: " if err.status_code == 400 else ""
        return JSONResponse({"detail": err.detail, "message": f"{where}{err.detail}"}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(NoHealthyVersionError)
    async def no_version(request: Request, err: NoHealthyVersionError) -> JSONResponse:
        return JSONResponse({"detail": [], "message": str(err)}, status_code=503)

    @app.post("/predict", response_model=PredictResponse)
    async def predict(application: Body_) -> dict[str, Any]:
        """Decide one application and log the decision (model version, inputs, score, decision, time)."""
        return await state.decide_async(application.model_dump(by_alias=True))

    @app.post("/explain", response_model=ExplainResponse)
    async def explain(application: Body_) -> dict[str, Any]:
        """Explain one application's decision: Shapley values per field and, for a denial, a counterfactual.
        Not logged (the decision is made by /predict)."""
        return await state.explain_async(application.model_dump(by_alias=True))

    @app.post("/outcome", response_model=OutcomeResponse)
    async def outcome(body: Annotated[Outcome, Body(openapi_examples={"repaid": {
            "summary": "the outcome of a logged decision", "value": {"request_id": "<from /predict>", "label": 1}}})]
                      ) -> dict[str, Any]:
        """Record the outcome of a logged decision (1: the favorable outcome happened), once; the monitor's
        true positive and error rates are computed over the decisions with a known outcome."""
        try:
            record = registry.record_label(body.request_id, body.label)
        except ValueError as err:
            status = 409 if "already has a label" in str(err) else 404
            return JSONResponse({"detail": [{"loc": ["body", "request_id"], "msg": str(err), "type": "request_id"}],
                                 "message": str(err)}, status_code=status)
        return {"request_id": record.request_id, "version": record.version, "decision": record.decision,
                "label": record.label}

    @app.get("/model-card", responses={200: {"content": {"text/markdown": {}, "text/html": {}}}})
    def model_card(request: Request) -> Response:
        """The live version's model card: Markdown, or HTML when ``Accept`` prefers text/html."""
        current = state.current()
        card = current.bundle.card or f"# Model card\n\nVersion {current.version}: no model card was shipped.\n"
        if _wants_html(request.headers.get("accept", "")):
            if current.bundle.report is not None:  # the report's own rendering, with its plots
                from ..report import model_card_html

                return HTMLResponse(model_card_html(current.bundle.report))
            return HTMLResponse(_card_html(card, current.version))
        return PlainTextResponse(card, media_type="text/markdown; charset=utf-8")

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        """The monitor's report of the live version's recent traffic (its own decisions since it went live)."""
        return state.metrics()

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        """Per-group approval and error rates over consecutive windows of the decision log (offline HTML)."""
        return HTMLResponse(state.dashboard(dashboard_windows))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """No icon (a browser asks for one on every page; a 404 would show as a console error)."""
        return Response(status_code=204)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The version being served and the count of logged decisions."""
        current = state.current()
        return {"status": "ok", "version": current.version, "decisions": registry.count_decisions()}

    return app


def _warm_up(served: ServedModel, monitor: Monitor) -> None:
    """Run each path once before the first request: SciPy's lazy imports and torch's first autograd
    call take seconds, and would otherwise land on one unlucky request."""
    try:
        monitor.evaluate([{"inputs": served.example, "decision": 0}] * 2)
    except ValueError:  # a monitor that watches fields the schema lacks: found at the first check instead
        pass
    served.explain(served.example)


def _settle(future: asyncio.Future, outcome: Any) -> None:
    """Resolve ``future`` with ``outcome`` (an exception is raised in the awaiting request)."""
    if future.done():  # the client went away and its request was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _State:
    """The service's mutable state: the served version, reloaded after a rollback."""

    def __init__(self, registry: Registry, reference: pd.DataFrame, loader: Callable[[VersionRecord], Any],
                 options: dict[str, Any]) -> None:
        self.registry = registry
        self.reference = reference
        self.loader = loader
        self.options = options
        self.schema_json: str | None = None
        self.served: ServedModel | None = None
        self.monitor: Monitor | None = None
        self.check_every = 50
        self.rollback_on: tuple[str, ...] = ()
        self.since_check = 0
        self.lock = threading.Lock()
        self.last_check: dict[str, Any] | None = None
        self.pending: list[tuple[dict[str, Any], asyncio.Future, asyncio.AbstractEventLoop]] = []
        self.draining = False
        self.decider = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trustml-decide")
        self.explainer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trustml-explain")
        self.searcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trustml-counterfactual")

    def load_live(self) -> ServedModel:
        """Verify and load the live version (a tampered file or a changed schema marks it unhealthy)."""
        while True:
            record = self.registry.verified_live()
            bundle = self.loader(record)
            schema_json = bundle.schema.to_json()
            if self.schema_json is not None and schema_json != self.schema_json:
                self.registry.mark_unhealthy(record.version, "its data schema differs from the one the service "
                                                             "validates requests against")
                continue
            self.schema_json = schema_json
            self.served = ServedModel(record.version, bundle, self.reference, **self.options)
            return self.served

    def current(self) -> ServedModel:
        if self.served is None:
            return self.load_live()
        return self.served

    def decide_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score ``records`` in one forward pass and log them in one transaction (then call
        :meth:`check_if_due`: the answers need not wait for the check)."""
        served = self.current()
        scores = served.score(records).tolist()
        answers = []
        for score in scores:
            decision = int(score >= served.threshold)
            answers.append({"request_id": str(uuid.uuid4()), "version": served.version, "score": score,
                            "threshold": served.threshold, "decision": decision, "approved": bool(decision)})
        self.registry.log_decisions([{"version": served.version, "inputs": record, "score": answer["score"],
                                      "decision": answer["decision"], "request_id": answer["request_id"]}
                                     for record, answer in zip(records, answers)])
        with self.lock:
            self.since_check += len(records)
        return answers

    def check_if_due(self) -> None:
        """:meth:`check` when ``check_every`` decisions were logged since the last one."""
        with self.lock:
            due = self.since_check >= self.check_every
            if due:
                self.since_check = 0
        if due:
            try:
                self.check()
            except NoHealthyVersionError:  # the decisions made stand (a healthy version made them); the next get 503
                pass

    async def decide_async(self, record: dict[str, Any]) -> dict[str, Any]:
        """Decide ``record`` on the decision worker, batched with the decisions waiting for it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            self.pending.append((record, future, loop))
            start = not self.draining
            self.draining = True
        if start:
            self.decider.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """On the decision worker: decide the waiting applications, a batch at a time, until none wait."""
        while True:
            with self.lock:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                if not batch:
                    self.draining = False
                    return
            records = [record for record, _, _ in batch]
            try:
                outcomes: list[Any] = self.decide_batch(records)
            except NoHealthyVersionError as err:
                outcomes = [err] * len(batch)
            except Exception:  # noqa: BLE001 -- one at a time, so one failing application fails alone
                outcomes = [self._decide_or_error(record) for record in records]
            for (_, future, loop), outcome in zip(batch, outcomes):
                loop.call_soon_threadsafe(_settle, future, outcome)
            try:
                self.check_if_due()  # after answering: the next batch waits for it, so it is served by its outcome
            except Exception:  # noqa: BLE001 -- a failed check must not stop the decisions: logged, retried later
                _LOG.exception("the rollback check failed")

    def _decide_or_error(self, record: dict[str, Any]) -> Any:
        try:
            return self.decide_batch([record])[0]
        except Exception as err:  # noqa: BLE001 -- raised in the request that sent it
            return err

    async def explain_async(self, record: dict[str, Any]) -> dict[str, Any]:
        """The live version's explanation of ``record``, computed on the explanation worker."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.explainer, self._explain, record)

    def _explain(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.current().explain(record, searcher=self.searcher)

    def check(self) -> dict[str, Any]:
        """Apply the rollback rule to the live version's traffic; load the new live version if it changed."""
        with self.lock:
            try:
                result = check_live(self.registry, self.monitor, rollback_on=self.rollback_on)
            except NoHealthyVersionError:
                self.served = None
                raise
            self.last_check = {"version": result.version, "rolled_back": result.rolled_back,
                               "reason": result.reason, "live": result.live}
            if self.served is None or result.live != self.served.version:
                self.load_live()
            return self.last_check

    def metrics(self) -> dict[str, Any]:
        live = self.registry.live()
        rows = self.registry.decisions(version=live.version, after=live.live_since, last=self.monitor.window)
        report = self.monitor.evaluate(rows, version=live.version)
        return {"live": live.version, "decisions": self.registry.count_decisions(),
                "versions": [{"version": v.version, "status": v.status, "reason": v.reason, "live": v.live}
                             for v in self.registry.versions()],
                "last_check": self.last_check, "window": report.to_dict()}

    def dashboard(self, windows: int) -> str:
        rows = self.registry.decisions(last=windows * self.monitor.window)
        series = self.monitor.series(rows)
        versions = self.registry.versions()
        events = self.registry.history()[-12:]
        window_version = {}
        for i, row in enumerate(rows):
            window_version.setdefault(i // self.monitor.window, row.version)
        return _dashboard_html(series, versions, events, window_version, self.monitor)


def _wants_html(accept: str) -> bool:
    """Whether an ``Accept`` header prefers text/html to text/markdown (by q-value, then order)."""
    best: dict[str, float] = {}
    for position, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        best.setdefault(media.lower(), q - position * 1e-6)
    html_q = max(best.get("text/html", -1), best.get("application/xhtml+xml", -1))
    markdown_q = max(best.get("text/markdown", -1), best.get("text/plain", -1))
    return html_q > 0 and html_q > markdown_q


def _card_html(card: str, version: str) -> str:
    return _page(f"Model card, version {html.escape(version)}", _markdown_html(_strip_front_matter(card)))


def _markdown_html(text: str) -> str:
    r"""The Markdown a model card uses as HTML: ``#`` headings, pipe tables, ``-`` lists, paragraphs
    (everything escaped; other markup stays as text).

    >>> _markdown_html("# Card\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n- x\n")
    '<h1>Card</h1><table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>&lt;2&gt;</td></tr></table><ul><li>x</li></ul>'
    """
    out: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
                       + "</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()
        if paragraph:
            out.append(f"<p>{' '.join(paragraph)}</p>")
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if line.startswith("- "):
            if table or paragraph:
                flush()
            items.append(html.escape(line[2:]))
            continue
        if items or table or not line or heading:
            flush()
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{html.escape(heading.group(2))}</h{level}>")
        elif line:
            paragraph.append(html.escape(line))
    flush()
    return "".join(out)


def _strip_front_matter(card: str) -> str:
    if card.startswith("---\n"):
        end = card.find("\n---", 4)
        if end >= 0:
            return card[end + 4:].lstrip("\n")
    return card


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
          "img{max-width:100%;height:auto}.unhealthy{color:#b00}.live{font-weight:bold}")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>")


def _plot(series: Sequence[Any], attribute: str, title: str, window_version: Mapping[int, str]) -> str:
    """An ``<img>`` with an SVG data URI: one line per group of ``attribute`` over the windows."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.2))
    axes = figure.add_subplot()
    plotted = False
    for group in sorted({p.group for p in series}):
        points = [(p.window, getattr(p, attribute)) for p in series if p.group == group]
        points = [(w, v) for w, v in points if v is not None]
        if points:
            axes.plot([w for w, _ in points], [v for _, v in points], marker="o", label=str(group))
            plotted = True
    if not plotted:
        axes.text(0.5, 0.5, "no data yet" if attribute == "approval_rate" else "no outcomes recorded yet",
                  transform=axes.transAxes, ha="center", va="center", color="grey")
    previous = None
    for window, version in sorted(window_version.items()):
        if previous is not None and version != previous:
            axes.axvline(window - 0.5, color="grey", linestyle="--", linewidth=1)
            axes.annotate(version, (window - 0.45, 1.0), fontsize=8, color="grey", va="top")
        previous = version
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("window of decisions")
    axes.set_ylabel(title)
    if plotted:
        axes.legend(title="group", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img class='plot' alt='{html.escape(title)} per group' src='data:image/svg+xml;base64,{data}'>"


def _dashboard_html(series: Sequence[Any], versions: Sequence[VersionRecord], events: Sequence[Any],
                    window_version: Mapping[int, str], monitor: Monitor) -> str:
    rows = "".join(
        f"<tr class='{'live' if v.live else ''} {v.status}'><td>{html.escape(v.version)}</td>"
        f"<td>{v.status}</td><td>{'yes' if v.live else ''}</td><td>{html.escape(v.reason or '')}</td></tr>"
        for v in versions)
    trail = "".join(f"<li>{html.escape(e.time)}: {html.escape(e.version)} {html.escape(e.event)}"
                    f"{': ' + html.escape(e.reason) if e.reason else ''}</li>" for e in events)
    body = (f"<p>Windows of {monitor.window} decisions, group <code>{html.escape(monitor.group)}</code>; "
            f"dashed lines mark a change of the version serving.</p>"
            f"<h2>Approval rate per group</h2>{_plot(series, 'approval_rate', 'approval rate', window_version)}"
            f"<h2>Error rate per group (decisions with a known outcome)</h2>"
            f"{_plot(series, 'error_rate', 'error rate', window_version)}"
            f"<h2>Versions</h2><table><tr><th>version</th><th>status</th><th>live</th><th>reason</th></tr>{rows}"
            f"</table><h2>Recent events</h2><ul>{trail}</ul>")
    return _page("Fairness dashboard", body)


# --------------------------------------------------------------------------- the service in the background

class BackgroundService:
    """``python -m trustml_lab.serve`` in a child process on a free port of 127.0.0.1 (for notebooks).

    Waits (at most ``timeout_s``) until ``/health`` answers; :meth:`stop` ends the process
    (terminate, then kill) and is called at interpreter exit too, so the service never
    outlives its notebook. ``arguments`` are the CLI's (``["--db", path, ...]``); :meth:`log`
    is what it printed. Use it as a context manager, or call :meth:`stop` in a ``finally``.
    """

    def __init__(self, arguments: Sequence[str] = (), *, timeout_s: float = 120.0) -> None:
        import atexit
        import os
        import socket
        import subprocess
        import sys
        import time

        import httpx

        if isinstance(arguments, (str, bytes)) or not isinstance(arguments, Sequence):
            raise TypeError(f"arguments: expected a sequence of command-line arguments, got {describe(arguments)}")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TRUSTML_THREADS": os.environ.get("TRUSTML_THREADS", "1")}
        import tempfile

        self._log = tempfile.NamedTemporaryFile(mode="w+", prefix="trustml-serve-", suffix=".log", delete=False)
        self.log_path = self._log.name
        self.process = subprocess.Popen([sys.executable, "-m", "trustml_lab.serve", "--port", str(self.port),
                                         *map(str, arguments)], env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, text=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + check_in_range(timeout_s, "timeout_s", 0.0, 3600.0, low_open=True)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the service did not answer {self.url}/health within {timeout_s:g} s")
            time.sleep(0.2)

    def stop(self) -> int | None:
        """End the service (idempotent); its exit code."""
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        """What the service printed (its start line, warnings, any traceback)."""
        from pathlib import Path

        return Path(self.log_path).read_text(errors="replace")

    def __enter__(self) -> "BackgroundService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process.poll() is None else f"stopped ({self.process.returncode})"
        return f"BackgroundService({self.url}, {state})"
