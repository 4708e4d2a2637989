"""Config: typed overrides, unknown keys and wrong types rejected, choices, round trips, presets."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import OLD_MODEL_KEYS, old_layout

from walkback.config import (
    Config, ModelConfig, RateConfig, apply_overrides, config_from_dict, config_from_saved,
    config_to_dict, config_to_json,
)
from walkback.errors import ConfigError
from walkback.model import build_model
from walkback.presets import PRESETS, get_preset
from walkback.schedule import heating_temperatures


def test_overrides_parse_int_float_str() -> None:
    config = apply_overrides(Config(), ["train.steps=7", "train.lr=0.01", "data.name=spiral",
                                        "schedule.factor=2", "model.form=2017"])
    assert config.train.steps == 7 and type(config.train.steps) is int
    assert config.train.lr == 0.01 and type(config.train.lr) is float
    assert config.schedule.factor == 2.0 and type(config.schedule.factor) is float
    assert config.data.name == "spiral" and config.model.form == "2017"
    assert type(config.model.form) is str
    assert Config().train.steps != 7  # defaults untouched (no shared mutable state)


def test_override_value_may_contain_equals_sign_and_spaces() -> None:
    config = apply_overrides(Config(), [" train.lr = 1e-4 "])
    assert config.train.lr == 1e-4


@pytest.mark.parametrize("key", ["train.foo", "nosuch.lr", "train", "train.lr.x", "seed.x", "foo"])
def test_unknown_key_raises_naming_it(key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), [f"{key}=1"])


@pytest.mark.parametrize("item", ["train.steps=1.5", "train.steps=abc", "train.lr=fast", "seed=x"])
def test_wrong_type_raises(item: str) -> None:
    key = item.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), [item])


def test_override_without_equals_sign_raises() -> None:
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides(Config(), ["train.steps"])


@pytest.mark.parametrize(
    ("item", "key"),
    [("train.objective=foo", "train.objective"), ("model.form=2018", "model.form"),
     ("train.mode=sometimes", "train.mode"), ("train.heating=none", "train.heating")],
)
def test_choices_are_validated(item: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), [item])


@pytest.mark.parametrize(
    ("item", "key"),
    [("train.steps=0", "train.steps"), ("schedule.num_steps=-1", "schedule.num_steps"),
     ("model.alpha=1.0", "model.alpha"), ("schedule.n1=99", "schedule.n1")],
)
def test_ranges_are_validated(item: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), [item])


@pytest.mark.parametrize("mode", ["online", "transitions"])
def test_bound_objective_needs_the_accumulate_mode(mode: str) -> None:
    with pytest.raises(ConfigError, match=r"train\.objective: 'bound' needs train\.mode=accumulate"):
        apply_overrides(Config(), ["train.objective=bound", f"train.mode={mode}"])
    apply_overrides(Config(), ["train.objective=bound", "train.mode=accumulate"])


def test_bound_objective_is_refused_for_the_rate_network() -> None:
    with pytest.raises(ConfigError, match=r"train\.objective: 'bound' is a bound on log p\(v, h\)"):
        apply_overrides(get_preset("mog-rate"), ["train.objective=bound"])


def test_hidden_weight_needs_hidden_units_and_is_non_negative() -> None:
    with pytest.raises(ConfigError, match=r"train\.hidden_weight: needs hidden units"):
        apply_overrides(get_preset("mog"), ["train.hidden_weight=0"])
    with pytest.raises(ConfigError, match=r"train\.hidden_weight: must be in \[0, inf\) and finite, got -1"):
        apply_overrides(get_preset("mog-rate"), ["train.hidden_weight=-1"])
    assert apply_overrides(get_preset("mog-rate"), ["train.hidden_weight=0"]).train.hidden_weight == 0


def test_round_trip_through_dict_and_json() -> None:
    config = apply_overrides(Config(), ["train.lr=3e-4", "seed=5", "data.name=circle",
                                        "schedule.max_variance=0.5", "model.form=2017"])
    tree = config_to_dict(config)
    assert config_from_dict(tree) == config
    assert config_from_dict(json.loads(config_to_json(config))) == config
    assert config_from_dict(tree) != Config()


def test_from_dict_rejects_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match=r"train\.bogus"):
        config_from_dict({"train": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"train\.steps"):
        config_from_dict({"train": {"steps": "ten"}})
    with pytest.raises(ConfigError, match=r"train\.steps"):
        config_from_dict({"train": {"steps": 2.5}})
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0  # an int is accepted for a float


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves(name: str) -> None:
    config = get_preset(name)
    assert isinstance(config, Config) and config.preset == name
    assert config_from_dict(config_to_dict(config)) == config


def test_unknown_preset_raises() -> None:
    with pytest.raises(ConfigError, match="no-such-preset"):
        get_preset("no-such-preset")


def _numeric_defaults() -> dict[str, int | float]:
    from walkback.config import _flatten

    flat = _flatten(config_to_dict(Config()))
    return {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_every_numeric_key_has_its_range_in_the_table() -> None:
    from walkback.config import RANGES

    assert set(RANGES) == set(_numeric_defaults())


def _range_error(key: str, value) -> str | None:
    """The range error ``--set key=value`` raises for ``key`` (None: no range error for it)."""
    try:
        apply_overrides(Config(), [f"{key}={value}"])
    except ConfigError as exc:
        return str(exc) if str(exc).startswith(f"config key {key}: must be in") else None
    return None


@pytest.mark.parametrize("key", sorted(_numeric_defaults()))
def test_every_numeric_key_is_refused_beyond_its_bounds_and_accepted_at_included_ones(key: str) -> None:
    import math

    from walkback.config import RANGES

    low, high, low_in, high_in = RANGES[key]
    is_int = type(_numeric_defaults()[key]) is int

    def beyond(bound: float, direction: float):
        return int(bound + direction) if is_int else math.nextafter(bound, direction * math.inf)

    def at(bound: float):
        return int(bound) if is_int else float(bound)

    message = _range_error(key, beyond(low, -1))
    assert message is not None and str(beyond(low, -1)) in message
    assert (_range_error(key, at(low)) is None) == low_in
    if math.isfinite(high):
        assert _range_error(key, beyond(high, 1)) is not None
        assert (_range_error(key, at(high)) is None) == high_in
    if not is_int:
        assert _range_error(key, "nan") is not None and _range_error(key, "inf") is not None


@pytest.mark.parametrize("item", ["train.ema=2", "train.ema=-1", "train.grad_clip=-1",
                                  "train.prior_momentum=5", "schedule.max_variance=-1",
                                  "train.keep_checkpoints=0", "train.keep_checkpoints=-3",
                                  "unet.dropout=2", "train.time_limit_s=-1", "model.init_var=-1",
                                  "model.min_var=-1", "schedule.t0=inf", "train.lr=-1"])
def test_out_of_range_values_name_the_key_value_and_range(item: str) -> None:
    key, value = item.split("=")
    with pytest.raises(ConfigError, match=rf"config key {key}: must be in [\[(].*got {value}"):
        apply_overrides(get_preset("mog"), [item])


# ---------------------------------------------------------------- the backbones' own sections


def test_an_old_model_key_is_refused_in_one_line_naming_its_new_place() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(Config(), ["model.hidden=64"])
    assert str(caught.value) == "config key model.hidden: moved to mlp.hidden"
    with pytest.raises(ConfigError, match=r"^config key model\.rate_gain: moved to rate\.gain$"):
        config_from_dict({"model": {"rate_gain": 1.5}})  # a config file, as --set


@pytest.mark.parametrize("old", sorted(OLD_MODEL_KEYS.values()))
def test_every_moved_key_names_the_key_it_became(old: str) -> None:
    new = next(k for k, v in OLD_MODEL_KEYS.items() if v == old)
    with pytest.raises(ConfigError, match=rf"^config key model\.{old}: moved to {re.escape(new)}$"):
        apply_overrides(get_preset("mog-rate"), [f"model.{old}=1"])
    section, leaf = new.split(".")
    assert hasattr(getattr(Config(), section), leaf)


def test_the_rate_networks_leak_is_rate_leak_not_model_alpha() -> None:
    config = apply_overrides(get_preset("mog-rate"), ["rate.leak=0.3"])
    model = build_model(config)
    assert model.operator.alpha == pytest.approx(0.7) and model.operator.backbone.leak == 0.3
    with pytest.raises(ConfigError, match=r"^config key model\.alpha: not used by "
                                          r"model\.backbone=rate.*rate\.leak$"):
        apply_overrides(get_preset("mog-rate"), ["model.alpha=0.3"])
    with pytest.raises(ConfigError, match=r"config key rate\.leak: must be in \(0, 1\)"):
        apply_overrides(get_preset("mog-rate"), ["rate.leak=1"])
    # the neural backbones' mixing weight is model.alpha, whatever rate.leak says
    mlp = apply_overrides(get_preset("mog"), ["model.alpha=0.3", "rate.leak=0.9"])
    assert build_model(mlp).operator.alpha == 0.3


def test_max_file_mb_is_gone() -> None:
    """Files are written whole: ``train.max_file_mb`` is an unknown key in a config or ``--set``
    (config_from_saved drops it from saved runs)."""
    with pytest.raises(ConfigError, match=r"^unknown config key: train\.max_file_mb$"):
        apply_overrides(Config(), ["train.max_file_mb=15"])
    with pytest.raises(ConfigError, match=r"^unknown config key: train\.max_file_mb$"):
        config_from_dict({"train": {"max_file_mb": 15.0}})
    assert config_from_saved({"train": {"max_file_mb": 15.0, "steps": 7}}).train.steps == 7


# The parameter count of every preset's network, as it was when the backbones' keys were in
# ``model`` (and since): a preset whose network changes shows here.
PRESET_PARAMETERS = {
    "celeba32": 6611334, "celeba32-diffusion": 6611334, "celeba32-fixed": 6611334,
    "celeba32-tuned": 6611334, "celeba64": 9255686, "checkerboard": 33924, "cifar10": 6611334,
    "cifar10-diffusion": 6611334, "cifar10-fixed": 6611334, "cifar10-paper": 32485894,
    "cifar10-tuned": 6611334, "circle": 33924, "mnist": 6607874,
    "mnist-diffusion": 6607874, "mnist-fixed": 6607874, "mnist-paper": 5707568,
    "mnist-rate": 1083680, "mnist-rate-sym": 1083680, "mnist-tuned": 6607874, "mog": 33924,
    "mog-diffusion": 46596, "mog-fixed": 46596, "mog-rate": 4488, "mog-rate-sym": 4488,
    "mog-tuned": 46596, "ring8": 33924, "spiral": 33924, "spiral-diffusion": 46596,
    "spiral-fixed": 46596, "spiral-rate": 4488, "spiral-tuned": 46596, "svhn": 6611334,
}


def _seeded_network(config: Config) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The state dict of ``build_model(config)`` under seed 0 and its operator's mean and
    variance at T = 2 for three fixed states."""
    torch.manual_seed(0)
    model = build_model(config)
    s = torch.randn(3, *model.operator.data_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        step = model.operator(s, 2.0)
    return model.state_dict(), step.mean, step.var


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_saved_config_of_the_old_layout_builds_the_same_network(name: str) -> None:
    """config_from_saved moves the backbones' keys out of ``model`` (a rate network's
    ``model.alpha`` to ``rate.leak``) and drops ``train.max_file_mb``: the preset's config and
    network come back, parameter for parameter and output for output."""
    config = get_preset(name)
    if config.model.backbone == "rate":
        config = apply_overrides(config, ["rate.leak=0.3"])  # a leak that is not the default
    old = json.loads(json.dumps(old_layout(config_to_dict(config))))
    assert not {"mlp", "unet", "rate"} & set(old) and old["train"]["max_file_mb"] == 15.0
    migrated = config_from_saved(old)
    assert migrated == config
    (state, mean, var), (state_old, mean_old, var_old) = _seeded_network(config), _seeded_network(migrated)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in state_old.items()}
    assert all(torch.equal(state[k], state_old[k]) for k in state)
    assert torch.equal(mean, mean_old) and torch.equal(var, var_old)
    assert sum(v.numel() for v in build_model(config).parameters()) == PRESET_PARAMETERS[name]


