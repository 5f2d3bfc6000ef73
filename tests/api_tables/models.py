"""trustml_lab.models."""

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


def _saved():
    path = Path(tempfile.mkdtemp()) / "mlp.safetensors"
    model = models.MLP(3, hidden=(4,))
    return model, path, models.save_weights(model, path)


VALID = {
    "MLP": lambda: ((3,), {"hidden": (4,), "out_features": 2}),
    "SmallCNN": lambda: ((), {"channels": (4, 8), "hidden": 16, "num_classes": 10}),
    "fit": lambda: ((models.MLP(3, hidden=(4,)), *_xy()), {"epochs": 2, "batch_size": 8, "lr": 0.01,
                                                           "progress": False}),
    "predict": lambda: ((models.MLP(3, hidden=(4,)), _xy()[0]), {"batch_size": 8}),
    "predict_proba": lambda: ((models.MLP(3, hidden=(4,)), _xy()[0]), {"batch_size": 8}),
    "accuracy": lambda: ((models.MLP(3, hidden=(4,)), *_xy()), {"batch_size": 8}),
    "progress_enabled": lambda: ((False,), {}),
    "save_weights": lambda: ((models.MLP(3, hidden=(4,)), Path(tempfile.mkdtemp()) / "w.safetensors"), {}),
    "load_weights": lambda: (lambda m, p, d: ((models.MLP(3, hidden=(4,)), p), {"sha256": d}))(*_saved()),
    "load_reference": lambda: ((models.SmallCNN(), "mnist_cnn.safetensors"), {}),
}

BAD = [
    Bad("MLP", lambda: ((3,), {"hidden": 16}), "hidden", "an int where a sequence of sizes goes"),
    Bad("MLP", lambda: ((3.5,), {}), "in_features", "float size"),
    Bad("accuracy", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0], _xy()[1][:, None]), {}), "y",
        "labels of shape (N, 1)"),
    Bad("accuracy", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0], _xy()[1].float() + 0.5), {}), "y",
        "fractional float labels"),
    Bad("accuracy", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0], _xy()[1] + 5), {}), "y",
        "labels outside the model's classes"),
    Bad("predict_proba", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0]), {"batch_size": -1}), "batch_size",
        "negative batch size"),
    Bad("predict", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0].double()[:, :2]), {}), "x",
        "wrong number of features"),
    Bad("fit", lambda: ((models.MLP(3, hidden=(4,)), *_xy()), {"epochs": 1, "batch_size": 8, "lr": 0.01,
                                                               "sample_weight": torch.ones(32),
                                                               "loss_fn": torch.nn.CrossEntropyLoss(),
                                                               "progress": False}),
        "loss_fn", "mean-reduced loss with sample weights"),
    Bad("fit", lambda: ((models.MLP(3, hidden=(4,)), *_xy()), {"epochs": 2.0, "batch_size": 8, "lr": 0.01}),
        "epochs", "float epochs"),
    Bad("fit", lambda: ((models.MLP(3, hidden=(4,)), _xy()[0][:0], _xy()[1][:0]),
                        {"epochs": 1, "batch_size": 8, "lr": 0.01}), "x", "empty data"),
    Bad("fit", lambda: ((models.MLP(3, hidden=(4,)), *_xy()), {"epochs": np.int64(1), "batch_size": 8, "lr": 0.01,
                                                               "generator": 3}), "generator", "not a generator"),
    Bad("load_weights", lambda: (lambda m, p, d: ((models.MLP(3, hidden=(4,)), p), {"sha256": "0" * 64}))(*_saved()),
        "path", "wrong sha256"),
]

EXEMPT = {}

CONVENTION_EXCEPTIONS = {
    "load_weights[convention: mode]": "a loader returns the model in eval mode, ready for inference, as "
                                      "transformers' from_pretrained does",
    "load_reference[convention: mode]": "a loader returns the model in eval mode, ready for inference, as "
                                        "transformers' from_pretrained does",
}

KNOWN_FAILURES = {
    "accuracy[convention: names]",
    "predict[convention: names]",
    "predict_proba[convention: names]",
    "accuracy[convention: mode]",
    "predict[convention: mode]",
    "predict_proba[convention: mode]",
    "fit[convention: mode]",
    'MLP[an int where a sequence of sizes goes]',
    'MLP[float size]',
    'MLP[in_features=inf]',
    'MLP[in_features=nan]',
    'MLP[out_features=inf]',
    'MLP[out_features=nan]',
    'SmallCNN[hidden=-inf]',
    'SmallCNN[hidden=inf]',
    'SmallCNN[hidden=nan]',
    'SmallCNN[num_classes=-inf]',
    'SmallCNN[num_classes=inf]',
    'SmallCNN[num_classes=nan]',
    'accuracy[batch_size=-inf]',
    'accuracy[batch_size=inf]',
    'accuracy[batch_size=nan]',
    'accuracy[fractional float labels]',
    'accuracy[labels of shape (N, 1)]',
    "accuracy[labels outside the model's classes]",
    'fit[empty data]',
    'fit[mean-reduced loss with sample weights]',
    'fit[not a generator]',
    'predict[batch_size=-inf]',
    'predict[batch_size=inf]',
    'predict[batch_size=nan]',
    'predict[wrong number of features]',
    'predict_proba[batch_size=-inf]',
    'predict_proba[batch_size=inf]',
    'predict_proba[batch_size=nan]',
    'predict_proba[negative batch size]',
}
