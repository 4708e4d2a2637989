"""The stochastic recurrent rate network (docs/method.md, "The rate network"): the
operator's mean, the symmetric variant, lifting data to full states, and an end-to-end run."""

from __future__ import annotations

import pytest
import torch

from walkback.config import apply_overrides
from walkback.metrics import weight_asymmetry
from walkback.model import build_model
from walkback.models import RateNetworkBackbone
from walkback.objective import unit_weights, walkback_step_loss
from walkback.presets import get_preset
from walkback.train import train
from walkback.transition import TransitionOperator, log_temperature_embedding

TINY = [
    "rate.hidden_units=8", "rate.relax_steps=3", "train.steps=20", "data.num_train=2000",
    "data.num_heldout=200", "schedule.num_steps=5", "train.batch_size=200", "train.log_every=5",
    "train.checkpoint_every=10", "train.device=cpu",
]


def test_mean_is_leaky_rate_dynamics() -> None:
    torch.manual_seed(0)
    a, n = 0.3, 7
    backbone = RateNetworkBackbone(2, 5, init_var=0.02)
    with torch.no_grad():
        backbone.b.normal_()
    op = TransitionOperator(backbone, (n,), form="2017", alpha=1 - a, min_var=0.0)
    s = torch.randn(11, n)
    step = op(s, 2.0)
    w, b = backbone.weight, backbone.b
    expected = (1 - a) * s + a * torch.tanh(s @ w.T + b)
    torch.testing.assert_close(step.mean, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(step.total_var, torch.full((11, n), 2 * 0.02))
    assert weight_asymmetry(w.detach()) > 0.5  # unconstrained at initialisation


def test_gain_scales_the_rates() -> None:
    """``rate.gain = c``: ``mean = (1 - a) s + a c tanh(W s + b)``, from the config down."""
    config = apply_overrides(get_preset("mog-rate"), ["rate.gain=2", "rate.inner_steps=0"])
    model = build_model(config)
    backbone = model.operator.backbone
    s = torch.randn(6, backbone.num_units)
    expected = 0.5 * s + 0.5 * 2 * torch.tanh(s @ backbone.weight.T + backbone.b)
    torch.testing.assert_close(model.operator(s, 1.0).mean, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(Exception, match="rate.gain"):
        apply_overrides(get_preset("mog-rate"), ["rate.gain=0"])


def test_temperature_modulation_is_an_input_current_and_a_variance_offset() -> None:
    """form "conditioned": ``mean = (1 - a) s + a tanh(W s + b + U e)``, variance
    ``T (softplus(g + V e) + min_var)`` with ``e`` the embedding of ``log T``; at initialisation
    (U = V = 0) it is the T-blind network at every T."""
    torch.manual_seed(2)
    config = apply_overrides(get_preset("mog-rate"), ["model.form=conditioned", "rate.gain=1",
                                                        "rate.inner_steps=0", "rate.hidden_min_var=0"])
    model = build_model(config)
    op, backbone = model.operator, model.operator.backbone
    s = torch.randn(9, backbone.num_units)
    blind = 0.5 * s + 0.5 * torch.tanh(s @ backbone.weight.T + backbone.b)
    for t in (1.0, 40.0):
        torch.testing.assert_close(op(s, t).mean, blind, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        backbone.modulation.weight.normal_()
    n, min_var = backbone.num_units, config.model.min_var
    for t in (1.0, 40.0):
        e = log_temperature_embedding(torch.full((9,), t), config.model.cond_dim)
        u, v = e @ backbone.modulation.weight[:n].T, e @ backbone.modulation.weight[n:].T
        step = op(s, t)
        expected = 0.5 * s + 0.5 * torch.tanh(s @ backbone.weight.T + backbone.b + u)
        torch.testing.assert_close(step.mean, expected, rtol=1e-5, atol=1e-5)
        var = t * (torch.nn.functional.softplus(backbone.g + v) + min_var)
        torch.testing.assert_close(step.total_var, var, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(op(s, 1.0).mean, op(s, 40.0).mean)  # the drift now sees T


def test_fast_hidden_units_relax_inside_each_transition() -> None:
    """``rate.inner_steps = 2``: h runs two leaky sub-steps with v held, then the usual step
    is taken from ``[v; h_2]``; the leak term of the mean still uses the incoming ``s``."""
    torch.manual_seed(3)
    config = apply_overrides(get_preset("mog-rate"), ["rate.inner_steps=2", "rate.hidden_units=5",
                                                        "rate.gain=1"])
    model = build_model(config)
    op, backbone = model.operator, model.operator.backbone
    with torch.no_grad():
        backbone.b.normal_()
    s = torch.randn(4, 7)
    w, b = backbone.weight, backbone.b
    v, h = s[:, :2], s[:, 2:]
    for _ in range(2):
        h = 0.5 * h + 0.5 * torch.tanh(torch.cat([v, h], 1) @ w.T + b)[:, 2:]
    expected = 0.5 * s + 0.5 * torch.tanh(torch.cat([v, h], 1) @ w.T + b)
    torch.testing.assert_close(op(s, 3.0).mean, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(Exception, match="rate.inner_steps"):
        apply_overrides(get_preset("mog-rate"), ["rate.inner_steps=-1"])


def test_symmetric_weight() -> None:
    torch.manual_seed(1)
    backbone = RateNetworkBackbone(2, 6, symmetric=True)
    w = backbone.weight.detach()
    assert torch.equal(w, w.T)
    assert weight_asymmetry(w) == 0.0
    loss = backbone(torch.randn(4, 8))[0].square().sum()
    loss.backward()  # the free parameter A receives gradients
    assert backbone.W.grad is not None and backbone.W.grad.abs().sum() > 0


def test_input_scale_initialises_the_hidden_units_input_layer() -> None:
    d, h, c = 4, 4000, 3.0
    torch.manual_seed(0)
    small = RateNetworkBackbone(d, h)
    torch.manual_seed(0)
    wide = RateNetworkBackbone(d, h, input_scale=c)
    n = d + h
    w_in = wide.W.detach()[d:, :d]  # visible -> hidden
    torch.testing.assert_close(w_in.std().item(), c / d**0.5, rtol=0.03, atol=0.0)
    b_h = wide.b.detach()[d:]
    assert b_h.abs().max() < c and b_h.std() > 0.5 * c / 3**0.5  # U(-c, c) has std c / sqrt(3)
    assert torch.all(wide.b.detach()[:d] == 0)
    # the other blocks keep the default initialisation: N(0, 0.25 / n), zero biases
    torch.testing.assert_close(wide.W.detach()[:d].std().item(), 0.5 / n**0.5, rtol=0.03, atol=0.0)
    torch.testing.assert_close(wide.W.detach()[d:, d:].std().item(), 0.5 / n**0.5, rtol=0.03, atol=0.0)
    assert torch.equal(small.b, torch.zeros(n)) and torch.equal(small.W[:d], wide.W[:d])
    # the point of it: on data-sized inputs the hidden units start in tanh's nonlinear range
    v = torch.rand(256, d) * 2 - 1

    def hidden_slope(backbone: RateNetworkBackbone) -> float:
        pre = v @ backbone.W.detach()[d:, :d].T + backbone.b.detach()[d:]
        return (1 - torch.tanh(pre) ** 2).mean().item()
    assert hidden_slope(small) > 0.95 and hidden_slope(wide) < 0.6


@pytest.mark.parametrize("key", ["rate.input_scale", "rate.hidden_min_var"])
def test_rate_scales_must_be_non_negative(key: str) -> None:
    with pytest.raises(Exception, match=key):
        apply_overrides(get_preset("mog-rate"), [f"{key}=-1"])


def test_hidden_min_var_floors_only_the_hidden_units_noise(tmp_path) -> None:
    config = apply_overrides(get_preset("mog-rate"), ["rate.hidden_units=3", "model.min_var=1e-6",
                                                      "rate.hidden_min_var=0.02"])
    model = build_model(config)
    g = model.operator.backbone.g.detach()
    s, t = torch.randn(4, 5), 3.0
    step = model.operator(s, t)
    softplus = torch.nn.functional.softplus(g)
    expected = torch.cat([softplus[:2] + 1e-6, softplus[2:] + 0.02])
    torch.testing.assert_close(step.var.detach(), expected.expand(4, 5))
    torch.testing.assert_close(step.total_var.detach(), t * expected.expand(4, 5))
    # the floors come from the config, not the weights file: saved and loaded, they are the same
    model.save_pretrained(tmp_path / "m")
    loaded = type(model).from_pretrained(tmp_path / "m")
    assert "operator.min_var" not in loaded.state_dict()
    torch.testing.assert_close(loaded.operator(s, t).var, step.var)
    # 0 (the default) keeps one number for every unit
    plain = apply_overrides(get_preset("mog-rate"), ["rate.hidden_min_var=0"])
    assert build_model(plain).operator.min_var == plain.model.min_var
    with pytest.raises(Exception, match="rate.hidden_min_var: needs model.backbone=rate"):
        apply_overrides(get_preset("mog"), ["rate.hidden_min_var=0.01"])


def test_lift_clamps_visible_and_moves_hidden() -> None:
    config = apply_overrides(get_preset("mog-rate"), ["rate.hidden_units=8", "rate.leak=0.3"])
    model = build_model(config)
    assert model.operator.data_shape == (10,) and model.prior.data_shape == (10,)
    assert model.operator.alpha == 1 - config.rate.leak == 0.7 and model.operator.backbone.leak == 0.3
    x = torch.randn(32, 2)
    s = model.lift(x, generator=torch.Generator().manual_seed(0))
    assert s.shape == (32, 10)
    assert torch.equal(s[:, :2], x) and torch.equal(model.visible(s), x)
    assert s[:, 2:].abs().max() > 0


def test_lift_is_identity_for_ordinary_models() -> None:
    model = build_model(get_preset("mog"))
    assert model.hidden_dim == 0
    x = torch.randn(16, 2)
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    assert model.lift(x, generator=generator) is x
    assert torch.equal(generator.get_state(), before)
    assert model.visible(x) is x


def test_unit_weights() -> None:
    assert unit_weights(2, 0, 0.5) is None  # no hidden units
    assert unit_weights(2, 3, 1.0) is None  # the bound's term
    torch.testing.assert_close(unit_weights(2, 3, 0.25), torch.tensor([1, 1, 0.25, 0.25, 0.25]))


def test_hidden_weight_weighs_the_hidden_terms_in_closed_form() -> None:
    """The weighted walk-back term is the visible units' Gaussian terms plus ``w`` times the
    hidden units', written out; with ``w = 0`` no gradient reaches the hidden variances."""
    torch.manual_seed(0)
    d, h, temperature, w = 2, 4, 3.0, 0.1
    backbone = RateNetworkBackbone(d, h, init_var=0.02)
    op = TransitionOperator(backbone, (d + h,), form="2017", alpha=0.5, min_var=0.0)
    s_prev, s_next = torch.randn(5, d + h), torch.randn(5, d + h)
    mean = 0.5 * s_next + 0.5 * torch.tanh(s_next @ backbone.weight.T + backbone.b)
    var = temperature * 0.02
    per_unit = 0.5 * (torch.log(torch.tensor(2 * torch.pi * var)) + (s_prev - mean) ** 2 / var)
    expected = per_unit[:, :d].sum(1) + w * per_unit[:, d:].sum(1)
    got = walkback_step_loss(op, s_prev, s_next, temperature, weights=unit_weights(d, h, w))
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(walkback_step_loss(op, s_prev, s_next, temperature),
                               per_unit.sum(1).detach(), rtol=1e-5, atol=1e-5)
    walkback_step_loss(op, s_prev, s_next, temperature, weights=unit_weights(d, h, 0.0)).sum().backward()
    assert torch.all(backbone.g.grad[d:] == 0) and torch.all(backbone.g.grad[:d] != 0)


@pytest.mark.parametrize(("preset", "extra"), [
    ("mog-rate", []), ("mog-rate-sym", []),
    ("mog-rate", ["train.hidden_weight=0", "rate.inner_steps=2", "model.init_var=0.001"]),
    ("mog-rate", ["rate.input_scale=0", "rate.inner_steps=0"]), ("spiral-rate", []),
])
def test_tiny_rate_training_end_to_end(tmp_path, preset: str, extra: list[str]) -> None:
    config = apply_overrides(get_preset(preset), TINY + extra)
    result = train(config, tmp_path / "run", progress=False)
    model = result.model
    assert result.step == 20
    assert model.prior.data_shape == (10,)
    out = model.sample(50, generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (50, 2) and out.states.shape == (50, 2)
    assert torch.isfinite(out.samples).all()
    w = model.operator.backbone.weight.detach()
    assert w.shape == (10, 10)
    if config.rate.symmetric:
        assert weight_asymmetry(w) == 0.0
    else:
        assert 0 < weight_asymmetry(w) < float("inf")
    if config.train.hidden_weight == 0:  # the hidden noise is not trained: still at init_var
        var = torch.nn.functional.softplus(model.operator.backbone.g[2:].detach())
        torch.testing.assert_close(var, torch.full_like(var, 0.001))
