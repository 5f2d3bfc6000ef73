"""Self-checks for chapter 0, Getting started."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..data import data_dir, load_adult, read_manifest, sha256_file
from ..models import MLP, save_weights
from ._core import call_learner, passed, require

__all__ = ["check_base_rates", "check_safe_loader", "check_sha256"]


def check_base_rates(answer: Mapping[str, float]) -> None:
    """Check the share of ``income == 1`` per ``sex`` in the whole Adult table.

    ``answer`` maps each sex ("Female", "Male") to its base rate (a dict or a Series).
    """
    name = "base_rates"
    require(hasattr(answer, "keys"), name, "give a dict (or Series) from sex to base rate")
    frame = load_adult()
    expected = frame.groupby("sex", observed=True)["income"].mean()
    got = {str(k): float(v) for k, v in dict(answer).items()}
    require(set(got) == set(expected.index), name,
            f"expected one entry per sex, {sorted(expected.index)}, got {sorted(got)}")
    for group, rate in expected.items():
        require(abs(got[group] - rate) < 5e-3, name,
                f"the base rate of {group} is off: got {got[group]:.4f}. The base rate is "
                "the mean of the 0/1 target within the group, over train and test together")
    passed(name, "the share of >50K incomes per sex matches")


def check_sha256(sha256_of: Callable[[Path], str]) -> None:
    """Check a learner's ``sha256_of(path) -> hex digest`` against MANIFEST and hashlib."""
    name = "sha256"
    manifest = read_manifest()
    for filename, entry in manifest.items():
        got = call_learner(name, sha256_of, data_dir() / filename)
        require(isinstance(got, str), name, f"return the hex digest as a str, got {type(got).__name__}")
        require(got == entry.sha256, name,
                f"{filename}: got {got[:16]}..., MANIFEST says {entry.sha256[:16]}.... Hash the "
                "file's bytes (open it with 'rb') and return .hexdigest()")
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.bin"
        empty.write_bytes(b"")
        got = call_learner(name, sha256_of, empty)
        require(got == sha256_file(empty), name, "an empty file has a hash too: hash zero bytes")
    passed(name, f"all {len(manifest)} data files and an empty file hash as expected")


def check_safe_loader(safe_load: Callable[[torch.nn.Module, Path, str], Any]) -> None:
    """Check a learner's ``safe_load(model, path, sha256)``.

    It must load safetensors weights into ``model`` when the file's sha256 matches,
    and raise (loading nothing) when it does not.
    """
    name = "safe_loader"
    torch.manual_seed(1)
    source = MLP(4, hidden=(8,))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        digest = save_weights(source, path)
        target = MLP(4, hidden=(8,))
        call_learner(name, safe_load, target, path, digest, allow_none=True)
        same = all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                    target.state_dict().values()))
        require(same, name, "the weights in the model differ from the file's: use "
                "safetensors.torch.load_file and model.load_state_dict")
        fresh = MLP(4, hidden=(8,))
        before = [t.clone() for t in fresh.state_dict().values()]
        refused = False
        try:
            safe_load(fresh, path, "0" * 64)
        except NotImplementedError:
            raise
        except Exception:  # refusing is what we want; any exception type is fine
            refused = True
        require(refused, name, "a file whose sha256 differs from the expected one must be refused "
                "with an exception (compare before you load)")
        unchanged = all(torch.equal(a, b) for a, b in zip(before, fresh.state_dict().values()))
        require(unchanged, name, "you raised, but only after loading the weights: check first")
    passed(name, "loads a verified file and refuses one whose sha256 differs")
