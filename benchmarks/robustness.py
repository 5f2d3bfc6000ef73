"""Chapter 2 benchmarks: attacks, the robust-accuracy curve, adversarial training, certification.

On the chapter's CNN (``data/mnist_cnn.safetensors``) and the course's MNIST split, plus a
wider conv + max-pool CNN. ``make bench`` runs under ``setup()`` (PyTorch's native CPU
convolutions, ``TRUSTML_THREADS`` threads); the "torch defaults" cases switch oneDNN back
on and use every core, inside both timed calls, as a user who never calls ``setup()`` runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, fit, load_reference
from trustml_lab.robustness import certify, fgsm, fit_adversarial, pgd, robust_accuracy

from ._harness import Case

EPS, ALPHA = 0.1, 0.025
CURVE = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_settings(*, onednn: bool, threads: int) -> Iterator[None]:
    """Run a block with oneDNN on or off and ``threads`` threads, then restore both."""
    threads_before, onednn_before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = onednn
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.backends.mkldnn.enabled = onednn_before


def _under(settings: dict | None, fn: Callable[[], Any]) -> Callable[[], Any]:
    if settings is None:
        return fn

    def run() -> Any:
        with _torch_settings(**settings):
            return fn()
    return run


def wide_cnn() -> nn.Module:
    """Twice SmallCNN's channels and hidden units: conv-ReLU-maxpool twice, then two linear layers."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    ).eval()


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def _same_images(ours: torch.Tensor, reference: torch.Tensor) -> None:
    gap = float((ours - reference).abs().max())
    if gap > 1e-6:
        raise AssertionError(f"PGD differs from torchattacks by {gap:.3g}")


def _per_eps_curve(model, x, y, attack, radii, size) -> dict[float, float]:
    """The same attack run once per radius on every example: the baseline that repeats work."""
    curve = {}
    for radius in radii:
        correct = []
        for i in range(0, len(x), size):
            xb, yb = x[i:i + size], y[i:i + size]
            x_adv = xb if radius == 0 else attack(model, xb, yb, eps=radius)
            correct.append(model(x_adv).argmax(1) == yb)
        curve[radius] = float(torch.cat(correct).double().mean())
    return curve


def _never_above(ours, per_eps: dict[float, float]) -> None:
    for radius, value in ours.items():
        if value > per_eps[radius] + 1e-12:
            raise AssertionError(f"eps={radius}: reused curve {value} above the per-eps run {per_eps[radius]}")


def _cohen_certify(model, x, *, sigma, n0, n, alpha, internal_batch_size, generator):
    """A port of Cohen et al.'s reference ``Smooth.certify`` (github.com/locuslab/smoothing):
    one example at a time, noise in batches, the Clopper-Pearson bound from SciPy."""
    from scipy.stats import beta, norm

    predictions, radii = [], []
    with torch.no_grad():
        for example in x:
            def sample(num, example=example):
                counts = torch.zeros(10, dtype=torch.int64)
                for start in range(0, num, internal_batch_size):
                    size = min(internal_batch_size, num - start)
                    batch = example.repeat(size, 1, 1, 1)
                    noise = torch.randn(batch.shape, generator=generator) * sigma
                    counts += torch.bincount(model(batch + noise).argmax(1), minlength=10)
                return counts.numpy()

            guess = int(sample(n0).argmax())
            n_a = int(sample(n)[guess])
            p_a = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
            certified = p_a > 0.5
            predictions.append(guess if certified else -1)
            radii.append(sigma * norm.ppf(p_a) if certified else 0.0)
    return np.array(predictions), np.array(radii)


def _certificates_agree(ours, reference) -> None:
    agree = float(np.mean(ours.prediction.numpy() == reference[0]))
    if agree < 0.9:
        raise AssertionError(f"certify and the per-example port agree on only {agree:.2f} of predictions")


def _pgd_vs_torchattacks(name: str, model: nn.Module, x, y, *, steps: int, settings: dict | None,
                         repeats: int, smoke: bool) -> Case:
    import torchattacks

    reference = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)
    ours = functools.partial(pgd, model, x, y, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)
    return Case(name, ours=_under(settings, ours), reference=_under(settings, lambda: reference(x, y)),
                reference_name="torchattacks PGD", min_speedup=None if smoke else 1.0,
                target="no slower than torchattacks", check=_same_images, repeats=repeats, warmup=2)


