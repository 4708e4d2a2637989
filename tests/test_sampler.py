"""Sampling: determinism, the chain's temperatures, batching, and the exact marginal of a
linear-Gaussian operator."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov

from walkback.metrics.gaussian import LinearGaussian, cooling_moments
from walkback.models import LinearGaussianBackbone, MLPBackbone
from walkback.prior import GaussianPrior
from walkback.sampler import anneal, anneal_progressive, chain_temperatures
from walkback.schedule import heating_temperatures
from walkback.transition import TransitionOperator

F64 = torch.float64
HEAT = heating_temperatures(5, factor=1.5, n1=1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp_operator(form: str = "conditioned") -> TransitionOperator:
    torch.manual_seed(0)
    backbone = MLPBackbone((2,), hidden=16, depth=2, cond_dim=8 if form == "conditioned" else 0)
    with torch.no_grad():
        backbone.head.weight.normal_(0, 0.3)
    return TransitionOperator(backbone, (2,), form=form, cond_dim=8)


def _prior() -> GaussianPrior:
    prior = GaussianPrior((2,))
    prior.mean.copy_(torch.tensor([0.5, -0.5]))
    prior.var.copy_(torch.tensor([2.0, 1.0]))
    return prior


@pytest.mark.parametrize("form", ["2017", "conditioned"])
def test_same_seed_same_samples_different_seed_different(form: str) -> None:
    op, prior = _mlp_operator(form), _prior()
    a = anneal(op, prior, HEAT, 100, extra_steps=3, generator=_gen(1))
    b = anneal(op, prior, HEAT, 100, extra_steps=3, generator=_gen(1))
    c = anneal(op, prior, HEAT, 100, extra_steps=3, generator=_gen(2))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.states, b.states)
    assert not torch.equal(a.samples, c.samples)
    assert a.samples.shape == a.states.shape == (100, 2)
    assert not a.samples.requires_grad


def test_progressive_yields_k_plus_e_plus_one_states_with_cooling_temperatures() -> None:
    op, prior, extra = _mlp_operator(), _prior(), 3
    states = list(anneal_progressive(op, prior, HEAT, 10, extra_steps=extra, generator=_gen(3)))
    k = len(HEAT)
    assert len(states) == k + extra + 1
    assert [s.index for s in states] == list(range(k + extra + 1))
    expected = [float(HEAT[-1])] + list(reversed(HEAT.tolist())) + [1.0] * extra
    assert [s.temperature for s in states] == pytest.approx(expected, rel=0, abs=1e-12)
    assert chain_temperatures(HEAT, extra).tolist() == expected[1:]
    assert states[0].mean is None and all(s.mean is not None for s in states[1:])
    assert all(s.state.shape == (10, 2) for s in states)
    # the final state of the progressive chain is what anneal returns, with the same seed
    final = anneal(op, prior, HEAT, 10, extra_steps=extra, generator=_gen(3))
    # samples: the last step's mean (noise-free); states: the chains' last states
    assert torch.equal(final.states, states[-1].state) and torch.equal(final.samples, states[-1].mean)


def test_the_extra_temperature_sets_the_steps_past_k_only() -> None:
    op, prior = _mlp_operator(), _prior()
    hot = [s.temperature for s in anneal_progressive(op, prior, HEAT, 4, extra_steps=3,
                                                     extra_temperature=1.25, generator=_gen(3))]
    assert hot == pytest.approx([float(HEAT[-1])] + list(reversed(HEAT.tolist())) + [1.25] * 3)
    assert chain_temperatures(HEAT, 3, 1.25)[: len(HEAT)].tolist() == chain_temperatures(HEAT).tolist()
    # T_E = 1 is the default chain, draw for draw; another T_E changes the steps past K
    same = anneal(op, prior, HEAT, 50, extra_steps=3, extra_temperature=1.0, generator=_gen(4))
    default = anneal(op, prior, HEAT, 50, extra_steps=3, generator=_gen(4))
    other = anneal(op, prior, HEAT, 50, extra_steps=3, extra_temperature=1.25, generator=_gen(4))
    assert torch.equal(same.states, default.states)
    assert not torch.equal(other.states, default.states)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            chain_temperatures(HEAT, 3, bad)


def test_progressive_states_follow_the_operator() -> None:
    """Each state is the previous one pushed through the operator at the listed temperature:
    the yielded mean is ``mean(previous state, T)``."""
    op, prior = _mlp_operator(), _prior()
    states = list(anneal_progressive(op, prior, HEAT, 20, extra_steps=2, generator=_gen(4)))
    with torch.no_grad():
        for prev, cur in zip(states[:-1], states[1:]):
            torch.testing.assert_close(cur.mean, op(prev.state, cur.temperature).mean)


def test_batches_consume_the_generator_in_order() -> None:
    """With batch_size=7, the first batch equals an unbatched run of 7 chains with the same seed,
    and batching changes only the order in which random numbers are used (shapes, no NaN)."""
    op, prior = _mlp_operator(), _prior()
    batched = anneal(op, prior, HEAT, 30, extra_steps=2, batch_size=7, generator=_gen(5))
    first = anneal(op, prior, HEAT, 7, extra_steps=2, generator=_gen(5))
    assert batched.samples.shape == batched.states.shape == (30, 2)
    assert torch.isfinite(batched.samples).all()
    assert torch.equal(batched.samples[:7], first.samples)
    assert torch.equal(batched.states[:7], first.states)
    assert not torch.equal(batched.samples[7:14], first.samples)  # next batch: fresh randomness


def _linear_setup() -> tuple[TransitionOperator, GaussianPrior, LinearGaussian]:
    w = torch.tensor([[0.7, -0.5], [0.4, 0.6]], dtype=F64)
    backbone = LinearGaussianBackbone(2, weight=w, bias=torch.tensor([0.4, -0.1], dtype=F64),
                                      log_var=torch.tensor([0.04, 0.09], dtype=F64).log(), dtype=F64)
    op = TransitionOperator(backbone, (2,), form="2017", alpha=0.5, min_var=0.0)
    prior = GaussianPrior((2,)).double()
    prior.mean.copy_(torch.tensor([1.0, -2.0], dtype=F64))
    prior.var.copy_(torch.tensor([3.0, 0.5], dtype=F64))
    return op, prior, LinearGaussian.from_operator(op)


def _assert_gaussian_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """The sample mean and covariance of ``x`` ``(n, d)`` within 5 standard errors of ``mean``
    and ``cov``."""
    n = x.shape[0]
    se_mean = (torch.diagonal(cov) / n).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 5 * se_mean).all()), (x.mean(0), mean)
    # Var of a Gaussian sample covariance entry: (S_ii S_jj + S_ij^2) / n
    emp_cov = torch.cov(x.T)
    se_cov = ((torch.outer(torch.diagonal(cov), torch.diagonal(cov)) + cov**2) / n).sqrt()
    assert bool(((emp_cov - cov).abs() < 5 * se_cov).all()), (emp_cov, cov)


@pytest.mark.parametrize(("extra", "batch_size", "t_extra"),
                         [(0, None, 1.0), (4, None, 1.0), (4, 997, 1.0), (4, None, 1.7)])
def test_annealed_moments_match_the_exact_marginal(extra: int, batch_size: int | None,
                                                   t_extra: float) -> None:
    op, prior, exact = _linear_setup()
    n = 40_000
    result = anneal(op, prior, HEAT, n, extra_steps=extra, extra_temperature=t_extra,
                    batch_size=batch_size, generator=_gen(6))
    mean, cov = cooling_moments(exact, HEAT, prior.mean, prior.var, extra_steps=extra,
                                extra_temperature=t_extra)
    x = result.states  # the chain states follow the exact marginal
    assert x.dtype == F64 and x.shape == (n, 2)
    _assert_gaussian_moments(x, mean, cov)
    # the samples are the last step's means, M s + c of the state before it
    assert not torch.equal(result.samples, result.states)


@pytest.mark.parametrize("t_extra", [0.6, 1.5])
def test_long_chains_reach_the_stationary_law_of_the_extra_temperature(t_extra: float) -> None:
    """Past K the chain is ``s' = M s + c + N(0, T_E D)``: its stationary law has the mean
    ``(I - M)^-1 c`` and the covariance that solves ``S = M S M^T + T_E D`` (discrete Lyapunov),
    ``T_E`` times the stationary covariance at ``T = 1``."""
    op, prior, exact = _linear_setup()
    m, q = exact.matrix, exact.noise_cov(1.0)
    at_1 = torch.from_numpy(solve_discrete_lyapunov(m.numpy(), q.numpy()))
    mean = torch.linalg.solve(torch.eye(2, dtype=F64) - m, exact.offset)
    extra = 150  # |eig M| = 0.85: the prior is forgotten to 1e-21
    closed_mean, closed_cov = cooling_moments(exact, HEAT, prior.mean, prior.var,
                                              extra_steps=extra, extra_temperature=t_extra)
    torch.testing.assert_close(closed_mean, mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(closed_cov, t_extra * at_1, rtol=1e-9, atol=1e-12)
    x = anneal(op, prior, HEAT, 40_000, extra_steps=extra, extra_temperature=t_extra,
               generator=_gen(8)).states
    _assert_gaussian_moments(x, mean, t_extra * at_1)
    # not vacuous: the variances differ from those of T = 1 by far more than their errors
    gap = (torch.diagonal(torch.cov(x.T)) / torch.diagonal(at_1) - 1).abs()
    assert bool((gap > 0.3).all()), gap


def test_cooling_moments_differ_from_prior_moments() -> None:
    """Guard against a vacuous marginal test: the chain moves the prior's moments a lot."""
    op, prior, exact = _linear_setup()
    mean, cov = cooling_moments(exact, HEAT, prior.mean, prior.var)
    assert float((mean - prior.mean).abs().max()) > 0.5
    assert math.isfinite(float(cov.det())) and float(cov.det()) > 0


