"""The DDPM baseline against closed forms: the forward marginal, the grid's betas, the DDIM /
ancestral step, an exact denoiser on Gaussian data (DDIM reproduces the data; the bound stays
below the exact log-likelihood), and the config's refusals."""

from __future__ import annotations

import math

import pytest
import torch

from walkback import build_model, get_preset
from walkback.config import apply_overrides
from walkback.diffusion import (
    DiffusionOperator, ddim_variance, denoising_loss, exact_gaussian_eps, grid_betas,
    sampling_levels, vp_alphas_bar, vp_marginal,
)
from walkback.errors import ConfigError
from walkback.models import MLPBackbone
from walkback.objective import variational_bound
from walkback.prior import GaussianPrior
from walkback.sampler import anneal
from walkback.trajectory import FixedDiffusionHeating, walk_away

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_bar_closed_forms(schedule: str) -> None:
    abar = vp_alphas_bar(1000, schedule)
    assert abar[0] == 1 and abar.shape == (1001,)
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < float(abar[-1]) < 1e-3
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
        torch.testing.assert_close(abar[1:], torch.cumprod(1 - betas, 0))
    else:  # abar(n) = f(n) / f(0) wherever no beta was clipped
        f = lambda n: math.cos((n / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        assert float(abar[500]) == pytest.approx(f(500) / f(0), rel=1e-9)


def test_sampling_levels_span_the_process() -> None:
    levels = sampling_levels(1000, 30)
    assert levels[0] == 1 and levels[-1] == 1000 and len(levels) == 30
    assert bool((levels[1:] > levels[:-1]).all())
    assert sampling_levels(1000, 1).tolist() == [1000.0]
    with pytest.raises(ValueError):
        sampling_levels(10, 11)


def test_grid_betas_compose_to_the_marginal() -> None:
    """The forward process restricted to the grid: prod_{k <= j} (1 - beta_k) = abar_{n_j}."""
    abar = vp_alphas_bar(1000, "linear")
    levels = sampling_levels(1000, 17)
    betas = grid_betas(abar, levels)
    torch.testing.assert_close(torch.cumprod(1 - betas, 0), abar[levels.long()])


def test_forward_marginal_equals_its_closed_form() -> None:
    """Heating x along the grid's fixed steps gives x_N with the moments of q(x_N | x_0) =
    N(sqrt(abar_N) x, (1 - abar_N) I), as ``vp_marginal`` draws it."""
    abar = vp_alphas_bar(200, "cosine")
    levels = sampling_levels(200, 12)
    x = torch.tensor([[1.5, -0.7]], dtype=F64).expand(40_000, 2)
    for k in (4, 12):  # part-way and at the top
        path = walk_away(FixedDiffusionHeating(grid_betas(abar, levels[:k])), x, generator=_gen(0))
        a = abar[int(levels[k - 1])]
        end = path.states[-1]
        se = ((1 - a) / len(x)).sqrt()
        assert bool(((end.mean(0) - a.sqrt() * x[0]).abs() < 5 * se).all())
        assert bool(((end.var(0) - (1 - a)).abs() < 5 * (1 - a) * math.sqrt(2 / len(x))).all())
        direct = vp_marginal(x, a.expand(len(x)), torch.randn(x.shape, generator=_gen(1), dtype=F64))
        assert bool(((direct.mean(0) - end.mean(0)).abs() < 7 * se).all())


class ExactGaussianOperator(DiffusionOperator):
    """A DDPM whose noise predictor is the exact one for data ``N(mean, var I)``."""

    def __init__(self, alphas_bar, grid, mean: float, var: float, eta: float = 0.0) -> None:
        super().__init__(torch.nn.Identity(), (2,), alphas_bar, grid, eta=eta)
        self.data_mean, self.data_var = mean, var

    def predict_eps(self, s, level):
        return exact_gaussian_eps(s, self.alphas_bar[self._levels(s, level)], self.data_mean,
                                  self.data_var)


def _exact(eta: float = 0.0, steps: int = 50, mean: float = 0.5, var: float = 0.09,
           schedule: str = "linear"):
    abar = vp_alphas_bar(1000, schedule)
    levels = sampling_levels(1000, steps)
    return ExactGaussianOperator(abar, levels, mean, var, eta).double(), levels


def test_ddim_with_the_exact_denoiser_reproduces_gaussian_data() -> None:
    """DDIM (eta = 0) with the exact denoiser maps N(0, I) onto the data N(0.5, 0.25 I) up to
    the first-order step's bias, which the recursion of its linear steps gives in closed form for
    the cosine schedule: a variance ratio of 0.989 with 300 steps and 0.899 with 30 (the mean is
    exact). 8,000 chains in 8 dimensions: the ratio's standard error is 0.5%."""
    prior = GaussianPrior((8,)).double()
    for steps, ratio in ((300, 0.9894), (30, 0.8994)):
        op, levels = _exact(steps=steps, var=0.25, schedule="cosine")
        x = anneal(op, prior, levels, 8000, generator=_gen(2)).samples
        assert x.dtype == F64 and x.shape == (8000, 8)
        assert float(x.mean()) == pytest.approx(0.5, abs=0.01)
        assert float(x.var(0).mean() / 0.25) == pytest.approx(ratio, abs=0.02)


def test_eta_one_is_the_forward_posterior_and_the_last_step_has_variance_beta_1() -> None:
    """DDIM at eta = 1 is q(x_{n'} | x_n, x_0) with x_0 the denoised estimate: posterior mean
    sqrt(abar') beta / (1 - abar) x_0 + sqrt(alpha) (1 - abar') / (1 - abar) x_n, with
    alpha = abar / abar' and beta = 1 - alpha, and variance (1 - abar') / (1 - abar) beta."""
    op, levels = _exact(eta=1.0, steps=10)
    s = torch.randn(500, 2, generator=_gen(3), dtype=F64)
    n, n_prev = int(levels[5]), int(levels[4])
    step = op(s, float(n))
    a, a_prev = op.alphas_bar[n], op.alphas_bar[n_prev]
    alpha, beta = a / a_prev, 1 - a / a_prev
    eps = op.predict_eps(s, n)
    x0 = (s - (1 - a).sqrt() * eps) / a.sqrt()
    mean = a_prev.sqrt() * beta / (1 - a) * x0 + alpha.sqrt() * (1 - a_prev) / (1 - a) * s
    torch.testing.assert_close(step.mean, mean)
    torch.testing.assert_close(step.total_var, ((1 - a_prev) / (1 - a) * beta).expand_as(s))
    last = op(s, 1.0)  # into the data: mean x0_hat, variance 1 - abar_1 = beta_1
    torch.testing.assert_close(last.total_var, (1 - op.alphas_bar[1]).expand_as(s))
    assert float(ddim_variance(a, a_prev, 0.0)) == 0.0


def test_bound_with_the_exact_denoiser_stays_below_the_exact_log_likelihood() -> None:
    """On Gaussian data the ancestral reverse kernels make a proper model: its bound is at most
    log p(x) and tightens as the chain refines, to within a nat per point on all 1,000 levels
    (the coarse 50-step chain's ancestral variances are far from the true reverse ones)."""
    x = 0.5 + 0.3 * torch.randn(500, 2, generator=_gen(4), dtype=F64)
    exact = (-0.5 * (math.log(2 * math.pi * 0.09) + (x - 0.5).square() / 0.09)).sum(1)
    gaps = []
    for steps in (50, 1000):
        op, levels = _exact(steps=steps)
        heating = FixedDiffusionHeating(grid_betas(op.alphas_bar, levels))
        r = variational_bound(op, GaussianPrior((2,)).double(), heating, levels, x, num_paths=1,
                              generator=_gen(5))
        gap = exact - r.log_bound
        stderr = float(gap.std() / math.sqrt(len(x)))
        assert float(gap.mean()) > -3 * stderr, (steps, float(gap.mean()), stderr)
        gaps.append(float(gap.mean()))
    assert gaps[1] < 1.0 < gaps[0], gaps


def test_ddpm_model_wires_the_pieces_from_the_config() -> None:
    config = apply_overrides(get_preset("mog-diffusion"), ["schedule.num_steps=12"])
    model = build_model(config)
    assert isinstance(model.operator, DiffusionOperator) and model.heating == "vp"
    assert model.active_temperatures.tolist() == sampling_levels(1000, 12).tolist()
    assert torch.equal(model.prior.mean, torch.zeros(2)) and torch.equal(model.prior.var, torch.ones(2))
    loss = denoising_loss(model.operator, torch.randn(64, 2, generator=_gen(6)), generator=_gen(7))
    assert loss.shape == (64,) and bool(torch.isfinite(loss).all())
    # MLPBackbone starts at F(s) = s: at the top level, where x_N is almost eps, the loss is small
    assert isinstance(model.operator.backbone, MLPBackbone)


@pytest.mark.parametrize(("sets", "needle"), [
    (["method=ddpm", "model.form=2017"], "model.form"),
    (["method=ddpm", "model.form=conditioned", "model.backbone=rate", "rate.hidden_units=4"],
     "model.backbone"),
    (["method=ddpm", "model.form=conditioned", "train.heating=fixed"], "train.heating"),
    (["method=ddpm", "model.form=conditioned", "diffusion.levels=10"], "schedule.num_steps"),
    (["method=ddpm", "model.form=conditioned", "diffusion.eta=2"], "diffusion.eta"),
    (["model.noise_scale=beta"], "model.noise_scale"),
    (["train.heating=fixed", "sample.start_step=3"], "sample.start_step"),
    (["train.save_minutes=1,x"], "train.save_minutes"),
])
def test_config_refuses_what_does_not_fit(sets: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        apply_overrides(get_preset("mog"), sets)


def test_fixed_arm_steps_are_measured_in_beta() -> None:
    """Under train.heating=fixed the operator's variance is c T var with beta_t = c T_t, so that
    the walk back of a fixed step (variance <= beta_t) is representable with var <= 1."""
    from walkback.schedule import fixed_diffusion_betas

    model = build_model(get_preset("mog-fixed"))
    betas = fixed_diffusion_betas(model.active_temperatures)
    c = model.operator.var_scale
    torch.testing.assert_close(c * model.active_temperatures, betas, rtol=1e-9, atol=1e-12)
    old = build_model(apply_overrides(get_preset("mog-fixed"), ["model.noise_scale=temperature"]))
    assert old.operator.var_scale == 1.0


def test_saved_fixed_runs_from_before_noise_scale_keep_their_t_scaled_operator() -> None:
    """A run saved without ``model.noise_scale`` trained the T-scaled form: loading its config
    keeps it; a config that names the key, and every preset, are taken as written."""
    from walkback.config import config_from_saved, config_to_dict

    saved = config_to_dict(get_preset("mog-fixed"))
    del saved["model"]["noise_scale"]
    assert config_from_saved(saved).model.noise_scale == "temperature"
    assert build_model(config_from_saved(saved)).operator.var_scale == 1.0
    named = config_to_dict(get_preset("mog-fixed"))
    assert config_from_saved(named).model.noise_scale == "auto"
    vw = config_to_dict(get_preset("mog"))
    del vw["model"]["noise_scale"]
    assert config_from_saved(vw).model.noise_scale == "auto"


@pytest.mark.parametrize("key", ["schedule.factor=2", "train.mode=transitions", "model.min_var=0.1",
                                 "train.objective=released"])
def test_ddpm_refuses_the_keys_it_does_not_read(key: str) -> None:
    """A key means one thing: the DDPM's forward process, loss and levels come from diffusion.*,
    so the VW keys it would ignore are refused, naming the key."""
    with pytest.raises(ConfigError, match=key.split("=")[0].replace(".", r"\.") + ": method=ddpm "
                       "does not read it"):
        apply_overrides(get_preset("mog-diffusion"), [key])


def test_a_saved_ddpm_config_with_vw_keys_loads_with_them_reset() -> None:
    """DDPM runs saved before the keys were refused carry the VW preset's values (unread)."""
    from walkback.config import config_from_saved, config_to_dict

    tree = config_to_dict(get_preset("mog-diffusion"))
    tree["schedule"]["factor"], tree["train"]["mode"] = 1.2, "accumulate"
    loaded = config_from_saved(tree)
    assert loaded.schedule.factor == 1.1 and loaded.train.mode == "online"
    assert config_to_dict(loaded) == config_to_dict(get_preset("mog-diffusion"))


@pytest.mark.parametrize("data", ["mnist", "cifar10", "celeba32"])
def test_the_image_ddpm_checkpoints_and_logs_as_often_per_update_as_vw(data: str) -> None:
    """An equal-minutes arm's clock includes its checkpoint writes: a VW minibatch makes
    K x batch_size / transition_batch updates (30 on the U-Net presets), a DDPM minibatch one, so
    the DDPM writes one checkpoint per as many updates as VW does, not 30 times as many."""
    vw, ddpm = get_preset(data), get_preset(f"{data}-diffusion")
    assert vw.train.mode == "transitions" and ddpm.method == "ddpm"
    updates = vw.schedule.num_steps * vw.train.batch_size // vw.train.transition_batch
    assert updates == 30
    assert ddpm.train.checkpoint_every == 30 * vw.train.checkpoint_every == 3000
    assert ddpm.train.log_every == 30 * vw.train.log_every
