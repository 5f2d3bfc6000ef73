"""trustml_lab.robustness: attacks, robust accuracy, sanity checks, adversarial training, smoothing."""

import functools

import numpy as np
import torch
from torch import nn

from api_tables import Bad
from trustml_lab import robustness as R

MODULE = R


def _model(classes=3):
    """A tiny conv-ReLU-linear model on (N, 1, 3, 3) inputs, fast enough for every case."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, classes))


def _xy(n=8, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 3, 3, generator=g), torch.randint(0, classes, (n,), generator=g)


def _mxy(n=8):
    return (_model(), *_xy(n))


def _gen():
    return torch.Generator().manual_seed(0)


def _cert():
    return R.Certificate(prediction=torch.tensor([1, 0, -1]), radius=torch.tensor([0.5, 0.2, 0.0]),
                         p_lower=torch.tensor([0.9, 0.6, 0.4]))


def _pgd_kwargs(**extra):
    return {"eps": 0.1, "alpha": 0.05, "steps": 2, "generator": _gen(), **extra}


def _attack_returning(make):
    """An attack whose output is ``make(x)``: to check that robust_accuracy validates outputs."""
    return lambda model, x, y, *, eps: make(x, eps)


def _sanity(**extra):
    return (_mxy(), {"eps": [0.0, 0.1], "alpha": 0.05, "steps": 2, "restarts": 2, "generator": _gen(), **extra})


def _smoothing(**extra):
    return ((_model(), _xy()[0]), {"sigma": 0.25, "n": 20, "alpha": 0.1, "internal_batch_size": 64,
                                   "generator": _gen(), **extra})


def _fit(**extra):
    return (_mxy(16), {"eps": 0.05, "epochs": 1, "batch_size": 8, "lr": 0.01, "steps": 2,
                       "generator": _gen(), "progress": False, **extra})


VALID = {
    "fgsm": lambda: (_mxy(), {"eps": 0.1}),
    "pgd": lambda: (_mxy(), _pgd_kwargs(restarts=2)),
    "robust_accuracy": lambda: (_mxy(), {"attack": R.fgsm, "eps": [0.0, 0.1], "norm": "linf",
                                         "internal_batch_size": 4}),
    "attack_sanity_checks": lambda: _sanity(),
    "fit_adversarial": lambda: _fit(method="pgd", alpha=0.02),
    "certify": lambda: (lambda args, kwargs: (args, {**kwargs, "n0": 5}))(*_smoothing()),
    "smoothed_predict": lambda: _smoothing(),
    "certified_accuracy": lambda: ((_cert(), torch.tensor([1, 1, 0])), {"radii": [0.0, 0.3]}),
    "clopper_pearson_lower": lambda: ((torch.tensor([0, 5, 10]), 10), {"alpha": 0.05}),
}

EXEMPT = {
    "AccuracyCurve": "a result record (robust_accuracy's return value)",
    "Certificate": "a result record (certify's return value)",
    "SanityCheck": "a result record (one line of attack_sanity_checks' report)",
    "SanityReport": "a result record (attack_sanity_checks' return value)",
}

_X, _Y = _xy()

BAD = [
    # --- inputs of every attack (the shared edge: _inputs)
    Bad("fgsm", lambda: (("model", _X, _Y), {"eps": 0.1}), "model", "not a model"),
    Bad("fgsm", lambda: ((_model(), _X + 2, _Y), {"eps": 0.1}), "x", "x outside the clamp range"),
    Bad("fgsm", lambda: ((_model(), (_X * 255).long(), _Y), {"eps": 0.1}), "x", "integer images"),
    Bad("fgsm", lambda: ((_model(), _X[:0], _Y[:0]), {"eps": 0.1}), "x", "empty batch"),
    Bad("fgsm", lambda: ((_model(), _X[0, 0], _Y[:3]), {"eps": 0.1}), "x", "no batch dimension"),
    Bad("fgsm", lambda: ((_model(), torch.rand(8, 1, 4, 4), _Y), {"eps": 0.1}), "x",
        "images of a shape the model cannot take"),
    Bad("fgsm", lambda: ((_model(), _X, _Y + 3), {"eps": 0.1}), "y", "labels outside the model's classes"),
    Bad("fgsm", lambda: ((_model(), _X, _Y[:, None]), {"eps": 0.1}), "y", "labels of shape (N, 1)"),
    Bad("fgsm", lambda: ((_model(), _X, _Y.double() + 0.5), {"eps": 0.1}), "y", "fractional labels"),
    Bad("fgsm", lambda: ((_model(), _X, _Y[:5]), {"eps": 0.1}), "y", "fewer labels than images"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": -0.1}), "eps", "negative eps"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": "0.1"}), "eps", "eps as a string"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": 0.1, "targeted": "yes"}), "targeted", "targeted as a string"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": 0.1, "clamp": (1.0, 0.0)}), "clamp", "clamp low > high"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": 0.1, "clamp": (0.0, float("nan"))}), "clamp", "NaN clamp bound"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": 0.1, "clamp": 1.0}), "clamp", "clamp a number"),
    Bad("fgsm", lambda: ((_model(), _X, _Y), {"eps": 0.1, "clamp": (0.0,)}), "clamp", "clamp of one bound"),
    # --- pgd's knobs
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(norm="l1")), "norm", "unknown norm"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(steps=2.0)), "steps", "float steps"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(steps=0)), "steps", "zero steps"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(restarts=0)), "restarts", "zero restarts"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(alpha=0.0)), "alpha", "zero step size"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(generator=3)), "generator", "not a generator"),
    Bad("pgd", lambda: ((_model(), _X, _Y), _pgd_kwargs(random_start=None)), "random_start",
        "random_start None"),
    Bad("pgd", lambda: ((_model(), _X, _Y + 3), _pgd_kwargs(targeted=True)), "y",
        "target labels outside the model's classes"),
    # --- robust_accuracy: radii, labels, and the attack's output
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": 0.1}), "eps",
        "a scalar where a list of radii goes", match="list of radii"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": []}), "eps", "no radius"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": [0.1, float("nan")]}), "eps", "NaN radius"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": [-0.1]}), "eps", "negative radius"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": "0.1"}), "eps", "radii as a string"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": "pgd", "eps": [0.1]}), "attack", "attack not callable"),
    Bad("robust_accuracy", lambda: ((_model(), _X, _Y + 3), {"attack": R.fgsm, "eps": [0.1]}), "y",
        "labels outside the model's classes"),
    Bad("robust_accuracy", lambda: ((_model(), _X[:0], _Y[:0]), {"attack": R.fgsm, "eps": [0.1]}), "x",
        "empty batch"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": [0.1], "internal_batch_size": 0}),
        "internal_batch_size", "zero internal batch size"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": R.fgsm, "eps": [0.1], "norm": "l3"}), "norm",
        "unknown norm"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: x[:, :, :2]), "eps": [0.1]}),
        "attack", "an attack returning the wrong shape", match="shape"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: x.double()), "eps": [0.1]}),
        "attack", "an attack returning another dtype", match="dtype|float64"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: x * float("nan")),
                                             "eps": [0.1]}), "attack", "an attack returning NaN", match="NaN"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: x + 2), "eps": [0.1]}),
        "attack", "an attack leaving the clamp range", match="clamp"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: x.numpy()), "eps": [0.1]}),
        "attack", "an attack returning an array, not a tensor"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": _attack_returning(lambda x, e: (x + 2 * e).clamp(0, 1)),
                                             "eps": [0.1], "norm": "linf"}),
        "attack", "an attack over its budget (norm given)", match="eps=0.1"),
    Bad("robust_accuracy", lambda: (_mxy(), {"attack": functools.partial(R.pgd, alpha=0.05, steps=3,
                                                                         generator=_gen()),
                                             "eps": [0.1], "norm": "l2"}),
        "attack", "an L-inf attack checked against the L2 ball"),
    # --- attack_sanity_checks
    Bad("attack_sanity_checks", lambda: (lambda a, k: (a, {**k, "eps": [0.0]}))(*_sanity()), "eps",
        "no positive radius"),
    Bad("attack_sanity_checks", lambda: (lambda a, k: (a, {**k, "eps": 0.1}))(*_sanity()), "eps",
        "a scalar where a list of radii goes"),
    Bad("attack_sanity_checks", lambda: _sanity(tolerance=1.5), "tolerance", "tolerance above 1"),
    Bad("attack_sanity_checks", lambda: _sanity(large_eps=0.0), "large_eps", "zero large_eps"),
    Bad("attack_sanity_checks", lambda: _sanity(attack="pgd"), "attack", "attack not callable"),
    Bad("attack_sanity_checks", lambda: _sanity(attack=lambda model, x, y, **kw: x[:1]), "attack",
        "an attack returning the wrong shape"),
    Bad("attack_sanity_checks", lambda: ((_model(), _X, _Y + 3), _sanity()[1]), "y",
        "labels outside the model's classes"),
    # --- fit_adversarial
    Bad("fit_adversarial", lambda: _fit(method="free"), "method", "unknown method"),
    Bad("fit_adversarial", lambda: _fit(epochs=0), "epochs", "zero epochs"),
    Bad("fit_adversarial", lambda: _fit(epochs=1.5), "epochs", "float epochs"),
    Bad("fit_adversarial", lambda: _fit(batch_size=np.float64(8)), "batch_size", "float batch size"),
    Bad("fit_adversarial", lambda: _fit(method="pgd", alpha=0.0), "alpha", "zero PGD step size"),
    Bad("fit_adversarial", lambda: ((_model(), _xy(16)[0], _xy(16)[1] + 3), _fit()[1]), "y",
        "labels outside the model's classes"),
    Bad("fit_adversarial", lambda: ((_model(), _xy(16)[0] - 1, _xy(16)[1]), _fit()[1]), "x",
        "x outside the clamp range"),
    # --- randomized smoothing
    Bad("certify", lambda: (lambda a, k: ((a[0], a[1] * float("inf")), {**k, "n0": 5}))(*_smoothing()), "x",
        "infinite images"),
    Bad("certify", lambda: (lambda a, k: ((a[0], a[1][:0]), {**k, "n0": 5}))(*_smoothing()), "x", "empty batch"),
    Bad("certify", lambda: (lambda a, k: ((a[0], (a[1] * 255).long()), {**k, "n0": 5}))(*_smoothing()), "x",
        "integer images"),
    Bad("certify", lambda: (lambda a, k: ((a[0], torch.rand(8, 1, 4, 4)), {**k, "n0": 5}))(*_smoothing()), "x",
        "images of a shape the model cannot take"),
    Bad("certify", lambda: (lambda a, k: (a, {**k, "n0": 0}))(*_smoothing()), "n0", "zero n0"),
    Bad("certify", lambda: (lambda a, k: (a, {**k, "n0": 5, "sigma": 0.0}))(*_smoothing()), "sigma", "zero sigma"),
    Bad("certify", lambda: (lambda a, k: (a, {**k, "n0": 5, "alpha": 1.5}))(*_smoothing()), "alpha", "alpha above 1"),
    Bad("certify", lambda: (lambda a, k: (a, {**k, "n0": 5, "n": 2.5}))(*_smoothing()), "n", "fractional n"),
    Bad("certify", lambda: (lambda a, k: (a, {**k, "n0": 5, "n": 10**9, "internal_batch_size": 10**9}))(
        *_smoothing()), "internal_batch_size", "a chunk too large to allocate"),
    Bad("smoothed_predict", lambda: _smoothing(n=0), "n", "zero n"),
    Bad("smoothed_predict", lambda: _smoothing(internal_batch_size=0), "internal_batch_size",
        "zero internal batch size"),
    Bad("smoothed_predict", lambda: _smoothing(generator="seed"), "generator", "not a generator"),
    Bad("certified_accuracy", lambda: ((_cert(), torch.tensor([1, 1, 0])), {"radii": 0.5}), "radii",
        "a scalar where a list of radii goes", match="list of radii"),
    Bad("certified_accuracy", lambda: ((_cert(), torch.tensor([1, 1, 0])), {"radii": [float("nan")]}), "radii",
        "NaN radius"),
    Bad("certified_accuracy", lambda: ((_cert(), torch.tensor([1, 1, 0])), {"radii": [-1.0]}), "radii",
        "negative radius"),
    Bad("certified_accuracy", lambda: (("cert", torch.tensor([1, 1, 0])), {"radii": [0.0]}), "certificate",
        "not a Certificate"),
    Bad("certified_accuracy", lambda: ((_cert(), torch.tensor([1, 1])), {"radii": [0.0]}), "y",
        "fewer labels than examples"),
    Bad("certified_accuracy", lambda: ((_cert(), torch.tensor([[1], [1], [0]])), {"radii": [0.0]}), "y",
        "labels of shape (N, 1)"),
    Bad("certified_accuracy", lambda: ((R.Certificate(torch.tensor([1, 0, -1]), torch.tensor([0.5, float("nan"), 0]),
                                                      torch.zeros(3)), torch.tensor([1, 1, 0])), {"radii": [0.0]}),
        "certificate", "a NaN radius in the certificate"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([float("nan"), 5.0]), 10), {"alpha": 0.05}), "successes",
        "NaN count"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([2.5]), 10), {"alpha": 0.05}), "successes",
        "fractional count"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([11]), 10), {"alpha": 0.05}), "successes",
        "more successes than trials"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([-1]), 10), {"alpha": 0.05}), "successes",
        "negative count"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([True, False]), 10), {"alpha": 0.05}), "successes",
        "booleans for counts"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([5]), 10.0), {"alpha": 0.05}), "trials", "float trials"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([0]), 0), {"alpha": 0.05}), "trials", "zero trials"),
    Bad("clopper_pearson_lower", lambda: ((torch.tensor([5]), 10), {"alpha": 0.0}), "alpha", "alpha 0"),
]

CONVENTION_EXCEPTIONS = {}

KNOWN_FAILURES = set()