def _linear_walkback(m: float, d: float, temps: torch.Tensor, heating: str = "model"):
    """``s' = m s + N(0, T d)`` per dimension (4-d), as a ``Walkback`` heated by itself."""
    from walkback.model import Walkback

    backbone = LinearGaussianBackbone(4, weight=(2 * m - 1) * torch.eye(4),
                                      log_var=torch.full((4,), math.log(d)))
    op = TransitionOperator(backbone, (4,), form="2017", alpha=0.5, min_var=0.0)
    return Walkback(op, GaussianPrior((4,)), temps, heating=heating)


def test_start_at_fits_the_prior_to_the_exact_heated_marginal() -> None:
    """Data ``N(mu, sigma^2)`` heated S steps by ``s' = m s + N(0, T_t d)`` has mean ``m^S mu`` and
    variance ``m^(2S) sigma^2 + sum_t m^(2(S - t)) T_t d``; the chain then cools from ``T_S``."""
    from walkback.errors import ConfigError

    temps = heating_temperatures(6, factor=2.0)
    model = _linear_walkback(0.8, 0.5, temps)
    mu, sigma, n, step = 1.5, 0.7, 200_000, 4
    x = mu + sigma * torch.randn(n, 4, generator=_gen(0))
    started = model.start_at(step, x, batch_size=50_000, generator=_gen(1))
    want_mean = 0.8 ** step * mu
    want_var = 0.8 ** (2 * step) * sigma**2 + sum(
        0.8 ** (2 * (step - t)) * float(temps[t - 1]) * 0.5 for t in range(1, step + 1))
    se_mean = math.sqrt(want_var / n)
    assert torch.all((started.prior.mean - want_mean).abs() < 5 * se_mean)
    torch.testing.assert_close(started.prior.var, torch.full((4,), want_var), rtol=0.02, atol=0)
    assert torch.equal(started.active_temperatures, temps[:step])
    assert started.operator is model.operator
    assert torch.equal(model.prior.var, torch.ones(4))  # the original model is untouched
    assert len(started.sample(8).samples) == 8
    with pytest.raises(ValueError, match="needs the model's config"):
        started.save_pretrained("unused")  # its K differs from any config's: not saveable
    with pytest.raises(ConfigError, match="start step 7: must be in 1..K = 6"):
        model.start_at(7, x)
    with pytest.raises(ConfigError, match="heating='fixed'"):
        _linear_walkback(0.8, 0.5, temps, heating="fixed").start_at(2, x)


