"""Small models for the course, a training loop, prediction, and safe weight files.

The two architectures are deliberately small so that every notebook trains or
evaluates them on a laptop CPU in seconds. Neither uses batch normalization, so both
work unchanged with per-sample gradients (Opacus, DP-SGD) and in eval-mode attacks.
Weights are stored as safetensors (plain tensors, no code) and checked by sha256.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ._validation import as_tensor, check_positive, check_same_length, describe

__all__ = [
    "MLP",
    "SmallCNN",
    "accuracy",
    "fit",
    "load_reference",
    "load_weights",
    "predict",
    "predict_proba",
    "progress_enabled",
    "save_weights",
]


class MLP(nn.Sequential):
    """A multilayer perceptron: Linear-ReLU blocks, then a Linear head of raw logits.

    >>> model = MLP(8, hidden=(16,), out_features=2)
    >>> model(torch.zeros(4, 8)).shape
    torch.Size([4, 2])
    """

    def __init__(self, in_features: int, *, hidden: Sequence[int] = (64, 32), out_features: int = 2):
        if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"in_features, hidden, out_features: expected positive sizes, got "
                f"{in_features}, {tuple(hidden)}, {out_features}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """A small MNIST CNN: two conv-ReLU-maxpool blocks, then two linear layers (logits).

    About 106k parameters; input (N, 1, 28, 28) in [0, 1], output (N, 10) logits.

    >>> SmallCNN()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, channels: tuple[int, int] = (16, 32), hidden: int = 64, num_classes: int = 10):
        c1, c2 = channels
        super().__init__(
            nn.Conv2d(1, c1, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


def progress_enabled(progress: bool = True) -> bool:
    """Whether to show a progress bar: ``progress`` unless ``TRUSTML_PROGRESS=0`` is set.

    Tests and ``make execute`` set ``TRUSTML_PROGRESS=0`` so outputs stay clean.

    >>> progress_enabled(False)
    False
    """
    return bool(progress) and os.environ.get("TRUSTML_PROGRESS", "1") != "0"


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    sample_weight: torch.Tensor | None = None,
    weight_decay: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "epochs",
) -> list[float]:
    """Train ``model`` with Adam on cross-entropy and return the mean loss of each epoch.

    ``sample_weight`` (one non-negative weight per example) weights each example's
    loss: each batch minimizes ``sum(w * loss) / sum(w)``, as scikit-learn's
    ``sample_weight`` does. Data stay on the model's device; batches are drawn
    without replacement in an order from ``generator`` (default: torch's global RNG).
    ``loss_fn(logits, y)`` must return per-example losses (default: cross-entropy).
    ``perturb(model, x_batch, y_batch)``, if given, replaces each batch's inputs before
    the step (adversarial training, ``trustml_lab.robustness.fit_adversarial``).
    ``penalty(logits, index)``, if given, returns a scalar added to each batch's loss;
    ``index`` holds the batch's row numbers, to look up per-row data such as a group
    (a fairness penalty, ``trustml_lab.fairness.demographic_parity_penalty``).

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 3); y = (x[:, 0] > 0).long()
    >>> model = MLP(3, hidden=(8,))
    >>> losses = fit(model, x, y, epochs=20, batch_size=16, lr=0.05, progress=False)
    >>> losses[-1] < losses[0]
    True
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {describe(value)}")
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", strict=False)
    device = _device_of(model)
    x = as_tensor(x, "x", device=device)
    y = as_tensor(y, "y", device=device)
    n = check_same_length(x=x, y=y, sample_weight=sample_weight)
    if sample_weight is not None:
        sample_weight = as_tensor(sample_weight, "sample_weight", dtype=torch.float32, device=device, ndim=1)
        if bool((sample_weight < 0).any()) or not bool(torch.isfinite(sample_weight).all()):
            raise ValueError("sample_weight: expected finite, non-negative weights")
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss(reduction="none")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[float] = []
    model.train()
    bar = tqdm(range(epochs), desc=desc, disable=not progress_enabled(progress), leave=False)
    where = generator.device if generator is not None else "cpu"
    for _ in bar:
        order = torch.randperm(n, generator=generator, device=where).to(device)
        total = torch.zeros((), device=device)
        for index in order.split(batch_size):
            inputs = x[index] if perturb is None else perturb(model, x[index], y[index])
            logits = model(inputs)
            losses = loss_fn(logits, y[index])
            if sample_weight is None:
                loss = losses.mean()
            else:
                w = sample_weight[index]
                loss = (w * losses).sum() / w.sum().clamp_min(1e-12)
            if penalty is not None:
                loss = loss + penalty(logits, index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        history.append(float(total) / n)  # one host sync per epoch
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """Class probabilities (softmax of the logits), computed in eval mode in batches.

    >>> predict_proba(MLP(3), torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """
    model.eval()
    x = as_tensor(x, "x", device=_device_of(model))
    parts = [torch.softmax(model(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """Predicted class labels (argmax of the logits).

    >>> predict(MLP(3), torch.zeros(5, 3)).shape
    torch.Size([5])
    """
    return predict_proba(model, x, batch_size=batch_size).argmax(dim=1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 4096) -> float:
    """Fraction of examples whose predicted class equals ``y``.

    >>> accuracy(MLP(3), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)) in (0.0, 1.0)
    True
    """
    y = as_tensor(y, "y")
    check_same_length(x=x, y=y)
    predicted = predict(model, x, batch_size=batch_size)
    return float((predicted == y.to(predicted.device)).float().mean())


def save_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Save ``model``'s state dict as a safetensors file; return its sha256.

    Safetensors holds tensors only, so loading it can never run code (unlike pickle).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mlp.safetensors"
    >>> len(save_weights(MLP(3), path))
    64
    """
    from safetensors.torch import save_file

    from .data import sha256_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return sha256_file(path)


def load_weights(model: nn.Module, path: str | os.PathLike, *, sha256: str | None = None) -> nn.Module:
    """Load a safetensors state dict into ``model`` (strictly), after checking ``sha256``.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file when
    the sha256 differs or the file is not safetensors. Returns the model in eval mode.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mlp.safetensors"
    >>> digest = save_weights(MLP(3), path)
    >>> load_weights(MLP(3), path, sha256=digest).training
    False
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .data import sha256_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: weight file {path} does not exist")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise ValueError(f"path: {path.name} has sha256 {actual}, expected {sha256}; refusing to load it")
    try:
        state = load_file(str(path), device=str(_device_of(model)))
    except SafetensorError as err:
        raise ValueError(f"path: {path.name} is not a valid safetensors file ({err})") from err
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_reference(model: nn.Module, filename: str) -> nn.Module:
    """Load shipped weights ``data/<filename>`` into ``model``, verified against MANIFEST.

    The course's trained models (written by ``scripts/train_reference_models.py``)
    load this way: the sha256 comes from ``data/MANIFEST``, never from the file itself.

    >>> cnn = load_reference(SmallCNN(), "mnist_cnn.safetensors")
    >>> cnn.training
    False
    """
    from .data import read_manifest, verified_path

    path = verified_path(filename)
    return load_weights(model, path, sha256=read_manifest()[filename].sha256)
