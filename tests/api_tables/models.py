"""trustml_lab.models."""

import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

from api_tables import Bad
from trustml_lab import models

MODULE = models


def _xy(n=32, features=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > 0).long()


def _mlp():
    return models.MLP(3, hidden=(4,))


def _saved():
    path = Path(tempfile.mkdtemp()) / "mlp.safetensors"
    model = _mlp()
    return model, path, models.save_weights(model, path)


def _load(model, digest=None, path=None):
    """A load_weights call on the saved MLP: ``digest`` maps the file's digest to the one passed."""
    _, saved, actual = _saved()
    return ((model, saved if path is None else path), {"sha256": actual if digest is None else digest(actual)})


def _pickle_file():
    path = Path(tempfile.mkdtemp()) / "evil.safetensors"
    path.write_bytes(pickle.dumps({"0.weight": [1.0]}))
    return path


FIT = {"epochs": 2, "batch_size": 8, "lr": 0.01, "progress": False}

VALID = {
    "MLP": lambda: ((3,), {"hidden": (4,), "out_features": 2}),
    "SmallCNN": lambda: ((), {"channels": (4, 8), "hidden": 16, "num_classes": 10}),
    "fit": lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": torch.ones(32), "weight_decay": 0.01,
                                       "generator": torch.Generator().manual_seed(0)}),
    "predict": lambda: ((_mlp(), _xy()[0]), {"internal_batch_size": 8}),
    "predict_proba": lambda: ((_mlp(), _xy()[0]), {"internal_batch_size": np.int64(8)}),
    "accuracy": lambda: ((_mlp(), *_xy()), {"internal_batch_size": 8}),
    "progress_enabled": lambda: ((False,), {}),
    "save_weights": lambda: ((_mlp(), Path(tempfile.mkdtemp()) / "w.safetensors"), {}),
    "load_weights": lambda: _load(_mlp()),
    "load_reference": lambda: ((models.SmallCNN(), "mnist_cnn.safetensors"), {}),
}