def test_stacked_streams_follow_the_examples_not_the_batch() -> None:
    """Example i draws the same numbers whether it sits in one batch or in another part, and
    one stream per example (block 1) is EDM's per-example generator."""
    from walkback.streams import StackedRandom

    whole = StackedRandom(3, 0, 10, block=2)
    first, rest = StackedRandom(3, 0, 4, block=2), StackedRandom(3, 4, 10, block=2)
    a = torch.cat([whole.randn((10, 3)), whole.rand((10, 1)), whole.randint(0, 9, (10, 2))], 1)
    b1 = torch.cat([first.randn((4, 3)), first.rand((4, 1)), first.randint(0, 9, (4, 2))], 1)
    b2 = torch.cat([rest.randn((6, 3)), rest.rand((6, 1)), rest.randint(0, 9, (6, 2))], 1)
    assert torch.equal(a, torch.cat([b1, b2]))
    single = StackedRandom(3, 5, 6, block=1).randn((1, 3))
    assert not torch.equal(single, a[5:6, :3])  # other block layout, other streams
    assert torch.equal(single, StackedRandom(3, 0, 8, block=1).randn((8, 3))[5:6])
    with pytest.raises(ValueError, match="multiple of block"):
        StackedRandom(0, 3, 10, block=2)
    with pytest.raises(ValueError, match="at most stop"):
        StackedRandom(0, 4, 2, block=2)
    assert StackedRandom(0, 4, 4, block=2).num == 0  # an empty share
    with pytest.raises(ValueError, match="covers 10"):
        whole.randn((9, 3))


