"""Classification metrics from a network's outputs: accuracy, top-5, macro-F1, ROC-AUC and the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score
from torch import Tensor, nn

from nascli.data.base import Inputs, network_inputs
from nascli.hardware import Hardware

# Samples per forward pass when scoring: on the CPU 256, whose activations stay in the caches (1,024 took 1.37x as
# long over the loop benchmark's 22 networks: docs/benchmarks.md); a GPU wants large batches.
EVAL_BATCH = {"cpu": 256, "cuda": 1024}
OBJECTIVES = ("val_acc", "val_f1", "val_auc")  # what a training evaluator can maximise


@torch.no_grad()
def predict(model: nn.Module, x: Inputs, hardware: Hardware) -> Tensor:
    """The model's class probabilities for `x`, in batches, on the CPU."""
    model.eval()
    outputs, batch = [], EVAL_BATCH.get(hardware.device.type, EVAL_BATCH["cuda"])
    for start in range(0, len(x), batch):
        with hardware.autocast():
            logits = model(*network_inputs(x[start : start + batch], hardware.channels_last))
        outputs.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(outputs)


def classification_metrics(probabilities: Tensor, labels: Tensor, split: str, confusion: bool = False) -> dict[str, Any]:
    """`<split>_acc`, `_top5`, `_f1` (macro) in percent, `_auc` for two classes (else None), optionally the confusion matrix."""
    y = labels.cpu().numpy()
    p = probabilities.numpy()
    classes = p.shape[1]
    predicted = p.argmax(axis=1)
    top = np.argsort(-p, axis=1)[:, : min(5, classes)]
    metrics: dict[str, Any] = {
        f"{split}_acc": 100.0 * float((predicted == y).mean()),
        f"{split}_top5": 100.0 * float((top == y[:, None]).any(axis=1).mean()),
        f"{split}_f1": 100.0 * float(f1_score(y, predicted, labels=np.arange(classes), average="macro", zero_division=0)),
        f"{split}_auc": None,
    }
    if classes == 2 and len(np.unique(y)) == 2:
        metrics[f"{split}_auc"] = 100.0 * float(roc_auc_score(y, p[:, 1]))
    if confusion:
        metrics["confusion_matrix"] = confusion_matrix(y, predicted, labels=np.arange(classes)).tolist()
    return metrics


def evaluate_model(model: nn.Module, x: Inputs, y: Tensor, hardware: Hardware, split: str,
                   confusion: bool = False) -> dict[str, Any]:
    """The classification metrics of `model` on (x, y)."""
    return classification_metrics(predict(model, x, hardware), y, split, confusion)
