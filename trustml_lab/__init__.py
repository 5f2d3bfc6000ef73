"""trustml_lab: the helper package of the trustml-lab course.

One module per chapter, each a set of batched, device-agnostic PyTorch kernels:
``data`` and ``models`` (getting started), then the chapter modules. Every notebook
starts with :func:`setup` and prints :func:`versions`.
"""

from __future__ import annotations

import functools
import os
import platform
import random
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import torch

from ._validation import check_int, check_seed

__all__ = ["__version__", "setup", "versions", "banner"]

__version__ = "0.1.0"

#: Packages whose versions the notebook banner reports (when installed).
_REPORTED = (
    "torch",
    "numpy",
    "pandas",
    "scikit-learn",
    "aif360",
    "fairlearn",
    "captum",
    "shap",
    "opacus",
    "torchattacks",
    "transformers",
    "tokenizers",
)


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _keyword_seed(function: Callable[..., torch.device]) -> Callable[..., torch.device]:
    """Let ``setup(0)`` (the old positional seed) work for one more release, with a FutureWarning."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> torch.device:
        if args:
            if len(args) > 1 or "seed" in kwargs:
                raise TypeError("setup: takes keyword arguments only: setup(seed=0, threads=1)")
            warnings.warn("setup: pass the seed by keyword, setup(seed=...); a positional seed will be "
                          "refused in a future release", FutureWarning, stacklevel=2)
            kwargs["seed"] = args[0]
        return function(**kwargs)

    return wrapper


@_keyword_seed
def setup(*, seed: int = 0, threads: int | None = None) -> torch.device:
    """Make a session reproducible and return the best available device.

    Seeds Python, NumPy and PyTorch (all devices) with ``seed`` (an int in
    ``[0, 2**32 - 1]``, the range NumPy accepts), turns on PyTorch's deterministic
    algorithms (warning, not failing, where an operation has none) and PyTorch's native
    CPU convolutions instead of oneDNN's (which can differ in the last bits between
    processes), sets ``HF_HUB_OFFLINE=1`` (nothing is fetched from the Hugging Face Hub:
    the course's models are local folders), sets the number of torch threads (``threads``, else the environment
    variable ``TRUSTML_THREADS``, else torch's default) and returns ``cuda``, ``mps`` or
    ``cpu``, in that order of preference.

    Both arguments are keyword-only; ``setup(0)`` still works in this release, with a
    ``FutureWarning``.

    >>> device = setup(seed=0, threads=1)
    >>> device.type in {"cpu", "cuda", "mps"}
    True
    >>> torch.get_num_threads()
    1
    >>> setup(seed=-1)
    Traceback (most recent call last):
    ...
    ValueError: seed: expected an int in [0, 4294967295], got -1
    """
    seed = check_seed(seed)
    if threads is None and os.environ.get("TRUSTML_THREADS"):
        raw = os.environ["TRUSTML_THREADS"]
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"TRUSTML_THREADS: expected a positive integer, got {raw!r}")
        threads = int(raw)
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", low=1))
    # cuBLAS needs this to be deterministic; it must be set before cuBLAS starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ["HF_HUB_OFFLINE"] = "1"
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeding numpy's global generator is the point
    torch.manual_seed(seed)  # seeds every device
    torch.use_deterministic_algorithms(True, warn_only=True)
    # oneDNN's CPU convolutions can round differently from one process to the next (seen:
    # the same notebook trained to different weights under nbval and under nbclient), so
    # use PyTorch's native CPU kernels, which repeat bit for bit; GPUs are unaffected.
    torch.backends.mkldnn.enabled = False
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return _best_device()


def versions() -> dict[str, str]:
    """Versions of Python, trustml_lab and the course's libraries, plus the device.

    Read from package metadata, so nothing heavy is imported.

    >>> v = versions()
    >>> sorted(k for k in ("python", "trustml_lab", "torch", "device") if k in v)
    ['device', 'python', 'torch', 'trustml_lab']
    """
    found = {"python": platform.python_version(), "trustml_lab": __version__}
    for name in _REPORTED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["device"] = str(_best_device())
    found["threads"] = str(torch.get_num_threads())
    return found


def banner() -> str:
    """One line for the top of a notebook: the versions that matter, and the device.

    >>> banner().startswith("trustml_lab ")
    True
    """
    v = versions()
    libs = ", ".join(f"{k} {v[k]}" for k in _REPORTED if k in v and k != "torchvision")
    return (
        f"trustml_lab {v['trustml_lab']} | python {v['python']} | {libs} | "
        f"device {v['device']}, {v['threads']} threads"
    )


