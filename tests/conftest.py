"""Shared test setup: one torch thread, no progress bars, quiet matplotlib."""

import os

os.environ.setdefault("TRUSTML_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("TRUSTML_THREADS", "1")))
