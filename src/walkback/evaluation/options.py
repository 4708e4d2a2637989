"""What an evaluation computes and how: the metrics by name and ``EvalOptions`` (docs/evaluation.md).

Metrics, by name:

- ``chain``: one set of sampling chains with snapshots at ``E`` extra steps (toy metrics on 2-D
  data; FID on images), their mixing and figures;
- ``bound``: the variational bound on held-out data (nats per point on 2-D data, bits/dim on
  8-bit images); runs no sampling chain;
- ``fid``, ``kid``, ``classes`` (MNIST), ``parzen``: image sample quality of the run's samples.

Defaults: ``chain`` and ``bound`` for 2-D runs; ``fid``, ``kid`` (and ``classes`` on MNIST),
``bound`` and ``chain`` for image runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.toy import TOY_DATASETS
from ..errors import ConfigError
from ..streams import DEFAULT_BLOCK

__all__ = ["DEFAULT_CHAIN_STEPS", "IMAGE_METRICS", "TOY_METRICS", "EvalOptions", "resolve_metrics"]

IMAGE_METRICS = ("fid", "kid", "classes", "bound", "chain", "parzen")
TOY_METRICS = ("bound", "chain")
NEEDS_MODEL = ("bound", "chain")
DEFAULT_CHAIN_STEPS = "0,K,10K,100K"


@dataclass
class EvalOptions:
    """Options of an evaluation (``None``: the run's config or the default). 2-D runs use
    ``metrics``, ``num_samples``, ``num_paths``, ``seed``, ``device`` (``auto`` is the CPU there),
    ``progress``, ``command`` and ``report``; the rest are for images. ``feature_net`` replaces
    the FID Inception and ``classifier`` the trained MNIST classifier (tests, other feature
    extractors); ``block``: examples per random stream (``streams.StackedRandom``)."""

    metrics: Sequence[str] | str | None = None
    num_samples: int | None = None
    num_paths: int | None = None
    bound_points: int | None = None
    chain_steps: str = DEFAULT_CHAIN_STEPS
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    cache_dir: str | Path | None = None
    fid_weights: str | None = None
    data_root: str | None = None
    resolution: int | None = None
    progress: bool = True
    command: str = "walkback.evaluate"
    block: int = DEFAULT_BLOCK
    feature_net: object | None = None
    classifier: tuple | None = None
    classifier_epochs: int = 5
    amp: str = "none"  # "bf16": sampling chains and pictures under bf16 autocast (GPU); bound in fp32
    floor: bool = True  # the real-vs-real floor (needs the floor split, MNIST: train)
    report: str = "samples"  # "states": score the chain states, not the last steps' means
    start_step: int | None = None  # start the chains at this heating step (Walkback.start_at)
    extra_temperature: float | None = None  # T_E of the steps past K (the run's config: 1)


def resolve_metrics(spec: Sequence[str] | str | None, data_name: str, *,
                    has_model: bool) -> list[str]:
    """The metrics to compute, in a fixed order (module docstring); ``spec`` a list or a
    comma-separated string. For images ``chain`` implies ``fid`` (the chain metric is FID)."""
    toy = data_name in TOY_DATASETS
    known = TOY_METRICS if toy else IMAGE_METRICS
    if spec is None:
        chosen = set(TOY_METRICS) if toy else {"fid", "kid"} | (
            {"classes"} if data_name == "mnist" else set())
        chosen |= set(NEEDS_MODEL) if has_model else set()
    else:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        chosen = {m.strip().lower() for m in items if m.strip()}
        text = spec if isinstance(spec, str) else ",".join(items)
        unknown = sorted(chosen - set(known))
        if unknown or not chosen:
            raise ConfigError(f"--metrics {text}: unknown metric {', '.join(unknown) or '(none)'} "
                              f"for {data_name}; choose from {', '.join(known)}")
    if not has_model and chosen & set(NEEDS_MODEL):
        raise ConfigError(f"--metrics {','.join(sorted(chosen & set(NEEDS_MODEL)))}: needs a model "
                          "(--run-dir), not a samples file")
    if "classes" in chosen and data_name != "mnist":
        raise ConfigError(f"--metrics classes: the class histogram needs MNIST, not {data_name}")
    if "chain" in chosen and not toy:
        chosen.add("fid")
    return [m for m in known if m in chosen]
