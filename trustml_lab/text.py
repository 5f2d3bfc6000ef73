"""Chapter 5, trustworthy transformers: a small BERT for sentiment, its bias, explanations and attacks.

The chapter's model is a Hugging Face ``BertForSequenceClassification`` with a WordPiece
tokenizer, trained once by ``scripts/reference_models/text.py`` and shipped in ``data/`` as
a model folder (``config.json``, tokenizer files, ``model.safetensors``), every file pinned
by sha256 in ``data/MANIFEST``. Every kernel is batched over sentences and runs on the
model's device:

==================================  ====================================================================
function                            what it computes (reference)
==================================  ====================================================================
:func:`load_text_model`             a pinned, safetensors-only model folder (no pickle, no network)
:func:`encode_text`                 padded ``input_ids``, ``attention_mask``, ``token_type_ids``,
                                    ``position_ids`` (batch dimension, contiguous)
:func:`predict_text_proba`          class probabilities of sentences
:func:`identity_templates`          Dixon et al. (2018) and Kiritchenko and Mohammad (2018) style
                                    template sentences, label known by construction
:func:`subgroup_aucs`               subgroup, BPSN and BNSP AUC (Borkan et al. 2019), equal to
                                    scikit-learn's ``roc_auc_score`` on the subsets
:func:`counterfactual_sentences`    identity-term swaps of sentences
:func:`counterfactual_gap`          the counterfactual token fairness gap (Garg et al. 2019)
:func:`token_attributions`          integrated gradients on the word embeddings, equal to captum's
                                    ``LayerIntegratedGradients`` on ``bert.embeddings.word_embeddings``
:func:`attention_rollout`           attention rolled out through the layers (Abnar and Zuidema 2020)
:func:`last_layer_attention`        the last layer's attention from ``[CLS]``; neither is an
                                    explanation without a check (Jain and Wallace 2019)
:func:`substitution_candidates`     the attack's word-substitution constraint
:func:`substitution_attack`         HotFlip-style first-order ranking, then an exact check
                                    (Ebrahimi et al. 2018), robust accuracy against swaps
:class:`TokenIdsClassifier`         the BERT as a module from token ids to logits, for DP-SGD
                                    (``trustml_lab.privacy``) and Opacus
==================================  ====================================================================

Hugging Face's libraries are imported when first needed, with ``HF_HUB_OFFLINE=1`` set
first: nothing here touches the network. Differentially private fine-tuning (Opacus and
the per-sample gradients of ``trustml_lab.privacy``) needs ``position_ids`` and
``token_type_ids`` with a batch dimension, passed explicitly and contiguous (Opacus issue
#841): :func:`encode_text` and :class:`TokenIdsClassifier` build them so.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._validation import (
    as_tensor,
    check_binary,
    check_in_range,
    check_int,
    check_labels,
    check_model,
    check_same_length,
    describe,
    eval_mode,
    model_device,
)
from .data import DataIntegrityError, data_dir, load_sentiment_lexicon, read_manifest, sha256_file

__all__ = [
    "CounterfactualGap",
    "IDENTITY_TERMS",
    "SENTIMENT_WORDS",
    "SubgroupAUCs",
    "SubstitutionAttack",
    "SubstitutionCandidates",
    "TEMPLATES",
    "TextBatch",
    "TextModel",
    "TokenAttributions",
    "TokenIdsClassifier",
    "attention_rollout",
    "counterfactual_gap",
    "counterfactual_sentences",
    "encode_text",
    "folder_hashes",
    "identity_templates",
    "last_layer_attention",
    "load_text_model",
    "predict_text_proba",
    "subgroup_aucs",
    "substitution_attack",
    "substitution_candidates",
    "token_attributions",
]

#: The shipped model folders in ``data/`` (see ``data/README.md``).
DEFAULT_MODEL = "sentiment_bert"
#: Integration rules of :func:`token_attributions`, named as in captum.
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
#: Files a model folder may hold; anything else (``pytorch_model.bin``, ``*.pt``) is refused.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def _offline() -> None:
    """Tell huggingface_hub and transformers never to reach the network (before importing them)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class TextModel:
    """A classifier and its tokenizer. Unpacks like a pair: ``model, tokenizer = load_text_model()``."""

    model: nn.Module
    tokenizer: Any

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer))


def _pinned_hashes(folder: Path, sha256: Mapping[str, str] | None) -> dict[str, str]:
    """The sha256 every file of ``folder`` must have: the caller's pins, or data/MANIFEST's rows."""
    if sha256 is not None:
        if not isinstance(sha256, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in sha256.items()):
            raise TypeError(f"sha256: expected a mapping of file name to hex digest, got {describe(sha256)}")
        return dict(sha256)
    root = data_dir().resolve()
    try:
        prefix = folder.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ValueError(f"sha256: {folder} is not a shipped model in {root}; pass the sha256 of every file "
                         "you were given (sha256={'model.safetensors': '...', ...}): weights from someone "
                         "else are loaded only when pinned") from None
    rows = {name.split("/", 1)[1]: entry.sha256 for name, entry in read_manifest().items()
            if name.startswith(prefix + "/")}
    if not rows:
        raise ValueError(f"path: no file of {prefix}/ is listed in {root / 'MANIFEST'}")
    return rows


def load_text_model(path: str | os.PathLike | None = None, *,
                    sha256: Mapping[str, str] | None = None) -> TextModel:
    """Load a Hugging Face BERT classifier folder, every file checked against its pinned sha256.

    ``path``: a folder (``config.json``, ``model.safetensors``, tokenizer files), or the
    name of a shipped model in ``data/`` (default ``"sentiment_bert"``; also
    ``"sentiment_bert_cda"`` and ``"sentiment_bert_adversarial"``, see ``data/README.md``).
    Shipped folders are pinned by ``data/MANIFEST``; any other folder needs ``sha256``,
    ``{file name: hex digest}`` for each of its files, as whoever handed it over
    published them.

    Refused, before anything is read by transformers: a folder holding a file that is
    not pinned (a ``pytorch_model.bin`` pickle, which can run code when loaded), a file
    whose sha256 differs (:class:`~trustml_lab.data.DataIntegrityError`), a folder without
    ``model.safetensors``. The verified bytes are copied to a private temporary folder
    and loaded from there with ``from_pretrained(..., use_safetensors=True,
    local_files_only=True)``, so a file swapped after the check is never read, and with
    ``HF_HUB_OFFLINE=1``, so nothing is downloaded. Attention runs in the "eager"
    implementation, which can return attention weights (:func:`attention_rollout`).

    Returns a :class:`TextModel` (unpacks as ``model, tokenizer``), the model in eval mode
    on the CPU.

    >>> model, tokenizer = load_text_model()
    >>> type(model).__name__, model.training, model.config.num_labels
    ('BertForSequenceClassification', False, 2)
    >>> tokenizer("A gorgeous, witty film.")["input_ids"][:1] == [tokenizer.cls_token_id]
    True
    """
    if path is None:
        path = DEFAULT_MODEL
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a folder or a shipped model's name, got {describe(path)}")
    folder = Path(path)
    if not folder.is_absolute() and not folder.exists() and (data_dir() / folder).is_dir():
        folder = data_dir() / folder
    if not folder.is_dir():
        raise FileNotFoundError(f"path: model folder {folder} does not exist")
    pins = _pinned_hashes(folder, sha256)
    present = sorted(p.name for p in folder.iterdir())
    foreign = sorted({name for name in [*present, *pins] if name not in MODEL_FILES})
    if foreign:
        pickles = [n for n in foreign if n.endswith(PICKLE_SUFFIXES)]
        why = f" ({', '.join(pickles)}: a pickle checkpoint can run code when it is loaded)" if pickles else ""
        raise ValueError(f"path: {folder} holds {foreign}{why}; a safe model folder holds only "
                         f"{list(MODEL_FILES)}: refusing to load it")
    unpinned = [name for name in present if name not in pins]
    if unpinned:
        raise ValueError(f"path: {folder} holds files that are not pinned: {unpinned}; refusing to load it")
    missing = [name for name in pins if name not in present]
    if missing:
        raise FileNotFoundError(f"path: {folder} lacks the pinned files {missing}")
    if "model.safetensors" not in pins or "config.json" not in pins:
        raise ValueError(f"path: expected a folder with config.json and model.safetensors, got {present}")
    _offline()
    with warnings.catch_warnings():
        # tqdm's notice that Jupyter widgets are missing, raised when transformers first imports it
        warnings.filterwarnings("ignore", message="IProgress not found")
        return _load_verified(folder, pins)