def cases(*, smoke: bool = False) -> list[Case]:
    batch = 8 if smoke else 256
    steps = 2 if smoke else 10
    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = load_mnist_split()
    model = load_reference(SmallCNN(), "mnist_cnn.safetensors")
    x, y = x_test[:batch], y_test[:batch]

    pgd10 = functools.partial(pgd, model, x, y, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)

    def pgd_not_weaker(ours, reference):
        if _accuracy(model, ours, y) > _accuracy(model, reference, y):
            raise AssertionError("PGD-10 accuracy above FGSM accuracy")

    curve_x, curve_y = x_test[:40 if smoke else 500], y_test[:40 if smoke else 500]
    curve_attack = functools.partial(pgd, alpha=ALPHA, steps=steps, random_start=False)

    train_x, train_y = x_train[:128 if smoke else 1024], y_train[:128 if smoke else 1024]

    def fgsm_rs_epoch():
        torch.manual_seed(0)
        return fit_adversarial(SmallCNN(), train_x, train_y, method="fgsm_rs", eps=0.2, epochs=1,
                               batch_size=64, lr=1e-3, generator=torch.Generator().manual_seed(0),
                               progress=False)

    def clean_epoch():
        torch.manual_seed(0)
        return fit(SmallCNN(), train_x, train_y, epochs=1, batch_size=64, lr=1e-3,
                   generator=torch.Generator().manual_seed(0), progress=False)

    smooth = dict(sigma=0.25, n0=100, n=100 if smoke else 1000, alpha=0.001, internal_batch_size=1000)
    certify_x = x_test[:2 if smoke else 20]
    wide = wide_cnn()
    defaults = {"onednn": True, "threads": _cores()}
    one_thread = {"onednn": True, "threads": 1}
    pgd_repeats = 1 if smoke else 9

    return [
        Case("pgd10 vs 10 x fgsm (batch 256)", ours=pgd10,
             reference=lambda: fgsm(model, x, y, eps=EPS), reference_name="ours fgsm",
             min_speedup=None if smoke else 1 / 11.5, target="PGD-10 <= 1.15 x 10 x FGSM", check=pgd_not_weaker,
             repeats=pgd_repeats, warmup=2),
        _pgd_vs_torchattacks("pgd10 linf (batch 256)", model, x, y, steps=steps, settings=None,
                             repeats=pgd_repeats, smoke=smoke),
        _pgd_vs_torchattacks(f"pgd10 SmallCNN, torch defaults (oneDNN, {_cores()} threads)", model, x, y,
                             steps=steps, settings=defaults, repeats=pgd_repeats, smoke=smoke),
        _pgd_vs_torchattacks("pgd10 SmallCNN, oneDNN, 1 thread", model, x, y, steps=steps, settings=one_thread,
                             repeats=pgd_repeats, smoke=smoke),
        _pgd_vs_torchattacks(f"pgd10 wide CNN, torch defaults (oneDNN, {_cores()} threads)", wide, x, y,
                             steps=steps, settings=defaults, repeats=pgd_repeats, smoke=smoke),
        _pgd_vs_torchattacks("pgd10 wide CNN, oneDNN, 1 thread", wide, x, y, steps=steps, settings=one_thread,
                             repeats=pgd_repeats, smoke=smoke),
        _pgd_vs_torchattacks("pgd10 wide CNN, native, setup threads", wide, x, y, steps=steps, settings=None,
                             repeats=pgd_repeats, smoke=smoke),
        Case("robust_accuracy 6-point eps curve (500 images)",
             ours=lambda: robust_accuracy(model, curve_x, curve_y, attack=curve_attack, eps=CURVE,
                                          internal_batch_size=batch),
             reference=lambda: _per_eps_curve(model, curve_x, curve_y, curve_attack, CURVE, batch),
             reference_name="same PGD once per eps", min_speedup=None if smoke else 1.6,
             target=">= 1.6x, never above", check=_never_above, repeats=5),
        Case("fgsm_rs training epoch (1024 images)", ours=fgsm_rs_epoch, reference=clean_epoch,
             reference_name="clean epoch (models.fit)", min_speedup=None if smoke else 1 / 2.2,
             target="FGSM-RS epoch <= 2.2 x clean epoch", repeats=3),
        Case("certify 20 examples (n0=100, n=1000)",
             ours=lambda: certify(model, certify_x, generator=torch.Generator().manual_seed(0), **smooth),
             reference=lambda: _cohen_certify(model, certify_x, generator=torch.Generator().manual_seed(0), **smooth),
             reference_name="Cohen et al. per-example loop", check=_certificates_agree, repeats=3),
    ]
