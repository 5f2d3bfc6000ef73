"""trustml_lab.interpret."""

import numpy as np
import torch
from torch import nn

from api_tables import Bad
from trustml_lab import interpret

MODULE = interpret


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _mlp(features=4, outputs=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 6), nn.Dropout(0.2), nn.Tanh(), nn.Linear(6, outputs))


def _x(n=3, features=4):
    return torch.randn(n, features, generator=_generator(1))


def _f(z):
    return torch.tanh(z[:, 0] - z[:, 1]) * z[:, 2] + z[:, 3]


def _background(rows=5, features=4):
    return torch.randn(rows, features, generator=_generator(2))


def _tabular(**kwargs):
    return (_f, _x().double(), _background().double()), kwargs


def _model(**kwargs):
    return (_mlp(), _x()), kwargs


class _NoParameters(nn.Module):
    def forward(self, x):
        return torch.stack([x.sum(1), -x.sum(1)], dim=1)


VALID = {
    "saliency": lambda: _model(target=0),
    "integrated_gradients": lambda: _model(target=torch.tensor([0, 2, 1]), baseline=torch.zeros(4), steps=8,
                                           internal_batch_size=16, return_delta=True),
    "smoothgrad": lambda: _model(target=1, n_samples=4, stdev=0.1, internal_batch_size=5, generator=_generator()),
    "occlusion": lambda: _model(target=2, window=2, stride=1, baseline=0.0, internal_batch_size=8),
    "shapley_values": lambda: _tabular(groups=[[0, 1], [2], [3]], internal_batch_size=64),
    "kernel_shap": lambda: _tabular(n_samples=8, internal_batch_size=64, generator=_generator()),
    "rank_correlation": lambda: ((_x(), _x(3).flip(1)), {}),
    "model_randomization_check": lambda: ((_mlp(), interpret.saliency, _x()), {"target": 0,
                                                                               "generator": _generator()}),
    "counterfactual": lambda: ((_mlp(), _x()), {"target": 1, "immutable": [0], "lower": -3 * torch.ones(4),
                                                "upper": 3 * torch.ones(4), "scale": torch.ones(4), "margin": 0.0,
                                                "step_size": 0.05, "steps": 20}),
    "local_surrogate": lambda: ((_f, _x()), {"n_samples": 50, "stdev": torch.full((4,), 0.5), "kernel_width": 1.5,
                                             "generator": _generator()}),
}

EXEMPT = {
    "Counterfactuals": "a result record (frozen dataclass)",
    "LocalSurrogate": "a result record (frozen dataclass)",
    "RandomizationCheck": "a result record (frozen dataclass)",
    "ShapleyValues": "a result record (frozen dataclass)",
}

