"""The mixture start prior (``MixturePrior``, ``sample.start_components``, ``walkback fit-prior
--components``): its density is the mixture's, its draws pick components by weight, EM never
lowers the likelihood and keeps the points' moments, its fit to heated clusters is their
closed-form heated marginal, and it travels with the saved model."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

import walkback
from walkback import get_preset
from walkback.cli import main
from walkback.config import apply_overrides
from walkback.errors import CheckpointError, ConfigError
from walkback.metrics.gaussian import LinearGaussian, heating_moments
from walkback.prior import GaussianPrior, LowRankGaussianPrior, MixturePrior
from walkback.streams import StackedRandom

from test_prior_refit import TEMPS, _model, check_saved_prior_starts_the_chains, small_top_run

F64 = torch.float64


def _prior(dim: int, components: int, seed: int = 0) -> MixturePrior:
    g = torch.Generator().manual_seed(seed)
    prior = MixturePrior((dim,), components).double()
    prior.log_weight.copy_(torch.log_softmax(torch.randn(components, generator=g, dtype=F64), 0))
    prior.component_mean.copy_(3 * torch.randn(components, dim, generator=g, dtype=F64))
    prior.component_var.copy_(0.1 + torch.rand(components, dim, generator=g, dtype=F64))
    return prior


def _clusters(n: int, centres: torch.Tensor, spread: torch.Tensor, weights: torch.Tensor,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.multinomial(weights, n, replacement=True, generator=g)
    points = centres[label] + spread[label] * torch.randn(n, centres.shape[1], generator=g,
                                                          dtype=F64)
    return points, label


def test_the_density_is_the_mixture_of_its_components() -> None:
    prior = _prior(4, 3)
    s = torch.randn(7, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    parts = torch.distributions.Independent(
        torch.distributions.Normal(prior.component_mean, prior.component_var.sqrt()), 1)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.log_weight), parts)
    torch.testing.assert_close(prior.log_prob(s), mixture.log_prob(s))


def test_a_float32_prior_of_image_size_keeps_the_density_exact() -> None:
    """At D = 784 with narrow components the matrix-product form subtracts terms of order
    ``D s^2 / v``; the prior computes it in float64 whatever its own dtype."""
    prior = _prior(784, 3).float()
    prior.component_var.fill_(1e-3)
    s = prior.sample(5, generator=torch.Generator().manual_seed(5))
    parts = torch.distributions.Independent(torch.distributions.Normal(
        prior.component_mean.double(), prior.component_var.double().sqrt()), 1)
    weights = torch.distributions.Categorical(logits=prior.log_weight.double())
    exact = torch.distributions.MixtureSameFamily(weights, parts).log_prob(s.double())
    torch.testing.assert_close(prior.log_prob(s).double(), exact, rtol=1e-6, atol=1e-3)


def test_draws_pick_components_by_weight_and_do_not_depend_on_the_batch() -> None:
    prior = _prior(2, 3)
    prior.component_var.fill_(1e-6)  # each draw sits on its component's mean
    draws = prior.sample(60000, generator=torch.Generator().manual_seed(2))
    picked = torch.cdist(draws, prior.component_mean).argmin(1)
    shares = torch.bincount(picked, minlength=3).double() / len(draws)
    torch.testing.assert_close(shares, prior.log_weight.exp(), atol=0.01, rtol=0)
    whole = prior.sample(10, generator=StackedRandom(3, 0, 10, block=2))
    streams = StackedRandom(3, 0, 10, block=2)
    parts = [prior.sample(stop - start, generator=part) for start, stop, part in streams.batches(4)]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


def test_em_never_lowers_the_likelihood_and_keeps_the_points_moments() -> None:
    centres = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [-1.0, 2.0, 1.0]], dtype=F64)
    points, _ = _clusters(3000, centres, torch.ones(3, 3, dtype=F64),
                          torch.tensor([0.5, 0.3, 0.2]))
    previous = -math.inf
    for rounds in range(1, 12):  # overlapping clusters: EM takes many rounds
        fit = MixturePrior((3,), 3).double().fit(
            points, generator=torch.Generator().manual_seed(4), iterations=rounds)
        now = float(fit.log_prob(points).mean())
        assert now >= previous - 1e-9
        previous = now
        # every M-step's weighted moments add up to the points' own
        torch.testing.assert_close(fit.mean, points.mean(0))
        torch.testing.assert_close(fit.var, points.var(0, unbiased=False))
    single = GaussianPrior((3,)).double().fit(points)
    assert previous > float(single.log_prob(points).mean())


def test_the_fit_to_heated_clusters_is_their_closed_form_heated_marginal() -> None:
    """Two well-separated clusters heated by a linear-Gaussian operator stay two Gaussians of
    closed-form moments; the two-component refit finds their weights, means and per-unit
    variances, and its expected log density of fresh heated points beats the diagonal refit's."""
    model = _model()
    centres = torch.tensor([[6.0, 0.0, 0.0], [-6.0, 3.0, 0.0]], dtype=F64)
    spread = torch.tensor([[0.3, 0.2, 0.1], [0.2, 0.3, 0.2]], dtype=F64)
    weights = torch.tensor([0.3, 0.7])
    x, label = _clusters(40000, centres, spread, weights)
    op, k = LinearGaussian.from_operator(model.operator), len(TEMPS)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    fit = model.start_at(k, x, generator=g(), components=2).prior.double()
    diagonal = model.start_at(k, x, generator=g()).prior.double()
    order = fit.component_mean[:, 0].argsort(descending=True)  # the first cluster at +6
    for c in range(2):
        means, covs = heating_moments(op, TEMPS, x[label == c])
        mean = means[-1].mean(0)
        var = means[-1].var(0, unbiased=False) + torch.diagonal(covs[-1])
        torch.testing.assert_close(fit.log_weight[order[c]].exp(), weights[c].double(),
                                   atol=0.01, rtol=0)
        torch.testing.assert_close(fit.component_mean[order[c]], mean, atol=0.02, rtol=0)
        torch.testing.assert_close(fit.component_var[order[c]], var, rtol=0.04, atol=0)
    fresh = walkback.walk_away(model.heating_path(), x, generator=torch.Generator().manual_seed(4))
    s_k = fresh.states[-1].double()
    assert float(fit.log_prob(s_k).mean() - diagonal.log_prob(s_k).mean()) > 1.0


