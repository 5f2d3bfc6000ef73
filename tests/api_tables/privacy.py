"""trustml_lab.privacy."""

import numpy as np
import torch
from torch import nn

from api_tables import Bad
from trustml_lab import privacy as P
from trustml_lab.models import MLP

MODULE = P


def _model():
    torch.manual_seed(0)
    return MLP(3, hidden=(4,))


def _xy(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


def _batchnorm_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()


def _scores():
    g = torch.Generator().manual_seed(0)
    return torch.randn(20, generator=g) + 1, torch.randn(20, generator=g)


def _grads():
    return {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]]), "b": torch.tensor([[1.0], [0.0]])}


_DP = dict(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, epochs=1, lr=0.1, delta=1e-5, momentum=0.0,
           progress=False)
_STEP = dict(max_grad_norm=1.0, noise_multiplier=1.0)
_BUDGET = dict(epsilon=3.0, delta=1e-5, sample_rate=0.05, steps=100)


def _with(base: dict, **changes) -> dict:
    return {**base, **changes}


def _ids_model(**options):
    """Token ids -> logits: an Embedding (11 tokens), a LayerNorm and a Linear head."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(11, 4, **options), nn.LayerNorm(4), nn.Flatten(), nn.Linear(20, 2))


def _ids(high=11, low=0, n=8):
    ids = torch.randint(0, 11, (n, 5), generator=torch.Generator().manual_seed(0))
    ids[0, 0], ids[1, 0] = low, high - 1
    return ids, torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(1))


class _SharedPositions(nn.Module):
    """Position embeddings looked up once, (1, L), and broadcast over the batch (Opacus issue #841)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.tokens, self.positions, self.head = nn.Embedding(11, 4), nn.Embedding(5, 4), nn.Linear(4, 2)

    def forward(self, ids):
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[1])[None])
        return self.head(h.mean(dim=1))


def _bad_labels():
    x, y = _xy()
    return x, y + 2  # the MLP has two classes


VALID = {
    "laplace_mechanism": lambda: ((torch.zeros(3),), {"sensitivity": 1.0, "epsilon": 0.5}),
    "gaussian_sigma": lambda: ((), {"sensitivity": 1.0, "epsilon": 0.5, "delta": 1e-5}),
    "gaussian_mechanism": lambda: ((torch.zeros(3),), {"sensitivity": 1.0, "epsilon": 0.5, "delta": 1e-5}),
    "per_sample_gradients": lambda: ((_model(), *_xy()), {}),
    "clip_and_sum": lambda: ((_grads(),), {"max_grad_norm": 1.0}),
    "private_gradient": lambda: ((_model(), *_xy()), _with(_STEP, method="ghost")),
    "epsilon_spent": lambda: ((), {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 100, "delta": 1e-5}),
    "noise_multiplier_for_epsilon": lambda: ((), {"epsilon": 3.0, "delta": 1e-5, "sample_rate": 0.05, "steps": 100,
                                                  "tolerance": 0.1}),
    "dp_fit": lambda: ((_model(), *_xy()), dict(_DP)),
    "membership_scores": lambda: ((_model(), *_xy()), {"internal_batch_size": 8}),
    "membership_inference": lambda: ((_model(), _xy(), _xy(8)), {"internal_batch_size": 8}),
    "attack_metrics": lambda: (_scores(), {}),
    "clopper_pearson_upper": lambda: ((torch.tensor([0, 5]), 10), {"confidence": 0.95}),
    "audit_epsilon": lambda: (_scores(), {"delta": 1e-5, "confidence": 0.95}),
    "audit_epsilon_at": lambda: (_scores(), {"threshold": 0.5, "delta": 1e-5, "confidence": 0.95}),
}