BAD = [
    # architectures
    Bad("MLP", lambda: ((3,), {"hidden": 16}), "hidden", "an int where a sequence of sizes goes",
        errors=(TypeError,), match=r"hidden=\(16,\)"),
    Bad("MLP", lambda: ((3,), {"hidden": np.int64(16)}), "hidden", "a numpy int where a sequence goes",
        errors=(TypeError,)),
    Bad("MLP", lambda: ((3,), {"hidden": "16"}), "hidden", "text sizes", errors=(TypeError,)),
    Bad("MLP", lambda: ((3,), {"hidden": (16, 0)}), "hidden[1]", "a zero-width layer"),
    Bad("MLP", lambda: ((3,), {"hidden": (16.0,)}), "hidden[0]", "a float layer size", errors=(TypeError,)),
    Bad("MLP", lambda: ((3.5,), {}), "in_features", "float size", errors=(TypeError,)),
    Bad("MLP", lambda: ((0,), {}), "in_features", "zero inputs"),
    Bad("MLP", lambda: ((3,), {"out_features": -2}), "out_features", "negative outputs"),
    Bad("SmallCNN", lambda: ((), {"channels": 16}), "channels", "one int for two channel counts", errors=(TypeError,)),
    Bad("SmallCNN", lambda: ((), {"channels": (16, 32, 64)}), "channels", "three channel counts"),
    Bad("SmallCNN", lambda: ((), {"channels": (16, 0)}), "channels[1]", "zero channels"),
    Bad("SmallCNN", lambda: ((), {"hidden": (64,)}), "hidden", "a sequence where an int goes", errors=(TypeError,)),
    Bad("SmallCNN", lambda: ((), {"num_classes": 0}), "num_classes", "no classes"),
    # prediction
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1][:, None]), {}), "y", "labels of shape (N, 1)"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1].float() + 0.5), {}), "y", "fractional float labels"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1] + 5), {}), "y", "labels outside the model's classes",
        match="2 classes"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1] - 1), {}), "y", "negative labels"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1][:10]), {}), "y", "fewer labels than inputs"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0][:0], _xy()[1][:0]), {}), "x", "empty data"),
    Bad("accuracy", lambda: ((_mlp(), _xy()[0], _xy()[1]), {"batch_size": 0}), "internal_batch_size",
        "zero through the old name"),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0]), {"internal_batch_size": -1}), "internal_batch_size",
        "negative batch size"),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0]), {"batch_size": -1}), "internal_batch_size",
        "negative batch size through the old name"),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0]), {"internal_batch_size": 8.0}), "internal_batch_size",
        "float batch size", errors=(TypeError,)),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0]), {"internal_batch_size": 8, "batch_size": 8}),
        "internal_batch_size", "both the old and the new name", errors=(TypeError,)),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0].long()), {}), "x", "integer inputs", errors=(TypeError,)),
    Bad("predict_proba", lambda: ((_mlp(), _xy()[0][0]), {}), "x", "one example without its batch dimension"),
    Bad("predict_proba", lambda: ((lambda x: x, _xy()[0]), {}), "model", "a function, not a module",
        errors=(TypeError,)),
    Bad("predict_proba", lambda: ((torch.nn.Flatten(0), _xy()[0]), {}), "model", "a model whose output is 1-d"),
    Bad("predict", lambda: ((_mlp(), _xy()[0].double()[:, :2]), {}), "x", "wrong number of features"),
    Bad("predict", lambda: ((_mlp(), [[0.0, 1.0, 2.0]]), {"internal_batch_size": True}), "internal_batch_size",
        "bool batch size", errors=(TypeError,)),
    # training
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": torch.ones(32),
                                           "loss_fn": torch.nn.CrossEntropyLoss()}),
        "loss_fn", "mean-reduced loss with sample weights", match="one loss per example"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "loss_fn": torch.nn.CrossEntropyLoss()}), "loss_fn",
        "mean-reduced loss without sample weights"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "loss_fn": "cross_entropy"}), "loss_fn", "a name, not a function",
        errors=(TypeError,)),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "epochs": 2.0}), "epochs", "float epochs", errors=(TypeError,)),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "batch_size": 0}), "batch_size", "zero batch size"),
    Bad("fit", lambda: ((_mlp(), _xy()[0][:0], _xy()[1][:0]), FIT), "x", "empty data"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "epochs": np.int64(1), "generator": 3}), "generator",
        "not a generator", errors=(TypeError,)),
    Bad("fit", lambda: ((_mlp(), _xy()[0], _xy()[1][:, None]), FIT), "y", "labels of shape (N, 1)"),
    Bad("fit", lambda: ((_mlp(), _xy()[0], _xy()[1] + 2), FIT), "y", "labels outside the model's classes"),
    Bad("fit", lambda: ((_mlp(), _xy()[0], _xy()[1][:30]), FIT), "y", "fewer labels than inputs"),
    Bad("fit", lambda: ((_mlp(), _xy()[0][:, :2], _xy()[1]), FIT), "x", "wrong number of features"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": -torch.ones(32)}), "sample_weight",
        "negative weights"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": torch.zeros(32)}), "sample_weight",
        "all weights zero"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": torch.ones(31)}), "sample_weight",
        "one weight too few"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "sample_weight": 1.0}), "sample_weight", "a number, not weights"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "penalty": lambda logits, index: logits.sum(1)}), "penalty",
        "a penalty of one number per row"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "perturb": lambda model, x, y: x[:, :2]}), "perturb",
        "a perturbation of the wrong shape"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "lr": 0.0}), "lr", "zero learning rate"),
    Bad("fit", lambda: ((_mlp(), *_xy()), {**FIT, "weight_decay": -0.1}), "weight_decay", "negative weight decay"),
    # weights
    Bad("load_weights", lambda: _load(_mlp(), digest=lambda d: "0" * 64), "path", "wrong sha256"),
    Bad("load_weights", lambda: _load(_mlp(), digest=lambda d: d[:63]), "sha256", "truncated sha256"),
    Bad("load_weights", lambda: _load(_mlp(), digest=lambda d: d.upper()), "sha256", "uppercase sha256",
        match="lowercase"),
    Bad("load_weights", lambda: _load(_mlp(), digest=lambda d: bytes.fromhex(d)), "sha256", "bytes digest",
        errors=(TypeError,)),
    Bad("load_weights", lambda: _load(models.MLP(3, hidden=(5,))), "path", "weights of another architecture",
        match="does not fit"),
    Bad("load_weights", lambda: ((_mlp(), _pickle_file()), {}), "path", "a pickle, not safetensors"),
    Bad("load_weights", lambda: ((_mlp(), 3), {}), "path", "a number, not a path", errors=(TypeError,)),
    Bad("load_weights", lambda: ((_mlp(), Path(tempfile.mkdtemp())), {}), "path", "a folder"),
    Bad("load_weights", lambda: ((_mlp(), Path(tempfile.mkdtemp()) / "none.safetensors"), {}), "path",
        "a missing file", errors=(FileNotFoundError,)),
    Bad("load_reference", lambda: ((models.SmallCNN(), "german.data.gz"), {}), "path", "a data file, not weights"),
    Bad("load_reference", lambda: ((models.MLP(3), "mnist_cnn.safetensors"), {}), "path",
        "weights of another architecture"),
    Bad("load_reference", lambda: ((models.SmallCNN(), Path("mnist_cnn.safetensors")), {}), "filename",
        "a path, not a file name", errors=(TypeError,)),
    Bad("save_weights", lambda: ((_mlp(), None), {}), "path", "None as path", errors=(TypeError,)),
]

EXEMPT = {}

CONVENTION_EXCEPTIONS = {
    "load_weights[convention: mode]": "a loader returns the model in eval mode, ready for inference, as "
                                      "transformers' from_pretrained does",
    "load_reference[convention: mode]": "a loader returns the model in eval mode, ready for inference, as "
                                        "transformers' from_pretrained does",
}

KNOWN_FAILURES: set[str] = set()
