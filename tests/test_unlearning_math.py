"""FeatureUnlearner and its solvers on models with known answers (logistic regression) and tiny CNNs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from veil.errors import Aborted, InvalidArgument
from veil.unlearning.classifier import ClassifierSpec, build_classifier
from veil.unlearning.params import TrainConfig, UnlearnParams
from veil.unlearning.solvers import conjugate_gradient, lissa
from veil.unlearning.training import fit, initialise, per_sample_loss
from veil.unlearning.unlearner import FeatureUnlearner

WEIGHT_DECAY = 1e-2
EXACT = UnlearnParams(damping=0.0, tolerance=1e-13, max_iterations=200, max_update_ratio=10.0,
                      hessian_samples=8192)  # every training position (the sets here are smaller)


def logistic_data(n: int = 200, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, 1, generator=g, dtype=torch.float64)
    y = (torch.rand(n, 1, generator=g, dtype=torch.float64) < torch.sigmoid(x @ w)).double()
    return x, y


def logistic_model(d: int = 5) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(d, 1)).double()
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    return model


def optimise(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> None:
    """Minimise mean loss + WEIGHT_DECAY/2 |theta|^2 to machine precision (Newton's method)."""
    params = list(model.parameters())
    for _ in range(30):
        loss = per_sample_loss(model(x), y).mean() + WEIGHT_DECAY / 2 * sum(p.pow(2).sum() for p in params)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        hessian = torch.stack([torch.cat([h.reshape(-1) for h in torch.autograd.grad(g, params, retain_graph=True)])
                               for g in flat])
        step = torch.linalg.solve(hessian, flat.detach())
        with torch.no_grad():
            offset = 0
            for p in params:
                p -= step[offset:offset + p.numel()].view_as(p)
                offset += p.numel()


def flat_params(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state["0.weight"].reshape(-1), state["0.bias"].reshape(-1)])