def test_an_old_rate_run_gets_its_leak_and_the_default_alpha() -> None:
    """The model section of a mog-rate run written before the backbone sections (leak 0.3)."""
    model = {"alpha": 0.3, "backbone": "rate", "channel_mults": "1,2,2", "channels": 64,
             "cond_dim": 32, "depth": 3, "dropout": 0.0, "form": "2017", "hidden": 128,
             "hidden_min_var": 0.01, "hidden_units": 64, "init_var": 0.001, "inner_steps": 2,
             "input_scale": 4.0, "mean_scale": "none", "min_var": 1e-06, "noise_scale": "auto",
             "num_res_blocks": 2, "rate_gain": 1.5, "relax_steps": 10, "symmetric": False}
    config = config_from_saved({"preset": "mog-rate", "model": model,
                                "train": {"max_file_mb": 0.0, "steps": 3000}})
    assert config.rate == RateConfig(leak=0.3, hidden_units=64, symmetric=False, relax_steps=10,
                                     gain=1.5, inner_steps=2, input_scale=4.0, hidden_min_var=0.01)
    assert config.model.alpha == ModelConfig.alpha and config.model.init_var == 0.001
    assert config.mlp.hidden == 128 and config.unet.channels == 64 and config.train.steps == 3000
    assert build_model(config).operator.alpha == pytest.approx(0.7)
    # a non-rate run keeps its model.alpha
    mlp = config_from_saved({"model": {"backbone": "mlp", "alpha": 0.3, "hidden": 16}})
    assert mlp.model.alpha == 0.3 and mlp.rate.leak == RateConfig.leak and mlp.mlp.hidden == 16