BAD = [
    # mechanisms
    Bad("laplace_mechanism", lambda: ((torch.zeros(3),), {"sensitivity": 1e300, "epsilon": 1e-300}), "sensitivity",
        "a noise scale that overflows to inf"),
    Bad("laplace_mechanism", lambda: ((None,), {"sensitivity": 1.0, "epsilon": 1.0}), "value", "no data"),
    Bad("laplace_mechanism", lambda: ((torch.tensor([True, False]),), {"sensitivity": 1.0, "epsilon": 1.0}),
        "value", "boolean data"),
    Bad("laplace_mechanism", lambda: ((torch.zeros(3),), {"sensitivity": 1.0, "epsilon": 1.0, "generator": 0}),
        "generator", "a seed where a generator goes"),
    Bad("gaussian_sigma", lambda: ((), {"sensitivity": 1.0, "epsilon": 1.5, "delta": 1e-5, "calibration": "classic"}),
        "epsilon", "the classic bound outside epsilon < 1"),
    Bad("gaussian_sigma", lambda: ((), {"sensitivity": 1.0, "epsilon": 0.5, "delta": 1e-5, "calibration": "exact"}),
        "calibration", "an unknown calibration"),
    Bad("gaussian_mechanism", lambda: ((torch.zeros(3),), {"sensitivity": 1.0, "epsilon": 0.5, "delta": 1.0}),
        "delta", "delta = 1"),
    # gradients
    Bad("per_sample_gradients", lambda: ((_batchnorm_model(), *_xy()), {}), "model", "train-mode BatchNorm",
        match="GroupNorm or LayerNorm"),
    Bad("per_sample_gradients", lambda: ((_model(), *_bad_labels()), {}), "y", "labels outside the model's classes"),
    Bad("per_sample_gradients", lambda: ((_model(), _xy()[0], _xy()[1][:, None]), {}), "y", "labels of shape (N, 1)"),
    Bad("per_sample_gradients", lambda: ((_model(), _xy()[0][:0], _xy()[1][:0]), {}), "x", "an empty batch"),
    Bad("per_sample_gradients", lambda: ((_model(), _xy()[0].long(), _xy()[1]), {}), "x", "integer inputs"),
    Bad("per_sample_gradients", lambda: ((_model(), _xy()[0][:, :2], _xy()[1]), {}), "x", "wrong number of features"),
    Bad("per_sample_gradients", lambda: ((_model(), *_xy()), {"loss_fn": "cross_entropy"}), "loss_fn",
        "a string where a loss function goes"),
    Bad("per_sample_gradients", lambda: (("model", *_xy()), {}), "model", "not a model"),
    Bad("clip_and_sum", lambda: (({"w": torch.tensor([[1.0, float("nan")]])},), {"max_grad_norm": 1.0}),
        "per_sample_grads", "a NaN gradient"),
    Bad("clip_and_sum", lambda: (({"w": torch.ones(2, 3, dtype=torch.long)},), {"max_grad_norm": 1.0}),
        "per_sample_grads", "integer gradients"),
    Bad("clip_and_sum", lambda: (({"w": torch.tensor(1.0)},), {"max_grad_norm": 1.0}), "per_sample_grads",
        "a gradient without a batch dimension"),
    Bad("clip_and_sum", lambda: (({"w": torch.ones(2, 3), "b": torch.ones(3)},), {"max_grad_norm": 1.0}),
        "per_sample_grads", "batches of different sizes"),
    Bad("clip_and_sum", lambda: (({},), {"max_grad_norm": 1.0}), "per_sample_grads", "no gradients"),
    Bad("private_gradient", lambda: ((_model(), *_bad_labels()), _with(_STEP, method="ghost")), "y",
        "labels outside the model's classes (ghost)"),
    Bad("private_gradient", lambda: ((_batchnorm_model(), *_xy()), _with(_STEP, method="ghost")), "model",
        "train-mode BatchNorm (ghost)"),
    Bad("private_gradient", lambda: ((nn.Sequential(nn.Linear(3, 2), nn.GroupNorm(1, 2)), *_xy()),
                                     _with(_STEP, method="ghost")), "model", "a layer ghost clipping does not handle"),
    Bad("private_gradient", lambda: ((_model(), *_xy()), _with(_STEP, method="fast")), "method", "an unknown method"),
    Bad("private_gradient", lambda: ((_ids_model(), *_ids(high=12)), _with(_STEP, method="ghost")), "x",
        "token ids outside the embedding's vocabulary", match="0..10"),
    Bad("private_gradient", lambda: ((_ids_model(), *_ids(low=-1)), _STEP), "x", "negative token ids"),
    Bad("private_gradient", lambda: ((_ids_model(), _ids()[0][:, 0], _ids()[1]), _STEP), "x",
        "token ids without a sequence dimension"),
    Bad("private_gradient", lambda: ((_model(), _xy()[0].long(), _xy()[1]), _STEP), "x",
        "integer inputs to a model without an Embedding", match="floating-point"),
    Bad("private_gradient", lambda: ((_ids_model(scale_grad_by_freq=True), *_ids()), _with(_STEP, method="ghost")),
        "model", "an Embedding with scale_grad_by_freq (mixes examples)", match="scale_grad_by_freq"),
    Bad("private_gradient", lambda: ((_ids_model(max_norm=1.0), *_ids()), _with(_STEP, method="ghost")),
        "model", "an Embedding with max_norm (renormalizes in place)", match="max_norm"),
    Bad("private_gradient", lambda: ((_SharedPositions(), *_ids(high=5)), _with(_STEP, method="ghost")), "model",
        "position ids without a batch dimension (Opacus issue #841)", match="#841"),
    Bad("dp_fit", lambda: ((_ids_model(scale_grad_by_freq=True), *_ids()), _with(_DP, method="ghost")), "model",
        "an Embedding with scale_grad_by_freq (ghost), before the first step", match="scale_grad_by_freq"),
    Bad("membership_scores", lambda: ((_ids_model(), *_ids(high=12)), {}), "x",
        "token ids outside the embedding's vocabulary"),
    Bad("private_gradient", lambda: ((_model(), *_xy()), _with(_STEP, generator=1)), "generator", "not a generator"),
    Bad("private_gradient", lambda: ((_model(), _xy()[0].double()[:, :2], _xy()[1]), _with(_STEP, method="ghost")),
        "x", "wrong number of features (ghost)"),
    # accounting
    Bad("epsilon_spent", lambda: ((), {"noise_multiplier": 1e10, "sample_rate": 0.01, "steps": 100, "delta": 1e-5}),
        "noise_multiplier", "a noise multiplier that makes the accountant take seconds"),
    Bad("epsilon_spent", lambda: ((), {"noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 10_000, "delta": 1e-5,
                                      "accountant": "prv"}), "steps", "a PRV grid of gigabytes"),
    Bad("epsilon_spent", lambda: ((), {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10.0, "delta": 1e-5}),
        "steps", "float steps"),
    Bad("epsilon_spent", lambda: ((), {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 100, "delta": 1e-5,
                                      "accountant": "gdp"}), "accountant", "an accountant Opacus lacks"),
    Bad("epsilon_spent", lambda: ((), {"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 100, "delta": 1e-5}),
        "sample_rate", "a sample rate above 1"),
    Bad("noise_multiplier_for_epsilon", lambda: ((), _with(_BUDGET, tolerance=1e-12)), "tolerance",
        "a tolerance below float resolution"),
    Bad("noise_multiplier_for_epsilon", lambda: ((), _with(_BUDGET, tolerance=3.0)), "tolerance",
        "a tolerance as large as epsilon"),
    Bad("noise_multiplier_for_epsilon", lambda: ((), {"epsilon": 1e-3, "delta": 1e-5, "sample_rate": 0.5,
                                                     "steps": 10_000}), "epsilon", "a budget out of reach"),
    # training
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, accountant="gdp")), "accountant",
        "an accountant Opacus lacks, refused before training"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, sample_rate=1e-9)), "sample_rate",
        "a sample rate that plans a billion steps"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, epochs=10**7)), "epochs", "ten million epochs"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, epochs=np.float64(2))), "epochs", "float epochs"),
    Bad("dp_fit", lambda: ((_batchnorm_model().eval(), *_xy()), dict(_DP)), "model",
        "BatchNorm (trained in train mode)"),
    Bad("dp_fit", lambda: ((_model(), *_bad_labels()), dict(_DP)), "y", "labels outside the model's classes"),
    Bad("dp_fit", lambda: ((_model(), _xy()[0], _xy()[1][:10]), dict(_DP)), "y", "fewer labels than examples"),
    Bad("dp_fit", lambda: ((_model(), _xy()[0][:0], _xy()[1][:0]), dict(_DP)), "x", "empty data"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, generator=3)), "generator", "not a generator"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, loss_fn="mse")), "loss_fn", "a string as the loss"),
    Bad("dp_fit", lambda: ((_model(), *_xy()), _with(_DP, method="ghost", momentum=1.5, lr=np.inf)), "lr",
        "an infinite learning rate"),
    # membership inference
    Bad("membership_scores", lambda: ((_model(), *_xy()), {"internal_batch_size": 0}), "internal_batch_size",
        "a zero chunk size"),
    Bad("membership_scores", lambda: ((_model(), *_xy()), {"internal_batch_size": -1}), "internal_batch_size",
        "a negative chunk size"),
    Bad("membership_scores", lambda: ((_model(), *_bad_labels()), {}), "y", "labels outside the model's classes"),
    Bad("membership_scores", lambda: ((_model(), _xy()[0][:0], _xy()[1][:0]), {}), "x", "an empty batch"),
    Bad("membership_inference", lambda: ((_model(), _xy()[0], _xy()), {}), "members", "not a pair (x, y)"),
    Bad("membership_inference", lambda: ((_model(), _xy(), _bad_labels()), {}), "non_members",
        "non-members' labels outside the classes"),
    Bad("attack_metrics", lambda: ((torch.zeros(3), torch.zeros(0)), {}), "non_member_scores", "no scores"),
    Bad("attack_metrics", lambda: ((torch.zeros(3, 2), torch.zeros(3)), {}), "member_scores", "2-d scores"),
    Bad("attack_metrics", lambda: ((torch.zeros(1), torch.zeros(3)), {"held_out": True}), "member_scores",
        "one score: nothing to hold out"),
    Bad("attack_metrics", lambda: (_scores(), {"held_out": "yes"}), "held_out", "a string flag"),
    # audits
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([11]), 10), {}), "successes", "more successes than trials"),
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([2.5]), 10), {}), "successes", "fractional successes"),
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([float("nan")]), 10), {}), "successes", "NaN successes"),
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([0]), 0), {}), "trials", "zero trials"),
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([0]), 10.5), {}), "trials", "fractional trials"),
    Bad("clopper_pearson_upper", lambda: ((torch.tensor([0]), 10), {"confidence": 1.0}), "confidence",
        "confidence 1"),
    Bad("audit_epsilon", lambda: (_scores(), {"delta": 0.0}), "delta", "delta = 0"),
    Bad("audit_epsilon", lambda: (_scores(), {"delta": 1e-5, "confidence": 0.0}), "confidence", "confidence 0"),
    Bad("audit_epsilon", lambda: (_scores(), {"delta": 1e-5, "method": "max"}), "method", "an unknown method"),
    Bad("audit_epsilon", lambda: ((torch.zeros(1), torch.zeros(5)), {"delta": 1e-5, "method": "split"}), "scores_in",
        "one score: nothing to split"),
    Bad("audit_epsilon", lambda: ((torch.zeros(3), torch.zeros(0)), {"delta": 1e-5}), "scores_out", "no scores"),
    Bad("audit_epsilon", lambda: (_scores(), {"delta": 1e-5, "method": "split", "generator": 1}), "generator",
        "not a generator"),
    Bad("audit_epsilon_at", lambda: (_scores(), {"threshold": "0.5", "delta": 1e-5}), "threshold",
        "a string threshold"),
]

EXEMPT = {
    "AuditResult": "a frozen record, built by audit_epsilon",
    "ClippedSum": "a frozen record, built by clip_and_sum",
    "DPTrainingResult": "a frozen record, built by dp_fit",
    "MembershipResult": "a frozen record, built by attack_metrics",
}

CONVENTION_EXCEPTIONS = {}

KNOWN_FAILURES = set()
