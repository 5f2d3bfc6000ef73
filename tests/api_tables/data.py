"""trustml_lab.data."""

import pathlib
import tempfile

import numpy as np
import pandas as pd
import torch

from api_tables import Bad
from trustml_lab import data

MODULE = data

_FRAME = lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "x", "y"], "t": [0, 1, 0, 1]})
_Y = lambda: torch.arange(20) % 2
_ONE_OF_CLASS_1 = lambda: torch.tensor([0] * 10 + [1])


def _manifest_call(entries):
    return ((entries,), {"data_dir": pathlib.Path(tempfile.mkdtemp())})


VALID = {
    "data_dir": lambda: ((), {}),
    "sha256_file": lambda: ((data.data_dir() / "MANIFEST",), {}),
    "read_manifest": lambda: ((), {}),
    "verified_path": lambda: (("german.data.gz",), {}),
    "update_manifest": lambda: _manifest_call([data.ManifestEntry("f", "0" * 64, 1, 1, "s", "l")]),
    "encode_tabular": lambda: ((_FRAME(),), {"target": "t", "fit_on": np.array([True, True, False, True])}),
    "load_german_credit": lambda: ((), {"as_frame": True}),
    "load_adult": lambda: ((), {"as_frame": True}),
    "load_mnist": lambda: ((), {"n_per_class": np.int64(2)}),
    "load_mnist_split": lambda: ((), {"test_size": 0.2, "seed": 0}),
    # one positional array and `stratify` first: test_bad_inputs.bind_names names the first len(args) keywords
    # as if they were positional when the function takes *arrays (reported to the lead)
    "train_test_split": lambda: ((torch.arange(20.0),), {"stratify": _Y(), "test_size": 0.25, "seed": 0}),
    "load_sentiment": lambda: ((), {"source": "tweets", "min_abs_rating": 0.5}),
    "load_sentiment_lexicon": lambda: ((), {}),
}