def test_a_start_step_beyond_a_shortened_heating_is_refused_with_both_values() -> None:
    """`mnist-tuned` starts at step 30, its top: shortening the heating without moving the start
    names the key and both numbers; moving both is accepted."""
    with pytest.raises(ConfigError, match=r"sample.start_step: 30 must be in \[0, "
                       r"schedule.num_steps = 20\]"):
        apply_overrides(get_preset("mnist-tuned"), ["schedule.num_steps=20"])
    short = apply_overrides(get_preset("mnist-tuned"), ["schedule.num_steps=20",
                                                        "sample.start_step=20"])
    assert short.sample.start_step == 20 and short.sample.start_components == 10


@pytest.mark.parametrize("base", ["mnist", "cifar10", "celeba32"])
def test_the_tuned_image_presets_are_the_measured_variant(base: str) -> None:
    """``mnist-tuned`` is ``mnist`` with the four keys of the ``tuned`` arm of
    experiments/gpu/mnist_tuned.sh and the two of the ``mix`` arm of
    experiments/gpu/mixture_start.sh (its start prior), and nothing else: the measured arms are
    the preset; the CIFAR-10 and CelebA ones change their presets by the same four keys. Each
    heating has 6 steps at T = 1 (n1 = 5 and T_0) and tops out at 1.3^24, about 545."""
    tuned = get_preset(f"{base}-tuned")
    start = ["sample.start_step=30", "sample.start_components=10"] if base == "mnist" else []
    arm = apply_overrides(get_preset(base), [
        "schedule.factor=1.3", "schedule.n1=5", "model.min_var_at_1=1e-4",
        "train.temperature_jitter=true", *start])
    arm.preset = f"{base}-tuned"
    assert config_to_dict(tuned) == config_to_dict(arm)
    s = tuned.schedule
    temps = heating_temperatures(s.num_steps, t0=s.t0, factor=s.factor, n1=s.n1)
    assert int((temps == 1).sum()) == 6
    assert temps[-1].item() == pytest.approx(1.3 ** 24) and 540 < temps[-1].item() < 550
