"""Small models for the course, a training loop, prediction, and safe weight files.

The two architectures are deliberately small so that every notebook trains or
evaluates them on a laptop CPU in seconds. Neither uses batch normalization, so both
work unchanged with per-sample gradients (Opacus, DP-SGD) and in eval-mode attacks.
Weights are stored as safetensors (plain tensors, no code) and checked by sha256.

Mode policy: :func:`fit` trains in train mode and puts back the mode it found;
:func:`predict`, :func:`predict_proba` and :func:`accuracy` run in eval mode and put
back the mode they found. Only the loaders, :func:`load_weights` and
:func:`load_reference`, return a model in eval mode, ready for inference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ._validation import (
    as_model_input,
    as_tensor,
    check_generator,
    check_int,
    check_labels,
    check_model,
    check_positive,
    check_same_length,
    describe,
    eval_mode,
    model_device,
    renamed_arguments,
    train_mode,
)

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
        in_features = check_int(in_features, "in_features")
        widths = _layer_sizes(hidden, "hidden")
        out_features = check_int(out_features, "out_features")
        layers: list[nn.Module] = []
        width = in_features
        for size in widths:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


def _layer_sizes(value: Any, name: str, *, length: int | None = None) -> tuple[int, ...]:
    """A sequence of positive layer sizes (tuple or list of ints), each checked by ``check_int``."""
    if isinstance(value, (int, np.integer)):
        example = f"({int(value)},)" if length is None else f"({', '.join([str(int(value))] * length)})"
        raise TypeError(f"{name}: expected a sequence of layer sizes such as {name}={example}, got {describe(value)}")
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple or list of layer sizes, got {describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name}: expected {length} layer sizes, got {len(value)}: {tuple(value)}")
    return tuple(check_int(size, f"{name}[{i}]") for i, size in enumerate(value))


class SmallCNN(nn.Sequential):
    """A small MNIST CNN: two conv-ReLU-maxpool blocks, then two linear layers (logits).

    About 106k parameters; input (N, 1, 28, 28) in [0, 1], output (N, 10) logits.

    >>> SmallCNN()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, channels: tuple[int, int] = (16, 32), hidden: int = 64, num_classes: int = 10):
        c1, c2 = _layer_sizes(channels, "channels", length=2)
        hidden = check_int(hidden, "hidden")
        num_classes = check_int(num_classes, "num_classes")
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


