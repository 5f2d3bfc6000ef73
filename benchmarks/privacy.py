"""Chapter 4 benchmarks: one DP-SGD gradient, ours against one Opacus ``make_private`` step.

Both sides do the whole step on the same model and batch of 256: forward, backward,
per-example clipping (max_grad_norm 1) and Gaussian noise (noise multiplier 1), drawn
from a generator seeded the same way, so the values must agree to float rounding. Ours is
the public ``private_gradient``, input checks included. The Opacus side is the Opacus
example's recipe (``PrivacyEngine.make_private`` on a model fixed by
``ModuleValidator.fix``), timed from ``zero_grad`` to ``optimizer.step()`` (plain SGD with
lr 0, so repeated calls see the same weights). Models: the chapter's MLP on the encoded
Adult features, and the chapter's CNN (``SmallCNN``) on MNIST.

Targets (issues 6 and 9): for the MLP, the ghost path at most 1.7x a non-private forward
and backward and at least 3.7x faster than the Opacus step; for the CNN, at least 2.7x
faster than the Opacus step. ``cases(smoke=True)``: the same cases on 8 rows and a
narrow CNN, values compared, no timing.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trustml_lab.data import load_adult, load_mnist_split
from trustml_lab.models import MLP, SmallCNN
from trustml_lab.privacy import private_gradient

from ._harness import Case

BATCH = 256
MAX_GRAD_NORM = 1.0
NOISE_MULTIPLIER = 1.0
SEED = 0


def _opacus_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], dict]:
    """A closure doing one make_private step; returns the noised summed gradient (Opacus's grad x batch)."""
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    model = ModuleValidator.fix(copy.deepcopy(model)).train()
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))  # sample rate 1: expected batch = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, optimizer, _ = PrivacyEngine(accountant="rdp").make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), data_loader=loader,
            noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=MAX_GRAD_NORM)

    def step() -> dict:
        optimizer.generator = torch.Generator().manual_seed(SEED)
        optimizer.zero_grad()
        F.cross_entropy(private(x), y).backward()
        optimizer.step()
        return {name: p.grad * optimizer.expected_batch_size for name, p in private._module.named_parameters()}

    return step


def _ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str) -> Callable[[], dict]:
    def step() -> dict:
        return private_gradient(model, x, y, max_grad_norm=MAX_GRAD_NORM, noise_multiplier=NOISE_MULTIPLIER,
                                method=method, generator=torch.Generator().manual_seed(SEED))
    return step


def _non_private(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], dict]:
    params = dict(model.named_parameters())

    def step() -> dict:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        return {name: p.grad for name, p in params.items()}
    return step


def _same_gradients(ours: dict, reference: dict) -> None:
    if list(ours) != list(reference):
        raise AssertionError(f"parameter names differ: {list(ours)} vs {list(reference)}")
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], atol=1e-4, rtol=1e-4, msg=name)


def _problems(smoke: bool) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(SEED)
    adult = load_adult(as_frame=False)
    mlp = MLP(adult.features.shape[1], hidden=(64, 32))
    x_train, _, y_train, _ = load_mnist_split()
    cnn = SmallCNN(channels=(2, 4), hidden=8) if smoke else SmallCNN()
    rows = 8 if smoke else BATCH
    return {
        "MLP (Adult, 104-64-32-2)": (mlp, adult.features[:rows], adult.target[:rows]),
        "SmallCNN (MNIST)": (cnn, x_train[:rows], y_train[:rows]),
    }


def cases(*, smoke: bool = False) -> list[Case]:
    problems = _problems(smoke)
    mlp_name, cnn_name = list(problems)
    out = []
    for name, (model, x, y) in problems.items():
        opacus_step = _opacus_step(model, x, y)
        is_mlp = name == mlp_name
        # sub-millisecond MLP steps: many repeats, so that a scheduler hiccup cannot move the median
        repeats, warmup = (400, 40) if is_mlp else (7, 2)
        # the non-private comparison first: measured right after the per-example case (which
        # allocates (256, out, in) tensors), the same sub-millisecond ghost call ran up to 2x slower
        out.append(Case(
            f"{name}: ghost vs non-private fwd+bwd, b={len(x)}", _ours(model, x, y, "ghost"),
            _non_private(model, x, y), "torch forward+backward (no privacy)",
            min_speedup=1 / 1.7 if is_mlp else None, target="<= 1.7x the non-private time" if is_mlp else "",
            repeats=repeats, warmup=warmup))
        out.append(Case(
            f"{name}: ghost vs Opacus step, b={len(x)}", _ours(model, x, y, "ghost"), opacus_step,
            "opacus make_private step", min_speedup=3.7 if is_mlp else 2.7,
            target=">= 3.7x faster" if is_mlp else ">= 2.7x faster",
            check=_same_gradients, repeats=repeats, warmup=warmup))
        out.append(Case(
            f"{name}: per_sample vs Opacus step, b={len(x)}", _ours(model, x, y, "per_sample"), opacus_step,
            "opacus make_private step", check=_same_gradients, repeats=repeats, warmup=warmup))
    return out
