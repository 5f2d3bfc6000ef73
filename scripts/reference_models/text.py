"""Chapter 5's text models: a WordPiece tokenizer and a small BERT, pre-trained on public text, fine-tuned on movies.

1. A WordPiece tokenizer (``tokenizers``), trained on the public sentences only (tweets,
   Amazon and New York Times snippets of ``load_sentiment``): no movie review, so the
   vocabulary reveals nothing of the fine-tuning data (what private fine-tuning needs).
   Its trainer is not deterministic across processes, so the recipe reuses the shipped,
   pinned vocabulary when there is one (``recipe_tokenizer``).
2. A 2-layer, 128-wide BERT (``BertForMaskedLM``) pre-trained as a masked language model
   on the same public sentences (15% of the tokens chosen; of those 80% masked, 10%
   random, 10% kept, as Devlin et al. 2019).
3. Three ``BertForSequenceClassification`` models fine-tuned from it on the movie
   ``"train"`` split (``load_sentiment("movies")``), evaluated on its ``"test"`` split:

   - ``sentiment_bert``: plain fine-tuning, the chapter's model;
   - ``sentiment_bert_cda``: counterfactual data augmentation (the bias mitigation of
     notebook 5.2): every training sentence that names an identity term of
     ``trustml_lab.text.IDENTITY_TERMS`` is added once more with each other term of its axis;
   - ``sentiment_bert_adversarial``: adversarial training (the defense of notebook 5.3):
     ``sentiment_bert`` fine-tuned 2 more epochs on adversarial versions of its training
     batches, each sentence with up to 3 swaps allowed by the attack's constraint
     (``substitution_candidates`` on ``sentiment_bert``'s embeddings), the swaps that
     HotFlip's first-order estimate says raise the loss most (Ebrahimi et al. 2018 train
     with HotFlip the same way).

Batches are padded to their own longest sentence (sentences are bucketed by length),
never to a fixed length. Everything is seeded; one CPU thread (``TRUSTML_THREADS=1``)
gives the shipped bytes. The recipe prints its wall-clock and CPU time.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from trustml_lab.data import load_sentiment
from trustml_lab.text import IDENTITY_TERMS, TextModel, counterfactual_sentences, substitution_candidates

VOCAB_SIZE = 6000
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ARCHITECTURE = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                    max_position_embeddings=128, type_vocab_size=2, pad_token_id=0)
PRETRAIN = dict(epochs=6, batch_size=64, lr=1e-3)
FINETUNE = dict(epochs=3, batch_size=32, lr=3e-4)
MASK_RATE = 0.15
ADVERSARIAL = dict(epochs=2, batch_size=32, lr=1e-4, swaps=3)
BUCKET = 50  # batches per length bucket


def public_texts() -> list[str]:
    """The pre-training text: every tweet, Amazon and NYT sentence (none of the movie reviews)."""
    frame = load_sentiment("all", min_abs_rating=0.0)
    return frame.loc[frame["source"] != "movies", "text"].tolist()


def train_tokenizer(texts: list[str]):
    """A lower-casing WordPiece tokenizer with BERT's special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL), min_frequency=2, show_progress=False))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=ARCHITECTURE["max_position_embeddings"])


def recipe_tokenizer(texts: list[str]):
    """The shipped vocabulary (``data/sentiment_bert/tokenizer.json``, sha256 verified) if there is one, else a new one.

    The ``tokenizers`` WordPiece trainer is not deterministic across processes: the order
    of its (randomly seeded) Rust hash maps decides ties between equally frequent merges,
    so two runs give two vocabularies, different token ids and different weights after
    them. The recipe therefore reuses the pinned vocabulary; delete ``data/sentiment_bert/``
    and its MANIFEST rows to train a new one (every model of this recipe then changes).
    """
    from transformers import PreTrainedTokenizerFast

    from trustml_lab.data import read_manifest, verified_path

    if "sentiment_bert/tokenizer.json" not in read_manifest():
        print("no shipped vocabulary: training a new WordPiece tokenizer", flush=True)
        return train_tokenizer(texts)
    return PreTrainedTokenizerFast(tokenizer_file=str(verified_path("sentiment_bert/tokenizer.json")),
                                   unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]", model_max_length=ARCHITECTURE["max_position_embeddings"])


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    limit = ARCHITECTURE["max_position_embeddings"]
    return tokenizer(texts, truncation=True, max_length=limit)["input_ids"]


