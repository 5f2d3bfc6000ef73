"""Chapter 2 benchmarks: attacks, the robust-accuracy curve, adversarial training, certification.

All on the chapter's CNN (``data/mnist_cnn.safetensors``) and the course's MNIST split.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, fit, load_reference
from trustml_lab.robustness import certify, fgsm, fit_adversarial, pgd, robust_accuracy

from ._harness import Case

BATCH = 256
EPS, ALPHA, STEPS = 0.1, 0.025, 10
CURVE = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def _same_images(ours: torch.Tensor, reference: torch.Tensor) -> None:
    gap = float((ours - reference).abs().max())
    if gap > 1e-6:
        raise AssertionError(f"PGD-10 differs from torchattacks by {gap:.3g}")


def _per_eps_curve(model, x, y, attack, radii) -> dict[float, float]:
    """The same attack run once per radius on every example: the baseline that repeats work."""
    curve = {}
    for radius in radii:
        correct = []
        for i in range(0, len(x), BATCH):
            xb, yb = x[i:i + BATCH], y[i:i + BATCH]
            x_adv = xb if radius == 0 else attack(model, xb, yb, eps=radius)
            correct.append(model(x_adv).argmax(1) == yb)
        curve[radius] = float(torch.cat(correct).double().mean())
    return curve


def _never_above(ours: dict[float, float], per_eps: dict[float, float]) -> None:
    for radius, value in ours.items():
        if value > per_eps[radius] + 1e-12:
            raise AssertionError(f"eps={radius}: reused curve {value} above the per-eps run {per_eps[radius]}")


def _cohen_certify(model, x, *, sigma, n0, n, alpha, batch_size, generator):
    """A port of Cohen et al.'s reference ``Smooth.certify`` (github.com/locuslab/smoothing):
    one example at a time, noise in batches, the Clopper-Pearson bound from SciPy."""
    from scipy.stats import beta, norm

    predictions, radii = [], []
    with torch.no_grad():
        for example in x:
            def sample(num, example=example):
                counts = torch.zeros(10, dtype=torch.int64)
                for start in range(0, num, batch_size):
                    size = min(batch_size, num - start)
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


def cases() -> list[Case]:
    import torchattacks

    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = load_mnist_split()
    model = load_reference(SmallCNN(), "mnist_cnn.safetensors")
    x, y = x_test[:BATCH], y_test[:BATCH]

    pgd10 = functools.partial(pgd, model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)
    reference_pgd = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)

    def pgd_not_weaker(ours, reference):
        if _accuracy(model, ours, y) > _accuracy(model, reference, y):
            raise AssertionError("PGD-10 accuracy above FGSM accuracy")

    curve_x, curve_y = x_test[:500], y_test[:500]
    curve_attack = functools.partial(pgd, alpha=ALPHA, steps=STEPS, random_start=False)

    train_x, train_y = x_train[:1024], y_train[:1024]

    def fgsm_rs_epoch():
        torch.manual_seed(0)
        return fit_adversarial(SmallCNN(), train_x, train_y, method="fgsm_rs", eps=0.2, epochs=1,
                               batch_size=64, lr=1e-3, generator=torch.Generator().manual_seed(0),
                               progress=False)

    def clean_epoch():
        torch.manual_seed(0)
        return fit(SmallCNN(), train_x, train_y, epochs=1, batch_size=64, lr=1e-3,
                   generator=torch.Generator().manual_seed(0), progress=False)

    smooth = dict(sigma=0.25, n0=100, n=1000, alpha=0.001, batch_size=1000)
    certify_x = x_test[:20]

    return [
        Case("pgd10 vs 10 x fgsm (batch 256)", ours=pgd10,
             reference=lambda: fgsm(model, x, y, eps=EPS), reference_name="ours fgsm",
             min_speedup=1 / 11.5, target="PGD-10 <= 1.15 x 10 x FGSM", check=pgd_not_weaker,
             repeats=9, warmup=2),
        Case("pgd10 linf (batch 256)", ours=pgd10, reference=lambda: reference_pgd(x, y),
             reference_name="torchattacks PGD", min_speedup=1.0, target="no slower than torchattacks",
             check=_same_images, repeats=9, warmup=2),
        Case("robust_accuracy 6-point eps curve (500 images)",
             ours=lambda: robust_accuracy(model, curve_x, curve_y, attack=curve_attack, eps=CURVE, batch_size=BATCH),
             reference=lambda: _per_eps_curve(model, curve_x, curve_y, curve_attack, CURVE),
             reference_name="same PGD once per eps", min_speedup=1.6, target=">= 1.6x, never above",
             check=_never_above, repeats=5),
        Case("fgsm_rs training epoch (1024 images)", ours=fgsm_rs_epoch, reference=clean_epoch,
             reference_name="clean epoch (models.fit)", min_speedup=1 / 2.2,
             target="FGSM-RS epoch <= 2.2 x clean epoch", repeats=3),
        Case("certify 20 examples (n0=100, n=1000)",
             ours=lambda: certify(model, certify_x, generator=torch.Generator().manual_seed(0), **smooth),
             reference=lambda: _cohen_certify(model, certify_x, generator=torch.Generator().manual_seed(0), **smooth),
             reference_name="Cohen et al. per-example loop", check=_certificates_agree, repeats=3),
    ]
