"""Chapter 4's trained CNNs, for the membership attack of notebook 3.

- ``privacy_mnist_cnn_dp.safetensors``: the architecture and training images of the
  non-private reference ``mnist_cnn.safetensors``, trained with DP-SGD
  (``trustml_lab.privacy.dp_fit``: the Opacus example's noise multiplier 1.2 and max grad norm 1.0,
  Poisson batches of 256 expected examples, delta 1e-5);
- ``privacy_mnist_cnn_1k.safetensors``: a non-private CNN over-trained on the first 1,000
  training images (40 epochs of Adam), the kind of model that leaks most.
"""

from __future__ import annotations

import torch

from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, accuracy, fit
from trustml_lab.privacy import dp_fit

DP_SETTINGS = dict(noise_multiplier=1.2, max_grad_norm=1.0, sample_rate=256 / 4000, epochs=20, lr=2.0,
                   momentum=0.5, delta=1e-5, method="ghost")
OVERFIT_IMAGES, OVERFIT_EPOCHS = 1000, 40


def train() -> dict:
    x_train, x_test, y_train, y_test = load_mnist_split()
    result = dp_fit(SmallCNN(), x_train, y_train, generator=torch.Generator().manual_seed(0), **DP_SETTINGS)
    acc = accuracy(result.model, x_test, y_test)
    print(f"privacy_mnist_cnn_dp: test accuracy {acc:.3f}, epsilon {result.epsilon:.2f} (RDP, delta 1e-5)")
    dp_source = (f"SmallCNN, DP-SGD (trustml_lab.privacy.dp_fit: noise 1.2, clip 1.0, Poisson rate 256/4000, "
                 f"{result.steps} steps, SGD lr 2.0 momentum 0.5) on load_mnist_split() train; "
                 f"epsilon {result.epsilon:.2f} at delta 1e-5 (RDP); test accuracy {acc:.3f}")

    torch.manual_seed(0)
    overfit = SmallCNN()
    fit(overfit, x_train[:OVERFIT_IMAGES], y_train[:OVERFIT_IMAGES], epochs=OVERFIT_EPOCHS, batch_size=64, lr=1e-3,
        generator=torch.Generator().manual_seed(0))
    acc_1k = accuracy(overfit, x_test, y_test)
    print(f"privacy_mnist_cnn_1k: test accuracy {acc_1k:.3f}")
    overfit_source = (f"SmallCNN, {OVERFIT_EPOCHS} epochs of Adam (lr 1e-3, batch 64) on the first {OVERFIT_IMAGES} "
                      f"images of load_mnist_split() train, no privacy; test accuracy {acc_1k:.3f}")
    return {"privacy_mnist_cnn_dp.safetensors": (result.model, dp_source),
            "privacy_mnist_cnn_1k.safetensors": (overfit, overfit_source)}
