"""trustml_lab.checks.distributed: right answers pass; the common wrong ones are explained."""

from __future__ import annotations

import math

import pytest

from trustml_lab import checks

cd = checks.distributed


def test_distributed_checks_pass_right_answers(capsys):
    cd.check_noise_share_std(lambda sigma, clip, world_size: sigma * clip / math.sqrt(world_size))
    cd.check_expected_global_batch(lambda sizes, rate: max(1, int(rate * sum(sizes))))
    out = capsys.readouterr().out
    assert "PASS noise_share_std" in out and "PASS expected_global_batch" in out


@pytest.mark.parametrize("wrong, hint", [
    (lambda sigma, clip, world_size: sigma * clip, "2 ranks"),  # the whole noise on every rank
    (lambda sigma, clip, world_size: sigma * clip / world_size, "variances add"),  # stds added
])
def test_distributed_noise_share_check_explains_wrong_answers(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        cd.check_noise_share_std(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda sizes, rate: max(1, int(rate * sizes[0])), "Adult on 2 ranks"),  # the rank's own batch
    (lambda sizes, rate: sum(int(rate * n) for n in sizes), r"int\(3.0\)"),  # per-rank roundings
    (lambda sizes, rate: int(rate * sum(sizes)), "at least 1"),  # no floor at 1
])
def test_distributed_batch_check_explains_wrong_answers(wrong, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        cd.check_expected_global_batch(wrong)


def test_distributed_checks_explain_a_stub():
    def stub(*args):
        raise NotImplementedError()

    for check in (cd.check_noise_share_std, cd.check_expected_global_batch):
        with pytest.raises(checks.CheckFailed):
            check(stub)
