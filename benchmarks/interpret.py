"""Chapter 3 benchmarks: integrated gradients against captum and saliency; KernelSHAP against shap.

Targets (issue 5): IG with 50 steps no slower than captum's IG (same steps, same internal
batch) and at most 1.1 x the time of 50 saliency maps; ``kernel_shap`` at least 10x
faster than shap's ``KernelExplainer`` at the same samples and background, at equal error
against the exact Shapley values (within 1.5x: both estimate with the same sampling scheme).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from trustml_lab import data, interpret, models

from ._harness import Case

STEPS = 50


def _digits(n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    cnn = models.load_reference(models.SmallCNN(), "mnist_cnn.safetensors")
    _, x_test, _, y_test = data.load_mnist_split()
    return cnn, x_test[:n], y_test[:n]


def _ig_cases() -> list[Case]:
    from captum.attr import IntegratedGradients

    cnn, x, y = _digits(16)
    batch = len(x) * 25  # two chunks of 25 steps
    captum_ig = IntegratedGradients(cnn)

    def same(ours: torch.Tensor, reference: torch.Tensor) -> None:
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)

    def fifty_saliency_maps() -> torch.Tensor:
        return torch.stack([interpret.saliency(cnn, x, y, abs=False) for _ in range(STEPS)])

    def ig_is_complete(ours: tuple[torch.Tensor, torch.Tensor], reference: torch.Tensor) -> None:
        attributions, delta = ours
        scale = attributions.sum(dim=(1, 2, 3)).abs().max()
        if attributions.shape != reference.shape[1:] or not bool(delta.abs().max() < 0.05 * scale):
            raise AssertionError(f"IG is not complete: max |delta| = {float(delta.abs().max()):.2e}")

    return [
        Case(
            "integrated_gradients, 16 digits, 50 steps, internal batch 400",
            ours=lambda: interpret.integrated_gradients(cnn, x, y, steps=STEPS, internal_batch_size=batch),
            reference=lambda: captum_ig.attribute(x, target=y, n_steps=STEPS, internal_batch_size=batch),
            reference_name="captum IntegratedGradients",
            min_speedup=1.0,
            target="no slower than captum",
            check=same,
            repeats=9,
        ),
        Case(
            "integrated_gradients, 16 digits, 50 steps (with delta), internal batch 400",
            ours=lambda: interpret.integrated_gradients(cnn, x, y, steps=STEPS, internal_batch_size=batch,
                                                        return_delta=True),
            reference=fifty_saliency_maps,
            reference_name="50 x saliency",
            min_speedup=1 / 1.1,
            target="at most 1.1 x 50 x saliency",
            check=ig_is_complete,
        ),
    ]


def _kernel_shap_case() -> Case:
    """A 12-feature ReLU MLP on Gaussian inputs: every feature differs from every background row,
    so shap cannot drop any (on one-hot data it skips the features an applicant shares with the
    whole background, which makes its budget go further there)."""
    import shap

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = models.MLP(12, hidden=(32,), out_features=1).eval()  # the course's MLP, random weights
    explained = torch.randn(20, 12, generator=generator)
    background = torch.randn(10, 12, generator=generator)  # 10 rows, as shap's docs advise
    nsamples = 2048

    def f(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(z.float())[:, 0]

    def f_numpy(z: np.ndarray) -> np.ndarray:
        return f(torch.from_numpy(z)).double().numpy()

    exact = interpret.shapley_values(f, explained, background).values.numpy()
    explainer = shap.KernelExplainer(f_numpy, background.numpy())

    def ours() -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        return interpret.kernel_shap(f, explained, background, nsamples=nsamples, generator=generator).values.numpy()

    def reference() -> np.ndarray:
        np.random.seed(0)  # noqa: NPY002 - shap's KernelExplainer samples from numpy's global generator
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(explainer.shap_values(explained.numpy(), nsamples=nsamples, l1_reg=False, silent=True))

    def no_larger_error(ours_values: np.ndarray, reference_values: np.ndarray) -> None:
        ours_error = np.abs(ours_values - exact).max()
        reference_error = np.abs(reference_values - exact).max()
        if ours_error > 1.5 * reference_error + 1e-6:  # two estimates of one sampling scheme
            raise AssertionError(f"kernel_shap error {ours_error:.2e} > KernelExplainer's {reference_error:.2e}")
        print(f"    max |error| vs exact: kernel_shap {ours_error:.1e}, KernelExplainer {reference_error:.1e}")

    return Case(
        "kernel_shap, 20 rows, 12 features, 2048 samples, 10 background rows",
        ours=ours,
        reference=reference,
        reference_name="shap KernelExplainer",
        min_speedup=10.0,
        target=">= 10x faster at equal error",
        check=no_larger_error,
        repeats=7,
    )


def cases() -> list[Case]:
    return [*_ig_cases(), _kernel_shap_case()]
