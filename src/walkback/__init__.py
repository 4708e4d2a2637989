"""walkback: Variational Walkback (Goyal, Ke, Ganguli, Bengio, NIPS 2017) in PyTorch.

A stochastic transition operator ``p_T(s'|s)`` trained to walk back along its own heating
paths; sampling anneals from a broad Gaussian down to ``T = 1`` and keeps going.
"""

from .config import Config
from .errors import CheckpointError, ConfigError, TrainingError, WalkbackError
from .model import Walkback, build_model, load
from .objective import BoundResult, variational_bound, walkback_loss, walkback_step_loss
from .presets import PRESETS, get_preset
from .prior import GaussianPrior, LowRankGaussianPrior, MixturePrior
from .sampler import ChainState, SampleResult, anneal, anneal_progressive
from .streams import StackedRandom
from .schedule import (
    cooling_temperatures, fixed_diffusion_betas, heating_temperatures, steps_until_variance,
)
from .trajectory import FixedDiffusionHeating, OperatorHeating, Trajectory, walk_away
from .transition import GaussianStep, TransitionOperator

__version__ = "0.1.0"

__all__ = [
    "BoundResult", "ChainState", "CheckpointError", "Config", "ConfigError",
    "FixedDiffusionHeating", "GaussianPrior", "GaussianStep", "LowRankGaussianPrior", "MixturePrior",
    "OperatorHeating", "PRESETS",
    "SampleResult", "StackedRandom", "TrainingError", "Trajectory", "TransitionOperator", "Walkback",
    "WalkbackError", "anneal", "evaluate", "anneal_progressive", "build_model", "cooling_temperatures",
    "fixed_diffusion_betas", "get_preset", "heating_temperatures", "load", "steps_until_variance",
    "variational_bound", "walk_away", "walkback_loss", "walkback_step_loss",
]


def __getattr__(name: str):
    """``walkback.evaluate`` (``evaluation.evaluate``), imported on first use: the evaluation
    pulls in the metrics and plotting libraries, which training and sampling do not need."""
    if name == "evaluate":
        from .evaluation import evaluate  # noqa: PLC0415

        return evaluate
    raise AttributeError(f"module 'walkback' has no attribute {name!r}")