def _load_verified(folder: Path, pins: dict[str, str]) -> TextModel:
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a loading bar per call would clutter every notebook
    try:
        with tempfile.TemporaryDirectory(prefix="trustml_text_") as private:
            for name, digest in pins.items():
                payload = (folder / name).read_bytes()
                actual = hashlib.sha256(payload).hexdigest()
                if actual != digest:
                    raise DataIntegrityError(f"path: {name} in {folder} has sha256 {actual}, pinned {digest}; "
                                             "refusing to load it")
                (Path(private) / name).write_bytes(payload)
            model = BertForSequenceClassification.from_pretrained(
                private, use_safetensors=True, local_files_only=True, attn_implementation="eager",
                dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(private, local_files_only=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _check_tokenizer(tokenizer, model)
    return TextModel(model.eval(), tokenizer)


def folder_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """``{file name: sha256}`` of every file in a folder: the pins to publish with a model folder.

    >>> sorted(folder_hashes(data_dir() / "sentiment_bert"))[:2]
    ['config.json', 'model.safetensors']
    """
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- encoding

@dataclass(frozen=True)
class TextBatch:
    """Padded model inputs, each ``(N, L)`` and contiguous; unpacks into a model: ``model(**batch)``.

    ``position_ids`` and ``token_type_ids`` carry the batch dimension explicitly (what
    Opacus's per-sample gradient hooks need: Opacus issue #841).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor

    def keys(self) -> tuple[str, ...]:
        return ("input_ids", "attention_mask", "token_type_ids", "position_ids")

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.input_ids)


def _is_tokenizer(tokenizer: Any) -> bool:
    return callable(tokenizer) and hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "pad_token_id")


def _check_tokenizer(tokenizer: Any, model: nn.Module | None) -> None:
    if not _is_tokenizer(tokenizer):
        raise TypeError(f"tokenizer: expected a Hugging Face tokenizer, got {describe(tokenizer)}")
    if model is None:
        return
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if vocab is None:
        raise TypeError(f"model: expected a Hugging Face BERT model with a config, got {describe(model)}")
    if len(tokenizer) > vocab:
        raise ValueError(f"tokenizer: its vocabulary has {len(tokenizer)} tokens, more than the model's "
                         f"{vocab} embeddings: it is not this model's tokenizer")
    pad = getattr(config, "pad_token_id", None)
    if pad is not None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id != pad:
        raise ValueError(f"tokenizer: its padding token id is {tokenizer.pad_token_id}, the model's is {pad}: "
                         "it is not this model's tokenizer")


def _check_sentences(sentences: Any, name: str = "sentences") -> list[str]:
    if isinstance(sentences, str):
        sentences = [sentences]
    if hasattr(sentences, "tolist") and not isinstance(sentences, list):
        sentences = sentences.tolist()
    if not isinstance(sentences, Sequence):
        raise TypeError(f"{name}: expected a list of strings, got {describe(sentences)}")
    sentences = list(sentences)
    if not sentences:
        raise ValueError(f"{name}: expected at least one sentence, got an empty list")
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TypeError(f"{name}: expected strings, got {describe(sentence)} at position {index}")
    return sentences


def _max_positions(model: nn.Module | None) -> int | None:
    return None if model is None else getattr(model.config, "max_position_embeddings", None)


def _tokenize(tokenizer: Any, sentences: list[str], model: nn.Module | None, *, truncation: bool,
              offsets: bool = False) -> Any:
    limit = _max_positions(model)
    encoded = tokenizer(sentences, padding=False, truncation=False, return_offsets_mapping=offsets)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    if limit is not None and max(lengths) > limit:
        longest = int(np.argmax(lengths))
        if not truncation:
            raise ValueError(f"sentences: sentence {longest} has {lengths[longest]} tokens, more than the model's "
                             f"{limit} positions; shorten it or pass truncation=True")
        encoded = tokenizer(sentences, padding=False, truncation=True, max_length=limit,
                            return_offsets_mapping=offsets)
    return encoded


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def _batch(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextBatch:
    n, length = input_ids.shape
    positions = torch.arange(length, device=input_ids.device).expand(n, length).contiguous()
    return TextBatch(input_ids.contiguous(), attention_mask.contiguous(),
                     torch.zeros_like(input_ids).contiguous(), positions)


def encode_text(tokenizer: Any, sentences: str | Sequence[str], *, model: nn.Module | None = None,
                truncation: bool = False) -> TextBatch:
    """Tokenize sentences and pad them to the longest one: a :class:`TextBatch` for ``model(**batch)``.

    Padding is per batch (to the longest sentence given), never to a fixed length. With
    ``model``, the tokenizer is checked against it (vocabulary size, padding id), the
    tensors land on its device, and a sentence longer than its position embeddings is
    refused (``ValueError`` naming ``sentences``) unless ``truncation=True`` cuts it.
    ``token_type_ids`` are zeros and ``position_ids`` ``0..L-1``, both ``(N, L)``
    and contiguous (the Opacus issue #841 workaround).

    >>> model, tokenizer = load_text_model()
    >>> batch = encode_text(tokenizer, ["Great.", "A dull, tired film."], model=model)
    >>> batch.input_ids.shape == batch.position_ids.shape, batch.attention_mask.sum(1).tolist()
    (True, [4, 9])
    >>> model(**batch).logits.shape
    torch.Size([2, 2])
    """
    _check_tokenizer(tokenizer, model)
    if model is not None:
        check_model(model)
    sentences = _check_sentences(sentences)
    encoded = _tokenize(tokenizer, sentences, model, truncation=bool(truncation))
    device = model_device(model) if model is not None else None
    ids, mask = _pad(encoded["input_ids"], tokenizer.pad_token_id or 0, device)
    return _batch(ids, mask)


def _num_labels(model: nn.Module) -> int:
    return int(getattr(model.config, "num_labels", 2))


def _check_text_model(model: Any, tokenizer: Any) -> nn.Module:
    check_model(model)
    if not hasattr(model, "config") or not hasattr(model, "bert"):
        raise TypeError(f"model: expected a Hugging Face BERT classifier (e.g. BertForSequenceClassification), "
                        f"got {describe(model)}")
    if tokenizer is not None:
        _check_tokenizer(tokenizer, model)
    return model


def _logits(model: nn.Module, batch: TextBatch, *, internal_batch_size: int | None = None) -> torch.Tensor:
    """Logits of a padded batch, in chunks of ``internal_batch_size`` rows, without gradients."""
    chunk = len(batch) if internal_batch_size is None else internal_batch_size
    parts = []
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            part = {k: batch[k][start:start + chunk] for k in batch.keys()}
            # drop the padding this chunk does not need (pad per batch, not to the longest overall)
            width = int(part["attention_mask"].sum(1).max())
            part = {k: v[:, :width] for k, v in part.items()}
            parts.append(model(**part).logits)
    return torch.cat(parts)


def predict_text_proba(model: nn.Module, tokenizer: Any, sentences: str | Sequence[str], *,
                       internal_batch_size: int = 256, truncation: bool = False) -> torch.Tensor:
    """Class probabilities ``softmax(logits)`` of each sentence, shape ``(N, num_labels)``.

    Sentences go through the model in eval mode, ``internal_batch_size`` at a time, sorted
    by length so that each chunk is padded only to its own longest sentence; results come
    back in the input order, on the model's device. The model's mode is restored.

    >>> model, tokenizer = load_text_model()
    >>> proba = predict_text_proba(model, tokenizer, ["A gorgeous, witty, moving film.", "Dull and lifeless."])
    >>> proba.argmax(1).tolist()
    [1, 0]
    """
    _check_text_model(model, tokenizer)
    internal_batch_size = check_int(internal_batch_size, "internal_batch_size")
    sentences = _check_sentences(sentences)
    encoded = _tokenize(tokenizer, sentences, model, truncation=bool(truncation))
    rows = encoded["input_ids"]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    ids, mask = _pad([rows[i] for i in order], tokenizer.pad_token_id or 0, model_device(model))
    with eval_mode(model):
        logits = _logits(model, _batch(ids, mask), internal_batch_size=internal_batch_size)
    proba = torch.softmax(logits, dim=1)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(order)] = torch.arange(len(order))
    return proba[inverse.to(proba.device)]


# --------------------------------------------------------------------------- identity templates

#: Identity terms, as adjectives, by axis. Sources: the identity-term list of Dixon et al.
#: (2018, "Measuring and Mitigating Unintended Bias in Text Classification") for gender,
#: religion and nationality; written as the groups' own respectful self-descriptions.
IDENTITY_TERMS: dict[str, tuple[str, ...]] = {
    "gender": ("female", "male", "nonbinary"),
    "religion": ("Christian", "Muslim", "Jewish", "Hindu", "Buddhist", "Sikh", "atheist"),
    "nationality": ("American", "Mexican", "Chinese", "Indian", "Nigerian", "French", "Iranian", "Canadian"),
}

#: Sentiment words by family and label. ``emotion`` and ``situation``: a balanced subset of
#: the Equity Evaluation Corpus words (Kiritchenko and Mohammad 2018: joy words positive;
#: anger, fear and sadness words negative); ``adjective``: evaluative adjectives of the kind
#: Dixon et al. (2018) put in their templates.
SENTIMENT_WORDS: dict[str, dict[int, tuple[str, ...]]] = {
    "emotion": {1: ("happy", "glad", "excited", "relieved", "ecstatic"),
                0: ("angry", "annoyed", "scared", "sad", "miserable")},
    "situation": {1: ("amazing", "funny", "great", "hilarious", "wonderful"),
                  0: ("irritating", "horrible", "shocking", "depressing", "gloomy")},
    "adjective": {1: ("wonderful", "brilliant", "lovely", "fantastic", "delightful"),
                  0: ("terrible", "awful", "boring", "dreadful", "painful")},
}

#: Template sentences: ``{a}`` is the indefinite article of the identity term, ``{identity}``
#: the term, ``{word}`` a sentiment word of the template's family.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{A} {identity} person feels {word}.", "emotion"),                      # EEC
    ("The situation makes the {identity} person feel {word}.", "emotion"),   # EEC
    ("The conversation with the {identity} neighbor was {word}.", "situation"),  # EEC
    ("I saw the {identity} family, and it was {word}.", "situation"),
    ("Being {identity} is {word}.", "adjective"),                            # Dixon et al.
    ("This movie about {a} {identity} family is {word}.", "adjective"),
    ("The {identity} director made a {word} film.", "adjective"),
    ("{A} {identity} critic wrote this {word} review.", "adjective"),
)


def _article(term: str) -> str:
    return "an" if term[0].lower() in "aeiou" else "a"


def identity_templates(*, axes: Sequence[str] | None = None) -> pd.DataFrame:
    """Template sentences about identity groups whose sentiment label is known by construction.

    Every template of :data:`TEMPLATES` is filled with every identity term of
    :data:`IDENTITY_TERMS` (for the chosen ``axes``, default all three) and every
    sentiment word of its family in :data:`SENTIMENT_WORDS`: the label is the word's (1
    positive, 0 negative), whatever the identity term, so a fair classifier scores the
    same sentence alike for every term. The style is that of Dixon et al. (2018; "Being
    <identity> is <adjective>") and of the Equity Evaluation Corpus (Kiritchenko and
    Mohammad 2018; "<person> feels <emotion>"); nothing is downloaded.

    Columns: ``text``, ``label``, ``axis``, ``term``, ``template`` (its index in
    :data:`TEMPLATES`), ``word``. Balanced: as many positive as negative sentences per term.

    >>> frame = identity_templates()
    >>> len(frame), float(frame["label"].mean())
    (1440, 0.5)
    >>> frame.loc[0, "text"]
    'A female person feels happy.'
    >>> identity_templates(axes=["gender"])["term"].value_counts().to_dict()
    {'female': 80, 'male': 80, 'nonbinary': 80}
    """
    if axes is None:
        axes = tuple(IDENTITY_TERMS)
    if isinstance(axes, str) or not isinstance(axes, Sequence) or not axes:
        raise TypeError(f"axes: expected a list of axes among {list(IDENTITY_TERMS)}, got {describe(axes)}")
    unknown = [a for a in axes if a not in IDENTITY_TERMS]
    if unknown:
        raise ValueError(f"axes: expected axes among {list(IDENTITY_TERMS)}, got {unknown}")
    rows = []
    for axis in axes:
        for term in IDENTITY_TERMS[axis]:
            for index, (template, family) in enumerate(TEMPLATES):
                for label in (1, 0):
                    for word in SENTIMENT_WORDS[family][label]:
                        a = _article(term)
                        text = template.format(a=a, A=a.capitalize(), identity=term, word=word)
                        rows.append((text, label, axis, term, index, word))
    return pd.DataFrame(rows, columns=["text", "label", "axis", "term", "template", "word"])


# --------------------------------------------------------------------------- subgroup AUCs

@dataclass(frozen=True)
class SubgroupAUCs:
    """Borkan et al.'s three AUCs per subgroup (float64, one entry per subgroup column).

    ``subgroup_auc``: AUC within the subgroup; ``bpsn_auc`` (background positive,
    subgroup negative): the subgroup's negatives against the background's positives;
    ``bnsp_auc``: the subgroup's positives against the background's negatives;
    ``overall_auc``: AUC of all rows. NaN where a set lacks positives or negatives.
    """

    subgroup_auc: torch.Tensor
    bpsn_auc: torch.Tensor
    bnsp_auc: torch.Tensor
    overall_auc: torch.Tensor


def _nan_where_empty(wins: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    return torch.where(pairs > 0, wins / pairs.clamp_min(1), torch.full_like(wins, float("nan")))


def subgroup_aucs(y_true: Any, scores: Any, subgroup: Any) -> SubgroupAUCs:
    """Subgroup AUC, BPSN AUC and BNSP AUC (Borkan et al. 2019) for many subgroups at once.

    ``y_true``: binary labels (N,); ``scores``: real scores (N,), higher meaning more
    positive; ``subgroup``: membership, ``(N,)`` for one subgroup or ``(N, G)`` for ``G``
    subgroups that may overlap (0/1 or booleans). For subgroup ``g`` with members ``S``
    and background ``B`` (the other rows):

    - subgroup AUC = AUC on ``S``: does the model rank within the group?
    - BPSN AUC = AUC on the negatives of ``S`` and the positives of ``B``: low when the
      group's negatives score higher than the background's positives (false positives);
    - BNSP AUC = AUC on the positives of ``S`` and the negatives of ``B``: low when the
      group's positives score lower (false negatives).

    AUC is ``P(score+ > score-) + P(score+ = score-) / 2``, computed exactly from counts
    per distinct score after one sort, for all subgroups in one pass: it equals
    scikit-learn's ``roc_auc_score`` on each subset (to 1e-12, ties included). A set
    without positives or without negatives gets NaN, as scikit-learn (which also warns)
    and the Jigsaw Unintended Bias benchmark's evaluation code give.

    >>> y = torch.tensor([0, 0, 1, 1, 0, 1])
    >>> s = torch.tensor([0.1, 0.85, 0.4, 0.9, 0.3, 0.8])
    >>> g = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> r = subgroup_aucs(y, s, g)
    >>> r.subgroup_auc, r.bpsn_auc, r.bnsp_auc
    (tensor([0.5000], dtype=torch.float64), tensor([0.7500], dtype=torch.float64), tensor([1.], dtype=torch.float64))
    """
    y = check_binary(as_tensor(y_true, "y_true", ndim=1), "y_true")
    s = as_tensor(scores, "scores", ndim=1)
    if s.dtype == torch.bool or s.is_complex():
        raise TypeError(f"scores: expected real scores, got {describe(s)}")
    members = as_tensor(subgroup, "subgroup")
    if members.ndim == 1:
        members = members[:, None]
    if members.ndim != 2:
        raise ValueError(f"subgroup: expected an (N,) or (N, G) membership array, got {describe(members)}")
    if members.dtype != torch.bool:
        members = check_binary(members, "subgroup").bool()
    n = check_same_length(y_true=y, scores=s, subgroup=members)
    if n == 0:
        raise ValueError("y_true: expected at least one row, got 0")
    device = s.device
    g = members.shape[1]
    # One sort of all scores; equal scores form a tie group (code, ascending). Per tie group k:
    # positives pos_k and negatives neg_k, and for a row of group k the pairs it wins against the
    # whole data set: positives above a negative, p_above_k, and negatives below a positive, n_below_k
    # (ties count one half).
    ordered, order = torch.sort(s)
    labels = y.to(device)[order].double()
    starts = torch.ones(n, dtype=torch.bool, device=device)
    starts[1:] = ordered[1:] != ordered[:-1]
    code = torch.cumsum(starts, 0) - 1
    k = int(code[-1]) + 1
    pos_k = torch.zeros(k, dtype=torch.float64, device=device).index_add_(0, code, labels)
    neg_k = torch.bincount(code, minlength=k).double() - pos_k
    n_pos, n_neg = pos_k.sum(), neg_k.sum()
    p_above = n_pos - (torch.cumsum(pos_k, 0) - pos_k) - 0.5 * pos_k
    n_below = (torch.cumsum(neg_k, 0) - neg_k) + 0.5 * neg_k
    overall = _nan_where_empty((pos_k * n_below).sum(), n_pos * n_neg)
    # The members of every subgroup, listed subgroup by subgroup, each in ascending score order.
    column, row = torch.nonzero(members.to(device)[order].T, as_tuple=True)
    y_e, code_e = labels[row], code[row]
    neg_e = 1 - y_e
    zeros = torch.zeros(g, dtype=torch.float64, device=device)
    n_pos_in = zeros.index_add(0, column, y_e)
    n_neg_in = torch.bincount(column, minlength=g).double() - n_pos_in
    wins_subgroup = zeros.clone()
    if len(column):
        # within a subgroup: negatives below each member (segmented cumulative sum), ties one half
        new_column = torch.ones(len(column), dtype=torch.bool, device=device)
        new_column[1:] = column[1:] != column[:-1]
        seen = torch.cumsum(neg_e, 0)
        before = (seen - neg_e)[new_column][torch.cumsum(new_column, 0) - 1]
        inclusive = seen - before
        exclusive = inclusive - neg_e
        new_tie = new_column.clone()
        new_tie[1:] |= code_e[1:] != code_e[:-1]
        tie = torch.cumsum(new_tie, 0) - 1
        first = torch.nonzero(new_tie).flatten()
        last = torch.cat([first[1:] - 1, first.new_tensor([len(column) - 1])])
        wins_below = 0.5 * (exclusive[first] + inclusive[last])[tie]
        wins_subgroup = zeros.index_add(0, column, y_e * wins_below)
    # BPSN: the subgroup's negatives against the background's positives = (against all positives)
    # minus (against the subgroup's positives); BNSP likewise.
    wins_bpsn = zeros.index_add(0, column, neg_e * p_above[code_e]) - wins_subgroup
    wins_bnsp = zeros.index_add(0, column, y_e * n_below[code_e]) - wins_subgroup
    return SubgroupAUCs(
        subgroup_auc=_nan_where_empty(wins_subgroup, n_pos_in * n_neg_in),
        bpsn_auc=_nan_where_empty(wins_bpsn, (n_pos - n_pos_in) * n_neg_in),
        bnsp_auc=_nan_where_empty(wins_bnsp, n_pos_in * (n_neg - n_neg_in)),
        overall_auc=overall,
    )


# --------------------------------------------------------------------------- counterfactual fairness

def _term_pattern(term: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])", re.IGNORECASE)


def _check_swaps(swaps: Any) -> tuple[str, ...]:
    if isinstance(swaps, str) or not isinstance(swaps, Sequence):
        raise TypeError(f"swaps: expected a list of identity terms (e.g. IDENTITY_TERMS['religion']), "
                        f"got {describe(swaps)}")
    terms = tuple(swaps)
    if not all(isinstance(t, str) and t.strip() for t in terms):
        raise TypeError(f"swaps: expected non-empty strings, got {describe(swaps)}")
    if len({t.lower() for t in terms}) != len(terms) or len(terms) < 2:
        raise ValueError(f"swaps: expected at least two distinct terms, got {list(terms)}")
    return terms


def _match_case(replacement: str, original: str) -> str:
    """``replacement`` written like ``original``: UPPER, Capitalized or lower case."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement.lower() if original.islower() else replacement


def counterfactual_sentences(sentences: str | Sequence[str], swaps: Sequence[str]) -> list[tuple[str, ...]]:
    """Each sentence rewritten with each identity term of ``swaps``: ``out[i][t]`` uses ``swaps[t]``.

    In each sentence, the term of ``swaps`` that occurs first (whole word,
    case-insensitive) is the sentence's own; every occurrence of it is replaced by each
    term in turn, written like the original (UPPER, Capitalized or lower case), so ``out[i]`` holds the
    original sentence at its own term's position. A sentence with none of the terms is
    refused (``ValueError`` naming ``sentences``).

    >>> counterfactual_sentences(["Muslim families loved it."], ["Christian", "Muslim", "Jewish"])
    [('Christian families loved it.', 'Muslim families loved it.', 'Jewish families loved it.')]
    """
    return _variants(_check_sentences(sentences), _check_swaps(swaps))[0]


def _variants(sentences: list[str], terms: tuple[str, ...]) -> tuple[list[tuple[str, ...]], list[int]]:
    """Every sentence with every term, and the index of each sentence's own term."""
    patterns = [_term_pattern(t) for t in terms]
    out, own = [], []
    for index, sentence in enumerate(sentences):
        found = [(m.start(), t) for t, p in enumerate(patterns) if (m := p.search(sentence))]
        if not found:
            raise ValueError(f"sentences: sentence {index} ({sentence[:40]!r}) contains none of the terms "
                             f"{list(terms)}")
        first = min(found)[1]
        own.append(first)
        out.append(tuple(patterns[first].sub(lambda m, r=r: _match_case(r, m.group(0)), sentence) for r in terms))
    return out, own


@dataclass(frozen=True)
class CounterfactualGap:
    """Scores of each sentence under each identity term, and the counterfactual gap.

    ``scores[i, t]``: the model's probability of class ``target`` for sentence ``i``
    rewritten with ``terms[t]``; ``own[i]``: the index of the term sentence ``i`` had;
    ``gap[i]``: ``mean_{t != own} |scores[i, t] - scores[i, own]|`` (Garg et al. 2019).
    """

    terms: tuple[str, ...]
    scores: torch.Tensor
    own: torch.Tensor
    gap: torch.Tensor


def counterfactual_gap(model: nn.Module, tokenizer: Any, sentences: str | Sequence[str],
                       swaps: Sequence[str], *, target: int = 1, internal_batch_size: int = 256) -> CounterfactualGap:
    """Counterfactual token fairness (Garg et al. 2019): how much the score moves when only the identity term does.

    Every sentence is rewritten with every term of ``swaps``
    (:func:`counterfactual_sentences`), all ``N x T`` variants are scored in one batched
    pass (:func:`predict_text_proba`, probability of class ``target``), and the gap of
    sentence ``i`` is ``mean_{t != own} |f(x_i with term t) - f(x_i)|``. A model that
    ignores identity terms has gap 0; a swap-invariant model (trained with counterfactual
    data augmentation) is pushed toward it.

    >>> model, tokenizer = load_text_model()
    >>> result = counterfactual_gap(model, tokenizer, ["A Muslim director made a brilliant film."],
    ...                             ["Christian", "Muslim", "Jewish"])
    >>> result.scores.shape, result.own.tolist(), bool(result.gap[0] >= 0)
    (torch.Size([1, 3]), [1], True)
    """
    _check_text_model(model, tokenizer)
    target = check_int(target, "target", low=0, high=_num_labels(model) - 1)
    internal_batch_size = check_int(internal_batch_size, "internal_batch_size")
    terms = _check_swaps(swaps)
    sentences = _check_sentences(sentences)
    variants, own_index = _variants(sentences, terms)  # row i holds sentence i itself at its own term
    flat = [v for row in variants for v in row]
    proba = predict_text_proba(model, tokenizer, flat, internal_batch_size=internal_batch_size)[:, target]
    scores = proba.reshape(len(sentences), len(terms))
    own = torch.tensor(own_index, device=scores.device)
    gap = (scores - scores.gather(1, own[:, None])).abs().sum(dim=1) / (len(terms) - 1)
    return CounterfactualGap(terms, scores, own, gap)


# --------------------------------------------------------------------------- token attributions

@dataclass(frozen=True)
class TokenAttributions:
    """Integrated gradients of each token, and the completeness check.

    ``attributions``: ``(N, L)``, the sum over the embedding dimensions of
    ``embedding_attributions`` ``(N, L, H)``; ``delta``: ``(N,)``,
    ``sum(attributions) - (f(x) - f(baseline))``, the error of the integral
    (Sundararajan et al.'s completeness axiom; captum's convergence delta).
    """

    attributions: torch.Tensor
    embedding_attributions: torch.Tensor
    delta: torch.Tensor


def _check_input_ids(model: nn.Module, input_ids: Any, name: str = "input_ids") -> torch.Tensor:
    ids = as_tensor(input_ids, name)
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name}: expected integer token ids, got {describe(ids)}")
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, L) batch of token ids, got {describe(ids)}")
    vocab = model.config.vocab_size
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        raise ValueError(f"{name}: expected token ids in 0..{vocab - 1} (the model's vocabulary), "
                         f"got values in [{low}, {high}]: is it this model's tokenizer?")
    limit = _max_positions(model)
    if limit is not None and ids.shape[1] > limit:
        raise ValueError(f"{name}: expected at most {limit} tokens (the model's positions), got {ids.shape[1]}")
    return ids.long().to(model_device(model))


