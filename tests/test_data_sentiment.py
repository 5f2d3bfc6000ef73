"""trustml_lab.data.load_sentiment and the sentiment files: counts, labels, the fixed split, no identifiers."""

import gzip
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from trustml_lab import data

ROOT = Path(__file__).resolve().parents[1]
FILES = {source: f"sentiment_{source}.tsv.gz" for source in data.SENTIMENT_SOURCES}
ROWS = {"movies": 10605, "tweets": 4200, "amazon": 3708, "nyt": 5190}


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    target = tmp_path / "data"
    shutil.copytree(data.data_dir(), target)
    monkeypatch.setenv("TRUSTML_DATA", str(target))
    return target


@pytest.mark.parametrize("source", data.SENTIMENT_SOURCES)
def test_every_sentence_is_there_with_its_rating(source):
    manifest = data.read_manifest()[FILES[source]]
    assert manifest.rows == ROWS[source] and manifest.columns == 3
    assert manifest.license.startswith("MIT")
    everything = data.load_sentiment(source, min_abs_rating=0.0)
    raw = gzip.decompress((data.data_dir() / FILES[source]).read_bytes()).decode("utf-8").splitlines()
    zero = sum(float(line.split("\t")[1]) == 0 for line in raw[1:])
    assert len(everything) == ROWS[source] - zero  # only exact zeros have no sign
    assert everything["rating"].between(-4, 4).all()
    assert everything["id"].is_unique
    assert list(everything.columns) == ["source", "id", "text", "rating", "label", "split"]


def test_label_is_the_sign_and_the_threshold_drops_near_neutral_sentences():
    for threshold in (0.0, 0.5, 1.5):
        frame = data.load_sentiment("movies", min_abs_rating=threshold)
        assert (frame["rating"].abs() >= threshold).all() and (frame["rating"] != 0).all()
        assert np.array_equal(frame["label"].to_numpy(), (frame["rating"] > 0).to_numpy().astype(np.int64))
    assert len(data.load_sentiment("movies", min_abs_rating=1.0)) < len(data.load_sentiment("movies"))


def test_split_is_fixed_and_does_not_move_with_the_threshold():
    wide = data.load_sentiment("all", min_abs_rating=0.0).set_index(["source", "id"])["split"]
    narrow = data.load_sentiment("all", min_abs_rating=1.0).set_index(["source", "id"])["split"]
    assert (wide.loc[narrow.index] == narrow).all()
    for source in data.SENTIMENT_SOURCES:
        share = (data.load_sentiment(source, min_abs_rating=0.0)["split"] == "test").mean()
        assert abs(share - data.SENTIMENT_TEST_FRACTION) < 0.01
    again = data.load_sentiment("movies")
    assert again.equals(data.load_sentiment("movies"))


def test_all_is_the_four_sources_together():
    together = data.load_sentiment("all")
    parts = [data.load_sentiment(s) for s in data.SENTIMENT_SOURCES]
    assert len(together) == sum(len(p) for p in parts)
    assert together["source"].value_counts().to_dict() == {p["source"][0]: len(p) for p in parts}


def test_no_personal_identifiers_in_the_shipped_text():
    handle = re.compile(r"@\w+")
    url = re.compile(r"https?://\S+|www\.\S+", re.I)
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
    for filename in [*FILES.values(), "sentiment_lexicon.tsv.gz"]:
        text = gzip.decompress((data.data_dir() / filename).read_bytes()).decode("utf-8")
        assert set(handle.findall(text)) <= {"@user"}, filename
        assert {re.sub(r"[^\w:/.]+$", "", u).rstrip(".") for u in url.findall(text)} <= {"http://url"}, filename
        assert not email.findall(text), filename
    tweets = data.load_sentiment("tweets", min_abs_rating=0.0)["text"]
    assert tweets.str.contains("@user").sum() > 1000  # the placeholders are there


def test_scrub_replaces_handles_urls_and_emails():
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_data

    assert build_data.scrub("@anon see www.x.com/a, mail a.b@c.org &amp; http://url_removed!") == \
        "@user see http://url, mail [email] & http://url!"
    assert build_data.scrub("plain text") == "plain text"


def test_altered_or_missing_file_is_named(data_copy):
    path = data_copy / FILES["tweets"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataIntegrityError, match=FILES["tweets"]):
        data.load_sentiment("tweets")
    (data_copy / FILES["nyt"]).unlink()
    with pytest.raises(FileNotFoundError, match=FILES["nyt"]):
        data.load_sentiment("nyt")


@pytest.mark.parametrize("kwargs, name, error", [
    ({"source": "imdb"}, "source", ValueError),
    ({"source": 3}, "source", ValueError),
    ({"min_abs_rating": -0.5}, "min_abs_rating", ValueError),
    ({"min_abs_rating": 4.5}, "min_abs_rating", ValueError),
    ({"min_abs_rating": float("nan")}, "min_abs_rating", ValueError),
    ({"min_abs_rating": "1"}, "min_abs_rating", TypeError),
])
def test_bad_arguments_are_refused(kwargs, name, error):
    with pytest.raises(error, match=name):
        data.load_sentiment(**kwargs)


def test_lexicon_has_the_rated_words():
    lexicon = data.load_sentiment_lexicon()
    assert len(lexicon) == data.read_manifest()["sentiment_lexicon.tsv.gz"].rows
    assert lexicon["valence"].between(-4, 4).all() and (lexicon["sd"] >= 0).all()
    assert lexicon.set_index("token").loc["horrible", "valence"] < 0 < lexicon.set_index("token").loc["good", "valence"]
