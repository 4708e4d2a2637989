"""Evaluation of image models and samples files (EVALUATION.md); orchestrated by
``walkback.evaluate_images``. Kept import-light: the submodules are imported where used."""