def _check_mask(model: nn.Module, attention_mask: Any, ids: torch.Tensor) -> torch.Tensor:
    if attention_mask is None:
        pad = model.config.pad_token_id
        return (ids != pad).long() if pad is not None else torch.ones_like(ids)
    mask = as_tensor(attention_mask, "attention_mask")
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(f"attention_mask: expected the shape of input_ids, {tuple(ids.shape)}, got {describe(mask)}")
    mask = check_binary(mask, "attention_mask")
    if bool((mask.sum(1) == 0).any()):
        raise ValueError("attention_mask: expected at least one attended token per row, got an all-zero row")
    return mask.to(ids.device)


def _pad_baseline(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference input: every token PAD except the first ([CLS]) and the last attended one ([SEP])."""
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    baseline = torch.where(mask.bool(), torch.full_like(ids, pad), ids)
    last = mask.sum(1) - 1
    rows = torch.arange(len(ids), device=ids.device)
    baseline[:, 0] = ids[:, 0]
    baseline[rows, last] = ids[rows, last]
    return baseline


def _target_logits(model: nn.Module, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits.gather(1, target[:, None])[:, 0]


def token_attributions(model: nn.Module, input_ids: Any, *, target: int | Any, attention_mask: Any = None,
                       steps: int = 50, method: str = "gausslegendre", baseline_ids: Any = None,
                       internal_batch_size: int | None = None) -> TokenAttributions:
    """Integrated gradients (Sundararajan et al. 2017) of a BERT classifier's logit, on its word embeddings.

    With ``E(x)`` the word embeddings of ``input_ids`` and ``E(b)`` those of the reference
    input ``baseline_ids``, token ``j``'s attribution is
    ``sum_h (E(x) - E(b))_jh * integral_0^1 d f(E(b) + a (E(x) - E(b))) / d E_jh da``,
    ``f`` the logit of class ``target`` (keyword-only: an int or one per row). Position
    and token-type embeddings are added after the interpolated word embeddings, as in the
    model. The default reference keeps ``[CLS]`` (first token) and ``[SEP]`` (last
    attended token) and replaces every other token by ``[PAD]`` (the model's
    ``pad_token_id``), with the same ``attention_mask``: the reference of captum's BERT
    tutorial. The integral uses ``method`` with ``steps`` points (captum's rules, from
    :mod:`trustml_lab.interpret`); all ``steps x N`` path points go through the model at
    once, or at most ``internal_batch_size`` at a time (at least one sentence at one
    step). Sentences of similar length share a pass, trimmed to their longest attended
    token: the padding after it changes nothing the model computes for their tokens.

    Equals captum's ``LayerIntegratedGradients(forward, model.bert.embeddings.word_embeddings)
    .attribute(input_ids, baselines=baseline_ids, target=target,
    additional_forward_args=(attention_mask,), n_steps=steps, method=method,
    return_convergence_delta=True)`` (to 1e-5), ``forward(ids, mask) = model(input_ids=ids,
    attention_mask=mask).logits``, summed over the embedding dimension for
    ``attributions``. Gradients are taken with respect to the embeddings only; the
    model's mode is restored.

    >>> model, tokenizer = load_text_model()
    >>> batch = encode_text(tokenizer, ["A gorgeous, witty film."], model=model)
    >>> result = token_attributions(model, batch.input_ids, target=1, attention_mask=batch.attention_mask)
    >>> result.attributions.shape, bool(result.delta.abs().max() < 1e-3)
    (torch.Size([1, 9]), True)
    """
    from .interpret import _quadrature

    _check_text_model(model, None)
    ids = _check_input_ids(model, input_ids)
    mask = _check_mask(model, attention_mask, ids)
    n, length = ids.shape
    labels = _as_target(model, target, n, ids.device)
    steps = check_int(steps, "steps")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if internal_batch_size is not None:
        internal_batch_size = check_int(internal_batch_size, "internal_batch_size")
    baseline = _pad_baseline(model, ids, mask) if baseline_ids is None else \
        _check_input_ids(model, baseline_ids, "baseline_ids")
    if baseline.shape != ids.shape:
        raise ValueError(f"baseline_ids: expected the shape of input_ids, {tuple(ids.shape)}, got "
                         f"{tuple(baseline.shape)}")
    alphas, weights = _quadrature(method, steps)
    embeddings = model.bert.embeddings.word_embeddings
    with eval_mode(model):
        with torch.no_grad():
            start, end = embeddings(baseline), embeddings(ids)
        dtype = end.dtype
        alphas_t = torch.as_tensor(alphas, dtype=dtype, device=ids.device)
        weights_t = torch.as_tensor(weights, dtype=dtype, device=ids.device)
        difference = end - start
        # padding after a row's last attended token changes nothing the model computes for the
        # row's own tokens: each pass holds rows of similar extent, trimmed to the longest
        positions = torch.arange(1, length + 1, device=ids.device)
        extent = (mask.bool() * positions).amax(dim=1).clamp_min(1)
        order = torch.argsort(extent, stable=True)
        budget = steps * n if internal_batch_size is None else internal_batch_size
        rows_per_block = max(1, min(n, budget // steps))
        total = torch.zeros_like(end)
        for block_start in range(0, n, rows_per_block):
            rows = order[block_start:block_start + rows_per_block]
            r, width = len(rows), int(extent[rows].max())
            block_start_emb, block_difference = start[rows, :width], difference[rows, :width]
            block_batch = _batch(ids[rows, :width], mask[rows, :width])
            chunk = max(1, budget // r)
            block_total = torch.zeros_like(block_difference)
            for first in range(0, steps, chunk):
                a, w = alphas_t[first:first + chunk], weights_t[first:first + chunk]
                k = len(a)
                path = (block_start_emb[None] + a.view(-1, 1, 1, 1) * block_difference[None]).reshape(k * r, width, -1)
                path.requires_grad_(True)
                inputs = {"inputs_embeds": path, "attention_mask": block_batch.attention_mask.repeat(k, 1),
                          "token_type_ids": block_batch.token_type_ids.repeat(k, 1),
                          "position_ids": block_batch.position_ids.repeat(k, 1)}
                out = _target_logits(model, labels[rows].repeat(k), inputs)
                (gradient,) = torch.autograd.grad(out.sum(), path)
                block_total = block_total + (gradient.view(k, r, width, -1) * w.view(-1, 1, 1, 1)).sum(dim=0)
            total[rows, :width] = block_total
        attributions = (total * difference).detach()
        with torch.no_grad():
            both = _batch(torch.cat([ids, baseline]), torch.cat([mask, mask]))
            ends = _target_logits(model, labels.repeat(2), {k: both[k] for k in both.keys()})
    delta = attributions.sum(dim=(1, 2)) - (ends[:n] - ends[n:])
    return TokenAttributions(attributions.sum(dim=2), attributions, delta)


def _as_target(model: nn.Module, target: Any, n: int, device: torch.device) -> torch.Tensor:
    classes = _num_labels(model)
    if isinstance(target, (int, np.integer)) and not isinstance(target, (bool, np.bool_)):
        target = check_int(target, "target", low=0, high=classes - 1)
        return torch.full((n,), target, dtype=torch.long, device=device)
    if target is None or isinstance(target, (bool, np.bool_, float, np.floating, str)):
        raise TypeError(f"target: expected a class index or one per row, got {describe(target)}")
    labels = check_labels(target, "target", num_classes=classes, device=device)
    if len(labels) != n:
        raise ValueError(f"target: expected one class per row ({n}), got {len(labels)}")
    return labels


# --------------------------------------------------------------------------- attention

def _attentions(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every layer's attention probabilities ``(N, heads, L, L)``, in the eager implementation."""
    config = model.config
    previous = getattr(config, "_attn_implementation", "eager")
    switch = previous != "eager" and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        with eval_mode(model), torch.no_grad():
            batch = _batch(ids, mask)
            out = model(**{k: batch[k] for k in batch.keys()}, output_attentions=True)
    finally:
        if switch:
            model.set_attn_implementation(previous)
    if not out.attentions:
        raise ValueError("model: it returned no attention weights; load it with attn_implementation='eager'")
    return out.attentions


def attention_rollout(model: nn.Module, input_ids: Any, *, attention_mask: Any = None) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema 2020): how much [CLS] attends to each token, through all layers.

    Each layer's attention is averaged over heads, mixed with the identity for the
    residual connection and renormalized, ``A'_l = (A_l + I) / 2`` (rows sum to 1), and
    the layers are multiplied, ``R = A'_L ... A'_1``; the result is row 0 of ``R``
    (``[CLS]``, which the classifier reads), shape ``(N, L)``, rows summing to 1, zero on
    padding. Attention weights say where information flows, not what the prediction
    depends on: compare with :func:`token_attributions` before trusting them (Jain and
    Wallace 2019).

    >>> model, tokenizer = load_text_model()
    >>> batch = encode_text(tokenizer, ["A gorgeous, witty film.", "Dull."], model=model)
    >>> rollout = attention_rollout(model, batch.input_ids, attention_mask=batch.attention_mask)
    >>> rollout.shape, torch.allclose(rollout.sum(1), torch.ones(2)), float(rollout[1, 5:].abs().sum())
    (torch.Size([2, 9]), True, 0.0)
    """
    _check_text_model(model, None)
    ids = _check_input_ids(model, input_ids)
    mask = _check_mask(model, attention_mask, ids)
    attentions = _attentions(model, ids, mask)
    length = ids.shape[1]
    eye = torch.eye(length, dtype=attentions[0].dtype, device=ids.device)
    rollout = eye.expand(len(ids), length, length)
    for layer in attentions:
        mixed = 0.5 * layer.mean(dim=1) + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout
    return rollout[:, 0] * mask


def last_layer_attention(model: nn.Module, input_ids: Any, *, attention_mask: Any = None) -> torch.Tensor:
    """The last layer's attention from [CLS] to each token, averaged over heads: ``(N, L)``, rows sum to 1.

    The raw attention weights Jain and Wallace (2019) examined; :func:`attention_rollout`
    follows them through all layers.

    >>> model, tokenizer = load_text_model()
    >>> batch = encode_text(tokenizer, ["A gorgeous, witty film."], model=model)
    >>> torch.allclose(last_layer_attention(model, batch.input_ids).sum(1), torch.ones(1))
    True
    """
    _check_text_model(model, None)
    ids = _check_input_ids(model, input_ids)
    mask = _check_mask(model, attention_mask, ids)
    return _attentions(model, ids, mask)[-1].mean(dim=1)[:, 0] * mask


# --------------------------------------------------------------------------- substitution attack

@dataclass(frozen=True)
class SubstitutionCandidates:
    """Which word may replace which: ``table[word]`` lists the allowed replacements of ``word``.

    Built by :func:`substitution_candidates`; ``rule`` states the constraint in words.
    Behaves like a read-only mapping (``candidates["good"]``, ``"good" in candidates``).
    """

    table: Mapping[str, tuple[str, ...]]
    rule: str = ""

    def __getitem__(self, word: str) -> tuple[str, ...]:
        return self.table[word]

    def __contains__(self, word: object) -> bool:
        return word in self.table

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def items(self) -> Any:
        return self.table.items()


def _whole_word_tokens(tokenizer: Any) -> dict[str, int]:
    """Lower-case words of three or more letters that are one token of the vocabulary (not a ``##`` piece)."""
    vocab = tokenizer.get_vocab()
    return {w: i for w, i in vocab.items() if w.isascii() and w.isalpha() and w.islower() and len(w) > 2}


def substitution_candidates(tokenizer: Any, embeddings: Any, *, neighbours: int = 10,
                            max_valence_gap: float = 0.5) -> SubstitutionCandidates:
    """The attack's constraint: sentiment words, each replaceable by near words of about equal human rating.

    A word ``w`` may be replaced by ``c`` when both are single whole-word tokens of the
    tokenizer's vocabulary and entries of VADER's human-rated lexicon
    (:func:`trustml_lab.data.load_sentiment_lexicon`), with the same sign of valence and
    ``|valence(w) - valence(c)| <= max_valence_gap`` (on the raters' [-4, 4] scale: the
    swap keeps the sentiment a human reads), and ``c`` is among the ``neighbours`` words
    whose rows of ``embeddings`` (``(vocab, H)``, e.g. the model's word embeddings) are
    nearest to ``w``'s by cosine similarity (a stand-in for "used in the same contexts", as
    Alzantot et al. 2018 use nearest neighbours in an embedding space). Built once,
    offline, from shipped data; print it and judge it before you trust a robustness number.

    >>> model, tokenizer = load_text_model()
    >>> candidates = substitution_candidates(tokenizer, model.bert.embeddings.word_embeddings.weight)
    >>> len(candidates) > 100, all(c != "bad" for c in candidates["good"])
    (True, True)
    """
    if not _is_tokenizer(tokenizer):
        raise TypeError(f"tokenizer: expected a Hugging Face tokenizer, got {describe(tokenizer)}")
    weight = as_tensor(embeddings.detach() if isinstance(embeddings, torch.Tensor) else embeddings, "embeddings")
    if weight.ndim != 2 or not weight.is_floating_point() or weight.shape[0] < len(tokenizer):
        raise ValueError(f"embeddings: expected a (vocab >= {len(tokenizer)}, H) floating matrix, "
                         f"got {describe(weight)}")
    neighbours = check_int(neighbours, "neighbours")
    gap = check_in_range(max_valence_gap, "max_valence_gap", 0.0, 8.0)
    lexicon = load_sentiment_lexicon()
    words = _whole_word_tokens(tokenizer)
    lexicon = lexicon[lexicon["token"].isin(words.keys()) & (lexicon["valence"] != 0)]
    lexicon = lexicon.drop_duplicates("token").sort_values("token", kind="stable")
    names = lexicon["token"].tolist()
    if len(names) < 2:
        return SubstitutionCandidates({}, "no lexicon word is a token of this vocabulary")
    valence = torch.tensor(lexicon["valence"].to_numpy(dtype=np.float64))
    vectors = weight.detach().double().cpu()[torch.as_tensor([words[w] for w in names])]
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = vectors @ vectors.T
    allowed = (torch.sign(valence)[:, None] == torch.sign(valence)[None]) & \
        ((valence[:, None] - valence[None]).abs() <= gap + 1e-9)
    allowed.fill_diagonal_(False)
    similarity = similarity.masked_fill(~allowed, -float("inf"))
    top = similarity.topk(min(neighbours, len(names) - 1), dim=1)
    table = {}
    for row, word in enumerate(names):
        chosen = [names[j] for j, v in zip(top.indices[row].tolist(), top.values[row].tolist()) if v > -float("inf")]
        if chosen:
            table[word] = tuple(chosen)
    rule = (f"a VADER lexicon word may become one of its {neighbours} nearest lexicon words in embedding space "
            f"(cosine) with the same sign of human-rated valence, at most {gap:g} apart on [-4, 4]")
    return SubstitutionCandidates(table, rule)


@dataclass(frozen=True)
class SubstitutionAttack:
    """The result of :func:`substitution_attack`.

    ``sentences``: the adversarial sentences (the original where no swap was kept);
    ``swaps`` (N,): the number of words replaced; ``changes[i]``: the ``(position,
    original word, replacement)`` of each swap in sentence ``i``; ``clean_scores`` and
    ``scores`` (N,): the probability of the true class before and after;
    ``robust_accuracy`` (``max_swaps + 1``,): accuracy when the attacker may replace at
    most ``k = 0, 1, ..., max_swaps`` words (``k = 0``: clean accuracy).
    """

    sentences: tuple[str, ...]
    swaps: torch.Tensor
    changes: tuple[tuple[tuple[int, str, str], ...], ...]
    clean_scores: torch.Tensor
    scores: torch.Tensor
    robust_accuracy: torch.Tensor


def _candidate_ids(tokenizer: Any, candidates: Any) -> tuple[dict[int, list[int]], dict[str, int]]:
    if isinstance(candidates, SubstitutionCandidates):
        candidates = candidates.table
    if not isinstance(candidates, Mapping):
        raise TypeError(f"candidates: expected a mapping of word to replacement words "
                        f"(substitution_candidates(...)), got {describe(candidates)}")
    words = _whole_word_tokens(tokenizer)
    table: dict[int, list[int]] = {}
    for word, options in candidates.items():
        if not isinstance(word, str) or isinstance(options, str) or not isinstance(options, Sequence):
            raise TypeError(f"candidates: expected word -> list of words, got {word!r} -> {describe(options)}")
        source = words.get(word.lower())
        targets = [words[o.lower()] for o in options if isinstance(o, str) and o.lower() in words]
        if source is not None and targets:
            table[source] = sorted(set(targets) - {source})
    return table, words


def substitution_attack(model: nn.Module, tokenizer: Any, sentences: str | Sequence[str], labels: Any, *,
                        max_swaps: int, candidates: Any, top_k: int = 16,
                        internal_batch_size: int = 512) -> SubstitutionAttack:
    """A greedy word-substitution attack: HotFlip's first-order ranking, then an exact check.

    Each round, for every sentence still classified correctly, the gradient ``g_j`` of the
    log-probability of the true class with respect to the word embedding of each token
    ranks every allowed swap of token ``j`` (word ``w``) by its first-order change
    ``(E[c] - E[w]) . g_j`` (Ebrahimi et al. 2018, HotFlip); the ``top_k`` best go
    through the model exactly, and the one that lowers the true-class probability most is
    kept, only if it lowers it at all. A sentence stops when it is misclassified, when
    no swap helps, or after ``max_swaps`` swaps; each position is swapped at most once.
    All sentences are attacked together (one gradient pass and one exact pass per round).

    The constraint: only a word that is a key of ``candidates`` (a word -> replacements
    mapping, e.g. :func:`substitution_candidates`) may change, and only into one of its
    replacements; a word counts when it is a single whole-word token (replacements that
    are not one token of the vocabulary are skipped). The sentence keeps its length in
    tokens, and the text is rebuilt by replacing the word's characters (capitalization
    kept). ``labels``: the true classes (Hugging Face's name), within the model's classes.

    >>> model, tokenizer = load_text_model()
    >>> candidates = substitution_candidates(tokenizer, model.bert.embeddings.word_embeddings.weight)
    >>> result = substitution_attack(model, tokenizer, ["A good, funny film."], [1], max_swaps=2,
    ...                              candidates=candidates)
    >>> int(result.swaps[0]) <= 2, result.robust_accuracy.shape
    (True, torch.Size([3]))
    """
    _check_text_model(model, tokenizer)
    sentences = _check_sentences(sentences)
    labels = check_labels(labels, "labels", num_classes=_num_labels(model), device=model_device(model))
    if len(labels) != len(sentences):
        raise ValueError(f"labels: expected one label per sentence ({len(sentences)}), got {len(labels)}")
    max_swaps = check_int(max_swaps, "max_swaps", low=0)
    top_k = check_int(top_k, "top_k")
    internal_batch_size = check_int(internal_batch_size, "internal_batch_size")
    table, _ = _candidate_ids(tokenizer, candidates)
    encoded = _tokenize(tokenizer, sentences, model, truncation=False, offsets=True)
    device = model_device(model)
    ids, mask = _pad(encoded["input_ids"], tokenizer.pad_token_id or 0, device)
    n, length = ids.shape
    # which positions are whole words with candidates: (N, L) bool, and their candidate lists
    width = max((len(v) for v in table.values()), default=1)
    options = torch.full((model.config.vocab_size, width), -1, dtype=torch.long)
    for source, targets in table.items():
        options[source, :len(targets)] = torch.as_tensor(targets)
    options = options.to(device)
    whole = torch.zeros((n, length), dtype=torch.bool)
    for i in range(n):
        word_ids = encoded.word_ids(i)
        counts: dict[int, int] = {}
        for w in word_ids:
            if w is not None:
                counts[w] = counts.get(w, 0) + 1
        for j, w in enumerate(word_ids):
            whole[i, j] = w is not None and counts[w] == 1
    eligible = whole.to(device) & (options[ids, 0] >= 0) & mask.bool()
    embeddings = model.bert.embeddings.word_embeddings
    with eval_mode(model):
        current = ids.clone()
        score = _true_log_proba(model, current, mask, labels, internal_batch_size)
        clean = score.clone()
        correct = _predicted(model, current, mask, internal_batch_size) == labels
        robust = [correct.double().mean()]
        active = correct.clone()
        swaps = torch.zeros(n, dtype=torch.long, device=device)
        for _ in range(max_swaps):
            active = active & eligible.any(dim=1)
            if not bool(active.any()):
                robust.append(correct.double().mean())
                continue
            at = torch.nonzero(active).flatten()
            gradient = _embedding_gradient(model, current[at], mask[at], labels[at])  # (A, L, H)
            weight = embeddings.weight.detach()
            cand = options[current[at]]  # (A, L, W)
            valid = (cand >= 0) & eligible[at][:, :, None]
            cand_vectors = weight[cand.clamp_min(0)]  # (A, L, W, H)
            own = weight[current[at]]  # (A, L, H)
            estimate = ((cand_vectors - own[:, :, None]) * gradient[:, :, None]).sum(-1)  # (A, L, W)
            estimate = estimate.masked_fill(~valid, float("inf")).reshape(len(at), -1)
            k = min(top_k, estimate.shape[1])
            best = estimate.topk(k, dim=1, largest=False)
            usable = torch.isfinite(best.values)  # fewer allowed swaps than k: the rest are fillers
            position = best.indices // width
            replacement = cand.reshape(len(at), -1).gather(1, best.indices)
            replacement = torch.where(usable, replacement, current[at].gather(1, position))
            trial = current[at][:, None].repeat(1, k, 1)
            trial.scatter_(2, position[:, :, None], replacement[:, :, None])
            trial_scores = _true_log_proba(model, trial.reshape(-1, length), mask[at].repeat_interleave(k, 0),
                                           labels[at].repeat_interleave(k), internal_batch_size).reshape(-1, k)
            trial_scores = trial_scores.masked_fill(~usable, float("inf"))
            choice = trial_scores.argmin(dim=1)
            new_score = trial_scores.gather(1, choice[:, None])[:, 0]
            improves = new_score < score[at]
            keep = at[improves]
            chosen_pos = position.gather(1, choice[:, None])[:, 0][improves]
            chosen_tok = replacement.gather(1, choice[:, None])[:, 0][improves]
            current[keep, chosen_pos] = chosen_tok
            eligible[keep, chosen_pos] = False
            swaps[keep] += 1
            score[keep] = new_score[improves]
            active[at[~improves]] = False
            if len(keep):
                predicted = _predicted(model, current[keep], mask[keep], internal_batch_size)
                flipped = predicted != labels[keep]
                correct[keep[flipped]] = False
                active[keep[flipped]] = False
            robust.append(correct.double().mean())
    changed = (current != ids).cpu()
    texts, changes = [], []
    for i, sentence in enumerate(sentences):
        offsets = encoded["offset_mapping"][i]
        edits = []
        for j in torch.nonzero(changed[i]).flatten().tolist():
            start, stop = offsets[j]
            old = sentence[start:stop]
            new = _match_case(tokenizer.convert_ids_to_tokens(int(current[i, j])), old)
            edits.append((j, start, stop, old, new))
        text = sentence
        for _, start, stop, _, new in sorted(edits, key=lambda e: -e[1]):
            text = text[:start] + new + text[stop:]
        texts.append(text)
        changes.append(tuple((j, old, new) for j, _, _, old, new in edits))
    return SubstitutionAttack(tuple(texts), swaps, tuple(changes), clean.exp(), score.exp(),
                              torch.stack(robust).to(torch.float64))


def _true_log_proba(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                    internal_batch_size: int) -> torch.Tensor:
    logits = _logits(model, _batch(ids, mask), internal_batch_size=internal_batch_size)
    return torch.log_softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]


