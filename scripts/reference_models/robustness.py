"""Chapter 2's robust MNIST CNNs: adversarial training (FGSM, FGSM-RS, PGD) and Gaussian noise.

Every model starts from the clean reference CNN (``mnist_cnn.safetensors``) and is
fine-tuned on ``load_mnist_split()``'s 4,000 training images, so the recipe stays within
a few minutes on one CPU thread. The radius is L-inf eps = 0.2 (the usual MNIST 0.3 needs
far longer PGD training from this small data set); the noise models are trained for
randomized smoothing at sigma = 0.25 and 0.5 (Cohen et al. 2019, Gaussian augmentation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, accuracy, load_reference
from trustml_lab.robustness import fit_adversarial, pgd

EPS = 0.2
EPOCHS = {"fgsm": 6, "fgsm_rs": 6, "pgd": 5}
SIGMAS = {"025": 0.25, "050": 0.5}
LR, BATCH = 1e-3, 64


def _pgd_accuracy(model, x, y) -> float:
    x_adv = pgd(model, x, y, eps=EPS, alpha=EPS / 4, steps=20, generator=torch.Generator().manual_seed(0))
    return accuracy(model, x_adv, y)


def _fit_gaussian(model, x, y, *, sigma: float, epochs: int, generator: torch.Generator) -> None:
    """Gaussian data augmentation: train on x + N(0, sigma^2 I), as randomized smoothing needs."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(BATCH):
            noisy = x[index] + sigma * torch.randn(x[index].shape, generator=generator)
            loss = F.cross_entropy(model(noisy), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def train() -> dict:
    x_train, x_test, y_train, y_test = load_mnist_split()
    x_eval, y_eval = x_test[:500], y_test[:500]
    models = {}
    for method, epochs in EPOCHS.items():
        torch.manual_seed(0)
        model = load_reference(SmallCNN(), "mnist_cnn.safetensors")
        fit_adversarial(model, x_train, y_train, method=method, eps=EPS, epochs=epochs, batch_size=BATCH,
                        lr=LR, generator=torch.Generator().manual_seed(0))
        clean, robust = accuracy(model, x_test, y_test), _pgd_accuracy(model, x_eval, y_eval)
        print(f"robust_{method}: clean accuracy {clean:.3f}, PGD-20 accuracy {robust:.3f} (eps {EPS})")
        source = (f"SmallCNN from mnist_cnn.safetensors, {epochs} epochs of fit_adversarial(method={method!r}, "
                  f"eps={EPS}, Adam lr {LR}, batch {BATCH}); test accuracy {clean:.3f}, "
                  f"PGD-20 accuracy {robust:.3f} on 500 test images")
        models[f"robust_{method}.safetensors"] = (model, source)
    for tag, sigma in SIGMAS.items():
        torch.manual_seed(0)
        model = load_reference(SmallCNN(), "mnist_cnn.safetensors")
        _fit_gaussian(model, x_train, y_train, sigma=sigma, epochs=4, generator=torch.Generator().manual_seed(0))
        clean = accuracy(model, x_test, y_test)
        print(f"robust_noise_{tag}: clean accuracy {clean:.3f}")
        source = (f"SmallCNN from mnist_cnn.safetensors, 4 epochs of Gaussian augmentation (sigma {sigma}, "
                  f"Adam lr {LR}, batch {BATCH}); test accuracy {clean:.3f}")
        models[f"robust_noise_{tag}.safetensors"] = (model, source)
    return models
