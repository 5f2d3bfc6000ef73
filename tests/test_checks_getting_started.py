"""trustml_lab.checks.getting_started: right answers pass, wrong ones are named, whatever their kind.

For each exercise of chapter 0: a right answer (and the package's own function) passes;
a wrong answer, a stub, an answer that returns None, one that changes its input and one
that returns NumPy numbers each behave as they should, and the message names the case.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trustml_lab import checks, models
from trustml_lab.checks import CheckFailed

gs = checks.getting_started


# --------------------------------------------------------------------------- base rates

def base_rates(frame, group, target):
    return frame.groupby(group, observed=True)[target].mean().to_dict()


@pytest.mark.parametrize("answer", [
    base_rates,
    lambda frame, group, target: frame.groupby(group, observed=True)[target].mean(),  # a Series
    lambda frame, group, target: {k: np.float64(v) for k, v in base_rates(frame, group, target).items()},
    lambda frame, group, target: {k: np.array(v) for k, v in base_rates(frame, group, target).items()},  # 0-d
    lambda frame, group, target: {k: torch.tensor(v, dtype=torch.float64)
                                  for k, v in base_rates(frame, group, target).items()},
    lambda frame, group, target: {g: float((frame.loc[frame[group] == g, target] == 1).mean())
                                  for g in frame[group].dropna().unique()},
], ids=["dict", "Series", "numpy scalars", "0-d arrays", "0-d tensors", "by hand"])
def test_base_rates_right_answers_pass(answer, capsys):
    gs.check_base_rates(answer)
    assert "PASS base_rates" in capsys.readouterr().out


def _stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("answer, message", [
    (lambda f, g, t: {k: 1 - v for k, v in base_rates(f, g, t).items()}, "Adult by sex: .*share of target == 0"),
    (lambda f, g, t: base_rates(f[f["split"] == "train"] if "split" in f else f, g, t), "Adult by sex: .*is off"),
    (lambda f, g, t: {"Female": 0.1094, "Male": 0.3038}, "Adult by sex: .*is off: got 0.1094"),
    (lambda f, g, t: base_rates(f, "sex", "income") if "income" in f else {}, "Adult by race: expected one entry"),
    (lambda f, g, t: {k: float("nan") for k in base_rates(f, g, t)}, "is NaN"),
    (lambda f, g, t: list(base_rates(f, g, t).values()), "return a dict .* got list"),
    (lambda f, g, t: {k: "0.1" for k in base_rates(f, g, t)}, "as one number, got str"),
    (lambda f, g, t: None, "Adult by sex: your function returned None"),
    (_stub, "Adult by sex: your function still raises NotImplementedError"),
    (lambda f, g, t: f.groupby(g)[t].mean().to_dict()[5], "Adult by sex: your function raised KeyError"),
], ids=["share of zeros", "train only", "rounded", "one case hard-coded", "NaN", "list", "text", "None", "stub",
        "crash"])
def test_base_rates_wrong_answers_are_named(answer, message):
    with pytest.raises(CheckFailed, match=message):
        gs.check_base_rates(answer)


def test_base_rates_refuses_an_answer_that_changes_the_frame():
    def mutating(frame, group, target):
        frame["rate"] = frame.groupby(group, observed=True)[target].transform("mean")
        return base_rates(frame, group, target)

    with pytest.raises(CheckFailed, match="Adult by sex: your function changed its argument 1 in place"):
        gs.check_base_rates(mutating)


@pytest.mark.parametrize("answer, message", [
    ([0.109, 0.304], "expected a function, got list"), (None, "got None"), (0.2, "expected a function, got float"),
])
def test_base_rates_asks_for_the_function_not_its_result(answer, message):
    with pytest.raises(CheckFailed, match=message):
        gs.check_base_rates(answer)


def test_base_rates_still_takes_the_earlier_dict_answer_for_a_release(capsys):
    """Notebooks handed out before the exercise became a function call the check with Adult's rates by sex."""
    with pytest.warns(FutureWarning, match="base_rates"):
        gs.check_base_rates({"Female": np.float64(0.109), "Male": 0.304})
    assert "PASS base_rates" in capsys.readouterr().out
    with pytest.warns(FutureWarning), pytest.raises(CheckFailed, match="base rate of Male is off"):
        gs.check_base_rates({"Female": 0.109, "Male": 0.5})
    with pytest.warns(FutureWarning), pytest.raises(CheckFailed, match="one entry per sex"):
        gs.check_base_rates({"Female": 0.109})


# --------------------------------------------------------------------------- sha256

