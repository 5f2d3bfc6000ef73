"""trustml_lab.data."""

import numpy as np
import pandas as pd
import torch

from api_tables import Bad
from trustml_lab import data

MODULE = data

_FRAME = lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "x", "y"], "t": [0, 1, 0, 1]})

VALID = {
    "data_dir": lambda: ((), {}),
    "sha256_file": lambda: ((data.data_dir() / "MANIFEST",), {}),
    "read_manifest": lambda: ((), {}),
    "verified_path": lambda: (("german.data.gz",), {}),
    "update_manifest": lambda: (lambda d: (([data.ManifestEntry("f", "0" * 64, 1, 1, "s", "l")],),
                                           {"data_dir": d}))(__import__("pathlib").Path(
                                               __import__("tempfile").mkdtemp())),
    "encode_tabular": lambda: ((_FRAME(),), {"target": "t"}),
    "load_german_credit": lambda: ((), {"as_frame": True}),
    "load_adult": lambda: ((), {"as_frame": True}),
    "load_mnist": lambda: ((), {"n_per_class": 2}),
    "load_mnist_split": lambda: ((), {"test_size": 0.2, "seed": 0}),
    "train_test_split": lambda: ((torch.arange(20.0), torch.arange(20) % 2),
                                 {"test_size": 0.25, "stratify": torch.arange(20) % 2, "seed": 0}),
    "load_sentiment": lambda: ((), {"source": "tweets", "min_abs_rating": 0.5}),
    "load_sentiment_lexicon": lambda: ((), {}),
}

BAD = [
    Bad("encode_tabular", lambda: ((_FRAME().assign(a=[1.0, np.nan, 3.0, 4.0]),), {"target": "t"}), "a",
        "one NaN in a numeric column"),
    Bad("encode_tabular", lambda: ((_FRAME().assign(t=[0, 1, np.nan, 1]),), {"target": "t"}), "target",
        "NaN in the target"),
    Bad("encode_tabular", lambda: ((_FRAME(),), {"target": "t", "protected": {"g": pd.Series([1, 0])}}),
        "protected", "protected attribute of the wrong length"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.001}), "test_size",
        "a test part that rounds to empty"),
    Bad("train_test_split", lambda: ((torch.arange(20.0),), {"test_size": 0.999}), "test_size",
        "a train part that rounds to empty"),
    Bad("load_mnist", lambda: ((), {"n_per_class": 0}), "n_per_class", "zero per class"),
    Bad("load_mnist_split", lambda: ((), {"test_size": 1.5}), "test_size", "test size above 1"),
    Bad("verified_path", lambda: (("no-such-file.gz",), {}), "no-such-file.gz", "a file not in the manifest"),
    Bad("load_sentiment", lambda: ((), {"source": "imdb"}), "source", "an unknown source"),
    Bad("load_sentiment", lambda: ((), {"min_abs_rating": 5.0}), "min_abs_rating", "a threshold off the scale"),
]

EXEMPT = {
    "DataIntegrityError": "an exception class",
    "ManifestEntry": "a frozen record, built by read_manifest",
    "TabularData": "a frozen record, built by encode_tabular and the loaders",
}

KNOWN_FAILURES = {
    'encode_tabular[NaN in the target]',
    'encode_tabular[one NaN in a numeric column]',
    'encode_tabular[protected attribute of the wrong length]',
    'load_mnist_split[seed=-inf]',
    'load_mnist_split[seed=inf]',
    'load_mnist_split[seed=nan]',
    'train_test_split[a test part that rounds to empty]',
    'train_test_split[a train part that rounds to empty]',
    'train_test_split[seed=-inf]',
    'train_test_split[seed=inf]',
    'train_test_split[seed=nan]',
    'train_test_split[test_size=-inf]',
    'train_test_split[test_size=inf]',
    'train_test_split[test_size=nan]',
}

CONVENTION_EXCEPTIONS = {
    "load_mnist[convention: results]": "(images, labels), scikit-learn's return_X_y shape for a loader",
    "read_manifest[convention: results]": "a lookup table of ManifestEntry records by file name",
}
