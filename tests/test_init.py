"""trustml_lab.setup, versions and banner."""

import random

import numpy as np
import pytest
import torch

import trustml_lab


def test_setup_seeds_every_generator():
    trustml_lab.setup(seed=123, threads=1)
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    trustml_lab.setup(seed=123, threads=1)
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.mkldnn.enabled


def test_setup_returns_best_device_and_sets_threads(monkeypatch):
    device = trustml_lab.setup(seed=0, threads=1)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert device.type == expected
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("TRUSTML_THREADS", "2")
    trustml_lab.setup(seed=0)
    assert torch.get_num_threads() == 2
    trustml_lab.setup(seed=0, threads=1)  # the argument wins over the variable
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("kwargs, name", [
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": 0, "threads": 0}, "threads"),
])
def test_setup_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        trustml_lab.setup(**kwargs)


def test_setup_rejects_bad_thread_variable(monkeypatch):
    monkeypatch.setenv("TRUSTML_THREADS", "two")
    with pytest.raises(ValueError, match="TRUSTML_THREADS"):
        trustml_lab.setup(seed=0)


def test_versions_and_banner_name_the_stack():
    versions = trustml_lab.versions()
    for name in ("python", "trustml_lab", "torch", "numpy", "aif360", "fairlearn", "captum",
                 "shap", "opacus", "device"):
        assert versions[name], name
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert f"torch {versions['torch']}" in trustml_lab.banner()
