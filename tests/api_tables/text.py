"""trustml_lab.text: the shipped BERT, its tokenizer, and every kernel of chapter 5."""

import functools
import tempfile
from pathlib import Path

import torch

from api_tables import Bad
from trustml_lab import text

MODULE = text


@functools.lru_cache(maxsize=1)
def _loaded():
    return text.load_text_model()


def _model():
    return _loaded().model


def _tokenizer():
    return _loaded().tokenizer


@functools.lru_cache(maxsize=1)
def _big_tokenizer():
    """The model's tokenizer with 50 more tokens than the model has embeddings: not its tokenizer."""
    import copy

    tokenizer = copy.deepcopy(_tokenizer())
    tokenizer.add_tokens([f"zzextra{i}" for i in range(len(tokenizer) - _model().config.vocab_size + 50)])
    return tokenizer


@functools.lru_cache(maxsize=1)
def _candidates():
    return text.substitution_candidates(_tokenizer(), _model().bert.embeddings.word_embeddings.weight)


def _batch():
    return text.encode_text(_tokenizer(), ["A gorgeous, witty film.", "Dull and tired."], model=_model())


SENTENCES = ["A gorgeous, witty film.", "A dull and tired film."]
LONG = " ".join(["word"] * 300)
IDENTITY = ["The Muslim director made a brilliant film.", "A Christian critic wrote this awful review."]
RELIGION = list(text.IDENTITY_TERMS["religion"])


def _pickle_folder():
    """A copy of the shipped folder plus a pickle `pytorch_model.bin`: refused before anything is read."""
    folder = Path(tempfile.mkdtemp()) / "model"
    folder.mkdir()
    for path in (text.data_dir() / "sentiment_bert").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    return folder, text.folder_hashes(text.data_dir() / "sentiment_bert")


VALID = {
    "load_text_model": lambda: ((), {}),
    "folder_hashes": lambda: ((text.data_dir() / "sentiment_bert",), {}),
    "encode_text": lambda: ((_tokenizer(), SENTENCES), {"model": _model()}),
    "predict_text_proba": lambda: ((_model(), _tokenizer(), SENTENCES), {"internal_batch_size": 8}),
    "identity_templates": lambda: ((), {"axes": ["gender"]}),
    "subgroup_aucs": lambda: ((torch.tensor([0, 1, 0, 1, 1, 0]), torch.tensor([0.1, 0.9, 0.4, 0.3, 0.8, 0.2]),
                               torch.tensor([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 0]])), {}),
    "counterfactual_sentences": lambda: ((IDENTITY, RELIGION), {}),
    "counterfactual_gap": lambda: ((_model(), _tokenizer(), IDENTITY, RELIGION),
                                   {"target": 1, "internal_batch_size": 8}),
    "token_attributions": lambda: ((_model(), _batch().input_ids),
                                   {"target": 1, "attention_mask": _batch().attention_mask, "steps": 8,
                                    "internal_batch_size": 8}),
    "attention_rollout": lambda: ((_model(), _batch().input_ids), {"attention_mask": _batch().attention_mask}),
    "last_layer_attention": lambda: ((_model(), _batch().input_ids), {"attention_mask": _batch().attention_mask}),
    "substitution_candidates": lambda: ((_tokenizer(), _model().bert.embeddings.word_embeddings.weight.detach()),
                                        {"neighbours": 5, "max_valence_gap": 0.5}),
    "substitution_attack": lambda: ((_model(), _tokenizer(), ["A good, funny film.", "A bad, dull film."], [1, 0]),
                                    {"max_swaps": 2, "candidates": _candidates(), "top_k": 4,
                                     "internal_batch_size": 64}),
    "TokenIdsClassifier": lambda: ((_model(),), {}),
}

