"""Self-checks for chapter 5, Trustworthy transformers."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import data_dir
from ..text import subgroup_aucs, token_attributions
from ._core import as_array, as_number, call_learner, passed, require, require_close

__all__ = [
    "check_bpsn_auc",
    "check_embedding_grad_norms",
    "check_hotflip_estimates",
    "check_pad_batch",
    "check_riemann_token_ig",
    "check_sequence_ghost_norms",
    "check_swap_term",
    "check_verify_folder",
]


def check_pad_batch(pad_batch: Callable[..., Any]) -> None:
    """Check ``pad_batch(rows, pad_id) -> (input_ids, attention_mask)``: pad lists of ids to the longest."""
    name = "pad_batch"
    for rows, pad_id in (([[2, 7, 3], [2, 3]], 0), ([[5], [5, 6, 7, 8], [9, 9]], 1), ([[2, 4, 4, 3]], 0)):
        got = call_learner(name, pad_batch, rows, pad_id)
        require(isinstance(got, (tuple, list)) and len(got) == 2, name,
                "return two tensors: (input_ids, attention_mask)")
        ids, mask = (as_array(g, name) for g in got)
        width = max(len(r) for r in rows)
        require(ids.shape == (len(rows), width), name,
                f"pad to the longest row of the batch: shape ({len(rows)}, {width}), got {ids.shape}")
        expected = np.full((len(rows), width), pad_id)
        expected_mask = np.zeros((len(rows), width))
        for i, r in enumerate(rows):
            expected[i, :len(r)], expected_mask[i, :len(r)] = r, 1
        require_close(ids, expected, name, case=f"rows {rows}, pad id {pad_id}", what="input_ids",
                      hint="keep each row's ids first, then the padding id")
        require_close(mask, expected_mask, name, case=f"rows {rows}", what="attention_mask",
                      hint="1 on the row's own tokens, 0 on the padding")
    passed(name, "pads three batches to their own longest row")


def _fresh_copy(folder: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="trustml_check_")) / folder.name
    shutil.copytree(folder, target)
    return target


def check_verify_folder(verify_folder: Callable[..., Any]) -> None:
    """Check ``verify_folder(folder, pins) -> bool``: True only if the files are exactly the pinned ones, unaltered."""
    name = "verify_folder"
    source = data_dir() / "sentiment_bert"
    pins = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(source.iterdir())}
    good = _fresh_copy(source)
    altered = _fresh_copy(source)
    raw = bytearray((altered / "model.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (altered / "model.safetensors").write_bytes(bytes(raw))
    extra = _fresh_copy(source)
    (extra / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    missing = _fresh_copy(source)
    (missing / "tokenizer.json").unlink()
    cases = ((good, True, "an untouched copy"), (altered, False, "one byte of model.safetensors flipped"),
             (extra, False, "an extra pytorch_model.bin (a pickle)"), (missing, False, "tokenizer.json missing"))
    try:
        for folder, expected, case in cases:
            got = call_learner(name, verify_folder, folder, dict(pins))
            require(isinstance(got, (bool, np.bool_)), name, f"return True or False, got {type(got).__name__}")
            hint = {"an untouched copy": "an unaltered folder with exactly the pinned files must pass",
                    "one byte of model.safetensors flipped": "compare each file's sha256 with its pin",
                    "an extra pytorch_model.bin (a pickle)": "a file without a pin must fail the check: "
                    "it may be a pickle that runs code",
                    "tokenizer.json missing": "every pinned file must be there"}[case]
            require(bool(got) == expected, name, f"{case}: expected {expected}, got {bool(got)}. {hint}")
    finally:
        for folder, _, _ in cases:
            shutil.rmtree(folder.parent, ignore_errors=True)
    passed(name, "accepts the pinned folder, refuses an altered byte, an extra pickle and a missing file")


def check_bpsn_auc(bpsn_auc: Callable[..., Any]) -> None:
    """Check ``bpsn_auc(y_true, scores, member) -> float``: subgroup negatives against background positives."""
    name = "bpsn_auc"
    generator = np.random.default_rng(0)
    for case, decimals in (("continuous scores", 6), ("scores with ties", 1)):
        y = generator.integers(0, 2, 300)
        scores = np.round(0.3 * y + generator.random(300), decimals)
        member = generator.random(300) < 0.3
        scores_shifted = np.where(member, scores + 0.2, scores)  # the subgroup scored higher
        expected = float(subgroup_aucs(y, scores_shifted, member).bpsn_auc[0])
        got = as_number(call_learner(name, bpsn_auc, y.copy(), scores_shifted.copy(), member.copy()), name)
        swapped = float(subgroup_aucs(y, scores_shifted, member).bnsp_auc[0])
        require(abs(got - swapped) > 1e-9 or abs(got - expected) < 1e-9, name,
                "that is the BNSP AUC: BPSN takes the background's Positives and the Subgroup's Negatives")
        require_close(got, expected, name, case=case, what="the BPSN AUC", tol=1e-9,
                      hint="select rows (member & y == 0) | (~member & y == 1), then roc_auc_score on them")
    passed(name, "equals Borkan et al.'s BPSN AUC with and without ties")


def check_swap_term(swap_term: Callable[..., Any]) -> None:
    """Check ``swap_term(sentence, term, replacement) -> str``: whole words only, any case, capitalization kept."""
    name = "swap_term"
    cases = (
        ("A Muslim family.", "Muslim", "Jewish", "A Jewish family."),
        ("muslim neighbors, Muslim friends.", "Muslim", "Hindu", "hindu neighbors, Hindu friends."),
        ("Indian food near Indiana.", "Indian", "French", "French food near Indiana."),
        ("The Sikh director, the SIKH critic.", "Sikh", "Buddhist", "The Buddhist director, the BUDDHIST critic."),
    )
    for sentence, term, replacement, wanted in cases:
        got = call_learner(name, swap_term, sentence, term, replacement)
        require(isinstance(got, str), name, f"return the new sentence as a string, got {type(got).__name__}")
        expected = wanted  # what counterfactual_sentences([sentence], [term, replacement])[0][1] gives
        hint = ("replace whole words only (a regular expression with word boundaries), every occurrence, "
                "ignoring case, keeping the original's capitalization (Capitalized, UPPER, lower)")
        require(got == expected, name, f"{sentence!r}: expected {expected!r}, got {got!r}. {hint}")
    passed(name, "swaps whole words in four sentences, whatever their case")


def check_riemann_token_ig(riemann_token_ig: Callable[..., Any], model: torch.nn.Module, tokenizer: Any) -> None:
    """Check ``riemann_token_ig(model, input_ids, attention_mask, baseline_ids, target, steps)`` -> (N, L)."""
    from ..text import _pad_baseline, encode_text

    name = "riemann_token_ig"
    batch = encode_text(tokenizer, ["A gorgeous, witty film.", "Dull and far too long."], model=model)
    baseline = _pad_baseline(model, batch.input_ids, batch.attention_mask)
    for steps in (2, 6):
        got = call_learner(name, riemann_token_ig, model, batch.input_ids, batch.attention_mask, baseline, 1, steps)
        got = torch.as_tensor(as_array(got, name))
        expected = token_attributions(model, batch.input_ids, target=1, attention_mask=batch.attention_mask,
                                      baseline_ids=baseline, steps=steps, method="riemann_right")
        require(tuple(got.shape) == tuple(expected.attributions.shape), name,
                f"return one number per token, shape {tuple(expected.attributions.shape)}, got {tuple(got.shape)}: "
                "sum the attribution over the embedding dimension")
        require_close(got, expected.attributions, name, case=f"{steps} steps", what="the attributions", tol=1e-4,
                      hint="average the gradients at E(b) + k/steps (E(x) - E(b)), k = 1..steps, multiply by "
                      "E(x) - E(b), sum over the embedding dimension")
    passed(name, "equals token_attributions(method='riemann_right') with 2 and 6 steps")


def check_hotflip_estimates(hotflip_estimates: Callable[..., Any]) -> None:
    """Check ``hotflip_estimates(gradient, weight, token_id, candidate_ids)``: ``(E[c] - E[w]) . g`` per candidate."""
    name = "hotflip_estimates"
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    for token_id, candidates in ((3, [7, 11, 20]), (40, [1]), (0, [5, 6, 7, 8, 9])):
        gradient = torch.randn(8, generator=generator, dtype=torch.float64)
        got = call_learner(name, hotflip_estimates, gradient, weight, token_id, torch.tensor(candidates))
        expected = (weight[candidates] - weight[token_id]) @ gradient
        require_close(got, expected, name, case=f"token {token_id}, candidates {candidates}", what="the estimates",
                      tol=1e-9, hint="the first-order change of the score is the gradient dotted with the "
                      "change of the embedding, E[candidate] - E[token]")
    passed(name, "equals the first-order change for three tokens")


# --------------------------------------------------------------------------- 5.4

def _materialized_sequence_norms(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.einsum("blo,bli->boi", g, a).flatten(1).norm(dim=1)


def check_sequence_ghost_norms(sequence_ghost_norms: Callable[..., Any]) -> None:
    """Check ``sequence_ghost_norms(a, g) -> (B,)``: per-example weight-gradient norms of a Linear on tokens."""
    name = "sequence_ghost_norms"
    generator = torch.Generator().manual_seed(0)
    cases = (("4 examples, 5 tokens, 3 -> 2 features", (4, 5, 3, 2)),
             ("one example, 7 tokens, 6 -> 4 features", (1, 7, 6, 4)),
             ("3 examples, 2 tokens, 8 -> 8 features", (3, 2, 8, 8)))
    for case, (batch, length, n_in, n_out) in cases:
        a = torch.randn(batch, length, n_in, generator=generator, dtype=torch.float64)
        g = torch.randn(batch, length, n_out, generator=generator, dtype=torch.float64)
        if length > 2:
            g[:, length // 2 + 1:] = 0  # padded positions carry no gradient
        expected = _materialized_sequence_norms(a, g)
        got = as_array(call_learner(name, sequence_ghost_norms, a, g), name)
        require(got.shape == (batch,), name, f"{case}: return one norm per example, shape ({batch},), got {got.shape}")
        squared = np.allclose(got, expected.numpy() ** 2, rtol=1e-6, atol=1e-9)
        require(not squared or np.allclose(got, expected.numpy(), rtol=1e-6), name,
                f"{case}: these are the squared norms: take the square root at the end")
        summed = torch.einsum("blo,bli->oi", g, a).norm().item()
        require(batch == 1 or not np.allclose(got, summed), name,
                f"{case}: that is the norm of the batch's gradient; each example needs its own")
        require_close(got, expected.numpy(), name, case=case, what="the per-example norms", tol=1e-8,
                      hint="|g_b^T a_b|_F^2 = sum((a_b a_b^T) * (g_b g_b^T)): two (L, L) Gram matrices per example")
    passed(name, "equals the norms of the materialized per-example gradients in three cases")


def _materialized_embedding_norms(ids: torch.Tensor, g: torch.Tensor, vocabulary: int,
                                  padding_idx: int | None) -> torch.Tensor:
    norms = []
    for b in range(len(ids)):
        rows = torch.zeros(vocabulary, g.shape[2], dtype=g.dtype).index_add_(0, ids[b], g[b])
        if padding_idx is not None:
            rows[padding_idx] = 0
        norms.append(rows.norm())
    return torch.stack(norms)


def check_embedding_grad_norms(embedding_grad_norms: Callable[..., Any]) -> None:
    """Check ``embedding_grad_norms(ids, g, padding_idx) -> (B,)``: per-example gradient norms of an Embedding."""
    name = "embedding_grad_norms"
    generator = torch.Generator().manual_seed(1)
    cases = (("distinct tokens, no padding index", 50, 3, 6, None),
             ("repeated tokens (a vocabulary of 4)", 4, 5, 8, None),
             ("repeated tokens and padding id 0", 4, 5, 8, 0))
    for case, vocabulary, batch, length, padding_idx in cases:
        if vocabulary >= length:
            ids = torch.stack([torch.randperm(vocabulary, generator=generator)[:length] for _ in range(batch)])
        else:
            ids = torch.randint(0, vocabulary, (batch, length), generator=generator)
            ids[:, -2:] = 0  # trailing padding
        g = torch.randn(batch, length, 3, generator=generator, dtype=torch.float64)
        expected = _materialized_embedding_norms(ids, g, vocabulary, padding_idx)
        got = as_array(call_learner(name, embedding_grad_norms, ids, g, padding_idx), name)
        require(got.shape == (batch,), name, f"{case}: return one norm per example, shape ({batch},), got {got.shape}")
        if padding_idx is None and vocabulary < length:
            per_token = g.flatten(1).norm(dim=1).numpy()
            require(not np.allclose(got, per_token), name,
                    f"{case}: a token that occurs twice adds both output gradients to one row: sum them "
                    "before squaring (sqrt(sum |g_t|^2) is right only when every token is distinct)")
        if padding_idx is not None:
            ignored = _materialized_embedding_norms(ids, g, vocabulary, None).numpy()
            require(not np.allclose(got, ignored), name,
                    f"{case}: tokens equal to padding_idx get no gradient (torch.nn.functional.embedding)")
        require_close(got, expected.numpy(), name, case=case, what="the per-example norms", tol=1e-8,
                      hint="add each token's output gradient to its row (per example), then take the norm")
    passed(name, "equals the materialized per-example embedding gradients, repeated tokens and padding included")
