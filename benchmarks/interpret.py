"""Chapter 3 benchmarks: integrated gradients against captum and saliency; KernelSHAP against shap.

Targets (issue 9):

- ``integrated_gradients`` with 50 steps no slower than captum's (same steps, same internal
  batch), and with its *default* ``internal_batch_size`` at most 1.1 x the time of 50
  saliency maps on the course's CNN;
- ``kernel_shap`` at least 10x faster than shap's ``KernelExplainer`` across feature counts
  6-16 and background sizes 10-100 (the grid's corners and middle), at the same budget of
  coalitions and at equal error against the exact Shapley values: both sample by the same
  scheme, so each case checks that our mean squared error (over 5 extra seeds, untimed) is at
  most 1.5 x shap's (over the timed call's rows, which shap samples independently).

  The target holds with 10 background rows (about 14x with 6 features, 18x with 16, on the
  2-core test machine) but not with 50 or 100 (about 5x, 5x and 4x). There the model's own
  evaluations dominate: both libraries must evaluate ``f`` on the same ``coalitions x
  background x rows`` points, and the CPU time our call spends inside ``f`` alone was
  already more than a tenth of KernelExplainer's whole time (shap's time / our time in
  ``f``: 9.5 at 6 features and 100 rows, 10.3 at 11 and 50, 5.0 at 16 and 100), so no
  implementation of the same estimator can be 10x faster there. Estimating each ``v(S)``
  from a random part of the background instead was 30 to 100 times less accurate at equal
  evaluations, so it does not buy the speed back at equal error either.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from trustml_lab import data, interpret, models

from ._harness import Case

STEPS = 50
SHAP_GRID = ((6, 10), (6, 100), (11, 50), (16, 10), (16, 100))  # (features, background rows)
BUDGET = 1024  # coalitions: KernelExplainer's nsamples


def _digits(n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    cnn = models.load_reference(models.SmallCNN(), "mnist_cnn.safetensors")
    _, x_test, _, y_test = data.load_mnist_split()
    return cnn, x_test[:n], y_test[:n]


def _ig_cases(smoke: bool) -> list[Case]:
    from captum.attr import IntegratedGradients

    cnn, x, y = _digits(2 if smoke else 16)
    steps = 4 if smoke else STEPS
    batch = len(x) * (steps // 2)  # two chunks of whole steps
    captum_ig = IntegratedGradients(cnn)

    def same(ours: torch.Tensor, reference: torch.Tensor) -> None:
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)

    def saliency_maps() -> torch.Tensor:
        return torch.stack([interpret.saliency(cnn, x, target=y, abs=False) for _ in range(steps)])

    def ig_is_complete(attributions: torch.Tensor, maps: torch.Tensor) -> None:
        with torch.no_grad():
            gap = cnn(x).gather(1, y[:, None])[:, 0] - cnn(torch.zeros_like(x)).gather(1, y[:, None])[:, 0]
        delta = attributions.sum(dim=(1, 2, 3)) - gap
        if attributions.shape != maps.shape[1:] or not bool(delta.abs().max() < 0.05 * gap.abs().max()):
            raise AssertionError(f"IG is not complete: max |delta| = {float(delta.abs().max()):.2e}")

    return [
        Case(
            f"integrated_gradients, {len(x)} digits, {steps} steps, internal batch {batch}",
            ours=lambda: interpret.integrated_gradients(cnn, x, target=y, steps=steps, internal_batch_size=batch),
            reference=lambda: captum_ig.attribute(x, target=y, n_steps=steps, internal_batch_size=batch),
            reference_name="captum IntegratedGradients",
            min_speedup=1.0,
            target="no slower than captum",
            check=same,
            repeats=9,
        ),
        Case(
            f"integrated_gradients, {len(x)} digits, {steps} steps, default internal batch",
            ours=lambda: interpret.integrated_gradients(cnn, x, target=y, steps=steps),
            reference=saliency_maps,
            reference_name=f"{steps} x saliency",
            min_speedup=1 / 1.1,
            target=f"at most 1.1 x {steps} x saliency",
            check=ig_is_complete,
            repeats=9,
        ),
    ]


def _kernel_shap_case(features: int, background_rows: int, *, smoke: bool) -> Case:
    """The course's MLP (random weights, one output) on Gaussian inputs: every feature differs
    from every background row, so shap cannot drop any (on one-hot data it skips the features
    an applicant shares with the whole background, which makes its budget go further there)."""
    import shap

    rows, budget = (2, 2 ** features - 2) if smoke else (10, BUDGET)  # smoke: every coalition, both exact
    generator = torch.Generator().manual_seed(features * 1000 + background_rows)
    torch.manual_seed(features)
    model = models.MLP(features, hidden=(32,), out_features=1).eval()
    explained = torch.randn(rows, features, generator=generator)
    background = torch.randn(background_rows, features, generator=generator)

    def f(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(z.float())[:, 0]

    def f_numpy(z: np.ndarray) -> np.ndarray:
        return f(torch.from_numpy(z)).double().numpy()

    exact = interpret.shapley_values(f, explained, background).values.numpy()
    explainer = shap.KernelExplainer(f_numpy, background.numpy())

    def ours(seed: int = 0) -> np.ndarray:
        return interpret.kernel_shap(f, explained, background, n_samples=budget,
                                     generator=torch.Generator().manual_seed(seed)).values.numpy()

    def reference() -> np.ndarray:
        np.random.seed(0)  # noqa: NPY002 - shap's KernelExplainer samples from numpy's global generator
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(explainer.shap_values(explained.numpy(), nsamples=budget, l1_reg=False, silent=True))

    def equal_error(ours_values: np.ndarray, reference_values: np.ndarray) -> None:
        ours_mse = np.mean([((ours(seed) - exact) ** 2).mean() for seed in range(1, 6)] +
                           [((ours_values - exact) ** 2).mean()])
        reference_mse = ((reference_values - exact) ** 2).mean()
        if ours_mse > 1.5 * reference_mse + 1e-12:
            raise AssertionError(f"kernel_shap's mean squared error {ours_mse:.2e} > 1.5 x KernelExplainer's "
                                 f"{reference_mse:.2e}")
        print(f"    mean squared error vs exact: kernel_shap {ours_mse:.1e}, KernelExplainer {reference_mse:.1e}")

    covered = "all" if budget >= 2 ** features - 2 else f"{budget} of {2 ** features - 2}"
    return Case(
        f"kernel_shap, {rows} rows, {features} features, {background_rows} background rows, {covered} coalitions",
        ours=ours,
        reference=reference,
        reference_name="shap KernelExplainer",
        min_speedup=10.0,
        target=">= 10x faster at equal error",
        check=equal_error,
        repeats=5,
    )


def cases(*, smoke: bool = False) -> list[Case]:
    grid = ((3, 3), (4, 5)) if smoke else SHAP_GRID
    return [*_ig_cases(smoke), *(_kernel_shap_case(m, b, smoke=smoke) for m, b in grid)]