def _logits(model: nn.Module, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``model(x)``, with a shape mismatch reported as a ValueError naming ``name``."""
    try:
        return model(x)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as err:  # e.g. "mat1 and mat2 shapes cannot be multiplied"
        raise ValueError(f"{name}: the model cannot run on a batch of shape {tuple(x.shape)}: {err}") from err


def _class_count(logits: torch.Tensor) -> int:
    if logits.ndim != 2:
        raise ValueError(f"model: expected logits of shape (N, classes), got shape {tuple(logits.shape)}")
    return logits.shape[1]


@torch.no_grad()
def _output_width(model: nn.Module, x: torch.Tensor) -> int:
    """The number of classes: the width of the model's logits on one row (eval mode, no gradient)."""
    with eval_mode(model):
        return _class_count(_logits(model, x[:1]))


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
    ``sample_weight`` does. Data stay on the model's device (inputs converted to the
    model's dtype); batches are drawn without replacement in an order from
    ``generator`` (default: torch's global RNG).
    ``loss_fn(logits, y)`` must return one loss per example (``reduction="none"``;
    default: cross-entropy, for which ``y`` must be class labels of the model's
    outputs); a loss that returns one number, such as ``nn.CrossEntropyLoss()``, is
    refused with or without ``sample_weight``, since weighting it is impossible.
    ``perturb(model, x_batch, y_batch)``, if given, replaces each batch's inputs before
    the step (adversarial training, ``trustml_lab.robustness.fit_adversarial``).
    ``penalty(logits, index)``, if given, returns a scalar added to each batch's loss;
    ``index`` holds the batch's row numbers, to look up per-row data such as a group
    (a fairness penalty, ``trustml_lab.fairness.demographic_parity_penalty``).

    The model trains in train mode; afterwards every submodule is back in the mode it
    was in before the call (a new model is in train mode; call ``model.eval()`` or use
    :func:`predict`, which runs in eval mode, for inference).

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 3); y = (x[:, 0] > 0).long()
    >>> model = MLP(3, hidden=(8,))
    >>> losses = fit(model, x, y, epochs=20, batch_size=16, lr=0.05, progress=False)
    >>> losses[-1] < losses[0], model.training
    (True, True)
    >>> fit(model, x, y, epochs=1, batch_size=16, lr=0.05, loss_fn=nn.CrossEntropyLoss(), progress=False)
    Traceback (most recent call last):
    ...
    ValueError: loss_fn: expected one loss per example, shape (16,), got shape (); use reduction="none"
    """
    check_model(model)
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    weight_decay = check_positive(weight_decay, "weight_decay", strict=False)
    generator = check_generator(generator)
    for name, function in (("loss_fn", loss_fn), ("perturb", perturb), ("penalty", penalty)):
        if function is not None and not callable(function):
            raise TypeError(f"{name}: expected a function or None, got {describe(function)}")
    x = as_model_input(x, "x", model)
    if loss_fn is None:
        y = check_labels(y, "y", num_classes=_output_width(model, x), device=x.device)
        loss_fn = nn.CrossEntropyLoss(reduction="none")
    else:
        y = as_tensor(y, "y", device=x.device)
        if y.is_floating_point():  # soft labels or regression targets: in the model's dtype
            y = y.to(x.dtype)
    if sample_weight is not None:
        sample_weight = as_tensor(sample_weight, "sample_weight", dtype=x.dtype, device=x.device, ndim=1)
    n = check_same_length(x=x, y=y, sample_weight=sample_weight)
    if sample_weight is not None:
        if bool((sample_weight < 0).any()):
            raise ValueError("sample_weight: expected non-negative weights, got a negative one")
        if not bool((sample_weight > 0).any()):
            raise ValueError("sample_weight: expected at least one positive weight, got all zeros")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[float] = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress_enabled(progress), leave=False)
    where = generator.device if generator is not None else "cpu"
    with train_mode(model):
        for _ in bar:
            order = torch.randperm(n, generator=generator, device=where).to(x.device)
            total = torch.zeros((), device=x.device)
            for index in order.split(batch_size):
                inputs = x[index] if perturb is None else _perturbed(perturb, model, x[index], y[index])
                logits = _logits(model, inputs)
                losses = loss_fn(logits, y[index])
                if not isinstance(losses, torch.Tensor) or losses.shape != (len(index),):
                    got = f"shape {tuple(losses.shape)}" if isinstance(losses, torch.Tensor) else describe(losses)
                    raise ValueError(f"loss_fn: expected one loss per example, shape ({len(index)},), got {got}; "
                                     'use reduction="none"')
                if sample_weight is None:
                    loss = losses.mean()
                else:
                    w = sample_weight[index]
                    loss = (w * losses).sum() / w.sum().clamp_min(1e-12)
                if penalty is not None:
                    extra = penalty(logits, index)
                    if not isinstance(extra, torch.Tensor) or extra.numel() != 1:
                        raise ValueError(f"penalty: expected one number (a 0-d tensor), got {describe(extra)}")
                    loss = loss + extra.reshape(())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(index)
            history.append(float(total) / n)  # one host sync per epoch
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return history


def _perturbed(perturb: Callable[..., torch.Tensor], model: nn.Module, x: torch.Tensor,
               y: torch.Tensor) -> torch.Tensor:
    out = perturb(model, x, y)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"perturb: expected a batch of the input's shape {tuple(x.shape)}, got {describe(out)}")
    return out


@renamed_arguments(batch_size="internal_batch_size")
@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, internal_batch_size: int = 4096) -> torch.Tensor:
    """Class probabilities (softmax of the logits), computed in eval mode.

    ``internal_batch_size`` rows go through the model at once (a memory knob: the
    result does not depend on it). Inputs are converted to the model's device and
    dtype; the model's mode is restored afterwards. The old name ``batch_size`` still
    works, with a ``FutureWarning``.

    >>> predict_proba(MLP(3), torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """
    check_model(model)
    internal_batch_size = check_int(internal_batch_size, "internal_batch_size")
    x = as_model_input(x, "x", model)
    with eval_mode(model):
        parts = []
        for start in range(0, len(x), internal_batch_size):
            logits = _logits(model, x[start:start + internal_batch_size])
            _class_count(logits)
            parts.append(torch.softmax(logits, dim=1))
    return torch.cat(parts)


@renamed_arguments(batch_size="internal_batch_size")
def predict(model: nn.Module, x: torch.Tensor, *, internal_batch_size: int = 4096) -> torch.Tensor:
    """Predicted class labels (argmax of the logits), computed in eval mode.

    >>> predict(MLP(3), torch.zeros(5, 3)).shape
    torch.Size([5])
    """
    return predict_proba(model, x, internal_batch_size=internal_batch_size).argmax(dim=1)


@renamed_arguments(batch_size="internal_batch_size")
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, internal_batch_size: int = 4096) -> float:
    """Fraction of examples whose predicted class equals ``y``, computed in eval mode.

    ``y`` holds class labels, one per example: a 1-d array of whole numbers inside the
    model's classes (``(N, 1)`` labels, fractional labels and labels outside the
    classes are refused, since they would broadcast or compare into a wrong number).

    >>> accuracy(MLP(3), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)) in (0.0, 1.0)
    True
    """
    check_model(model)
    x = as_model_input(x, "x", model)
    labels = check_labels(y, "y")
    check_same_length(x=x, y=labels)
    proba = predict_proba(model, x, internal_batch_size=internal_batch_size)
    labels = check_labels(labels, "y", num_classes=proba.shape[1], device=proba.device)
    return float((proba.argmax(dim=1) == labels).float().mean())


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or pathlib.Path), got {describe(path)}")
    return Path(path)


def _check_sha256(sha256: Any) -> str | None:
    """``None`` or 64 lowercase hex digits, as ``hashlib``'s ``hexdigest()`` writes them."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str):
        raise TypeError(f"sha256: expected a hex digest (str) or None, got {describe(sha256)}")
    if not _SHA256.fullmatch(sha256):
        hint = "; write it in lowercase, as hexdigest() does" if _SHA256.fullmatch(sha256.lower()) else ""
        raise ValueError(f"sha256: expected 64 lowercase hexadecimal digits, got {sha256!r} "
                         f"({len(sha256)} characters){hint}")
    return sha256


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

    check_model(model)
    path = _check_path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return sha256_file(path)


