"""DP-SGD on the chapter-5 transformer: ghost clipping for Linear on (N, L, d), Embedding and LayerNorm.

Every comparison runs on the shipped small BERT (float64 copies, real movie-review
sentences) against ``method="per_sample"`` (``torch.func.vmap``) and against Opacus's
``GradSampleModule`` (hooks) and ``make_private`` in the same process.
"""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from trustml_lab import data, privacy, text

ATOL = 1e-6


@functools.lru_cache(maxsize=1)
def _shipped():
    return text.load_text_model()


@functools.lru_cache(maxsize=1)
def _movies():
    movies = data.load_sentiment("movies")
    return movies[movies["split"] == "train"].reset_index(drop=True)


def classifier(*, trainable: str = "all", dtype=torch.float64) -> text.TokenIdsClassifier:
    """A fresh float64 copy of the shipped BERT as ids -> logits, dropout off (Opacus records in train mode)."""
    model = copy.deepcopy(_shipped().model).to(dtype)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if trainable == "head":  # the last encoder layer, the pooler and the classifier, as notebook 5.4 does
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(("bert.encoder.layer.1.", "bert.pooler", "classifier")))
    return text.TokenIdsClassifier(model).train()


def sentences(start: int, n: int, *, longest: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training sentences from row ``start`` on; ``longest``: the longest (True, full-length, as the
    benchmark's batch) or the shortest (False) ``n`` of the next 400."""
    rows = _movies().iloc[start:start + 400]
    if longest is not None:
        rows = rows.assign(length=rows["text"].str.len()).sort_values("length", ascending=not longest, kind="stable")
    rows = rows.iloc[:n]
    batch = text.encode_text(_shipped().tokenizer, rows["text"].tolist(), model=_shipped().model)
    return batch.input_ids, torch.tensor(rows["label"].to_numpy())


def assert_close(ours, reference, atol=ATOL):
    assert list(ours) == list(reference)
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], atol=atol, rtol=0.0, msg=name)


