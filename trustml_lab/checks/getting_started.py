"""Self-checks for chapter 0, Getting started.

Each check computes its reference first, then calls the learner's function on several
cases (on copies of the inputs), and says which case failed and what came back:

- :func:`check_base_rates`: ``base_rates(frame, group, target) -> dict`` on Adult by
  sex, Adult by race and German credit by sex;
- :func:`check_sha256`: ``sha256_of(path) -> str`` on copies of every file in ``data/``,
  an empty file, a file just over 1 MiB and a path given as a ``str``;
- :func:`check_safe_loader`: ``safe_load(model, path, sha256) -> model`` with the right
  digest, nine wrong ones (each must raise ``ValueError`` and load nothing) and a pickle
  file whose digest matches (it must be refused without running it).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..data import data_dir, load_adult, load_german_credit, read_manifest, sha256_file
from ..models import MLP, save_weights
from ._core import CheckFailed, as_number, call_learner, passed, require

__all__ = ["check_base_rates", "check_safe_loader", "check_sha256"]


def _call(name: str, label: str, function: Callable[..., Any], *args: Any) -> Any:
    """:func:`call_learner`, with the case's label in its message."""
    try:
        return call_learner(name, function, *args)
    except CheckFailed as err:
        detail = str(err).split(": ", 1)[1].removeprefix("not yet. ")
        raise CheckFailed(f"{name}: not yet. {label}: {detail}") from err.__cause__


def _require_function(answer: Any, name: str, what: str) -> None:
    if answer is None:
        raise CheckFailed(f"{name}: not yet. got None; pass your function {what} itself")
    if not callable(answer):
        raise CheckFailed(f"{name}: expected a function, got {type(answer).__name__}; pass your function {what} "
                          "itself (the check calls it on several cases), not its result")


# --------------------------------------------------------------------------- exercise 1

def _base_rate_cases() -> list[tuple[str, pd.DataFrame, str, str, dict[str, float]]]:
    adult, german = load_adult(), load_german_credit()
    cases = []
    for label, frame, group, target in (("Adult by sex", adult, "sex", "income"),
                                        ("Adult by race", adult, "race", "income"),
                                        ("German credit by sex", german, "sex", "good_credit")):
        expected = frame.groupby(group, observed=True)[target].mean()
        cases.append((label, frame, group, target, {str(k): float(v) for k, v in expected.items()}))
    return cases


def _check_old_base_rates(answer: Mapping[Any, Any], name: str) -> None:
    """The exercise's earlier form, still accepted for one release: Adult's rates by sex, to 3 decimals."""
    warnings.warn("check_base_rates: the exercise now asks for the function base_rates(frame, group, target), "
                  "checked on three tables; a dict of Adult's base rates by sex is accepted for this release only",
                  FutureWarning, stacklevel=3)
    rates = next(expected for label, *_, expected in _base_rate_cases() if label == "Adult by sex")
    got = {str(k): v for k, v in answer.items()}
    require(set(got) == set(rates), name, f"expected one entry per sex, {sorted(rates)}, got {sorted(got)}")
    for group, rate in rates.items():
        value = as_number(got[group], name, f"the base rate of {group}")
        require(abs(value - rate) < 5e-3, name, f"Adult by sex: the base rate of {group} is off: got {value:.4f}, "
                f"expected {rate:.4f}. The base rate is the mean of the 0/1 target within the group, over train "
                "and test together")
    passed(name, "the share of >50K incomes per sex matches")


