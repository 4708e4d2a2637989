"""Walk-back loss and variational bound: no gradient through heating, hand-checked terms, the
bound against its closed form for a linear-Gaussian operator, the importance-weighted bound."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from scipy import integrate

from walkback.metrics.gaussian import (
    LinearGaussian, cooling_moments, exact_bound, exact_log_likelihood,
)
from walkback.models import LinearGaussianBackbone
from walkback.objective import variational_bound, walkback_loss, walkback_step_loss
from walkback.prior import GaussianPrior
from walkback.trajectory import OperatorHeating, Trajectory, walk_away
from walkback.transition import TransitionOperator

F64 = torch.float64
ALPHA = 0.5
W = torch.tensor([[0.6, -0.4], [0.3, 0.8]], dtype=F64)
B = torch.tensor([0.3, -0.2], dtype=F64)
VAR = torch.tensor([0.05, 0.12], dtype=F64)
TEMPS = 1.5 ** torch.arange(4, dtype=F64)  # K = 4, f = 1.5 (exact in float32 too)
X = torch.tensor([0.4, -0.7], dtype=F64)


@dataclass
class Setup:
    op: TransitionOperator
    prior: GaussianPrior
    exact: LinearGaussian


def _setup(prior_mean=(1.0, -1.0), prior_var=(0.3, 0.5), *, w=W, b=B, var=VAR, dim=2) -> Setup:
    """A linear-Gaussian operator in float64 and a Gaussian prior that does not match the heating
    end points well (so the gap between bound and likelihood is clearly visible)."""
    backbone = LinearGaussianBackbone(dim, weight=w, bias=b, log_var=var.log(), dtype=F64)
    op = TransitionOperator(backbone, (dim,), form="2017", alpha=ALPHA, min_var=0.0)
    prior = GaussianPrior((dim,)).double()
    prior.mean.copy_(torch.as_tensor(prior_mean, dtype=F64))
    prior.var.copy_(torch.as_tensor(prior_var, dtype=F64))
    return Setup(op, prior, LinearGaussian.from_operator(op))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal_log_prob(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(-1)


# ---------------------------------------------------------------- (a) gradient flow, hand checks


def _grads(op: TransitionOperator, path: Trajectory, objective: str = "paper") -> list[torch.Tensor]:
    op.zero_grad(set_to_none=True)
    walkback_loss(op, path, TEMPS, objective).sum().backward()
    return [p.grad.clone() for p in op.parameters()]


@pytest.mark.parametrize("objective", ["paper", "released"])
def test_no_gradient_reaches_weights_through_heating_path(objective: str) -> None:
    setup = _setup()
    x = torch.randn(64, 2, dtype=F64, generator=_gen(0))
    path = walk_away(OperatorHeating(setup.op, TEMPS), x, generator=_gen(1))
    assert not path.states.requires_grad and path.states.grad_fn is None
    assert not any(state.requires_grad for state in path.states)
    assert not path.log_q.requires_grad

    grads = _grads(setup.op, path, objective)
    assert all(float(g.abs().max()) > 0 for g in grads)  # W, b and g all receive gradient
    detached = Trajectory(path.states.detach().clone(), path.log_q.clone(), path.noise_var.clone())
    for g, g_detached in zip(grads, _grads(setup.op, detached, objective)):
        assert torch.equal(g, g_detached)


def test_a_path_that_carried_a_graph_would_change_the_gradient() -> None:
    """The check above has teeth: the same path sampled WITH a graph gives another gradient."""
    setup = _setup()
    x = torch.randn(64, 2, dtype=F64, generator=_gen(0))
    states = [x]
    for t in range(len(TEMPS)):
        states.append(setup.op.sample(states[-1], float(TEMPS[t]), generator=_gen(10 + t)))
    with_graph = Trajectory(torch.stack(states), torch.zeros(len(TEMPS), 64), torch.zeros(len(TEMPS)))
    assert with_graph.states.requires_grad
    without = Trajectory(with_graph.states.detach(), with_graph.log_q, with_graph.noise_var)
    differs = [not torch.allclose(a, b) for a, b in zip(_grads(setup.op, with_graph), _grads(setup.op, without))]
    assert any(differs)


def test_paper_loss_scores_s_prev_under_operator_applied_to_s_next() -> None:
    setup = _setup()
    path = walk_away(OperatorHeating(setup.op, TEMPS), X.expand(32, 2).clone(), generator=_gen(2))
    m, c, var = setup.exact.matrix, setup.exact.offset, setup.exact.var
    with torch.no_grad():
        loss = walkback_loss(setup.op, path, TEMPS, "paper")
        assert loss.shape == (len(TEMPS), 32)
        for t in range(1, len(TEMPS) + 1):
            s_prev, s_next = path.states[t - 1], path.states[t]
            expected = -_normal_log_prob(s_prev, s_next @ m.T + c, TEMPS[t - 1] * var)
            torch.testing.assert_close(loss[t - 1], expected, rtol=1e-10, atol=1e-10)
            single = walkback_step_loss(setup.op, s_prev, s_next, float(TEMPS[t - 1]), "paper")
            torch.testing.assert_close(single, expected, rtol=1e-10, atol=1e-10)


def test_released_loss_scores_s_prev_under_operator_applied_to_s_prev() -> None:
    setup = _setup()
    path = walk_away(OperatorHeating(setup.op, TEMPS), X.expand(32, 2).clone(), generator=_gen(3))
    m, c, var = setup.exact.matrix, setup.exact.offset, setup.exact.var
    with torch.no_grad():
        loss = walkback_loss(setup.op, path, TEMPS, "released")
        paper = walkback_loss(setup.op, path, TEMPS, "paper")
    assert not torch.allclose(loss, paper)
    for t in range(1, len(TEMPS) + 1):
        s_prev = path.states[t - 1]
        expected = -_normal_log_prob(s_prev, s_prev @ m.T + c, TEMPS[t - 1] * var)
        torch.testing.assert_close(loss[t - 1], expected, rtol=1e-10, atol=1e-10)


def test_unknown_objective_is_rejected() -> None:
    setup = _setup()
    with pytest.raises(ValueError, match="objective"):
        walkback_step_loss(setup.op, X[None], X[None], 1.0, "foo")  # type: ignore[arg-type]


# ---------------------------------------------------------------- closed forms checked by quadrature


def test_closed_forms_match_quadrature_in_one_dimension() -> None:
    """K = 1, d = 1: ``log p(x) = log int p*(s) N(x; m s + c, T v) ds`` and
    ``L(x) = int q(s|x) [log p*(s) + log N(x; m s + c, T v) - log q(s|x)] ds``."""
    setup = _setup((0.5,), (0.8,), w=torch.tensor([[0.4]], dtype=F64), b=torch.tensor([0.2], dtype=F64),
                   var=torch.tensor([0.3], dtype=F64), dim=1)
    temps, x = torch.tensor([2.0], dtype=F64), 0.9
    m, c, v = float(setup.exact.matrix), float(setup.exact.offset), float(setup.exact.var)
    t = 2.0

    def log_n(u: float, mean: float, var: float) -> float:
        return -0.5 * (math.log(2 * math.pi * var) + (u - mean) ** 2 / var)

    def joint(s: float) -> float:
        return math.exp(log_n(s, 0.5, 0.8) + log_n(x, m * s + c, t * v))

    def bound_integrand(s: float) -> float:
        log_q = log_n(s, m * x + c, t * v)
        return math.exp(log_q) * (log_n(s, 0.5, 0.8) + log_n(x, m * s + c, t * v) - log_q)

    likelihood = math.log(integrate.quad(joint, -30, 30, epsabs=1e-13, limit=200)[0])
    bound = integrate.quad(bound_integrand, -30, 30, epsabs=1e-13, limit=200)[0]
    xs = torch.tensor([x], dtype=F64)
    args = (setup.exact, temps, setup.prior.mean, setup.prior.var, xs)
    assert float(exact_log_likelihood(*args)) == pytest.approx(likelihood, abs=1e-9)
    assert float(exact_bound(*args)) == pytest.approx(bound, abs=1e-9)
    assert bound < likelihood - 1e-3


def test_exact_bound_is_below_exact_likelihood_and_batches() -> None:
    setup = _setup()
    xs = torch.randn(50, 2, dtype=F64, generator=_gen(4))
    args = (setup.exact, TEMPS, setup.prior.mean, setup.prior.var)
    bound, ll = exact_bound(*args, xs), exact_log_likelihood(*args, xs)
    assert bound.shape == ll.shape == (50,)
    assert bool((bound < ll).all())
    torch.testing.assert_close(exact_bound(*args, xs[7]), bound[7])
    torch.testing.assert_close(exact_log_likelihood(*args, xs[7]), ll[7])
    mean, cov = cooling_moments(*args)
    torch.testing.assert_close(ll, torch.distributions.MultivariateNormal(mean, cov).log_prob(xs))


# ---------------------------------------------------------------- (b) Monte Carlo bound = closed form


def test_monte_carlo_bound_equals_closed_form() -> None:
    setup = _setup()
    n = 20_000
    result = variational_bound(setup.op, setup.prior, OperatorHeating(setup.op, TEMPS), TEMPS,
                               X.expand(n, 2).clone(), num_paths=1, generator=_gen(5))
    assert result.elbo.shape == (n,) and result.step_terms.shape == (len(TEMPS), n)
    torch.testing.assert_close(result.elbo, result.log_bound)  # M = 1: both are log w
    torch.testing.assert_close(result.elbo, result.prior_term + result.step_terms.sum(0))
    exact = float(exact_bound(setup.exact, TEMPS, setup.prior.mean, setup.prior.var, X))
    se = float(result.elbo.std()) / math.sqrt(n)
    assert abs(float(result.elbo.mean()) - exact) < 4 * se, (float(result.elbo.mean()), exact, se)


# ---------------------------------------------------------------- (c) importance weighting


def test_importance_weighted_bound_rises_toward_exact_likelihood() -> None:
    setup = _setup()
    exact = float(exact_log_likelihood(setup.exact, TEMPS, setup.prior.mean, setup.prior.var, X))
    elbo = float(exact_bound(setup.exact, TEMPS, setup.prior.mean, setup.prior.var, X))
    assert exact - elbo > 1.0  # the chosen prior leaves a clearly visible gap
    stats = {}
    for num_paths, repeats, seed in ((1, 8000, 6), (8, 2000, 7), (64, 1000, 8)):
        result = variational_bound(setup.op, setup.prior, OperatorHeating(setup.op, TEMPS), TEMPS,
                                   X.expand(repeats, 2).clone(), num_paths=num_paths, generator=_gen(seed))
        lb = result.log_bound
        stats[num_paths] = (float(lb.mean()), float(lb.std()) / math.sqrt(repeats))
    for lo, hi in ((1, 8), (8, 64)):
        (m_lo, se_lo), (m_hi, se_hi) = stats[lo], stats[hi]
        assert m_hi - m_lo > 3 * math.hypot(se_lo, se_hi), stats
    for mean, se in stats.values():
        assert mean <= exact + 3 * se, (stats, exact)
    assert abs(stats[64][0] - exact) < abs(stats[1][0] - exact)


def test_sampled_walkback_loss_with_all_steps_equals_the_full_sum() -> None:
    from walkback.objective import sampled_walkback_loss

    setup = _setup()
    x = torch.randn(64, 2, generator=_gen(3), dtype=torch.float64)
    path = walk_away(OperatorHeating(setup.op, TEMPS), x, generator=_gen(4))
    with torch.no_grad():
        full = walkback_loss(setup.op, path, TEMPS).sum(0)
        estimate, steps = sampled_walkback_loss(setup.op, path, TEMPS, len(TEMPS),
                                                generator=_gen(5))
    assert steps.tolist() == list(range(len(TEMPS)))
    torch.testing.assert_close(estimate, full, rtol=1e-12, atol=1e-12)


def test_sampled_walkback_loss_is_unbiased_over_the_step_subsets() -> None:
    from walkback.objective import sampled_walkback_loss

    setup = _setup()
    x = torch.randn(8, 2, generator=_gen(6), dtype=torch.float64)
    path = walk_away(OperatorHeating(setup.op, TEMPS), x, generator=_gen(7))
    generator = _gen(8)
    with torch.no_grad():
        full = walkback_loss(setup.op, path, TEMPS).sum(0)
        draws = torch.stack([sampled_walkback_loss(setup.op, path, TEMPS, 1,
                                                   generator=generator)[0] for _ in range(4000)])
    standard_error = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - full).abs() < 5 * standard_error + 1e-9).all()


def test_transition_batches_cover_every_transition_once() -> None:
    from walkback.objective import transition_batches

    batches = transition_batches(7, 5, 4, generator=_gen(9))
    assert [len(b) for b in batches] == [4] * 8 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(35))
    again = transition_batches(7, 5, 4, generator=_gen(9))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_transition_walkback_loss_equals_the_per_step_terms() -> None:
    """Scored in shuffled minibatches, each transition's term is the one ``walkback_loss`` gives
    for its (step, example) pair, so K times the mean over all transitions is the path sum."""
    from walkback.objective import transition_batches, transition_walkback_loss

    setup = _setup()
    x = torch.randn(6, 2, generator=_gen(10), dtype=torch.float64)
    path = walk_away(OperatorHeating(setup.op, TEMPS), x, generator=_gen(11))
    with torch.no_grad():
        full = walkback_loss(setup.op, path, TEMPS)  # (K, B)
        got = torch.empty(full.numel(), dtype=full.dtype)
        for index in transition_batches(len(TEMPS), 6, 5, generator=_gen(12)):
            got[index] = transition_walkback_loss(setup.op, path, TEMPS, index)
    torch.testing.assert_close(got.view_as(full), full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(len(TEMPS) * got.mean(), full.sum(0).mean(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- (d) the whole bound as a loss


def test_negative_bound_of_a_path_is_minus_its_log_weight() -> None:
    """On the same path, ``negative_bound`` is ``-log w`` of ``variational_bound`` (M = 1), and its
    walk-back terms are the paper loss's terms."""
    from walkback.objective import negative_bound

    setup = _setup()
    x = torch.randn(32, 2, dtype=F64, generator=_gen(20))
    heating = OperatorHeating(setup.op, TEMPS)
    ref = variational_bound(setup.op, setup.prior, heating, TEMPS, x, generator=_gen(21))
    path = walk_away(heating, x, generator=_gen(21), reparameterized=True)
    assert path.states.requires_grad and path.log_q.requires_grad
    total, walk_back = negative_bound(setup.op, setup.prior, path, TEMPS)
    torch.testing.assert_close(total.detach(), -ref.log_bound, rtol=1e-12, atol=1e-12)
    detached = Trajectory(path.states.detach(), path.log_q.detach(), path.noise_var)
    torch.testing.assert_close(walk_back.detach(), walkback_loss(setup.op, detached, TEMPS))


