"""trustml_lab.checks: chapter 0 self-checks pass right answers and explain wrong ones."""

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from trustml_lab import checks
from trustml_lab.data import load_adult


def test_unknown_chapter_is_an_attribute_error():
    with pytest.raises(AttributeError):
        checks.no_such_chapter  # noqa: B018


def test_base_rates(capsys):
    rates = load_adult().groupby("sex", observed=True)["income"].mean().to_dict()
    checks.getting_started.check_base_rates(rates)
    assert "PASS base_rates" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="Male"):
        checks.getting_started.check_base_rates({"Female": rates["Female"], "Male": 0.5})
    with pytest.raises(checks.CheckFailed, match="one entry per sex"):
        checks.getting_started.check_base_rates({"Female": 0.1})


def test_sha256(capsys):
    def right(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest()

    def wrong(path):
        return hashlib.md5(open(path, "rb").read()).hexdigest()

    def stub(path):
        raise NotImplementedError()

    checks.getting_started.check_sha256(right)
    assert "PASS sha256" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="MANIFEST says"):
        checks.getting_started.check_sha256(wrong)
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.getting_started.check_sha256(stub)


def test_safe_loader(capsys):
    def right(model, path, sha256):
        if hashlib.sha256(open(path, "rb").read()).hexdigest() != sha256:
            raise ValueError("hash mismatch")
        model.load_state_dict(load_file(str(path)))

    def trusting(model, path, sha256):
        model.load_state_dict(load_file(str(path)))

    def checks_too_late(model, path, sha256):
        model.load_state_dict(load_file(str(path)))
        right(model, path, sha256)

    checks.getting_started.check_safe_loader(right)
    assert "PASS safe_loader" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="must be refused"):
        checks.getting_started.check_safe_loader(trusting)
    with pytest.raises(checks.CheckFailed, match="only after loading"):
        checks.getting_started.check_safe_loader(checks_too_late)
    with pytest.raises(checks.CheckFailed, match="expected a function"):
        checks.getting_started.check_safe_loader(torch.zeros(1))
