"""trustml_lab.distributed (one process here: the 2-process runs are in tests/test_distributed.py)."""

import torch
from torch import nn

from api_tables import Bad
from trustml_lab import distributed as D
from trustml_lab.models import MLP

MODULE = D


def _model():
    torch.manual_seed(0)
    return MLP(3, hidden=(4,))


def _xy(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


def _images(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 2, 2, generator=g)
    return x, (x.flatten(1).sum(1) > 2).long()


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


_DP = dict(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, epochs=1, lr=0.1, delta=1e-5, momentum=0.0,
           progress=False)
_ADV = dict(eps=0.05, epochs=1, batch_size=8, lr=0.05, alpha=0.05, steps=2, progress=False)


def _with(base: dict, **changes) -> dict:
    return {**base, **changes}


def _dp(**changes):
    return lambda: ((_model(), *_xy()), _with(_DP, **changes))


def _adv(**changes):
    return lambda: ((_cnn(), *_images()), _with(_ADV, **changes))


VALID = {
    "default_backend": lambda: ((), {}),
    "process_group": lambda: ((), {"backend": "gloo", "timeout": 30.0}),
    "shard": lambda: ((10,), {"rank": 1, "world_size": 3}),
    "dp_fit": _dp(),
    "fit_adversarial": _adv(method="pgd"),
}

EXEMPT = {"Worker": "a result record (what process_group yields), not called"}

BAD = [
    # process_group
    Bad("process_group", lambda: ((), {"backend": "mpi"}), "backend", "a backend other than gloo and nccl"),
    Bad("process_group", lambda: ((), {"backend": 1}), "backend", "a backend that is not a name"),
    Bad("process_group", lambda: ((), {"timeout": 0.0}), "timeout", "a zero timeout"),
    Bad("process_group", lambda: ((), {"timeout": -5.0}), "timeout", "a negative timeout"),
    # shard
    Bad("shard", lambda: ((-1,), {}), "n", "a negative row count"),
    Bad("shard", lambda: ((10.0,), {}), "n", "a float row count", errors=(TypeError,)),
    Bad("shard", lambda: ((10,), {"rank": 3, "world_size": 3}), "rank", "a rank beyond the world"),
    Bad("shard", lambda: ((10,), {"rank": -1, "world_size": 3}), "rank", "a negative rank"),
    Bad("shard", lambda: ((10,), {"rank": 0, "world_size": 0}), "world_size", "an empty world"),
    Bad("shard", lambda: ((10,), {"rank": True, "world_size": 1}), "rank", "a boolean rank", errors=(TypeError,)),
    # dp_fit
    Bad("dp_fit", _dp(sample_rate=0.0), "sample_rate", "a zero sample rate"),
    Bad("dp_fit", _dp(sample_rate=1.5), "sample_rate", "a sample rate above 1"),
    Bad("dp_fit", _dp(noise_multiplier=-1.0), "noise_multiplier", "a negative noise multiplier"),
    Bad("dp_fit", _dp(max_grad_norm=0.0), "max_grad_norm", "a zero clipping norm"),
    Bad("dp_fit", _dp(delta=1.0), "delta", "delta of 1"),
    Bad("dp_fit", _dp(epochs=0), "epochs", "no epochs"),
    Bad("dp_fit", _dp(method="fast"), "method", "an unknown method"),
    Bad("dp_fit", _dp(accountant="gdp"), "accountant", "an unknown accountant"),
    Bad("dp_fit", _dp(generator=0), "generator", "a seed for a generator", errors=(TypeError,)),
    Bad("dp_fit", lambda: ((_model(), _xy()[0], _xy()[1] + 2), dict(_DP)), "y", "labels outside the model's classes"),
    Bad("dp_fit", lambda: ((_model(), _xy()[0], _xy(8)[1]), dict(_DP)), "y", "fewer labels than rows"),
    Bad("dp_fit", lambda: ((nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), *_xy()),
                           dict(_DP)), "model", "a BatchNorm, which mixes the examples of a batch"),
    # fit_adversarial
    Bad("fit_adversarial", _adv(eps=-0.1), "eps", "a negative radius"),
    Bad("fit_adversarial", _adv(batch_size=0), "batch_size", "an empty batch"),
    Bad("fit_adversarial", _adv(batch_size=2.0), "batch_size", "a float batch size", errors=(TypeError,)),
    Bad("fit_adversarial", _adv(method="cw"), "method", "an unknown attack"),
    Bad("fit_adversarial", _adv(clamp=(1.0, 0.0)), "clamp", "an empty clamp range"),
    Bad("fit_adversarial", _adv(generator="seed"), "generator", "a string for a generator", errors=(TypeError,)),
    Bad("fit_adversarial", lambda: ((_cnn(), _images()[0] + 2, _images()[1]), dict(_ADV)), "x",
        "inputs outside clamp"),
    Bad("fit_adversarial", lambda: ((_cnn(), _images()[0], _images()[1] + 5), dict(_ADV)), "y",
        "labels outside the model's classes"),
]

KNOWN_FAILURES: set[str] = set()
