"""trustml_lab.checks.text: chapter 5's self-checks pass right answers and explain wrong ones."""

import hashlib
import re
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from trustml_lab import checks, text


def stub(*args):
    raise NotImplementedError()


# --------------------------------------------------------------------------- 5.1

def pad_batch(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return ids, mask


def test_pad_batch(capsys):
    checks.text.check_pad_batch(pad_batch)
    assert "PASS pad_batch" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="longest row"):
        checks.text.check_pad_batch(lambda rows, pad_id: pad_batch([r + [pad_id] * 3 for r in rows], pad_id))
    with pytest.raises(checks.CheckFailed, match="attention_mask"):
        checks.text.check_pad_batch(lambda rows, pad_id: (pad_batch(rows, pad_id)[0], 1 - pad_batch(rows, pad_id)[1]))
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.text.check_pad_batch(stub)


def verify_folder(folder, pins):
    files = {p.name for p in Path(folder).iterdir()}
    if files != set(pins):
        return False
    return all(hashlib.sha256((Path(folder) / n).read_bytes()).hexdigest() == d for n, d in pins.items())


def test_verify_folder(capsys):
    checks.text.check_verify_folder(verify_folder)
    assert "PASS verify_folder" in capsys.readouterr().out

    def ignores_extra_files(folder, pins):
        return all((Path(folder) / n).exists() and
                   hashlib.sha256((Path(folder) / n).read_bytes()).hexdigest() == d for n, d in pins.items())

    with pytest.raises(checks.CheckFailed, match="pickle"):
        checks.text.check_verify_folder(ignores_extra_files)
    with pytest.raises(checks.CheckFailed, match="sha256"):
        checks.text.check_verify_folder(lambda folder, pins: {p.name for p in Path(folder).iterdir()} == set(pins))
    with pytest.raises(checks.CheckFailed, match="True or False"):
        checks.text.check_verify_folder(lambda folder, pins: "yes")


# --------------------------------------------------------------------------- 5.2

def bpsn_auc(y_true, scores, member):
    rows = (member & (y_true == 0)) | (~member & (y_true == 1))
    return roc_auc_score(y_true[rows], scores[rows])


def test_bpsn_auc(capsys):
    checks.text.check_bpsn_auc(bpsn_auc)
    assert "PASS bpsn_auc" in capsys.readouterr().out

    def bnsp(y_true, scores, member):
        rows = (member & (y_true == 1)) | (~member & (y_true == 0))
        return roc_auc_score(y_true[rows], scores[rows])

    with pytest.raises(checks.CheckFailed, match="BNSP"):
        checks.text.check_bpsn_auc(bnsp)
    with pytest.raises(checks.CheckFailed, match="BPSN AUC"):
        checks.text.check_bpsn_auc(lambda y, s, m: roc_auc_score(y[m], s[m]))


def swap_term(sentence, term, replacement):
    def keep_case(match):
        word = match.group(0)
        if word.isupper() and len(word) > 1:
            return replacement.upper()
        return replacement[0].upper() + replacement[1:] if word[0].isupper() else replacement.lower()

    return re.sub(rf"(?<![\w-]){re.escape(term)}(?![\w-])", keep_case, sentence, flags=re.IGNORECASE)


def test_swap_term(capsys):
    checks.text.check_swap_term(swap_term)
    assert "PASS swap_term" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="whole words"):
        checks.text.check_swap_term(lambda s, t, r: s.replace(t, r))
    with pytest.raises(checks.CheckFailed, match="whole words"):
        checks.text.check_swap_term(lambda s, t, r: re.sub(rf"\b{t}\b", r, s, flags=re.IGNORECASE))


def test_the_swap_table_agrees_with_the_package():
    for sentence, term, replacement in (("The Sikh director, the SIKH critic.", "Sikh", "Buddhist"),
                                        ("Indian food near Indiana.", "Indian", "French"),
                                        ("muslim neighbors, Muslim friends.", "Muslim", "Hindu"),
                                        ("A Muslim family.", "Muslim", "Jewish")):
        assert text.counterfactual_sentences([sentence], [term, replacement])[0][1] == \
            swap_term(sentence, term, replacement)


