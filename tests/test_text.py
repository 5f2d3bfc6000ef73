"""trustml_lab.text: the shipped BERT, and each kernel against scikit-learn, captum or a direct computation."""

import pickle
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from trustml_lab import data, text

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("sentiment_bert", "sentiment_bert_cda", "sentiment_bert_adversarial")


@pytest.fixture(scope="module")
def loaded():
    return text.load_text_model()


@pytest.fixture(scope="module")
def model(loaded):
    return loaded.model


@pytest.fixture(scope="module")
def tokenizer(loaded):
    return loaded.tokenizer


@pytest.fixture(scope="module")
def movies():
    frame = data.load_sentiment("movies")  # in file order: positive reviews first; shuffle the test part
    return frame[frame["split"] == "train"], frame[frame["split"] == "test"].sample(frac=1.0, random_state=0)


@pytest.fixture(scope="module")
def candidates(model, tokenizer):
    return text.substitution_candidates(tokenizer, model.bert.embeddings.word_embeddings.weight)


def no_weight_gradients(model):
    return all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- loading

@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_loads_in_eval_mode_and_is_pinned(name):
    manifest = data.read_manifest()
    rows = {k for k in manifest if k.startswith(f"{name}/")}
    assert {f"{name}/config.json", f"{name}/model.safetensors", f"{name}/tokenizer.json"} <= rows
    model, tokenizer = text.load_text_model(name)
    assert not model.training and model.config.num_labels == 2
    assert len(tokenizer) == model.config.vocab_size
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading a text model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model, _ = text.load_text_model()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and not model.training


def copy_of_shipped(tmp_path, name="sentiment_bert"):
    folder = tmp_path / name
    shutil.copytree(data.data_dir() / name, folder)
    return folder


