"""The MNIST CNN every later chapter attacks, explains or trains privately."""

from __future__ import annotations

from trustml_lab.data import load_mnist_split
from trustml_lab.models import SmallCNN, accuracy, fit


def train() -> dict:
    x_train, x_test, y_train, y_test = load_mnist_split()
    model = SmallCNN()
    fit(model, x_train, y_train, epochs=10, batch_size=64, lr=1e-3)
    acc = accuracy(model, x_test, y_test)
    print(f"mnist_cnn: test accuracy {acc:.3f}")
    source = (f"SmallCNN, 10 epochs of Adam (lr 1e-3, batch 64) on load_mnist_split() train; "
              f"test accuracy {acc:.3f}")
    return {"mnist_cnn.safetensors": (model, source)}
