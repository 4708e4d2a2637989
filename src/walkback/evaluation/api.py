"""``evaluate(run_dir, metrics=[...])``: the one entry point of the evaluation of a run, 2-D or
images (docs/evaluation.md; the metrics: ``evaluation.options``). The command line
(``walkback evaluate``) is a thin layer over it and ``evaluate_samples_file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

from .. import distributed
from ..data.toy import TOY_DATASETS
from ..errors import ConfigError
from ..runs import load_run_config
from .images import evaluate_image_run
from .options import EvalOptions, resolve_metrics
from .toy import evaluate_toy_run

__all__ = ["evaluate"]


def evaluate(run_dir: str | Path, metrics: Sequence[str] | str | None = None,
             options: EvalOptions | None = None, **settings) -> dict:
    """Evaluate the run in ``run_dir`` (2-D or images) on ``metrics`` (module docstring);
    ``settings`` override fields of ``options`` (``EvalOptions``). Writes ``eval.json`` and
    ``figures/`` into the run folder (nothing is replaced unless everything was computed) and
    returns the eval.json dict. Under torchrun (images) the processes share the chains and the
    bound; rank 0 writes and returns the dict, the others return ``{}``."""
    unknown = sorted(set(settings) - {f.name for f in fields(EvalOptions)})
    if unknown:
        raise TypeError(f"evaluate: unknown setting {', '.join(unknown)}")
    options = replace(options or EvalOptions(), **settings)
    if options.report not in ("samples", "states"):
        raise ConfigError(f"--report {options.report}: choose samples or states")
    config = load_run_config(Path(run_dir))
    chosen = resolve_metrics(metrics if metrics is not None else options.metrics, config.data.name,
                             has_model=True)
    options = replace(options, metrics=chosen)
    if config.data.name in TOY_DATASETS:  # small: under torchrun rank 0 alone evaluates
        return evaluate_toy_run(run_dir, options) if distributed.world().main else {}
    return evaluate_image_run(run_dir, options)