def test_the_components_are_checked() -> None:
    with pytest.raises(ValueError, match="components 1"):
        MixturePrior((3,), 1)
    with pytest.raises(ValueError, match="5 points for 6 components"):
        MixturePrior((3,), 6).fit(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="fitted"):
        _prior(3, 2).update(torch.zeros(2, 3, dtype=F64), 0.9)
    x = _clusters(10, torch.zeros(1, 3, dtype=F64), torch.ones(1, 3, dtype=F64),
                  torch.ones(1))[0]
    with pytest.raises(ConfigError, match="rank 1 or 2 components, not both"):
        _model().start_at(len(TEMPS), x, rank=1, components=2)
    with pytest.raises(ConfigError, match="11 components for 10 points"):
        _model().start_at(len(TEMPS), x, components=11)
    config = get_preset("mog")  # no part-way start
    with pytest.raises(ConfigError, match="sample.start_components"):
        apply_overrides(config, ["sample.start_components=2"])
    with pytest.raises(ConfigError, match="sample.start_components: a mixture prior has no"):
        apply_overrides(config, ["sample.start_step=4", "sample.start_components=2",
                                 "sample.start_rank=1"])


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory):
    """A mog run of K = 6 whose saved model carries a 3-component top prior fitted at the end."""
    return small_top_run(tmp_path_factory, "mixed", 10, "sample.start_components=3")


def test_a_saved_mixture_prior_round_trips_and_starts_the_chains(mixed_run) -> None:
    model = walkback.load(mixed_run)
    prior = model.start_prior
    assert isinstance(prior, MixturePrior) and prior.components == 3
    assert math.isclose(float(prior.log_weight.exp().sum()), 1.0, rel_tol=1e-5)
    check_saved_prior_starts_the_chains(mixed_run)


def test_fit_prior_components_replaces_the_saved_prior(mixed_run, capsys) -> None:
    assert main(["fit-prior", "--run-dir", str(mixed_run), "--start-step", "6",
                 "--components", "4", "--overwrite", "--device", "cpu"]) == 0
    assert "mixture of 4 diagonal Gaussians" in capsys.readouterr().out
    assert walkback.load(mixed_run).start_prior.components == 4
    assert main(["fit-prior", "--run-dir", str(mixed_run), "--start-step", "6", "--rank", "1",
                 "--overwrite", "--device", "cpu"]) == 0
    assert isinstance(walkback.load(mixed_run).start_prior, LowRankGaussianPrior)
    assert main(["fit-prior", "--run-dir", str(mixed_run), "--start-step", "6",
                 "--overwrite", "--device", "cpu"]) == 0  # the run's own: 3 components
    assert walkback.load(mixed_run).start_prior.components == 3


def test_a_mixture_file_of_the_wrong_shape_is_refused(mixed_run) -> None:
    folder = mixed_run / "model"
    good = walkback.load(mixed_run)
    for weights, means in ((torch.zeros(3), torch.zeros(3, 3)), (torch.zeros(2), torch.zeros(3, 2)),
                           (torch.zeros(3), torch.zeros(3))):
        save_file({"mean": torch.zeros(2), "var": torch.ones(2), "log_weight": weights,
                   "component_mean": means, "component_var": torch.ones(3, 2),
                   "start_step": torch.tensor([6])}, str(folder / "start_prior.safetensors"))
        with pytest.raises(CheckpointError, match="not a start prior of this model's shape"):
            walkback.load(mixed_run)
    good.save_start_prior(folder)
    assert walkback.load(mixed_run).start_prior.components == 3
