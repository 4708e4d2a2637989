"""Evaluation of image models and samples files (docs/evaluation.md); orchestrated by
``walkback.evaluate_images``. Kept import-light: the submodules are imported where used."""