def test_pathwise_gradient_of_the_bound_matches_the_closed_form_gradient() -> None:
    """The Monte Carlo gradient of ``negative_bound`` along reparameterised paths is unbiased: its
    mean over 40,000 paths equals the autograd gradient of ``-exact_bound`` (linear-Gaussian
    operator, closed form) within 4.5 standard errors, for every weight. The paper's loss (path
    detached, entropy and prior dropped) has a different expected gradient."""
    from walkback.objective import negative_bound

    setup = _setup()
    bb = setup.op.backbone
    params = [bb.weight, bb.bias, bb.g]
    exact_op = LinearGaussian(
        matrix=ALPHA * torch.eye(2, dtype=F64) + (1 - ALPHA) * bb.weight,
        offset=(1 - ALPHA) * bb.bias, var=torch.nn.functional.softplus(bb.g),
    )
    exact = -exact_bound(exact_op, TEMPS, setup.prior.mean, setup.prior.var, X)
    want = torch.cat([g.flatten() for g in torch.autograd.grad(exact, params)])

    heating = OperatorHeating(setup.op, TEMPS)
    batches, paper = [], []
    for seed in range(20):
        path = walk_away(heating, X.expand(2000, 2).clone(), generator=_gen(100 + seed),
                         reparameterized=True)
        total, walk_back = negative_bound(setup.op, setup.prior, path, TEMPS)
        batches.append(torch.cat([g.flatten() for g in torch.autograd.grad(total.mean(), params,
                                                                          retain_graph=True)]))
        detached = Trajectory(path.states.detach(), path.log_q.detach(), path.noise_var)
        paper.append(torch.cat([g.flatten() for g in torch.autograd.grad(
            walkback_loss(setup.op, detached, TEMPS).sum(0).mean(), params)]))
    got = torch.stack(batches)
    se = got.std(0) / math.sqrt(len(got))
    assert bool(((got.mean(0) - want).abs() < 4.5 * se + 1e-9).all()), (got.mean(0), want, se)
    paper_mean = torch.stack(paper).mean(0)
    assert bool(((paper_mean - want).abs() > 10 * se).any())
