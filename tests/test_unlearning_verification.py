"""verify_update on a model whose losses are known: a parent that separates the originals, an
update that leaves them as they were, and what the failure's reason says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veil.unlearning.verification import FAILED, INCONCLUSIVE, VERIFIED, verify_update


@pytest.fixture
def separated() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear parent that predicts its originals' labels with confidence and held-out labels
    wrongly: a loss gap far beyond its standard error."""
    generator = torch.Generator().manual_seed(0)
    parent = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        parent[0].weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]))
        parent[0].bias.zero_()
    originals = 3 * torch.randn(40, 4, generator=generator)
    held_out = 3 * torch.randn(40, 4, generator=generator)
    with torch.no_grad():
        original_targets = (parent(originals) > 0).float()
        held_out_targets = (parent(held_out) <= 0).float()
    return parent, originals, original_targets, held_out, held_out_targets


def test_an_update_that_changes_nothing_fails_and_names_a_small_original_gradient(separated):
    parent, originals, targets, held_out, held_out_targets = separated
    result = verify_update(parent, parent, originals, targets, held_out, held_out_targets,
                           min_progress=0.1, original_gradient_share=0.02)
    assert result.verdict == FAILED
    assert result.parent_loss_gap > 2 * result.parent_gap_standard_error
    assert result.loss_gap_progress == pytest.approx(0.0)
    assert "0% of the way to held-out behaviour, below the 10% required" in result.reason
    assert result.reason.endswith("; the originals' summed gradient was 2% of the replacements' at the "
                                  "parent, which fits them closely: the update had little of them to act "
                                  "on (retraining does not depend on it)")


def test_a_large_original_gradient_or_none_is_not_blamed(separated):
    parent, originals, targets, held_out, held_out_targets = separated
    for share in (0.5, None):
        result = verify_update(parent, parent, originals, targets, held_out, held_out_targets,
                               min_progress=0.1, original_gradient_share=share)
        assert result.verdict == FAILED and "summed gradient" not in result.reason


def test_the_share_does_not_change_a_verified_or_inconclusive_verdict(separated):
    parent, originals, targets, held_out, held_out_targets = separated
    forgetting = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        forgetting[0].weight.zero_()
        forgetting[0].bias.zero_()
    verified = verify_update(parent, forgetting, originals, targets, held_out, held_out_targets,
                             min_progress=0.1, original_gradient_share=0.01)
    assert verified.verdict == VERIFIED and verified.loss_gap_progress == pytest.approx(1.0)
    assert verified.reason == "the update moved the originals toward held-out behaviour"
    inconclusive = verify_update(forgetting, forgetting, originals, targets, held_out, held_out_targets,
                                 min_progress=0.1, original_gradient_share=0.01)
    assert inconclusive.verdict == INCONCLUSIVE and "summed gradient" not in inconclusive.reason
