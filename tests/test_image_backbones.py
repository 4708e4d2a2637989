"""Image backbones (U-Net, 2017 conv net): shapes, initialisation, gradient flow, independence."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from walkback.models import Conv2017Backbone, UNetBackbone
from walkback.transition import GaussianStep, TransitionOperator

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
COND_DIM = 8


def tiny_unet(shape: tuple[int, int, int], cond_dim: int = 0, **kw: object) -> UNetBackbone:
    """Two levels, one block each, attention at the lower level; groups < channels."""
    options: dict = dict(channels=16, channel_mults=(1, 2), num_res_blocks=1, groups=4,
                         attention_resolutions=(shape[1] // 2,), cond_dim=cond_dim)
    return UNetBackbone(shape, **{**options, **kw})


def tiny_conv2017(shape: tuple[int, int, int], cond_dim: int = 0, **kw: object) -> Conv2017Backbone:
    options: dict = dict(num_steps=5, enc_channels=(8, 16, 32), mlp_hidden=32, mlp_depth=2,
                         cond_dim=cond_dim)
    return Conv2017Backbone(shape, **{**options, **kw})


FACTORIES: dict[str, Callable[..., nn.Module]] = {"unet": tiny_unet, "conv2017": tiny_conv2017}


def _inputs(shape: tuple[int, ...], cond_dim: int, batch: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, *shape, generator=gen)
    cond = torch.randn(batch, cond_dim, generator=gen) if cond_dim else None
    return s, cond


def _perturb(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add noise to every parameter: non-zero heads, distinct per-step sets."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cond_dim", [0, COND_DIM])
def test_output_shapes(name: str, shape: tuple[int, int, int], cond_dim: int) -> None:
    torch.manual_seed(0)
    net = FACTORIES[name](shape, cond_dim)
    s, cond = _inputs(shape, cond_dim, batch=2)
    f, g = net(s, cond)
    assert f.shape == s.shape and g.shape == s.shape


def test_unet_pads_28_when_levels_need_it() -> None:
    net = UNetBackbone((1, 28, 28), channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1,
                       groups=4)
    assert net.multiple == 8
    s, _ = _inputs((1, 28, 28), 0, batch=2)
    f, g = _perturb(net)(s)
    assert f.shape == g.shape == s.shape


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("cond_dim", [0, COND_DIM])
def test_identity_mean_and_constant_variance_at_init(name: str, cond_dim: int) -> None:
    torch.manual_seed(1)
    shape = (1, 28, 28)
    net = FACTORIES[name](shape, cond_dim, init_var=0.05)
    s, cond = _inputs(shape, cond_dim)
    f, g = net(s, cond)
    torch.testing.assert_close(f, s, rtol=0, atol=0)
    torch.testing.assert_close(F.softplus(g), torch.full_like(g, 0.05), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("cond_dim", [0, COND_DIM])
def test_gradients_reach_every_parameter(name: str, cond_dim: int) -> None:
    torch.manual_seed(2)
    shape = (3, 32, 32)
    net = _perturb(FACTORIES[name](shape, cond_dim), seed=3)
    s, cond = _inputs(shape, cond_dim)
    target = torch.randn_like(s)
    f, g = net(s, cond)
    ((f - target).square().mean() + (g - target).square().mean()).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", FACTORIES)
def test_heads_get_gradients_at_init(name: str) -> None:
    torch.manual_seed(4)
    shape = (1, 28, 28)
    net = FACTORIES[name](shape, COND_DIM)
    s, cond = _inputs(shape, COND_DIM)
    target = torch.randn_like(s)
    f, g = net(s, cond)
    ((f - target).square().mean() + (g - target).square().mean()).backward()
    heads = [net.head_r[-1], net.head_g[-1]] if name == "unet" else [net.out_r, net.out_g]
    for head in heads:
        assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FACTORIES)
def test_conditioned_output_depends_on_cond_after_a_step(name: str) -> None:
    torch.manual_seed(5)
    shape = (3, 32, 32)
    net = FACTORIES[name](shape, COND_DIM)
    s, cond = _inputs(shape, COND_DIM)
    # At init F = s and G is constant whatever cond is; one training step breaks that.
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    f, g = net(s, cond)
    target = torch.randn_like(s)
    ((f - target).square().mean() + (g - target).square().mean()).backward()
    opt.step()
    _perturb(net, seed=6, scale=0.05)  # distinct per-step sets, so the soft lookup matters
    with torch.no_grad():
        f1, g1 = net(s, cond)
        f2, g2 = net(s, torch.randn_like(cond))
    assert (f1 - f2).abs().max() > 1e-4 and (g1 - g2).abs().max() > 1e-4


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("cond_dim", [0, COND_DIM])
def test_samples_do_not_depend_on_batch_mates(name: str, cond_dim: int) -> None:
    """The anti-BatchNorm property, checked in training mode (where BatchNorm uses batch stats)."""
    torch.manual_seed(7)
    shape = (1, 28, 28)
    net = _perturb(FACTORIES[name](shape, cond_dim), seed=8).train()
    s, cond = _inputs(shape, cond_dim, batch=4, seed=9)
    other, other_cond = _inputs(shape, cond_dim, batch=4, seed=10)
    s2 = torch.cat([s[:1], 5 * other[1:]])
    cond2 = None if cond is None else torch.cat([cond[:1], other_cond[1:]])
    with torch.no_grad():
        f, g = net(s, cond)
        f2, g2 = net(s2, cond2)
        f1, g1 = net(s[:1], None if cond is None else cond[:1])
    for a, b in ((f[0], f2[0]), (g[0], g2[0]), (f[0], f1[0]), (g[0], g1[0])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FACTORIES)
def test_deterministic_in_eval_mode(name: str) -> None:
    torch.manual_seed(11)
    shape = (3, 32, 32)
    kw = {"dropout": 0.3} if name == "unet" else {}
    net = _perturb(FACTORIES[name](shape, COND_DIM, **kw), seed=12).eval()
    s, cond = _inputs(shape, COND_DIM)
    with torch.no_grad():
        first, second = net(s, cond), net(s, cond)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("form", ["2017", "conditioned"])
def test_transition_operator_around_image_backbone(name: str, form: str) -> None:
    torch.manual_seed(13)
    shape = (1, 28, 28)
    cond_dim = COND_DIM if form == "conditioned" else 0
    net = _perturb(FACTORIES[name](shape, cond_dim), seed=14)
    op = TransitionOperator(net, shape, form=form, cond_dim=COND_DIM)
    s, _ = _inputs(shape, 0)
    with torch.no_grad():
        step = op(s, 4.0)
        s_next = step.sample(generator=torch.Generator().manual_seed(0))
    assert isinstance(step, GaussianStep)
    assert step.mean.shape == step.var.shape == s.shape == s_next.shape
    assert (step.var > 0).all() and torch.isfinite(step.log_prob(s_next)).all()
    assert step.log_prob(s_next).shape == (s.shape[0],)
    torch.testing.assert_close(step.total_var, 4.0 * step.var)


@pytest.mark.parametrize("name", FACTORIES)
def test_cond_mismatch_is_an_error(name: str) -> None:
    shape = (1, 28, 28)
    s, cond = _inputs(shape, COND_DIM)
    with pytest.raises(ValueError):
        FACTORIES[name](shape, 0)(s, cond)
    with pytest.raises(ValueError):
        FACTORIES[name](shape, COND_DIM)(s, None)


def test_conv2017_soft_step_lookup() -> None:
    shape = (3, 32, 32)
    conditioned, blind = tiny_conv2017(shape, COND_DIM), tiny_conv2017(shape, 0)
    _, cond = _inputs(shape, COND_DIM)
    weights = conditioned.step_weights(cond)
    assert weights.shape == (3, 5)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert conditioned.encoder[0].norm.scale.shape == (5, 8)
    assert blind.step_weights(None) is None and blind.encoder[0].norm.scale.shape == (1, 8)


def test_conv2017_defaults_are_the_2017_architecture() -> None:
    net = Conv2017Backbone((3, 32, 32), num_steps=2)
    convs = [layer.op for layer in net.encoder]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (5, 5), (2, 2)), (64, 128, (5, 5), (2, 2)), (128, 256, (5, 5), (2, 2))]
    widths = [net.mlp[0].op.in_features] + [layer.op.out_features for layer in net.mlp]
    assert widths == [4096, 2048, 2048, 2048, 2048, 4096]
    deconvs = [layer.op for layer in net.head_r] + [net.out_r]
    assert [(d.in_channels, d.out_channels) for d in deconvs] == [(256, 128), (128, 64), (64, 3)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_unet_default_size() -> None:
    """About 6M parameters at the defaults (CIFAR, conditioned); no BatchNorm anywhere."""
    net = UNetBackbone((3, 32, 32), cond_dim=32)
    count = sum(p.numel() for p in net.parameters())
    assert 5e6 < count < 8e6
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