def _check_fits(model: nn.Module, state: dict[str, torch.Tensor], filename: str) -> None:
    """Refuse, before copying anything, a state dict whose names or shapes differ from the model's."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
                for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        parts = ([f"missing {missing[:4]}"] if missing else []) + \
                ([f"unexpected {unexpected[:4]}"] if unexpected else []) + reshaped[:2]
        raise ValueError(f"path: {filename} does not fit the model: {'; '.join(parts)}")


def load_weights(model: nn.Module, path: str | os.PathLike, *, sha256: str | None = None) -> nn.Module:
    """Load a safetensors state dict into ``model`` (strictly), after checking ``sha256``.

    ``sha256`` is the expected digest, 64 lowercase hex digits as ``hashlib`` writes
    them (``None`` skips the check). Raises ``FileNotFoundError`` for a missing file
    and ``ValueError`` naming the file when its sha256 differs, when it is not
    safetensors, or when its tensors do not fit the model (checked before anything is
    copied, so a refused file leaves the model as it was). Returns the model in eval
    mode, ready for inference.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mlp.safetensors"
    >>> digest = save_weights(MLP(3), path)
    >>> load_weights(MLP(3), path, sha256=digest).training
    False
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .data import sha256_file

    check_model(model)
    path = _check_path(path)
    sha256 = _check_sha256(sha256)
    if not path.exists():
        raise FileNotFoundError(f"path: weight file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"path: {path} is a folder, not a weight file")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise ValueError(f"path: {path.name} has sha256 {actual}, expected {sha256}; refusing to load it")
    try:
        state = load_file(str(path), device=str(model_device(model)))
    except SafetensorError as err:
        raise ValueError(f"path: {path.name} is not a valid safetensors file ({err})") from err
    _check_fits(model, state, path.name)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_reference(model: nn.Module, filename: str) -> nn.Module:
    """Load shipped weights ``data/<filename>`` into ``model``, verified against MANIFEST.

    The course's trained models (written by ``scripts/train_reference_models.py``)
    load this way: the sha256 comes from ``data/MANIFEST``, never from the file itself.
    Returns the model in eval mode.

    >>> cnn = load_reference(SmallCNN(), "mnist_cnn.safetensors")
    >>> cnn.training
    False
    """
    from .data import read_manifest, verified_path

    check_model(model)
    if not isinstance(filename, str):
        raise TypeError(f"filename: expected a file name in data/MANIFEST (str), got {describe(filename)}")
    path = verified_path(filename)
    return load_weights(model, path, sha256=read_manifest()[filename].sha256)
