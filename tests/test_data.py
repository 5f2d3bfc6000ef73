"""trustml_lab.data: verified offline loaders and the seeded stratified split."""

import inspect
import shutil
import socket

import numpy as np
import pandas as pd
import pytest
import sklearn.compose
import sklearn.model_selection
import sklearn.preprocessing
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
    root = data.data_dir()  # files in model folders (credit_model_v1/, sentiment_bert/) are listed as folder/file
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


def _aif360_standard_dataset(name):
    """aif360's dataset class ``name`` and the defaults of its constructor."""
    import aif360.datasets

    cls = getattr(aif360.datasets, name)
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_german_credit_protected_attributes_equal_aif360s_german_dataset():
    """aif360's GermanDataset, built offline from our file with its own defaults: same sex, age and label."""
    from aif360.datasets import StandardDataset
    from aif360.datasets.german_dataset import default_preprocessing

    defaults = _aif360_standard_dataset("GermanDataset")
    assert defaults["protected_attribute_names"] == ["sex", "age"]
    raw = pd.read_csv(data.verified_path("german.data.gz"), sep=" ", header=None, compression="gzip")
    raw.columns = ["status", "month", "credit_history", "purpose", "credit_amount", "savings", "employment",
                   "investment_as_income_percentage", "personal_status", "other_debtors", "residence_since",
                   "property", "age", "installment_plans", "housing", "number_of_credits", "skill_level",
                   "people_liable_for", "telephone", "foreign_worker", "credit"]
    raw = raw.astype({c: object for c in raw.select_dtypes(exclude="number").columns})  # aif360 predates pandas 3
    theirs = StandardDataset(
        default_preprocessing(raw.copy()), label_name="credit", favorable_classes=defaults["favorable_classes"],
        protected_attribute_names=defaults["protected_attribute_names"],
        privileged_classes=defaults["privileged_classes"], categorical_features=defaults["categorical_features"],
        features_to_drop=defaults["features_to_drop"])
    ours = data.load_german_credit(as_frame=False)
    for column, name in enumerate(theirs.protected_attribute_names):
        assert np.array_equal(theirs.protected_attributes[:, column], ours.protected[name].numpy()), name
    assert np.array_equal(theirs.labels.ravel() == theirs.favorable_label, ours.target.numpy() == 1)
    assert int(ours.protected["age"].sum()) == 810  # age > 25; age >= 25 would give 851


def test_adult_protected_attributes_follow_aif360s_adult_dataset_defaults():
    defaults = _aif360_standard_dataset("AdultDataset")
    privileged = dict(zip(defaults["protected_attribute_names"], defaults["privileged_classes"]))
    assert privileged == {"race": ["White"], "sex": ["Male"]}
    df, ours = data.load_adult(), data.load_adult(as_frame=False)
    for name, values in privileged.items():
        expected = df[name].astype(str).isin(values).to_numpy()
        assert np.array_equal(ours.protected[name].numpy(), expected.astype(np.int64)), name


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


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5),
    test_size=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_keeps_class_proportions_or_refuses_an_empty_part(sizes, test_size, seed):
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = np.arange(len(y))
    n_test = [round(test_size * size) for size in sizes]
    if sum(n_test) == 0 or any(t >= size for t, size in zip(n_test, sizes)):
        with pytest.raises(ValueError, match="^test_size: .*(no test row|train part empty)"):
            data.train_test_split(x, y, test_size=test_size, stratify=y, seed=seed)
        return
    x_tr, x_te, y_tr, y_te = data.train_test_split(x, y, test_size=test_size, stratify=y, seed=seed)
    assert sorted(np.concatenate([x_tr, x_te]).tolist()) == x.tolist()  # a partition
    assert np.array_equal(y[x_te], y_te) and np.array_equal(y[x_tr], y_tr)  # rows stay aligned
    for label, size in enumerate(sizes):
        assert (y_te == label).sum() == n_test[label]
        assert (y_tr == label).sum() == size - n_test[label] >= 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 200), test_size=st.one_of(st.floats(0.001, 0.999), st.integers(1, 199)))
def test_unstratified_split_never_returns_an_empty_part(n, test_size):
    x = torch.arange(n)
    n_test = test_size if isinstance(test_size, int) else round(test_size * n)
    if isinstance(test_size, int) and test_size >= n:
        with pytest.raises(ValueError, match="^test_size: expected an int in"):
            data.train_test_split(x, test_size=test_size)
    elif not 0 < n_test < n:
        with pytest.raises(ValueError, match="^test_size: .* part empty"):
            data.train_test_split(x, test_size=test_size)
    else:
        train, test = data.train_test_split(x, test_size=test_size)
        assert len(test) == n_test and len(train) == n - n_test


