"""Chapter 5 benchmarks: token attributions against captum, subgroup AUCs against a loop of scikit-learn calls.

Targets (issue 10): ``token_attributions`` no slower than captum's ``LayerIntegratedGradients``
on the shipped BERT (same sentences, steps, rule and internal batch); ``subgroup_aucs``
over 20 subgroups and 100,000 rows at least 20x faster than 60 ``roc_auc_score`` calls
(subgroup, BPSN and BNSP AUC of each subgroup).
"""

from __future__ import annotations

import numpy as np
import torch

from trustml_lab import data, text

from ._harness import Case

STEPS = 50


def _attribution_case(smoke: bool) -> Case:
    from captum.attr import LayerIntegratedGradients

    model, tokenizer = text.load_text_model()
    movies = data.load_sentiment("movies")
    sentences = movies[movies["split"] == "test"]["text"].tolist()[:2 if smoke else 16]
    batch = text.encode_text(tokenizer, sentences, model=model)
    target = torch.ones(len(sentences), dtype=torch.long)
    steps = 4 if smoke else STEPS
    internal = len(sentences) * (steps // 2)  # two chunks of whole steps, for both
    baseline = text._pad_baseline(model, batch.input_ids, batch.attention_mask)
    explainer = LayerIntegratedGradients(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits,
                                         model.bert.embeddings.word_embeddings)

    def ours():
        return text.token_attributions(model, batch.input_ids, target=target, attention_mask=batch.attention_mask,
                                       steps=steps, internal_batch_size=internal)

    def reference():
        return explainer.attribute(batch.input_ids, baselines=baseline, target=target,
                                   additional_forward_args=(batch.attention_mask,), n_steps=steps,
                                   method="gausslegendre", internal_batch_size=internal,
                                   return_convergence_delta=True)

    def same(result, expected):
        attributions, delta = expected
        torch.testing.assert_close(result.embedding_attributions, attributions, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.delta, delta.to(result.delta.dtype), atol=1e-5, rtol=1e-4)

    return Case(
        f"token_attributions, {len(sentences)} movie sentences, {steps} steps (with delta)",
        ours=ours, reference=reference, reference_name="captum LayerIntegratedGradients",
        min_speedup=1.0, target="no slower than captum", check=same, repeats=7)


def _subgroup_case(smoke: bool) -> Case:
    from sklearn.metrics import roc_auc_score

    rows, groups = (2_000, 3) if smoke else (100_000, 20)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, rows)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.25, rows), 0, 1), 3)  # ties, as rounded scores have
    members = rng.random((rows, groups)) < rng.uniform(0.01, 0.3, groups)
    y_t, scores_t, members_t = torch.tensor(y), torch.tensor(scores), torch.tensor(members)

    def loop_of_sklearn():
        out = np.empty((3, groups))
        for g in range(groups):
            m = members[:, g]
            out[0, g] = roc_auc_score(y[m], scores[m])
            bpsn = (m & (y == 0)) | (~m & (y == 1))
            out[1, g] = roc_auc_score(y[bpsn], scores[bpsn])
            bnsp = (m & (y == 1)) | (~m & (y == 0))
            out[2, g] = roc_auc_score(y[bnsp], scores[bnsp])
        return out

    def same(result, expected):
        got = np.stack([result.subgroup_auc.numpy(), result.bpsn_auc.numpy(), result.bnsp_auc.numpy()])
        np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)

    return Case(
        f"subgroup_aucs, {groups} subgroups, {rows:,} rows",
        ours=lambda: text.subgroup_aucs(y_t, scores_t, members_t), reference=loop_of_sklearn,
        reference_name=f"{3 * groups} x sklearn roc_auc_score", min_speedup=20.0, target=">= 20x faster",
        check=same, repeats=7)


def cases(*, smoke: bool = False) -> list[Case]:
    return [_attribution_case(smoke), _subgroup_case(smoke)]