BAD = [
    # target: outside the model's outputs, the wrong length or kind
    Bad("saliency", lambda: _model(target=3), "target", "target beyond the model's outputs", (ValueError,),
        match=r"\[0, 2\]"),
    Bad("integrated_gradients", lambda: _model(target=torch.tensor([0, -1, 0])), "target", "negative target",
        (ValueError,)),
    Bad("smoothgrad", lambda: _model(target=torch.tensor([0, 1]), n_samples=2), "target",
        "one target per example, wrong length", (ValueError,)),
    Bad("saliency", lambda: _model(target=torch.tensor([0.0, 1.0, 1.0])), "target", "float targets", (TypeError,)),
    Bad("occlusion", lambda: _model(target=7, window=1, stride=1), "target", "occlusion target out of range",
        (ValueError,)),
    Bad("counterfactual", lambda: _model(target=5), "target", "counterfactual target out of range", (ValueError,)),
    Bad("model_randomization_check", lambda: ((_mlp(), interpret.saliency, _x()), {"target": 3}), "target",
        "randomization target out of range", (ValueError,)),
    # inputs: empty, wrong shape, wrong kind
    Bad("saliency", lambda: ((_mlp(), torch.zeros(0, 4)), {"target": 0}), "x", "empty batch", (ValueError,)),
    Bad("saliency", lambda: ((_mlp(), torch.randn(4)), {"target": 0}), "x", "one example without a batch axis",
        (ValueError,)),
    Bad("integrated_gradients", lambda: ((_mlp(), torch.ones(3, 4, dtype=torch.long)), {"target": 0}), "x",
        "integer inputs", (TypeError,)),
    Bad("saliency", lambda: (("not a model", _x()), {"target": 0}), "model", "not a model", (TypeError,)),
    Bad("integrated_gradients", lambda: _model(target=0, baseline=torch.zeros(3)), "baseline",
        "baseline of the wrong shape", (ValueError,)),
    Bad("integrated_gradients", lambda: _model(target=0, baseline=float("nan")), "baseline", "NaN baseline",
        (ValueError,)),
    # steps, chunks, sample counts
    Bad("integrated_gradients", lambda: _model(target=0, steps=0), "steps", "zero steps", (ValueError,)),
    Bad("integrated_gradients", lambda: _model(target=0, steps=1, method="riemann_left"), "steps",
        "one step of a Riemann rule", (ValueError,)),
    Bad("integrated_gradients", lambda: _model(target=0, steps=10 ** 6), "steps",
        "a million steps (the quadrature grew as steps cubed and hung)", (ValueError,)),
    Bad("integrated_gradients", lambda: _model(target=0, steps=12.0), "steps", "float steps", (TypeError,)),
    Bad("integrated_gradients", lambda: _model(target=0, method="simpson"), "method", "unknown rule", (ValueError,)),
    Bad("integrated_gradients", lambda: _model(target=0, internal_batch_size=0), "internal_batch_size",
        "zero internal batch", (ValueError,)),
    Bad("smoothgrad", lambda: _model(target=0, n_samples=0), "n_samples", "zero samples", (ValueError,)),
    Bad("smoothgrad", lambda: _model(target=0, n_samples=10 ** 9), "n_samples",
        "more noise than memory holds", (ValueError,)),
    Bad("smoothgrad", lambda: _model(target=0, stdev=-1.0), "stdev", "negative stdev", (ValueError,)),
    Bad("smoothgrad", lambda: _model(target=0, n_samples=np.float64(4)), "n_samples", "NumPy float samples",
        (TypeError,)),
    Bad("smoothgrad", lambda: _model(target=0, generator=3), "generator", "not a generator", (TypeError,)),
    # occlusion windows
    Bad("occlusion", lambda: _model(target=0, window=(5,), stride=(1,)), "window", "window larger than the input",
        (ValueError,)),
    Bad("occlusion", lambda: _model(target=0, window=(1, 1), stride=(1,)), "window", "window of the wrong rank",
        (ValueError,)),
    Bad("occlusion", lambda: _model(target=0, window=(2,), stride=(3,)), "stride", "stride past the window",
        (ValueError,)),
    Bad("occlusion", lambda: _model(target=0, window=2.5, stride=1), "window", "float window", (TypeError,)),
    Bad("occlusion", lambda: ((_mlp(50000, 2), torch.zeros(1, 50000)), {"target": 0, "window": 1, "stride": 1}),
        "window", "masks of 50,000 windows x 50,000 elements", (ValueError,)),
    # Shapley values
    Bad("shapley_values", lambda: ((lambda z: z.sum(1), torch.zeros(1, 17), torch.zeros(2, 17)), {}), "x",
        "17 features to enumerate", (ValueError,)),
    Bad("shapley_values", lambda: _tabular(groups=[[0, 1], [2]]), "groups", "groups missing a column", (ValueError,)),
    Bad("shapley_values", lambda: _tabular(groups=[[0, 1.5], [2, 3]]), "groups", "a float column index",
        (TypeError,)),
    Bad("shapley_values", lambda: ((_f, _x().double(), torch.zeros(3, 5)), {}), "background",
        "background of the wrong width", (ValueError,)),
    Bad("shapley_values", lambda: ((_f, _x().double(), torch.zeros(0, 4)), {}), "background", "empty background",
        (ValueError,)),
    Bad("shapley_values", lambda: (("model", _x(), _background()), {}), "f", "f not callable", (TypeError,)),
    Bad("shapley_values", lambda: ((lambda z: z[:1, 0], _x(), _background()), {}), "f",
        "f returning one score for many rows", (ValueError,)),
    Bad("kernel_shap", lambda: _tabular(n_samples=1), "n_samples", "one coalition", (ValueError,)),
    Bad("kernel_shap", lambda: _tabular(n_samples=2.0 ** 10), "n_samples", "float sample count", (TypeError,)),
    Bad("kernel_shap", lambda: _tabular(generator=np.random.default_rng(0)), "generator", "a NumPy generator",
        (TypeError,)),
    Bad("kernel_shap", lambda: ((lambda z: z.sum(1) / 0.0, _x(), _background()), {"n_samples": 8}), "f",
        "f returning infinity", (ValueError,)),
    Bad("kernel_shap", lambda: ((_f, torch.zeros(2, 40)), {"background": torch.zeros(3, 40),
                                                            "n_samples": 10 ** 9}), "n_samples",
        "a budget of a billion coalitions", (ValueError,)),
    # sanity check
    Bad("rank_correlation", lambda: ((torch.zeros(2, 3), torch.zeros(2, 4)), {}), "b", "shapes differ",
        (ValueError,)),
    Bad("rank_correlation", lambda: ((torch.arange(4.0), torch.arange(4.0)), {}), "a", "a vector, not rows",
        (ValueError,)),
    Bad("model_randomization_check", lambda: ((_mlp(), None, _x()), {"target": 0}), "explain", "no explainer",
        (TypeError,)),
    Bad("model_randomization_check", lambda: ((_NoParameters(), interpret.saliency, _x()), {"target": 0}),
        "model", "nothing to randomize", (ValueError,)),
    Bad("model_randomization_check", lambda: ((_mlp(), lambda m, x, t: x[:, :2], _x()), {"target": 0}),
        "explain", "an explainer of the wrong shape", (ValueError,)),
    Bad("model_randomization_check", lambda: ((lambda z: z, interpret.saliency, _x()), {"target": 0}),
        "model", "a function, which has no layers to randomize", (TypeError,)),
    # counterfactuals
    Bad("counterfactual", lambda: _model(target=1, immutable=[4]), "immutable", "column out of range",
        (ValueError,)),
    Bad("counterfactual", lambda: _model(target=1, immutable=["age"]), "immutable", "a column name", (TypeError,)),
    Bad("counterfactual", lambda: _model(target=1, scale=torch.zeros(4)), "scale", "zero scale", (ValueError,)),
    Bad("counterfactual", lambda: _model(target=1, lower=1.0, upper=0.0), "lower", "lower above upper",
        (ValueError,)),
    Bad("counterfactual", lambda: _model(target=1, upper=torch.ones(3)), "upper", "bounds of the wrong length",
        (ValueError,)),
    Bad("counterfactual", lambda: ((_mlp(), torch.zeros(2, 2, 2)), {"target": 1}), "x", "not a table",
        (ValueError,)),
    # local surrogate
    Bad("local_surrogate", lambda: ((_f, _x()), {"n_samples": 3}), "n_samples", "fewer samples than features",
        (ValueError,)),
    Bad("local_surrogate", lambda: ((_f, _x()), {"stdev": -1.0}), "stdev", "negative stdev", (ValueError,)),
    Bad("local_surrogate", lambda: ((_f, _x()), {"kernel_width": 1e-12}), "kernel_width",
        "a kernel so narrow that every weight underflows", (ValueError,)),
    Bad("local_surrogate", lambda: ((lambda z: z, _x()), {}), "f", "f returning rows, not scores", (ValueError,)),
    Bad("local_surrogate", lambda: ((_f, torch.zeros(0, 4)), {}), "x", "empty table", (ValueError,)),
]

CONVENTION_EXCEPTIONS = {}

KNOWN_FAILURES = set()