def test_split_accepts_numpy_numbers_like_python_ones():
    x = np.arange(30)
    a = data.train_test_split(x, test_size=0.3, seed=7)
    b = data.train_test_split(x, test_size=np.float32(0.3), seed=np.int64(7))
    c = data.train_test_split(x, test_size=np.int64(9), seed=np.uint32(7))
    assert all(np.array_equal(p, q) and np.array_equal(p, r) for p, q, r in zip(a, b, c))


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
    ({"test_size": float("nan")}, "test_size"), ({"test_size": 0.01}, "test_size"),
    ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"),
])
def test_split_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        data.train_test_split(np.arange(10), **kwargs)


# --------------------------------------------------------------------------- encode_tabular

def _sklearn_encoding(frame, numeric, categorical, fit_rows):
    """scikit-learn's StandardScaler + OneHotEncoder, fitted on ``fit_rows``, applied to every row."""
    transformer = sklearn.compose.ColumnTransformer([
        ("numeric", sklearn.preprocessing.StandardScaler(), numeric),
        ("categorical", sklearn.preprocessing.OneHotEncoder(
            categories=[sorted(frame[c].dropna().astype(str).unique()) for c in categorical],
            handle_unknown="ignore", sparse_output=False), categorical),
    ])
    as_text = frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), None).astype(str)
                              for c in categorical})
    transformer.fit(as_text.iloc[np.flatnonzero(fit_rows)])
    return transformer.transform(as_text)


@pytest.mark.parametrize("strict", [False, True], ids=["whole table", "fit on the train part"])
def test_encode_tabular_equals_sklearn_column_transformer_on_adult(strict):
    """Adult (missing categories included): z-scores and one-hot columns as scikit-learn computes them."""
    frame = data.load_adult().sample(3000, random_state=0).reset_index(drop=True)
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
                   "native_country"]
    table = frame[numeric + categorical + ["income"]]
    fit_rows = (frame["split"] == "train").to_numpy() if strict else np.ones(len(frame), dtype=bool)
    ours = data.encode_tabular(table, target="income", fit_on=fit_rows if strict else None)
    # our categories come from the Categorical dtype (every category of the full table), in its order
    expected_names = numeric + [f"{c}={v}" for c in categorical for v in table[c].cat.categories]
    assert list(ours.feature_names) == expected_names
    present = [f"{c}={v}" for c in categorical for v in sorted(table[c].dropna().astype(str).unique())]
    keep = [expected_names.index(name) for name in numeric + present]
    theirs = _sklearn_encoding(table, numeric, categorical, fit_rows)
    np.testing.assert_allclose(ours.features.numpy()[:, keep], theirs, rtol=1e-5, atol=1e-5)
    unused = sorted(set(range(len(expected_names))) - set(keep))
    assert not ours.features[:, unused].any(), "a category absent from the sample is an all-zero column"
    assert torch.equal(ours.target, torch.tensor(table["income"].to_numpy()))


def test_encode_tabular_fit_on_uses_only_those_rows_statistics():
    frame = pd.DataFrame({"a": [0.0, 2.0, 10.0, 100.0], "t": [0, 1, 0, 1]})
    train = np.array([True, True, False, False])
    encoded = data.encode_tabular(frame, target="t", fit_on=train)
    np.testing.assert_allclose(encoded.features[:, 0].numpy(), [-1.0, 1.0, 9.0, 99.0])
    constant = data.encode_tabular(frame.assign(a=5.0), target="t")
    assert torch.equal(constant.features[:, 0], torch.zeros(4))


def test_encode_tabular_refuses_nan_instead_of_spreading_it():
    """One NaN used to turn the whole z-scored column into NaN, and a NaN target into -2**63."""
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "b": ["x", "y", "x", None], "t": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"^frame\['a'\]: .*1 missing .* row 2"):
        data.encode_tabular(frame, target="t")
    encoded = data.encode_tabular(frame.dropna(subset=["a"]), target="t")  # a missing category is fine
    assert torch.isfinite(encoded.features).all()
    assert encoded.features[2, 1:].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"^target \(column 't'\): expected finite"):
        data.encode_tabular(frame.assign(a=1.0, t=[0, 1, np.nan, 1]), target="t")
    with pytest.raises(ValueError, match=r"^protected\['g'\]: expected length 4 \(the rows of frame\), got 3"):
        data.encode_tabular(frame.assign(a=1.0), target="t", protected={"g": pd.Series([1, 0, 1])})
    groups = data.encode_tabular(frame.assign(a=1.0), target="t", protected={"g": np.array([True, False] * 2)})
    assert groups.protected["g"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("loader", [data.load_german_credit, data.load_adult])
def test_loaders_check_as_frame(loader):
    with pytest.raises(TypeError, match="^as_frame"):
        loader(as_frame="no")


def test_split_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        data.train_test_split(np.arange(10), np.arange(9))
