"""trustml_lab.setup, versions and banner."""

import os
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


@pytest.mark.parametrize("kwargs, name, error", [
    ({"seed": -1}, "seed", ValueError), ({"seed": 2**32}, "seed", ValueError), ({"seed": 1.5}, "seed", TypeError),
    ({"seed": float("nan")}, "seed", TypeError), ({"seed": True}, "seed", TypeError),
    ({"seed": 0, "threads": 0}, "threads", ValueError), ({"seed": 0, "threads": 1.0}, "threads", TypeError),
])
def test_setup_rejects_bad_arguments(kwargs, name, error):
    with pytest.raises(error, match=f"^{name}: "):
        trustml_lab.setup(**kwargs)


def test_setup_takes_numpy_integers_and_the_largest_numpy_seed():
    trustml_lab.setup(seed=np.int64(5), threads=np.int32(1))
    a = torch.rand(2)
    trustml_lab.setup(seed=5, threads=1)
    assert torch.equal(a, torch.rand(2))
    trustml_lab.setup(seed=2**32 - 1, threads=1)


def test_a_positional_seed_still_works_for_a_release_with_a_future_warning():
    trustml_lab.setup(seed=3, threads=1)
    expected = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    with pytest.warns(FutureWarning, match=r"setup\(seed=\.\.\.\)"):
        trustml_lab.setup(3, threads=1)
    got = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
    with pytest.raises(TypeError, match="keyword"):
        trustml_lab.setup(1, seed=2)
    with pytest.raises(TypeError, match="keyword"):
        trustml_lab.setup(1, 2)


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


def test_setup_keeps_hugging_face_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    trustml_lab.setup(seed=0)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_versions_report_the_reference_libraries_not_torchvision():
    reported = trustml_lab.versions()
    assert {"transformers", "tokenizers", "opacus", "captum"} <= set(reported) and "torchvision" not in reported
