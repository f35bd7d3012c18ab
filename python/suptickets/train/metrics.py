"""Classification metrics on predicted class probabilities ``probs[N, K]`` and labels ``[N]``:
accuracy, expected calibration error (Guo et al., 2017: equal-width confidence bins) and the
negative log-likelihood, as the Sup-tickets paper reports them (§4.5)."""
from __future__ import annotations

import torch


def _check(probs: torch.Tensor, labels: torch.Tensor) -> None:
    if probs.dim() != 2 or labels.dim() != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [N, classes] and labels [N], got {tuple(probs.shape)} and "
                         f"{tuple(labels.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("no samples")


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose most probable class is the label."""
    _check(probs, labels)
    return (probs.argmax(1) == labels).double().mean().item()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over ``bins`` equal-width bins of the top
    probability (bin ``b`` holds confidences in ``(b/bins, (b+1)/bins]``)."""
    _check(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence, predicted = probs.double().max(1)
    correct = (predicted == labels).double()
    which = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence)
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
    return ((acc - conf).abs().sum() / confidence.numel()).item()


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean ``-log p(label)`` (probabilities clamped at ``eps``)."""
    _check(probs, labels)
    picked = probs.double().gather(1, labels.view(-1, 1)).squeeze(1)
    return (-picked.clamp_min(eps).log()).mean().item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 512,
             outputs: str = "logits") -> dict:
    """``{"accuracy", "ece", "nll"}`` of ``model`` (eval mode) on a dataset held in tensors.
    ``outputs``: "logits" (softmax is applied) or "probs" (e.g. a ``TicketEnsemble``)."""
    if outputs not in ("logits", "probs"):
        raise ValueError(f"outputs must be 'logits' or 'probs', got {outputs!r}")
    was_training = model.training
    model.eval()
    parts = [model(inputs[i:i + batch_size]) for i in range(0, inputs.shape[0], batch_size)]
    model.train(was_training)
    out = torch.cat(parts)
    probs = torch.softmax(out.double(), 1) if outputs == "logits" else out.double()
    return {"accuracy": accuracy(probs, labels), "ece": expected_calibration_error(probs, labels),
            "nll": negative_log_likelihood(probs, labels)}


@torch.no_grad()
def evaluate_batches(model: torch.nn.Module, batches, device=None, outputs: str = "logits", precision=None) -> dict:
    """``{"accuracy", "ece", "nll"}`` of ``model`` (eval mode) over an iterable of ``(inputs,
    labels)`` batches (moved to ``device`` when given), e.g. a ``DataLoader``; with a
    ``train.precision.Precision``, in the run's precision."""
    if outputs not in ("logits", "probs"):
        raise ValueError(f"outputs must be 'logits' or 'probs', got {outputs!r}")
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for x, y in batches:
        x = x.to(device) if device is not None else x
        if precision is not None:
            with precision.autocast():
                out = model(precision.inputs(x)).double()
        else:
            out = model(x).double()
        probs.append((torch.softmax(out, 1) if outputs == "logits" else out).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    if not probs:
        raise ValueError("evaluate_batches got no batch")
    p, y = torch.cat(probs), torch.cat(labels)
    return {"accuracy": accuracy(p, y), "ece": expected_calibration_error(p, y), "nll": negative_log_likelihood(p, y)}
