"""Each loss against numbers computed by hand (paper Sec. 2, App. B)."""

import math

import pytest
import torch

from specc.runtime.losses import bo2_loss, dpo_loss, ipo_loss, margin, preference_loss, sequence_logp, slic_loss


def test_margin_is_policy_minus_reference_log_ratio():
    # [(-1) - (-2)] - [(-3) - (-2.5)] = 1 - (-0.5) = 1.5
    h = margin(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.5]))
    assert h.item() == pytest.approx(1.5)


def test_ipo_targets_one_over_two_beta():
    # beta = 0.1 -> target 5; (2 - 5)^2 = 9, (5 - 5)^2 = 0 -> mean 4.5
    assert ipo_loss(torch.tensor([2.0, 5.0]), beta=0.1).item() == pytest.approx(4.5)
    # larger beta = smaller target = stronger regularisation: beta 0.5 -> target 1
    assert ipo_loss(torch.tensor([1.0]), beta=0.5).item() == pytest.approx(0.0)


def test_dpo_is_log_one_plus_exp_minus_beta_h():
    h = torch.tensor([2.0, -1.0])
    expected = (math.log1p(math.exp(-0.2)) + math.log1p(math.exp(0.1))) / 2
    assert dpo_loss(h, beta=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_slic_hinge():
    # max(0, 1 - 0.5 * 4) = 0 ; max(0, 1 - 0.5 * 1) = 0.5 -> mean 0.25
    assert slic_loss(torch.tensor([4.0, 1.0]), beta=0.5).item() == pytest.approx(0.25)


def test_bo2_is_negative_winner_log_likelihood():
    assert bo2_loss(torch.tensor([-3.0, -5.0])).item() == pytest.approx(4.0)
    loss, _ = preference_loss("bo2", 0.1, torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(3.0)  # the loser plays no part


def test_sequence_logp_sum_vs_mean():
    token_logps = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert sequence_logp(token_logps, None, "sum").item() == pytest.approx(-10.0)
    assert sequence_logp(token_logps, None, "mean").item() == pytest.approx(-2.5)
    assert sequence_logp(token_logps, mask, "sum").item() == pytest.approx(-6.0)
    assert sequence_logp(token_logps, mask, "mean").item() == pytest.approx(-2.0)


def test_every_loss_the_schema_names_has_a_function():
    import typing

    from specc.compiler.schema import LossSettings
    from specc.runtime.losses import LOSSES

    assert set(LOSSES) == set(typing.get_args(LossSettings.model_fields["name"].annotation))