def check_base_rates(base_rates: Callable[[pd.DataFrame, str, str], Mapping[Any, float]]) -> None:
    """Check ``base_rates(frame, group, target)``: the share of ``target == 1`` in each group.

    It must return a dict (a pandas Series is fine too) from each group value present in
    ``frame[group]`` to the mean of the 0/1 column ``frame[target]`` over that group's
    rows (Python or NumPy numbers), without changing ``frame``. Cases: Adult by ``sex``
    and by ``race`` (train and test together) and German credit by ``sex``.

    The exercise's earlier form, a dict of Adult's base rates by sex (to 3 decimals), is
    still accepted in this release, with a ``FutureWarning``.
    """
    name = "base_rates"
    if isinstance(base_rates, Mapping):
        _check_old_base_rates(base_rates, name)
        return
    _require_function(base_rates, name, "base_rates")
    cases = _base_rate_cases()  # the reference first
    for label, frame, group, target, expected in cases:
        got = _call(name, label, base_rates, frame, group, target)
        require(hasattr(got, "items"), name,
                f"{label}: return a dict (or a Series) from group to base rate, got {type(got).__name__}")
        rates = {str(k): v for k, v in got.items()}
        require(set(rates) == set(expected), name,
                f"{label}: expected one entry per group, {sorted(expected)}, got {sorted(rates)}")
        for group_value, rate in expected.items():
            value = as_number(rates[group_value], name, f"the base rate of {group_value}")
            require(not math.isnan(value), name, f"{label}: the base rate of {group_value} is NaN: is the group "
                    "empty in your computation?")
            hint = ("; that is the share of target == 0: take the mean of the target itself"
                    if abs(value - (1 - rate)) < 1e-6 else
                    ". The base rate is the mean of the 0/1 target over the group's rows, here over the whole "
                    "table (Adult: train and test together)")
            require(abs(value - rate) < 1e-6, name,
                    f"{label}: the base rate of {group_value} is off: got {value:.4f}, expected {rate:.4f}{hint}")
    passed(name, "base rates match pandas' groupby on Adult by sex, Adult by race and German credit by sex")


# --------------------------------------------------------------------------- exercise 2

def _files_to_hash(folder: Path) -> list[tuple[str, Path | str]]:
    """Copies of every data file, an empty file and a file just over 1 MiB; the last case as a str path."""
    cases: list[tuple[str, Path | str]] = []
    for filename in sorted(read_manifest()):
        source = data_dir() / filename
        if source.is_file():
            (folder / filename).parent.mkdir(parents=True, exist_ok=True)  # model folders: "name/file"
            shutil.copyfile(source, folder / filename)
            cases.append((f"data/{filename}", folder / filename))
    (folder / "empty.bin").write_bytes(b"")
    cases.append(("an empty file", folder / "empty.bin"))
    (folder / "over_1_MiB.bin").write_bytes(bytes(range(256)) * 4096 + b"!")
    cases.append(("a file of 1 MiB + 1 byte", folder / "over_1_MiB.bin"))
    cases.append(("a path given as a str", str(folder / "over_1_MiB.bin")))
    return cases


def check_sha256(sha256_of: Callable[[Path], str]) -> None:
    """Check ``sha256_of(path) -> str``: the file's SHA-256 as 64 lowercase hex digits.

    ``path`` is a ``pathlib.Path`` or a ``str``. Cases: copies of every file in ``data/``,
    an empty file, a file of 1 MiB + 1 byte (a chunked read must not lose the last
    chunk) and a ``str`` path; each digest is compared with hashlib's, and the file must
    be left unchanged. The check compares digests only; it does not measure memory.
    """
    name = "sha256"
    _require_function(sha256_of, name, "sha256_of")
    with tempfile.TemporaryDirectory() as tmp:
        cases = _files_to_hash(Path(tmp))
        expected = {label: sha256_file(path) for label, path in cases}  # the reference first
        for label, path in cases:
            got = _call(name, label, sha256_of, path)
            require(sha256_file(path) == expected[label], name,
                    f"{label}: your function changed the file it was given; open it for reading only, with 'rb'")
            if isinstance(got, bytes):
                raise CheckFailed(f"{name}: not yet. {label}: you returned the raw digest bytes; return the text "
                                  "form, .hexdigest()")
            require(isinstance(got, str), name, f"{label}: return the hex digest as a str, got {type(got).__name__}")
            require(got.lower() != expected[label] or got == expected[label], name,
                    f"{label}: write the digest in lowercase, as .hexdigest() does")
            require(got == expected[label], name,
                    f"{label}: got {got[:16]}... ({len(got)} characters), expected {expected[label][:16]}... "
                    "(64). Hash the file's bytes (open it with 'rb'), every chunk, and return .hexdigest()")
    passed(name, f"{len(cases)} digests equal hashlib's: every file of data/, an empty file, "
                 "a file just over 1 MiB and a str path")


# --------------------------------------------------------------------------- exercise 3

_RAN: list[str] = []


def _ran_while_loading() -> None:
    """Called only if someone unpickles the check's booby-trapped file: proof that its code ran."""
    _RAN.append("ran")