def logistic_gradient_sum(model: nn.Sequential, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum_i grad l(x_i) of logistic regression, in closed form."""
    theta = flat_params(model.state_dict())
    features = torch.cat([inputs, torch.ones(inputs.shape[0], 1, dtype=inputs.dtype)], dim=1)
    return features.T @ (torch.sigmoid(features @ theta) - targets.reshape(-1))


def closed_form_newton(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, originals: torch.Tensor,
                       replacements: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """theta - (X'WX/n + lambda I)^-1 Delta/n for logistic regression, in closed form."""
    n = x.shape[0]
    theta = flat_params(model.state_dict())
    design = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    p = torch.sigmoid(design @ theta)
    hessian = design.T @ (design * (p * (1 - p))[:, None]) / n + WEIGHT_DECAY * torch.eye(design.shape[1], dtype=x.dtype)
    delta = (logistic_gradient_sum(model, replacements, targets)
             - logistic_gradient_sum(model, originals, targets))
    return theta - torch.linalg.solve(hessian, delta / n)


@pytest.fixture
def revision():
    x, y = logistic_data()
    model = logistic_model()
    optimise(model, x, y)
    g = torch.Generator().manual_seed(1)
    originals = x[:20]
    replacements = originals + 0.7 * torch.randn(originals.shape, generator=g, dtype=x.dtype)
    return model, x, y, originals, replacements, y[:20]


@pytest.mark.parametrize("curvature", ["hessian", "gauss-newton"])
def test_second_order_is_the_exact_newton_step_for_logistic_regression(revision, curvature):
    model, x, y, originals, replacements, targets = revision
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    params = UnlearnParams(**{**EXACT.to_dict(), "curvature": curvature})
    result = unlearner.second_order(originals, replacements, targets, x, y, params)
    expected = closed_form_newton(model, x, y, originals, replacements, targets)
    assert result.stats["solver_converged"] is True
    assert torch.allclose(flat_params(result.state_dict), expected, rtol=0, atol=1e-10)


def test_lissa_matches_conjugate_gradient(revision):
    model, x, y, originals, replacements, targets = revision
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    expected = closed_form_newton(model, x, y, originals, replacements, targets)
    params = UnlearnParams(**{**EXACT.to_dict(), "solver": "lissa", "scale": 2.0,
                              "max_iterations": 5000, "tolerance": 1e-12})
    result = unlearner.second_order(originals, replacements, targets, x, y, params)
    assert result.stats["solver_relative_residual"] < 1e-8
    assert torch.allclose(flat_params(result.state_dict), expected, rtol=0, atol=1e-8)


def test_second_order_lands_near_the_retrained_optimum(revision):
    model, x, y, originals, replacements, targets = revision
    revised_x = x.clone()
    revised_x[:20] = replacements
    retrained = logistic_model()
    optimise(retrained, revised_x, y)
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    updated = unlearner.second_order(originals, replacements, targets, revised_x, y, EXACT)
    target = flat_params(retrained.state_dict())
    before = (flat_params(model.state_dict()) - target).norm()
    after = (flat_params(updated.state_dict) - target).norm()
    assert after < 0.1 * before
    first = unlearner.first_order(originals, replacements, targets,
                                  UnlearnParams(tau=1.0 / x.shape[0] / 0.25))
    assert (flat_params(first.state_dict) - target).norm() < before


def test_the_card_names_both_halves_of_the_gradient_difference(revision):
    """The originals' half is what an update learns of them (near zero for a parent that fits
    them exactly); the card reports it beside the replacements' half."""
    model, x, y, originals, replacements, targets = revision
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    original = logistic_gradient_sum(model, originals, targets)
    replaced = logistic_gradient_sum(model, replacements, targets)
    for result in (unlearner.first_order(originals, replacements, targets, UnlearnParams()),
                   unlearner.second_order(originals, replacements, targets, x, y, EXACT)):
        assert result.stats["original_gradient_norm"] == pytest.approx(float(original.norm()), rel=1e-9)
        assert result.stats["replacement_gradient_norm"] == pytest.approx(float(replaced.norm()), rel=1e-9)
        assert result.stats["delta_norm"] == pytest.approx(float((replaced - original).norm()), rel=1e-9)
        assert result.stats["original_gradient_norm"] > 0.1


def test_replacing_z_by_itself_changes_nothing(revision):
    model, x, y, originals, _, targets = revision
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    for result in (unlearner.first_order(originals, originals.clone(), targets, UnlearnParams()),
                   unlearner.second_order(originals, originals.clone(), targets, x, y, EXACT)):
        assert result.stats["delta_norm"] == 0.0
        for name, tensor in model.state_dict().items():
            assert torch.equal(result.state_dict[name], tensor)


def test_nan_in_a_replacement_aborts_and_leaves_the_model(revision):
    model, x, y, originals, replacements, targets = revision
    before = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = replacements.clone()
    poisoned[3, 2] = math.nan
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    with pytest.raises(Aborted, match="not finite"):
        unlearner.second_order(originals, poisoned, targets, x, y, EXACT)
    with pytest.raises(Aborted, match="not finite"):
        unlearner.first_order(originals, poisoned, targets, UnlearnParams())
    for name, tensor in model.state_dict().items():
        assert torch.equal(before[name], tensor)


def test_runaway_step_aborts(revision):
    model, x, y, originals, replacements, targets = revision
    unlearner = FeatureUnlearner(model, weight_decay=WEIGHT_DECAY, train_size=x.shape[0])
    with pytest.raises(Aborted, match="max_update_ratio"):
        unlearner.first_order(originals, replacements, targets, UnlearnParams(tau=1e3))


def test_solvers_refuse_what_they_cannot_solve():
    indefinite = torch.diag(torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    with pytest.raises(Aborted, match="non-positive curvature"):
        conjugate_gradient(lambda v: indefinite @ v, b, max_iterations=10, tolerance=1e-10)
    spd = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    with pytest.raises(Aborted, match="LiSSA diverged"):
        lissa(lambda v: spd @ v, b, scale=10.0, max_iterations=100, tolerance=1e-10)
    solved = lissa(lambda v: spd @ v, b, scale=100.0, max_iterations=5000, tolerance=1e-12)
    assert torch.allclose(solved.x, torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64), atol=1e-8)
    cg = conjugate_gradient(lambda v: spd @ v, b, max_iterations=10, tolerance=1e-12)
    assert cg.converged and cg.iterations <= 3


def tiny_cnn_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(48, 3, 8, 8, generator=g) - 0.5
    targets = (torch.rand(48, 3, generator=g) < 0.5).float()
    return images, targets


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    spec = ClassifierSpec(image_size=8, num_outputs=3, channels=(4, 4), embedding_dim=8)
    images, targets = tiny_cnn_data()
    model = initialise(lambda: build_classifier(spec), seed)
    fit(model, images, targets, TrainConfig(seed=seed, epochs=3, batch_size=16))
    return model


def test_training_and_updates_are_deterministic():
    first, second = tiny_cnn(), tiny_cnn()
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor)
    assert not torch.equal(tiny_cnn(seed=1).state_dict()["head.weight"], first.state_dict()["head.weight"])
    images, targets = tiny_cnn_data()
    params = UnlearnParams(curvature="gauss-newton", damping=0.1, max_iterations=5)
    results = [FeatureUnlearner(model, weight_decay=5e-4, train_size=48).second_order(
        images[:4], images[4:8], targets[:4], images, targets, params) for model in (first, second)]
    for name, tensor in results[0].state_dict.items():
        assert torch.equal(results[1].state_dict[name], tensor)


def test_last_k_layers_leaves_earlier_layers_untouched():
    model = tiny_cnn()
    images, targets = tiny_cnn_data()
    unlearner = FeatureUnlearner(model, weight_decay=5e-4, train_size=48, last_k_layers=2)
    assert unlearner.updated_parameter_names == ["embedding.1.weight", "embedding.1.bias",
                                                 "head.weight", "head.bias"]
    result = unlearner.second_order(images[:4], images[4:8], targets[:4], images, targets,
                                    UnlearnParams(curvature="gauss-newton", damping=0.1))
    state = model.state_dict()
    for name in ("conv1.0.weight", "conv2.0.bias"):
        assert torch.equal(result.state_dict[name], state[name])
    assert not torch.equal(result.state_dict["head.weight"], state["head.weight"])


def test_bad_inputs_are_named():
    model = tiny_cnn()
    images, targets = tiny_cnn_data()
    with pytest.raises(InvalidArgument, match="only 4 parameterised layers"):
        FeatureUnlearner(model, weight_decay=0.0, train_size=48, last_k_layers=5)
    unlearner = FeatureUnlearner(model, weight_decay=0.0, train_size=48)
    with pytest.raises(InvalidArgument, match=r"originals have shape \(4, 3, 8, 8\) but replacements have \(4, 3, 4, 4\)"):
        unlearner.first_order(images[:4], images[:4, :, :4, :4], targets[:4], UnlearnParams())
    with pytest.raises(InvalidArgument, match="no replacement pairs"):
        unlearner.first_order(images[:0], images[:0], targets[:0], UnlearnParams())
    with pytest.raises(InvalidArgument, match="damping must be finite"):
        UnlearnParams(damping=math.nan)
    with pytest.raises(InvalidArgument, match="solver must be one of cg, lissa"):
        UnlearnParams(solver="newton")
