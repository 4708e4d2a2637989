"""Transition operator: Gaussian log-density, variance linear in T, sampling statistics, seeds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from walkback.models import LinearGaussianBackbone, MLPBackbone
from walkback.transition import GaussianStep, TransitionOperator

DIM = 3


def _randomize_head(backbone: MLPBackbone, seed: int) -> MLPBackbone:
    """The MLP head starts at zero (identity mean, constant variance); make it non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        backbone.head.weight.copy_(0.5 * torch.randn(backbone.head.weight.shape, generator=gen))
        backbone.head.bias.copy_(0.3 * torch.randn(backbone.head.bias.shape, generator=gen))
    return backbone


def _operator(form: str, seed: int = 0) -> TransitionOperator:
    torch.manual_seed(seed)
    cond_dim = 16 if form == "conditioned" else 0
    backbone = _randomize_head(MLPBackbone((DIM,), hidden=32, depth=2, cond_dim=cond_dim), seed)
    return TransitionOperator(backbone, (DIM,), form=form, alpha=0.5, cond_dim=16)


@pytest.mark.parametrize("form", ["2017", "conditioned"])
@pytest.mark.parametrize("temperature", [1.0, 2.5, 40.0])
def test_log_prob_matches_torch_normal(form: str, temperature: float) -> None:
    op = _operator(form)
    gen = torch.Generator().manual_seed(1)
    s, x = torch.randn(64, DIM, generator=gen), torch.randn(64, DIM, generator=gen)
    with torch.no_grad():
        step = op(s, temperature)
        expected = torch.distributions.Normal(step.mean, (temperature * step.var).sqrt()).log_prob(x).sum(-1)
        torch.testing.assert_close(step.log_prob(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(op.log_prob(x, s, temperature), expected, rtol=1e-5, atol=1e-5)
    assert step.log_prob(x).shape == (64,)


def test_log_prob_with_per_example_temperature() -> None:
    mean, var = torch.randn(5, DIM), torch.rand(5, DIM) + 0.1
    temps = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    x = torch.randn(5, DIM)
    step = GaussianStep(mean, var, temps)
    expected = torch.distributions.Normal(mean, (temps[:, None] * var).sqrt()).log_prob(x).sum(-1)
    torch.testing.assert_close(step.log_prob(x), expected, rtol=1e-5, atol=1e-5)


def test_2017_form_total_variance_is_linear_in_temperature() -> None:
    op = _operator("2017")
    s = torch.randn(32, DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        at1, at3 = op(s, 1.0), op(s, 3.0)
    assert at1.var.std() > 0  # the variance does depend on s: a non-trivial check
    torch.testing.assert_close(at3.total_var, 3 * at1.total_var, rtol=1e-6, atol=0)
    torch.testing.assert_close(at1.total_var, at1.var, rtol=0, atol=0)


def test_conditioned_form_log_prob_uses_t_times_var_at_t() -> None:
    op = _operator("conditioned")
    gen = torch.Generator().manual_seed(3)
    s, x = torch.randn(16, DIM, generator=gen), torch.randn(16, DIM, generator=gen)
    with torch.no_grad():
        at1, at3 = op(s, 1.0), op(s, 3.0)
        # the network sees T: its variance changes with T (so T * var(s, T) is not 3 * var(s, 1))
        assert not torch.allclose(at3.var, at1.var)
        manual = -0.5 * (math.log(2 * math.pi) + (3 * at3.var).log() + (x - at3.mean) ** 2 / (3 * at3.var))
        torch.testing.assert_close(op.log_prob(x, s, 3.0), manual.sum(-1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(at3.total_var, 3 * at3.var, rtol=1e-6, atol=0)


class _Recorder(nn.Module):
    """Wraps a backbone and records the ``cond`` it is given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.conds: list[torch.Tensor | None] = []

    def forward(self, s: torch.Tensor, cond: torch.Tensor | None = None):
        self.conds.append(cond)
        return self.inner(s, cond)


def test_2017_form_backbone_is_blind_to_temperature() -> None:
    recorder = _Recorder(_randomize_head(MLPBackbone((DIM,), hidden=32, depth=2, cond_dim=16), 4))
    op = TransitionOperator(recorder, (DIM,), form="2017", cond_dim=16)
    s = torch.randn(8, DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        steps = [op(s, t) for t in (1.0, 7.0, 300.0)]
    assert recorder.conds == [None, None, None]
    for step in steps[1:]:
        assert torch.equal(step.mean, steps[0].mean) and torch.equal(step.var, steps[0].var)
    # the conditioned form passes an embedding of log T that changes with T
    recorder.conds.clear()
    op_c = TransitionOperator(recorder, (DIM,), form="conditioned", cond_dim=16)
    with torch.no_grad():
        op_c(s, 1.0), op_c(s, 7.0)
    assert all(c is not None and c.shape == (8, 16) for c in recorder.conds)
    assert not torch.allclose(recorder.conds[0], recorder.conds[1])


@pytest.mark.parametrize("form", ["2017", "conditioned"])
def test_sample_same_seed_is_identical(form: str) -> None:
    op = _operator(form)
    s = torch.randn(50, DIM, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = op.sample(s, 2.0, generator=torch.Generator().manual_seed(11))
        b = op.sample(s, 2.0, generator=torch.Generator().manual_seed(11))
        c = op.sample(s, 2.0, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("form", ["2017", "conditioned"])
def test_sample_moments_match_mean_and_t_var(form: str) -> None:
    op = _operator(form)
    n, temperature = 200_000, 2.5
    s = torch.randn(1, DIM, generator=torch.Generator().manual_seed(7)).expand(n, DIM)
    with torch.no_grad():
        step = op(s, temperature)
        draws = step.sample(generator=torch.Generator().manual_seed(8))
    mean, total = step.mean[0], temperature * step.var[0]
    se_mean = (total / n).sqrt()
    se_var = total * math.sqrt(2 / (n - 1))  # Gaussian: Var(sample var) = 2 sigma^4 / (n - 1)
    assert bool(((draws.mean(0) - mean).abs() < 5 * se_mean).all())
    assert bool(((draws.var(0) - total).abs() < 5 * se_var).all())


def test_linear_backbone_gives_exact_linear_gaussian_operator() -> None:
    w = torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.9, 0.0], [-0.4, 0.2, 0.7]], dtype=torch.float64)
    b = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64)
    var = torch.tensor([0.02, 0.5, 3.0], dtype=torch.float64)
    backbone = LinearGaussianBackbone(DIM, weight=w, bias=b, log_var=var.log(), dtype=torch.float64)
    torch.testing.assert_close(backbone.variance, var, rtol=1e-12, atol=0)
    op = TransitionOperator(backbone, (DIM,), form="2017", alpha=0.3, min_var=0.0)
    s = torch.randn(10, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        step = op(s, 4.0)
    matrix = 0.3 * torch.eye(DIM, dtype=torch.float64) + 0.7 * w
    torch.testing.assert_close(step.mean, s @ matrix.T + 0.7 * b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(step.total_var, 4.0 * var.expand(10, DIM), rtol=1e-12, atol=0)
    assert len(list(backbone.parameters())) == 3 and all(p.requires_grad for p in backbone.parameters())
    with pytest.raises(ValueError):
        LinearGaussianBackbone(DIM, weight=torch.eye(2))


def test_float64_operator_keeps_the_temperature_in_float64() -> None:
    backbone = LinearGaussianBackbone(2, dtype=torch.float64)  # unit variance
    op = TransitionOperator(backbone, (2,), form="2017", min_var=0.0)
    temperature = 1.1**29  # not representable in float32
    with torch.no_grad():
        step = op(torch.zeros(1, 2, dtype=torch.float64), temperature)
    assert float(step.total_var[0, 0]) == pytest.approx(temperature, rel=1e-14, abs=0)


def test_conditioned_operator_runs_in_float64() -> None:
    op = _operator("conditioned").double()
    s = torch.randn(4, DIM, dtype=torch.float64)
    with torch.no_grad():
        step = op(s, 2.0)
    assert step.mean.dtype == torch.float64 and step.var.dtype == torch.float64


@pytest.mark.parametrize("temperature", [1.0, 250.0])
def test_noise_scaled_mean_moves_by_the_residual_in_noise_units(temperature: float) -> None:
    """mean_scale="noise": mean = s + (1 - alpha) sqrt(T var) (F - s), per example and dimension,
    with the same variance as the plain form; per-example temperatures broadcast."""
    torch.manual_seed(0)
    backbone = _randomize_head(MLPBackbone((DIM,), hidden=32, depth=2, cond_dim=16), 0)
    op = TransitionOperator(backbone, (DIM,), form="conditioned", alpha=0.25, cond_dim=16,
                            mean_scale="noise")
    plain = TransitionOperator(backbone, (DIM,), form="conditioned", alpha=0.25, cond_dim=16)
    s = torch.randn(8, DIM, generator=torch.Generator().manual_seed(1))
    temps = torch.full((8,), temperature)
    with torch.no_grad():
        step, ref = op(s, temps), plain(s, temps)
        f = (ref.mean - 0.25 * s) / 0.75  # the backbone's F, recovered from the plain form
        expected = s + 0.75 * (temperature * ref.var).sqrt() * (f - s)
        torch.testing.assert_close(step.mean, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(step.var, ref.var)


def test_unknown_mean_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="mean_scale"):
        TransitionOperator(nn.Identity(), (DIM,), mean_scale="bogus")


class _OptimalDenoiser(nn.Module):
    """For data ``x ~ N(0, sd2 I)`` heated to ``s = x + sigma eps``: ``E[x | s] = sd2 / (sd2 +
    sigma^2) s``, computed from the scaled input the operator gives it (``c_in s`` with
    ``c_in = (sd2 + sigma^2)^(-1/2)``). The test sets ``sigma2``; the variance head is
    constant."""

    def __init__(self, sd2: float) -> None:
        super().__init__()
        self.sd2, self.sigma2 = sd2, 0.0

    def forward(self, s_in: torch.Tensor, cond: torch.Tensor | None):
        total = self.sd2 + self.sigma2
        return self.sd2 / total * math.sqrt(total) * s_in, torch.zeros_like(s_in)


def test_denoising_form_gives_the_exact_posterior_mean_for_gaussian_data() -> None:
    """Closed form: heating steps of variance c T_j on N(0, sd2) data, recorded as the heating
    noise, the optimal denoiser, and lambda(T_t) = T_t / sum_{j <= t} T_j give
    E[s_{t-1} | s_t] = s_t (sd2 + sigma_{t-1}^2) / (sd2 + sigma_t^2), sigma_t^2 = c sum_{j <= t}
    T_j, at every step."""
    dim, sd2, c = 64, 0.3, 0.05
    temps = torch.tensor([1.0, 1.5, 2.25, 3.375, 5.0625], dtype=torch.float64)
    backbone = _OptimalDenoiser(sd2)
    op = TransitionOperator(backbone, (dim,), form="2017", mean_scale="denoise",
                            temperatures=temps, min_var=1e-6).double()
    op.data_square.fill_(sd2)
    op.record_heating(c * temps, momentum=0.9)  # the first path is taken whole
    gen = torch.Generator().manual_seed(0)
    x = math.sqrt(sd2) * torch.randn(4, dim, generator=gen, dtype=torch.float64)
    for t in range(len(temps)):
        sigma2 = c * float(temps[: t + 1].sum())
        before = c * float(temps[:t].sum())
        backbone.sigma2 = sigma2
        s = x + math.sqrt(sigma2) * torch.randn(4, dim, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            mean = op(s, float(temps[t])).mean
        torch.testing.assert_close(mean, s * (sd2 + before) / (sd2 + sigma2))
        assert float(op.input_scale(temps[t])) == pytest.approx((sd2 + sigma2) ** -0.5)
        assert float(op.denoise_weight(temps[t])) == pytest.approx(
            float(temps[t] / temps[: t + 1].sum()))
    assert float(op.denoise_weight(torch.tensor(1.0, dtype=torch.float64))) == 1.0


def test_heating_noise_is_recorded_with_momentum_and_scales_the_input() -> None:
    """``record_heating``: the first path whole, then a moving average; a shorter path (the
    heating stopped early) leaves the later steps as they were. The backbone sees ``c_in(T) s``
    per example, ``clip`` clamps D while sampling (eval mode), not in training."""
    seen = {}

    class Far(nn.Module):
        def forward(self, s_in, cond):
            seen["s_in"] = s_in
            return 5 * torch.ones_like(s_in), torch.zeros_like(s_in)

    temps = torch.tensor([1.0, 2.0, 4.0])
    op = TransitionOperator(Far(), (DIM,), form="conditioned", cond_dim=16, mean_scale="denoise",
                            temperatures=temps, clip=1.0)
    op.record_heating(torch.tensor([1.0, 2.0, 4.0]), momentum=0.5)
    op.record_heating(torch.tensor([3.0, 4.0]), momentum=0.5)
    torch.testing.assert_close(op.heat_noise, torch.tensor([2.0, 3.0, 4.0]))
    s = 30 * torch.randn(6, DIM, generator=torch.Generator().manual_seed(2))
    lam = 4.0 / 7.0
    train_mean = op.train()(s, 4.0).mean
    torch.testing.assert_close(seen["s_in"], s / math.sqrt(1 + 9.0))  # data_square 1 + 2 + 3 + 4
    torch.testing.assert_close(train_mean, s + lam * (5 - s))
    torch.testing.assert_close(op.eval()(s, 4.0).mean, s + lam * (1 - s))
    per_example = torch.tensor([1.0, 2.0, 4.0, 4.0, 2.0, 1.0])
    lams = torch.tensor([1.0, 2 / 3, lam, lam, 2 / 3, 1.0])[:, None]
    torch.testing.assert_close(op.eval()(s, per_example).mean, s + lams * (1 - s))
    scales = torch.tensor([3.0, 6.0, 10.0, 10.0, 6.0, 3.0]).rsqrt()[:, None]
    torch.testing.assert_close(seen["s_in"], s * scales)
    with pytest.raises(ValueError, match="temperatures"):
        TransitionOperator(Far(), (DIM,), mean_scale="denoise")