BAD = [
    # encode_tabular
    Bad("encode_tabular", lambda: ((_FRAME().assign(a=[1.0, np.nan, 3.0, 4.0]),), {"target": "t"}), "frame['a']",
        "one NaN in a numeric column", match="row 1"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(a=[1.0, np.inf, 3.0, 4.0]),), {"target": "t"}), "frame['a']",
        "infinity in a numeric column"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(a=pd.array([1, None, 3, 4], dtype="Int64")),), {"target": "t"}),
        "frame['a']", "pandas' NA in a nullable integer column"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(t=[0, 1, np.nan, 1]),), {"target": "t"}), "target",
        "NaN in the target"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(t=[0, 1, 0.5, 1]),), {"target": "t"}), "target",
        "fractional target"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(t=["no", "yes", "no", "yes"]),), {"target": "t"}), "target",
        "text target", errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "nope"}), "target", "target not a column"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": ["t"]}), "target", "unhashable target"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "protected": {"g": pd.Series([1, 0])}}),
        "protected['g']", "protected attribute of the wrong length"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "protected": {"g": np.array([1, 0, np.nan, 1])}}),
        "protected['g']", "NaN in a protected attribute"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "protected": {"g": pd.Series(list("mfmf"))}}),
        "protected['g']", "text protected attribute", errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "protected": [1, 0, 1, 0]}), "protected",
        "protected not a dict", errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "exclude": "b"}), "exclude",
        "one column name where a sequence goes", errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "exclude": ("c",)}), "exclude", "unknown column"),
    Bad("encode_tabular", lambda: ((_FRAME().iloc[:0],), {"target": "t"}), "frame", "empty frame"),
    Bad("encode_tabular", lambda: ((_FRAME()[["t"]],), {"target": "t"}), "frame", "no feature column"),
    Bad("encode_tabular", lambda: ((_FRAME().to_numpy(),), {"target": "t"}), "frame", "an array, not a DataFrame",
        errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "fit_on": np.array([1, 1, 0, 1])}), "fit_on",
        "integer fit_on", errors=(TypeError,)),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "fit_on": np.zeros(4, dtype=bool)}), "fit_on",
        "no row to fit on"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "fit_on": np.ones(3, dtype=bool)}), "fit_on",
        "fit_on of the wrong length"),
    # train_test_split
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.001}), "test_size",
        "a test part that rounds to empty", match="test part empty"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.999}), "test_size",
        "a train part that rounds to empty", match="train part empty"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.01, "stratify": _Y()}), "test_size",
        "stratified, a test part that rounds to empty"),
    Bad("train_test_split", lambda: ((torch.arange(11.0),), {"test_size": 0.6, "stratify": _ONE_OF_CLASS_1()}),
        "test_size", "stratified, a class whose train part would be empty", match="train part empty"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.0}), "test_size", "zero test size"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 20}), "test_size", "every row as test"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": "0.2"}), "test_size", "text test size",
        errors=(TypeError,)),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"seed": -1}), "seed", "negative seed"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"seed": 1.0}), "seed", "float seed",
        errors=(TypeError,)),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"stratify": _Y()[:10]}), "stratify",
        "stratify of the wrong length"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"stratify": _Y()[:, None]}), "stratify",
        "2-d stratify"),
    Bad("train_test_split", lambda: ((torch.arange(20.0), torch.arange(19)), {}), "arrays[1]", "arrays of two lengths"),
    Bad("train_test_split", lambda: ((torch.arange(1.0),), {}), "arrays", "one row"),
    Bad("train_test_split", lambda: ((), {}), "arrays", "nothing to split"),
    Bad("train_test_split", lambda: ((3,), {}), "arrays[0]", "a number, not an array", errors=(TypeError,)),
    Bad("train_test_split", lambda: ((data.load_german_credit(as_frame=False),), {}), "arrays[0]",
        "TabularData as a whole", errors=(TypeError,)),
    # loaders and files
    Bad("load_mnist", lambda: ((), {"n_per_class": 0}), "n_per_class", "zero per class"),
    Bad("load_mnist", lambda: ((), {"n_per_class": 501}), "n_per_class", "more than the 500 per class"),
    Bad("load_mnist", lambda: ((), {"n_per_class": 2.0}), "n_per_class", "float per class", errors=(TypeError,)),
    Bad("load_mnist_split", lambda: ((), {"test_size": 1.5}), "test_size", "test size above 1"),
    Bad("load_mnist_split", lambda: ((), {"seed": 2**32}), "seed", "seed beyond numpy's range"),
    Bad("load_german_credit", lambda: ((), {"as_frame": "yes"}), "as_frame", "text as_frame", errors=(TypeError,)),
    Bad("load_adult", lambda: ((), {"as_frame": None}), "as_frame", "None as_frame", errors=(TypeError,)),
    Bad("verified_path", lambda: (("no-such-file.gz",), {}), "no-such-file.gz", "a file not in the manifest"),
    Bad("verified_path", lambda: (("../pyproject.toml",), {}), "../pyproject.toml", "a path out of data/"),
    Bad("sha256_file", lambda: ((None,), {}), "path", "None as path", errors=(TypeError,)),
    Bad("read_manifest", lambda: ((3,), {}), "folder", "a number as folder", errors=(TypeError,)),
    Bad("read_manifest", lambda: ((pathlib.Path(tempfile.mkdtemp()),), {}), "MANIFEST", "a folder without one",
        errors=(FileNotFoundError,)),
    Bad("update_manifest", lambda: _manifest_call([("f", "0" * 64, 1, 1, "s", "l")]), "entries",
        "a tuple, not a ManifestEntry", errors=(TypeError,)),
    Bad("update_manifest", lambda: _manifest_call([data.ManifestEntry("f", "0" * 64, 1, 1, "a\tb", "l")]), "entries",
        "a tab inside a field"),
    Bad("load_sentiment", lambda: ((), {"source": "imdb"}), "source", "an unknown source"),
    Bad("load_sentiment", lambda: ((), {"min_abs_rating": 5.0}), "min_abs_rating", "a threshold off the scale"),
]

EXEMPT = {
    "DataIntegrityError": "an exception class",
    "ManifestEntry": "a frozen record, built by read_manifest",
    "TabularData": "a frozen record, built by encode_tabular and the loaders",
}

KNOWN_FAILURES: set[str] = set()

PASSES_NON_FINITE = {
    "train_test_split[arrays[0] has NaN]": "a splitter moves rows and computes nothing from their values; "
                                           "scikit-learn's train_test_split accepts NaN too",
}

CONVENTION_EXCEPTIONS = {
    "load_mnist[convention: results]": "(images, labels), scikit-learn's return_X_y shape for a loader",
    "read_manifest[convention: results]": "a lookup table of ManifestEntry records by file name",
}
