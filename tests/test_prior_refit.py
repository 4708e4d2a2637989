"""The top prior refit to the saved operator's own heating (``sample.start_step = K``): its
moments are the heated marginal's (closed form for a linear-Gaussian operator), it is the
diagonal Gaussian with the best bound, and sampling starts from it once it is saved."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import walkback
from walkback import get_preset
from walkback.config import apply_overrides
from walkback.metrics.gaussian import LinearGaussian, exact_bound, heating_moments
from walkback.model import Walkback
from walkback.models import LinearGaussianBackbone
from walkback.prior import GaussianPrior
from walkback.sampler import anneal
from walkback.train import train
from walkback.transition import TransitionOperator

F64 = torch.float64
W = torch.tensor([[0.7, -0.2, 0.1], [0.2, 0.6, 0.0], [0.0, 0.3, 0.8]], dtype=F64)
B = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
VAR = torch.tensor([0.02, 0.04, 0.03], dtype=F64)
TEMPS = 1.5 ** torch.arange(5, dtype=F64)


def _model() -> Walkback:
    backbone = LinearGaussianBackbone(3, weight=W, bias=B, log_var=VAR.log(), dtype=F64)
    op = TransitionOperator(backbone, (3,), form="2017", alpha=0.5, min_var=0.0)
    prior = GaussianPrior((3,)).to(F64)  # the training prior: N(0, I), far from the heated data
    return Walkback(op, prior, TEMPS.clone())


def _data(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.tensor([0.5, -0.3, 0.2], dtype=F64)
            + torch.tensor([0.3, 0.1, 0.2], dtype=F64) * torch.randn(n, 3, generator=g, dtype=F64))


def _heated_marginal(model: Walkback, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and per-dimension variance of ``s_K`` over the points ``x`` and the heating noise:
    the per-point means' spread plus the heating's own covariance ``P_K``."""
    means, covs = heating_moments(LinearGaussian.from_operator(model.operator), TEMPS, x)
    ends = means[-1]
    return ends.mean(0), ends.var(0, unbiased=False) + torch.diagonal(covs[-1])


def _mean_bound(model: Walkback, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> float:
    op = LinearGaussian.from_operator(model.operator)
    return float(exact_bound(op, TEMPS, mean, var, x).mean())


def test_the_refit_top_prior_has_the_heated_marginals_moments_and_the_best_bound() -> None:
    model, x = _model(), _data(40000)
    k = len(TEMPS)
    refit = model.start_at(k, x, generator=torch.Generator().manual_seed(1)).prior.double()
    mean, var = _heated_marginal(model, x)
    torch.testing.assert_close(refit.mean, mean, atol=4 * float(var.max().sqrt()) / 200, rtol=0)
    torch.testing.assert_close(refit.var, var, rtol=0.04, atol=0)
    # among diagonal Gaussians the heated marginal's moments maximise E_x[L(x)]: the refit is
    # within its sampling error of that optimum, and the training prior and moved ones are below
    best = _mean_bound(model, x, mean, var)
    assert _mean_bound(model, x, refit.mean, refit.var) == pytest.approx(best, abs=2e-3)
    assert _mean_bound(model, x, model.prior.mean, model.prior.var) < best - 0.1
    for moved in ((mean + 0.1, var), (mean, 1.3 * var), (mean, 0.7 * var)):
        assert _mean_bound(model, x, *moved) < best - 1e-3


def small_top_run(factory: pytest.TempPathFactory, name: str, steps: int, *prior: str):
    """A small mog run of K = 6 trained ``steps`` minibatches whose saved model carries a top
    prior fitted at the end (its form set by the overrides ``prior``)."""
    config = apply_overrides(get_preset("mog-tuned"), [
        f"train.steps={steps}", "train.device=cpu", "mlp.hidden=16", "mlp.depth=1",
        "data.num_train=2000", "schedule.num_steps=6", "schedule.n1=1", "sample.start_step=6",
        "sample.start_components=0", *prior])
    path = factory.mktemp("runs") / name
    train(config, path, progress=False)
    return path


def check_saved_prior_starts_the_chains(run: Path) -> None:
    """The saved top prior of ``run`` is what ``start_at(K)`` and ``sample`` start from, and the
    evaluation's bound with it is finite."""
    model = walkback.load(run)
    prior = model.start_prior
    assert model.start_at(len(model.active_temperatures)).prior is prior
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    direct = anneal(model.operator, prior, model.active_temperatures, 40, generator=gen())
    assert torch.equal(model.sample(40, generator=gen()).samples, direct.samples)
    bound = walkback.evaluate(run, metrics=["bound"], num_paths=1, progress=False)
    assert math.isfinite(bound["bound"]["estimates"][0]["log_bound"])


@pytest.fixture(scope="module")
def top_run(tmp_path_factory: pytest.TempPathFactory):
    """A mog run of K = 6 whose saved model carries the top prior refit at the end."""
    return small_top_run(tmp_path_factory, "top", 20)


def test_a_saved_top_prior_is_what_sampling_starts_from(top_run) -> None:
    model = walkback.load(top_run)
    assert model.start_step == 6 and model.start_prior is not None
    started = model.start_at(6)
    assert started is not model and len(started.active_temperatures) == 6
    assert torch.equal(started.prior.var, model.start_prior.var)
    assert not torch.allclose(model.start_prior.var, model.prior.var)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    default = model.sample(50, generator=gen())
    refit = model.sample(50, generator=gen(), start_step=6)
    trained = model.sample(50, generator=gen(), start_step=0)  # the prior learned in training
    assert torch.equal(default.samples, refit.samples)
    assert not torch.equal(default.samples, trained.samples)


def test_without_a_saved_top_prior_step_k_is_the_model_itself() -> None:
    model = _model()
    assert model.start_at(len(TEMPS)) is model and model.start_at(0) is model


def test_the_bound_of_a_run_with_a_saved_top_prior_is_that_of_its_sampler(top_run) -> None:
    """The evaluation's bound uses the refit top prior: only the prior term changes, and on the
    same heating paths it is higher than with the prior learned in training (20 minibatches:
    the training prior's moving average still lags the operator's end points)."""
    refit = walkback.evaluate(top_run, metrics=["bound"], num_paths=1, progress=False)
    model = walkback.load(top_run)
    model._start = (0, None)  # the same run without its saved top prior
    model.save_pretrained(top_run / "model")
    (top_run / "model" / "start_prior.safetensors").unlink()
    trained = walkback.evaluate(top_run, metrics=["bound"], num_paths=1, progress=False)
    first, second = (r["bound"]["estimates"][0] for r in (refit, trained))
    assert first["log_bound"] > second["log_bound"]
    assert first["prior_term"] > second["prior_term"]
    assert first["step_terms"] == second["step_terms"]  # the same paths: only the prior differs
