"""Temperature schedules: heating values, cooling order, the sigma2_max stop rule, NET betas."""

from __future__ import annotations

import math

import pytest
import torch

from walkback.schedule import (
    cooling_temperatures, fixed_diffusion_betas, heating_temperatures, steps_until_variance,
)


@pytest.mark.parametrize(("t0", "factor", "k"), [(1.0, 2.0, 30), (1.0, 1.1, 30), (0.5, 1.5, 7)])
def test_heating_is_geometric_t0_times_f_power(t0: float, factor: float, k: int) -> None:
    temps = heating_temperatures(k, t0=t0, factor=factor)
    assert temps.dtype == torch.float64 and temps.shape == (k,)
    expected = torch.tensor([t0 * factor ** (t - 1) for t in range(1, k + 1)], dtype=torch.float64)
    torch.testing.assert_close(temps, expected, rtol=1e-12, atol=0)
    assert float(temps[0]) == t0  # T_1 = T_0


def test_n1_first_steps_at_one_then_geometric() -> None:
    temps = heating_temperatures(6, t0=2.0, factor=3.0, n1=2)
    expected = torch.tensor([1.0, 1.0, 2.0, 6.0, 18.0, 54.0], dtype=torch.float64)
    torch.testing.assert_close(temps, expected, rtol=1e-12, atol=0)
    assert torch.equal(heating_temperatures(3, factor=5.0, n1=3), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_steps": 0}, {"num_steps": -3}, {"num_steps": 5, "n1": -1}, {"num_steps": 5, "n1": 6},
        {"num_steps": 5, "t0": 0.0}, {"num_steps": 5, "t0": -1.0}, {"num_steps": 5, "factor": 0.9},
    ],
)
def test_heating_rejects_bad_arguments(kwargs: dict) -> None:
    num_steps = kwargs.pop("num_steps")
    with pytest.raises(ValueError):
        heating_temperatures(num_steps, **kwargs)


def test_cooling_is_heating_reversed() -> None:
    heat = heating_temperatures(5, t0=1.0, factor=1.5, n1=1)
    cool = cooling_temperatures(heat)
    assert cool.tolist() == list(reversed(heat.tolist()))
    assert float(cool[0]) == float(heat.max()) and float(cool[-1]) == 1.0


@pytest.mark.parametrize(
    ("variance", "max_variance", "expected"),
    [
        (0.5, 2.0, 3),    # noise 0.5, 1, 2, 4, 8: first >= 2 at step 3 (equality counts)
        (0.5, 2.5, 4),    # first >= 2.5 is 4 (step 4)
        (0.5, 0.1, 1),    # already reached at the first step
        (0.5, 8.0, 5),    # reached exactly at the last step
        (0.5, 100.0, 5),  # never reached: all K steps
    ],
)
def test_steps_until_variance_hand_cases(variance: float, max_variance: float, expected: int) -> None:
    temps = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64)
    assert steps_until_variance(temps, variance, max_variance) == expected


def test_steps_until_variance_per_step_variance() -> None:
    temps = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    per_step = torch.tensor([1.0, 0.1, 0.6, 0.01], dtype=torch.float64)  # noise 1, 0.2, 2.4, 0.08
    assert steps_until_variance(temps, per_step, 2.0) == 3
    assert steps_until_variance(temps, per_step, 3.0) == 4  # never reached


@pytest.mark.parametrize("final_signal", [0.05, 0.3, 1e-3])
def test_fixed_diffusion_betas_reach_final_signal(final_signal: float) -> None:
    temps = heating_temperatures(10, factor=1.5)
    betas = fixed_diffusion_betas(temps, final_signal)
    assert betas.dtype == torch.float64 and betas.shape == temps.shape
    assert bool(((betas > 0) & (betas < 1)).all())
    signal = torch.sqrt(1 - betas).prod()
    assert abs(float(signal) - final_signal) < 1e-9
    ratio = betas / temps  # beta_t = c * T_t
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-12, atol=0)


@pytest.mark.parametrize("final_signal", [0.0, 1.0, -0.5, 2.0])
def test_fixed_diffusion_betas_rejects_bad_signal(final_signal: float) -> None:
    with pytest.raises(ValueError):
        fixed_diffusion_betas(heating_temperatures(4), final_signal)


def test_fixed_diffusion_betas_single_step() -> None:
    betas = fixed_diffusion_betas(torch.tensor([3.0], dtype=torch.float64), 0.5)
    assert float(betas[0]) == pytest.approx(1 - 0.25, abs=1e-9)  # sqrt(1 - beta) = 0.5
    assert math.isfinite(float(betas[0]))
