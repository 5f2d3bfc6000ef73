"""One convention across chapters, checked on every public signature (CONTRIBUTING.md, "Conventions").

For every public callable in the tables of ``tests/api_tables/``:

- names: parameters follow the glossary (``n_samples``, ``generator``,
  ``internal_batch_size`` / ``batch_size``, ``target``, ``loss_fn``), no synonyms;
- keyword-only: numeric knobs, ``target``, ``loss_fn`` and ``generator`` come after ``*``;
- results: procedures return frozen dataclasses (no ``tuple``/``dict`` return
  annotations outside the listed exceptions);
- mode policy: a call on a train-mode model leaves it (and every submodule) in train
  mode, and on an eval-mode model in eval mode.

A name may break a rule only with a reason in its table's ``CONVENTION_EXCEPTIONS``
(``"name[convention: rule]": reason``); a violation still being fixed is listed in
``KNOWN_FAILURES`` under the same id and fails the suite once it is fixed.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import pytest
from api_tables import resolve, tables
from torch import nn

TABLES = tables()

#: The glossary's synonyms: a parameter called like a key should be called like the value.
SYNONYMS = {
    "nsamples": "n_samples", "samples": "n_samples", "num_samples": "n_samples", "n_draws": "n_samples",
    "rng": "generator", "random_state": "generator", "gen": "generator",
    "label": "target", "target_class": "target", "loss": "loss_fn", "criterion_fn": "loss_fn",
    "chunk_size": "internal_batch_size", "eval_batch_size": "internal_batch_size",
}
#: ``batch_size`` is a training mini-batch (it changes the result); chunking that does not is
#: ``internal_batch_size`` (captum's name). ``seed`` only where a procedure owns its generator.
TRAINERS = {"fit", "fit_adversarial", "AdversarialDebiaser", "dp_fit"}
SEEDED = {"setup", "train_test_split", "load_mnist_split", "AdversarialDebiaser"}
ALWAYS_KEYWORD = {"target", "loss_fn", "generator"}


def callables():
    found = []
    for table in TABLES:
        mod = table.module.__name__.split(".")[-1]
        for name in table.module.__all__:
            if name in table.exempt:
                continue
            obj = resolve(table.module, name)
            if callable(obj):
                found.append((table, name, obj, f"{mod}.{name}"))
    return found


CALLABLES = callables()


def violations_of(name: str, obj) -> dict[str, list[str]]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return {}
    found: dict[str, list[str]] = {"names": [], "keyword-only": [], "results": []}
    for param in signature.parameters.values():
        if param.name in SYNONYMS:
            found["names"].append(f"{param.name} -> {SYNONYMS[param.name]}")
        if param.name == "batch_size" and name not in TRAINERS:
            found["names"].append("batch_size -> internal_batch_size (not a training mini-batch)")
        if param.name == "seed" and name not in SEEDED:
            found["names"].append("seed -> generator")
        numeric_default = isinstance(param.default, (int, float)) and not isinstance(param.default, bool)
        if (numeric_default or param.name in ALWAYS_KEYWORD) and param.kind is not param.KEYWORD_ONLY \
                and param.kind is not param.VAR_KEYWORD:
            found["keyword-only"].append(param.name)
    returns = signature.return_annotation
    text = returns if isinstance(returns, str) else getattr(returns, "__name__", str(returns))
    if inspect.isfunction(obj) and isinstance(text, str) and text.replace(" ", "").startswith(("tuple[", "dict[")):
        found["results"].append(text)
    return {rule: items for rule, items in found.items() if items}


CASES = [(table, name, obj, rule, f"{mid}[convention: {rule}]")
         for table, name, obj, mid in CALLABLES for rule in ("names", "keyword-only", "results")]


def listed(table, case_id: str) -> tuple[bool, bool]:
    short = case_id.split(".", 1)[1]
    return short in table.convention_exceptions, short in table.known_failures


@pytest.mark.parametrize("table, name, obj, rule", [c[:4] for c in CASES], ids=[c[4] for c in CASES])
def test_signature_follows_the_glossary(table, name, obj, rule, request):
    allowed, known = listed(table, request.node.callspec.id)
    problems = violations_of(name, obj).get(rule, [])
    if allowed:
        assert problems, f"{name}: CONVENTION_EXCEPTIONS allows a {rule} violation that no longer exists"
        return
    if known:
        if problems:
            pytest.xfail(f"listed in KNOWN_FAILURES: {problems}")
        pytest.fail(f"{name} follows the {rule} rule now: remove it from KNOWN_FAILURES")
    assert not problems, f"{name}: {rule}: {problems} (see CONTRIBUTING.md, Conventions)"


def models_in(args, kwargs) -> list[nn.Module]:
    return [v for v in (*args, *kwargs.values()) if isinstance(v, nn.Module)]


MODE_CASES = []
for _table in TABLES:
    _mod = _table.module.__name__.split(".")[-1]
    for _name, _build in _table.valid.items():
        if not isinstance(resolve(_table.module, _name), type):
            MODE_CASES.append((_table, _name, f"{_mod}.{_name}[convention: mode]"))


@pytest.mark.parametrize("table, name", [c[:2] for c in MODE_CASES], ids=[c[2] for c in MODE_CASES])
@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_a_call_restores_the_mode_of_the_model(table, name, training, request):
    case_id = request.node.callspec.id.split("-", 1)[1] if "-" in request.node.callspec.id else ""
    args, kwargs = table.valid[name]()
    found = models_in(args, kwargs)
    if not found:
        pytest.skip("takes no model")
    short = f"{name}[convention: mode]"
    if short in table.convention_exceptions:
        pytest.skip(table.convention_exceptions[short])
    for model in found:
        model.train(training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resolve(table.module, name)(*args, **kwargs)
    changed = [type(m).__name__ for model in found for m in model.modules() if m.training != training]
    if short in table.known_failures:
        if changed:
            pytest.xfail("listed in KNOWN_FAILURES")
        if training:  # the train-mode call is the one that catches a missing restore
            pytest.fail(f"{name} restores the mode now: remove {short!r} from KNOWN_FAILURES")
    assert not changed, f"{name} left {changed} in {'eval' if training else 'train'} mode (case {case_id})"


def test_results_are_frozen_dataclasses():
    """Every dataclass a chapter module exports is frozen, so a result cannot be edited by accident."""
    for table in TABLES:
        for name in table.module.__all__:
            obj = getattr(table.module, name)
            if isinstance(obj, type) and dataclasses.is_dataclass(obj):
                assert obj.__dataclass_params__.frozen, f"{table.module.__name__}.{name} is not frozen"


def test_exceptions_have_reasons():
    for table in TABLES:
        for key, reason in table.convention_exceptions.items():
            assert "[convention: " in key and isinstance(reason, str) and len(reason) > 10, key
