"""Metrics by hand."""
import math

import pytest
import torch

from suptickets.train import accuracy, evaluate, expected_calibration_error, negative_log_likelihood


def test_metrics_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1, 0])
    assert accuracy(probs, labels) == 0.5
    # two bins: (0, .5] is empty; (.5, 1] holds all four: confidence 0.6875, accuracy 0.5
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.1875)
    # 15 bins: 0.9 -> bin 13 (right), 0.6 -> bin 8 (wrong), 0.7 -> bin 10 (right), 0.55 -> bin 8 (wrong)
    want = (abs(1 - 0.9) + abs(1 - 0.7) + 2 * abs(0 - (0.6 + 0.55) / 2)) / 4
    assert expected_calibration_error(probs, labels) == pytest.approx(want)
    nll = -(math.log(0.9) + math.log(0.4) + math.log(0.7) + math.log(0.45)) / 4
    assert negative_log_likelihood(probs, labels) == pytest.approx(nll)
    with pytest.raises(ValueError, match="probs must be"):
        accuracy(probs, labels[:3])


def test_evaluate_a_model():
    model = torch.nn.Linear(3, 4)
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))
    got = evaluate(model, x, y, batch_size=3)
    probs = torch.softmax(model(x).double(), 1)
    assert got == pytest.approx({"accuracy": accuracy(probs, y), "ece": expected_calibration_error(probs, y),
                                 "nll": negative_log_likelihood(probs, y)})
    assert model.training
