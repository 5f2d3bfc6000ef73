"""Shared test setup: one torch thread, no progress bars, quiet matplotlib, reproducible hypothesis."""

import os

os.environ.setdefault("TRUSTML_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

torch.set_num_threads(int(os.environ.get("TRUSTML_THREADS", "1")))

# Property tests: under CI the examples are derived from the test itself (derandomize), so
# a random draw can never block a landing; locally they are random, and a failure prints
# the seed and a blob to reproduce it (`@reproduce_failure`).
settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
