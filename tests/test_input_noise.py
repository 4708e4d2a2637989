"""Input perturbation (``train.input_noise``): the perturbed inputs' closed form, the walk-back
terms they give, the key's checks, and training with it (deterministic, the same as without
it at 0, different at > 0). Resume and several processes: test_train.py, test_distributed.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.models import LinearGaussianBackbone
from walkback.objective import perturbed_inputs, perturbed_var_scale, transition_walkback_loss
from walkback.presets import get_preset
from walkback.schedule import heating_temperatures
from walkback.train import train
from walkback.trajectory import OperatorHeating, walk_away
from walkback.transition import TransitionOperator, gaussian_log_prob

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_operator() -> TransitionOperator:
    """``s' = 0.9 s + N(0, T 0.3)`` in 3 dimensions, float64."""
    backbone = LinearGaussianBackbone(3, weight=0.8 * torch.eye(3), dtype=F64,
                                      log_var=torch.full((3,), math.log(0.3)))
    return TransitionOperator(backbone, (3,), form="2017", alpha=0.5, min_var=0.0)


def _path(k: int = 4, batch: int = 6):
    temps = heating_temperatures(k, factor=1.5)
    op = _linear_operator()
    x = torch.randn(batch, 3, generator=_gen(0), dtype=F64)
    return op, temps, walk_away(OperatorHeating(op, temps), x, generator=_gen(1))


def test_the_inputs_move_each_state_by_gamma_times_its_steps_noise_std() -> None:
    op, temps, path = _path()
    # the operator's noise variance is T_t * 0.3 everywhere, so the batch mean is exactly that
    torch.testing.assert_close(path.noise_var, 0.3 * temps.to(F64))
    xi = torch.randn(path.states[1:].shape, generator=_gen(2), dtype=F64)
    got = perturbed_inputs(path, 0.2, xi)
    want = path.states[1:] + 0.2 * path.noise_var.sqrt()[:, None, None] * xi
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert torch.equal(perturbed_inputs(path, 0.0, xi), path.states[1:])


def test_the_terms_score_the_paths_states_from_the_perturbed_inputs() -> None:
    op, temps, path = _path()
    k, batch = path.num_steps, path.states.shape[1]
    index = torch.randperm(k * batch, generator=_gen(3))[:10]
    xi = torch.randn(path.states[1:].shape, generator=_gen(4), dtype=F64)
    inputs, scale = perturbed_inputs(path, 0.5, xi), perturbed_var_scale(0.5)
    assert scale == 1.25
    got = transition_walkback_loss(op, path, temps, index, inputs=inputs, var_scale=scale)
    t, i = index // batch, index % batch
    for n in range(len(index)):
        source, target, temp = inputs[t[n], i[n]], path.states[t[n], i[n]], float(temps[t[n]])
        mean = 0.9 * source  # the linear operator's mean, applied to the perturbed input
        var = torch.full((1, 3), 1.25 * 0.3 * temp, dtype=F64)  # its variance times 1 + gamma^2
        want = -gaussian_log_prob(target[None], mean[None], var)
        torch.testing.assert_close(got[n], want[0], rtol=1e-7, atol=0)
    # unperturbed inputs are the paper's term, value for value
    plain = transition_walkback_loss(op, path, temps, index)
    assert perturbed_var_scale(0.0) == 1.0
    assert torch.equal(transition_walkback_loss(op, path, temps, index, var_scale=1.0,
                                                inputs=perturbed_inputs(path, 0.0, xi)), plain)
    assert not torch.allclose(got, plain)


@pytest.mark.parametrize("items, message", [
    (["train.input_noise=-0.1"], r"train\.input_noise"),
    (["train.input_noise=nan"], r"train\.input_noise"),
    (["train.mode=online", "train.temperature_jitter=false", "train.input_noise=0.1"],
     r"train\.input_noise: needs train\.mode=transitions and train\.objective=paper"),
    (["train.objective=decoupled", "train.input_noise=0.1"],
     r"train\.input_noise: needs train\.mode=transitions and train\.objective=paper"),
])
def test_the_key_is_checked(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("mog-tuned"), items)


def test_the_ddpm_baseline_refuses_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.input_noise: method=ddpm does not read it"):
        apply_overrides(get_preset("mog-diffusion"), ["train.input_noise=0.1"])


SETS = ["mlp.hidden=32", "data.num_train=2000", "data.num_heldout=200", "schedule.num_steps=6",
        "sample.start_step=6", "schedule.n1=1", "train.batch_size=64", "train.transition_batch=48",
        "train.steps=6", "train.device=cpu", "train.log_every=3", "train.checkpoint_every=6",
        "sample.num_samples=100"]


def _weights(tmp_path: Path, name: str, *items: str) -> dict[str, torch.Tensor]:
    config = apply_overrides(get_preset("mog-tuned"), SETS + list(items))
    return train(config, tmp_path / name, progress=False).model.state_dict()


def test_training_is_the_paper_terms_at_zero_and_deterministic_above(tmp_path: Path) -> None:
    plain = _weights(tmp_path, "plain")
    zero = _weights(tmp_path, "zero", "train.input_noise=0")
    a = _weights(tmp_path, "a", "train.input_noise=0.3")
    b = _weights(tmp_path, "b", "train.input_noise=0.3")
    assert plain.keys() == zero.keys() == a.keys() == b.keys()
    assert all(torch.equal(plain[k], zero[k]) for k in plain)  # no random numbers drawn at 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = "operator.backbone.head.weight"
    assert not torch.equal(a[head], plain[head])


def test_the_best_linear_mean_is_that_of_a_step_with_1_plus_gamma_squared_times_the_noise() -> None:
    """Data ``N(mu, a)`` heated once by ``s_1 = x + N(0, v)``: regressing ``x`` on the perturbed
    input gives the slope ``a / (a + (1 + gamma^2) v)``; the residual variance over
    ``1 + gamma^2``, the best variance of the scaled term, is ``a v / (a + (1 + gamma^2) v)``:
    below ``v`` and below the unperturbed posterior's ``a v / (a + v)`` (docs/method.md)."""
    mu, a, v, gamma, n = 0.5, 2.0, 0.3, 0.5, 200_000
    backbone = LinearGaussianBackbone(3, weight=torch.eye(3), dtype=F64,
                                      log_var=torch.full((3,), math.log(v)))
    op = TransitionOperator(backbone, (3,), form="2017", alpha=0.5, min_var=0.0)  # mean s
    x = mu + math.sqrt(a) * torch.randn(n, 3, generator=_gen(5), dtype=F64)
    path = walk_away(OperatorHeating(op, torch.ones(1)), x, generator=_gen(6))
    xi = torch.randn(path.states[1:].shape, generator=_gen(7), dtype=F64)
    y = perturbed_inputs(path, gamma, xi)[0]
    slope = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / y.var(0, unbiased=False)
    want = a / (a + (1 + gamma**2) * v)
    torch.testing.assert_close(slope, torch.full((3,), want, dtype=F64), rtol=0, atol=5e-3)
    assert abs(want - a / (a + v)) > 0.02  # far from the unperturbed slope
    residual = (x - x.mean(0)) - slope * (y - y.mean(0))
    best_var = residual.var(0, unbiased=False) / perturbed_var_scale(gamma)
    want_var = a * v / (a + (1 + gamma**2) * v)
    torch.testing.assert_close(best_var, torch.full((3,), want_var, dtype=F64), rtol=0.015, atol=0)
    assert want_var < a * v / (a + v) < v
