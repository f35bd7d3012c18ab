"""Training utilities on top of the methods: metrics (DESIGN.md, "Layers")."""
from .metrics import accuracy, evaluate, expected_calibration_error, negative_log_likelihood

__all__ = ["accuracy", "expected_calibration_error", "negative_log_likelihood", "evaluate"]