@pytest.mark.parametrize("batch_size", [4, 6, 24])
def test_anneal_with_streams_does_not_depend_on_the_batch(batch_size: int) -> None:
    """Chains on per-example streams: the same samples for every batch size; the callback sees
    every state of every batch, with the batch's first chain index."""
    from walkback.streams import StackedRandom

    op, prior = _mlp_operator(), _prior()
    ref = anneal(op, prior, HEAT, 24, extra_steps=2, generator=StackedRandom(1, 0, 24, block=2))
    seen: list[tuple[int, int, int]] = []
    out = anneal(op, prior, HEAT, 24, extra_steps=2, batch_size=batch_size,
                 generator=StackedRandom(1, 0, 24, block=2),
                 callback=lambda item, start: seen.append((item.index, start, len(item.state))))
    torch.testing.assert_close(out.samples, ref.samples, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.states, ref.states, rtol=1e-6, atol=1e-6)
    steps = len(HEAT) + 2 + 1
    assert len(seen) == steps * math.ceil(24 / batch_size)
    assert sum(n for index, _, n in seen if index == steps - 1) == 24
    assert sorted({start for _, start, _ in seen}) == list(range(0, 24, batch_size))
    with pytest.raises(ValueError, match="cover 24"):
        anneal(op, prior, HEAT, 20, generator=StackedRandom(1, 0, 24, block=2))


def test_states_at_keeps_the_chain_states_of_anneal_progressive() -> None:
    from walkback.sampler import states_at

    op, prior = _mlp_operator(), _prior()
    every = [c.state for c in anneal_progressive(op, prior, HEAT, 8, extra_steps=3, generator=_gen(2))]
    kept = states_at(op, prior, HEAT, 8, {0, 4, len(every) - 1}, extra_steps=3, generator=_gen(2))
    assert len(kept) == 3
    for got, want in zip(kept, [every[0], every[4], every[-1]]):
        assert torch.equal(got, want)


@pytest.mark.parametrize(("eta", "extra"), [(0.0, 0), (0.5, 2), (1.3, 0)])
def test_the_noise_scale_matches_the_closed_form(eta: float, extra: int) -> None:
    """With noise scale eta the cooling steps add ``eta^2 T D`` and the extra steps ``T_E D``:
    the chain states follow ``cooling_moments(..., noise_scale=eta)``."""
    op, prior, exact = _linear_setup()
    x = anneal(op, prior, HEAT, 40_000, extra_steps=extra, noise_scale=eta,
               generator=_gen(9)).states
    mean, cov = cooling_moments(exact, HEAT, prior.mean, prior.var, extra_steps=extra,
                                noise_scale=eta)
    _assert_gaussian_moments(x, mean, cov)
    # not vacuous: the covariance differs from the operator's own law (eta = 1) by far more
    # than the sampling error
    _, own = cooling_moments(exact, HEAT, prior.mean, prior.var, extra_steps=extra)
    gap = (torch.diagonal(cov) / torch.diagonal(own) - 1).abs()
    assert bool((gap > 0.1).all()), gap


def test_noise_scale_one_is_the_default_chain_and_zero_moves_to_the_means() -> None:
    op, prior = _mlp_operator(), _prior()
    default = anneal(op, prior, HEAT, 50, extra_steps=2, generator=_gen(4))
    one = anneal(op, prior, HEAT, 50, extra_steps=2, noise_scale=1.0, generator=_gen(4))
    assert torch.equal(one.states, default.states) and torch.equal(one.samples, default.samples)
    chain = list(anneal_progressive(op, prior, HEAT, 50, extra_steps=2, noise_scale=0.0,
                                    generator=_gen(4)))
    k = len(HEAT)
    assert all(torch.equal(c.state, c.mean) for c in chain[1:k + 1])  # cooling: no noise
    assert not any(torch.equal(c.state, c.mean) for c in chain[k + 1:])  # extra steps: noise
    for bad in (-0.5, math.nan):
        with pytest.raises(ValueError, match="noise scale must be >= 0"):
            anneal(op, prior, HEAT, 5, noise_scale=bad, generator=_gen(4))
