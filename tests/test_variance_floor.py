"""The variance floor that depends on T (``model.min_var_at_1``): its values at T = 1 and at the
top temperature, monotone in T, per example and per unit, the default unchanged, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from walkback.config import apply_overrides, config_from_dict, config_to_dict
from walkback.errors import ConfigError
from walkback.model import Walkback, build_model
from walkback.models import MLPBackbone
from walkback.presets import get_preset
from walkback.transition import TransitionOperator

DIM, TOP = 2, 79.5


def _operator(min_var=0.01, min_var_at_1: float | None = 1e-4, top=TOP) -> TransitionOperator:
    torch.manual_seed(0)
    backbone = MLPBackbone((DIM,), hidden=16, depth=1, cond_dim=0)
    return TransitionOperator(backbone, (DIM,), form="2017", min_var=min_var,
                              min_var_at_1=min_var_at_1, top_temperature=top)


def _floor(op: TransitionOperator, temperature: float) -> float:
    return float(op.variance_floor(torch.tensor(temperature, dtype=torch.float64)))


@pytest.mark.parametrize("at_1", [1e-4, 1e-6, 0.1])
def test_floor_is_min_var_at_1_at_t1_and_min_var_at_the_top_and_constant_outside(at_1) -> None:
    op = _operator(min_var_at_1=at_1)
    assert _floor(op, 1.0) == pytest.approx(at_1, rel=1e-12)
    assert _floor(op, TOP) == pytest.approx(0.01, rel=1e-12)
    assert _floor(op, 0.5) == pytest.approx(at_1, rel=1e-12)
    assert _floor(op, 10 * TOP) == pytest.approx(0.01, rel=1e-12)
    # geometric in T: halfway in log T is the geometric mean of the two floors
    assert _floor(op, math.sqrt(TOP)) == pytest.approx(math.sqrt(at_1 * 0.01), rel=1e-12)


@pytest.mark.parametrize("at_1", [1e-4, 0.1])
def test_floor_is_monotone_in_t(at_1) -> None:
    op = _operator(min_var_at_1=at_1)
    temps = torch.logspace(-1, math.log10(TOP) + 1, 200, dtype=torch.float64)
    floors = op.variance_floor(temps).flatten()
    steps = floors.diff()
    assert bool((steps >= 0).all()) if at_1 < 0.01 else bool((steps <= 0).all())
    assert floors.min() == pytest.approx(min(at_1, 0.01))
    assert floors.max() == pytest.approx(max(at_1, 0.01))


def test_the_step_variance_is_softplus_g_plus_the_floor_at_each_examples_own_t() -> None:
    op = _operator()
    s = torch.randn(5, DIM, generator=torch.Generator().manual_seed(1))
    temps = torch.tensor([1.0, 1.2, 5.0, TOP, 2 * TOP])
    with torch.no_grad():
        _, g = op.backbone(s, None)
        batch = op(s, temps)
        for i, t in enumerate(temps.tolist()):
            one = op(s[i:i + 1], t)
            u = min(math.log(t) / math.log(TOP), 1)
            expected = F.softplus(g[i]) + 1e-4 * (0.01 / 1e-4) ** u
            torch.testing.assert_close(batch.var[i], expected, rtol=1e-5, atol=0)
            torch.testing.assert_close(one.var[0], batch.var[i])
            torch.testing.assert_close(one.mean[0], batch.mean[i])


def test_per_unit_floors_each_go_from_min_var_at_1_to_their_own_top_floor() -> None:
    tops = torch.tensor([0.01, 0.1])
    op = _operator(min_var=tops)
    torch.testing.assert_close(op.variance_floor(torch.tensor(1.0)), torch.full((DIM,), 1e-4))
    torch.testing.assert_close(op.variance_floor(torch.tensor(TOP)), tops)
    assert op.variance_floor(torch.tensor([1.0, TOP, 3.0])).shape == (3, DIM)


def test_without_min_var_at_1_the_floor_is_min_var_and_the_variance_the_old_formula() -> None:
    op = _operator(min_var=0.01, min_var_at_1=None)
    assert op.variance_floor(torch.tensor(3.0)) == 0.01
    s = torch.randn(4, DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, g = op.backbone(s, None)
        for t in (1.0, torch.tensor([1.0, 2.0, 30.0, 100.0])):
            assert torch.equal(op(s, t).var, F.softplus(g) + 0.01)


def test_min_var_at_1_equal_to_min_var_is_the_constant_floor() -> None:
    const, same = _operator(min_var_at_1=None), _operator(min_var_at_1=0.01)
    s = torch.randn(4, DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(const(s, torch.tensor([1.0, 2.0, 30.0, 500.0])).var,
                                   same(s, torch.tensor([1.0, 2.0, 30.0, 500.0])).var)


def test_the_default_config_builds_the_old_operator() -> None:
    for name in ("mog", "mnist"):
        op = build_model(get_preset(name)).operator
        assert op.min_var_at_1 is None and op.variance_floor(torch.tensor(2.0)) == op.min_var


def test_the_config_key_reaches_the_operator_with_the_schedules_top_and_survives_saving(
        tmp_path: Path) -> None:
    config = apply_overrides(get_preset("mog"), ["model.min_var=0.01", "model.min_var_at_1=1e-4"])
    model = build_model(config)
    assert model.operator.top_temperature == pytest.approx(1.2 ** 24)
    assert _floor(model.operator, 1.0) == pytest.approx(1e-4)
    assert _floor(model.operator, 1.2 ** 24) == pytest.approx(0.01)
    assert config_from_dict(config_to_dict(config)).model.min_var_at_1 == 1e-4
    model.save_pretrained(tmp_path)
    loaded = Walkback.from_pretrained(tmp_path)
    assert loaded.operator.min_var_at_1 == 1e-4
    assert loaded.operator.top_temperature == model.operator.top_temperature


@pytest.mark.parametrize("items, message", [
    (["model.min_var_at_1=-1e-4"], r"model.min_var_at_1: must be in \[0, inf\)"),
    (["model.min_var_at_1=nan"], r"model.min_var_at_1: must be in"),
    (["model.min_var_at_1=inf"], r"model.min_var_at_1: must be in"),
    (["model.min_var=0", "model.min_var_at_1=1e-4"], r"needs model.min_var > 0"),
    (["schedule.factor=1", "model.min_var=0.01", "model.min_var_at_1=1e-4"],
     r"top temperature is above 1, got 1"),
    (["schedule.n1=30", "model.min_var=0.01", "model.min_var_at_1=1e-4"],
     r"top temperature is above 1"),
    (["schedule.t0=0.01", "model.min_var=0.01", "model.min_var_at_1=1e-4"],
     r"top temperature is above 1"),
])
def test_config_errors_name_the_key(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("mog"), items)


def test_the_ddpm_baseline_refuses_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.min_var_at_1: method=ddpm does not read it"):
        apply_overrides(get_preset("mog-diffusion"), ["model.min_var_at_1=1e-4"])


@pytest.mark.parametrize("kwargs", [dict(min_var=0.0), dict(min_var_at_1=0.0), dict(top=1.0)])
def test_the_operator_refuses_a_floor_it_cannot_interpolate(kwargs) -> None:
    with pytest.raises(ValueError, match="a floor that depends on T needs"):
        _operator(**kwargs)
