"""Evaluation of runs and samples files (docs/evaluation.md): ``evaluate(run_dir, metrics=[...])``
for a run (2-D or images), ``evaluate_samples_file`` for any generator's image samples."""

from .api import evaluate
from .images import evaluate_samples_file
from .options import EvalOptions, resolve_metrics

__all__ = ["EvalOptions", "evaluate", "evaluate_samples_file", "resolve_metrics"]