def norms_of(grads) -> torch.Tensor:
    return torch.stack([g.reshape(len(g), -1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)


def opacus_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Opacus's per-sample gradients (hooks), after a backward through the mean loss."""
    from opacus import GradSampleModule

    model = copy.deepcopy(model)
    wrapped = GradSampleModule(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Full backward hook is firing ... no inputs require gradients" (ids)
        F.cross_entropy(wrapped(x), y).backward()
    grads = {name: p.grad_sample for name, p in model.named_parameters() if p.requires_grad}
    wrapped._close()
    return grads


def record_branches(monkeypatch) -> list[str]:
    """The branch each group of each Linear layer on (N, L, d) takes, recorded during the call
    (the rule of ``privacy._sequence_linear_terms``: ghost norm when ``l (in + out) < in out``)."""
    taken: list[str] = []
    original = privacy._sequence_linear_terms

    def spy(layer, inputs, grad_out, *args):
        for _, length in privacy._length_groups(grad_out.reshape(len(inputs), -1, grad_out.shape[-1])):
            cheaper = length * (layer.in_features + layer.out_features) < layer.in_features * layer.out_features
            taken.append("ghost norm" if cheaper else "materialized")
        return original(layer, inputs, grad_out, *args)

    monkeypatch.setattr(privacy, "_sequence_linear_terms", spy)
    return taken


@pytest.mark.parametrize("longest", [False, True], ids=["short-sentences", "full-length"])
def test_ghost_equals_per_sample_on_the_bert(longest, monkeypatch):
    model = classifier()
    x, y = sentences(0, 12, longest=longest)
    branches = record_branches(monkeypatch)
    per_sample = privacy.per_sample_gradients(model, x, y)
    norms = norms_of(per_sample)
    max_grad_norm = float(norms.median())  # some examples clipped, some not
    assert (norms > max_grad_norm).any() and (norms < max_grad_norm).any()
    kw = dict(max_grad_norm=max_grad_norm, noise_multiplier=0.0)
    ghost = privacy.private_gradient(model, x, y, method="ghost", **kw)
    # short sentences: every group takes the ghost norm; full-length ones: both branches run
    assert set(branches) == ({"ghost norm", "materialized"} if longest else {"ghost norm"})
    assert_close(ghost, privacy.private_gradient(model, x, y, **kw))
    assert_close(ghost, privacy.clip_and_sum(per_sample, max_grad_norm=max_grad_norm).summed)
    # the embedding's gradient touches only the rows of tokens in the batch (padding excluded)
    word = ghost["model.bert.embeddings.word_embeddings.weight"]
    touched = word.abs().sum(dim=1) > 0
    assert set(touched.nonzero().squeeze(1).tolist()) <= set(x.unique().tolist()) - {0}


def test_per_sample_gradients_equal_opacus_grad_sample_on_the_bert():
    model = classifier()
    x, y = sentences(100, 8)
    ours = privacy.per_sample_gradients(model, x, y)
    reference = opacus_grad_samples(model, x, y)
    assert_close(ours, reference)
    # and ghost clipping's clipped sum equals the one of Opacus's per-sample gradients
    max_grad_norm = float(norms_of(reference).median())
    expected = privacy.clip_and_sum(reference, max_grad_norm=max_grad_norm).summed
    assert_close(privacy.private_gradient(model, x, y, max_grad_norm=max_grad_norm, noise_multiplier=0.0,
                                          method="ghost"), expected)


def test_ghost_with_frozen_layers_equals_per_sample():
    model = classifier(trainable="head")
    x, y = sentences(200, 8, longest=True)
    kw = dict(max_grad_norm=0.5, noise_multiplier=0.0)
    ghost = privacy.private_gradient(model, x, y, method="ghost", **kw)
    assert all(k.startswith(("model.bert.encoder.layer.1.", "model.bert.pooler", "model.classifier")) for k in ghost)
    assert_close(ghost, privacy.private_gradient(model, x, y, **kw))


def opacus_step(model, x, y, *, noise_multiplier, max_grad_norm, seed=0, lr=0.0):
    """One make_private step (hooks) on the batch; the noised gradient times the expected batch size."""
    from opacus import PrivacyEngine

    model = copy.deepcopy(model).train()
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, optimizer, _ = PrivacyEngine().make_private(
            module=model, optimizer=torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr),
            data_loader=loader, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
            noise_generator=torch.Generator().manual_seed(seed))
        optimizer.zero_grad()
        F.cross_entropy(private(x), y).backward()
        optimizer.step()
    scale = optimizer.expected_batch_size
    grads = {name: p.grad * scale for name, p in private._module.named_parameters() if p.requires_grad}
    return grads, private._module


def test_noised_ghost_gradient_equals_opacus_make_private():
    model = classifier(trainable="head")
    x, y = sentences(300, 8)
    reference, _ = opacus_step(model, x, y, noise_multiplier=0.7, max_grad_norm=0.5, seed=3)
    ours = privacy.private_gradient(model, x, y, max_grad_norm=0.5, noise_multiplier=0.7, method="ghost",
                                    generator=torch.Generator().manual_seed(3))
    assert_close(ours, reference)


@pytest.mark.parametrize("method", ["ghost", "per_sample"])
def test_dp_fit_one_full_batch_step_equals_opacus_step(method):
    model = classifier(trainable="head")
    x, y = sentences(400, 8)
    result = privacy.dp_fit(copy.deepcopy(model), x, y, noise_multiplier=0.0, max_grad_norm=0.5, sample_rate=1.0,
                            epochs=1, lr=0.5, delta=1e-5, method=method, progress=False)
    _, reference = opacus_step(model, x, y, noise_multiplier=0.0, max_grad_norm=0.5, lr=0.5)
    assert result.steps == 1
    assert result.model.training  # the mode it came in
    assert_close(dict(result.model.named_parameters()), dict(reference.named_parameters()))


def test_dp_fit_ghost_fine_tuning_moves_the_head_and_spends_epsilon():
    model = classifier(trainable="head", dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = sentences(500, 64)
    result = privacy.dp_fit(model, x, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, epochs=1,
                            lr=0.1, delta=1e-5, method="ghost", generator=torch.Generator().manual_seed(0),
                            progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.bert.encoder.layer.1.", "model.bert.pooler", "model.classifier"))
                           for k in changed)
    assert result.steps == 4 and 0 < result.epsilon < float("inf")


def test_membership_scores_take_token_ids():
    model = classifier()
    x, y = sentences(600, 6)
    scores = privacy.membership_scores(model, x, y)
    with torch.no_grad():
        expected = -F.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(scores, expected)


# --------------------------------------------------------------------------- small layers, every option

def _embedding_model(**options) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(11, 4, **options), nn.LayerNorm(4), nn.Flatten(), nn.Linear(20, 3)).double()


def test_embedding_repeated_tokens_and_padding_idx_equal_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (9, 5), generator=g)  # few ids: many repeats within an example, some at padding_idx 0
    y = torch.randint(0, 3, (9,), generator=g)
    for options in ({}, {"padding_idx": 0}):
        model = _embedding_model(**options)
        kw = dict(max_grad_norm=0.3, noise_multiplier=0.0)
        ghost = privacy.private_gradient(model, x, y, method="ghost", **kw)
        assert_close(ghost, privacy.private_gradient(model, x, y, **kw))
        if options:
            assert torch.equal(ghost["0.weight"][0], torch.zeros(4, dtype=torch.float64))


def test_sequence_linear_groups_and_examples_without_gradient_equal_per_sample():
    """Linear on (N, L, d) with examples of every active length, those of class 2 with no gradient at all."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 5), nn.Flatten(), nn.Linear(35, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(13, 7, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (13,), generator=g)
    assert (y == 2).any()

    def loss_fn(logits, y):  # examples of class 2 do not count (per example: vmap calls it one at a time)
        return F.cross_entropy(logits, y, reduction="none") * (y != 2)

    kw = dict(max_grad_norm=0.1, noise_multiplier=0.0, loss_fn=loss_fn)
    assert_close(privacy.private_gradient(model, x, y, method="ghost", **kw),
                 privacy.private_gradient(model, x, y, **kw))
    groups = privacy._length_groups(torch.zeros(4, 3, 2).index_fill_(0, torch.tensor([1]), 1.0))
    assert [(i.tolist(), length) for i, length in groups] == [([1], 3)]


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_on_flat_and_sequence_inputs_equals_per_sample(bias):
    torch.manual_seed(0)
    flat = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5, bias=bias), nn.Linear(5, 3)).double()
    sequence = nn.Sequential(nn.Unflatten(1, (3, 2)), nn.LayerNorm(2, bias=bias), nn.Linear(2, 4),
                             nn.LayerNorm((3, 4)), nn.Flatten(), nn.Linear(12, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    for model in (flat, sequence):
        kw = dict(max_grad_norm=0.2, noise_multiplier=0.0)
        assert_close(privacy.private_gradient(model, x, y, method="ghost", **kw),
                     privacy.private_gradient(model, x, y, **kw))


# --------------------------------------------------------------------------- refused, not a wrong number

class _PositionsBroadcast(nn.Module):
    """The BERT called without position_ids: it broadcasts one (1, L) row over the batch (Opacus #841)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def test_bert_without_batched_position_ids_is_refused_naming_the_workaround():
    model = _PositionsBroadcast(classifier().model)
    x, y = sentences(0, 4)
    with pytest.raises(ValueError, match=r"^model: layer 'model.bert.embeddings.position_embeddings' ran on 1 row "
                                         r"for a batch of 4 examples.*#841"):
        privacy.private_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")


@pytest.mark.parametrize("layer, named", [
    (nn.Embedding(11, 4, scale_grad_by_freq=True), "scale_grad_by_freq"),
    (nn.Embedding(11, 4, max_norm=1.0), "max_norm"),
])
def test_embedding_options_ghost_clipping_cannot_handle_are_refused(layer, named):
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(20, 3))
    x, y = torch.randint(0, 11, (4, 5)), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match=f"^model: Embedding at '0' has {named}"):
        privacy.private_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    with pytest.raises(ValueError, match=f"^model: Embedding at '0' has {named}"):
        privacy.dp_fit(model, x, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, epochs=1, lr=0.1,
                       delta=1e-5, method="ghost", progress=False)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, ids):
        h = self.embed(ids)
        return self.head(self.attention(h, h, h, need_weights=False)[0].mean(dim=1))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap's fallback for attention (per_sample)
