"""The course's data sets, read offline from ``data/`` and checked against its MANIFEST.

==================  =======  ========  ===============================================  ================================
loader              samples  features  target                                           protected (1 = privileged)
==================  =======  ========  ===============================================  ================================
load_german_credit  1,000    20        ``good_credit``: 1 good risk (700), 0 bad (300)  ``sex`` (male), ``age`` (> 25)
load_adult          48,842   14        ``income``: 1 ">50K" (11,687), 0 "<=50K"         ``sex`` (male), ``race`` (white)
load_mnist          5,000    28x28     digit 0-9, 500 images per class                  none
load_sentiment      23,703   text      ``label``: sign of the mean human rating         none
                                       (movies: 10,072 kept at ``min_abs_rating=0.5``,
                                       49.6% positive)
==================  =======  ========  ===============================================  ================================

The protected attributes and their privileged values are aif360's defaults
(``GermanDataset``: male, age > 25; ``AdultDataset``: male, white); ``sex`` of German
credit is decoded from ``personal_status`` and is not one of its 20 features.

Every loader verifies its file's sha256 against ``data/MANIFEST`` first and raises
:class:`DataIntegrityError` (or ``FileNotFoundError``) naming the file when it is
altered or missing. Nothing here touches the network. The files are written once by
``scripts/build_data.py``; ``data/README.md`` gives their provenance and licenses.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._validation import (
    as_tensor,
    check_in_range,
    check_int,
    check_labels,
    check_same_length,
    check_seed,
    describe,
)

__all__ = [
    "DataIntegrityError",
    "ManifestEntry",
    "TabularData",
    "data_dir",
    "encode_tabular",
    "load_adult",
    "load_german_credit",
    "load_mnist",
    "load_mnist_split",
    "load_sentiment",
    "load_sentiment_lexicon",
    "read_manifest",
    "sha256_file",
    "train_test_split",
    "update_manifest",
    "verified_path",
]

MANIFEST_COLUMNS = ("file", "sha256", "rows", "columns", "source", "license")


class DataIntegrityError(ValueError):
    """A data file does not match the sha256 recorded in ``data/MANIFEST``."""


@dataclass(frozen=True)
class ManifestEntry:
    """One row of ``data/MANIFEST``."""

    file: str
    sha256: str
    rows: int
    columns: int
    source: str
    license: str


def data_dir() -> Path:
    """The folder holding the data files: ``$TRUSTML_DATA`` if set, else the repo's ``data/``.

    >>> (data_dir() / "MANIFEST").exists()
    True
    """
    override = os.environ.get("TRUSTML_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "data"


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks.

    >>> len(sha256_file(data_dir() / "MANIFEST"))
    64
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or pathlib.Path), got {describe(path)}")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path | None = None) -> dict[str, ManifestEntry]:
    """Parse ``MANIFEST`` (tab-separated, one header line) into entries by file name.

    >>> read_manifest()["german.data.gz"].rows
    1000
    """
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder: expected a folder path (str or pathlib.Path) or None, got {describe(folder)}")
    folder = data_dir() if folder is None else Path(folder)
    path = folder / "MANIFEST"
    if not path.exists():
        raise FileNotFoundError(f"data manifest {path} is missing; restore it with `git checkout data/`")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != MANIFEST_COLUMNS:
        raise DataIntegrityError(f"{path}: expected the header {'/'.join(MANIFEST_COLUMNS)}")
    entries = {}
    for line in lines[1:]:
        if line.strip():
            file, sha, rows, columns, source, license_ = line.split("\t")
            entries[file] = ManifestEntry(file, sha, int(rows), int(columns), source, license_)
    return entries


def update_manifest(entries: Sequence[ManifestEntry], *, data_dir: Path) -> list[str]:
    """Add or replace ``entries`` in ``data_dir/MANIFEST``, keep the others; return its lines.

    Used by the maintainer scripts (``build_data.py``, ``train_reference_models.py``).
    Rows are sorted by file name so the manifest is byte-reproducible.
    """
    for i, entry in enumerate(entries):
        if not isinstance(entry, ManifestEntry):
            raise TypeError(f"entries[{i}]: expected a ManifestEntry, got {describe(entry)}")
        for field, value in vars(entry).items():
            if any(c in str(value) for c in "\t\n\r"):
                raise ValueError(f"entries[{i}].{field}: a tab or line break would break the tab-separated "
                                 f"MANIFEST, got {value!r}")
    path = Path(data_dir) / "MANIFEST"
    current = read_manifest(Path(data_dir)) if path.exists() else {}
    for entry in entries:
        current[entry.file] = entry
    lines = ["\t".join(MANIFEST_COLUMNS)]
    for name in sorted(current):
        e = current[name]
        lines.append(f"{e.file}\t{e.sha256}\t{e.rows}\t{e.columns}\t{e.source}\t{e.license}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def verified_path(filename: str, folder: Path | None = None) -> Path:
    """The path of ``filename`` in the data folder, after checking it against MANIFEST.

    Raises ``FileNotFoundError`` for a missing file and :class:`DataIntegrityError` for
    a file whose sha256 differs from the manifest's, both naming the file.

    >>> verified_path("german.data.gz").name
    'german.data.gz'
    """
    folder = data_dir() if folder is None else Path(folder)
    manifest = read_manifest(folder)
    if filename not in manifest:
        raise DataIntegrityError(f"{filename}: not listed in {folder / 'MANIFEST'}")
    path = folder / filename
    if not path.exists():
        raise FileNotFoundError(
            f"data file {filename} is missing from {folder}; restore it with "
            f"`git checkout data/{filename}` (maintainers: scripts/build_data.py)"
        )
    actual = sha256_file(path)
    if actual != manifest[filename].sha256:
        raise DataIntegrityError(
            f"data file {filename} is altered: its sha256 is {actual}, MANIFEST says "
            f"{manifest[filename].sha256}; restore it with `git checkout data/{filename}`"
        )
    return path


# --------------------------------------------------------------------------- German credit

_GERMAN_COLUMNS = {
    "checking_status": {"A11": "< 0 DM", "A12": "0-200 DM", "A13": ">= 200 DM", "A14": "no account"},
    "duration_months": None,
    "credit_history": {
        "A30": "no credits / all paid", "A31": "all paid at this bank", "A32": "existing paid duly",
        "A33": "past delays", "A34": "critical account",
    },
    "purpose": {
        "A40": "new car", "A41": "used car", "A42": "furniture/equipment", "A43": "radio/TV",
        "A44": "domestic appliances", "A45": "repairs", "A46": "education", "A47": "vacation",
        "A48": "retraining", "A49": "business", "A410": "other",
    },
    "credit_amount": None,
    "savings": {
        "A61": "< 100 DM", "A62": "100-500 DM", "A63": "500-1000 DM", "A64": ">= 1000 DM",
        "A65": "unknown / none",
    },
    "employment_since": {
        "A71": "unemployed", "A72": "< 1 year", "A73": "1-4 years", "A74": "4-7 years",
        "A75": ">= 7 years",
    },
    "installment_rate": None,
    "personal_status": {
        "A91": "male: divorced/separated", "A92": "female: divorced/separated/married",
        "A93": "male: single", "A94": "male: married/widowed", "A95": "female: single",
    },
    "other_debtors": {"A101": "none", "A102": "co-applicant", "A103": "guarantor"},
    "residence_since": None,
    "property": {
        "A121": "real estate", "A122": "savings / life insurance", "A123": "car / other",
        "A124": "unknown / none",
    },
    "age": None,
    "other_installment_plans": {"A141": "bank", "A142": "stores", "A143": "none"},
    "housing": {"A151": "rent", "A152": "own", "A153": "for free"},
    "existing_credits": None,
    "job": {
        "A171": "unskilled non-resident", "A172": "unskilled resident", "A173": "skilled",
        "A174": "highly qualified",
    },
    "num_dependents": None,
    "telephone": {"A191": "none", "A192": "yes"},
    "foreign_worker": {"A201": "yes", "A202": "no"},
}


@dataclass(frozen=True)
class TabularData:
    """A table encoded for a model: float features, integer target, protected attributes.

    ``protected`` maps an attribute name to an int64 tensor in which 1 marks the group
    aif360 treats as privileged (German credit: male, age > 25; Adult: male, white).
    """

    features: torch.Tensor
    target: torch.Tensor
    feature_names: tuple[str, ...]
    protected: dict[str, torch.Tensor]


def _numeric_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype)


def _finite_column(series: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float64, refusing missing and infinite values (naming the first row)."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{name}: expected finite numbers, got {len(bad)} missing (NaN) or infinite "
                         f"value(s), the first in row {int(bad[0])}; impute or drop them before encoding")
    return values


def _fit_rows(fit_on: Any, n: int) -> np.ndarray | slice:
    if fit_on is None:
        return slice(None)
    mask = as_tensor(fit_on, "fit_on", ndim=1)
    if mask.dtype != torch.bool:
        raise TypeError(f"fit_on: expected a boolean mask of the rows, got {describe(mask)}")
    if len(mask) != n:
        raise ValueError(f"fit_on: expected length {n} (the rows of frame), got {len(mask)}")
    if not bool(mask.any()):
        raise ValueError("fit_on: expected at least one True row to fit the statistics on, got none")
    return mask.cpu().numpy()


def _categories(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    values = series.dropna().unique()
    try:
        return sorted(values)
    except TypeError:  # mixed types (say str and int): order by their text
        return sorted(values, key=str)


def encode_tabular(
    frame: pd.DataFrame,
    *,
    target: str,
    exclude: Sequence[str] = (),
    protected: dict[str, pd.Series] | None = None,
    fit_on: Any = None,
) -> TabularData:
    """One-hot encode categorical columns and standardize numeric ones.

    A numeric column ``v`` becomes ``(v - mean) / std`` (population std, as
    scikit-learn's ``StandardScaler``; a constant column becomes ``v - mean``), with the
    mean and std of the rows marked in ``fit_on`` (a boolean mask; default: every row,
    fine for teaching; pass the training rows for a strict evaluation). A categorical
    (or text) column becomes one 0/1 column per category of the whole table (a pandas
    Categorical's own categories, in their order; else the sorted values); a missing
    category is an all-zero row. Equals scikit-learn's ``ColumnTransformer`` of a
    ``StandardScaler`` fitted on the ``fit_on`` rows and a ``OneHotEncoder`` given those
    categories with ``handle_unknown="ignore"`` (``tests/test_data.py`` compares them on Adult).

    Missing or infinite values in a numeric column are refused (``ValueError`` naming
    the column): impute or drop them first. The target must hold whole, non-negative
    class labels, and each ``protected`` attribute one 0/1 (or group code) entry per row,
    in the frame's row order.

    >>> df = pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"], "t": [0, 1]})
    >>> enc = encode_tabular(df, target="t")
    >>> enc.feature_names
    ('a', 'b=x', 'b=y')
    >>> enc.features
    tensor([[-1.,  1.,  0.],
            [ 1.,  0.,  1.]])
    >>> encode_tabular(df.assign(a=[1.0, None]), target="t")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: frame['a']: expected finite numbers, got 1 missing (NaN) or infinite value(s), the first in row 1; ...
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame: expected a pandas DataFrame, got {describe(frame)}")
    if len(frame) == 0:
        raise ValueError("frame: expected at least one row, got an empty DataFrame")
    try:
        known = target in frame.columns
    except TypeError:  # an unhashable target, such as a list
        known = False
    if not known:
        raise ValueError(f"target: expected one of the columns {list(frame.columns)}, got {target!r}")
    if isinstance(exclude, str) or not isinstance(exclude, (Sequence, set, frozenset)):
        raise TypeError(f"exclude: expected a sequence of column names such as ('fnlwgt',), got {describe(exclude)}")
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise ValueError(f"exclude: expected columns of frame, got unknown {unknown}")
    fit_rows = _fit_rows(fit_on, len(frame))
    columns = [c for c in frame.columns if c != target and c not in set(exclude)]
    if not columns:
        raise ValueError("frame: expected at least one feature column besides the target and the excluded ones")
    blocks, names = [], []
    for column in columns:
        series = frame[column]
        if _numeric_column(series):
            values = _finite_column(series, f"frame[{column!r}]")
            mean, std = values[fit_rows].mean(), values[fit_rows].std()
            blocks.append(((values - mean) / (std if std > 0 else 1.0))[:, None])
            names.append(column)
        else:
            categories = _categories(series)
            codes = pd.Categorical(series, categories=categories).codes
            one_hot = np.zeros((len(series), len(categories)))
            rows = np.flatnonzero(codes >= 0)
            one_hot[rows, codes[rows]] = 1.0
            blocks.append(one_hot)
            names.extend(f"{column}={c}" for c in categories)
    features = torch.from_numpy(np.concatenate(blocks, axis=1).astype(np.float32))
    target_series = frame[target]
    if not _numeric_column(target_series):
        raise TypeError(f"target: column {target!r} must hold integer class labels, got dtype {target_series.dtype}")
    target_tensor = check_labels(target_series.to_numpy(dtype=np.float64, na_value=np.nan),
                                 f"target (column {target!r})")
    if protected is not None and not isinstance(protected, dict):
        raise TypeError(f"protected: expected a dict from attribute name to a Series, got {describe(protected)}")
    groups = {}
    for key, values in (protected or {}).items():
        name = f"protected[{key!r}]"
        if not hasattr(values, "__len__") or isinstance(values, str):
            raise TypeError(f"{name}: expected one value per row (a Series or an array), got {describe(values)}")
        if len(values) != len(frame):
            raise ValueError(f"{name}: expected length {len(frame)} (the rows of frame), got {len(values)}")
        groups[key] = check_labels(values, name)
    return TabularData(features, target_tensor, tuple(names), groups)


def _check_as_frame(as_frame: Any) -> None:
    if not isinstance(as_frame, (bool, np.bool_)):
        raise TypeError(f"as_frame: expected True (a DataFrame) or False (TabularData), got {describe(as_frame)}")


def load_german_credit(*, as_frame: bool = True) -> pd.DataFrame | TabularData:
    """The Statlog German credit data: 1,000 loan applicants, good or bad credit risk.

    Columns: the 20 UCI attributes with codes decoded to words (``checking_status``,
    ``duration_months``, ``credit_history``, ``purpose``, ``credit_amount``, ``savings``,
    ``employment_since``, ``installment_rate``, ``personal_status``, ``other_debtors``,
    ``residence_since``, ``property``, ``age``, ``other_installment_plans``, ``housing``,
    ``existing_credits``, ``job``, ``num_dependents``, ``telephone``, ``foreign_worker``),
    the target ``good_credit`` (1 good, the favorable label; 0 bad) and the protected
    attribute ``sex`` ("male"/"female"), decoded from ``personal_status`` as aif360 does.
    ``age`` (years) is the second protected attribute; aif360's ``GermanDataset`` calls
    ``age > 25`` privileged (its default ``privileged_classes``), and so do we.

    With ``as_frame=False`` returns :class:`TabularData` (``sex`` is left out of the
    features, since ``personal_status`` carries it; ``protected`` holds ``sex`` and
    ``age`` as 0/1 with 1 = male, age > 25).

    >>> df = load_german_credit()
    >>> df.shape
    (1000, 22)
    >>> df["sex"].value_counts().to_dict()
    {'male': 690, 'female': 310}
    >>> round(float(df["good_credit"].mean()), 2)
    0.7
    """
    _check_as_frame(as_frame)
    path = verified_path("german.data.gz")
    raw = pd.read_csv(path, sep=" ", header=None, compression="gzip", dtype=str)
    frame = pd.DataFrame()
    for index, (name, codes) in enumerate(_GERMAN_COLUMNS.items()):
        column = raw[index]
        if codes is None:
            frame[name] = column.astype(np.int64)
        else:
            frame[name] = pd.Categorical(column.map(codes), categories=list(codes.values()))
    frame["good_credit"] = (raw[20].astype(int) == 1).astype(np.int64)
    frame["sex"] = np.where(frame["personal_status"].astype(str).str.startswith("female"), "female", "male")
    if as_frame:
        return frame
    return encode_tabular(
        frame,
        target="good_credit",
        exclude=("sex",),
        protected={"sex": frame["sex"] == "male", "age": frame["age"] > 25},
    )


# --------------------------------------------------------------------------- Adult

_ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]
_ADULT_NUMERIC = {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"}


def _read_adult_part(filename: str) -> pd.DataFrame:
    path = verified_path(filename)
    part = pd.read_csv(
        path, header=None, names=_ADULT_COLUMNS, sep=",", skipinitialspace=True,
        na_values="?", compression="gzip", comment="|", dtype=str,
    ).dropna(how="all")
    return part


def load_adult(*, as_frame: bool = True) -> pd.DataFrame | TabularData:
    """The UCI Adult census data: 48,842 people, income above 50K or not.

    Train (32,561 rows) and test (16,281 rows) come together; the column ``split``
    says which. Columns: ``age``, ``workclass``, ``fnlwgt``, ``education``,
    ``education_num``, ``marital_status``, ``occupation``, ``relationship``, ``race``,
    ``sex``, ``capital_gain``, ``capital_loss``, ``hours_per_week``,
    ``native_country``, the target ``income`` (1 for ">50K", the favorable label) and
    ``split``. Protected attributes: ``sex`` and ``race``. Unknown values ("?" in the
    original) are missing (``NaN``) in ``workclass``, ``occupation``, ``native_country``.

    With ``as_frame=False`` returns :class:`TabularData` without ``fnlwgt`` (a census
    sampling weight) and ``split``; ``protected`` holds ``sex`` (1 male) and ``race``
    (1 white).

    >>> df = load_adult()
    >>> df.shape
    (48842, 16)
    >>> df["split"].value_counts().to_dict()
    {'train': 32561, 'test': 16281}
    >>> round(float(df["income"].mean()), 3)
    0.239
    """
    _check_as_frame(as_frame)
    parts = []
    for filename, split in (("adult.data.gz", "train"), ("adult.test.gz", "test")):
        part = _read_adult_part(filename)
        part["split"] = split
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    for column in _ADULT_COLUMNS:
        if column in _ADULT_NUMERIC:
            frame[column] = frame[column].astype(np.int64)
        elif column != "income":
            frame[column] = pd.Categorical(frame[column], categories=sorted(frame[column].dropna().unique()))
    frame["income"] = frame["income"].str.rstrip(".").eq(">50K").astype(np.int64)
    if as_frame:
        return frame
    return encode_tabular(
        frame,
        target="income",
        exclude=("fnlwgt", "split"),
        protected={"sex": frame["sex"] == "Male", "race": frame["race"] == "White"},
    )


# --------------------------------------------------------------------------- MNIST

def load_mnist(*, n_per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 MNIST digits (500 per class): images in [0, 1] of shape (N, 1, 28, 28), labels.

    ``n_per_class`` keeps the first ``n`` images of each digit (1 to 500); the result is
    ordered by class, so shuffle or use :func:`train_test_split` before training.

    >>> images, labels = load_mnist(n_per_class=3)
    >>> images.shape, images.dtype, labels.tolist()[:4]
    (torch.Size([30, 1, 28, 28]), torch.float32, [0, 0, 0, 1])
    >>> float(images.min()), float(images.max())
    (0.0, 1.0)
    """
    if n_per_class is not None:
        n_per_class = check_int(n_per_class, "n_per_class", low=1, high=500)
    path = verified_path("mnist_5k.csv.gz")
    table = pd.read_csv(path, header=None, compression="gzip", dtype=np.uint8).to_numpy()
    pixels = torch.from_numpy(table[:, :784].copy())
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    if n_per_class is not None:
        order = torch.argsort(labels, stable=True)
        first = torch.searchsorted(labels[order], torch.arange(10))
        rank = torch.arange(len(labels)) - first[labels[order]]
        keep = torch.sort(order[rank < n_per_class]).values
        pixels, labels = pixels[keep], labels[keep]
    images = pixels.reshape(-1, 1, 28, 28).to(torch.float32) / 255.0
    return images, labels


def load_mnist_split(*, test_size: float = 0.2, seed: int = 0) -> list[torch.Tensor]:
    """The course's MNIST split: ``[x_train, x_test, y_train, y_test]``, 4,000 / 1,000.

    Stratified and seeded, so every chapter (and the shipped reference CNN,
    ``data/mnist_cnn.safetensors``) uses the same held-out 1,000 test images.

    >>> x_train, x_test, y_train, y_test = load_mnist_split()
    >>> len(x_train), len(x_test), torch.bincount(y_test).tolist()[:3]
    (4000, 1000, [100, 100, 100])
    """
    images, labels = load_mnist()
    return train_test_split(images, labels, test_size=test_size, stratify=labels, seed=seed)


# --------------------------------------------------------------------------- splitting

def _take(array: Any, index: torch.Tensor) -> Any:
    if isinstance(array, torch.Tensor):
        return array[index.to(array.device)]
    if isinstance(array, (pd.DataFrame, pd.Series)):
        return array.iloc[index.numpy()]
    if isinstance(array, np.ndarray):
        return array[index.numpy()]
    if isinstance(array, TabularData):
        raise TypeError("arrays: split TabularData's fields (features, target, ...) instead")
    return [array[i] for i in index.tolist()]


def _check_stratified_parts(n_test: torch.Tensor, counts: torch.Tensor, test_size: float | int) -> None:
    """Refuse a stratified split whose test part, or the train part of some class, is empty."""
    if int(n_test.sum()) == 0:
        raise ValueError(f"test_size: {test_size} of each class (at most {int(counts.max())} rows) rounds "
                         "to no test row at all; ask for a larger test part")
    emptied = torch.nonzero((counts > 0) & (n_test >= counts)).flatten()
    if len(emptied):
        raise ValueError(f"test_size: {test_size} puts every row of {len(emptied)} class(es) (class code "
                         f"{int(emptied[0])}, {int(counts[emptied[0]])} rows) in the test part, leaving its "
                         "train part empty; ask for a smaller test part")


def train_test_split(
    *arrays: Any,
    test_size: float | int = 0.25,
    stratify: Any = None,
    seed: int = 0,
) -> list[Any]:
    """Split arrays into shuffled train and test parts, seeded and optionally stratified.

    Like scikit-learn's ``train_test_split``: returns ``[a_train, a_test, b_train,
    b_test, ...]``, each part of the same type as its input (tensor, numpy array,
    pandas object, list). With ``stratify`` (class labels), each class is split in the
    same proportion, ``round(test_size * class_size)`` examples going to the test part
    (rounding half to even). ``test_size`` is a fraction in (0, 1) or a number of rows;
    a split that leaves the train or the test part empty, or, stratified, any class's
    train part empty, is refused (``ValueError`` naming ``test_size``). ``seed`` is an
    int in ``[0, 2**32 - 1]``.

    >>> x, y = torch.arange(10).float(), torch.tensor([0] * 6 + [1] * 4)
    >>> x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y, seed=0)
    >>> len(x_te), int(y_te.sum())
    (5, 2)
    """
    if not arrays:
        raise ValueError("arrays: expected at least one array to split, got none")
    for i, array in enumerate(arrays):
        if isinstance(array, TabularData):
            raise TypeError(f"arrays[{i}]: split TabularData's fields (features, target, ...) instead")
        if not hasattr(array, "__len__") or not hasattr(array, "__getitem__") or isinstance(array, (str, bytes)):
            raise TypeError(f"arrays[{i}]: expected a tensor, array, pandas object or list, got {describe(array)}")
    n = check_same_length(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    if n < 2:
        raise ValueError(f"arrays: expected at least 2 rows to split into a train and a test part, got {n}")
    if isinstance(test_size, (float, np.floating)):
        fraction = check_in_range(test_size, "test_size", 0.0, 1.0, low_open=True, high_open=True)
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, (bool, np.bool_)):
        fraction = check_int(test_size, "test_size", low=1, high=n - 1) / n
    else:
        raise TypeError(f"test_size: expected a float in (0, 1) or an int, got {describe(test_size)}")
    seed = check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    if stratify is None:
        n_test = int(round(fraction * n))
        if not 0 < n_test < n:
            part = "test" if n_test == 0 else "train"
            raise ValueError(f"test_size: {test_size} of {n} rows leaves the {part} part empty")
        test_mask = torch.zeros(n, dtype=torch.bool)
        test_mask[:n_test] = True
    else:
        labels = as_tensor(stratify, "stratify", ndim=1).cpu()
        check_same_length(**{"arrays[0]": arrays[0], "stratify": labels})
        small_ints = not labels.is_floating_point() and labels.dtype != torch.bool and (
            n == 0 or (int(labels.min()) >= 0 and int(labels.max()) < n))
        codes = labels.long() if small_ints else torch.unique(labels, return_inverse=True)[1]
        # one stable sort of the shuffled codes ranks every example within its class
        sorted_codes, order = torch.sort(codes[perm], stable=True)
        counts = torch.bincount(sorted_codes)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(n) - starts[sorted_codes]
        n_test = torch.round(counts.double() * fraction).long()
        _check_stratified_parts(n_test, counts, test_size)
        test_mask = torch.empty(n, dtype=torch.bool)
        test_mask[order] = rank < n_test[sorted_codes]
    train_index, test_index = perm[~test_mask], perm[test_mask]
    out: list[Any] = []
    for array in arrays:
        out.extend([_take(array, train_index), _take(array, test_index)])
    return out


# --------------------------------------------------------------------------- sentiment

#: The four sets of human-rated sentences of Hutto and Gilbert (ICWSM 2014), in ``data/``.
SENTIMENT_SOURCES = ("movies", "tweets", "amazon", "nyt")
#: Share of each source's sentences in the fixed test split (drawn before any filtering).
SENTIMENT_TEST_FRACTION = 0.2


def _read_tsv(filename: str) -> pd.DataFrame:
    import csv

    path = verified_path(filename)
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, compression="gzip", keep_default_na=False,
                       dtype={"id": str, "text": str, "token": str}, encoding="utf-8")


def _sentiment_source(source: str) -> pd.DataFrame:
    frame = _read_tsv(f"sentiment_{source}.tsv.gz")
    n = len(frame)
    # the split is fixed per file, before filtering, so it does not move with min_abs_rating
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
    split = np.full(n, "train", dtype=object)
    split[order[: int(round(SENTIMENT_TEST_FRACTION * n))]] = "test"
    return pd.DataFrame({"source": source, "id": frame["id"].astype(str), "text": frame["text"].astype(str),
                         "rating": frame["rating"].to_numpy(np.float64), "split": split})


def load_sentiment(source: str = "movies", *, min_abs_rating: float = 0.5) -> pd.DataFrame:
    """Human-rated English sentences with a binary sentiment label (Hutto and Gilbert, ICWSM 2014).

    ==============  =========  ===========  =======================================================
    ``source``      sentences  kept at 0.5  origin
    ==============  =========  ===========  =======================================================
    ``"movies"``       10,605       10,072  review snippets (Rotten Tomatoes, Pang and Lee's data)
    ``"tweets"``        4,200        3,432  tweet-like texts (handles, URLs replaced: ``@user``)
    ``"amazon"``        3,708        2,985  product-review snippets (Hu and Liu 2004)
    ``"nyt"``           5,190        2,970  New York Times opinion-editorial snippets
    ``"all"``          23,703       19,459  the four together
    ==============  =========  ===========  =======================================================

    Each sentence carries ``rating``, the mean of at least 20 human ratings on
    [-4, 4]. ``label`` is its sign (1 positive, 0 negative); sentences rated near neutral,
    ``|rating| < min_abs_rating`` (and those rated exactly 0), are dropped: their sign is
    a coin toss between raters. The default 0.5, half a step of the raters' integer
    scale, keeps 95% of the movie snippets. Columns: ``source``, ``id`` (the original id), ``text``, ``rating``,
    ``label``, ``split``. ``split`` is a fixed, seeded 80/20 ``"train"``/``"test"``
    split of each source's file, drawn before filtering, so a sentence keeps its side
    whatever the threshold: the shipped text model (``trustml_lab.text``) was fine-tuned
    on the movie ``"train"`` rows only.

    The file is verified against ``data/MANIFEST`` first (:class:`DataIntegrityError`
    naming it otherwise). Provenance and licenses: ``data/README.md``.

    >>> df = load_sentiment("movies")
    >>> df.shape
    (10072, 6)
    >>> df["split"].value_counts().to_dict()
    {'train': 8054, 'test': 2018}
    >>> round(float(df["label"].mean()), 3)
    0.496
    >>> load_sentiment("all", min_abs_rating=1.0)["source"].value_counts().to_dict()
    {'movies': 9173, 'tweets': 2667, 'amazon': 2455, 'nyt': 1554}
    """
    if not isinstance(source, str) or source not in (*SENTIMENT_SOURCES, "all"):
        raise ValueError(f"source: expected one of {[*SENTIMENT_SOURCES, 'all']}, got {source!r}")
    from ._validation import check_in_range

    threshold = check_in_range(min_abs_rating, "min_abs_rating", 0.0, 4.0)
    sources = SENTIMENT_SOURCES if source == "all" else (source,)
    frame = pd.concat([_sentiment_source(s) for s in sources], ignore_index=True)
    keep = (frame["rating"].abs() >= threshold) & (frame["rating"] != 0)
    frame = frame[keep].reset_index(drop=True)
    frame.insert(4, "label", (frame["rating"] > 0).astype(np.int64))
    return frame


def load_sentiment_lexicon() -> pd.DataFrame:
    """VADER's sentiment lexicon (Hutto and Gilbert, ICWSM 2014): 7,520 words and emoticons.

    Columns ``token``, ``valence`` (the mean of ten human ratings on [-4, 4]) and ``sd``
    (their standard deviation), verified against ``data/MANIFEST``. The text chapter
    builds its word-substitution constraint from it (``trustml_lab.text``).

    >>> lexicon = load_sentiment_lexicon()
    >>> lexicon.set_index("token").loc[["good", "great", "horrible"], "valence"].tolist()
    [1.9, 3.1, -2.5]
    """
    frame = _read_tsv("sentiment_lexicon.tsv.gz")
    return pd.DataFrame({"token": frame["token"].astype(str), "valence": frame["valence"].to_numpy(np.float64),
                         "sd": frame["sd"].to_numpy(np.float64)})