def test_an_altered_byte_is_refused_and_named(tmp_path):
    folder = copy_of_shipped(tmp_path)
    pins = text.folder_hashes(data.data_dir() / "sentiment_bert")
    raw = bytearray((folder / "model.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(data.DataIntegrityError, match="model.safetensors"):
        text.load_text_model(folder, sha256=pins)


def test_someone_elses_folder_loads_only_with_pins(tmp_path):
    folder = copy_of_shipped(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        text.load_text_model(folder)
    pins = text.folder_hashes(folder)
    model, _ = text.load_text_model(folder, sha256=pins)
    shipped, _ = text.load_text_model()
    for (name, a), (_, b) in zip(model.state_dict().items(), shipped.state_dict().items()):
        assert torch.equal(a, b), name


class Payload:
    """Unpickling this object opens (creates) a file: the proof that a pickle runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_checkpoint_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned.txt"
    folder = copy_of_shipped(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    pins = text.folder_hashes(folder)  # the attacker publishes hashes of their own files
    with pytest.raises(ValueError, match="pytorch_model.bin.*pickle"):
        text.load_text_model(folder, sha256=pins)
    assert not marker.exists()
    # transformers itself, told to use safetensors only, refuses it too
    from transformers import BertForSequenceClassification

    with pytest.raises(OSError):
        BertForSequenceClassification.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    assert not marker.exists()
    # and the same bytes beside a good model.safetensors are refused before anything is read
    shutil.copy(data.data_dir() / "sentiment_bert" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        text.load_text_model(folder, sha256=text.folder_hashes(folder))
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(Payload(marker))) and marker.exists(), "the payload does run when unpickled"


# --------------------------------------------------------------------------- encoding and prediction

def test_encode_text_pads_per_batch_with_batched_position_ids(model, tokenizer):
    sentences = ["Great.", "A dull, tired, overlong film about nothing."]
    batch = text.encode_text(tokenizer, sentences, model=model)
    lengths = [len(tokenizer(s)["input_ids"]) for s in sentences]
    assert batch.input_ids.shape == (2, max(lengths))
    assert batch.attention_mask.sum(1).tolist() == lengths
    for key in batch.keys():
        assert batch[key].shape == batch.input_ids.shape and batch[key].is_contiguous(), key
    assert torch.equal(batch.position_ids, torch.arange(max(lengths)).expand(2, -1))
    assert not bool(batch.token_type_ids.any())
    with torch.no_grad():
        direct = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        torch.testing.assert_close(model(**batch).logits, direct)
    long = " ".join(["fine"] * 200)
    assert text.encode_text(tokenizer, [long], model=model, truncation=True).input_ids.shape[1] == \
        model.config.max_position_embeddings


def test_predictions_do_not_depend_on_batching_or_order(model, tokenizer, movies):
    sentences = movies[1]["text"].tolist()[:40]
    together = text.predict_text_proba(model, tokenizer, sentences, internal_batch_size=7)
    with torch.no_grad():
        alone = torch.cat([torch.softmax(model(**text.encode_text(tokenizer, [s], model=model)).logits, 1)
                           for s in sentences])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    reversed_ = text.predict_text_proba(model, tokenizer, sentences[::-1])
    torch.testing.assert_close(reversed_.flip(0), together, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.sum(1), torch.ones(40))


def tfidf_accuracy(train, test):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    classifier = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train["text"]),
                                                              train["label"])
    return classifier.score(vectorizer.transform(test["text"]), test["label"])


def test_the_shipped_model_reaches_the_quality_target(model, tokenizer, movies):
    """Held-out movie accuracy >= 0.75 and within 4 points of TF-IDF + logistic regression."""
    train, test = movies
    proba = text.predict_text_proba(model, tokenizer, test["text"].tolist())
    accuracy = float((proba.argmax(1).numpy() == test["label"].to_numpy()).mean())
    baseline = tfidf_accuracy(train, test)
    assert accuracy >= 0.75 and accuracy >= baseline - 0.04, (accuracy, baseline)
    import re

    shipped = data.read_manifest()["sentiment_bert/model.safetensors"].source
    recorded = float(re.search(r"movie test accuracy (0\.\d+)", shipped).group(1))
    assert abs(accuracy - recorded) <= 1.5 / len(test), (accuracy, recorded)  # at most one sentence apart


# --------------------------------------------------------------------------- identity templates

def test_templates_are_balanced_and_labelled_by_construction():
    frame = text.identity_templates()
    terms = [t for axis in text.IDENTITY_TERMS.values() for t in axis]
    assert set(frame["term"]) == set(terms) and frame["text"].is_unique
    per_term = frame.groupby("term")["label"].agg(["mean", "size"])
    assert (per_term["mean"] == 0.5).all() and per_term["size"].nunique() == 1
    for _, row in frame.sample(50, random_state=0).iterrows():
        assert row["term"] in row["text"] and row["word"] in row["text"]
        assert row["word"] in text.SENTIMENT_WORDS[text.TEMPLATES[row["template"]][1]][row["label"]]
    assert "An American person feels happy." in set(frame["text"])
    # the same frame with the term swapped: every template sentence has its counterfactuals
    variants = text.counterfactual_sentences(frame["text"].tolist()[:24], text.IDENTITY_TERMS["gender"])
    assert all(len(set(v)) == 3 for v in variants)


# --------------------------------------------------------------------------- subgroup AUCs

def sklearn_aucs(y, s, members):
    def auc(mask):
        if len(np.unique(y[mask])) < 2:  # scikit-learn warns and gives NaN
            return np.nan
        return roc_auc_score(y[mask], s[mask])

    out = []
    for g in range(members.shape[1]):
        m = members[:, g]
        out.append((auc(m), auc((m & (y == 0)) | (~m & (y == 1))), auc((m & (y == 1)) | (~m & (y == 0)))))
    return np.array(out).T


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 200), groups=st.integers(1, 6), decimals=st.sampled_from([0, 1, 2, 6]),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_subgroup_aucs_equal_sklearn_on_the_subsets_including_ties(n, groups, decimals, density, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), decimals)
    members = rng.random((n, groups)) < density
    result = text.subgroup_aucs(y, s, members)
    expected = sklearn_aucs(y, s, members)
    for got, want in zip((result.subgroup_auc, result.bpsn_auc, result.bnsp_auc), expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12, rtol=0)
    overall = roc_auc_score(y, s) if 0 < y.sum() < n else np.nan
    np.testing.assert_allclose(float(result.overall_auc), overall, atol=1e-12)


def test_subgroup_aucs_on_real_scores_one_subgroup_at_a_time(model, tokenizer):
    frame = text.identity_templates()
    scores = text.predict_text_proba(model, tokenizer, frame["text"].tolist())[:, 1]
    members = np.stack([(frame["term"] == t).to_numpy() for t in text.IDENTITY_TERMS["religion"]], axis=1)
    y = frame["label"].to_numpy()
    together = text.subgroup_aucs(y, scores, members)
    expected = sklearn_aucs(y, scores.double().numpy(), members)
    np.testing.assert_allclose(together.bpsn_auc.numpy(), expected[1], atol=1e-12)
    alone = text.subgroup_aucs(torch.tensor(y), scores, torch.tensor(members[:, 2]))
    assert alone.bnsp_auc.shape == (1,) and float(alone.bnsp_auc[0]) == float(together.bnsp_auc[2])


def test_a_shifted_subgroup_moves_bpsn_and_bnsp_not_its_own_auc():
    """Borkan et al.'s point: shift a subgroup's scores up; subgroup AUC stays, BPSN falls, BNSP rises."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    s = y + rng.normal(0, 0.8, 4000)
    g = rng.random(4000) < 0.2
    before = text.subgroup_aucs(y, s, g)
    after = text.subgroup_aucs(y, np.where(g, s + 1.0, s), g)
    assert abs(float(after.subgroup_auc[0] - before.subgroup_auc[0])) < 1e-12
    assert float(after.bpsn_auc[0]) < float(before.bpsn_auc[0]) - 0.1
    assert float(after.bnsp_auc[0]) > float(before.bnsp_auc[0]) + 0.05


def test_subgroup_aucs_are_nan_where_a_set_has_one_class():
    result = text.subgroup_aucs([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [[1, 0], [1, 0], [0, 0], [0, 0]])
    assert np.isnan(float(result.subgroup_auc[0])) and float(result.bpsn_auc[0]) == 1.0
    assert np.isnan(float(result.bnsp_auc[0])) and np.isnan(float(result.subgroup_auc[1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_subgroup_aucs_on_the_gpu_equal_the_cpu():
    rng = np.random.default_rng(1)
    y, s, g = rng.integers(0, 2, 5000), np.round(rng.random(5000), 2), rng.random((5000, 8)) < 0.3
    cpu = text.subgroup_aucs(torch.tensor(y), torch.tensor(s), torch.tensor(g))
    gpu = text.subgroup_aucs(torch.tensor(y).cuda(), torch.tensor(s).cuda(), torch.tensor(g).cuda())
    assert gpu.bpsn_auc.device.type == "cuda"
    torch.testing.assert_close(gpu.bpsn_auc.cpu(), cpu.bpsn_auc, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- counterfactuals

def test_counterfactual_sentences_swap_whole_words_keeping_case():
    terms = ["Indian", "French", "American"]
    (variants,) = text.counterfactual_sentences(["Indian food, indian music, Indiana Jones."], terms)
    assert variants == ("Indian food, indian music, Indiana Jones.", "French food, french music, Indiana Jones.",
                        "American food, american music, Indiana Jones.")
    (first,) = text.counterfactual_sentences(["A French film by an American."], terms)
    assert first[1] == "A French film by an American." and first[0] == "A Indian film by an American."


def test_counterfactual_gap_equals_the_direct_computation(model, tokenizer):
    frame = text.identity_templates(axes=["religion"])
    sentences = frame[frame["term"] == "Muslim"]["text"].tolist()[:12]
    terms = text.IDENTITY_TERMS["religion"]
    result = text.counterfactual_gap(model, tokenizer, sentences, terms, internal_batch_size=16)
    assert result.terms == terms and result.own.tolist() == [terms.index("Muslim")] * 12
    for i, sentence in enumerate(sentences):
        scores = torch.stack([text.predict_text_proba(model, tokenizer, [sentence.replace("Muslim", t)])[0, 1]
                              for t in terms])
        torch.testing.assert_close(result.scores[i], scores, atol=1e-5, rtol=0)
        own = scores[terms.index("Muslim")]
        torch.testing.assert_close(result.gap[i], (scores - own).abs().sum() / (len(terms) - 1), atol=1e-5, rtol=0)
    negative = text.counterfactual_gap(model, tokenizer, sentences, terms, target=0)
    torch.testing.assert_close(negative.gap, result.gap, atol=1e-5, rtol=0)  # two classes: |dp| is the same


# --------------------------------------------------------------------------- token attributions

def captum_attributions(model, batch, target, steps, method, internal_batch_size=None):
    from captum.attr import LayerIntegratedGradients

    baseline = text._pad_baseline(model, batch.input_ids, batch.attention_mask)
    explainer = LayerIntegratedGradients(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits,
                                         model.bert.embeddings.word_embeddings)
    return explainer.attribute(batch.input_ids, baselines=baseline, target=target,
                               additional_forward_args=(batch.attention_mask,), n_steps=steps, method=method,
                               internal_batch_size=internal_batch_size, return_convergence_delta=True)


@pytest.mark.parametrize("method, steps", [("gausslegendre", 50), ("riemann_trapezoid", 20), ("riemann_left", 7)])
def test_token_attributions_equal_captum_layer_integrated_gradients(model, tokenizer, movies, method, steps):
    sentences = movies[1]["text"].tolist()[:6]
    batch = text.encode_text(tokenizer, sentences, model=model)
    target = torch.tensor([0, 1, 1, 0, 1, 0])
    ours = text.token_attributions(model, batch.input_ids, target=target, attention_mask=batch.attention_mask,
                                   steps=steps, method=method)
    expected, delta = captum_attributions(model, batch, target, steps, method)
    torch.testing.assert_close(ours.embedding_attributions, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.attributions, expected.sum(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.delta, delta.to(ours.delta.dtype), atol=1e-5, rtol=1e-4)
    assert float(ours.attributions[~batch.attention_mask.bool()].abs().sum()) == 0.0
    assert no_weight_gradients(model)


@pytest.mark.parametrize("internal_batch_size", [7, 25, 45, 1000])
def test_token_attributions_in_length_blocks_equal_captum(model, tokenizer, movies, internal_batch_size):
    # sentences of very different lengths: each pass holds rows of similar length, trimmed to the longest
    sentences = ["Great.", *movies[1]["text"].tolist()[:4], "Dull, tired and far too long."]
    batch = text.encode_text(tokenizer, sentences, model=model)
    target = torch.tensor([1, 0, 1, 1, 0, 0])
    ours = text.token_attributions(model, batch.input_ids, target=target, attention_mask=batch.attention_mask,
                                   steps=20, internal_batch_size=internal_batch_size)
    expected, delta = captum_attributions(model, batch, target, 20, "gausslegendre")
    torch.testing.assert_close(ours.embedding_attributions, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.delta, delta.to(ours.delta.dtype), atol=1e-5, rtol=1e-4)
    assert float(ours.attributions[~batch.attention_mask.bool()].abs().sum()) == 0.0


def test_token_attributions_are_complete_and_chunking_changes_nothing(model, tokenizer):
    batch = text.encode_text(tokenizer, ["A gorgeous, witty, moving film.", "Dull, tired and far too long."],
                             model=model)
    whole = text.token_attributions(model, batch.input_ids, target=1, attention_mask=batch.attention_mask, steps=50)
    chunked = text.token_attributions(model, batch.input_ids, target=1, attention_mask=batch.attention_mask,
                                      steps=50, internal_batch_size=10)
    torch.testing.assert_close(chunked.attributions, whole.attributions, atol=1e-6, rtol=1e-5)
    assert float(whole.delta.abs().max()) < 1e-3
    # CLS and SEP are the baseline's too: they get no attribution
    assert float(whole.attributions[:, 0].abs().max()) == 0.0
    explicit = text.token_attributions(model, batch.input_ids, target=1, attention_mask=batch.attention_mask,
                                       baseline_ids=text._pad_baseline(model, batch.input_ids, batch.attention_mask))
    torch.testing.assert_close(explicit.attributions, whole.attributions)


# --------------------------------------------------------------------------- attention

def test_attention_rollout_follows_the_formula(model, tokenizer):
    batch = text.encode_text(tokenizer, ["A gorgeous, witty film.", "Dull."], model=model)
    with torch.no_grad():
        attentions = model(**batch, output_attentions=True).attentions
    rollout = text.attention_rollout(model, batch.input_ids, attention_mask=batch.attention_mask)
    for i in range(2):
        n = int(batch.attention_mask[i].sum())
        product = np.eye(n)
        for layer in attentions:
            a = layer[i].mean(0).double().numpy()[:n, :n]
            a = 0.5 * a + 0.5 * np.eye(n)
            product = (a / a.sum(1, keepdims=True)) @ product
        np.testing.assert_allclose(rollout[i, :n].numpy(), product[0], atol=1e-5)
        assert float(rollout[i, n:].abs().sum()) == 0.0
    last = text.last_layer_attention(model, batch.input_ids, attention_mask=batch.attention_mask)
    torch.testing.assert_close(last, attentions[-1].mean(1)[:, 0] * batch.attention_mask)


def test_attention_rollout_of_a_sentence_does_not_depend_on_its_batch(model, tokenizer):
    alone = text.encode_text(tokenizer, ["Dull."], model=model)
    padded = text.encode_text(tokenizer, ["Dull.", "A long, long sentence that pads the short one."], model=model)
    a = text.attention_rollout(model, alone.input_ids)
    b = text.attention_rollout(model, padded.input_ids, attention_mask=padded.attention_mask)
    torch.testing.assert_close(b[0, :a.shape[1]], a[0], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- the substitution attack

def test_candidates_keep_sign_and_closeness_of_human_ratings(candidates, tokenizer):
    valence = data.load_sentiment_lexicon().drop_duplicates("token").set_index("token")["valence"]
    vocab = tokenizer.get_vocab()
    assert len(candidates) > 100 and "rule" not in candidates
    for word, options in candidates.items():
        assert word in vocab and 1 <= len(options) <= 10 and word not in options
        for option in options:
            assert option in vocab and np.sign(valence[option]) == np.sign(valence[word])
            assert abs(valence[option] - valence[word]) <= 0.5 + 1e-9


def check_attack(model, tokenizer, sentences, labels, result, candidates, max_swaps):
    labels = torch.as_tensor(np.array(labels))
    assert int(result.swaps.max()) <= max_swaps
    for original, adversarial, changes, swaps in zip(sentences, result.sentences, result.changes, result.swaps):
        assert len(changes) == int(swaps)
        words_before, words_after = original.split(), adversarial.split()
        assert len(words_before) == len(words_after)
        assert sum(a != b for a, b in zip(words_before, words_after)) <= int(swaps)
        for _, old, new in changes:
            assert new.lower() in candidates[old.lower()], (old, new)
    rescored = text.predict_text_proba(model, tokenizer, list(result.sentences))[torch.arange(len(labels)), labels]
    torch.testing.assert_close(rescored, result.scores, atol=1e-5, rtol=1e-4)
    swapped = result.swaps > 0
    assert bool((result.scores[swapped] < result.clean_scores[swapped]).all())
    assert torch.equal(result.scores[~swapped], result.clean_scores[~swapped])
    accuracy = result.robust_accuracy
    assert accuracy.shape == (max_swaps + 1,) and bool((accuracy[1:] <= accuracy[:-1] + 1e-12).all())
    clean = text.predict_text_proba(model, tokenizer, sentences).argmax(1) == labels
    assert float(accuracy[0]) == float(clean.double().mean())
    final = text.predict_text_proba(model, tokenizer, list(result.sentences)).argmax(1) == labels
    assert float(accuracy[-1]) == float(final.double().mean())


def test_the_attack_keeps_budget_constraint_and_only_helpful_swaps(model, tokenizer, movies, candidates):
    test = movies[1].iloc[:60]
    sentences, labels = test["text"].tolist(), test["label"].to_numpy()
    result = text.substitution_attack(model, tokenizer, sentences, labels, max_swaps=3, candidates=candidates)
    check_attack(model, tokenizer, sentences, labels, result, candidates, 3)
    assert float(result.robust_accuracy[-1]) < float(result.robust_accuracy[0])  # it does find attacks
    assert no_weight_gradients(model)
    none = text.substitution_attack(model, tokenizer, sentences[:5], labels[:5], max_swaps=0, candidates=candidates)
    assert none.sentences == tuple(sentences[:5]) and none.robust_accuracy.shape == (1,)


def test_one_swap_with_every_candidate_checked_is_the_exhaustive_best(model, tokenizer, movies, candidates):
    test = movies[1].iloc[60:72]
    sentences, labels = test["text"].tolist(), test["label"].to_numpy()
    result = text.substitution_attack(model, tokenizer, sentences, labels, max_swaps=1, candidates=candidates,
                                      top_k=10_000)
    for i, sentence in enumerate(sentences):
        encoded = tokenizer(sentence, return_offsets_mapping=True)
        clean = text.predict_text_proba(model, tokenizer, [sentence])[0]
        if int(clean.argmax()) != labels[i]:
            assert int(result.swaps[i]) == 0
            continue
        counts = np.bincount([w for w in encoded.word_ids() if w is not None])
        variants = []
        for j, w in enumerate(encoded.word_ids()):
            token = tokenizer.convert_ids_to_tokens(encoded["input_ids"][j])
            if w is None or counts[w] != 1 or token not in candidates:
                continue
            start, stop = encoded["offset_mapping"][j]
            variants += [sentence[:start] + c + sentence[stop:] for c in candidates[token]]
        if not variants:
            assert int(result.swaps[i]) == 0
            continue
        best = float(text.predict_text_proba(model, tokenizer, variants)[:, labels[i]].min())
        if best < float(clean[labels[i]]):
            assert int(result.swaps[i]) == 1
            assert abs(float(result.scores[i]) - best) < 1e-5
        else:
            assert int(result.swaps[i]) == 0


# --------------------------------------------------------------------------- the training script

def test_the_training_script_saves_a_pinned_model_folder(tmp_path, monkeypatch, loaded):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_reference_models as trm

    target = tmp_path / "data"
    target.mkdir()
    (target / "MANIFEST").write_text("\t".join(data.MANIFEST_COLUMNS) + "\n", encoding="utf-8")
    monkeypatch.setenv("TRUSTML_DATA", str(target))
    assert trm.is_hf_pair(loaded) and not trm.is_hf_pair(torch.nn.Linear(2, 2))
    entries = trm.save_model_folder("copy_bert", loaded, "a copy")
    data.update_manifest(entries, data_dir=target)
    manifest = data.read_manifest(target)
    assert {"copy_bert/config.json", "copy_bert/model.safetensors"} <= set(manifest)
    assert manifest["copy_bert/model.safetensors"].rows == sum(p.numel() for p in loaded.model.parameters())
    copy, _ = text.load_text_model("copy_bert")
    for a, b in zip(copy.parameters(), loaded.model.parameters()):
        assert torch.equal(a, b)
    again = trm.save_model_folder("copy_bert", loaded, "a copy")
    assert [e.sha256 for e in again] == [e.sha256 for e in entries], "saving twice gives the same bytes"
