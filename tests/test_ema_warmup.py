"""The EMA's warm-up (``train.ema_warmup``): the decay's closed form, the average it gives inside
the training step, and the count of updates kept by checkpoints (resume: tests/test_train.py)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from walkback import get_preset
from walkback.checkpoint import latest_checkpoint, load_checkpoint
from walkback.config import apply_overrides
from walkback.model import build_model
from walkback.train import _FiniteGuard, _update, ema_decay, train


def test_the_decay_rises_from_a_tenth_to_train_ema() -> None:
    assert ema_decay(0, 0.999, warmup=True) == pytest.approx(0.1)
    assert ema_decay(90, 0.999, warmup=True) == pytest.approx(0.91)
    assert ema_decay(8990, 0.999, warmup=True) == pytest.approx(0.999)  # (1+n)/(10+n) = 0.999
    assert ema_decay(8000, 0.999, warmup=True) < 0.999
    assert ema_decay(10**6, 0.999, warmup=True) == 0.999
    assert all(ema_decay(n, 0.999, warmup=False) == 0.999 for n in (0, 5, 10**6))
    decays = [ema_decay(n, 0.999, warmup=True) for n in range(20000)]
    assert all(a <= b for a, b in zip(decays, decays[1:]))  # never falls


def test_the_initial_weights_share_of_the_average() -> None:
    """The initial weights keep prod_k d_k of the average: 0.999^1000 (about 0.37) without the
    warm-up and 9! n! / (n + 9)! with it (1.3e-21 after 1,000 updates)."""
    n = 1000
    plain = math.prod(ema_decay(k, 0.999, warmup=False) for k in range(n))
    warm = math.prod(ema_decay(k, 0.999, warmup=True) for k in range(n))
    assert plain == pytest.approx(0.999 ** n) and 0.36 < plain < 0.38
    assert warm == pytest.approx(math.factorial(9) * math.factorial(n) / math.factorial(n + 9))
    assert warm < 1e-20


@pytest.mark.parametrize("warmup", [False, True])
def test_the_training_step_averages_with_the_decay_of_its_update(warmup: bool) -> None:
    """``_update``: after each optimizer step the EMA is d_n * EMA + (1 - d_n) * weights, with the
    update count n carried in the optimizer's param group."""
    config = apply_overrides(get_preset("mog"), ["mlp.hidden=8", "train.ema=0.9",
                                                 f"train.ema_warmup={str(warmup).lower()}"])
    torch.manual_seed(0)
    model = build_model(config)
    ema = copy.deepcopy(model).requires_grad_(False)  # as train() makes it
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    expected = [p.detach().clone() for p in ema.parameters()]
    x = torch.randn(32, 2)
    for n in range(5):
        loss = model.operator(x, 1.0).mean.square().mean()
        _update(model, ema, opt, loss, config, _FiniteGuard(), f"update {n}")
        d = ema_decay(n, 0.9, warmup)
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
        assert opt.param_groups[0]["updates"] == n + 1
        for e, p in zip(expected, ema.parameters()):
            torch.testing.assert_close(p, e)


def test_the_count_of_updates_is_in_the_checkpoint(tmp_path: Path) -> None:
    """One update per heating step in online mode: 4 minibatches of K = 5 steps are 20 updates."""
    config = apply_overrides(get_preset("mog"), [
        "mlp.hidden=8", "data.num_train=400", "data.num_heldout=100", "schedule.num_steps=5",
        "train.batch_size=100", "train.steps=4", "train.mode=online", "train.ema_warmup=true",
        "train.device=cpu", "train.checkpoint_every=4"])
    train(config, tmp_path, progress=False)
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert ckpt.meta["optimizer"]["param_groups"][0]["updates"] == 20