class _Trap:
    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return (_ran_while_loading, ())


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _refusal(name: str, safe_load: Callable[..., Any], *args: Any) -> BaseException | None:
    """Call the learner's function; return the exception it raised (None if it returned)."""
    try:
        safe_load(*args)
    except NotImplementedError as err:
        raise CheckFailed(f"{name}: your function still raises NotImplementedError; replace "
                          "`raise NotImplementedError()` with your code") from err
    except Exception as err:  # noqa: BLE001 - which exception it is, is what the check looks at
        return err
    return None


def check_safe_loader(safe_load: Callable[[torch.nn.Module, Path, str], torch.nn.Module]) -> None:
    """Check ``safe_load(model, path, sha256) -> model``.

    ``sha256`` is the expected digest, 64 lowercase hex digits as ``hexdigest()`` writes
    them. The function must load the safetensors file ``path`` into ``model`` and return
    ``model`` when the file's digest equals ``sha256``, and otherwise raise ``ValueError``
    before loading anything. Cases, in this order: the right digest; nine wrong ones
    (zeros, another file's digest, a swapped file, the right digest truncated to 63 and
    to 16 digits, with one digit more, empty, in capitals, with its last digit changed),
    each of which must raise ``ValueError`` and leave the model unchanged; and a pickle
    file (a ``torch.save`` checkpoint) whose digest matches, which must be refused (any
    exception, such as safetensors' own error) without running the code inside it.
    """
    name = "safe_loader"
    _require_function(safe_load, name, "safe_load")
    with torch.random.fork_rng(devices=[]):  # leave the learner's random state alone
        torch.manual_seed(1)
        source, other, target, fresh = (MLP(4, hidden=(8,)) for _ in range(4))
    with tempfile.TemporaryDirectory() as tmp:
        # the pickle is named as pickled checkpoints often are (torch.load reads a ".safetensors" name as safetensors)
        good, swapped, trap = Path(tmp) / "weights.safetensors", Path(tmp) / "other.safetensors", \
            Path(tmp) / "pytorch_model.bin"
        digest, other_digest = save_weights(source, good), save_weights(other, swapped)
        torch.save({"state_dict": source.state_dict(), "payload": _Trap()}, trap)  # a pickle, as torch.save writes
        trap_digest = hashlib.sha256(trap.read_bytes()).hexdigest()
        last = "0" if digest[-1] != "0" else "1"
        wrong = [
            ("a digest of zeros", good, "0" * 64),
            ("the digest of another weight file", good, other_digest),
            ("a swapped file (path holds other weights, sha256 is the expected file's)", swapped, digest),
            ("the right digest truncated to 63 digits", good, digest[:63]),
            ("the right digest cut to its first 16 digits", good, digest[:16]),
            ("the right digest with one digit more", good, digest + "0"),
            ("an empty digest", good, ""),
            ("the right digest in capitals", good, digest.upper()),
            ("the right digest with its last digit changed", good, digest[:-1] + last),
        ]
        expected = _weights(source)  # the reference first

        result = _call(name, "the right digest", safe_load, target, good, digest)
        require(_same(_weights(target), expected), name,
                "the right digest: the weights in the model differ from the file's; use "
                "safetensors.torch.load_file and model.load_state_dict")
        require(result is target, name, f"the right digest: return the model you loaded into, got "
                f"{type(result).__name__}")

        before = _weights(fresh)
        for label, path, sha256 in wrong:
            error = _refusal(name, safe_load, fresh, path, sha256)
            require(error is not None, name, f"{label}: your function did not raise; compare the file's digest "
                    "with sha256 exactly (==) and raise ValueError when they differ")
            require(isinstance(error, ValueError), name,
                    f"{label}: your function raised {type(error).__name__} ({error}); raise ValueError, as the "
                    "exercise asks")
            require(_same(_weights(fresh), before), name,
                    f"{label}: you raised, but only after loading the weights; compare first, then load")

        _RAN.clear()
        error = _refusal(name, safe_load, fresh, trap, trap_digest)
        ran = bool(_RAN)
        _RAN.clear()
        require(not ran, name, "a pickle file with the right digest: your function unpickled it and the code "
                "inside it ran (torch.load or pickle.load); load with safetensors.torch.load_file, which reads "
                "tensors only")
        require(error is not None and _same(_weights(fresh), before), name,
                "a pickle file with the right digest: your function loaded it; a matching digest says the file "
                "is the one expected, not that it is safe: read it with safetensors.torch.load_file only")
    passed(name, f"loads a verified file, refuses {len(wrong)} wrong digests with ValueError before loading, "
                 "and refuses a pickle without running it")