def _predicted(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, internal_batch_size: int) -> torch.Tensor:
    return _logits(model, _batch(ids, mask), internal_batch_size=internal_batch_size).argmax(dim=1)


def _embedding_gradient(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient of the true class's log-probability with respect to each token's word embedding."""
    batch = _batch(ids, mask)
    inputs = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=inputs, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids,
                   position_ids=batch.position_ids).logits
    log_proba = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
    (gradient,) = torch.autograd.grad(log_proba, inputs)
    return gradient



# --------------------------------------------------------------------------- private fine-tuning

class TokenIdsClassifier(nn.Module):
    """A BERT classifier as a plain module from token ids to logits: ``(N, L)`` ids -> ``(N, C)``.

    ``trustml_lab.privacy`` (``private_gradient``, ``dp_fit``, ``membership_scores``) and
    Opacus's ``GradSampleModule`` run a model as ``model(x)`` and want a tensor back; a
    Hugging Face model takes keyword arguments and returns a ``SequenceClassifierOutput``.
    This wrapper (its one submodule ``model`` is the BERT, parameters shared, not copied)
    builds from ``input_ids`` alone what the BERT needs:

    - ``position_ids`` ``0..L-1`` and ``token_type_ids`` zeros, both ``(N, L)``: with a
      batch dimension, passed explicitly and contiguous. Without them BERT broadcasts one
      ``(1, L)`` row of positions over the batch, and Opacus's per-sample gradient of the
      position embeddings (and ours) sees one example instead of N (Opacus issue #841,
      still open);
    - the attention mask from the padding id (``input_ids != pad_token_id``), as the additive
      ``(N, 1, 1, L)`` mask BERT builds itself (0 where attended, the dtype's minimum on
      padding). Built here because BERT's own mask builder branches on the data
      (``mask.all()``), which ``torch.func.vmap`` (``method="per_sample"``) cannot trace.

    The logits equal ``model(**encode_text(tokenizer, sentences, model=model)).logits``.

    >>> model, tokenizer = load_text_model()
    >>> classifier = TokenIdsClassifier(model)
    >>> batch = encode_text(tokenizer, ["Great.", "A dull, tired film."], model=model)
    >>> torch.allclose(classifier(batch.input_ids), model(**batch).logits, atol=1e-6)
    True
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        _check_text_model(model, None)
        self.model = model
        pad = model.config.pad_token_id
        self.pad_token_id = 0 if pad is None else int(pad)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n, length = input_ids.shape
        dtype = next(self.model.parameters()).dtype
        padding = (input_ids == self.pad_token_id)[:, None, None, :]
        mask = torch.zeros(padding.shape, dtype=dtype, device=input_ids.device)
        mask = mask.masked_fill(padding, torch.finfo(dtype).min)
        positions = torch.arange(length, device=input_ids.device).expand(n, length).contiguous()
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                          token_type_ids=torch.zeros_like(input_ids)).logits