@pytest.mark.parametrize("model, named", [
    (_Attention(), "MultiheadAttention at 'attention'"),
    (nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(20, 6), nn.GroupNorm(2, 6)), "GroupNorm at '3'"),
])
def test_layers_ghost_clipping_cannot_handle_are_named(model, named):
    x, y = torch.randint(0, 11, (4, 5)), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match=f"^model: method='ghost' handles .* got {named}"):
        privacy.private_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=0.0, method="ghost")
    # per_sample handles them
    grads = privacy.per_sample_gradients(model, x, y)
    assert all(len(g) == 4 for g in grads.values())


@pytest.mark.parametrize("method", ["ghost", "per_sample"])
def test_bad_token_ids_are_refused(method):
    model = _embedding_model()
    y = torch.zeros(3, dtype=torch.long)
    kw = dict(max_grad_norm=1.0, noise_multiplier=0.0, method=method)
    with pytest.raises(ValueError, match=r"^x: expected token ids in 0..10 .* got values in \[-1, "):
        privacy.private_gradient(model, torch.tensor([[1, 2, 3, 4, -1]] * 3), y, **kw)
    with pytest.raises(ValueError, match=r"^x: expected token ids in 0..10 .* got values in \[1, 11\]"):
        privacy.private_gradient(model, torch.tensor([[1, 2, 3, 4, 11]] * 3), y, **kw)
    with pytest.raises(ValueError, match=r"^x: expected a non-empty batch of token ids"):
        privacy.private_gradient(model, torch.tensor([1, 2, 3]), y, **kw)
    with pytest.raises(TypeError, match="^x: expected floating-point inputs"):  # ids to a model without an Embedding
        privacy.private_gradient(nn.Linear(5, 3), torch.ones(3, 5, dtype=torch.long), y, **kw)
