"""``train.temperature_jitter``: each heating path runs at the schedule's temperatures moved up
by its own fraction of a step in log T (closed form), the heating and the walk-back terms use
each path's own temperatures, and the setting's checks. Several processes and resuming:
test_distributed.py and test_train.py."""

from __future__ import annotations

import math

import pytest
import torch

from walkback import get_preset
from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.models import MLPBackbone
from walkback.objective import transition_walkback_loss, walkback_step_loss
from walkback.schedule import heating_temperatures, jittered_temperatures
from walkback.trajectory import OperatorHeating, walk_away
from walkback.transition import TransitionOperator

F64 = torch.float64


def test_a_geometric_schedule_moves_by_f_to_the_u() -> None:
    heat = heating_temperatures(6, factor=1.5, n1=2)  # 1, 1, 1, 1.5, 2.25, 3.375
    u = torch.tensor([0.0, 0.25, 0.5, 0.999])
    temps = jittered_temperatures(heat, u)
    assert temps.shape == (6, 4) and temps.dtype == F64
    torch.testing.assert_close(temps[:, 0], heat)  # u = 0: the schedule itself
    torch.testing.assert_close(temps[:2], torch.ones(2, 4, dtype=F64))  # toward the next T = 1
    # then T_t * 1.5^u, from the last step at T = 1 to the last (T_7 = 1.5 T_6)
    torch.testing.assert_close(temps[2:], heat[2:, None] * 1.5 ** u[None, :].double())
    assert bool((temps[:, 1:] >= temps[:, :-1]).all())  # monotone in u


def test_the_paths_cover_each_log_temperature_interval_uniformly() -> None:
    heat = heating_temperatures(5, factor=1.2)
    u = torch.rand(20_000, generator=torch.Generator().manual_seed(0))
    temps = jittered_temperatures(heat, u)
    position = (temps.log() - heat.log()[:, None]) / math.log(1.2)  # fraction of a step
    assert bool((position >= 0).all() and (position < 1).all())
    assert float((position.mean(1) - 0.5).abs().max()) < 0.01
    # a schedule of one temperature has no next one: no jitter
    torch.testing.assert_close(jittered_temperatures(torch.tensor([2.0], dtype=F64), u[:3]),
                               torch.full((1, 3), 2.0, dtype=F64))


def _operator() -> TransitionOperator:
    torch.manual_seed(0)
    backbone = MLPBackbone((2,), hidden=16, depth=2, cond_dim=8)
    with torch.no_grad():
        backbone.head.weight.normal_(0, 0.3)
    return TransitionOperator(backbone, (2,), form="conditioned", cond_dim=8, min_var=0.01)


def test_heating_and_walk_back_use_each_paths_own_temperature() -> None:
    op, batch = _operator(), 6
    heat = heating_temperatures(4, factor=2.0)
    temps = jittered_temperatures(heat, torch.linspace(0, 0.9, batch))
    x = torch.randn(batch, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        path = walk_away(OperatorHeating(op, temps), x, generator=torch.Generator().manual_seed(2))
        # step t of path b is the operator at T_{t, b}: per-example noise T var
        for t in range(4):
            step = OperatorHeating(op, temps).step(path.states[t], t)
            alone = torch.stack([op(path.states[t][b:b + 1], float(temps[t, b])).total_var[0]
                                 for b in range(batch)])
            torch.testing.assert_close(step.total_var, alone, rtol=1e-5, atol=1e-7)
        index = torch.arange(4 * batch)
        terms = transition_walkback_loss(op, path, temps, index)
        t, i = index // batch, index % batch
        expected = torch.stack([
            walkback_step_loss(op, path.states[a, b:b + 1], path.states[a + 1, b:b + 1],
                               float(temps[a, b]))[0] for a, b in zip(t.tolist(), i.tolist())])
    torch.testing.assert_close(terms, expected, rtol=1e-5, atol=1e-5)
    # not vacuous: the schedule's own temperatures give other terms
    with torch.no_grad():
        plain = transition_walkback_loss(op, path, heat, index)
    assert not torch.allclose(plain, terms)


@pytest.mark.parametrize(("preset", "items", "message"), [
    ("mog", ["train.temperature_jitter=true"], r"needs train\.mode=transitions"),
    ("mog-fixed", ["train.temperature_jitter=true"], r"train\.heating=model"),
    ("mog-diffusion", ["train.temperature_jitter=true"],
     r"train\.temperature_jitter: method=ddpm does not read it"),
])
def test_the_setting_is_checked(preset: str, items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset(preset), items)
    assert apply_overrides(get_preset("mog-tuned"), ["train.temperature_jitter=true"]).train.temperature_jitter
