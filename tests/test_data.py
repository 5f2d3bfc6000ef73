"""trustml_lab.data: verified offline loaders and the seeded stratified split."""

import shutil
import socket

import numpy as np
import pandas as pd
import pytest
import sklearn.model_selection
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trustml_lab import data


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of data/ that a test may damage; loaders read it via TRUSTML_DATA."""
    target = tmp_path / "data"
    shutil.copytree(data.data_dir(), target)
    monkeypatch.setenv("TRUSTML_DATA", str(target))
    return target


def test_manifest_matches_every_file_and_lists_licenses():
    manifest = data.read_manifest()
    assert {"german.data.gz", "adult.data.gz", "adult.test.gz", "mnist_5k.csv.gz"} <= set(manifest)
    for name, entry in manifest.items():
        assert data.sha256_file(data.data_dir() / name) == entry.sha256, name
        assert entry.license and entry.source, name
    root = data.data_dir()  # model folders (chapter 5) list each of their files as folder/file
    tracked = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"MANIFEST", "README.md"}
    assert tracked == set(manifest), "every file in data/ must be listed in MANIFEST"


@pytest.mark.parametrize("loader, filename", [
    (data.load_german_credit, "german.data.gz"),
    (data.load_adult, "adult.test.gz"),
    (data.load_mnist, "mnist_5k.csv.gz"),
])
def test_altering_one_byte_makes_the_loader_name_the_file(data_copy, loader, filename):
    path = data_copy / filename
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataIntegrityError, match=filename):
        loader()


def test_missing_file_is_named(data_copy):
    (data_copy / "german.data.gz").unlink()
    with pytest.raises(FileNotFoundError, match="german.data.gz"):
        data.load_german_credit()


def test_loaders_never_touch_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a loader tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    data.load_german_credit()
    data.load_adult()
    data.load_mnist(n_per_class=1)


def test_german_credit_columns_and_protected_attributes():
    df = data.load_german_credit()
    assert len(df) == data.read_manifest()["german.data.gz"].rows
    assert df["good_credit"].sum() == 700
    # sex decoded from personal_status: A92 and A95 are the female codes
    female = df["personal_status"].astype(str).str.startswith("female")
    assert (df["sex"] == "female").equals(female)
    assert df["age"].between(19, 75).all()
    assert not df.isna().any().any()
    encoded = data.load_german_credit(as_frame=False)
    assert encoded.features.shape == (1000, len(encoded.feature_names))
    assert "sex" not in encoded.feature_names
    assert torch.equal(encoded.protected["sex"], torch.tensor((df["sex"] == "male").to_numpy()).long())
    assert torch.equal(encoded.target, torch.tensor(df["good_credit"].to_numpy()))


def test_adult_train_and_test_together():
    df = data.load_adult()
    manifest = data.read_manifest()
    assert (df["split"] == "train").sum() == manifest["adult.data.gz"].rows
    assert (df["split"] == "test").sum() == manifest["adult.test.gz"].rows
    assert set(df["income"].unique()) == {0, 1}
    assert set(df["sex"].astype(str).unique()) == {"Female", "Male"}
    assert "White" in set(df["race"].astype(str))
    assert df["workclass"].isna().sum() > 0  # "?" decoded as missing
    encoded = data.load_adult(as_frame=False)
    assert "fnlwgt" not in encoded.feature_names and encoded.features.dtype == torch.float32
    assert torch.isfinite(encoded.features).all()


def test_mnist_images_labels_and_subsets():
    images, labels = data.load_mnist()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert torch.bincount(labels).tolist() == [500] * 10
    small_x, small_y = data.load_mnist(n_per_class=7)
    assert torch.bincount(small_y).tolist() == [7] * 10
    first_ones = torch.nonzero(labels == 1).flatten()[:7]
    assert torch.equal(small_x[small_y == 1], images[first_ones])
    with pytest.raises(ValueError, match="n_per_class"):
        data.load_mnist(n_per_class=0)


def test_mnist_split_is_fixed_and_stratified():
    a = data.load_mnist_split()
    b = data.load_mnist_split()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    x_train, x_test, y_train, y_test = a
    assert torch.bincount(y_test).tolist() == [100] * 10 and len(y_train) == 4000


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5),
    test_size=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**16),
)
def test_stratified_split_keeps_class_proportions(sizes, test_size, seed):
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = np.arange(len(y))
    x_tr, x_te, y_tr, y_te = data.train_test_split(x, y, test_size=test_size, stratify=y, seed=seed)
    assert sorted(np.concatenate([x_tr, x_te]).tolist()) == x.tolist()  # a partition
    assert np.array_equal(y[x_te], y_te)  # rows stay aligned
    for label, size in enumerate(sizes):
        assert (y_te == label).sum() == round(test_size * size)


def test_split_matches_sklearn_sizes_and_keeps_types():
    frame = pd.DataFrame({"a": range(100)})
    tensor = torch.arange(100)
    f_tr, f_te, t_tr, t_te = data.train_test_split(frame, tensor, test_size=0.3, seed=1)
    sk_tr, sk_te = sklearn.model_selection.train_test_split(np.arange(100), test_size=0.3)
    assert (len(f_tr), len(f_te)) == (len(sk_tr), len(sk_te))
    assert isinstance(f_te, pd.DataFrame) and isinstance(t_te, torch.Tensor)
    assert f_te["a"].tolist() == t_te.tolist()
    again = data.train_test_split(frame, tensor, test_size=0.3, seed=1)
    assert again[1]["a"].tolist() == f_te["a"].tolist()


@pytest.mark.parametrize("kwargs, name", [
    ({"test_size": 0.0}, "test_size"), ({"test_size": 1.5}, "test_size"),
    ({"test_size": 10}, "test_size"), ({"stratify": [0, 1]}, "stratify"),
])
def test_split_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        data.train_test_split(np.arange(10), **kwargs)


def test_split_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        data.train_test_split(np.arange(10), np.arange(9))