def chunked(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("answer", [chunked, lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                                    lambda path: np.str_(chunked(path))], ids=["chunks", "whole file", "numpy str"])
def test_sha256_right_answers_pass(answer, capsys):
    gs.check_sha256(answer)
    out = capsys.readouterr().out
    assert "PASS sha256" in out and "str path" in out


def _first_mebibyte_only(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read(1 << 20)).hexdigest()


def _writes_to_the_file(path):
    with open(path, "ab") as handle:
        handle.write(b"x")
    return chunked(path)


@pytest.mark.parametrize("answer, message", [
    (lambda path: hashlib.md5(Path(path).read_bytes()).hexdigest(), r"\(32 characters\)"),
    (lambda path: hashlib.sha256(Path(path).read_bytes()).digest(), "raw digest bytes"),
    (lambda path: chunked(path).upper(), "lowercase"),
    (_first_mebibyte_only, r": got [0-9a-f]{16}\.\.\. \(64 characters\), expected"),
    (lambda path: hashlib.sha256(path.read_bytes()).hexdigest(), "a path given as a str: your function raised "
                                                                 "AttributeError"),
    (lambda path: hashlib.sha256(str(path).encode()).hexdigest(), "data/adult.data.gz: got"),
    (_writes_to_the_file, "changed the file"),
    (lambda path: None, "returned None"),
    (_stub, "NotImplementedError"),
], ids=["md5", "bytes", "uppercase", "first chunk only", "Path only", "hashes the name", "writes", "None", "stub"])
def test_sha256_wrong_answers_are_named(answer, message):
    with pytest.raises(CheckFailed, match=message):
        gs.check_sha256(answer)


def test_sha256_works_on_copies_so_a_careless_answer_cannot_damage_data(tmp_path):
    from trustml_lab import data

    before = {name: data.sha256_file(data.data_dir() / name) for name in data.read_manifest()}
    with pytest.raises(CheckFailed):
        gs.check_sha256(_writes_to_the_file)
    assert before == {name: data.sha256_file(data.data_dir() / name) for name in data.read_manifest()}


# --------------------------------------------------------------------------- safe loader

def safe_load(model, path, sha256):
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256:
        raise ValueError("hash mismatch")
    model.load_state_dict(load_file(str(path)))
    return model


@pytest.mark.parametrize("answer", [safe_load, lambda m, p, d: models.load_weights(m, p, sha256=d)],
                         ids=["the solution", "models.load_weights"])
def test_safe_loader_right_answers_pass(answer, capsys):
    gs.check_safe_loader(answer)
    assert "PASS safe_loader" in capsys.readouterr().out


def _trusting(model, path, sha256):
    model.load_state_dict(load_file(str(path)))
    return model


def _checks_too_late(model, path, sha256):
    model.load_state_dict(load_file(str(path)))
    return safe_load(model, path, sha256)


def _wrong_exception(model, path, sha256):
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256:
        raise RuntimeError("hash mismatch")
    return _trusting(model, path, sha256)


def _prefix_match(model, path, sha256):
    if not hashlib.sha256(Path(path).read_bytes()).hexdigest().startswith(sha256):
        raise ValueError("hash mismatch")
    return _trusting(model, path, sha256)


def _ignores_case(model, path, sha256):
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256.lower():
        raise ValueError("hash mismatch")
    return _trusting(model, path, sha256)


def _falls_back_to_pickle(model, path, sha256):
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256:
        raise ValueError("hash mismatch")
    try:
        state = load_file(str(path))
    except Exception:  # noqa: BLE001 - the bad idea under test: "if it is not safetensors, unpickle it"
        state = torch.load(path, weights_only=False)["state_dict"]
    model.load_state_dict(state)
    return model


def _assert_false(model, path, sha256):
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha256
    return _trusting(model, path, sha256)


@pytest.mark.parametrize("answer, message", [
    (_trusting, "a digest of zeros: your function did not raise"),
    (_checks_too_late, "only after loading"),
    (_wrong_exception, "raised RuntimeError .* raise ValueError, as the exercise asks"),
    (_assert_false, "raised AssertionError"),
    (_prefix_match, "the right digest truncated to 63 digits: your function did not raise"),
    (_ignores_case, "the right digest in capitals: your function did not raise"),
    (_falls_back_to_pickle, "unpickled it and the code inside it ran"),
    (lambda m, p, d: safe_load(m, p, d) and None, "the right digest: your function returned None"),
    (lambda m, p, d: safe_load(models.MLP(4, hidden=(8,)), p, d), "the right digest: the weights in the model"),
    (_stub, "NotImplementedError"),
], ids=["trusting", "too late", "RuntimeError", "assert", "prefix", "any case", "pickle fallback", "None",
        "loads elsewhere", "stub"])
def test_safe_loader_wrong_answers_are_named(answer, message):
    with pytest.raises(CheckFailed, match=message):
        gs.check_safe_loader(answer)


def test_safe_loader_is_not_a_function():
    with pytest.raises(CheckFailed, match="expected a function"):
        gs.check_safe_loader(torch.zeros(1))


def test_the_checks_leave_the_learners_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    gs.check_safe_loader(safe_load)
    assert torch.equal(torch.rand(3), expected)
