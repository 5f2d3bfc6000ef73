"""Chapter 0: the seeded stratified split against scikit-learn's, on 1M labels."""

from __future__ import annotations

import numpy as np
import sklearn.model_selection
import torch

from trustml_lab.data import train_test_split

from ._harness import Case


def cases(*, smoke: bool = False) -> list[Case]:
    n = 2_000 if smoke else 1_000_000
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n,), generator=generator)
    index = torch.arange(n)
    labels_np, index_np = labels.numpy(), index.numpy()

    def ours():
        _, test, _, y_test = train_test_split(index, labels, test_size=0.2, stratify=labels, seed=0)
        return torch.bincount(y_test, minlength=10).numpy()

    def reference():
        _, test, _, y_test = sklearn.model_selection.train_test_split(
            index_np, labels_np, test_size=0.2, stratify=labels_np, random_state=0)
        return np.bincount(y_test, minlength=10)

    def same_class_counts(a, b):
        # both put round(0.2 * class size) of every class in the test part (sklearn may
        # move a single example between classes to hit its total exactly)
        if np.abs(a - b).max() > 1:
            raise AssertionError(f"class counts differ: {a} vs {b}")

    return [Case(f"stratified train_test_split, {n:,} rows, 10 classes", ours, reference,
                 "sklearn.model_selection.train_test_split", check=same_class_counts,
                 min_speedup=1.0, target="no slower than scikit-learn")]
