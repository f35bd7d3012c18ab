"""The training layer (DESIGN.md, "Layers"): the ``suptickets`` command line and what it is
made of: models, datasets, metrics, FLOPs accounting, checkpoints, plots, data-parallel runs."""
from . import flops
from .metrics import accuracy, evaluate, evaluate_batches, expected_calibration_error, negative_log_likelihood

__all__ = ["flops", "accuracy", "expected_calibration_error", "negative_log_likelihood", "evaluate",
           "evaluate_batches"]