# --------------------------------------------------------------------------- 5.3

@pytest.fixture(scope="module")
def loaded():
    return text.load_text_model()


def riemann_token_ig(model, input_ids, attention_mask, baseline_ids, target, steps):
    embeddings = model.bert.embeddings.word_embeddings
    with torch.no_grad():
        start, end = embeddings(baseline_ids), embeddings(input_ids)
    total = torch.zeros_like(end)
    for k in range(1, steps + 1):
        point = (start + k / steps * (end - start)).requires_grad_(True)
        logit = model(inputs_embeds=point, attention_mask=attention_mask).logits[:, target].sum()
        total += torch.autograd.grad(logit, point)[0]
    return (total / steps * (end - start)).sum(-1)


def test_riemann_token_ig(loaded, capsys):
    model, tokenizer = loaded
    checks.text.check_riemann_token_ig(riemann_token_ig, model, tokenizer)
    assert "PASS riemann_token_ig" in capsys.readouterr().out

    def gradient_only(model, ids, mask, baseline, target, steps):
        return riemann_token_ig(model, ids, mask, baseline, target, steps) * 0 + 1

    with pytest.raises(checks.CheckFailed, match="average the gradients"):
        checks.text.check_riemann_token_ig(gradient_only, model, tokenizer)

    def per_dimension(model, ids, mask, baseline, target, steps):
        return torch.zeros(*ids.shape, 128)

    with pytest.raises(checks.CheckFailed, match="embedding dimension"):
        checks.text.check_riemann_token_ig(per_dimension, model, tokenizer)


def hotflip_estimates(gradient, weight, token_id, candidate_ids):
    return (weight[candidate_ids] - weight[token_id]) @ gradient


def test_hotflip_estimates(capsys):
    checks.text.check_hotflip_estimates(hotflip_estimates)
    assert "PASS hotflip_estimates" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="E\\[candidate\\] - E\\[token\\]"):
        checks.text.check_hotflip_estimates(lambda g, w, t, c: w[c] @ g)
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.text.check_hotflip_estimates(stub)


def test_checks_do_not_leave_copies_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    checks.text.check_verify_folder(verify_folder)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- 5.4

def sequence_ghost_norms(a, g):
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2)).sqrt()


def test_sequence_ghost_norms(capsys):
    checks.text.check_sequence_ghost_norms(sequence_ghost_norms)
    assert "PASS sequence_ghost_norms" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="squared norms"):
        checks.text.check_sequence_ghost_norms(lambda a, g: sequence_ghost_norms(a, g) ** 2)
    with pytest.raises(checks.CheckFailed, match="each example needs its own"):
        checks.text.check_sequence_ghost_norms(
            lambda a, g: torch.einsum("blo,bli->oi", g, a).norm().expand(len(a)).clone())
    with pytest.raises(checks.CheckFailed, match="per-example norms"):  # token by token, cross terms forgotten
        checks.text.check_sequence_ghost_norms(lambda a, g: ((a.norm(dim=2) * g.norm(dim=2)) ** 2).sum(1).sqrt())
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.text.check_sequence_ghost_norms(stub)


def embedding_grad_norms(ids, g, padding_idx):
    if padding_idx is not None:
        g = g.masked_fill((ids == padding_idx)[:, :, None], 0)
    same = ids[:, :, None] == ids[:, None, :]
    return (torch.bmm(g, g.transpose(1, 2)) * same).sum(dim=(1, 2)).sqrt()


def test_embedding_grad_norms(capsys):
    checks.text.check_embedding_grad_norms(embedding_grad_norms)
    assert "PASS embedding_grad_norms" in capsys.readouterr().out
    with pytest.raises(checks.CheckFailed, match="occurs twice"):
        checks.text.check_embedding_grad_norms(lambda ids, g, pad: g.flatten(1).norm(dim=1))
    with pytest.raises(checks.CheckFailed, match="padding_idx get no gradient"):
        checks.text.check_embedding_grad_norms(lambda ids, g, pad: embedding_grad_norms(ids, g, None))
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        checks.text.check_embedding_grad_norms(stub)
