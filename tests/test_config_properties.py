"""Property-based checks of the config and the ``--set`` parser (hypothesis): any value inside a
key's range is accepted and survives the JSON round trip; any value outside it, and any string
that is not a number, is refused with a ``ConfigError`` naming the key."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings, strategies as st

from walkback.config import (
    RANGES, Config, _flatten, apply_overrides, config_from_dict, config_to_dict, config_to_json,
)
from walkback.errors import ConfigError

DEFAULTS = _flatten(config_to_dict(Config()))
# keys whose value is also checked against other keys (n1 <= num_steps, ...): left at defaults
CROSS = {"schedule.n1", "sample.start_step", "sample.start_rank", "sample.start_components",
         "train.hidden_weight", "rate.hidden_units", "rate.hidden_min_var", "model.cond_dim", "diffusion.beta_start",
         "diffusion.beta_end", "train.loss_steps", "train.variance_weight", "model.min_var_at_1",
         "model.denoised_clip", "train.input_noise"}
FREE = sorted(set(RANGES) - CROSS)


def _inside(key: str) -> st.SearchStrategy:
    low, high, low_in, high_in = RANGES[key]
    if type(DEFAULTS[key]) is int:
        return st.integers(int(low) + (not low_in), min(int(high) - (not high_in), 10**6)
                           if math.isfinite(high) else 10**6)
    return st.floats(low, high if math.isfinite(high) else 1e6, exclude_min=not low_in,
                     exclude_max=not high_in or not math.isfinite(high), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_values_inside_their_ranges_are_accepted_and_round_trip(data) -> None:
    keys = data.draw(st.lists(st.sampled_from(FREE), min_size=1, max_size=6, unique=True))
    items = [f"{key}={data.draw(_inside(key))!r}" for key in keys]
    config = apply_overrides(Config(), items)
    again = config_from_dict(json.loads(config_to_json(config)))
    assert config_to_dict(again) == config_to_dict(config)
    flat = _flatten(config_to_dict(config))
    for item in items:
        key, raw = item.split("=")
        assert flat[key] == type(DEFAULTS[key])(raw if type(DEFAULTS[key]) is float else int(raw))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(RANGES)), st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9),
    st.text(max_size=8)))
def test_any_value_is_accepted_or_refused_by_name(key: str, value) -> None:
    try:
        apply_overrides(Config(), [f"{key}={value}"])
    except ConfigError as exc:
        assert key in str(exc), str(exc)