EXEMPT = {
    "CounterfactualGap": "a result record (frozen dataclass)",
    "SubgroupAUCs": "a result record (frozen dataclass)",
    "SubstitutionAttack": "a result record (frozen dataclass)",
    "SubstitutionCandidates": "a result record (frozen dataclass): the constraint substitution_candidates builds",
    "TextBatch": "a result record (frozen dataclass): what encode_text returns",
    "TextModel": "a result record (frozen dataclass): what load_text_model returns",
    "TokenAttributions": "a result record (frozen dataclass)",
    "IDENTITY_TERMS": "a constant: the identity terms by axis",
    "SENTIMENT_WORDS": "a constant: the templates' sentiment words",
    "TEMPLATES": "a constant: the template sentences",
}

BAD = [
    Bad("TokenIdsClassifier", lambda: ((torch.nn.Linear(3, 2),), {}), "model", "not a BERT classifier"),
    # a tokenizer that does not match the model
    Bad("encode_text", lambda: ((_big_tokenizer(), SENTENCES), {"model": _model()}), "tokenizer",
        id="tokenizer larger than the model's vocabulary"),
    Bad("predict_text_proba", lambda: ((_model(), _big_tokenizer(), SENTENCES), {}), "tokenizer",
        id="tokenizer larger than the model's vocabulary"),
    Bad("counterfactual_gap", lambda: ((_model(), _big_tokenizer(), IDENTITY, RELIGION), {}), "tokenizer",
        id="tokenizer larger than the model's vocabulary"),
    Bad("substitution_attack", lambda: ((_model(), _big_tokenizer(), SENTENCES, [1, 0]),
                                        {"max_swaps": 1, "candidates": _candidates()}), "tokenizer",
        id="tokenizer larger than the model's vocabulary"),
    Bad("predict_text_proba", lambda: ((_model(), "bert-base-uncased", SENTENCES), {}), "tokenizer",
        id="a model name instead of a tokenizer"),
    # sequences longer than the model's positions
    Bad("encode_text", lambda: ((_tokenizer(), [LONG]), {"model": _model()}), "sentences",
        id="longer than the model's positions"),
    Bad("predict_text_proba", lambda: ((_model(), _tokenizer(), ["short", LONG]), {}), "sentences",
        id="longer than the model's positions"),
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), [LONG], [1]),
                                        {"max_swaps": 1, "candidates": _candidates()}), "sentences",
        id="longer than the model's positions"),
    Bad("token_attributions", lambda: ((_model(), torch.full((1, 300), 7)), {"target": 1}), "input_ids",
        id="longer than the model's positions"),
    # empty sentence lists
    Bad("encode_text", lambda: ((_tokenizer(), []), {}), "sentences", id="empty list"),
    Bad("predict_text_proba", lambda: ((_model(), _tokenizer(), []), {}), "sentences", id="empty list"),
    Bad("counterfactual_gap", lambda: ((_model(), _tokenizer(), [], RELIGION), {}), "sentences", id="empty list"),
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), [], []),
                                        {"max_swaps": 1, "candidates": _candidates()}), "sentences", id="empty list"),
    Bad("predict_text_proba", lambda: ((_model(), _tokenizer(), ["fine", 3]), {}), "sentences",
        id="a number among the sentences"),
    # labels outside the model's classes
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), SENTENCES, [1, 2]),
                                        {"max_swaps": 1, "candidates": _candidates()}), "labels",
        id="labels outside the model's classes"),
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), SENTENCES, [1]),
                                        {"max_swaps": 1, "candidates": _candidates()}), "labels",
        id="one label for two sentences"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids), {"target": 2}), "target",
        id="target outside the model's classes"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids), {"target": torch.tensor([0, 1, 1])}), "target",
        id="three targets for two rows"),
    Bad("counterfactual_gap", lambda: ((_model(), _tokenizer(), IDENTITY, RELIGION), {"target": 2}), "target",
        id="target outside the model's classes"),
    # token ids and masks
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids.float()), {"target": 1}), "input_ids",
        id="float token ids"),
    Bad("token_attributions", lambda: ((_model(), torch.tensor([[2, 99999, 3]])), {"target": 1}), "input_ids",
        id="ids outside the vocabulary"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids),
                                       {"target": 1, "attention_mask": torch.ones(2, 3)}), "attention_mask",
        id="mask of another shape"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids), {"target": 1, "method": "simpson"}), "method",
        id="unknown integration rule"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids), {"target": 1, "steps": 0}), "steps",
        id="zero steps"),
    Bad("token_attributions", lambda: ((_model(), _batch().input_ids), {"target": 1, "steps": 2.5}), "steps",
        id="fractional steps"),
    Bad("attention_rollout", lambda: ((_model(), torch.tensor([2, 5, 3])), {}), "input_ids", id="1-d token ids"),
    Bad("last_layer_attention", lambda: ((_model(), _batch().input_ids),
                                         {"attention_mask": torch.zeros(2, _batch().input_ids.shape[1])}),
        "attention_mask", id="nothing attended"),
    Bad("token_attributions", lambda: ((torch.nn.Linear(2, 2), torch.tensor([[2, 3]])), {"target": 1}), "model",
        id="not a BERT model"),
    # subgroup AUCs
    Bad("subgroup_aucs", lambda: (([0, 1, 2], [0.1, 0.2, 0.3], [1, 0, 1]), {}), "y_true", id="labels not binary"),
    Bad("subgroup_aucs", lambda: (([0, 1, 1], [0.1, 0.2, 0.3], [1, 0]), {}), "subgroup", id="subgroup too short"),
    Bad("subgroup_aucs", lambda: (([0, 1, 1], [0.1, 0.2, 0.3], torch.ones(3, 2, 2)), {}), "subgroup",
        id="3-d membership"),
    Bad("subgroup_aucs", lambda: (([0, 1, 1], [0.1, 0.2, 0.3], [1, 0, 3]), {}), "subgroup",
        id="membership not 0/1"),
    Bad("subgroup_aucs", lambda: (([0, 1, 1], [[0.1], [0.2], [0.3]], [1, 0, 1]), {}), "scores", id="2-d scores"),
    Bad("subgroup_aucs", lambda: (([], [], []), {}), "y_true", id="no rows"),
    # counterfactuals
    Bad("counterfactual_sentences", lambda: ((IDENTITY, ["Muslim"]), {}), "swaps", id="a single term"),
    Bad("counterfactual_sentences", lambda: ((IDENTITY, "Muslim"), {}), "swaps", id="a string, not a list"),
    Bad("counterfactual_sentences", lambda: ((["No identity here."], RELIGION), {}), "sentences",
        id="a sentence without any term"),
    Bad("identity_templates", lambda: ((), {"axes": ["age"]}), "axes", id="unknown axis"),
    # loading
    Bad("load_text_model", lambda: ((), {"sha256": None, "path": _pickle_folder()[0]}), "sha256",
        id="an unpinned folder"),
    Bad("load_text_model", lambda: (lambda f: ((f[0],), {"sha256": f[1]}))(_pickle_folder()), "path",
        match="pytorch_model.bin", id="a pickle beside the weights"),
    Bad("load_text_model", lambda: ((42,), {}), "path", id="not a path"),
    Bad("load_text_model", lambda: (("no_such_model",), {}), "path", errors=(FileNotFoundError,),
        id="missing folder"),
    # the attack
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), SENTENCES, [1, 0]),
                                        {"max_swaps": -1, "candidates": _candidates()}), "max_swaps",
        id="negative budget"),
    Bad("substitution_attack", lambda: ((_model(), _tokenizer(), SENTENCES, [1, 0]),
                                        {"max_swaps": 1, "candidates": ["good", "fine"]}), "candidates",
        id="candidates not a mapping"),
    Bad("substitution_candidates", lambda: ((_tokenizer(), torch.zeros(10, 4)), {}), "embeddings",
        id="fewer rows than the vocabulary"),
    Bad("substitution_candidates", lambda: ((_tokenizer(), _model().bert.embeddings.word_embeddings.weight),
                                            {"neighbours": 0}), "neighbours", id="no neighbours"),
]

KNOWN_FAILURES: set[str] = set()

CONVENTION_EXCEPTIONS = {
    "folder_hashes[convention: results]": "a mapping of file name to sha256, the shape load_text_model's "
                                          "sha256= pins take: a lookup table, not a procedure's result",
}
