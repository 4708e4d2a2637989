"""The low-rank start prior (``LowRankGaussianPrior``, ``sample.start_rank``, ``walkback
fit-prior --rank``): its density is the full-covariance Gaussian's, its fit keeps the heated
points' leading covariance exactly (all of it at full rank, so the closed-form heated marginal
of a linear-Gaussian operator), it gains the closed-form KL over the diagonal, and it travels
with the saved model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import walkback
from walkback import get_preset
from walkback.cli import main
from walkback.config import apply_overrides
from walkback.errors import CheckpointError, ConfigError
from walkback.metrics.gaussian import LinearGaussian, heating_moments
from walkback.prior import GaussianPrior, LowRankGaussianPrior

from test_prior_refit import (
    TEMPS, _data, _model, check_saved_prior_starts_the_chains, small_top_run,
)

F64 = torch.float64


def _prior(dim: int, rank: int, seed: int = 0) -> LowRankGaussianPrior:
    g = torch.Generator().manual_seed(seed)
    prior = LowRankGaussianPrior((dim,), rank).double()
    prior.mean.copy_(torch.randn(dim, generator=g, dtype=F64))
    prior.var.copy_(0.1 + torch.rand(dim, generator=g, dtype=F64))
    prior.factor.copy_(torch.randn(rank, dim, generator=g, dtype=F64))
    return prior


def _covariance(prior: LowRankGaussianPrior) -> torch.Tensor:
    return torch.diag(prior.var.flatten()) + prior.factor.T @ prior.factor


def test_the_density_is_the_full_covariance_gaussians() -> None:
    prior = _prior(6, 2)
    s = torch.randn(9, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    full = torch.distributions.MultivariateNormal(prior.mean, _covariance(prior))
    torch.testing.assert_close(prior.log_prob(s), full.log_prob(s))


def test_draws_have_the_prior_covariance() -> None:
    prior = _prior(5, 2)
    draws = prior.sample(200000, generator=torch.Generator().manual_seed(2))
    cov = _covariance(prior)
    torch.testing.assert_close(draws.mean(0), prior.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.05 * float(cov.abs().max()), rtol=0)


def test_the_fit_keeps_the_leading_covariance_and_every_variance() -> None:
    g = torch.Generator().manual_seed(3)
    points = torch.randn(500, 4, generator=g, dtype=F64) @ torch.randn(4, 4, generator=g, dtype=F64)
    cov = torch.cov(points.T, correction=0)
    values, vectors = torch.linalg.eigh(cov)
    for rank in (1, 2, 4):
        fit = LowRankGaussianPrior((4,), rank).double().fit(points)
        leading = (vectors[:, -rank:] * values[-rank:]) @ vectors[:, -rank:].T
        torch.testing.assert_close(fit.factor.T @ fit.factor, leading)
        torch.testing.assert_close(fit.mean, points.mean(0))
        if rank < 4:  # the diagonal is what the factor leaves of every unit's variance
            torch.testing.assert_close(torch.diagonal(_covariance(fit)), torch.diagonal(cov))
    # at full rank the covariance is the points' own (plus min_var on the emptied diagonal)
    torch.testing.assert_close(_covariance(fit), cov + fit.min_var * torch.eye(4))


def test_the_full_rank_refit_is_the_heated_marginal_and_gains_its_kl_over_the_diagonal() -> None:
    """For a linear-Gaussian operator the heated marginal of Gaussian data is the Gaussian
    ``N(m, C)`` of closed form; the refit of rank D has that covariance, and its expected log
    density of ``s_K`` exceeds the diagonal refit's by ``KL(N(m, C) || N(m, diag C))`` =
    ``(sum log C_ii - log det C) / 2``, the most a prior can gain on the bound's prior term."""
    mixing = torch.tensor([[1.0, 0.8, 0.0], [0.0, 1.0, -0.6], [0.0, 0.0, 1.0]], dtype=F64)
    model, x = _model(), 5 * _data(40000) @ mixing  # correlated data, wider than the heating
    means, covs = heating_moments(LinearGaussian.from_operator(model.operator), TEMPS, x)
    cov = torch.cov(means[-1].T, correction=0) + covs[-1]
    k = len(TEMPS)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    full = model.start_at(k, x, generator=g(), rank=3).prior.double()
    diagonal = model.start_at(k, x, generator=g()).prior.double()
    assert type(diagonal) is GaussianPrior
    torch.testing.assert_close(_covariance(full), cov, rtol=0.04, atol=0.01 * float(cov.max()))
    ends = walkback.walk_away(model.heating_path(), x, generator=torch.Generator().manual_seed(4))
    s_k = ends.states[-1].double()
    gain = float(full.log_prob(s_k).mean() - diagonal.log_prob(s_k).mean())
    kl = 0.5 * float(torch.diagonal(cov).log().sum() - torch.logdet(cov))
    assert kl > 0.05  # the data's and the operator's correlations: the diagonal misses them
    assert gain == pytest.approx(kl, rel=0.1)


def test_the_rank_is_checked() -> None:
    with pytest.raises(ValueError, match="rank 0"):
        LowRankGaussianPrior((3,), 0)
    with pytest.raises(ConfigError, match="rank 4: at most the state's size 3"):
        _model().start_at(len(TEMPS), _data(10), rank=4)
    with pytest.raises(TypeError, match="fitted"):
        _prior(3, 1).update(torch.zeros(2, 3, dtype=F64), 0.9)
    config = get_preset("mog")  # no part-way start
    with pytest.raises(ConfigError, match="sample.start_rank"):
        apply_overrides(config, ["sample.start_rank=1"])


@pytest.fixture(scope="module")
def ranked_run(tmp_path_factory: pytest.TempPathFactory):
    """A mog run of K = 6 whose saved model carries a rank-1 top prior fitted at the end."""
    return small_top_run(tmp_path_factory, "ranked", 10, "sample.start_rank=1")


def test_a_saved_low_rank_prior_round_trips_and_starts_the_chains(ranked_run) -> None:
    model = walkback.load(ranked_run)
    prior = model.start_prior
    assert isinstance(prior, LowRankGaussianPrior) and prior.rank == 1
    assert float(prior.factor.abs().sum()) > 0
    check_saved_prior_starts_the_chains(ranked_run)


def test_fit_prior_rank_replaces_the_saved_prior(ranked_run, tmp_path, capsys) -> None:
    assert main(["fit-prior", "--run-dir", str(ranked_run), "--start-step", "6", "--rank", "2",
                 "--overwrite", "--device", "cpu"]) == 0
    assert "diagonal plus rank 2" in capsys.readouterr().out
    assert walkback.load(ranked_run).start_prior.rank == 2
    assert main(["fit-prior", "--run-dir", str(ranked_run), "--start-step", "6", "--rank", "0",
                 "--overwrite", "--device", "cpu"]) == 0
    assert type(walkback.load(ranked_run).start_prior) is GaussianPrior


def test_a_start_prior_file_of_the_wrong_shape_is_refused(ranked_run) -> None:
    folder = ranked_run / "model"
    good = walkback.load(ranked_run)
    for factor in (torch.zeros(0, 2), torch.zeros(2), torch.zeros(1, 3)):
        save_file({"mean": torch.zeros(2), "var": torch.ones(2), "factor": factor,
                   "start_step": torch.tensor([6])}, str(folder / "start_prior.safetensors"))
        with pytest.raises(CheckpointError, match="not a start prior of this model's shape"):
            walkback.load(ranked_run)
    good.save_start_prior(folder)
    assert walkback.load(ranked_run).start_step == 6