def length_batches(rows: list[list[int]], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of row indices; rows of similar length share a batch (less padding)."""
    order = torch.randperm(len(rows), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * BUCKET):
        bucket = sorted(order[start:start + batch_size * BUCKET], key=lambda i: len(rows[i]))
        batches += [bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r)
    return ids, (ids != 0).long()


def schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 6% of the steps, then linear decay to 0."""
    warmup = max(1, int(0.06 * steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup))))


def config(tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), **ARCHITECTURE, **extra)


def pretrain(tokenizer, texts: list[str], *, generator: torch.Generator):
    """Masked-language-model pre-training; the loss is computed on the chosen tokens only."""
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(config(tokenizer))
    rows = token_ids(tokenizer, texts)
    settings = PRETRAIN
    steps = math.ceil(len(rows) / settings["batch_size"]) * settings["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01)
    scheduler = schedule(optimizer, steps)
    special = torch.tensor([tokenizer.convert_tokens_to_ids(t) for t in SPECIAL])
    mask_id, vocab = tokenizer.mask_token_id, len(tokenizer)
    model.train()
    for epoch in range(settings["epochs"]):
        total, count = torch.zeros(()), 0
        for index in length_batches(rows, settings["batch_size"], generator):
            ids, attention = pad([rows[i] for i in index])
            chosen = (torch.rand(ids.shape, generator=generator) < MASK_RATE) & ~torch.isin(ids, special)
            roll = torch.rand(ids.shape, generator=generator)
            inputs = ids.clone()
            inputs[chosen & (roll < 0.8)] = mask_id
            randomized = chosen & (roll >= 0.8) & (roll < 0.9)
            inputs[randomized] = torch.randint(len(SPECIAL), vocab, (int(randomized.sum()),), generator=generator)
            hidden = model.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
            loss = F.cross_entropy(model.cls(hidden[chosen]), ids[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
            count += 1
        print(f"  masked LM epoch {epoch + 1}: loss {float(total) / count:.3f}", flush=True)
    return model.eval()


def counterfactual_augmentation(texts: list[str], labels: list[int]) -> tuple[list[str], list[int], int]:
    """Counterfactual data augmentation: each sentence naming an identity term, once more per other term."""
    out_texts, out_labels, named = list(texts), list(labels), 0
    for text, label in zip(texts, labels):
        for terms in IDENTITY_TERMS.values():
            try:
                (variants,) = counterfactual_sentences([text], terms)
            except ValueError:
                continue
            named += 1
            extra = [v for v in variants if v != text]
            out_texts += extra
            out_labels += [label] * len(extra)
    return out_texts, out_labels, named


def candidate_table(tokenizer, candidates) -> torch.Tensor:
    """``table[token, :]``: the token ids that may replace ``token`` (-1 pads; all -1 when none may)."""
    vocab = tokenizer.get_vocab()
    width = max(len(options) for options in candidates.table.values())
    table = torch.full((len(tokenizer), width), -1, dtype=torch.long)
    for word, options in candidates.items():
        table[vocab[word], :len(options)] = torch.tensor([vocab[o] for o in options])
    return table


def hotflip_swaps(model, ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor,
                  table: torch.Tensor) -> torch.Tensor:
    """Each sentence with up to ADVERSARIAL["swaps"] allowed swaps that raise its loss most, to first order.

    The gain of replacing token w at position j by c is (E[c] - E[w]) . grad_{E_j} loss (HotFlip);
    per position the best replacement, then the positions with the largest positive gains.
    """
    embeddings = model.bert.embeddings.word_embeddings
    inputs = embeddings(ids).detach().requires_grad_(True)
    positions = torch.arange(ids.shape[1]).expand_as(ids).contiguous()
    logits = model(inputs_embeds=inputs, attention_mask=attention, position_ids=positions,
                   token_type_ids=torch.zeros_like(ids)).logits
    (gradient,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), inputs)
    options = table[ids]  # (B, L, W)
    weight = embeddings.weight.detach()
    gain = ((weight[options.clamp_min(0)] - weight[ids][:, :, None]) * gradient[:, :, None]).sum(-1)
    gain = gain.masked_fill((options < 0) | ~attention.bool()[:, :, None], -float("inf"))
    best_gain, best = gain.max(dim=-1)  # (B, L)
    top = best_gain.topk(min(ADVERSARIAL["swaps"], ids.shape[1]), dim=1)
    out = ids.clone()
    for column in range(top.indices.shape[1]):
        rows = torch.nonzero(top.values[:, column] > 0).flatten()
        where = top.indices[rows, column]
        out[rows, where] = options[rows, where, best[rows, where]]
    return out


def adversarial_fine_tune(model, tokenizer, texts: list[str], labels: list[int], *, table: torch.Tensor,
                          generator: torch.Generator):
    """More epochs of fine-tuning, each batch replaced by its HotFlip-adversarial version."""
    import copy

    model = copy.deepcopy(model)
    rows, y = token_ids(tokenizer, texts), torch.tensor(labels)
    settings = ADVERSARIAL
    steps = math.ceil(len(rows) / settings["batch_size"]) * settings["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01)
    scheduler = schedule(optimizer, steps)
    model.train()
    for epoch in range(settings["epochs"]):
        total, count = torch.zeros(()), 0
        for index in length_batches(rows, settings["batch_size"], generator):
            ids, attention = pad([rows[i] for i in index])
            adversarial = hotflip_swaps(model, ids, attention, y[index], table)
            loss = model(input_ids=adversarial, attention_mask=attention, labels=y[index]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
            count += 1
        print(f"  adversarial epoch {epoch + 1}: loss {float(total) / count:.3f}", flush=True)
    return model.eval()


def fine_tune(encoder, tokenizer, texts: list[str], labels: list[int], *, generator: torch.Generator):
    """Fine-tune a fresh classifier head and the pre-trained encoder on (texts, labels)."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(config(tokenizer, num_labels=2, id2label={0: "negative", 1: "positive"},
                                                 label2id={"negative": 0, "positive": 1}))
    missing, unexpected = model.bert.load_state_dict(encoder.bert.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("pooler.") for name in missing), (missing, unexpected)
    rows = token_ids(tokenizer, texts)
    y = torch.tensor(labels)
    settings = FINETUNE
    steps = math.ceil(len(rows) / settings["batch_size"]) * settings["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01)
    scheduler = schedule(optimizer, steps)
    model.train()
    for epoch in range(settings["epochs"]):
        total, count = torch.zeros(()), 0
        for index in length_batches(rows, settings["batch_size"], generator):
            ids, attention = pad([rows[i] for i in index])
            loss = model(input_ids=ids, attention_mask=attention, labels=y[index]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
            count += 1
        print(f"  fine-tuning epoch {epoch + 1}: loss {float(total) / count:.3f}", flush=True)
    return model.eval()


def accuracy(model, tokenizer, texts: list[str], labels: list[int]) -> float:
    from trustml_lab.text import predict_text_proba

    predicted = predict_text_proba(model, tokenizer, texts).argmax(dim=1)
    return float((predicted == torch.tensor(labels)).double().mean())


def tfidf_accuracy(train_texts, train_labels, test_texts, test_labels) -> float:
    """The baseline of notebook 5.1: TF-IDF (words and word pairs) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    classifier = LogisticRegression(max_iter=2000)  # scikit-learn's default regularization, C = 1
    classifier.fit(vectorizer.fit_transform(train_texts), train_labels)
    return float(classifier.score(vectorizer.transform(test_texts), test_labels))


def train() -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(0)
    movies = load_sentiment("movies")
    train_rows, test_rows = movies[movies["split"] == "train"], movies[movies["split"] == "test"]
    texts, labels = train_rows["text"].tolist(), train_rows["label"].tolist()
    test_texts, test_labels = test_rows["text"].tolist(), test_rows["label"].tolist()
    baseline = tfidf_accuracy(texts, labels, test_texts, test_labels)
    print(f"TF-IDF + logistic regression: test accuracy {baseline:.4f}", flush=True)

    public = public_texts()
    tokenizer = recipe_tokenizer(public)
    print(f"tokenizer: {len(tokenizer)} WordPiece tokens (trained on {len(public)} public sentences)", flush=True)
    encoder = pretrain(tokenizer, public, generator=generator)
    shape = (f"2-layer, 128-wide BERT ({len(tokenizer)}-token WordPiece vocabulary) pre-trained as a masked LM "
             f"for {PRETRAIN['epochs']} epochs on {len(public)} tweet, Amazon and NYT sentences, then fine-tuned "
             f"{FINETUNE['epochs']} epochs (AdamW lr {FINETUNE['lr']}, batch {FINETUNE['batch_size']}) on the "
             f"{len(texts)} movie train sentences")

    models = {}
    base = fine_tune(encoder, tokenizer, texts, labels, generator=generator)
    acc = accuracy(base, tokenizer, test_texts, test_labels)
    print(f"sentiment_bert: test accuracy {acc:.4f} (TF-IDF {baseline:.4f})", flush=True)
    models["sentiment_bert"] = (TextModel(base, tokenizer),
                                f"{shape}; movie test accuracy {acc:.4f}, TF-IDF + logistic regression {baseline:.4f}")

    cda_texts, cda_labels, named = counterfactual_augmentation(texts, labels)
    cda = fine_tune(encoder, tokenizer, cda_texts, cda_labels, generator=generator)
    acc = accuracy(cda, tokenizer, test_texts, test_labels)
    print(f"sentiment_bert_cda: {named} sentences name an identity term, {len(cda_texts) - len(texts)} added; "
          f"test accuracy {acc:.4f}", flush=True)
    models["sentiment_bert_cda"] = (TextModel(cda, tokenizer), (
        f"{shape}, with counterfactual data augmentation ({len(cda_texts) - len(texts)} identity-term swaps of "
        f"{named} sentences); movie test accuracy {acc:.4f}"))

    candidates = substitution_candidates(tokenizer, base.bert.embeddings.word_embeddings.weight)
    table = candidate_table(tokenizer, candidates)
    # its own generator: this step depends only on sentiment_bert, and can be rerun from it alone
    adversarial = adversarial_fine_tune(base, tokenizer, texts, labels, table=table,
                                        generator=torch.Generator().manual_seed(1))
    acc = accuracy(adversarial, tokenizer, test_texts, test_labels)
    print(f"sentiment_bert_adversarial: {len(candidates)} substitutable words; test accuracy {acc:.4f}", flush=True)
    models["sentiment_bert_adversarial"] = (TextModel(adversarial, tokenizer), (
        f"sentiment_bert fine-tuned {ADVERSARIAL['epochs']} more epochs (AdamW lr {ADVERSARIAL['lr']}) on HotFlip "
        f"adversarial batches, up to {ADVERSARIAL['swaps']} swaps per sentence allowed by substitution_candidates "
        f"on sentiment_bert's embeddings ({len(candidates)} words); movie test accuracy {acc:.4f}"))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    print(f"text recipe: {seconds / 60:.1f} min wall clock, {cpu_seconds / 60:.1f} min CPU "
          f"({torch.get_num_threads()} threads)", flush=True)
    return models
